"""Sparse vectors as Milvus ``SPARSE_FLOAT_VECTOR`` fields, used only by ``connectors/milvus*.py``.

Milvus 2.4 added the type (milvus-lite 2.5 has it; a 2.3 server does not). A sparse row
travels as a ``{index: value}`` dict and comes back with its indices sorted, so indices
that are not strictly ascending (unsorted or repeated) are refused rather than reordered
or merged silently; so are indices Milvus refuses (it allows ``0 <= index < 2**32 - 1``)
and NaN values. Explicit zeros, negative and infinite values round-trip unchanged.

Milvus vector fields are not nullable: a record without a sparse vector is stored as an
empty one and, in the ``json`` layout, ``metadata_present["sparse"][name]`` says which it
was. Every vector field needs an index before a collection loads: sparse fields get
``SPARSE_INVERTED_INDEX`` with ``IP``, the only metric Milvus sparse fields take (another
portable metric stays in the stored schema and is noted).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.errors import DataError
from vecmigrate.model import SPARSE_TYPE, Metric, SparseField

MAX_INDEX = 2**32 - 2  # Milvus: "sparse vector index must be ... less than 2^32-1"
INDEX_TYPE = "SPARSE_INVERTED_INDEX"


def index_note(field: SparseField) -> str | None:
    """Why the field's Milvus index uses another metric than the schema's, if it does."""
    if field.metric is Metric.DOT:
        return None
    return f"IP index (Milvus sparse fields have no {field.metric.value} metric)"


def to_rows(
    collection: str, field: SparseField, column: pa.Array, ids: list[Any]
) -> list[dict[int, float] | None]:
    """One ``SPARSE_TYPE`` column as Milvus sparse dicts (None where the record has none)."""
    if column.type != SPARSE_TYPE:
        raise DataError(f"sparse column has type {column.type}", collection=collection)
    out: list[dict[int, float] | None] = []
    for r, item in enumerate(column.to_pylist()):
        if item is None:
            out.append(None)
            continue

        def bad(why: str, row: int = r) -> DataError:
            return DataError(why, collection=collection, record_id=ids[row], field=field.name)

        idx, val = item["indices"], item["values"]
        if idx is None or val is None or None in idx or None in val:
            raise bad("sparse vector has null indices or values")
        if len(idx) != len(val):
            raise bad(f"sparse vector has {len(idx)} indices but {len(val)} values")
        i = np.asarray(idx, dtype=np.int64)
        if len(i) > 1 and not bool(np.all(i[1:] > i[:-1])):
            raise bad("sparse vector indices are not strictly ascending (unsorted or repeated)")
        if len(i) and int(i[-1]) > MAX_INDEX:
            raise bad(f"sparse vector index {int(i[-1])} exceeds Milvus' maximum {MAX_INDEX}")
        if bool(np.any(np.isnan(np.asarray(val, dtype=np.float32)))):
            raise bad("sparse vector has a NaN value; Milvus refuses them")
        out.append(dict(zip(idx, val, strict=True)))
    return out


def from_rows(values: list[Any]) -> list[dict[str, list[Any]] | None]:
    """Milvus sparse dicts (None: the record had none) as ``SPARSE_TYPE`` values."""
    out: list[dict[str, list[Any]] | None] = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        items = sorted((int(k), float(x)) for k, x in dict(v).items())
        out.append({"indices": [k for k, _ in items], "values": [x for _, x in items]})
    return out


def read_column(
    rows: list[dict[str, Any]], field: SparseField, json_layout: bool
) -> list[dict[str, list[Any]] | None]:
    """One sparse field of query rows, absent where ``metadata_present`` says so."""
    values = []
    for r in rows:
        present = (r.get("metadata_present") or {}).get("sparse", {}) if json_layout else {}
        values.append(r.get(field.name) if present.get(field.name, True) else None)
    return from_rows(values)
