"""Lossless casts of metadata values, or a refusal naming the record and field."""

from __future__ import annotations

import math
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
