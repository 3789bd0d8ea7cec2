"""Milvus boolean expressions for the Milvus connector: literals, filters, key ranges.

Used only by ``connectors/milvus.py``. Filters are compiled to negation normal form with
an explicit presence test on every comparison, because ``!=`` / ``not in`` on a missing
JSON key is true in Milvus (lite and server alike). milvus-lite has no ``not``; Milvus
2.3+ servers have it, which only matters for the negation of a list containment.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from vecmigrate.errors import ConfigError
from vecmigrate.filters import Bool, Cond, Node
from vecmigrate.model import CollectionSchema, IdType, MetadataField

LAYOUT_KEY = "milvus.layout"
PK_KEY = "milvus.primary_key"
# Collections other tools made: where each metadata field lives ({field: [container, key]},
# container None for a field of its own), the JSON metadata field, and dynamic fields.
FIELDS_KEY = "milvus.fields"
JSON_KEY = "milvus.metadata_field"
DYNAMIC = "$meta"
DYNAMIC_KEY = "milvus.dynamic_fields"
_INT64_MIN = -(2**63)
_OPS = {"$eq": "==", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_NEGATED = {"$eq": "!=", "$ne": "==", "$gt": "<=", "$gte": "<", "$lt": ">=", "$lte": ">"}


def literal(value: Any) -> str:
    """A Milvus expression literal. Strings use JSON escapes, which the parser unquotes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        if f != f or f in (float("inf"), float("-inf")):
            raise ConfigError(f"Milvus expressions cannot hold the number {f!r}")
        return repr(f)
    return json.dumps(str(value), ensure_ascii=False)


def layout(schema: CollectionSchema) -> str:
    """``json`` (made by vecmigrate) or ``columns`` (one scalar field per metadata field)."""
    return str(schema.engine_settings.get(LAYOUT_KEY, "json"))


def field_places(schema: CollectionSchema) -> dict[str, tuple[str | None, str]]:
    """Where each metadata field of a ``columns`` collection lives: (container, key), the
    container None for a field of its own, a JSON field's name, or ``$meta``."""
    raw = schema.engine_settings.get(FIELDS_KEY)
    places: dict[str, tuple[str | None, str]] = {m.name: (None, m.name) for m in schema.metadata}
    if isinstance(raw, dict):
        places.update({f: (c, k) for f, (c, k) in raw.items()})
    return places


def pk(schema: CollectionSchema) -> str:
    """Name of the primary-key field."""
    return str(schema.engine_settings.get(PK_KEY) or "id")


def key_range(schema: CollectionSchema, after: Any, upto: Any) -> str:
    """``after < pk <= upto`` (either end open when None); ``""`` selects everything.

    Milvus 2.3 cannot parse the literal -9223372036854775808 (it negates 2**63), so bounds
    at the smallest int64 are written from its successor.
    """
    key = pk(schema)
    conds = []
    if after is not None:
        conds.append(
            f"{key} >= {_INT64_MIN + 1}" if after == _INT64_MIN else f"{key} > {literal(after)}"
        )
    if upto is not None:
        conds.append(
            f"{key} < {_INT64_MIN + 1}" if upto == _INT64_MIN else f"{key} <= {literal(upto)}"
        )
    return " and ".join(conds)


def ids_in(schema: CollectionSchema, ids: list[Any]) -> str:
    """The expression selecting records by key (pymilvus' own ``get``/``delete`` by ids
    write the smallest int64 as a literal that Milvus 2.3 cannot parse)."""
    key = pk(schema)
    rest = [i for i in ids if i != _INT64_MIN] if schema.id_type is IdType.INT else ids
    parts = [f"{key} in [{', '.join(map(literal, rest))}]"] if rest else []
    if len(rest) < len(ids):
        parts.append(f"{key} < {_INT64_MIN + 1}")
    return " or ".join(parts)


class Compiler:
    """Portable filter -> Milvus boolean expression, in negation normal form.

    ``has_not``: the engine parses ``not (...)`` (Milvus servers; milvus-lite does not).
    """

    def __init__(self, schema: CollectionSchema, *, has_not: bool) -> None:
        self.layout = layout(schema)
        self.nullable: set[str] = set(schema.engine_settings.get("milvus.nullable", []))
        self.has_not = has_not
        self._pk = pk(schema)
        self.places = field_places(schema) if self.layout == "columns" else {}

    def ref(self, f: MetadataField) -> str:
        """The expression naming field ``f``."""
        if self.layout == "json":
            return "metadata[" + json.dumps(f.name, ensure_ascii=False) + "]"
        container, key = self.places.get(f.name, (None, f.name))
        if container is None:
            return key
        return f"{container}[{json.dumps(key, ensure_ascii=False)}]"

    def _keyed(self, f: MetadataField) -> bool:
        """``f`` is a key inside a JSON field or ``$meta`` (a key that may be missing)."""
        return self.places.get(f.name, (None, ""))[0] is not None

    def _key_present(self, f: MetadataField) -> str:
        """A key holding a value of ``f``'s type: Milvus has no ``exists`` (lite 2.5), but a
        comparison on a missing key (or one of another type) is false."""
        col = self.ref(f)
        if f.type == "string":
            return f'{col} >= ""'
        if f.type in ("int64", "float64"):
            return f"({col} >= 0 or {col} < 0)"
        if f.type == "bool":
            return f"{col} in [true, false]"
        raise ConfigError(
            f"Milvus cannot test whether the {f.type} key {f.name!r} is present",
            hint="filter on its values ($eq, $in) only",
        )

    def presence(self, f: MetadataField, present: bool) -> str | None:
        """Expression testing presence (or absence); None means "always true"."""
        if self.layout == "json":
            key = json.dumps(f.name, ensure_ascii=False)
            return f'metadata_present["fields"][{key}] == {literal(present)}'
        if self._keyed(f):
            if f.type.startswith("list<") and present:
                return None  # only containment asks: a missing key contains nothing
            test = self._key_present(f)
            if present:
                return test
            if not self.has_not:
                raise ConfigError(
                    f"milvus-lite cannot express the absence of key {f.name!r}",
                    hint="milvus-lite expressions have no 'not'",
                )
            return f"not ({test})"
        if f.name in self.nullable:
            return f"{f.name} is {'not ' if present else ''}null"
        if present:
            return None
        return f"{self._pk} < {self._pk}"  # never true: a non-nullable field is always present

    def compile(self, node: Node, negate: bool = False) -> str:
        """The expression selecting the records ``node`` (negated when ``negate``) matches."""
        if isinstance(node, Bool):
            if node.op == "$not":
                return self.compile(node.children[0], not negate)
            is_and = (node.op == "$and") != negate
            parts = [f"({self.compile(c, negate)})" for c in node.children]
            return (" and " if is_and else " or ").join(parts)
        return self._cond(node, negate)

    def _cond(self, c: Cond, negate: bool) -> str:
        f = c.field
        if c.op == "$exists":
            expr = self.presence(f, bool(c.value) != negate)
            return expr if expr is not None else f"{self._pk} == {self._pk}"
        col = self.ref(f)
        if f.type.startswith("list<"):
            wanted = c.value if c.op == "$in" else [c.value]
            keyed = self.layout == "json" or self._keyed(f)
            fn = "json_contains_any" if keyed else "array_contains_any"
            test = f"{fn}({col}, [{', '.join(map(literal, wanted))}])"
            if negate:
                if not self.has_not:
                    raise ConfigError(
                        "milvus-lite cannot express the negation of a list containment",
                        hint="milvus-lite expressions have no 'not'",
                    )
                return f"({self.presence(f, False)}) or (not ({test}))"
            return self._with_presence(f, test)
        if c.op in ("$in", "$nin"):
            op = "in" if (c.op == "$in") != negate else "not in"
            test = f"{col} {op} [{', '.join(map(literal, c.value))}]"
        else:
            test = f"{col} {(_NEGATED if negate else _OPS)[c.op]} {literal(c.value)}"
        if negate:
            # not (present and x op v)  ==  absent or (present and x (complement op) v)
            return f"({self.presence(f, False)}) or ({self._with_presence(f, test)})"
        return self._with_presence(f, test)

    def _with_presence(self, f: MetadataField, test: str) -> str:
        present = self.presence(f, True)
        return test if present is None else f"({present}) and ({test})"


def typed_ids(schema: CollectionSchema, ids: Any) -> list[Any]:
    """Ids as the primary key's type; ids that cannot exist in an INT64 key are dropped."""
    if schema.id_type is IdType.INT:
        out: list[Any] = []
        for i in ids:
            try:
                out.append(int(i))
            except (TypeError, ValueError):
                continue
        return out
    return [str(i) for i in ids]
