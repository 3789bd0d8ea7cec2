"""Portable filters as RediSearch queries (DIALECT 2), used only by ``connectors/redis.py``.

Every value travels as a query parameter (``$p0``, ``$p1`` ...), so quotes and operators in
values never change a query's meaning. What RediSearch cannot answer exactly (case-folded
TAGs, presence tests without INDEXMISSING, integers beyond a double's precision) is refused
with ``ConfigError`` rather than answered approximately.
"""

from __future__ import annotations

from typing import Any

from vecmigrate.connectors.redis._schema import Layout
from vecmigrate.errors import ConfigError
from vecmigrate.filters import Bool, Node
from vecmigrate.model import MetadataField

_RANGES = {"$gt": "[({} +inf]", "$gte": "[{} +inf]", "$lt": "[-inf ({}]", "$lte": "[-inf {}]"}


class _Query:
    """Collects query parameters while a filter compiles."""

    def __init__(self) -> None:
        self.params: dict[str, str] = {}

    def param(self, value: str) -> str:
        """Register ``value`` as the next parameter; returns its reference (``$pN``)."""
        key = f"p{len(self.params)}"
        self.params[key] = value
        return "$" + key


def compile_filter(node: Node, layout: Layout, q: _Query) -> str:
    """A portable filter as a RediSearch query (DIALECT 2); values become parameters."""
    if isinstance(node, Bool):
        parts = [compile_filter(c, layout, q) for c in node.children]
        if node.op == "$not":
            return f"-({parts[0]})"
        return "(" + (" " if node.op == "$and" else " | ").join(parts) + ")"
    f = node.field
    attr, kind = layout.attrs.get(f.name, ("", ""))
    if kind not in ("TAG", "NUMERIC"):
        raise ConfigError(
            f"redis cannot express filters on {f.name!r}: it is not a TAG or NUMERIC field"
        )
    if attr in layout.nocase and node.op != "$exists":
        raise ConfigError(
            f"redis cannot express exact matches on {f.name!r}: its TAG field was created "
            "without CASESENSITIVE, so 'News' would match 'news'"
        )
    if attr in layout.missing:
        present, absent = f"-ismissing(@{attr})", f"ismissing(@{attr})"
    elif kind == "NUMERIC":
        present, absent = f"@{attr}:[-inf +inf]", f"-@{attr}:[-inf +inf]"
    elif node.op in ("$exists", "$ne", "$nin"):
        raise ConfigError(
            f"redis cannot express {node.op} on {f.name!r}: the index lacks INDEXMISSING"
        )
    if node.op == "$exists":
        return present if node.value else absent
    values = node.value if node.op in ("$in", "$nin") else [node.value]
    if kind == "TAG":
        tags = [q.param(t) for v in values for t in _tags(f, v)]
        match = f"@{attr}:{{{' | '.join(tags)}}}"
    else:
        if node.op in _RANGES:
            return f"@{attr}:" + _RANGES[node.op].format(_number(q, f, node.value))
        terms = []
        for v in values:
            p = _number(q, f, v)
            terms.append(f"@{attr}:[{p} {p}]")
        match = terms[0] if len(terms) == 1 else "(" + " | ".join(terms) + ")"
    if node.op in ("$ne", "$nin"):
        return f"({present} -{match})"
    return match


def _tags(f: MetadataField, value: Any) -> list[str]:
    """Stored TAG text(s) a filter value must match on field ``f``."""
    if f.type == "bool":
        return ["true" if value else "false"]
    if f.type == "list<int64>":
        return [str(int(value)) if float(value).is_integer() else repr(float(value))]
    if f.type == "list<float64>":
        return ["0.0", "-0.0"] if value == 0 else [repr(float(value))]
    if value == "" and f.type == "list<string>":
        raise ConfigError(f"redis cannot express a filter for an empty string in list {f.name!r}")
    return [str(value)]


def _number(q: _Query, f: MetadataField, value: Any) -> str:
    """A NUMERIC bound as a parameter; refuses ints a double cannot hold exactly."""
    if f.type == "int64" and abs(value) > 2**53:
        raise ConfigError(
            f"redis cannot express {value!r} on {f.name!r} exactly: NUMERIC fields are doubles"
        )
    return q.param(repr(float(value)))


def id_query(attr: str, kind: str, ids: list[Any], q: _Query) -> str:
    """The records whose id field (query attribute ``attr``, TAG or NUMERIC) holds one of
    ``ids``; values become parameters."""
    if kind == "TAG":
        return f"@{attr}:{{{' | '.join(q.param(str(i)) for i in ids)}}}"
    terms = []
    for i in ids:
        p = q.param(repr(float(i)))
        terms.append(f"@{attr}:[{p} {p}]")
    return "(" + " | ".join(terms) + ")"
