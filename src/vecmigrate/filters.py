"""One portable filter language (Mongo-style), evaluated exactly and compiled per engine.

Operators: ``$eq $ne $in $nin $gt $gte $lt $lte $exists $and $or $not``;
``{"genre": "news"}`` is short for ``{"genre": {"$eq": "news"}}``.

Semantics, the same on every engine (the conformance suite checks it):

* A field is *present* when the record has a non-null value for it.
* ``$eq/$ne/$in/$nin/$gt/$gte/$lt/$lte`` match only records where the field is present;
  ``$ne`` and ``$nin`` therefore do not match records that lack the field.
* On a list field, ``$eq v`` means "contains v" and ``$in [...]`` "contains any of";
  other operators on list fields are refused.
* Range operators take numbers on int/float fields; bool fields take ``$eq``/``$ne``.
* ``$exists: true|false`` tests presence; ``$not`` is the exact complement of its filter.

Filters see the typed metadata columns; values kept in ``metadata_extra`` (type drift)
are not visible to them.

The reserved key ``$namespace`` filters on the record's namespace (tenant) rather than a
metadata field: ``{"$namespace": "acme"}``, with ``$eq $ne $in $nin`` only, on collections
with namespaces. ``operators()`` reports it as the operator ``$namespace``, so a connector
refuses it unless its ``capabilities.filter_ops`` lists ``NAMESPACE_KEY`` (it compiles it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.errors import ConfigError
from vecmigrate.model import CollectionSchema, MetadataField

COMPARISONS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists")
ALL_OPS = frozenset((*COMPARISONS, "$and", "$or", "$not"))
NAMESPACE_KEY = "$namespace"
NAMESPACE_FIELD = MetadataField(name=NAMESPACE_KEY, type="string")
"""The pseudo-field a ``$namespace`` condition is on (``Cond.field``)."""


@dataclass(frozen=True)
class Cond:
    """One comparison on one metadata field."""

    field: MetadataField
    op: str
    value: Any


@dataclass(frozen=True)
class Bool:
    """``$and`` / ``$or`` of children, or ``$not`` of one child."""

    op: str
    children: tuple[Node, ...]


Node: TypeAlias = Cond | Bool


def _check_value(f: MetadataField, op: str, value: Any) -> Any:
    is_list = f.type.startswith("list<")
    if op == "$exists":
        if not isinstance(value, bool):
            raise ConfigError(f"filter on {f.name!r}: $exists takes true or false")
        return value
    if op in ("$in", "$nin"):
        if not isinstance(value, list) or not value:
            raise ConfigError(f"filter on {f.name!r}: {op} takes a non-empty list")
        return [_check_value(f, "$eq", v) for v in value]
    if is_list and op not in ("$eq", "$in"):
        raise ConfigError(
            f"filter on list field {f.name!r}: only $eq (contains) and $in are supported"
        )
    base = f.type[5:-1] if is_list else f.type
    if op in ("$gt", "$gte", "$lt", "$lte") and base not in ("int64", "float64"):
        raise ConfigError(f"filter on {f.name!r}: {op} needs a numeric field, it is {f.type}")
    ok = {
        "string": lambda v: isinstance(v, str),
        "int64": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "float64": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
    }.get(base)
    if ok is None:
        raise ConfigError(f"filter on {f.name!r}: fields of type {f.type} cannot be filtered")
    if not ok(value):
        raise ConfigError(f"filter on {f.name!r}: {value!r} is not a {base} value")
    return value


def parse(filter: dict[str, Any], schema: CollectionSchema) -> Node:
    """Validate a filter against the schema; ConfigError names the offending part."""
    if not isinstance(filter, dict) or not filter:
        raise ConfigError(f"a filter is a non-empty object, got {filter!r}")
    parts: list[Node] = []
    for key, value in filter.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{key} takes a non-empty list of filters")
            parts.append(Bool(key, tuple(parse(v, schema) for v in value)))
        elif key == "$not":
            parts.append(Bool("$not", (parse(value, schema),)))
        elif key == NAMESPACE_KEY:
            parts += _namespace_conds(value, schema)
        elif key.startswith("$"):
            raise ConfigError(
                f"unknown filter operator {key!r}", hint=f"use one of {sorted(ALL_OPS)}"
            )
        else:
            f = schema.metadata_field(key)
            if f is None:
                raise ConfigError(
                    f"filter names {key!r}, which is not a metadata field of {schema.name!r}"
                )
            ops = (
                value
                if isinstance(value, dict) and any(k.startswith("$") for k in value)
                else {"$eq": value}
            )
            for op, operand in ops.items():
                if op not in COMPARISONS:
                    raise ConfigError(f"unknown operator {op!r} on field {key!r}")
                parts.append(Cond(f, op, _check_value(f, op, operand)))
    return parts[0] if len(parts) == 1 else Bool("$and", tuple(parts))


def _namespace_conds(value: Any, schema: CollectionSchema) -> list[Node]:
    if schema.namespaces is None:
        raise ConfigError(f"filter on {NAMESPACE_KEY}: {schema.name!r} has no namespaces")
    ops = value if isinstance(value, dict) else {"$eq": value}
    out: list[Node] = []
    for op, operand in ops.items():
        if op not in ("$eq", "$ne", "$in", "$nin"):
            raise ConfigError(f"filter on {NAMESPACE_KEY}: only $eq $ne $in $nin, not {op!r}")
        out.append(Cond(NAMESPACE_FIELD, op, _check_value(NAMESPACE_FIELD, op, operand)))
    return out


def operators(node: Node) -> set[str]:
    """Every operator a parsed filter uses (``$namespace`` for a namespace condition)."""
    if isinstance(node, Cond):
        return {node.op, NAMESPACE_KEY} if node.field.name == NAMESPACE_KEY else {node.op}
    return {node.op}.union(*(operators(c) for c in node.children))


def fields(node: Node) -> set[str]:
    """Every metadata field a parsed filter names."""
    if isinstance(node, Cond):
        return {node.field.name}
    return set().union(*(fields(c) for c in node.children))


def namespace_scope(
    node: Node | None, namespaces: list[str | None]
) -> tuple[list[str | None], Node | None]:
    """For engines that address namespaces separately (tenants, Pinecone namespaces): the
    namespaces a filter's top-level ``$namespace`` conditions allow, and the rest of the
    filter. A ``$namespace`` under ``$or``/``$not`` cannot be scoped: ConfigError."""
    if node is None:
        return namespaces, None
    parts = list(node.children) if isinstance(node, Bool) and node.op == "$and" else [node]
    scoped = [p for p in parts if isinstance(p, Cond) and p.field.name == NAMESPACE_KEY]
    rest = [p for p in parts if p not in scoped]
    if any(NAMESPACE_KEY in operators(p) for p in rest):
        raise ConfigError(f"{NAMESPACE_KEY} can only be combined with $and here")

    def allows(c: Node, ns: str | None) -> bool:
        assert isinstance(c, Cond)
        if ns is None:  # like a field: only a present namespace matches
            return False
        if c.op in ("$eq", "$ne"):
            return bool(ns == c.value) == (c.op == "$eq")
        return (ns in c.value) == (c.op == "$in")

    allowed = [ns for ns in namespaces if all(allows(c, ns) for c in scoped)]
    remaining = rest[0] if len(rest) == 1 else Bool("$and", tuple(rest)) if rest else None
    return allowed, remaining


# -- exact evaluation on Arrow ------------------------------------------------------------------
def evaluate(node: Node, batch: pa.RecordBatch) -> np.ndarray:
    """Boolean mask of the batch's records that match (the reference semantics)."""
    if isinstance(node, Bool):
        masks = [evaluate(c, batch) for c in node.children]
        if node.op == "$not":
            return ~masks[0]
        combine = np.logical_and if node.op == "$and" else np.logical_or
        out: np.ndarray = combine.reduce(masks)
        return out
    n = batch.num_rows
    if node.field.name == NAMESPACE_KEY:
        names = batch.schema.names
        col = batch.column("namespace") if "namespace" in names else pa.nulls(n, pa.string())
    elif "metadata" not in batch.schema.names:
        col = pa.nulls(n)
    else:
        struct = batch.column("metadata")
        idx = struct.type.get_field_index(node.field.name)
        col = struct.field(idx) if idx >= 0 else pa.nulls(n)
    present = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if node.op == "$exists":
        return present if node.value else ~present
    if node.field.type.startswith("list<"):
        wanted = node.value if node.op == "$in" else [node.value]
        rows = col.to_pylist()
        return np.asarray([bool(r) and any(w in r for w in wanted) for r in rows], dtype=bool)
    if node.op in ("$in", "$nin"):
        values = pa.array(node.value, _value_type(col.type, node.value))
        hit = pc.is_in(col, value_set=values).to_numpy(zero_copy_only=False)
        hit = np.asarray(hit, dtype=bool)
        matched: np.ndarray = present & (hit if node.op == "$in" else ~hit)
        return matched
    fn = {
        "$eq": pc.equal,
        "$ne": pc.not_equal,
        "$gt": pc.greater,
        "$gte": pc.greater_equal,
        "$lt": pc.less,
        "$lte": pc.less_equal,
    }[node.op]
    result = fn(col, pa.scalar(node.value, _value_type(col.type, [node.value]))).fill_null(False)
    compared: np.ndarray = present & np.asarray(result.to_numpy(zero_copy_only=False), dtype=bool)
    return compared


def _value_type(column: pa.DataType, values: Any) -> pa.DataType:
    """The Arrow type to compare ``values`` with a column in: the column's own, but
    float64 for a fractional bound on an integer column (``year < 1995.5`` is not
    ``year < 1995``)."""
    if pa.types.is_integer(column) and any(
        isinstance(v, float) and not v.is_integer() for v in values
    ):
        return pa.float64()
    return column
