"""Build and read record batches in the layout ``CollectionSchema.arrow_schema()`` defines.

Connectors use these helpers so that every engine produces identical batches. Vectors
move as numpy arrays viewed over Arrow buffers, never as per-record Python lists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.errors import DataError
from vecmigrate.model import SPARSE_TYPE, CollectionSchema, MetadataField, MetadataType


def vectors_to_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """View a ``FixedSizeList<float32>`` column as an (n, dim) float32 array (no copy)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    dim = column.type.list_size
    if column.null_count:
        raise DataError("vector column has null vectors", field=str(column.type))
    values = column.flatten()  # honours the array offset
    arr = values.to_numpy(zero_copy_only=values.null_count == 0 and values.type == pa.float32())
    return np.asarray(arr, dtype=np.float32).reshape(len(column), dim)


def numpy_to_vectors(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """Wrap an (n, dim) array as ``FixedSizeList<float32>[dim]`` without a Python loop."""
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    if m.ndim != 2:
        raise DataError(f"vectors must be a 2-d array, got shape {m.shape}")
    return pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1)), m.shape[1])


def _value_type(v: Any) -> MetadataType | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64" if -(2**63) <= v < 2**63 else "json"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        kinds = {_value_type(x) for x in v} - {None}
        if not kinds:
            return "list<string>"
        if kinds == {"int64", "float64"}:
            return "list<float64>"
        if len(kinds) == 1 and (k := next(iter(kinds))) in ("string", "int64", "float64"):
            return f"list<{k}>"  # type: ignore[return-value]
        return "json"
    return "json"


def infer_metadata_fields(rows: Sequence[Mapping[str, Any] | None]) -> tuple[MetadataField, ...]:
    """Infer one portable type per key from sample rows; the majority type wins.

    int and float mixed become float64 only when every int is exactly representable;
    other mixes keep the majority type and the minority values travel in
    ``metadata_extra`` (reported by ``check``), so nothing is coerced silently.
    """
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        for key, value in (row or {}).items():
            vt = _value_type(value)
            per_key = counts.setdefault(key, {})
            if vt is not None:
                per_key[vt] = per_key.get(vt, 0) + 1
    fields = []
    for key in sorted(counts):
        c = counts[key]
        if not c:
            t: str = "string"
        elif set(c) == {"int64", "float64"}:
            t = "float64"
        elif set(c) <= {"list<int64>", "list<float64>", "list<string>"} and len(c) > 1:
            t = "list<float64>" if "list<string>" not in c else max(c, key=c.__getitem__)
        else:
            t = max(sorted(c), key=c.__getitem__)
        fields.append(MetadataField(name=key, type=t))  # type: ignore[arg-type]
    return tuple(fields)


def value_fits(value: Any, f: MetadataField) -> bool:
    """Whether ``value`` can live in field ``f``'s typed column without loss."""
    if value is None:
        return True
    t = _value_type(value)
    if t == f.type or f.type == "json":
        return True
    if f.type == "float64" and t == "int64":
        return bool(float(value) == value and abs(value) <= 2**53)
    if f.type == "list<float64>" and t == "list<int64>":
        return all(abs(x) <= 2**53 for x in value)
    return f.type.startswith("list<") and isinstance(value, list | tuple) and len(value) == 0


def encode_json(value: Any) -> str:
    """Canonical JSON text (sorted keys, compact) used for json-typed values everywhere."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)


def metadata_to_arrow(
    rows: Sequence[Mapping[str, Any] | None], schema: CollectionSchema
) -> tuple[pa.StructArray | None, pa.StringArray]:
    """Typed ``metadata`` struct plus ``metadata_extra`` for values that do not fit.

    Unknown keys and values of another type than their field go to ``metadata_extra``
    as JSON, unchanged; int values in a float64 field are widened only when exact.
    """
    fields = schema.metadata
    by_name = {f.name: f for f in fields}
    typed: list[dict[str, Any]] = []
    extra: list[str | None] = []
    for row in rows:
        kept: dict[str, Any] = {}
        spill: dict[str, Any] = {}
        for key, value in (row or {}).items():
            f = by_name.get(key)
            if f is not None and value_fits(value, f):
                if f.type == "json" and value is not None:
                    value = encode_json(value)
                elif f.type == "float64" and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                elif f.type == "list<float64>" and value is not None:
                    value = [float(x) for x in value]
                kept[key] = value
            elif value is not None:
                spill[key] = value
        typed.append(kept)
        extra.append(encode_json(spill) if spill else None)
    struct = pa.array(typed, type=schema.metadata_struct_type()) if fields else None
    return struct, pa.array(extra, type=pa.string())


def metadata_rows(batch: pa.RecordBatch, schema: CollectionSchema) -> list[dict[str, Any]]:
    """Per-record metadata dicts (typed values plus ``metadata_extra``), nulls omitted.

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
) -> pa.RecordBatch:
    """Assemble a batch in the schema's layout from columns an engine returned."""
    n = len(ids)
    meta_struct, meta_extra = metadata_to_arrow(metadata or [None] * n, schema)
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


def conform(batch: pa.RecordBatch, schema: CollectionSchema) -> pa.RecordBatch:
    """Reorder and losslessly cast a batch to ``schema``'s layout; refuse lossy casts."""
    target = schema.arrow_schema()
    if batch.schema.equals(target):
        return batch
    cols = []
    for f in target:
        idx = batch.schema.get_field_index(f.name)
        if idx < 0:
            cols.append(pa.nulls(batch.num_rows, f.type))
            continue
        col = batch.column(idx)
        if not col.type.equals(f.type):
            try:
                col = col.cast(f.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(
                    f"cannot cast column from {col.type} to {f.type} without loss: {exc}",
                    collection=schema.name,
                    field=f.name,
                ) from exc
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, schema=target)


def table_to_batch(table: pa.Table) -> pa.RecordBatch:
    """One contiguous batch holding a whole (small) table, empty tables included."""
    combined = table.combine_chunks()
    batches = combined.to_batches()
    if not batches:
        return pa.RecordBatch.from_pylist([], schema=table.schema)
    return batches[0]
