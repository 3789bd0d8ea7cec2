"""The portable types of the columns of LanceDB tables other tools made (used only by
``connectors.lancedb``; see its module docstring for the rules)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import (
    CollectionSchema,
    MetadataField,
    MetadataType,
    VectorField,
    is_text,
    portable_type,
)
from vecmigrate.records import conform, encode_json, table_to_batch

_ISO_NOTE = "read as ISO-8601 text (a mapping's cast: date / timestamp makes an int64 epoch)"


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


def native_batch(table: pa.Table, schema: CollectionSchema) -> pa.RecordBatch:
    """A table vecmigrate laid out, in ``schema``'s batch layout (a ``metadata`` struct
    with other fields than ``schema``'s is narrowed to its fields by name).

    Dates and timestamps become ISO-8601 text and nested values JSON text here; every
    other type is left to ``conform``, which widens it exactly or files values that do
    not fit in ``metadata_extra``."""
    batch = table_to_batch(table)
    names = batch.schema.names
    if not schema.metadata or (
        "metadata" in names
        and batch.schema.field("metadata").type.equals(schema.metadata_struct_type())
    ):
        return conform(batch, schema)
    if "metadata" in names and pa.types.is_struct(batch.schema.field("metadata").type):
        struct = batch.column(names.index("metadata"))
        by_name = dict(zip([c.name for c in struct.type], struct.flatten(), strict=True))
        source = {m.name: by_name[m.name] for m in schema.metadata if m.name in by_name}
        batch = batch.remove_column(names.index("metadata"))
    else:
        source = {m.name: batch.column(m.name) for m in schema.metadata if m.name in names}
    if len(source) == len(schema.metadata):
        children = [portable_column(source[m.name], m) for m in schema.metadata]
        metadata = pa.StructArray.from_arrays(children, names=[m.name for m in schema.metadata])
        batch = batch.append_column("metadata", metadata)
    return conform(batch, schema)


def index_options(v: VectorField) -> dict[str, int]:
    """``create_index`` arguments from ``v``'s portable index parameters: HNSW's M and
    ef_construction; PQ's sub-vectors (where they divide the dimension: LanceDB's own
    default otherwise) and bits. IVF partitions are LanceDB's own, from the row count: a
    source's nlist was sized for its rows."""
    params = v.index.params if v.index else {}
    kind = v.index.kind if v.index else "auto"
    out: dict[str, int] = {}
    if kind == "hnsw":
        if "M" in params or "m" in params:
            out["m"] = int(params.get("M", params.get("m", 20)))
        if "ef_construction" in params:
            out["ef_construction"] = int(params["ef_construction"])
    elif kind == "ivf_pq":
        sub = int(params.get("m", 0))
        if sub and v.dim % sub == 0:
            out["num_sub_vectors"] = sub
        if int(params.get("nbits", 8)) in (4, 8):
            out["num_bits"] = int(params.get("nbits", 8))
    return out


def build_field_indexes(table: Any, schema: CollectionSchema) -> None:
    """A scalar index on each metadata field the source indexed (filters on it served,
    as there): BTree on a scalar, LabelList on a list; a JSON field (text here) has none."""
    from lancedb.index import BTree, LabelList

    for m in schema.metadata:
        if m.indexed and m.type != "json":
            config = LabelList() if m.type.startswith("list<") else BTree()
            table.create_index(f"metadata.{m.name}", config=config, replace=True)
