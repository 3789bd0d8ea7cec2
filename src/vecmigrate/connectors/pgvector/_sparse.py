"""Sparse vectors as pgvector ``sparsevec`` columns, used only by ``connectors/pgvector*.py``.

pgvector's binary form (``sparsevec_send``/``sparsevec_recv``) is, big endian: int32 dim,
int32 nnz, int32 unused, nnz x int32 indices (0-based, like vecmigrate's; only the text
form ``{1:0.5}/9`` is 1-based), nnz x float4 values. Writes send those bytes through
binary COPY; reads select ``sparsevec_send(col)`` and parse them, so no text is parsed.

pgvector needs a dimension: the field's ``dim`` when the schema records one, else
``MAX_DIM`` (pgvector's largest, 1,000,000,000), which admits every index below it.
Values pgvector would refuse or alter are refused here first, naming record and field:
more than ``MAX_NNZ`` non-zeros, indices not strictly ascending (unsorted or repeated),
an index >= dim, NaN/infinite values, and explicit zeros (pgvector stores none, so they
would be dropped silently).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import SPARSE_TYPE, Metric, SparseField

MAX_DIM = 1_000_000_000
MAX_NNZ = 16_000
SPARSE_OPS = {
    Metric.COSINE: "sparsevec_cosine_ops",
    Metric.DOT: "sparsevec_ip_ops",
    Metric.L2: "sparsevec_l2_ops",
}
_HEADER = struct.Struct(">iii")


def sparse_dim(field: SparseField) -> int:
    """The ``sparsevec(N)`` dimension a field is stored with."""
    return field.dim or MAX_DIM


def column_type(field: SparseField) -> str:
    """SQL type of the column holding ``field``."""
    dim = sparse_dim(field)
    if dim > MAX_DIM:
        raise ConfigError(
            f"sparse field {field.name!r} has dimension {dim}; pgvector allows at most {MAX_DIM}"
        )
    return f"sparsevec({dim})"


def encode(
    collection: str, field: SparseField, column: pa.Array, ids: list[Any]
) -> list[bytes | None]:
    """One ``SPARSE_TYPE`` column as sparsevec binary values, validated (see module doc).

    Validation and byte layout are whole-column numpy operations; only the final slicing
    of one buffer into per-row ``bytes`` (what COPY writes) is a Python loop.
    """
    dim = sparse_dim(field)
    if column.type != SPARSE_TYPE:
        raise DataError(f"sparse column has type {column.type}", collection=collection)
    n = len(column)
    idx_list, val_list = column.flatten()  # honours the struct's offset and validity

    def bad(row: int, why: str) -> DataError:
        return DataError(why, collection=collection, record_id=ids[row], field=field.name)

    valid = column.is_valid().to_numpy(zero_copy_only=False)
    holes = valid & ~(
        idx_list.is_valid().to_numpy(zero_copy_only=False)
        & val_list.is_valid().to_numpy(zero_copy_only=False)
    )
    if holes.any():
        raise bad(int(np.argmax(holes)), "sparse vector has null indices or values")
    io = idx_list.offsets.to_numpy()
    vo = val_list.offsets.to_numpy()
    li, lv = np.diff(io), np.diff(vo)
    iv = idx_list.values.slice(io[0], io[-1] - io[0])
    vv = val_list.values.slice(vo[0], vo[-1] - vo[0])
    for child in (iv, vv):
        if child.null_count:
            owner = np.repeat(np.arange(n), li if child is iv else lv)
            pos = int(np.argmax(~child.is_valid().to_numpy(zero_copy_only=False)))
            raise bad(int(owner[pos]), "sparse vector has a null index or value")
    # Keep only the elements of records that have a sparse vector.
    idx = iv.to_numpy(zero_copy_only=False).astype(np.int64)[np.repeat(valid, li)]
    val = vv.to_numpy(zero_copy_only=False).astype(np.float32)[np.repeat(valid, lv)]
    if (mismatch := valid & (li != lv)).any():
        r = int(np.argmax(mismatch))
        raise bad(r, f"sparse vector has {li[r]} indices but {lv[r]} values")
    nnz = np.where(valid, li, 0)
    if (nnz > MAX_NNZ).any():
        r = int(np.argmax(nnz > MAX_NNZ))
        raise bad(r, f"sparse vector has {nnz[r]} non-zeros; pgvector allows {MAX_NNZ}")
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(nnz, out=starts[1:])
    owner = np.repeat(np.arange(n), nnz)  # record of each kept element

    def first(elements: np.ndarray, why: str) -> None:
        if elements.any():
            raise bad(int(owner[int(np.argmax(elements))]), why)

    ascending = np.ones(len(idx), dtype=bool)
    ascending[1:] = idx[1:] > idx[:-1]
    ascending[starts[:-1][nnz > 0]] = True  # a record's first index has no predecessor
    first(~ascending, "sparse vector indices are not strictly ascending (unsorted or repeated)")
    if (outside := idx >= dim).any():
        r = int(owner[int(np.argmax(outside))])
        raise bad(
            r, f"sparse vector index {int(idx[outside][0])} is outside the field's dimension {dim}"
        )
    first(~np.isfinite(val), "sparse vector has a NaN or infinite value; pgvector refuses them")
    first(val == 0, "sparse vector stores an explicit zero; pgvector would drop it")
    # One big-endian int32 buffer: per record [dim, nnz, 0, indices..., value bits...].
    sizes = 3 + 2 * nnz
    word = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=word[1:])
    buf = np.empty(int(word[-1]), dtype=">i4")
    buf[word[:-1]] = dim
    buf[word[:-1] + 1] = nnz
    buf[word[:-1] + 2] = 0
    rank = np.arange(len(idx)) - starts[:-1][owner]  # position inside its record
    at = word[:-1][owner] + 3 + rank
    buf[at] = idx
    buf[at + nnz[owner]] = val.astype(">f4").view(">i4")
    raw = buf.tobytes()
    offsets = (word * 4).tolist()
    return [raw[offsets[r] : offsets[r + 1]] if valid[r] else None for r in range(n)]


def decode(values: tuple[bytes | None, ...]) -> pa.StructArray:
    """``sparsevec_send`` results as one ``SPARSE_TYPE`` column (null stays null)."""
    n = len(values)
    lengths = np.zeros(n, dtype=np.int32)
    idx_parts: list[np.ndarray] = []
    val_parts: list[np.ndarray] = []
    for r, raw in enumerate(values):
        if raw is None:
            continue
        _, nnz, _ = _HEADER.unpack_from(raw)
        body = np.frombuffer(raw, dtype=">i4", count=nnz, offset=12)
        idx_parts.append(body)
        val_parts.append(np.frombuffer(raw, dtype=">f4", count=nnz, offset=12 + 4 * nnz))
        lengths[r] = nnz
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    idx = np.concatenate(idx_parts).astype(np.uint32) if idx_parts else np.zeros(0, np.uint32)
    val = np.concatenate(val_parts).astype(np.float32) if val_parts else np.zeros(0, np.float32)
    off = pa.array(offsets, pa.int32())
    mask = pa.array([raw is None for raw in values], pa.bool_())
    return pa.StructArray.from_arrays(
        [
            pa.ListArray.from_arrays(off, pa.array(idx)),
            pa.ListArray.from_arrays(off, pa.array(val)),
        ],
        fields=list(SPARSE_TYPE),
        mask=mask,
    )
