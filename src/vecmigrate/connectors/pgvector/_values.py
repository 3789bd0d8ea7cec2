"""Metadata values into the columns of an application's table, used only by
``connectors/pgvector*.py``: each value becomes the Python value binary COPY sends for the
column's own type, exactly, or ``Misfit`` says why it cannot (3.5 into an integer, 2**40
into an integer, 0.1 into a real, "abc" into a uuid). Which field types a column can take
at all is ``ACCEPTS`` (checked before the first write).
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
from psycopg.types.json import Json, Jsonb

from vecmigrate.connectors.pgvector._foreign import INT_TYPES, JSON_TYPES, TEXT_TYPES, Column

_NUMBERS = frozenset({*INT_TYPES, "real", "double precision", "numeric"})
_TIMES = frozenset({"timestamp with time zone", "timestamp without time zone", "date"})
_NUMBER_ARRAYS = frozenset(f"{t}[]" for t in _NUMBERS)
# Portable field type -> the column types that can hold its values.
ACCEPTS: dict[str, frozenset[str]] = {
    "string": TEXT_TYPES | {"uuid"} | _TIMES | JSON_TYPES,
    "int64": _NUMBERS | JSON_TYPES,
    "float64": _NUMBERS | JSON_TYPES,
    "bool": frozenset({"boolean"}) | JSON_TYPES,
    "list<string>": frozenset(f"{t}[]" for t in TEXT_TYPES) | JSON_TYPES,
    "list<int64>": _NUMBER_ARRAYS | JSON_TYPES,
    "list<float64>": _NUMBER_ARRAYS | JSON_TYPES,
    "json": JSON_TYPES,
}
WRITABLE = frozenset().union(*ACCEPTS.values())


class Misfit(Exception):
    """A value the column cannot hold exactly (the message says why)."""


def to_column(value: Any, column: Column) -> Any:
    """``value`` as ``column`` stores it exactly; Misfit when it cannot."""
    if value is None:
        return None
    t = column.type
    if t in JSON_TYPES:
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise Misfit("NaN and infinity have no JSON form") from None
        return Jsonb(value) if t == "jsonb" else Json(value)
    if t.endswith("[]"):
        if not isinstance(value, list | tuple):
            raise Misfit(f"{_show(value)} is not a list")
        element = Column(column.name, t[:-2], t[:-2], column.typmod, 0, False, False, True)
        return [to_column(x, element) for x in value]
    if t in _NUMBERS:
        return _number(value, t, column.typmod)
    if t in TEXT_TYPES:
        return _text(value, t, column.typmod)
    if t == "boolean":
        if not isinstance(value, bool):
            raise Misfit(f"{_show(value)} is not a boolean")
        return value
    if t == "uuid":
        if not isinstance(value, str):
            raise Misfit(f"{_show(value)} is not a uuid")
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            raise Misfit(f"{_show(value)} is not a uuid") from None
        if str(parsed) != value:
            raise Misfit(f"{_show(value)} would read back as {str(parsed)!r}")
        return parsed
    if t in _TIMES:
        return _time(value, t)
    raise Misfit(f"vecmigrate does not write columns of type {column.full}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any, t: str, typmod: int) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Misfit(f"{_show(value)} is not a number")
    if t in INT_TYPES:
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise Misfit(f"{_show(value)} is not an integer")
            value = int(value)
        limit = INT_TYPES[t]
        if not -limit <= value < limit:
            raise Misfit(f"{value} is out of range for {t}")
        return value
    if t == "numeric":
        exact = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
        if typmod >= 4 and exact.is_finite():
            precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
            try:
                fits = exact == exact.quantize(Decimal(1).scaleb(-scale))
            except InvalidOperation:
                fits = False
            if not fits or (exact != 0 and exact.adjusted() >= precision - scale):
                raise Misfit(f"{_show(value)} does not fit numeric({precision},{scale})")
        elif not exact.is_finite() and typmod >= 4:
            raise Misfit(f"{_show(value)} does not fit a numeric with a precision")
        return exact
    as_float = float(value)
    if isinstance(value, int) and as_float != value:
        raise Misfit(f"{value} is not exactly representable as {t}")
    if t == "real" and not (math.isnan(as_float) or float(np.float32(as_float)) == as_float):
        raise Misfit(f"{_show(value)} would read back as {float(np.float32(as_float))!r} (real)")
    return as_float


def _text(value: Any, t: str, typmod: int) -> str:
    if not isinstance(value, str):
        raise Misfit(f"{_show(value)} is not text")
    if "\x00" in value:
        raise Misfit("text holding a NUL character cannot be stored")
    if typmod >= 4:
        n = typmod - 4
        if len(value) > n:
            raise Misfit(f"{len(value)} characters do not fit {t}({n})")
        if t == "character" and len(value) != n:
            raise Misfit(f"{_show(value)} would be padded to {n} characters")
    return value


def _time(value: Any, t: str) -> Any:
    if not isinstance(value, str):
        raise Misfit(f"{_show(value)} is not an ISO 8601 {t}")
    try:
        parsed: date = date.fromisoformat(value) if t == "date" else datetime.fromisoformat(value)
    except ValueError:
        raise Misfit(f"{_show(value)} is not an ISO 8601 {t}") from None
    if isinstance(parsed, datetime):
        aware = parsed.utcoffset() is not None
        if t == "timestamp with time zone" and not aware:
            raise Misfit(f"{_show(value)} has no time zone")
        if t == "timestamp without time zone" and aware:
            raise Misfit(f"{_show(value)} has a time zone; the column keeps none")
    return parsed
