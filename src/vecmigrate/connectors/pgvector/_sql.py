"""SQL building blocks of the pgvector connector, used only by ``connectors/pgvector*.py``.

Portable filters compile to SQL predicates with bound parameters (values are never inlined).
A comparison on a NULL column is false rather than unknown (``IS NOT NULL AND ...`` and
``coalesce``), so ``$not``/``$and``/``$or`` combine leaves with two-valued logic.
psycopg errors map to vecmigrate's typed errors in ``_client``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
import psycopg
from psycopg import sql

from vecmigrate.connectors.pgvector._sparse import column_type as sparse_column_type
from vecmigrate.errors import ConfigError
from vecmigrate.filters import Bool, Node
from vecmigrate.model import CollectionSchema, IdType, MetadataField, Metric, VectorField

log = logging.getLogger("vecmigrate.connectors.pgvector")

# ``query(sql, params)``: the connector's one-transaction query, returning all rows.
Query: TypeAlias = Callable[[Any, Any], list[tuple[Any, ...]]]
# The SQL value of a metadata field and its SQL type (``Layout.field_sql``).
FieldSQL: TypeAlias = Callable[[MetadataField], tuple[sql.Composable, str]]

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


def column_list(schema: CollectionSchema) -> sql.Composed:
    """The columns of the table vecmigrate creates for ``schema``."""
    key = "bigint" if schema.id_type is IdType.INT else "text"
    cols: list[sql.Composable] = [sql.SQL("id {} PRIMARY KEY").format(sql.SQL(key))]
    if schema.has_document:
        cols.append(sql.SQL("document text"))
    cols += [
        sql.SQL("{} vector({})").format(sql.Identifier(v.name), sql.Literal(v.dim))
        for v in schema.vectors
    ]
    cols += [
        sql.SQL("{} {}").format(sql.Identifier(s.name), sql.SQL(sparse_column_type(s)))
        for s in schema.sparse
    ]
    cols += [
        sql.SQL("{} {}").format(sql.Identifier(m.name), sql.SQL(SQL_TYPE[m.type]))
        for m in schema.metadata
    ]
    cols.append(sql.SQL("metadata_extra jsonb"))
    return sql.SQL(", ").join(cols)


# pgvector indexes (HNSW, IVFFlat) a vector column of at most 2,000 dimensions, and the
# column cast to halfvec (float16, in the index only) of at most 4,000.
MAX_VECTOR_INDEX_DIM = 2000
MAX_HALFVEC_INDEX_DIM = 4000


def index_kind(v: VectorField) -> str:
    """The index ``v`` asks for ("flat" / "none": no index)."""
    return v.index.kind if v.index else "auto"


def index_cast(v: VectorField) -> str | None:
    """The type an index on ``v`` is built on past 2,000 dimensions (``halfvec(N)``):
    searches order by that expression so the index serves them. None: the column itself."""
    past = MAX_VECTOR_INDEX_DIM < v.dim <= MAX_HALFVEC_INDEX_DIM
    if index_kind(v) in ("flat", "none") or not past:
        return None
    return f"halfvec({v.dim})"


def unindexable(v: VectorField) -> str | None:
    """Why pgvector cannot build the index ``v`` asks for by name (None: it can)."""
    if index_kind(v) in ("hnsw", "ivf_flat") and v.dim > MAX_HALFVEC_INDEX_DIM:
        return (
            f"vector field {v.name!r} has {v.dim} dimensions; pgvector indexes at most "
            f"{MAX_HALFVEC_INDEX_DIM:,} (as halfvec)"
        )
    return None


def check_indexable(schema: CollectionSchema) -> None:
    """Refuse, before a table of vecmigrate's is made, a vector index pgvector cannot
    build (past 4,000 dimensions); say where one is built on the column cast to
    halfvec (past 2,000)."""
    for v in schema.vectors:
        why = unindexable(v)
        if why is not None:
            raise ConfigError(
                f"{schema.name!r}: {why}; nothing was written",
                hint=f"copy it without an index: vectors: {{{v.name}: {{index: {{kind: "
                "flat}}}} in a mapping file (searches then scan every row)",
            )
        cast = index_cast(v)
        if cast is not None:
            log.warning(
                "%s.%s: %d dimensions: its %s index is built on (%s)::%s, pgvector's way "
                "past 2,000 (float16 in the index only: the column keeps float32)",
                schema.name,
                v.name,
                v.dim,
                index_kind(v),
                v.name,
                cast,
            )
        elif v.dim > MAX_HALFVEC_INDEX_DIM and index_kind(v) == "auto":
            log.warning(
                "%s.%s: %d dimensions: pgvector indexes at most %d; no index is built",
                schema.name,
                v.name,
                v.dim,
                MAX_HALFVEC_INDEX_DIM,
            )


def index_sql(name: str, table: sql.Composable, v: VectorField) -> sql.Composed | None:
    """``CREATE INDEX`` of the HNSW / IVFFlat index ``v`` asks for (None: flat, no index),
    on the column cast to ``halfvec`` past 2,000 dimensions."""
    kind = index_kind(v)
    if kind in ("flat", "none") or (kind == "auto" and v.dim > MAX_HALFVEC_INDEX_DIM):
        return None
    params = dict(v.index.params) if v.index else {}
    idx = sql.Identifier(f"{name}_{v.name}_idx"[:63])
    if kind == "ivf_flat":
        lists = int(params.get("nlist", params.get("lists", 100)))
        using, opts = "ivfflat", sql.SQL("lists = {}").format(sql.Literal(lists))
    else:
        m = int(params.get("M", params.get("m", 16)))
        efc = int(params.get("ef_construction", 64))
        using = "hnsw"
        opts = sql.SQL("m = {}, ef_construction = {}").format(sql.Literal(m), sql.Literal(efc))
    column: sql.Composable = sql.Identifier(v.name)
    ops = OPS[v.metric]
    cast = index_cast(v)
    if cast is not None:
        column = sql.SQL("(({})::{})").format(column, sql.SQL(cast))
        ops = ops.replace("vector_", "halfvec_")
    return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING {} ({} {}) WITH ({})").format(
        idx, table, sql.SQL(using), column, sql.SQL(ops), opts
    )


def field_index_sql(name: str, table: sql.Composable, m: MetadataField) -> sql.Composed | None:
    """``CREATE INDEX`` serving filters on metadata field ``m`` when the source indexed it:
    btree on a scalar column, GIN on an array or jsonb one (None: not indexed)."""
    if not m.indexed:
        return None
    using = "gin" if m.type.startswith("list<") or m.type == "json" else "btree"
    return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING {} ({})").format(
        sql.Identifier(f"{name}_{m.name}_idx"[:63]), table, sql.SQL(using), sql.Identifier(m.name)
    )


def where_sql(node: Node, column: FieldSQL | None = None) -> tuple[sql.Composable, list[Any]]:
    """A portable filter as a SQL predicate with bound parameters (values never inlined).
    ``column`` gives each field's SQL value and type (default: the column named like the
    field, of the type vecmigrate creates)."""
    if isinstance(node, Bool):
        parts = [where_sql(c, column) for c in node.children]
        params = [p for _, ps in parts for p in ps]
        if node.op == "$not":
            return sql.SQL("NOT coalesce(({}), false)").format(parts[0][0]), params
        joiner = sql.SQL(" AND " if node.op == "$and" else " OR ")
        inner = joiner.join(sql.SQL("coalesce(({}), false)").format(q) for q, _ in parts)
        return sql.SQL("({})").format(inner), params
    col, typ = (
        column(node.field)
        if column
        else (sql.Identifier(node.field.name), SQL_TYPE.get(node.field.type, "jsonb"))
    )
    if node.op == "$exists":
        return sql.SQL("{} IS NOT NULL" if node.value else "{} IS NULL").format(col), []
    if node.field.type.startswith("list<"):
        wanted = node.value if node.op == "$in" else [node.value]
        return sql.SQL("{} && %s::{}").format(col, sql.SQL(typ)), [wanted]
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


def unquote(identifier: str) -> str:
    """An identifier as PostgreSQL prints it (``pg_get_expr``), unquoted: ``"Page Text"``
    is ``Page Text``, ``"a""b"`` is ``a"b``, ``body`` is itself."""
    if len(identifier) >= 2 and identifier[0] == identifier[-1] == '"':
        return identifier[1:-1].replace('""', '"')
    return identifier


_NATIVE: dict[str, frozenset[str]] = {
    "string": frozenset({"text", "character varying", "character", "citext"}),
    "int64": frozenset({"bigint", "integer", "smallint"}),
    "float64": frozenset({"double precision"}),
    "bool": frozenset({"boolean"}),
    "list<string>": frozenset({"text[]", "character varying[]"}),
    "list<int64>": frozenset({"bigint[]", "integer[]", "smallint[]"}),
    "list<float64>": frozenset({"double precision[]", "real[]"}),
}
_TIMES = frozenset({"timestamp with time zone", "timestamp without time zone", "date"})


def read_sql(column: str, field: MetadataField, typ: str) -> tuple[sql.Composable, str]:
    """Column ``column`` of SQL type ``typ`` read as ``field``'s portable type: as it is
    when it already is, converted exactly when it can be (real and numeric to float8, uuid
    to text, timestamps to ISO 8601 text), else as JSON (filed like any engine's values:
    what does not fit the field lands in ``metadata_extra``). Returns it and its SQL type."""
    col = sql.Identifier(column)
    t = field.type
    if typ in _NATIVE.get(t, ()):
        return col, typ
    if t == "float64" and typ in ("real", "numeric", "bigint", "integer", "smallint"):
        return sql.SQL("{}::float8").format(col), "double precision"
    if t == "string" and typ in _TIMES:
        return sql.SQL("to_json({}) #>> '{{}}'").format(col), "text"
    if t == "string" and typ == "uuid":
        return sql.SQL("{}::text").format(col), "text"
    return sql.SQL("to_jsonb({})").format(col), "jsonb"


_JSON_KINDS = {"string": "string", "int64": "number", "float64": "number", "bool": "boolean"}


def json_key_sql(column: str, key: str, field: MetadataField) -> tuple[sql.Composable, str]:
    """The value of ``key`` in a json/jsonb ``column`` as SQL of ``field``'s type (NULL when
    absent or of another JSON type: that value is not the field's), and its SQL type."""
    v = sql.SQL("({}::jsonb -> {})").format(sql.Identifier(column), sql.Literal(key))
    text = sql.SQL("({}::jsonb ->> {})").format(sql.Identifier(column), sql.Literal(key))
    t = field.type
    if t in _JSON_KINDS:
        cast = {"string": "text", "int64": "numeric", "float64": "numeric", "bool": "boolean"}[t]
        return sql.SQL("CASE WHEN jsonb_typeof({}) = {} THEN {}::{} END").format(
            v, sql.Literal(_JSON_KINDS[t]), text, sql.SQL(cast)
        ), cast
    if t.startswith("list<"):
        kind, cast = ("string", "text") if t == "list<string>" else ("number", "numeric")
        return sql.SQL(
            "CASE WHEN jsonb_typeof({0}) = 'array' THEN ARRAY(SELECT e #>> '{{}}' FROM "
            "jsonb_array_elements({0}) e WHERE jsonb_typeof(e) = {1})::{2}[] END"
        ).format(v, sql.Literal(kind), sql.SQL(cast)), f"{cast}[]"
    return sql.SQL("CASE WHEN jsonb_typeof({0}) <> 'null' THEN {0} END").format(v), "jsonb"


def knn(
    conn: psycopg.Connection[Any],
    query: sql.Composed,
    where_params: list[Any],
    vectors: np.ndarray,
    ef: int,
) -> tuple[list[list[Any]], list[list[float]]]:
    """Top-k ids and distances of each query vector, in one transaction."""
    ids: list[list[Any]] = []
    scores: list[list[float]] = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef)))
        # With a filter, HNSW keeps scanning until k rows pass it (pgvector >= 0.8).
        cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        for q in np.asarray(vectors, dtype=np.float32):
            rows = cur.execute(query, (q, *where_params, q)).fetchall()
            ids.append([r[0] for r in rows])
            scores.append([float(r[1]) for r in rows])
    return ids, scores
