"""SQL building blocks of the pgvector connector, used only by ``connectors/pgvector*.py``.

Portable filters compile to SQL predicates with bound parameters (values are never inlined).
A comparison on a NULL column is false rather than unknown (``IS NOT NULL AND ...`` and
``coalesce``), so ``$not``/``$and``/``$or`` combine leaves with two-valued logic.
psycopg errors map to vecmigrate's typed errors in ``_client``.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from vecmigrate.filters import Bool, Node
from vecmigrate.model import Metric

OPS = {Metric.COSINE: "vector_cosine_ops", Metric.DOT: "vector_ip_ops", Metric.L2: "vector_l2_ops"}
OPERATOR = {Metric.COSINE: "<=>", Metric.DOT: "<#>", Metric.L2: "<->"}
SQL_TYPE: dict[str, str] = {
    "string": "text",
    "int64": "bigint",
    "float64": "double precision",
    "bool": "boolean",
    "list<string>": "text[]",
    "list<int64>": "bigint[]",
    "list<float64>": "double precision[]",
    "json": "jsonb",
}


def where_sql(node: Node) -> tuple[sql.Composable, list[Any]]:
    """A portable filter as a SQL predicate with bound parameters (values never inlined)."""
    if isinstance(node, Bool):
        parts = [where_sql(c) for c in node.children]
        params = [p for _, ps in parts for p in ps]
        if node.op == "$not":
            return sql.SQL("NOT coalesce(({}), false)").format(parts[0][0]), params
        joiner = sql.SQL(" AND " if node.op == "$and" else " OR ")
        inner = joiner.join(sql.SQL("coalesce(({}), false)").format(q) for q, _ in parts)
        return sql.SQL("({})").format(inner), params
    col = sql.Identifier(node.field.name)
    if node.op == "$exists":
        return sql.SQL("{} IS NOT NULL" if node.value else "{} IS NULL").format(col), []
    if node.field.type.startswith("list<"):
        wanted = node.value if node.op == "$in" else [node.value]
        return sql.SQL("{} && %s").format(col), [wanted]
    if node.op in ("$in", "$nin"):
        template = (
            "({0} IS NOT NULL AND {0} = ANY(%s))"
            if node.op == "$in"
            else ("({0} IS NOT NULL AND NOT ({0} = ANY(%s)))")
        )
        return sql.SQL(template).format(col), [node.value]
    op = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[node.op]
    return sql.SQL("({0} IS NOT NULL AND {0} " + op + " %s)").format(col), [node.value]


def regclass(namespace: str, name: str) -> str:
    """``"namespace"."name"``: the text a ``%s::regclass`` parameter needs for a table
    (double quotes inside a name are doubled, as in any quoted identifier)."""

    def quote(part: str) -> str:
        return '"' + part.replace('"', '""') + '"'

    return f"{quote(namespace)}.{quote(name)}"
