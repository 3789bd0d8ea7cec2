"""Full-text search PostgreSQL computes from a table's text, used only by
``connectors/pgvector*.py``: a ``tsvector`` column ``GENERATED ALWAYS AS
(to_tsvector('english', content)) STORED`` (LlamaIndex's hybrid ``text_search_tsv``, many
applications' ``tsv``), usually with a GIN index, or a GIN index on the expression
``to_tsvector('simple', body)``.

Over the document column it is the portable ``FullTextField`` (``analyzer`` =
``{"config": ...}``, the text search configuration; ``params``: ``stored`` for a generated
column, ``index``: its access method) and is built again on a pgvector target, the same way.
A generated ``tsvector`` over anything else (a title and a body...) cannot follow the
records: not carried, refused until the mapping leaves it behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from vecmigrate.connectors.pgvector._sql import Query, unquote
from vecmigrate.errors import ConfigError
from vecmigrate.model import CollectionSchema, FullTextField

FUNCTION = "to_tsvector"
# The configuration a pgvector target uses for another engine's full-text search (Milvus's
# standard analyzer, LanceDB's default tokenizer: lower-cased words, no stemming).
FOREIGN_CONFIG = "simple"

# As pg_get_expr prints them: to_tsvector('english'::regconfig, (text)::text),
# to_tsvector('simple'::regconfig, COALESCE(body, ''::text)).
_TO_TSVECTOR = re.compile(r"to_tsvector\('(?P<config>[^']+)'::regconfig, (?P<arg>.+)\)")
_COALESCE = re.compile(r"COALESCE\((?P<arg>.+), ''::(?:text|character varying)\)")
_CAST = re.compile(r"::(?:text|character varying)$")
_IDENTIFIER = re.compile(r'"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*')


def tsvector_source(expr: str) -> tuple[str, str] | None:
    """(configuration, column) of ``to_tsvector('config', column)`` as PostgreSQL prints it
    (the column cast to text, or coalesced with ``''``), else None: an expression over
    anything but one column."""
    m = _TO_TSVECTOR.fullmatch(expr.strip())
    if m is None:
        return None
    arg = m["arg"]
    c = _COALESCE.fullmatch(arg)
    arg = c["arg"] if c else arg
    while True:
        stripped = _CAST.sub("", arg)
        if stripped.startswith("(") and stripped.endswith(")"):
            stripped = stripped[1:-1]
        if stripped == arg:
            break
        arg = stripped
    if not _IDENTIFIER.fullmatch(arg):
        return None
    return m["config"], unquote(arg)


@dataclass(frozen=True)
class TextSearch:
    """What a table's full-text search is, read from the catalog: the portable fields,
    the generated columns that are not data, and those that cannot be carried (why)."""

    full_text: tuple[FullTextField, ...] = ()
    computed: frozenset[str] = frozenset()
    uncarried: dict[str, str] = field(default_factory=dict)


def read_text_search(query: Query, rel: str, document: str | None) -> TextSearch:
    """The full-text search of table ``rel`` (a regclass text) over column ``document``."""
    generated = query(
        "SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
        "JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = %s::regclass AND a.attgenerated = 's' "
        "AND a.atttypid = 'tsvector'::regtype AND NOT a.attisdropped ORDER BY a.attnum",
        (rel,),
    )
    indexes = query(
        "SELECT ic.relname, am.amname, CASE WHEN i.indkey[0] = 0 THEN NULL ELSE a.attname END, "
        "pg_get_expr(i.indexprs, i.indrelid) FROM pg_index i "
        "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam "
        "LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "WHERE i.indrelid = %s::regclass AND i.indnatts = 1 AND i.indpred IS NULL "
        "AND am.amname IN ('gin', 'gist') ORDER BY ic.relname",
        (rel,),
    )
    index_on = {column: am for _, am, column, _ in indexes if column}
    fields, computed, uncarried = [], set(), {}
    for column, expr in generated:
        computed.add(column)
        found = tsvector_source(expr)
        if found is None or found[1] != document:
            uncarried[column] = (
                f"a tsvector PostgreSQL computes as {expr}; only full-text search over the "
                "document can be set up again on a target"
            )
            continue
        params: dict[str, Any] = {"stored": True}
        if column in index_on:
            params["index"] = index_on[column]
        fields.append(_field(column, found[0], params))
    for name, am, column, expr in indexes:
        found = tsvector_source(expr or "") if column is None else None
        if found is not None and found[1] == document:
            fields.append(_field(name, found[0], {"index": am}))
    return TextSearch(tuple(fields), frozenset(computed), uncarried)


def _field(name: str, config: str, params: dict[str, Any]) -> FullTextField:
    return FullTextField(name=name, analyzer={"config": config}, params=params, function=FUNCTION)


def config_of(field: FullTextField, default: str = FOREIGN_CONFIG) -> str:
    """The text search configuration of ``field``: PostgreSQL's own, else ``default``."""
    config = (field.analyzer or {}).get("config") if field.function == FUNCTION else None
    return str(config) if config else default


def expression(field: FullTextField, document: str, default: str = FOREIGN_CONFIG) -> sql.Composed:
    """``to_tsvector('config'::regconfig, document)`` of ``field``."""
    return sql.SQL("to_tsvector({}::regconfig, {})").format(
        sql.Literal(config_of(field, default)), sql.Identifier(document)
    )


def is_index_only(field: FullTextField) -> bool:
    """A GIN index on the expression (no column): PostgreSQL's own, not a generated column."""
    return field.function == FUNCTION and not field.params.get("stored")


def generated_columns(schema: CollectionSchema, document: str) -> list[sql.Composed]:
    """Column definitions of the generated ``tsvector`` columns ``schema`` asks for."""
    return [
        sql.SQL("{} tsvector GENERATED ALWAYS AS ({}) STORED").format(
            sql.Identifier(f.name), expression(f, document)
        )
        for f in schema.full_text
        if not is_index_only(f)
    ]


def index_statements(
    schema: CollectionSchema, table: str, rel: sql.Composable, document: str
) -> list[sql.Composed]:
    """``CREATE INDEX`` of each full-text field the source indexes (another engine's
    always is: GIN then), named after ``table``: index names are the schema's, and the
    source's may be taken there."""
    out = []
    for f in schema.full_text:
        am = f.params.get("index") if f.function == FUNCTION else "gin"
        if am not in ("gin", "gist"):
            continue  # a generated column the source searches without an index
        on: sql.Composable
        if is_index_only(f):
            index, on = f"{table}_{f.name}", expression(f, document)
        else:
            index, on = f"{table}_{f.name}_idx", sql.Identifier(f.name)
        out.append(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING {} ({})").format(
                sql.Identifier(index[:63]), rel, sql.SQL(am), on
            )
        )
    return out


def check_served(schema: CollectionSchema, table: str, found: TextSearch) -> None:
    """Refuse writing ``schema``'s full-text search into an application's table ``table``
    that does not compute it over its document (``found``): its keyword search would
    miss the records, and vecmigrate does not change an application's table."""
    if schema.full_text and not found.full_text:
        first = schema.full_text[0].name
        raise ConfigError(
            f"table {table!r} has no full-text search over its document column (a generated "
            f"tsvector or a GIN index on to_tsvector(...)); {schema.name!r} has "
            f"{', '.join(f.name for f in schema.full_text)}; nothing was written",
            hint=f"add it to the table, or leave it behind: vectors: {{{first}: "
            "{drop: true}} in a mapping file",
        )
