"""How LanceDB tables other tools made are described: their columns map to portable types
(used only by ``connectors.lancedb``; see its module docstring for the rules)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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
    portable_type,
)
from vecmigrate.records import encode_json

_ISO_NOTE = "read as ISO-8601 text (a mapping's cast: date / timestamp makes an int64 epoch)"
_DOC_COLUMNS = ("document", "text", "content")


def portable_column(col: pa.Array, field: MetadataField) -> pa.Array:
    """A foreign column's values in the form its portable type holds (see module doc)."""
    t = col.type
    if pa.types.is_date(t):
        if pa.types.is_date64(t):
            try:
                col = col.cast(pa.date32(), safe=True)
            except pa.ArrowInvalid:
                raise DataError(
                    "date64 value is not a whole day",
                    field=field.name,
                    hint="store it as a timestamp",
                ) from None
        return pc.strftime(col, format="%Y-%m-%d")
    if pa.types.is_timestamp(t):
        if t.tz is None:
            return pc.strftime(col, format="%Y-%m-%dT%H:%M:%S")
        utc = col.cast(pa.timestamp(t.unit, tz="UTC"))
        return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ")
    if field.type == "json" and not is_text(t):
        return pa.array(
            [None if v is None else encode_json(_plain(v)) for v in col.to_pylist()], pa.string()
        )
    return col


def _plain(value: Any) -> Any:
    """A nested Arrow value as JSON-able Python (map entries as an object)."""
    if (
        isinstance(value, list)
        and value
        and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in value)
    ):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def foreign_type(table: str, column: str, t: pa.DataType) -> tuple[MetadataType, str | None]:
    """The portable type of a foreign column, with a note when its values change form;
    ConfigError for a type no portable one holds exactly."""
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return "string", f"{t} {_ISO_NOTE}"
    found = portable_type(t)
    if found is not None:
        return found, None
    if pa.types.is_decimal(t):
        hint = (
            "vecmigrate has no exact decimal type; add a string copy (exact digits) or a float64 "
            f"copy (rounded) of {column!r} to the table, e.g. table.add_columns({{'{column}_text': "
            f"'CAST({column} AS STRING)'}}), and drop {column!r} from it or copy a view without it"
        )
    else:
        hint = (
            f"convert {column!r} in LanceDB to text, a number, a bool or a list of those (e.g. "
            "base64 text for bytes), or copy a view of the table without it"
        )
    raise ConfigError(
        f"LanceDB table {table!r} column {column!r} is {t}, which has no exact portable type",
        hint=hint,
    )


def infer_schema(name: str, arrow: pa.Schema) -> CollectionSchema:
    """Describe a table vecmigrate did not create, and say what was assumed."""
    vectors, metadata, notes = [], [], {}
    id_col = next((c for c in ("id", "_id", "pk") if c in arrow.names), None)
    if id_col is None:
        raise ConfigError(f"LanceDB table {name!r} has no id column (id, _id or pk)")
    if id_col != "id":
        raise ConfigError(f"LanceDB table {name!r} keeps ids in {id_col!r}; rename it to 'id'")
    id_arrow = arrow.field("id").type
    if pa.types.is_integer(id_arrow):
        id_type = IdType.INT
    elif is_text(id_arrow):
        id_type = IdType.STRING
    else:
        raise ConfigError(
            f"LanceDB table {name!r} has ids of type {id_arrow}; ids must be integers or text",
            hint="add an integer or text id column to the table",
        )
    doc = next(
        (c for c in _DOC_COLUMNS if c in arrow.names and is_text(arrow.field(c).type)),
        None,
    )

    def field_of(column: str, t: pa.DataType) -> MetadataField:
        mtype, note = foreign_type(name, column, t)
        if note:
            notes[f"{column}.type"] = note
        return MetadataField(name=column, type=mtype)

    for f in arrow:
        if f.name in ("id", doc, "metadata_extra"):
            continue
        if pa.types.is_fixed_size_list(f.type) and pa.types.is_floating(f.type.value_type):
            vectors.append(
                VectorField(
                    name=f.name,
                    dim=f.type.list_size,
                    metric=Metric.COSINE,
                    index=IndexSpec(kind="flat"),
                )
            )
            notes[f"{f.name}.metric"] = "assumed cosine: LanceDB stores no metric"
        elif f.name == "metadata" and pa.types.is_struct(f.type):
            metadata += [field_of(c.name, c.type) for c in f.type]
        else:
            metadata.append(field_of(f.name, f.type))
    if doc and doc != "document":
        raise ConfigError(f"LanceDB table {name!r} keeps text in {doc!r}; rename it to 'document'")
    return CollectionSchema(
        name=name,
        id_type=id_type,
        vectors=tuple(vectors),
        metadata=tuple(metadata),
        has_document=doc is not None,
        engine="lancedb",
        engine_settings=notes,
    )
