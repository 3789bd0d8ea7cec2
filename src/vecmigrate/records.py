"""Build and read record batches in the layout ``CollectionSchema.arrow_schema()`` defines.

Connectors use these helpers so that every engine produces identical batches. Vectors
move as numpy arrays viewed over Arrow buffers, never as per-record Python lists.
Metadata values are filed by ``vecmigrate.values`` and batches conformed to a layout by
``vecmigrate.layout``; both are re-exported here, where connectors import them from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.errors import DataError
from vecmigrate.layout import conform, layout_problems
from vecmigrate.model import SPARSE_TYPE, CollectionSchema
from vecmigrate.values import encode_json, infer_metadata_fields, metadata_to_arrow, value_fits

__all__ = [
    "build_batch",
    "conform",
    "encode_json",
    "infer_metadata_fields",
    "layout_problems",
    "metadata_rows",
    "metadata_to_arrow",
    "numpy_to_vectors",
    "table_to_batch",
    "value_fits",
    "vectors_to_numpy",
]


def vectors_to_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """View a ``FixedSizeList<float32>`` column as an (n, dim) float32 array (no copy)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    dim = column.type.list_size
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{column.null_count} null vector(s), the first at row {row}")
    values = column.flatten()  # honours the array offset
    arr = values.to_numpy(zero_copy_only=values.null_count == 0 and values.type == pa.float32())
    matrix = np.asarray(arr, dtype=np.float32).reshape(len(column), dim)
    if values.type != pa.float32():
        # Wider vectors (float64) move only when float32 holds every value exactly.
        wide = np.asarray(arr, dtype=np.float64).reshape(len(column), dim)
        same = (matrix == wide) | (np.isnan(matrix) & np.isnan(wide))
        if not same.all():
            row = int(np.flatnonzero(~same.all(axis=1))[0])
            raise DataError(
                f"vector at row {row} is {values.type} and not exactly representable as float32",
                hint="if float32 precision is enough, let the copy round them: "
                "vectors: {NAME: {round_to_float32: true}} in a mapping file",
            )
    return matrix


def vectors_or_nan(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``vectors_to_numpy``, a null vector as a row of NaN: what digests and record
    comparisons hold for a record a copy refuses (an application's row not embedded yet),
    so the check can name it instead of stopping."""
    if column.null_count == 0:
        return vectors_to_numpy(column)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    dim = column.type.list_size
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    children = column.values.slice(column.offset * dim, len(column) * dim)
    matrix = (
        np.asarray(children.to_numpy(zero_copy_only=False), dtype=np.float32)
        .reshape(len(column), dim)
        .copy()
    )
    matrix[nulls] = np.nan
    return matrix


def numpy_to_vectors(
    matrix: np.ndarray, nulls: Sequence[bool] | None = None
) -> pa.FixedSizeListArray:
    """Wrap an (n, dim) array as ``FixedSizeList<float32>[dim]`` without a Python loop;
    the rows ``nulls`` marks are null vectors (their values are ignored)."""
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    if m.ndim != 2:
        raise DataError(f"vectors must be a 2-d array, got shape {m.shape}")
    mask = pa.array(nulls, pa.bool_()) if nulls is not None and any(nulls) else None
    return pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1)), m.shape[1], mask=mask)


def metadata_rows(batch: pa.RecordBatch, schema: CollectionSchema) -> list[dict[str, Any]]:
    """Per-record metadata dicts (typed values plus ``metadata_extra``).

    A null typed value is an absent key; an explicit null (JSON null in ``metadata_extra``)
    comes back as the key with value None, and an int kept for a float64 field as the int.
    Per-record dicts are what most engine clients accept; connectors that can take
    columns should read the ``metadata`` struct children directly instead.
    """
    n = batch.num_rows
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    json_fields = {f.name for f in schema.metadata if f.type == "json"}
    names = batch.schema.names
    if "metadata" in names:
        struct = batch.column(names.index("metadata"))
        for child_field, child in zip(struct.type, struct.flatten(), strict=True):
            values = child.to_pylist()
            is_json = child_field.name in json_fields
            for i, v in enumerate(values):
                if v is not None:
                    out[i][child_field.name] = json.loads(v) if is_json else v
    if "metadata_extra" in names:
        for i, raw in enumerate(batch.column(names.index("metadata_extra")).to_pylist()):
            if raw:
                out[i].update(json.loads(raw))
    return out


def build_batch(
    schema: CollectionSchema,
    ids: Sequence[Any] | pa.Array,
    vectors: Mapping[str, np.ndarray | pa.Array],
    *,
    documents: Sequence[str | None] | pa.Array | None = None,
    metadata: Sequence[Mapping[str, Any] | None] | None = None,
    namespaces: Sequence[str | None] | pa.Array | None = None,
    sparse: Mapping[str, Sequence[Mapping[str, Any] | None]] | None = None,
    explicit_nulls: bool = False,
) -> pa.RecordBatch:
    """Assemble a batch in the schema's layout from columns an engine returned.

    ``explicit_nulls``: a None metadata value is a key set to null (see
    ``metadata_to_arrow``), for engines that store nulls; else it is an absent key.
    """
    n = len(ids)
    meta_struct, meta_extra = metadata_to_arrow(
        metadata or [None] * n, schema, explicit_nulls=explicit_nulls
    )
    arrays: list[pa.Array] = []
    for f in schema.arrow_schema():
        if f.name == "id":
            arrays.append(ids.cast(f.type) if isinstance(ids, pa.Array) else pa.array(ids, f.type))
        elif f.name == "namespace":
            arrays.append(pa.array(namespaces if namespaces is not None else [None] * n, f.type))
        elif f.name == "document":
            arrays.append(pa.array(documents if documents is not None else [None] * n, f.type))
        elif f.name == "metadata":
            arrays.append(meta_struct)
        elif f.name == "metadata_extra":
            arrays.append(meta_extra)
        elif f.type == SPARSE_TYPE:
            arrays.append(pa.array((sparse or {}).get(f.name, [None] * n), type=SPARSE_TYPE))
        else:
            v = vectors[f.name]
            arrays.append(v if isinstance(v, pa.Array) else numpy_to_vectors(v))
    return pa.RecordBatch.from_arrays(arrays, schema=schema.arrow_schema())


def table_to_batch(table: pa.Table) -> pa.RecordBatch:
    """One contiguous batch holding a whole (small) table, empty tables included."""
    combined = table.combine_chunks()
    batches = combined.to_batches()
    if not batches:
        return pa.RecordBatch.from_pylist([], schema=table.schema)
    return batches[0]
