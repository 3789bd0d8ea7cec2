"""Metadata values through JSON APIs (hosted engines that take and return JSON documents:
Turbopuffer, Azure AI Search): their encoded size, the finite-number rule, and the numbers
JSON gives back typed as the schema says."""

from __future__ import annotations

import json
import math
from typing import Any

from vecmigrate.errors import DataError
from vecmigrate.model import MetadataField


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (what a request body carries)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def storable(f: MetadataField, value: Any, name: str, rid: Any, refusal: str) -> Any:
    """``value`` as a JSON engine stores field ``f``: NaN and infinities are refused (a
    DataError with ``refusal``, naming the record and field); a list holding nulls is None,
    for the record's ``metadata_extra`` to carry (JSON engines' arrays hold no nulls)."""
    if f.type == "float64" and not math.isfinite(value):
        raise DataError(refusal, collection=name, record_id=rid, field=f.name)
    if f.type == "list<float64>" and not all(x is None or math.isfinite(x) for x in value):
        raise DataError(refusal, collection=name, record_id=rid, field=f.name)
    if isinstance(value, list) and any(x is None for x in value):
        return None
    return value


def typed_number(f: MetadataField | None, value: Any) -> Any:
    """A JSON number as field ``f`` holds it: JSON writes 2.0 as 2 (floats back from ints)
    and some services return integers as doubles (ints back from integral floats)."""
    if f is None:
        return value
    if f.type == "float64" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if f.type == "list<float64>" and isinstance(value, list):
        return [float(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in value]
    if f.type == "int64" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def with_extra(meta: dict[str, Any], raw: Any) -> dict[str, Any]:
    """``meta`` with the keys of ``raw`` merged in: the record's ``metadata_extra`` as the
    engine keeps it, JSON text of the values no typed field holds (ignored when not that)."""
    if isinstance(raw, str) and raw:
        extra = json.loads(raw)
        if isinstance(extra, dict):
            meta.update(extra)
    return meta
