"""Shared pieces of the Elasticsearch / OpenSearch protocol test double (see
``search_server.py``): error shape, value checks, scoring, index state."""

from __future__ import annotations

import json
import math
import re
import uuid
from typing import Any

MAX_WINDOW = 10_000
_BAD_NAME = re.compile(r'[\\/*?"<>| ,#:A-Z]')
_SEARCH_KEYS = {
    "query", "knn", "size", "from", "sort", "search_after", "pit", "_source",
    "track_total_hits", "slice",
}  # fmt: skip


class ApiFailure(Exception):
    """An error response in the engines' shape."""

    def __init__(
        self,
        status: int,
        etype: str,
        reason: str,
        caused_by: dict[str, Any] | None = None,
        raw: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.status, self.etype, self.reason, self.caused_by = status, etype, reason, caused_by
        self.raw = raw  # the engines answer unknown routes with a bare string "error"

    def error(self) -> dict[str, Any]:
        """The ``error`` object (also the shape of a refused bulk item's ``error``)."""
        err: dict[str, Any] = {"type": self.etype, "reason": self.reason}
        if self.caused_by:
            err["caused_by"] = self.caused_by
        return err

    def body(self) -> dict[str, Any]:
        if self.raw is not None:
            return {"error": self.raw, "status": self.status}
        err = self.error()
        root = {"type": self.etype, "reason": self.reason}
        return {"error": {"root_cause": [root], **err}, "status": self.status}


def _parse_json(text: str | bytes) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"Non-standard token '{token}'")

    return json.loads(text, parse_constant=refuse)


def _values(v: Any) -> list[Any]:
    return [x for x in (v if isinstance(v, list) else [v]) if x is not None]


def _is_int(x: Any, bits: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and -(2**bits) <= x < 2**bits


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


# What each field type accepts (JSON numbers/strings/booleans as the engines coerce them).
_CHECKS: dict[str, Any] = {
    "long": lambda x: _is_int(x, 63),
    "integer": lambda x: _is_int(x, 31),
    "double": _is_number,
    "float": _is_number,
    "boolean": lambda x: isinstance(x, bool) or x in ("true", "false"),
    "keyword": lambda x: isinstance(x, str | int | float | bool),
    "text": lambda x: isinstance(x, str | int | float | bool),
}


def _score(similarity: str, q: list[float], v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(q, v, strict=True))
    if similarity in ("cosine", "cosinesimil"):
        nq, nv = math.sqrt(sum(a * a for a in q)), math.sqrt(sum(b * b for b in v))
        return (1 + dot / (nq * nv)) / 2 if nq and nv else 0.0
    if similarity == "dot_product":
        return (1 + dot) / 2
    if similarity in ("max_inner_product", "innerproduct"):
        return dot + 1 if dot >= 0 else 1 / (1 - dot)
    d2 = sum((a - b) ** 2 for a, b in zip(q, v, strict=True))
    return 1 / (1 + d2)


class Index:
    """One index: mapping, live documents and the searchable (refreshed) view."""

    def __init__(self, name: str, settings: dict[str, Any], mappings: dict[str, Any]) -> None:
        self.name, self.settings, self.mappings = name, settings, mappings
        self.uuid = uuid.uuid4().hex[:22]
        self.docs: dict[str, tuple[int, dict[str, Any]]] = {}  # _id -> (doc number, source)
        self.searchable: dict[str, tuple[int, dict[str, Any]]] = {}
        self.next_doc = 0
        self.version: dict[str, int] = {}

    @property
    def props(self) -> dict[str, Any]:
        props: dict[str, Any] = self.mappings.setdefault("properties", {})
        return props


class State:
    """What the request handlers share (the server's state, typed for the mixins)."""

    es: bool
    vtuple: tuple[int, ...]
    indexes: dict[str, Index]
    pits: dict[str, tuple[str, dict[str, tuple[int, dict[str, Any]]]]]
    pit_rows: dict[str, dict[str, Any]]
    item_rejections: int

    def _get(self, name: str) -> Index:
        idx = self.indexes.get(name)
        if idx is None:
            raise ApiFailure(404, "index_not_found_exception", f"no such index [{name}]")
        return idx
