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
from vecmigrate.connectors.pgvector._schema import doc_column, has_extra
from vecmigrate.connectors.pgvector._sql import SQL_TYPE
from vecmigrate.errors import DataError
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.records import conform, encode_json, vectors_to_numpy


def select_list(schema: CollectionSchema) -> sql.Composed:
    """The SELECT columns whose rows ``rows_to_batch`` reads, in its order."""
    cols: list[sql.Composable] = [sql.SQL("id")]
    if schema.has_document:
        cols.append(sql.Identifier(doc_column(schema)))
    cols += [sql.SQL("vector_send({})").format(sql.Identifier(v.name)) for v in schema.vectors]
    cols += [sql.SQL("sparsevec_send({})").format(sql.Identifier(s.name)) for s in schema.sparse]
    # json-typed columns go through to_jsonb so timestamps, numerics etc. arrive as JSON.
    cols += [
        sql.SQL("to_jsonb({})").format(sql.Identifier(m.name))
        if m.type == "json"
        else sql.Identifier(m.name)
        for m in schema.metadata
    ]
    cols.append(sql.SQL("metadata_extra") if has_extra(schema) else sql.SQL("NULL::jsonb"))
    return sql.SQL(", ").join(cols)


def rows_to_batch(rows: list[tuple[Any, ...]], schema: CollectionSchema) -> pa.RecordBatch:
    """Rows selected with ``select_list`` as one conformed batch."""
    width = 2 + schema.has_document + len(schema.vectors) + len(schema.sparse)
    width += len(schema.metadata)
    columns = list(zip(*rows, strict=True)) if rows else [()] * width
    n = len(rows)
    arrays: dict[str, pa.Array] = {"id": pa.array(columns[0], schema.id_arrow_type())}
    i = 1
    if schema.has_document:
        arrays["document"] = pa.array(columns[1], pa.string())
        i = 2
    for v in schema.vectors:
        raw = np.frombuffer(b"".join(columns[i]), dtype=">f4").reshape(n, v.dim + 1)
        matrix = raw[:, 1:].astype(np.float32)
        arrays[v.name] = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), v.dim)
        i += 1
    for s in schema.sparse:
        arrays[s.name] = pgvector_sparse.decode(columns[i])
        i += 1
    children = []
    for m in schema.metadata:
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


def typed_ids(schema: CollectionSchema, ids: Sequence[Any]) -> list[Any]:
    """Ids as the ``id`` column's Python type (bigint or text)."""
    return [int(i) for i in ids] if schema.id_type is IdType.INT else [str(i) for i in ids]


def copy_rows(
    name: str, schema: CollectionSchema, batch: pa.RecordBatch
) -> tuple[list[str], list[str], list[tuple[Any, ...]]]:
    """A conformed batch as (column names, COPY types, rows) for binary COPY into ``name``."""
    extra = batch.column("metadata_extra")
    if not has_extra(schema) and extra.null_count < len(extra):
        row = next(i for i, x in enumerate(extra.to_pylist()) if x)
        raise DataError(
            f"table {name!r} has no metadata_extra column for values that do not fit its types",
            collection=name,
            record_id=batch.column("id")[row].as_py(),
            field="metadata_extra",
        )
    names = ["id"] + ([doc_column(schema)] if schema.has_document else [])
    names += [v.name for v in schema.vectors] + [s.name for s in schema.sparse]
    names += [m.name for m in schema.metadata]
    ids = typed_ids(schema, batch.column("id").to_pylist())
    columns: list[Sequence[Any]] = [ids]
    if schema.has_document:
        columns.append(batch.column("document").to_pylist())
    for v in schema.vectors:
        m = vectors_to_numpy(batch.column(v.name))
        raw = np.empty((len(m), v.dim + 1), dtype=">f4")
        raw[:, 1:] = m
        raw.view(">i2")[:, 0] = v.dim
        raw.view(">i2")[:, 1] = 0
        columns.append([r.tobytes() for r in raw])
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
    if has_extra(schema):
        names.append("metadata_extra")
        columns.append([None if x is None else json.loads(x) for x in extra.to_pylist()])
        types.append("jsonb")
    return names, types, list(zip(*columns, strict=True))
