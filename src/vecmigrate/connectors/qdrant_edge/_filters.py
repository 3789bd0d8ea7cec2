"""Portable filters as Qdrant Edge filters (used only by ``connectors.qdrant_edge``).

Each condition is compiled by the Qdrant connector (``qdrant._records.query_filter``: the
is-empty guards that keep ``$ne``/``$nin`` portable, the refusal of ``$exists`` on lists)
and rebuilt as Edge's classes one for one, with three corrections that the Qdrant
connector lacks (found by ``tests/unit/test_qdrant_edge_vs_local.py``; the engine's rules
are the same on a Qdrant server):

* Payload keys are JSON paths to Qdrant: ``a.b`` means key ``b`` inside ``a``, and ``a b``,
  ``a:b`` or ``$a`` are invalid. A key that is not a plain name is quoted (``"a.b"``); a
  key holding ``"`` or ``\\`` cannot be written as a path and is refused.
* Qdrant matches only keywords, integers and booleans: ``$eq``/``$ne``/``$in``/``$nin`` on
  a float field are ranges from the value to itself (``score == 2`` must match 2.0).
* ``$in``/``$nin`` on a bool field are one match per value (Qdrant's match-any takes
  strings or integers only), and booleans are sent as ``numpy.bool_``: qdrant-edge-py 0.9
  reads a Python ``bool`` as the integer 0/1, so ``published == True`` matched nothing.

Ranges are float64 comparisons in Qdrant (bound and payload value): a range bound on an
int field at or beyond ±2^53 is refused rather than answered inexactly.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import qdrant_edge as qe
from qdrant_client import models

from vecmigrate.connectors.qdrant._records import query_filter
from vecmigrate.errors import ConfigError
from vecmigrate.filters import Bool, Cond, Node

_PLAIN_KEY = re.compile(r"^[^\W]([\w-]*)$")
_RANGES = frozenset({"$gt", "$gte", "$lt", "$lte"})
# Integers from here on are not all float64 values: a range bound there is rounded.
_EXACT_FLOAT_INT = 2**53


def edge_filter(node: Node | None) -> qe.Filter | None:
    """A parsed portable filter (None: everything) as an Edge ``Filter``."""
    if node is None:
        return None
    got = _node(node)
    return got if isinstance(got, qe.Filter) else qe.Filter(must=[got])


def payload_path(key: str) -> str:
    """``key`` as a Qdrant JSON path addressing that top-level payload key."""
    if _PLAIN_KEY.match(key):
        return key
    if '"' in key or "\\" in key:
        raise ConfigError(
            f"Qdrant cannot filter on the payload key {key!r}",
            hint="a key holding '\"' or '\\' has no JSON-path spelling; rename the field",
        )
    return f'"{key}"'


def _node(node: Node) -> Any:
    if isinstance(node, Bool):
        parts = [_node(c) for c in node.children]
        if node.op == "$and":
            return qe.Filter(must=parts)
        if node.op == "$or":
            return qe.Filter(should=parts)
        return qe.Filter(must_not=parts)
    return _leaf(node)


def _leaf(node: Cond) -> Any:
    base = node.field.type.removeprefix("list<").removesuffix(">")
    if node.op in _RANGES and base == "int64" and abs(node.value) >= _EXACT_FLOAT_INT:
        raise ConfigError(
            f"filter on {node.field.name!r}: Qdrant compares ranges as float64, so a bound "
            f"beyond ±2^53 ({node.value}) would not be exact",
            hint="filter on a smaller bound, or with $eq / $in (exact on integers)",
        )
    equality = node.op in ("$eq", "$ne", "$in", "$nin")
    if equality and base in ("float64", "bool"):
        key = payload_path(node.field.name)
        values = node.value if node.op in ("$in", "$nin") else [node.value]
        matches: list[Any]
        if base == "float64":
            matches = [
                qe.FieldCondition(key=key, range=qe.RangeFloat(gte=float(v), lte=float(v)))
                for v in values
            ]
        else:
            matches = [
                qe.FieldCondition(key=key, match=qe.MatchValue(value=_value(v))) for v in values
            ]
        if node.op in ("$ne", "$nin"):  # present and none of the values
            return qe.Filter(must_not=[qe.IsEmptyCondition(key=key), *matches])
        return matches[0] if len(matches) == 1 else qe.Filter(should=matches)
    compiled = query_filter(node)
    if compiled is None:  # a leaf always compiles to a condition
        raise NotImplementedError(f"no Qdrant form for {node!r}")
    only = compiled.must if isinstance(compiled.must, list) else None
    if only and len(only) == 1 and not compiled.should and not compiled.must_not:
        return _condition(only[0])
    return _filter(compiled)


def _value(value: Any) -> Any:
    """A match value as Edge takes it: ``numpy.bool_`` for a bool (see the module doc)."""
    return np.bool_(value) if isinstance(value, bool) else value


def _values(values: Any) -> list[Any]:
    return list(values)


def _conditions(got: Any) -> list[Any] | None:
    if got is None:
        return None
    return [_condition(c) for c in (got if isinstance(got, list) else [got])]


def _filter(flt: models.Filter) -> qe.Filter:
    return qe.Filter(
        must=_conditions(flt.must),
        should=_conditions(flt.should),
        must_not=_conditions(flt.must_not),
    )


def _condition(cond: Any) -> Any:
    if isinstance(cond, models.Filter):
        return _filter(cond)
    if isinstance(cond, models.IsEmptyCondition):
        return qe.IsEmptyCondition(key=payload_path(cond.is_empty.key))
    if isinstance(cond, models.FieldCondition):
        key = payload_path(cond.key)
        if isinstance(cond.match, models.MatchValue):
            return qe.FieldCondition(key=key, match=qe.MatchValue(value=_value(cond.match.value)))
        if isinstance(cond.match, models.MatchAny):
            return qe.FieldCondition(key=key, match=qe.MatchAny(any=_values(cond.match.any)))
        if isinstance(cond.range, models.Range):
            r = cond.range
            return qe.FieldCondition(
                key=key, range=qe.RangeFloat(gt=r.gt, gte=r.gte, lt=r.lt, lte=r.lte)
            )
    # The Qdrant compiler emits only the conditions above; a new one needs a case here.
    raise NotImplementedError(f"no Qdrant Edge form for the condition {cond!r}")
