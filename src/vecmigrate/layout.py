"""Conform a batch to a schema's layout: reorder, cast only what reads back the same, and
refuse, naming the column (and the first record), whatever a cast would change or lose."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.errors import DataError
from vecmigrate.model import CollectionSchema, is_jsonable, is_list_like, is_text
from vecmigrate.values import metadata_to_arrow

LAYOUT_HINT = (
    "the data was not written for this schema; vecmigrate never guesses a missing, renamed "
    "or extra column: fix the schema or the data"
)
# Arrow's names for the float types, as numpy and vecmigrate's schema spell them.
_TYPE_NAMES = {"double": "float64", "float": "float32", "halffloat": "float16"}


def vector_precision_hint(field: str) -> str:
    """What to do about vector values float32 cannot hold exactly (the source unchanged)."""
    return (
        "vecmigrate moves vectors as float32; if float32 precision is enough, let the copy "
        f"round them: vectors: {{{field}: {{round_to_float32: true}}}} in a mapping file"
    )


def _names(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def layout_problems(
    arrow: pa.Schema, schema: CollectionSchema, *, strict: bool = False
) -> list[tuple[str, str, str]]:
    """(code, column, problem) for each way a batch's columns differ from ``schema``'s layout
    that no cast can bridge: a missing column (only ``metadata_extra`` may be absent: no
    value needed it), a column twice, a ``metadata`` struct whose fields are not the
    schema's and, with ``strict``, a column the schema does not declare."""
    target = schema.arrow_schema()
    names = arrow.names
    out = []
    for name in sorted({n for n in names if names.count(n) > 1}):
        out.append(("duplicate_column", name, f"has the column {name!r} more than once"))
    for f in target:
        if f.name not in names and f.name != "metadata_extra":
            out.append(("missing_column", f.name, f"has no {f.name!r} column"))
    if schema.metadata and names.count("metadata") == 1:
        t = arrow.field("metadata").type
        if not pa.types.is_struct(t):
            out.append(("metadata_fields", "metadata", f"has a 'metadata' column of type {t}"))
        else:
            have = [c.name for c in t]
            want = [m.name for m in schema.metadata]
            why = []
            if missing := [n for n in want if n not in have]:
                why.append(f"missing {_names(missing)}")
            if unknown := [n for n in have if n not in want]:
                why.append(f"not in the schema: {_names(unknown)}")
            if twice := sorted({n for n in have if have.count(n) > 1}):
                why.append(f"more than once: {_names(twice)}")
            if why:
                first = (missing or unknown or twice)[0]
                problem = "has metadata fields unlike the schema's: " + "; ".join(why)
                out.append(("metadata_fields", f"metadata.{first}", problem))
    elif not schema.metadata and names.count("metadata") == 1:
        t = arrow.field("metadata").type
        if not pa.types.is_struct(t) or t.num_fields:  # values the schema has no place for
            found = _names([c.name for c in t]) if pa.types.is_struct(t) else str(t)
            problem = f"has metadata ({found}) but the schema declares no metadata fields"
            out.append(("metadata_fields", "metadata", problem))
    if strict:
        for name in dict.fromkeys(names):
            if name in target.names or names.count(name) > 1:
                continue
            t = arrow.field(name).type
            if name == "metadata" and pa.types.is_struct(t) and t.num_fields == 0:
                continue  # an empty struct holds nothing to lose
            out.append(
                ("unknown_column", name, f"has a column {name!r} the schema does not declare")
            )
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN (a NaN that survives a cast is not a change)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _first_difference(a: pa.Array, b: pa.Array) -> int | None:
    """Row of the first value of ``a`` that ``b`` does not hold (NaN equals NaN), or None."""
    if a.equals(b):
        return None
    fa, fb, parents = a, b, None
    if is_list_like(a.type) and is_list_like(b.type):
        fa, fb, parents = pc.list_flatten(a), pc.list_flatten(b), pc.list_parent_indices(a)
    if (
        pa.types.is_floating(fa.type)
        and fa.type.equals(fb.type)
        and len(fa) == len(fb)
        and fa.null_count == fb.null_count == 0
        and a.is_null().equals(b.is_null())
    ):
        x = np.asarray(fa.to_numpy(zero_copy_only=False), dtype=np.float64)
        y = np.asarray(fb.to_numpy(zero_copy_only=False), dtype=np.float64)
        bad = np.flatnonzero(~((x == y) | (np.isnan(x) & np.isnan(y))))
        if not len(bad):
            return None
        return int(parents[int(bad[0])].as_py()) if parents is not None else int(bad[0])
    for i in range(len(a)):
        if not _same(a[i].as_py(), b[i].as_py()):
            return i
    return None


def _row_id(batch: pa.RecordBatch, row: int) -> Any:
    names = batch.schema.names
    return batch.column(names.index("id"))[row].as_py() if "id" in names else None


def _cast_exact(
    batch: pa.RecordBatch, column: str, to: pa.DataType, schema: CollectionSchema
) -> pa.Array:
    """``column`` cast to ``to`` only when the cast is reversible value for value (cast back,
    compare): "007" never becomes 7, float64 vectors never round to float32 silently."""
    col = batch.column(batch.schema.names.index(column))
    if col.type.equals(to):
        return col
    if _relabelled(col.type, to):
        return col.cast(to)  # a view: the same values under a new element name
    vector = next((v for v in schema.vectors if v.name == column), None)
    if vector is not None and vector.rounded:
        return _rounded(batch, col, to, schema, column)
    try:
        out = col.cast(to, safe=True)
        back = out.cast(col.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        row = next((i for i in range(len(col)) if not _casts(col.slice(i, 1), to)), None)
        raise DataError(
            f"cannot cast {column} from {col.type} to {to} without loss: {exc}",
            collection=schema.name,
            record_id=None if row is None else _row_id(batch, row),
            field=column,
        ) from None
    row = _first_difference(col, back)
    if row is None:
        return out
    if vector is not None:
        kind = _TYPE_NAMES.get(str(col.type.value_type), str(col.type.value_type))
        reason = f"vector values are {kind} and not exactly representable as float32"
        hint = vector_precision_hint(column)
    else:
        was, now = col[row].as_py(), back[row].as_py()
        reason = f"{column} {was!r} as {_TYPE_NAMES.get(str(to), to)} would read back as {now!r}"
        hint = (
            "declare string ids in _schema.json (id_type: string) to keep them as written"
            if column == "id"
            else "declare the type the data has in the schema"
        )
    raise DataError(
        reason, collection=schema.name, record_id=_row_id(batch, row), field=column, hint=hint
    )


def _rounded(
    batch: pa.RecordBatch, col: pa.Array, to: pa.DataType, schema: CollectionSchema, column: str
) -> pa.Array:
    """Vectors rounded to the nearest float32, as the mapping allowed; a finite value
    beyond float32's range (it would become infinite) is refused, naming its record."""
    out = col.cast(to, safe=False)
    if not (pa.types.is_fixed_size_list(col.type) and pa.types.is_floating(col.type.value_type)):
        return out
    wide = col.flatten().to_numpy(zero_copy_only=False)
    narrow = out.flatten().to_numpy(zero_copy_only=False)
    overflow = np.isfinite(wide) & ~np.isfinite(narrow)
    if overflow.any():
        first = int(np.flatnonzero(overflow)[0])
        row = first // col.type.list_size
        raise DataError(
            f"vector value {float(wide[first])!r} is beyond float32's range",
            collection=schema.name,
            record_id=_row_id(batch, row),
            field=column,
            hint="no float32 holds it: leave the record out of the copy (--filter, --ids-file)",
        )
    return out


def _relabelled(have: pa.DataType, to: pa.DataType) -> bool:
    """Whether ``have`` is ``to`` but for its list element's name or a non-null element
    (dump parts declare vector elements required), a cast no value can fail."""
    return bool(
        pa.types.is_fixed_size_list(have)
        and pa.types.is_fixed_size_list(to)
        and have.list_size == to.list_size
        and have.value_type.equals(to.value_type)
        and to.value_field.nullable
    )


def _casts(col: pa.Array, to: pa.DataType) -> bool:
    try:
        col.cast(to, safe=True)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return False


def _text(col: pa.Array, column: str, schema: CollectionSchema) -> pa.Array:
    """A text column as ``string``; any other type is refused (no number becomes text)."""
    if col.type.equals(pa.string()):
        return col
    if is_text(col.type) or (pa.types.is_dictionary(col.type) and is_text(col.type.value_type)):
        return col.cast(pa.string())
    raise DataError(
        f"column {column!r} is {col.type}; it must be text",
        collection=schema.name,
        field=column,
        hint=LAYOUT_HINT,
    )


def widens(src: pa.DataType, dst: pa.DataType) -> bool:
    """Whether every ``src`` value is a ``dst`` value of the same kind (int32 -> int64,
    float32 -> float64, large_string -> string, lists of those); int -> float is not."""
    if src.equals(dst):
        return True
    if pa.types.is_integer(src) and dst.equals(pa.int64()):
        return bool(pa.types.is_signed_integer(src) or src.bit_width <= 32)
    if pa.types.is_floating(src) and dst.equals(pa.float64()):
        return True
    if is_text(src) and dst.equals(pa.string()):
        return True
    if is_list_like(src) and pa.types.is_list(dst):
        return widens(src.value_type, dst.value_type)
    return False


def _conform_metadata(
    col: pa.Array, extra: pa.Array, schema: CollectionSchema
) -> tuple[pa.Array, pa.Array]:
    """The ``metadata`` struct in the schema's types, and ``metadata_extra``. Children of the
    same kind widen in Arrow; any other child is re-filed value by value like an engine's
    rows (``metadata_to_arrow``): values that fit stay typed, the rest move to
    ``metadata_extra`` unchanged ("007" in an int64 field stays the string "007")."""
    want = schema.metadata_struct_type()
    if col.type.equals(want):
        return col, extra
    children = dict(zip([c.name for c in col.type], col.flatten(), strict=True))
    if all(widens(children[f.name].type, f.arrow_type) for f in schema.metadata):
        arrays = [children[f.name].cast(f.arrow_type) for f in schema.metadata]
        mask = col.is_null() if col.null_count else None
        return pa.StructArray.from_arrays(arrays, fields=list(want), mask=mask), extra
    rows: list[dict[str, Any]] = [{} for _ in range(len(col))]
    for f in schema.metadata:
        child = children[f.name]
        if not is_jsonable(child.type):
            raise DataError(
                f"metadata field {f.name!r} is {child.type}, which has no portable type",
                collection=schema.name,
                field=f"metadata.{f.name}",
                hint="store it as text, a number, a bool or a list of those",
            )
        decode = f.type == "json" and is_text(child.type)
        for i, value in enumerate(child.to_pylist()):
            if value is not None:
                rows[i][f.name] = json.loads(value) if decode else value
    for i, raw in enumerate(extra.to_pylist()):
        if raw:
            rows[i].update(json.loads(raw))
    struct, new_extra = metadata_to_arrow(rows, schema, explicit_nulls=True)
    return struct, new_extra


def conform(
    batch: pa.RecordBatch, schema: CollectionSchema, *, strict: bool = False
) -> pa.RecordBatch:
    """Reorder and losslessly cast a batch to ``schema``'s layout; refuse everything else.

    Refused (DataError naming the column): a missing column (but ``metadata_extra``), a
    ``metadata`` struct whose fields are not the schema's, with ``strict`` an undeclared
    column (otherwise dropped), and any cast that would change a value, naming the first
    record. Metadata values of another type than their field are never cast: they move to
    ``metadata_extra`` unchanged.
    """
    target = schema.arrow_schema()
    if batch.schema.equals(target):
        return batch
    problems = layout_problems(batch.schema, schema, strict=strict)
    if problems:
        _, column, problem = problems[0]
        raise DataError(f"batch {problem}", collection=schema.name, field=column, hint=LAYOUT_HINT)
    names = batch.schema.names
    extra = (
        _text(batch.column(names.index("metadata_extra")), "metadata_extra", schema)
        if "metadata_extra" in names
        else pa.nulls(batch.num_rows, pa.string())
    )
    meta = None
    if schema.metadata:
        try:
            meta, extra = _conform_metadata(batch.column(names.index("metadata")), extra, schema)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"metadata holds text that is not JSON: {exc}",
                collection=schema.name,
                field="metadata_extra",
            ) from None
    cols = []
    for f in target:
        if f.name == "metadata":
            cols.append(meta)
        elif f.name == "metadata_extra":
            cols.append(extra)
        elif f.name in ("document", "namespace"):
            cols.append(_text(batch.column(names.index(f.name)), f.name, schema))
        else:
            cols.append(_cast_exact(batch, f.name, f.type, schema))
    return pa.RecordBatch.from_arrays(cols, schema=target)
