"""Exact casts of portable columns to a foreign LanceDB table's own column types: a value
is written only when it reads back the same, otherwise refused naming its record."""

from __future__ import annotations

import json
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.connectors.lancedb._schema import portable_column
from vecmigrate.errors import DataError
from vecmigrate.model import MetadataField, MetadataType, is_list_like, is_text
from vecmigrate.records import encode_json

_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError)


class Converter:
    """Exact casts of portable columns to a table's own types, refused per record."""

    def __init__(self, collection: str, ids: list[Any]) -> None:
        self.collection, self.ids = collection, ids

    def cast(self, values: pa.Array, t: pa.DataType, field: str, ptype: str) -> pa.Array:
        """``values`` as type ``t``; DataError naming the first record whose value would
        read back differently (or not fit at all)."""
        if values.type.equals(t):
            return values
        nested = pa.types.is_struct(t) or pa.types.is_map(t) or is_list_like(t)
        try:
            if is_text(values.type) and nested and ptype == "json":
                got = pa.array(
                    [None if v is None else json.loads(v) for v in values.to_pylist()], t
                )
            else:
                got = values.cast(t, safe=True)
        except _CAST_ERRORS as exc:
            row = self._first_unfit(values, t)
            raise DataError(
                f"value does not fit the column's type {t}: {exc}",
                collection=self.collection,
                record_id=self.ids[row] if row is not None else None,
                field=field,
            ) from None
        back = _read_back(got, values.type, ptype)
        row = _first_difference(values, back, ptype)
        if row is not None:
            raise DataError(
                f"value {values[row].as_py()!r} would change in the column's type {t}",
                collection=self.collection,
                record_id=self.ids[row],
                field=field,
            )
        return got

    def _first_unfit(self, values: pa.Array, t: pa.DataType) -> int | None:
        for i in range(len(values)):
            try:
                values.slice(i, 1).cast(t, safe=True)
            except _CAST_ERRORS:
                return i
        return None


def _read_back(got: pa.Array, portable: pa.DataType, ptype: str) -> pa.Array:
    """How a value written as ``got`` is read again, in the portable type."""
    t = got.type
    if pa.types.is_date(t) or pa.types.is_timestamp(t) or ptype == "json":
        return portable_column(
            got, MetadataField(name="_", type=cast(MetadataType, ptype or "string"))
        )
    return got.cast(portable, safe=False)


def _first_difference(values: pa.Array, back: pa.Array, ptype: str) -> int | None:
    if ptype == "json":
        a = [None if v is None else encode_json(json.loads(v)) for v in values.to_pylist()]
        b = back.to_pylist()
    elif pa.types.is_primitive(values.type) or is_text(values.type):
        same = pc.fill_null(pc.equal(values, back), False)
        same = pc.or_(same, pc.and_(values.is_null(), back.is_null()))
        if pa.types.is_floating(values.type):
            same = pc.or_(same, pc.fill_null(pc.and_(pc.is_nan(values), pc.is_nan(back)), False))
        if pc.all(same).as_py():
            return None
        return int(np.flatnonzero(~same.to_numpy(zero_copy_only=False))[0])
    else:
        a, b = values.to_pylist(), back.to_pylist()
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), None)
