"""Metadata values in the portable model: their types, whether they fit a field, and how
engine rows become the typed ``metadata`` struct plus ``metadata_extra``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from vecmigrate.model import CollectionSchema, MetadataField, MetadataType


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


def _has_int(value: Any) -> bool:
    """Whether ``value`` is, or is a list holding, an int (bools are not ints here)."""
    if isinstance(value, list | tuple):
        return any(_has_int(x) for x in value)
    return isinstance(value, int) and not isinstance(value, bool)


def metadata_to_arrow(
    rows: Sequence[Mapping[str, Any] | None],
    schema: CollectionSchema,
    *,
    explicit_nulls: bool = False,
) -> tuple[pa.StructArray | None, pa.StringArray]:
    """Typed ``metadata`` struct plus ``metadata_extra`` for values that do not fit.

    Unknown keys and values of another type than their field go to ``metadata_extra``
    as JSON, unchanged. An int in a float64 (or list<float64>) field is stored as a float
    in the typed column, so filters see it, and also as the int in ``metadata_extra``, so
    the target gets back the int the source had. With ``explicit_nulls`` (the source's
    None means "the key is there, set to null", as in Qdrant payloads) a None value is
    kept in ``metadata_extra`` as JSON null; otherwise None means the key is absent.
    """
    fields = schema.metadata
    by_name = {f.name: f for f in fields}
    typed: list[dict[str, Any]] = []
    extra: list[str | None] = []
    for row in rows:
        kept: dict[str, Any] = {}
        spill: dict[str, Any] = {}
        for key, value in (row or {}).items():
            if value is None:
                if explicit_nulls:
                    spill[key] = None
                continue
            f = by_name.get(key)
            if f is not None and value_fits(value, f):
                if f.type == "json":
                    value = encode_json(value)
                elif f.type in ("float64", "list<float64>") and _has_int(value):
                    spill[key] = value
                    value = float(value) if f.type == "float64" else [float(x) for x in value]
                kept[key] = value
            else:
                spill[key] = value
        typed.append(kept)
        extra.append(encode_json(spill) if spill else None)
    struct = pa.array(typed, type=schema.metadata_struct_type()) if fields else None
    return struct, pa.array(extra, type=pa.string())
