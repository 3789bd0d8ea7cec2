"""Portable filters as LanceDB (DataFusion) SQL predicates; literals are escaped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vecmigrate.filters import NAMESPACE_KEY, Bool, Node

# A metadata field's SQL expression; None when no SQL reaches it (a key in JSON text).
ColumnOf = Callable[[str], "str | None"]


class NotExpressible(Exception):
    """The filter names a field no SQL reaches: evaluate it on the rows instead."""


def sql_value(value: Any) -> str:
    """A literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | np.integer | np.floating):
        return repr(value.item() if isinstance(value, np.generic) else value)
    return "'" + str(value).replace("'", "''") + "'"


def metadata_column(name: str) -> str:
    """A field of the ``metadata`` struct of a table vecmigrate laid out (backticks quote
    any field name; a backtick inside one is doubled)."""
    return "metadata.`" + name.replace("`", "``") + "`"


def where_sql(node: Node, column: ColumnOf = metadata_column) -> str:
    """A portable filter as a SQL predicate; NotExpressible when ``column`` has no SQL
    for a field it names."""
    if isinstance(node, Bool):
        if node.op == "$not":
            return f"NOT coalesce(({where_sql(node.children[0], column)}), false)"
        joiner = " AND " if node.op == "$and" else " OR "
        return (
            "("
            + joiner.join(f"coalesce(({where_sql(c, column)}), false)" for c in node.children)
            + ")"
        )
    col = "namespace" if node.field.name == NAMESPACE_KEY else column(node.field.name)
    if col is None:
        raise NotExpressible(node.field.name)
    if node.op == "$exists":
        return f"{col} IS {'NOT ' if node.value else ''}NULL"
    if node.field.type.startswith("list<"):
        wanted = node.value if node.op == "$in" else [node.value]
        return f"array_has_any({col}, [{', '.join(map(sql_value, wanted))}])"
    if node.op in ("$in", "$nin"):
        listed = ", ".join(map(sql_value, node.value))
        return f"({col} IS NOT NULL AND {col} {'NOT ' if node.op == '$nin' else ''}IN ({listed}))"
    sql_op = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[node.op]
    return f"({col} IS NOT NULL AND {col} {sql_op} {sql_value(node.value)})"
