"""Arrow batches to and from pgvector table rows, used only by ``connectors/pgvector.py``.

Vectors travel in pgvector's binary form (int16 dim, int16 unused, dim x float4, big
endian; sparse vectors as ``_sparse`` describes) both ways: ``vector_send`` on
reads lands in one numpy array per field, and binary COPY on writes sends each row's
bytes untouched, so no per-value text parsing happens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from psycopg import sql

from vecmigrate.connectors.pgvector import _sparse as pgvector_sparse
from vecmigrate.connectors.pgvector._schema import Layout, layout_of
from vecmigrate.connectors.pgvector._sql import SQL_TYPE
from vecmigrate.errors import DataError
from vecmigrate.model import CollectionSchema, IdType, MetadataField
from vecmigrate.records import (
    conform,
    encode_json,
    metadata_to_arrow,
    numpy_to_vectors,
    vectors_to_numpy,
)


def select_list(schema: CollectionSchema) -> sql.Composed:
    """The SELECT columns whose rows ``rows_to_batch`` reads, in its order."""
    layout = layout_of(schema)
    cols: list[sql.Composable] = [layout.key_sql()]
    if schema.has_document:
        cols.append(sql.Identifier(layout.document or "document"))
    cols += [layout.vector_read(v.name) for v in schema.vectors]
    cols += [sql.SQL("sparsevec_send({})").format(layout.column(s.name)) for s in schema.sparse]
    # json-typed columns go through to_jsonb so timestamps, numerics etc. arrive as JSON.
    cols += [layout.field_sql(m)[0] for m in layout.column_fields(schema)]
    if layout.foreign:
        cols.append(sql.Identifier(layout.metadata) if layout.metadata else sql.SQL("NULL::jsonb"))
    cols.append(sql.SQL("metadata_extra") if layout.extra else sql.SQL("NULL::jsonb"))
    return sql.SQL(", ").join(cols)


def rows_to_batch(rows: list[tuple[Any, ...]], schema: CollectionSchema) -> pa.RecordBatch:
    """Rows selected with ``select_list`` as one conformed batch."""
    layout = layout_of(schema)
    fields = layout.column_fields(schema)
    width = 2 + schema.has_document + len(schema.vectors) + len(schema.sparse) + len(fields)
    width += layout.foreign
    columns = list(zip(*rows, strict=True)) if rows else [()] * width
    n = len(rows)
    arrays: dict[str, pa.Array] = {"id": pa.array(columns[0], schema.id_arrow_type())}
    i = 1
    if schema.has_document:
        arrays["document"] = pa.array(columns[1], pa.string())
        i = 2
    for v in schema.vectors:
        arrays[v.name] = _vectors(columns[i], columns[0], v.name, v.dim, schema.name)
        i += 1
    for s in schema.sparse:
        arrays[s.name] = pgvector_sparse.decode(columns[i])
        i += 1
    if layout.foreign:
        # Columns and JSON keys of a table vecmigrate did not lay out are filed like any
        # engine's metadata: a value that does not fit its field lands in metadata_extra.
        struct, extra = metadata_to_arrow(
            _metadata_dicts(layout, fields, columns[i : i + len(fields) + 2], n),
            schema,
            explicit_nulls=True,
        )
        if struct is not None:
            arrays["metadata"] = struct
        arrays["metadata_extra"] = extra
        return conform(pa.RecordBatch.from_pydict(arrays), schema)
    children = []
    for m in fields:
        values = columns[i]
        if m.type == "json":
            values = tuple(None if x is None else encode_json(x) for x in values)
        children.append(pa.array(values, m.arrow_type))
        i += 1
    if schema.metadata:
        arrays["metadata"] = pa.StructArray.from_arrays(
            children, fields=list(schema.metadata_struct_type())
        )
    arrays["metadata_extra"] = pa.array(
        [None if x is None else encode_json(x) for x in columns[i]], pa.string()
    )
    return conform(pa.RecordBatch.from_pydict(arrays), schema)


def _vectors(
    sent: Sequence[bytes | None], ids: Sequence[Any], field: str, dim: int, collection: str
) -> pa.FixedSizeListArray:
    """``vector_send`` bytes as one float32 list array. A NULL (an application's row not
    embedded yet) is a null vector, refused per record downstream (dead letter); a row of
    another length (a column declared without dimensions) is refused naming the record."""
    size = 4 * (dim + 1)
    nulls = [b is None for b in sent]
    wrong = next((r for r, b in enumerate(sent) if b is not None and len(b) != size), None)
    if wrong is not None:
        held = (len(sent[wrong] or b"") - 4) // 4
        raise DataError(
            f"vector has {held} dimensions; the collection is {dim}-d",
            collection=collection,
            record_id=ids[wrong],
            field=field,
            hint="the column declares no dimension and its rows hold several; a vector "
            "field has one: copy the other rows apart (--ids-file)",
        )
    blank = bytes(size)
    joined = b"".join(blank if b is None else b for b in sent)
    matrix = np.frombuffer(joined, dtype=">f4").reshape(len(sent), dim + 1)[:, 1:]
    return numpy_to_vectors(matrix, nulls)


def _metadata_dicts(
    layout: Layout, fields: list[MetadataField], columns: Sequence[Sequence[Any]], n: int
) -> list[dict[str, Any]]:
    """Per-row metadata of a table vecmigrate did not lay out: its columns, its JSON
    metadata column's keys (by field name; a key no field holds keeps its name, prefixed with the
    column's when a column has that name), then ``metadata_extra``."""
    field_of = {k: f for f, k in layout.json_keys.items()}
    names = {f.name for f in fields} | set(layout.json_keys)
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for f, values in zip(fields, columns, strict=False):
        for row, value in zip(out, values, strict=True):
            if value is not None:
                row[f.name] = value
    for row, obj in zip(out, columns[len(fields)], strict=True):
        if obj is None:
            continue
        if not isinstance(obj, dict):
            row[str(layout.metadata)] = obj
            continue
        for key, value in obj.items():
            name = field_of.get(key) or (key if key not in names else f"{layout.metadata}.{key}")
            row[name] = value
    for row, extra in zip(out, columns[len(fields) + 1], strict=True):
        if extra:
            row.update(extra)
    return out


def typed_ids(schema: CollectionSchema, ids: Sequence[Any]) -> list[Any]:
    """Ids as the key column takes them (bigint, text or uuid)."""
    return layout_of(schema).typed_ids(schema, ids)


def vector_bytes(column: pa.Array, dim: int) -> list[bytes]:
    """A vector column as pgvector's binary form, one ``bytes`` per row."""
    m = vectors_to_numpy(column)
    raw = np.empty((len(m), dim + 1), dtype=">f4")
    raw[:, 1:] = m
    raw.view(">i2")[:, 0] = dim
    raw.view(">i2")[:, 1] = 0
    return [r.tobytes() for r in raw]


def copy_rows(
    name: str, schema: CollectionSchema, batch: pa.RecordBatch
) -> tuple[list[str], list[str], list[tuple[Any, ...]]]:
    """A conformed batch as (column names, COPY types, rows) for binary COPY into ``name``."""
    extra = batch.column("metadata_extra")
    if extra.null_count < len(extra) and not layout_of(schema).extra:
        row = next(i for i, x in enumerate(extra.to_pylist()) if x)
        raise DataError(
            f"table {name!r} has no metadata_extra column for values that do not fit its types",
            collection=name,
            record_id=batch.column("id")[row].as_py(),
            field="metadata_extra",
        )
    names = ["id"] + (["document"] if schema.has_document else [])
    names += [v.name for v in schema.vectors] + [s.name for s in schema.sparse]
    names += [m.name for m in schema.metadata]
    ids = typed_ids(schema, batch.column("id").to_pylist())
    columns: list[Sequence[Any]] = [ids]
    if schema.has_document:
        columns.append(batch.column("document").to_pylist())
    for v in schema.vectors:
        columns.append(vector_bytes(batch.column(v.name), v.dim))
    for s in schema.sparse:
        columns.append(pgvector_sparse.encode(name, s, batch.column(s.name), ids))
    if schema.metadata:
        struct = batch.column("metadata")
        for f, child in zip(schema.metadata, struct.flatten(), strict=True):
            values = child.to_pylist()
            columns.append(
                [None if x is None else json.loads(x) for x in values]
                if f.type == "json"
                else values
            )
    types = ["bigint" if schema.id_type is IdType.INT else "text"] + (
        ["text"] if schema.has_document else []
    )
    # Binary COPY passes "bytea" values through untouched to the column's recv function.
    types += ["bytea"] * (len(schema.vectors) + len(schema.sparse))
    types += [SQL_TYPE[m.type] for m in schema.metadata]
    if layout_of(schema).extra:
        names.append("metadata_extra")
        columns.append([None if x is None else json.loads(x) for x in extra.to_pylist()])
        types.append("jsonb")
    return names, types, list(zip(*columns, strict=True))
