"""Framework layouts on LanceDB (``?layout=langchain`` / ``?layout=llamaindex``), used only by
``connectors/lancedb``: the tables LangChain's ``LanceDB`` and LlamaIndex's
``LanceDBVectorStore`` keep (docs/frameworks-layouts.md), read and written as the
framework does.

* **langchain**: ``vector`` fixed_size_list<float32>, ``id`` string, ``text`` string,
  ``metadata`` struct (the application's keys, typed as pyarrow infers them; a record
  without metadata holds ``{"id": <id>}``, as LangChain writes it).
* **llamaindex**: ``id`` string (the node id), ``doc_id`` string (the source document's id,
  null without one), ``vector``, ``text``, ``metadata`` struct: the node metadata keys plus
  ``_node_content`` (the node as JSON, its text included), ``_node_type``, ``document_id``,
  ``doc_id`` and ``ref_doc_id``. LlamaIndex's own ``add`` refuses lists in metadata on
  LanceDB; its reader returns them from ``_node_content``, so lists a source holds are kept
  (a ``list<...>`` struct child, which filters test with ``array_has_any``).

Those are the frameworks' default column names; ``?id_field=`` / ``document_field`` /
``vector_field`` / ``metadata_field`` name others (the frameworks' ``id_key``, ``text_key``,
``vector_key`` / ``vector_column_name`` options). The record rules (text, metadata,
``_node_content``) are ``connectors.frameworks``'.

Neither framework keeps a metric, and both search with LanceDB's default, l2. A copy of
cosine or dot vectors into such a table records that metric (and the vector field's name,
int ids, the absence of documents, json-typed keys) in the table's Arrow schema metadata
under ``vecmigrate.framework``, and refuses vectors that are not unit length: l2 ranks
those differently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors import frameworks as fw
from vecmigrate.connectors.foreign import FieldsConfig
from vecmigrate.connectors.lancedb._layout import LAYOUT_KEY, Layout, quote
from vecmigrate.connectors.lancedb._schema import foreign_type, portable_column
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import (
    CollectionSchema,
    IdType,
    IndexSpec,
    MetadataField,
    MetadataType,
    Metric,
    VectorField,
    is_text,
)
from vecmigrate.records import build_batch, metadata_rows, table_to_batch, vectors_to_numpy
from vecmigrate.values import encode_json, infer_metadata_fields

#: Arrow schema metadata key of what vecmigrate records on a framework table it wrote.
FRAMEWORK_KEY = b"vecmigrate.framework"
#: engine_settings key describing the framework table (layout, variant of the columns).
SETTINGS_KEY = "lancedb.framework"
#: LlamaIndex's column of the source document's id (its ``doc_id_key``).
DOC_ID = "doc_id"
#: The keys LlamaIndex adds to the metadata struct, in the order it writes them.
_LI_KEYS = ("_node_content", "_node_type", "document_id", "doc_id", "ref_doc_id")
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)

# The first values of a column (to type LlamaIndex's node metadata from a sample).
Sampler = Callable[[str], list[Any]]


def _name(layout: str) -> str:
    return "LangChain's LanceDB" if layout == fw.LANGCHAIN else "LlamaIndex's LanceDBVectorStore"


@dataclass(frozen=True)
class FrameworkLayout(Layout):
    """A framework's table: the columns of ``Layout`` (``document`` the text column,
    ``metadata`` the struct, ``vectors`` its one vector column) plus what a framework
    keeps besides. ``fields`` maps each metadata field a SQL filter reaches to its struct
    key; the others (LlamaIndex's node fields absent from the struct, ``_llamaindex_node``)
    are matched on the rows."""

    framework: str = fw.LANGCHAIN
    doc_id: str | None = None  # llamaindex: the ref_doc_id column
    vector_name: str = fw.VECTOR  # the vector field's name in the portable model
    id_int: bool = False  # vecmigrate wrote int ids as their text
    json_keys: tuple[str, ...] = ()  # struct keys holding JSON text of json-typed fields
    id_in_metadata: bool = False  # langchain: metadata {"id": <id>} (records had none)

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "framework": self.framework,
            "doc_id": self.doc_id,
            "vector_name": self.vector_name,
            "id_int": self.id_int,
            "json_keys": list(self.json_keys),
            "id_in_metadata": self.id_in_metadata,
        }

    @classmethod
    def from_settings(cls, raw: Mapping[str, Any]) -> FrameworkLayout:
        """The layout ``settings()`` recorded."""
        return cls(
            id=raw["id"],
            id_kind=raw["id_kind"],
            document=raw.get("document"),
            metadata=raw.get("metadata"),
            metadata_format="struct",
            fields=tuple((f, c, k) for f, (c, k) in (raw.get("fields") or {}).items()),
            vectors=tuple(raw.get("vectors") or ()),
            framework=raw["framework"],
            doc_id=raw.get("doc_id"),
            vector_name=raw.get("vector_name") or fw.VECTOR,
            id_int=bool(raw.get("id_int")),
            json_keys=tuple(raw.get("json_keys") or ()),
            id_in_metadata=bool(raw.get("id_in_metadata")),
        )

    @property
    def vector(self) -> str:
        """The table's vector column."""
        return self.vectors[0]

    def vector_column(self, name: str) -> str:
        """The column of the portable vector field ``name``."""
        return self.vector if name == self.vector_name else name

    # -- SQL -----------------------------------------------------------------------------
    def sql_field(self, field: str) -> str | None:
        where = self.where()
        if field not in where:
            return None  # not a struct key: matched on the rows
        column, key = where[field]
        return f"{quote(column)}.{quote(key or field)}"

    def _id_literal(self, value: Any) -> str | None:
        if self.id_kind == "int":  # an application's int ids
            return super()._id_literal(value)
        return "'" + str(value).replace("'", "''") + "'"

    # -- reading -------------------------------------------------------------------------
    def read_ids(self, col: pa.Array | pa.ChunkedArray) -> pa.Array:
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if not self.id_int or pa.types.is_integer(col.type):
            return col
        try:
            return col.cast(pa.int64())
        except _ARROW_ERRORS:
            bad = next(v for v in col.to_pylist() if v is not None and not v.isdigit())
            raise DataError(
                "id is not an integer (vecmigrate wrote the table's ids as ones)",
                record_id=bad,
                field=self.id,
            ) from None

    def read_batch(
        self, table: pa.Table, described: CollectionSchema, out: CollectionSchema
    ) -> pa.RecordBatch:
        batch = table_to_batch(table)
        names, n = batch.schema.names, batch.num_rows

        def column(name: str | None) -> pa.Array | None:
            return batch.column(names.index(name)) if name in names else None

        ids = self.read_ids(batch.column(names.index(self.id)))
        text_col = column(self.document)
        texts: list[Any] = text_col.to_pylist() if text_col is not None else [None] * n
        if self.framework == fw.LLAMAINDEX:
            struct = column(self.metadata)
            stored = struct.to_pylist() if struct is not None else [None] * n
            pairs = [fw.llamaindex_read(s, t) for s, t in zip(stored, texts, strict=True)]
        else:
            metas = self._langchain_metadata(column(self.metadata), described, n)
            pairs = [fw.langchain_read(t, m) for t, m in zip(texts, metas, strict=True)]
        vectors = {}
        for v in out.vectors:
            got = column(self.vector_column(v.name))
            if got is not None:
                vectors[v.name] = got
        return build_batch(
            out,
            ids,
            vectors,
            documents=[d for d, _ in pairs] if out.has_document else None,
            metadata=[m for _, m in pairs],
            explicit_nulls=True,
        )

    def _langchain_metadata(
        self, struct: pa.Array | None, described: CollectionSchema, n: int
    ) -> list[dict[str, Any]]:
        """The application's metadata: every struct key (null values kept as nulls)."""
        metas: list[dict[str, Any]] = [{} for _ in range(n)]
        if struct is None or not pa.types.is_struct(struct.type):
            return metas
        children = dict(zip([c.name for c in struct.type], struct.flatten(), strict=True))
        for field, _, key in self.fields:
            child = children.get(key or field)
            typed = described.metadata_field(field)
            if child is None or typed is None:
                continue
            values = portable_column(child, typed).to_pylist()
            decode = (key or field) in self.json_keys or (
                typed.type == "json" and not is_text(child.type)
            )
            for i, value in enumerate(values):
                metas[i][field] = json.loads(value) if decode and value is not None else value
        return metas

    # -- writing -------------------------------------------------------------------------
    def write_table(
        self, batch: pa.RecordBatch, described: CollectionSchema, physical: pa.Schema
    ) -> pa.Table:
        names = batch.schema.names
        ids = batch.column(names.index("id")).to_pylist()
        n = len(ids)
        docs = (
            batch.column(names.index("document")).to_pylist() if "document" in names else [None] * n
        )
        metas = metadata_rows(batch, described)
        v = described.vectors[0]
        vectors = batch.column(names.index(v.name))
        _check_unit(described.name, v, vectors, ids, self.framework)
        texts: list[str] = []
        stored: list[dict[str, Any]] = []
        doc_ids: list[str | None] = []
        for rid, doc, meta in zip(ids, docs, metas, strict=True):
            if self.framework == fw.LLAMAINDEX:
                # Sorted: LlamaIndex's node keeps its keys' order, and a node read back
                # without its own (``_metadata_order``) has them sorted.
                text, top = fw.llamaindex_write(rid, doc, _sorted(meta), text_in_node=True)
                doc_ids.append(None if top["doc_id"] == fw.NO_SOURCE else top["doc_id"])
            else:
                got, top = fw.langchain_write(doc, meta)
                text = got or ""
                if self.id_in_metadata:
                    top = {"id": str(rid)}
                doc_ids.append(None)
            texts.append(text)
            stored.append(top)
        out: dict[str, pa.Array] = {}
        for f in physical:
            if f.name == self.id:
                keys = ids if self.id_kind == "int" else [str(i) for i in ids]
                out[f.name] = _array(keys, f.type, described.name, ids, f.name)
            elif f.name == self.document:
                out[f.name] = _array(texts, f.type, described.name, ids, f.name)
            elif f.name == self.doc_id:
                out[f.name] = _array(doc_ids, f.type, described.name, ids, f.name)
            elif f.name == self.vector:
                out[f.name] = vectors.cast(f.type)
            elif f.name == self.metadata and pa.types.is_struct(f.type):
                out[f.name] = self._struct(stored, f.type, described.name, ids)
            else:
                out[f.name] = pa.nulls(n, f.type)  # an application's own column
        return pa.Table.from_arrays(list(out.values()), names=list(out))

    def _struct(
        self, stored: list[dict[str, Any]], t: pa.StructType, name: str, ids: list[Any]
    ) -> pa.StructArray:
        """The metadata struct: each key's values in its child's type; a key no child
        holds is refused (the struct's keys are fixed when the table is made)."""
        known = {c.name for c in t}
        for i, row in enumerate(stored):
            for key, value in row.items():
                if key not in known and value is not None:
                    raise DataError(
                        f"the table's metadata struct has no key {key!r} (value {value!r}): "
                        "its keys are fixed when the table is made",
                        collection=name,
                        record_id=ids[i],
                        field=key,
                        hint="copy into a new table (--if-exists replace), or drop the field "
                        "in a mapping file",
                    )
        children = []
        for child in t:
            values = [row.get(child.name) for row in stored]
            if child.name in self.json_keys:
                values = [None if x is None else encode_json(x) for x in values]
            children.append(_array(values, child.type, name, ids, child.name))
        return pa.StructArray.from_arrays(children, fields=list(t))


def _sorted(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return dict(sorted(metadata.items()))


def _array(values: list[Any], t: pa.DataType, name: str, ids: list[Any], field: str) -> pa.Array:
    """``values`` as an Arrow array of ``t``; DataError naming the first record whose value
    does not fit."""
    try:
        return pa.array(values, t)
    except _ARROW_ERRORS as exc:
        for i, value in enumerate(values):
            try:
                pa.array([value], t)
            except _ARROW_ERRORS:
                raise DataError(
                    f"value {value!r} does not fit the column's type {t}",
                    collection=name,
                    record_id=ids[i],
                    field=field,
                ) from None
        raise DataError(
            f"values do not fit type {t}: {exc}", collection=name, field=field
        ) from None


def _check_unit(
    name: str, v: VectorField, vectors: pa.Array, ids: Sequence[Any], framework: str
) -> None:
    """Refuse vectors l2 ranks otherwise than ``v``'s metric (see module doc)."""
    if v.metric is Metric.L2:
        return
    unit = fw.unit_length(vectors_to_numpy(vectors))
    if unit.all():
        return
    i = int(np.flatnonzero(~unit)[0])
    _, source = fw.search_metric(framework, "lancedb")
    raise DataError(
        f"vector is not unit length: {source}, which ranks it differently than "
        f"{v.metric.value} (the metric it was copied for)",
        collection=name,
        record_id=ids[i],
        field=v.name,
        hint="normalise the vectors (mapping: vectors: {NAME: {normalize: true}}) or search "
        "the application's table with the source's metric",
    )


# --------------------------------------------------------------------------- describe


def _note(arrow: pa.Schema) -> dict[str, Any]:
    raw = (arrow.metadata or {}).get(FRAMEWORK_KEY)
    if not raw:
        return {}
    try:
        note = json.loads(raw)
    except ValueError:
        return {}
    return note if isinstance(note, dict) else {}


def _column(
    name: str, arrow: pa.Schema, layout: str, param: str, stated: str | None, default: str
) -> str:
    column = stated or default
    if column not in arrow.names:
        raise ConfigError(
            f"LanceDB table {name!r} has no column {column!r}, so it is not "
            f"{_name(layout)} table (layout={layout})",
            hint=f"its columns: {', '.join(arrow.names)}; name the column with ?{param}=, "
            "or read the table without ?layout=",
        )
    return column


def describe_table(
    name: str, arrow: pa.Schema, config: FieldsConfig, layout: str, sample: Sampler
) -> CollectionSchema:
    """Describe a table in ``layout``: columns by the framework's names (or the URI's),
    metadata fields from the struct (LangChain) or from the node metadata of a sample of
    rows (LlamaIndex), the metric from vecmigrate's note, else the framework's l2."""
    note = _note(arrow)
    id_col = _column(name, arrow, layout, "id_field", config.id_field, "id")
    doc = _column(name, arrow, layout, "document_field", config.document_field, "text")
    meta = _column(name, arrow, layout, "metadata_field", config.metadata_field, "metadata")
    vectors = config.vector_fields or ("vector",)
    if len(vectors) != 1:
        raise ConfigError(
            f"{_name(layout)} keeps one vector column; vector_field names {len(vectors)}"
        )
    vcol = _column(name, arrow, layout, "vector_field", vectors[0], "vector")
    vtype = arrow.field(vcol).type
    if not (pa.types.is_fixed_size_list(vtype) and pa.types.is_floating(vtype.value_type)):
        raise ConfigError(f"LanceDB table {name!r} column {vcol!r} is {vtype}, not a vector")
    id_type = arrow.field(id_col).type
    if not (is_text(id_type) or pa.types.is_integer(id_type)):
        raise ConfigError(
            f"LanceDB table {name!r} keeps ids in {id_col!r} of type {id_type}; "
            f"{_name(layout)} keeps text ids"
        )
    if not is_text(arrow.field(doc).type):
        raise ConfigError(f"LanceDB table {name!r} column {doc!r} is not text")
    struct = arrow.field(meta).type
    if not pa.types.is_struct(struct):
        raise ConfigError(
            f"LanceDB table {name!r} column {meta!r} is {struct}, not the struct "
            f"{_name(layout)} keeps metadata in"
        )
    json_keys = tuple(str(k) for k in note.get("json_keys") or ())
    id_in_metadata = bool(note.get("id_in_metadata"))
    metadata: list[MetadataField] = []
    fields: list[tuple[str, str, str | None]] = []
    doc_id = None
    if layout == fw.LANGCHAIN:
        for child in struct:
            if id_in_metadata and child.name == "id":
                continue
            mtype: MetadataType = "json"
            if child.name not in json_keys:
                mtype, _ = foreign_type(name, f"{meta}.{child.name}", child.type)
            metadata.append(MetadataField(name=child.name, type=mtype))
            fields.append((child.name, meta, child.name))
    else:
        doc_id = DOC_ID if DOC_ID in arrow.names else None
        keys = {c.name for c in struct}
        rows = [
            fw.llamaindex_read(s, t)[1]
            for s, t in zip(sample(meta), sample(doc), strict=False)
            if isinstance(s, Mapping)
        ]
        typed = infer_metadata_fields(rows)
        if not rows:  # an empty table: the struct's own keys
            typed = tuple(
                MetadataField(name=c.name, type=foreign_type(name, c.name, c.type)[0])
                for c in struct
                if c.name not in fw.LLAMAINDEX_RESERVED
            )
        for m in typed:
            metadata.append(m)
            if m.name in keys and m.name != fw.NODE_KEY:
                fields.append((m.name, meta, m.name))
    metric_name = note.get("metric")
    default_metric, default_source = fw.search_metric(layout, "lancedb")
    if metric_name:
        metric = Metric(metric_name)
        source = (
            f"{metric.value}, as vecmigrate copied it (its note in the table's schema); "
            f"{default_source}, which ranks these unit-length vectors alike"
        )
    else:
        metric, source = default_metric, default_source
    vname = str(note.get("vector") or fw.VECTOR)
    frame = FrameworkLayout(
        id=id_col,
        id_kind="int" if pa.types.is_integer(id_type) else "text",
        document=doc,
        metadata=meta,
        metadata_format="struct",
        fields=tuple(fields),
        vectors=(vcol,),
        framework=layout,
        doc_id=doc_id,
        vector_name=vname,
        id_int=note.get("id_type") == "int",
        json_keys=json_keys,
        id_in_metadata=id_in_metadata,
    )
    return CollectionSchema(
        name=name,
        id_type=IdType.INT if frame.id_int or pa.types.is_integer(id_type) else IdType.STRING,
        vectors=(
            VectorField(
                name=vname,
                dim=vtype.list_size,
                metric=metric,
                index=IndexSpec(kind="flat"),
                metric_source=source,
            ),
        ),
        metadata=tuple(metadata),
        has_document=bool(note.get("has_document", True)),
        engine="lancedb",
        engine_settings={
            LAYOUT_KEY: frame.settings(),
            SETTINGS_KEY: {"layout": layout, "table": name},
            f"{vname}.metric": source,
        },
    )


# --------------------------------------------------------------------------- create


def _child_type(m: MetadataField) -> pa.DataType:
    return pa.string() if m.type == "json" else m.arrow_type


def create_table(db: Any, schema: CollectionSchema, layout: str) -> CollectionSchema:
    """Create (or overwrite) ``schema.name`` as ``layout``'s table; the schema writes go
    through (``engine_settings`` holding the table's ``FrameworkLayout``)."""
    name = schema.name
    if len(schema.vectors) != 1 or schema.sparse:
        raise ConfigError(
            f"{_name(layout)} keeps one dense vector per record; {name!r} has "
            f"{len(schema.vectors)} vector and {len(schema.sparse)} sparse field(s)",
            hint="keep one vector field: drop the others in a mapping "
            "(vectors: {NAME: {drop: true}})",
        )
    v = schema.vectors[0]
    keep = list(schema.metadata)
    if layout == fw.LLAMAINDEX:  # both go into the node (_node_content, ref_doc_id)
        keep = [m for m in keep if m.name not in (fw.NODE_KEY, fw.REF_DOC_ID)]
        clash = [m.name for m in keep if m.name in _LI_KEYS]
        if clash:
            raise ConfigError(
                f"metadata field {clash[0]!r} of {name!r} is a key LlamaIndex keeps for itself",
                hint="rename it in a mapping file (metadata: {NAME: {rename: OTHER}})",
            )
    children = [pa.field(m.name, _child_type(m)) for m in keep]
    json_keys = [m.name for m in keep if m.type == "json"]
    id_in_metadata = layout == fw.LANGCHAIN and not children
    if id_in_metadata:
        children = [pa.field("id", pa.string())]
    vector = pa.field("vector", pa.list_(pa.float32(), v.dim))
    if layout == fw.LLAMAINDEX:
        children += [pa.field(k, pa.string()) for k in _LI_KEYS]
        columns = [
            pa.field("id", pa.string()),
            pa.field(DOC_ID, pa.string()),
            vector,
            pa.field("text", pa.string()),
            pa.field("metadata", pa.struct(children)),
        ]
    else:
        columns = [
            vector,
            pa.field("id", pa.string()),
            pa.field("text", pa.string()),
            pa.field("metadata", pa.struct(children)),
        ]
    default_metric, _ = fw.search_metric(layout, "lancedb")
    note: dict[str, Any] = {}
    if v.name != fw.VECTOR:
        note["vector"] = v.name
    if v.metric is not default_metric:
        note["metric"] = v.metric.value
    if schema.id_type is IdType.INT:
        note["id_type"] = "int"
    if not schema.has_document:
        note["has_document"] = False
    if json_keys:
        note["json_keys"] = json_keys
    if id_in_metadata:
        note["id_in_metadata"] = True
    arrow = pa.schema(
        columns, metadata={FRAMEWORK_KEY: json.dumps(note).encode()} if note else None
    )
    db.create_table(name, schema=arrow, mode="overwrite")
    frame = FrameworkLayout(
        id="id",
        id_kind="text",
        document="text",
        metadata="metadata",
        metadata_format="struct",
        fields=tuple((m.name, "metadata", m.name) for m in keep),
        vectors=("vector",),
        framework=layout,
        doc_id=DOC_ID if layout == fw.LLAMAINDEX else None,
        vector_name=v.name,
        id_int=schema.id_type is IdType.INT,
        json_keys=tuple(json_keys),
        id_in_metadata=id_in_metadata,
    )
    settings = {
        k: val
        for k, val in schema.engine_settings.items()
        if not k.startswith("lancedb.") and not k.endswith((".metric", ".index"))
    }
    settings[LAYOUT_KEY] = frame.settings()
    settings[SETTINGS_KEY] = {"layout": layout, "table": name}
    return schema.replace(engine="lancedb", engine_settings=settings)


# --------------------------------------------------------------------------- reuse


def reuse_problems(
    layout: FrameworkLayout, schema: CollectionSchema, have: CollectionSchema
) -> list[str]:
    """Why a framework table described as ``have`` cannot take ``schema``'s records."""
    problems = []
    if len(schema.vectors) != 1 or schema.sparse:
        problems.append(f"it keeps one vector; the records have {len(schema.vectors)}")
    elif schema.vectors[0].dim != have.vectors[0].dim:
        problems.append(
            f"its vector column {layout.vector!r} holds {have.vectors[0].dim} dimensions, "
            f"not {schema.vectors[0].dim}"
        )
    keys = {k for _, _, k in layout.fields} | {f for f, _, _ in layout.fields}
    skip = {fw.NODE_KEY, fw.REF_DOC_ID} if layout.framework == fw.LLAMAINDEX else set()
    for m in schema.metadata:
        if m.name not in skip and m.name not in keys:
            problems.append(f"its metadata struct has no key {m.name!r}")
    return problems


def reused(
    layout: FrameworkLayout, schema: CollectionSchema, have: CollectionSchema
) -> CollectionSchema:
    """The schema writes into a reused framework table go through: ``have``'s layout with
    the records' metadata fields and metric (unit vectors are checked against it)."""
    v = have.vectors[0].model_copy(
        update={"metric": schema.vectors[0].metric, "name": schema.vectors[0].name}
    )
    frame = replace(layout, vector_name=v.name)
    settings = {**have.engine_settings, LAYOUT_KEY: frame.settings()}
    return have.replace(
        vectors=(v,),
        metadata=schema.metadata,
        has_document=schema.has_document,
        engine_settings=settings,
    )
