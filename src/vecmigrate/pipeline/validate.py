"""Record checks against a target's declared limits, made before anything is sent, so an
oversized record becomes a named dead letter instead of an engine error mid-batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.model import CollectionSchema, Metric
from vecmigrate.records import encode_json, metadata_rows, vectors_to_numpy


def _string_bytes(col: pa.Array) -> np.ndarray:
    """Byte length per row of a string column (0 for null)."""
    return np.asarray(pc.binary_length(col).fill_null(0), dtype=np.int64)


def _value_bytes(col: pa.Array) -> np.ndarray:
    """Upper bound of each value's JSON length: 6 bytes per string byte (``\\uXXXX``
    escapes), 64 for any number, bool or null."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return _string_bytes(col) * 6 + 8
    return np.full(len(col), 64, dtype=np.int64)


def metadata_upper_bound(batch: pa.RecordBatch) -> np.ndarray:
    """A cheap, vectorised upper bound of each record's metadata size as JSON; only rows
    over the limit by this bound are measured exactly (per-record JSON)."""
    n = batch.num_rows
    size = np.zeros(n, dtype=np.int64)
    names = batch.schema.names
    if "metadata" in names:
        struct = batch.column(names.index("metadata"))
        for fld, child in zip(struct.type, struct.flatten(), strict=True):
            size += len(fld.name.encode()) * 6 + 8
            if pa.types.is_list(child.type):
                values = child.flatten()
                parents = np.asarray(pc.list_parent_indices(child))
                size += np.bincount(parents, _value_bytes(values), minlength=n).astype(np.int64)
            size += _value_bytes(child)
    if "metadata_extra" in names:
        size += _string_bytes(batch.column(names.index("metadata_extra")))
    return size


def oversized_metadata(
    batch: pa.RecordBatch, schema: CollectionSchema, limit: int | None
) -> dict[int, tuple[str, str]]:
    """{row: (reason, "metadata")} for records whose metadata, as JSON, exceeds ``limit``
    bytes (the target's ``max_metadata_bytes``); exact for every row it names."""
    if limit is None or batch.num_rows == 0:
        return {}
    suspects = np.flatnonzero(metadata_upper_bound(batch) > limit)
    out: dict[int, tuple[str, str]] = {}
    for row in suspects.tolist():
        meta = metadata_rows(batch.slice(row, 1), schema)[0]
        size = len(encode_json(meta).encode())
        if size > limit:
            out[int(row)] = (
                f"metadata is {size:,} bytes as JSON; the target allows {limit:,}",
                "metadata",
            )
    return out


def invalid_vector_rows(
    batch: pa.RecordBatch, schema: CollectionSchema
) -> list[tuple[int, str, str]]:
    """(row, field, reason) for records no engine should receive: null/NaN/Inf vectors,
    zero vectors under cosine (no direction: engines return NaN or divide by zero),
    null or empty ids."""
    checks: list[tuple[np.ndarray, str, str]] = []
    for v in schema.vectors:
        col = batch.column(v.name)
        if col.null_count:
            checks.append((col.is_null().to_numpy(zero_copy_only=False), v.name, "vector is null"))
        else:
            matrix = vectors_to_numpy(col)
            nonfinite, zero = _suspect_rows(matrix, v.metric is Metric.COSINE)
            checks.append((nonfinite, v.name, "vector contains NaN or Inf"))
            if zero is not None:
                checks.append((zero, v.name, "zero vector: undefined under cosine"))
    ids = batch.column("id")
    if ids.null_count:
        checks.append((ids.is_null().to_numpy(zero_copy_only=False), "id", "id is null"))
    elif pa.types.is_string(ids.type):
        checks.append((np.asarray(pc.utf8_length(ids)) == 0, "id", "id is empty"))
    return [(int(i), fld, why) for mask, fld, why in checks for i in np.flatnonzero(mask)]


def _suspect_rows(matrix: np.ndarray, cosine: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Masks of the rows holding NaN or Inf, and (``cosine``) of the all-zero rows. One
    pass (each row's sum) finds the candidates: a NaN or Inf makes the sum non-finite and
    a zero row sums to 0; only those rows are checked value by value (a sum can also
    overflow, or cancel to 0). ``einsum``, not a BLAS product: OpenBLAS's threads spin
    after each call, taking a core from the copy."""
    with np.errstate(over="ignore", invalid="ignore"):
        sums = np.einsum("ij->i", matrix)
    nonfinite = ~np.isfinite(sums)
    if nonfinite.any():
        rows = np.flatnonzero(nonfinite)
        nonfinite[rows] = ~np.isfinite(matrix[rows]).all(axis=1)
    if not cosine:
        return nonfinite, None
    zero = sums == 0
    if zero.any():
        rows = np.flatnonzero(zero)
        zero[rows] = ~np.any(matrix[rows], axis=1)
    return nonfinite, zero
