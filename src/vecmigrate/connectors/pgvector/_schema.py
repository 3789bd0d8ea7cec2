"""Describing pgvector tables from the PostgreSQL catalog, used only by ``connectors/pgvector*.py``.

Tables vecmigrate created carry their CollectionSchema as JSON in the table's COMMENT, so
they round-trip exactly: ``id`` key, ``document``, one column per vector and metadata field,
``metadata_extra``. Tables made by other tools are read as they are (``_foreign``): where
each part of a record lives is their ``Layout``, kept in ``engine_settings["layout"]``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from vecmigrate.connectors.foreign import FieldsConfig
from vecmigrate.connectors.pgvector._foreign import (
    ROW_ID,
    TableInfo,
    describe_foreign,
    table_info,
)
from vecmigrate.connectors.pgvector._sql import (
    SQL_TYPE,
    Query,
    index_cast,
    json_key_sql,
    read_sql,
)
from vecmigrate.model import CollectionSchema, IdType, MetadataField

__all__ = ["Layout", "Query", "describe_table", "layout_of", "vector_tables"]

# engine_settings keys that describe one table's columns: never carried to another table.
LAYOUT_KEYS = ("layout", "document_column", "metadata_extra")


def vector_tables(query: Query, namespace: str) -> list[str]:
    """Tables in ``namespace`` with at least one ``vector``, ``halfvec`` or ``sparsevec``
    column, sorted: a partitioned table as one (its partitions are not listed apart)."""
    rows = query(
        "SELECT DISTINCT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND t.typname IN ('vector', 'halfvec', 'sparsevec') AND NOT a.attisdropped",
        (namespace,),
    )
    return sorted(r[0] for r in rows)


def own_schema(info: TableInfo) -> CollectionSchema | None:
    """The schema vecmigrate stored in the COMMENT of a table it created, else None."""
    if not (info.comment and info.comment.startswith("{")):
        return None
    schema = CollectionSchema.from_json(info.comment)
    settings = {k: v for k, v in schema.engine_settings.items() if k not in LAYOUT_KEYS}
    return schema.replace(name=info.name, engine="pgvector", engine_settings=settings)


def describe_table(
    query: Query, namespace: str, name: str, config: FieldsConfig
) -> tuple[CollectionSchema, TableInfo]:
    """The schema of an existing table (from its COMMENT when vecmigrate made it, else read
    as it is) and what the catalog says about it."""
    info = table_info(query, namespace, name)
    if config.id_field == ROW_ID:
        info = info.with_row_id()
    return own_schema(info) or describe_foreign(query, namespace, info, config), info


def stored_schema(schema: CollectionSchema) -> CollectionSchema:
    """``schema`` as a table vecmigrate creates stores it (no other table's layout)."""
    settings = {k: v for k, v in schema.engine_settings.items() if k not in LAYOUT_KEYS}
    return schema.replace(engine_settings=settings)


@dataclass(frozen=True)
class Layout:
    """Where a table keeps each part of a record: key column and its SQL type, document
    column, a JSON metadata column (``json_keys``: field -> key in it), the SQL types of
    columns read as fields, the column of each vector field named otherwise
    (``columns``), and whether it has ``metadata_extra``. ``foreign``: not vecmigrate's.
    ``half``: vector fields held in ``halfvec`` (float16) columns; ``casts``: those whose
    index is on the column cast to a type (``halfvec(N)``), searched as that."""

    key: str = "id"
    key_type: str = "text"
    document: str | None = "document"
    metadata: str | None = None
    json_keys: dict[str, str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    extra: bool = True
    foreign: bool = False
    half: tuple[str, ...] = ()
    casts: dict[str, str] = field(default_factory=dict)

    @property
    def key_as_text(self) -> bool:
        """Keys read as text (uuid, and a row's location ``tid``: ids are strings)."""
        return self.key_type in ("uuid", "tid")

    def key_sql(self) -> sql.Composable:
        """The key as it is read (as text where ``key_as_text``)."""
        key = sql.Identifier(self.key)
        return sql.SQL("{}::text").format(key) if self.key_as_text else key

    def key_param(self, array: bool = False) -> sql.Composable:
        """A bound parameter of the key's type (an array of them with ``array``)."""
        return sql.SQL("%s::{}{}").format(sql.SQL(self.key_type), sql.SQL("[]" if array else ""))

    def column_fields(self, schema: CollectionSchema) -> list[MetadataField]:
        """The metadata fields with a column of their own, in schema order."""
        return [m for m in schema.metadata if m.name not in self.json_keys]

    def field_sql(self, f: MetadataField) -> tuple[sql.Composable, str]:
        """The SQL value of a field (filters and reads) and its SQL type."""
        if f.name in self.json_keys:
            assert self.metadata is not None
            return json_key_sql(self.metadata, self.json_keys[f.name], f)
        return read_sql(f.name, f, self.types.get(f.name, SQL_TYPE.get(f.type, "jsonb")))

    def column(self, vector_field: str) -> sql.Identifier:
        """The column holding a vector (or sparse) field."""
        return sql.Identifier(self.columns.get(vector_field, vector_field))

    def vector_read(self, vector_field: str) -> sql.Composable:
        """A dense vector field as read: ``vector_send`` bytes (a ``halfvec`` widened to
        ``vector`` first, exactly: every float16 is a float32)."""
        cast = sql.SQL("::vector") if vector_field in self.half else sql.SQL("")
        return sql.SQL("vector_send({}{})").format(self.column(vector_field), cast)

    def searched(self, vector_field: str) -> tuple[sql.Composable, sql.Composable]:
        """What a search orders by and how it binds the query vector: the column, or the
        expression its index is built on (``(col)::halfvec(N)``), so that index serves."""
        cast = self.casts.get(vector_field)
        if cast is None:
            return self.column(vector_field), sql.SQL("%s")
        as_type = sql.SQL("::") + sql.SQL(cast)
        return sql.SQL("({}){}").format(self.column(vector_field), as_type), sql.SQL("%s") + as_type

    def typed_ids(self, schema: CollectionSchema, ids: Sequence[Any]) -> list[Any]:
        """Ids as the key column takes them (ids a uuid key cannot hold are left out)."""
        if schema.id_type is IdType.INT:
            return [int(i) for i in ids]
        if self.key_type != "uuid":
            return [str(i) for i in ids]
        out = []
        for i in map(str, ids):
            try:
                out.append(str(uuid.UUID(i)))
            except ValueError:
                continue
        return out


def layout_of(schema: CollectionSchema) -> Layout:
    """The layout of a described (or created) table."""
    raw = schema.engine_settings.get("layout")
    if isinstance(raw, dict):
        return Layout(
            key=raw["key"],
            key_type=raw["key_type"],
            document=raw.get("document"),
            metadata=raw.get("metadata"),
            json_keys=dict(raw.get("json_keys") or {}),
            types=dict(raw.get("types") or {}),
            columns=dict(raw.get("columns") or {}),
            extra=bool(raw.get("extra")),
            foreign=True,
            half=tuple(raw.get("half") or ()),
            casts=dict(raw.get("casts") or {}),
        )
    casts = {v.name: cast for v in schema.vectors if (cast := index_cast(v)) is not None}
    return Layout(key_type="bigint" if schema.id_type is IdType.INT else "text", casts=casts)
