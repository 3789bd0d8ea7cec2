"""Where a LanceDB table another tool laid out keeps each part of a record, and the
conversions between its columns and vecmigrate's batch layout.

Reading renames and re-types on the way out (ids, the text column, a struct or JSON-text
metadata column and top-level columns become ``id``, ``document``, ``metadata``); writing
goes back to the table's own column names and types, casting only what reads back the
same and refusing the rest per record (``DataError`` naming the id and field).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.lancedb._cast import Converter
from vecmigrate.connectors.lancedb._schema import portable_column
from vecmigrate.errors import DataError
from vecmigrate.model import CollectionSchema, MetadataField
from vecmigrate.records import conform, encode_json, metadata_to_arrow, table_to_batch

# The engine_settings key of the layout a foreign table was described with.
LAYOUT_KEY = "lancedb.layout"
# ``?id_field=_rowid``: a table without an id column, its records keyed by LanceDB's row id.
ROW_ID = "_rowid"


def quote(name: str) -> str:
    """A column name quoted for LanceDB's SQL (a backtick inside it doubled)."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class Layout:
    """The physical columns of a foreign table. ``id_kind``: ``int``, ``text``, ``uuid``
    (16-byte binary or arrow.uuid, read as canonical UUID text) or ``hex`` (other fixed-size
    binary, read as hex). ``fields``: (metadata field, column, key inside the metadata
    column or None for a top-level column)."""

    id: str
    id_kind: str
    document: str | None = None
    metadata: str | None = None
    metadata_format: str | None = None  # "struct" or "json"
    fields: tuple[tuple[str, str, str | None], ...] = ()
    vectors: tuple[str, ...] = ()
    extra: str | None = None

    # -- engine_settings form ------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The layout as recorded in ``engine_settings[LAYOUT_KEY]`` (JSON, readable)."""
        return {
            "id": self.id,
            "id_kind": self.id_kind,
            "document": self.document,
            "metadata": self.metadata,
            "metadata_format": self.metadata_format,
            "fields": {f: [c, k] for f, c, k in self.fields},
            "vectors": list(self.vectors),
            "extra": self.extra,
        }

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> Layout | None:
        """The layout recorded in ``settings``; None for a table vecmigrate laid out (a
        framework's table, ``?layout=``, is a ``_frameworks.FrameworkLayout``)."""
        raw = settings.get(LAYOUT_KEY)
        if not isinstance(raw, Mapping):
            return None
        if raw.get("framework"):
            from vecmigrate.connectors.lancedb._frameworks import FrameworkLayout

            return FrameworkLayout.from_settings(raw)
        return cls(
            id=raw["id"],
            id_kind=raw["id_kind"],
            document=raw.get("document"),
            metadata=raw.get("metadata"),
            metadata_format=raw.get("metadata_format"),
            fields=tuple((f, c, k) for f, (c, k) in (raw.get("fields") or {}).items()),
            vectors=tuple(raw.get("vectors") or ()),
            extra=raw.get("extra"),
        )

    @property
    def json(self) -> bool:
        """The metadata column holds JSON text (no SQL can look inside it)."""
        return self.metadata_format == "json"

    def where(self) -> dict[str, tuple[str, str | None]]:
        """field -> (column, key)."""
        return {f: (c, k) for f, c, k in self.fields}

    def vector_column(self, name: str) -> str:
        """The column of the portable vector field ``name`` (the same name here)."""
        return name

    def columns(self) -> list[str]:
        """Every physical column this layout reads."""
        cols = [self.id, self.document, self.metadata, self.extra, *self.vectors]
        cols += [c for _, c, _ in self.fields]
        return list(dict.fromkeys(c for c in cols if c))

    @property
    def row_ids(self) -> bool:
        """Records keyed by LanceDB's row id (no id column: read only, never written)."""
        return self.id == ROW_ID

    # -- SQL -----------------------------------------------------------------------------
    def sql_field(self, field: str) -> str | None:
        """The SQL expression of a metadata field; None inside JSON text (no SQL reaches it)."""
        column, key = self.where()[field]
        if key is None:
            return quote(column)
        return None if self.json else f"{quote(column)}.{quote(key)}"

    def where_ids(self, ids: Sequence[Any]) -> str:
        """A predicate matching these portable ids (ids no row can have match nothing)."""
        literals = [lit for lit in map(self._id_literal, ids) if lit is not None]
        if not literals:
            return "false"
        return f"{quote(self.id)} IN ({', '.join(literals)})"

    def _id_literal(self, value: Any) -> str | None:
        if self.id_kind == "int":
            return str(int(value)) if isinstance(value, int | np.integer) else None
        if self.id_kind == "text":
            return "'" + str(value).replace("'", "''") + "'"
        raw = _id_bytes(str(value), self.id_kind)
        return None if raw is None else f"X'{raw.hex()}'"

    # -- reading -------------------------------------------------------------------------
    def read_ids(self, col: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The id column as portable ids (int or text)."""
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if self.id_kind in ("int", "text"):
            return col
        if isinstance(col, pa.ExtensionArray):
            col = col.storage
        fmt = (lambda b: str(uuid.UUID(bytes=b))) if self.id_kind == "uuid" else bytes.hex
        return pa.array([None if b is None else fmt(b) for b in col.to_pylist()], pa.string())

    def read_batch(
        self, table: pa.Table, described: CollectionSchema, out: CollectionSchema
    ) -> pa.RecordBatch:
        """Rows of the table as a batch in ``out``'s layout."""
        batch = table_to_batch(table)
        names, n = batch.schema.names, batch.num_rows
        cols: dict[str, pa.Array] = {"id": self.read_ids(batch.column(names.index(self.id)))}
        if out.has_document:
            doc = self.document
            cols["document"] = (
                batch.column(names.index(doc)) if doc in names else pa.nulls(n, pa.string())
            )
        for v in out.vectors:
            if v.name in names:
                cols[v.name] = batch.column(names.index(v.name))
        struct, extra = self._read_metadata(batch, cols["id"], described, out)
        if struct is not None:
            cols["metadata"] = struct
        cols["metadata_extra"] = extra
        return conform(pa.RecordBatch.from_pydict(cols), out)

    def _source(
        self, batch: pa.RecordBatch, field: str, described: CollectionSchema
    ) -> pa.Array | None:
        """A metadata field's values in its portable form; None when not read."""
        column, key = self.where().get(field, ("", None))
        names = batch.schema.names
        typed = described.metadata_field(field)
        if column not in names or typed is None:
            return None
        col = batch.column(names.index(column))
        if key is not None:
            if not pa.types.is_struct(col.type) or col.type.get_field_index(key) < 0:
                return None
            col = col.flatten()[col.type.get_field_index(key)]
        return portable_column(col, typed)

    def _read_metadata(
        self,
        batch: pa.RecordBatch,
        ids: pa.Array,
        described: CollectionSchema,
        out: CollectionSchema,
    ) -> tuple[pa.Array | None, pa.Array]:
        names, n = batch.schema.names, batch.num_rows
        extra = (
            batch.column(names.index(self.extra))
            if self.extra in names
            else pa.nulls(n, pa.string())
        )
        if not self.json:
            if not out.metadata:
                return None, extra
            children = []
            for m in out.metadata:
                got = self._source(batch, m.name, described)
                children.append(pa.nulls(n, m.arrow_type) if got is None else got)
            names_ = [m.name for m in out.metadata]
            return pa.StructArray.from_arrays(children, names=names_), extra
        # JSON text: rows of values, filed by metadata_to_arrow (what does not fit its
        # field, and keys no field names, go to metadata_extra unchanged).
        assert self.metadata is not None
        where = self.where()
        by_key = {k: f for f, (c, k) in where.items() if c == self.metadata and k is not None}
        tops = {f for f, (_, k) in where.items() if k is None}
        rows: list[dict[str, Any]] = []
        texts = batch.column(names.index(self.metadata)).to_pylist()
        for i, text in enumerate(texts):
            obj = _json_object(text)
            if obj is None:
                raise DataError(
                    "metadata text is not a JSON object",
                    collection=described.name,
                    record_id=ids[i].as_py(),
                    field=self.metadata,
                )
            rows.append(
                {
                    by_key.get(k, f"{self.metadata}.{k}" if k in tops else k): v
                    for k, v in obj.items()
                }
            )
        for field in tops:
            got = self._source(batch, field, described)
            if got is None:
                continue
            decode = (described.metadata_field(field) or _ANY).type == "json"
            for i, value in enumerate(got.to_pylist()):
                if value is not None:
                    rows[i][field] = json.loads(value) if decode else value
        for i, raw in enumerate(extra.to_pylist()):
            if raw:
                rows[i].update(json.loads(raw))
        struct, spilled = metadata_to_arrow(rows, out, explicit_nulls=True)
        return struct, spilled

    # -- writing -------------------------------------------------------------------------
    def write_table(
        self, batch: pa.RecordBatch, described: CollectionSchema, physical: pa.Schema
    ) -> pa.Table:
        """A batch in ``described``'s layout as rows of the table's own columns and types."""
        names = batch.schema.names
        ids = batch.column(names.index("id"))
        conv = Converter(described.name, ids.to_pylist())
        out: dict[str, pa.Array] = {
            self.id: self._write_ids(ids, physical.field(self.id).type, conv)
        }
        if self.document and "document" in names:
            out[self.document] = conv.cast(
                batch.column(names.index("document")),
                physical.field(self.document).type,
                "document",
                "string",
            )
        for v in self.vectors:
            if v in names:
                out[v] = conv.cast(batch.column(names.index(v)), physical.field(v).type, v, "")
        struct = batch.column(names.index("metadata")) if "metadata" in names else None
        values: dict[str, pa.Array] = {}
        if struct is not None:
            values = dict(zip([c.name for c in struct.type], struct.flatten(), strict=True))
        extras = self._leftovers(batch, values, described, conv)
        where, types = self.where(), {m.name: m.type for m in described.metadata}
        for field, (column, key) in where.items():
            if key is None and field in values:
                out[column] = conv.cast(
                    values[field], physical.field(column).type, field, types[field]
                )
        if self.metadata and not self.json:
            st = physical.field(self.metadata).type
            by_key = {k: f for f, (c, k) in where.items() if c == self.metadata}
            children = []
            for child in st:
                named = by_key.get(child.name)
                if named is None or named not in values:
                    children.append(pa.nulls(len(ids), child.type))
                else:
                    children.append(conv.cast(values[named], child.type, named, types[named]))
            out[self.metadata] = pa.StructArray.from_arrays(children, fields=list(st))
        elif self.metadata:
            out[self.metadata] = self._json_texts(values, extras, described, conv, physical)
            extras = [{} for _ in extras]
        if self.extra:
            texts = [encode_json(e) if e else None for e in extras]
            out[self.extra] = pa.array(texts, physical.field(self.extra).type)
        else:
            for i, e in enumerate(extras):
                if e:
                    key = sorted(e)[0]
                    raise DataError(
                        f"LanceDB table {described.name!r} has no column for metadata "
                        f"{key!r} (value {e[key]!r})",
                        collection=described.name,
                        record_id=conv.ids[i],
                        field=key,
                        hint="map or drop the field in a mapping file",
                    )
        return pa.table(out)

    def _write_ids(self, ids: pa.Array, t: pa.DataType, conv: Converter) -> pa.Array:
        if self.id_kind in ("int", "text"):
            return conv.cast(ids, t, "id", "string" if self.id_kind == "text" else "int64")
        raw = []
        for value in conv.ids:
            got = _id_bytes(str(value), self.id_kind)
            if got is None:
                raise DataError(
                    f"id {value!r} is not {'a UUID' if self.id_kind == 'uuid' else 'hex'} text",
                    collection=conv.collection,
                    record_id=value,
                    field="id",
                )
            raw.append(got)
        storage_type = t.storage_type if isinstance(t, pa.BaseExtensionType) else t
        storage = pa.array(raw, storage_type)
        if isinstance(t, pa.BaseExtensionType):
            return pa.ExtensionArray.from_storage(t, storage)
        return storage

    def _leftovers(
        self,
        batch: pa.RecordBatch,
        values: dict[str, pa.Array],
        described: CollectionSchema,
        conv: Converter,
    ) -> list[dict[str, Any]]:
        """Per row, the ``metadata_extra`` entries a typed column does not already hold
        (an int in a float field is kept there beside its float; that one is dropped)."""
        names = batch.schema.names
        if "metadata_extra" not in names:
            return [{} for _ in range(batch.num_rows)]
        where = self.where()
        out = []
        for i, raw in enumerate(batch.column(names.index("metadata_extra")).to_pylist()):
            entry = json.loads(raw) if raw else {}
            kept = {}
            for key, value in entry.items():
                inside_json = self.json and key in where and where[key][1] is not None
                if inside_json or (self.json and key not in where):
                    kept[key] = value  # JSON holds it as it is (an int beside its float too)
                elif key in values and value is not None and values[key][i].as_py() == value:
                    continue  # an int kept beside its float: the typed column holds it
                elif value is None and (key in where or not self.extra):
                    continue  # an explicit null: the column (or no column) reads as null
                elif key in where:
                    typed = described.metadata_field(key)
                    raise DataError(
                        f"value {value!r} does not fit column {where[key][0]!r} "
                        f"({typed.type if typed else '?'})",
                        collection=described.name,
                        record_id=conv.ids[i],
                        field=key,
                    )
                else:
                    kept[key] = value
            out.append(kept)
        return out

    def _json_texts(
        self,
        values: dict[str, pa.Array],
        extras: list[dict[str, Any]],
        described: CollectionSchema,
        conv: Converter,
        physical: pa.Schema,
    ) -> pa.Array:
        """The JSON-text metadata column: typed keys, then what ``metadata_extra`` held
        (unknown keys, and the original of an int kept beside its float)."""
        assert self.metadata is not None
        prefix = f"{self.metadata}."
        keyed = [(f, k) for f, (c, k) in self.where().items() if c == self.metadata and k]
        texts = []
        for i, extra in enumerate(extras):
            obj: dict[str, Any] = {}
            for field, key in keyed:
                if field not in values:
                    continue
                value = values[field][i].as_py()
                if value is not None:
                    typed = described.metadata_field(field)
                    obj[key] = json.loads(value) if typed and typed.type == "json" else value
            for key, value in extra.items():
                obj[key.removeprefix(prefix)] = value
            texts.append(encode_json(obj))
        return pa.array(texts, physical.field(self.metadata).type)


_ANY = MetadataField(name="_", type="json")


def _json_object(text: str | None) -> dict[str, Any] | None:
    if text is None or text == "":
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _id_bytes(text: str, kind: str) -> bytes | None:
    try:
        return uuid.UUID(text).bytes if kind == "uuid" else bytes.fromhex(text)
    except ValueError:
        return None
