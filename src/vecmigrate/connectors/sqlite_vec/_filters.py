"""Portable filters as SQLite predicates with bound parameters, and identifier quoting
(used by ``connectors/sqlite_vec``)."""

from __future__ import annotations

from typing import Any

from vecmigrate.filters import Bool, Node


def quote(name: str) -> str:
    """An SQLite identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def where_sql(node: Node) -> tuple[str, list[Any]]:
    """A portable filter as an SQLite predicate with bound parameters."""
    if isinstance(node, Bool):
        parts = [where_sql(c) for c in node.children]
        params = [p for _, ps in parts for p in ps]
        if node.op == "$not":
            return f"NOT coalesce(({parts[0][0]}), 0)", params
        joiner = " AND " if node.op == "$and" else " OR "
        return "(" + joiner.join(f"coalesce(({q}), 0)" for q, _ in parts) + ")", params
    col = quote(node.field.name)
    if node.op == "$exists":
        return f"{col} IS {'NOT ' if node.value else ''}NULL", []
    if node.field.type.startswith("list<"):
        wanted = node.value if node.op == "$in" else [node.value]
        marks = ", ".join("?" * len(wanted))
        return f"EXISTS (SELECT 1 FROM json_each({col}) WHERE value IN ({marks}))", list(wanted)
    if node.op in ("$in", "$nin"):
        marks = ", ".join("?" * len(node.value))
        neg = "NOT " if node.op == "$nin" else ""
        return f"({col} IS NOT NULL AND {col} {neg}IN ({marks}))", list(map(sql_value, node.value))
    op = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[node.op]
    return f"({col} IS NOT NULL AND {col} {op} ?)", [sql_value(node.value)]


def sql_value(value: Any) -> Any:
    """A value as SQLite binds it (booleans are integers)."""
    return int(value) if isinstance(value, bool) else value
