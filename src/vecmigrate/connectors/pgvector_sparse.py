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
    """One ``SPARSE_TYPE`` column as sparsevec binary values, validated (see module doc)."""
    dim = sparse_dim(field)
    if column.type != SPARSE_TYPE:
        raise DataError(f"sparse column has type {column.type}", collection=collection)
    idx_list, val_list = column.flatten()  # honours the struct's offset and validity

    def bad(row: int, why: str) -> DataError:
        return DataError(why, collection=collection, record_id=ids[row], field=field.name)

    if idx_list.values.null_count or val_list.values.null_count:
        row = next(
            r
            for r, (i, v) in enumerate(zip(idx_list.to_pylist(), val_list.to_pylist(), strict=True))
            if None in (i or []) or None in (v or [])
        )
        raise bad(row, "sparse vector has a null index or value")
    io = idx_list.offsets.to_numpy()
    vo = val_list.offsets.to_numpy()
    iv = idx_list.values.to_numpy(zero_copy_only=False).astype(np.int64)
    vv = val_list.values.to_numpy(zero_copy_only=False).astype(np.float32)
    struct_valid = column.is_valid().to_numpy(zero_copy_only=False)
    idx_valid = idx_list.is_valid().to_numpy(zero_copy_only=False)
    val_valid = val_list.is_valid().to_numpy(zero_copy_only=False)
    out: list[bytes | None] = []
    for r in range(len(column)):
        if not struct_valid[r]:
            out.append(None)
            continue
        if not (idx_valid[r] and val_valid[r]):
            raise bad(r, "sparse vector has null indices or values")
        i = iv[io[r] : io[r + 1]]
        v = vv[vo[r] : vo[r + 1]]
        nnz = len(i)
        if nnz != len(v):
            raise bad(r, f"sparse vector has {nnz} indices but {len(v)} values")
        if nnz > MAX_NNZ:
            raise bad(r, f"sparse vector has {nnz} non-zeros; pgvector allows {MAX_NNZ}")
        if nnz > 1 and not bool(np.all(i[1:] > i[:-1])):
            raise bad(r, "sparse vector indices are not strictly ascending (unsorted or repeated)")
        if nnz and int(i[-1]) >= dim:
            raise bad(
                r,
                f"sparse vector index {int(i[-1])} is outside the field's dimension {dim}",
            )
        if not bool(np.all(np.isfinite(v))):
            raise bad(r, "sparse vector has a NaN or infinite value; pgvector refuses them")
        if not bool(np.all(v != 0)):
            raise bad(r, "sparse vector stores an explicit zero; pgvector would drop it")
        out.append(
            _HEADER.pack(dim, nnz, 0) + i.astype(">i4").tobytes() + v.astype(">f4").tobytes()
        )
    return out


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
