"""Arrow batches in the collection's layout from other tools' columns: vectors from lists
or text, typed ids, metadata, and records no engine could take carried as NaN vectors
with the reason (``read_arrow_batch``, ``bad_batch``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.tabular._layout import (
    _INT_TEXT,
    SOURCE_ERROR_KEY,
    ArrowLayout,
    fixed_vectors,
    portable_column,
)
from vecmigrate.model import (
    CollectionSchema,
    IdType,
)
from vecmigrate.records import (
    build_batch,
    conform,
    encode_json,
    metadata_to_arrow,
    table_to_batch,
)


def read_arrow_batch(
    raw: pa.RecordBatch | pa.Table,
    layout: ArrowLayout,
    schema: CollectionSchema,
    where: Callable[[int], str],
) -> pa.RecordBatch:
    """Rows of a foreign columnar file as a batch in ``schema``'s layout; records no engine
    could take become NaN-vector records saying why (module docstring)."""
    batch = raw if isinstance(raw, pa.RecordBatch) else table_to_batch(raw)
    names, n = batch.schema.names, batch.num_rows
    bad: dict[int, str] = {}
    ids = _ids(batch.column(names.index(layout.id)), layout, bad)
    if ids.null_count:
        int_ids = schema.id_type is IdType.INT
        values = ids.to_pylist()
        for i in np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False)).tolist():
            bad.setdefault(i, f"{layout.id}: no id")
            values[i] = placeholder_id(int_ids, where(i))
        ids = pa.array(values, ids.type)
    cols: dict[str, pa.Array] = {"id": ids}
    if schema.has_document and layout.document:
        cols["document"] = portable_column(batch.column(names.index(layout.document)))
    for v in schema.vectors:
        vec, why = fixed_vectors(batch.column(names.index(v.name)), v.dim, text=layout.vector_text)
        cols[v.name] = vec
        for row, reason in why.items():
            bad.setdefault(row, f"{v.name}: {reason}")
    extra = (
        portable_column(batch.column(names.index(layout.extra)))
        if layout.extra
        else pa.nulls(n, pa.string())
    )
    if schema.metadata:
        struct, extra = _metadata(batch, layout, schema, extra, bad)
        cols["metadata"] = struct
    cols["metadata_extra"] = _with_errors(extra, bad, where)
    if bad:  # every vector of a bad record is NaN, so the copy refuses the record
        rows = np.array(sorted(bad), dtype=np.int64)
        for v in schema.vectors:
            cols[v.name] = _nan_rows(cols[v.name], rows)
    return conform(pa.RecordBatch.from_pydict(cols), schema)


def _nan_rows(col: pa.FixedSizeListArray, rows: np.ndarray) -> pa.FixedSizeListArray:
    dim, value_type = col.type.list_size, col.type.value_type
    values = np.array(col.flatten().to_numpy(zero_copy_only=False)).reshape(len(col), dim)
    values[rows] = np.nan
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), value_type), dim)


def _ids(col: pa.Array, layout: ArrowLayout, bad: dict[int, str]) -> pa.Array:
    col = portable_column(col)
    if layout.id_kind == "int":
        return col.cast(pa.int64())
    if layout.id_kind == "text":
        return col
    try:
        return col.cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values: list[int | None] = []
    for i, v in enumerate(col.to_pylist()):
        if v is None or _INT_TEXT.fullmatch(v.strip()) is None:
            if v is not None:
                bad.setdefault(i, f"id {v!r} is not an integer like the others")
            values.append(None)
        else:
            values.append(int(v))
    return pa.array(values, pa.int64())


def _metadata(
    batch: pa.RecordBatch,
    layout: ArrowLayout,
    schema: CollectionSchema,
    extra: pa.Array,
    bad: dict[int, str],
) -> tuple[pa.Array, pa.Array]:
    names, n = batch.schema.names, batch.num_rows

    def source(column: str, key: str | None) -> pa.Array | None:
        if column not in names:
            return None
        col = batch.column(names.index(column))
        if key is not None:
            if not pa.types.is_struct(col.type) or col.type.get_field_index(key) < 0:
                return None
            col = col.flatten()[col.type.get_field_index(key)]
        return portable_column(col)

    where = {f: (c, k) for f, c, k in layout.fields}
    if layout.metadata_format != "json":
        children = []
        for m in schema.metadata:
            got = source(*where[m.name]) if m.name in where else None
            children.append(pa.nulls(n, m.arrow_type) if got is None else got)
        return pa.StructArray.from_arrays(children, names=[m.name for m in schema.metadata]), extra
    # JSON text: values filed by metadata_to_arrow (what does not fit its field, and keys
    # no field names, go to metadata_extra unchanged).
    assert layout.metadata is not None
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    by_key: dict[str, str] = {}
    for f, (c, k) in where.items():
        if c == layout.metadata and k is not None:
            by_key[k] = f
    for f, (c, k) in where.items():
        if k is None and (col := source(c, None)) is not None:
            for i, value in enumerate(col.to_pylist()):
                if value is not None:
                    rows[i][f] = value
    texts = batch.column(names.index(layout.metadata)).to_pylist()
    for i, text in enumerate(texts):
        if text in (None, ""):
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            bad.setdefault(i, f"{layout.metadata}: not JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            bad.setdefault(i, f"{layout.metadata}: not a JSON object")
            continue
        for key, value in obj.items():
            name = str(key)  # JSON object keys are text
            rows[i][by_key.get(name, name)] = value
    for i, raw in enumerate(extra.to_pylist()):
        if raw:
            rows[i].update(json.loads(raw))
    struct, new_extra = metadata_to_arrow(rows, schema)
    assert struct is not None
    return struct, new_extra


def _with_errors(extra: pa.Array, bad: Mapping[int, str], where: Callable[[int], str]) -> pa.Array:
    """``metadata_extra`` with ``SOURCE_ERROR_KEY`` set on the records read as bad."""
    if not bad:
        return extra
    values = extra.to_pylist()
    for row, reason in bad.items():
        obj = json.loads(values[row]) if values[row] else {}
        obj[SOURCE_ERROR_KEY] = f"{where(row)}: {reason}"
        values[row] = encode_json(obj)
    return pa.array(values, pa.string())


def placeholder_id(int_ids: bool, where: str) -> Any:
    """The id of a bad record whose own id cannot be read (a line that is not JSON, a null
    id): ``<where>`` as text, or for integer ids a negative number derived from it. The
    same on every scan, so the refused record is matched by verification."""
    if not int_ids:
        return f"<{where}>"
    return -(int.from_bytes(hashlib.sha256(where.encode()).digest()[:7], "big") + 1)


def rebatch(
    batches: Iterable[pa.RecordBatch], skip: int, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """``batches`` without their first ``skip`` rows, re-cut to at most ``batch_rows``."""
    pending: list[pa.RecordBatch] = []
    size = 0
    for b in batches:
        if skip:
            if b.num_rows <= skip:
                skip -= b.num_rows
                continue
            b, skip = b.slice(skip), 0
        if b.num_rows == 0:
            continue
        if not pending and b.num_rows == batch_rows:
            yield b
            continue
        pending.append(b)
        size += b.num_rows
        if size >= batch_rows:
            whole = table_to_batch(pa.Table.from_batches(pending))
            cut = size - size % batch_rows
            for start in range(0, cut, batch_rows):
                yield whole.slice(start, batch_rows)
            pending = [whole.slice(cut)] if cut < size else []
            size -= cut
    if size:
        yield table_to_batch(pa.Table.from_batches(pending))


def row_namer(template: str, base: int) -> Callable[[int], str]:
    """``where`` for ``read_arrow_batch``: row ``i`` of a batch as ``template`` names it,
    numbered from ``base`` (``"parquet a.parquet row {}"``)."""
    return lambda i: template.format(base + i)


def bad_batch(
    schema: CollectionSchema, ids: Sequence[Any], errors: Sequence[str]
) -> pa.RecordBatch:
    """Records the file holds but no engine could take (a CSV line with too many fields),
    in ``schema``'s layout: NaN vectors, ``metadata_extra`` saying where and why."""
    n = len(ids)
    vectors = {v.name: np.full((n, v.dim), np.nan, dtype=np.float32) for v in schema.vectors}
    batch = build_batch(schema, pa.array(list(ids), schema.id_arrow_type()), vectors)
    extra = pa.array([encode_json({SOURCE_ERROR_KEY: e}) for e in errors], pa.string())
    return batch.set_column(batch.schema.get_field_index("metadata_extra"), "metadata_extra", extra)
