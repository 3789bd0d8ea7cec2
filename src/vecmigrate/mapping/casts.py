"""Lossless casts of metadata values, or a refusal naming the record and field."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

from vecmigrate.model import MetadataType

_BOOL_TEXT = {"true": True, "false": False}  # only the forms str(bool) casts back to


class CastRefused(ValueError):
    """A value that cannot become the target type without losing information."""


def cast_value(value: Any, to: MetadataType) -> Any:
    """``value`` as type ``to``; raises CastRefused when information would be lost."""
    if value is None:
        return None
    if to == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and not math.isfinite(value):
            raise CastRefused(f"{value!r} has no faithful text form here")
        return value if isinstance(value, str) else str(value)
    if to == "int64":
        return _to_int(value)
    if to == "float64":
        return _to_float(value)
    if to == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value in _BOOL_TEXT:
            return _BOOL_TEXT[value]
        raise CastRefused(f"{value!r} is not a boolean (true/false)")
    if to.startswith("list<"):
        if not isinstance(value, list):
            raise CastRefused(f"{value!r} is not a list")
        return [cast_value(v, to[5:-1]) for v in value]  # type: ignore[arg-type]
    if to == "json":
        return value
    raise CastRefused(f"unknown type {to}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise CastRefused(f"{value!r} is a boolean, not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise CastRefused(f"{value!r} has a fraction")
        return int(value)
    if isinstance(value, str):
        text = value
        try:
            number = int(text)
        except ValueError:
            raise CastRefused(f"{value!r} is not an integer") from None
        if str(number) != text:  # "007" -> 7 -> "7" loses the zeros
            raise CastRefused(f"{value!r} would not read back the same")
        return number
    raise CastRefused(f"{value!r} is not a number")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise CastRefused(f"{value!r} is a boolean, not a number")
    if isinstance(value, int):
        if int(float(value)) != value:
            raise CastRefused(f"{value!r} has no exact float64")
        return float(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise CastRefused(f"{value!r} is not a number") from None
        if repr(number) != value or not math.isfinite(number):
            raise CastRefused(f"{value!r} would not read back the same")
        return number
    raise CastRefused(f"{value!r} is not a number")


# -- dates: ISO-8601 text <-> int64 epoch ------------------------------------------------------
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_PER_SECOND = {"s": 1, "ms": 1000}


def epoch_to_iso(value: Any, kind: str, unit: str) -> str:
    """An int64 epoch (``unit`` s or ms) as canonical ISO-8601 text (``kind`` date or
    timestamp, UTC, ``Z``); refuses what the text form cannot carry exactly."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise CastRefused(f"{value!r} is not an integer epoch")
    seconds, sub = divmod(value, _PER_SECOND[unit])
    try:
        dt = _EPOCH + timedelta(seconds=seconds, milliseconds=sub if unit == "ms" else 0)
    except OverflowError:
        raise CastRefused(f"{value!r} {unit} is outside years 1..9999") from None
    day = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
    if kind == "date":
        if (dt.hour, dt.minute, dt.second, dt.microsecond) != (0, 0, 0, 0):
            raise CastRefused(f"{value!r} {unit} is not midnight UTC: not a date")
        return day
    text = f"{day}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    return text + (f".{dt.microsecond // 1000:03d}Z" if unit == "ms" else "Z")


def iso_to_epoch(value: Any, kind: str, unit: str) -> int:
    """Canonical ISO-8601 text as an int64 epoch in ``unit``; text that would not read
    back the same (another offset, more digits, no zone) is refused, not normalised."""
    if not isinstance(value, str):
        raise CastRefused(f"{value!r} is not ISO-8601 text")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise CastRefused(f"{value!r} is not an ISO-8601 {kind}") from None
    if kind == "date":
        dt = datetime(dt.year, dt.month, dt.day, tzinfo=timezone.utc)
    elif dt.tzinfo is None:
        raise CastRefused(f"{value!r} has no UTC offset: its instant is ambiguous")
    delta = dt - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    step = 1_000_000 // _PER_SECOND[unit]
    if micros % step:
        raise CastRefused(f"{value!r} is finer than {unit}")
    epoch = micros // step
    back = epoch_to_iso(epoch, kind, unit)
    if back != value:
        raise CastRefused(f"{value!r} would not read back the same (canonical form {back!r})")
    return epoch
