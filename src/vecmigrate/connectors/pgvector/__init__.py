"""PostgreSQL + pgvector: ``pgvector://user@host:5432/db?password=env:PGPASSWORD&schema=public``.

A collection vecmigrate creates is a table: ``id`` (text or bigint, primary key),
``document`` text, one ``vector(dim)`` column per vector field, one ``sparsevec(dim)``
column per sparse field (``_sparse``), one typed column per metadata field and a
``metadata_extra`` jsonb; the vecmigrate schema is the table's COMMENT. Tables made by
other tools are read and written as they are (``_foreign``: any key column, a JSON metadata
column, ``?id_field=`` and the other ``FieldsConfig`` parameters; ``_write.WritePlan``:
their own column types). Reads use keyset pagination on the key and move vectors as
pgvector's binary form straight into one numpy array; writes are binary COPY, through a
staging table and ``INSERT ... ON CONFLICT (key) DO UPDATE`` once a key repeats.

Helper modules: ``_client`` (connections, the one error mapping), ``_sql`` (filters as SQL),
``_schema`` / ``_foreign`` (describing tables), ``_records`` (rows to and from Arrow),
``_values`` / ``_write`` (writing), ``_changes`` (the change feed ``vecmigrate sync``
reads), ``_frameworks`` (``?layout=langchain`` / ``llamaindex`` / ``haystack``: the tables
LangChain's PGVector, LlamaIndex's PGVectorStore and Haystack's PgvectorDocumentStore
keep). This module holds the connector
contract.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
from psycopg import sql

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.config import Secret, reveal
from vecmigrate.connectors.foreign import FieldsConfig, refuse_repeated_keys
from vecmigrate.connectors.frameworks import WITH_HAYSTACK, parse_layout
from vecmigrate.connectors.partitions import key_range_partitions
from vecmigrate.connectors.pgvector import _client
from vecmigrate.connectors.pgvector._changes import ChangeCapture
from vecmigrate.connectors.pgvector._foreign import (
    ROW_ID,
    ROW_ID_HINT,
    TableInfo,
    roles,
    table_info,
)
from vecmigrate.connectors.pgvector._frameworks import FrameworkTables
from vecmigrate.connectors.pgvector._fulltext import (
    check_served,
    generated_columns,
    index_statements,
    read_text_search,
)
from vecmigrate.connectors.pgvector._records import copy_rows, rows_to_batch, select_list
from vecmigrate.connectors.pgvector._schema import (
    describe_table,
    layout_of,
    own_schema,
    stored_schema,
    vector_tables,
)
from vecmigrate.connectors.pgvector._sql import (
    OPERATOR,
    check_indexable,
    column_list,
    field_index_sql,
    index_sql,
    knn,
    regclass,
    where_sql,
)
from vecmigrate.connectors.pgvector._write import WritePlan, plan_write, write
from vecmigrate.errors import ConfigError
from vecmigrate.filters import ALL_OPS
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    Metric,
    Partition,
    ResumeToken,
)
from vecmigrate.records import conform
from vecmigrate.uri import ConnectionURI

# Re-exported: where_sql was importable from here before the split.
__all__ = ["PgvectorConnector", "where_sql"]


@dataclass(frozen=True)
class PgvectorConfig(FieldsConfig):
    """The password (a reference), the PostgreSQL schema holding the tables, the columns
    of tables other tools made (``?id_field=`` ..., see ``FieldsConfig``), and ``layout``:
    ``langchain`` (LangChain PGVector's ``langchain_pg_collection`` +
    ``langchain_pg_embedding``, one collection per collection row), ``llamaindex``
    (LlamaIndex PGVectorStore's ``data_<collection>`` tables) or ``haystack`` (Haystack
    PgvectorDocumentStore's tables, ``haystack_documents`` by default)."""

    password: Secret | None = None
    schema: str = "public"
    layout: str | None = None


class PgvectorConnector(ChangeCapture, Connector):
    Config = PgvectorConfig
    config: PgvectorConfig

    """Tables with pgvector columns in one PostgreSQL database (a ``ChangeFeed`` too)."""

    schemes = ("pgvector", "postgresql")
    capabilities = Capabilities(
        filter_ops=ALL_OPS,
        id_types=frozenset(IdType),
        metrics=frozenset(Metric),
        named_vectors=True,
        sparse_vectors=True,
        sparse_modifiers=frozenset(),
        max_batch_rows=5000,
        max_batch_bytes=64 * 1024 * 1024,
        index_kinds=frozenset({"flat", "hnsw", "ivf_flat"}),
        full_text=True,  # a generated tsvector (or to_tsvector index) over the document
    )

    translate_error = staticmethod(_client.translate_error)

    def __init__(self, uri: ConnectionURI) -> None:
        # No I/O here: connections (and the password) are opened on first use, per thread.
        super().__init__(uri)
        self._conninfo: dict[str, Any] = {
            "host": uri.host or "127.0.0.1",
            "port": uri.port or 5432,
            "dbname": uri.path.lstrip("/") or "postgres",
            "user": uri.user or "postgres",
            "connect_timeout": 10,
        }
        self.namespace = self.config.schema
        self._local = threading.local()
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._has_conflicts: set[str] = set()
        self._infos: dict[str, TableInfo] = {}
        self._keys_checked: set[str] = set()
        self._plans: dict[str, WritePlan] = {}
        layout = parse_layout(self.config.layout, "pgvector", WITH_HAYSTACK)
        self._framework = FrameworkTables(self, layout) if layout else None
        if layout:
            named = [
                p
                for p in ("id_field", "document_field", "vector_field", "metadata_field")
                if getattr(self.config, p) is not None
            ]
            if named:
                raise ConfigError(
                    f"pgvector:// layout={layout} names every column itself; "
                    f"{', '.join(named)} cannot be given with it",
                    hint=f"drop {', '.join(f'?{p}=' for p in named)} or ?layout=",
                )

    # -- connections -------------------------------------------------------------------------
    def _conn(self) -> psycopg.Connection[Any]:
        """One connection per thread: the pipeline reads and writes from several threads."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conninfo = {**self._conninfo, "password": reveal(self.config.password)}
            # libpq messages name host and port, never the password.
            conn = self._call(
                f"cannot connect to {self.uri}", _client.open_connection, conninfo, str(self.uri)
            )
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()

    def _table(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.namespace), sql.Identifier(name))

    def _query(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        """Rows of one statement in its own transaction (errors name the server)."""
        return self._call(str(self.uri), self._run_query, self._conn(), query, params)

    @staticmethod
    def _run_query(conn: psycopg.Connection[Any], query: Any, params: Any) -> list[tuple[Any, ...]]:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    # -- discovery ---------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        if self._framework is not None:
            return self._framework.list_collections()
        return vector_tables(self._query, self.namespace)

    def describe(self, name: str) -> CollectionSchema:
        if self._framework is not None:
            schema = self._framework.describe(name)
            self._schemas[name] = schema
            return schema
        if name not in self.list_collections():
            raise ConfigError(f"{self.uri} has no table {name!r} with a vector column")
        if name in self._plans:
            # An application's table this connector writes into: read back what it wrote.
            return self._plans[name].read_schema()
        schema, self._infos[name] = describe_table(self._query, self.namespace, name, self.config)
        self._schemas[name] = schema
        return schema

    def _where(self, schema: CollectionSchema, filter: Filter | None) -> tuple[Any, list[Any]]:
        node = self._filter(schema, filter)
        return where_sql(node, layout_of(schema).field_sql) if node else (sql.SQL("true"), [])

    def count(self, name: str, filter: Filter | None = None) -> int:
        if self._framework is not None:
            node = self._filter(self._schema(name), filter) if filter else None
            return self._framework.count(name, node)
        where, params = self._where(self._schema(name), filter)
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self._table(name), where)
        return int(self._query(query, params)[0][0])

    # -- create ------------------------------------------------------------------------------
    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        if self._framework is not None:
            self._framework.create(schema, if_exists)
            self._schemas[schema.name] = schema
            return
        exists = schema.name in self.list_collections()
        if exists and if_exists == "reuse":
            info = table_info(self._query, self.namespace, schema.name)
            if own_schema(info) is None:
                # An application's table: checked now, written in its own column types.
                if self.config.id_field == ROW_ID:
                    raise ConfigError(
                        f"table {schema.name!r} is read keyed by its rows' location "
                        f"(?id_field={ROW_ID}), which no write can set; nothing was written",
                        hint="copy into a new table, or name its id column with ?id_field=",
                    )
                app = roles(info, self.config)
                self._plans[schema.name] = plan_write(info, app, schema)
                if schema.full_text:
                    rel = regclass(self.namespace, schema.name)
                    served = read_text_search(self._query, rel, app.document)
                    check_served(schema, schema.name, served)
                self._schemas.pop(schema.name, None)  # read back through the plan
                return
        reserved = {"id", "document", "metadata_extra"} | {v.name for v in schema.vectors}
        reserved |= {s.name for s in schema.sparse} | {f.name for f in schema.full_text}
        clash = [m.name for m in schema.metadata if m.name in reserved]
        if clash:
            raise ConfigError(
                f"metadata fields {clash} clash with column names of {schema.name!r}",
                hint="rename them in a mapping file",
            )
        # On reuse, the table's own layout (described) decides how to write it.
        if self._keep_existing(schema.name, exists, if_exists, f"table {schema.name!r}"):
            return
        table = self._table(schema.name)
        where = regclass(self.namespace, schema.name)
        if not exists and self._query("SELECT to_regclass(%s)", (where,))[0][0]:
            raise ConfigError(
                f"{self.namespace}.{schema.name} exists and has no vector column: "
                "vecmigrate neither writes into it nor replaces it",
                hint="choose another target collection (--target-collection)",
            )
        if schema.full_text and not schema.has_document:
            raise ConfigError(
                f"{schema.name!r}: full-text search over the document, without documents",
                hint="keep the documents, or leave it behind (vectors: {NAME: {drop: true}})",
            )
        check_indexable(schema)
        columns = [column_list(schema), *generated_columns(schema, "document")]
        self._query(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        self._query(sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(columns)))
        self._query(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(
                table, sql.Literal(stored_schema(schema).to_json())
            )
        )
        self._schemas[schema.name] = stored_schema(schema)
        self._plans.pop(schema.name, None)

    def finalize(self, name: str) -> None:
        """Build vector, full-text and metadata indexes after the bulk load: far faster than
        maintaining them during it.
        An application's table keeps the indexes it has."""
        if name in self._plans or self._framework is not None:
            return  # an application's table, or a framework's, keeps the indexes it has
        schema = self._schema(name)
        if layout_of(schema).foreign:
            return
        for v in schema.vectors:
            ddl = index_sql(name, self._table(name), v)
            if ddl is not None:
                self._query(ddl)
        for ddl in index_statements(schema, name, self._table(name), "document"):
            self._query(ddl)
        for m in schema.metadata:
            field_ddl = field_index_sql(name, self._table(name), m)
            if field_ddl is not None:
                self._query(field_ddl)

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        if self._framework is not None:
            return self._framework.partitions(name, n)
        total = self.count(name)
        n = max(1, min(n, total // 1000 + 1))
        layout = layout_of(self._schema(name))
        self._check_key(name, layout.key)
        key = sql.Identifier(layout.key)
        uppers = [
            r[0]
            for r in self._query(
                sql.SQL(
                    "SELECT DISTINCT ON (b) k{} FROM (SELECT {} AS k, ntile({}) OVER "
                    "(ORDER BY {}) AS b FROM {}) s ORDER BY b, k DESC"
                ).format(
                    sql.SQL("::text" if layout.key_as_text else ""),
                    key,
                    sql.Literal(n),
                    key,
                    self._table(name),
                )
            )
        ]
        return key_range_partitions(uppers[:-1], total)

    def _check_key(self, name: str, key: str) -> None:
        """ConfigError, before a record is read, when ``key`` is not the primary key and
        its rows repeat a value or lack one (``refuse_repeated_keys``: scans resume after
        the last key read, so they would skip rows too); checked once."""
        if name in self._keys_checked:
            return
        info = self._infos.get(name) or table_info(self._query, self.namespace, name)
        found = info.key_repeats(self._query, self._table(name), key)
        if found is not None:
            constraint = "a unique index" if key in info.unique else "no unique constraint"
            refuse_repeated_keys(
                name, key, *found, constraint=constraint, otherwise=f", or {ROW_ID_HINT}"
            )
        self._keys_checked.add(name)

    def scan(
        self,
        name: str,
        partition: Partition,
        resume: ResumeToken | None = None,
        *,
        schema: CollectionSchema | None = None,
        batch_rows: int = 1000,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        schema = schema or self._schema(name)
        if self._framework is not None:
            yield from self._framework.scan(name, schema, partition, resume, batch_rows)
            return
        layout = layout_of(schema)
        key = sql.Identifier(layout.key)
        after = json.loads(resume)["after"] if resume else partition.spec["after"]
        upto = partition.spec["upto"]
        while True:
            conds = []
            params: list[Any] = []
            if after is not None:
                conds.append(sql.SQL("{} > {}").format(key, layout.key_param()))
                params.append(after)
            if upto is not None:
                conds.append(sql.SQL("{} <= {}").format(key, layout.key_param()))
                params.append(upto)
            where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds) if conds else sql.SQL("")
            rows = self._query(
                sql.SQL("SELECT {} FROM {}{} ORDER BY {} LIMIT {}").format(
                    select_list(schema), self._table(name), where, key, sql.Literal(batch_rows)
                ),
                params,
            )
            if not rows:
                return
            after = rows[-1][0]
            yield rows_to_batch(rows, schema), json.dumps({"after": after})
            if len(rows) < batch_rows:
                return

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        if self._framework is not None:
            return self._framework.fetch(name, schema, ids)
        layout = layout_of(schema)
        key = sql.Identifier(layout.key)
        rows = self._query(
            sql.SQL("SELECT {} FROM {} WHERE {} = ANY({}) ORDER BY {}").format(
                select_list(schema), self._table(name), key, layout.key_param(array=True), key
            ),
            (layout.typed_ids(schema, ids),),
        )
        return rows_to_batch(rows, schema)

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        if self._framework is not None:
            self._framework.upsert(name, self._schema(name), batch)
            return
        plan = self._plans.get(name)
        if plan is None:
            schema = self._schema(name)
            if not layout_of(schema).foreign:
                batch = conform(batch, schema, strict=self.strict_layout)
                names, types, rows = copy_rows(name, schema, batch)
                self._write(name, "id", names, types, rows)
                return
            info = self._infos.get(name) or table_info(self._query, self.namespace, name)
            plan = self._plans[name] = plan_write(info, roles(info, self.config), schema)
        # Batches arrive in the layout the plan was made for (the copy's target schema).
        names, oids, rows = plan.rows(conform(batch, plan.schema))
        self._write(name, plan.key.name, names, oids, rows)

    # The batch is conformed above, to the layout the table is written in.
    upsert._conforms = True  # type: ignore[attr-defined]

    def _write(
        self, name: str, key: str, names: list[str], types: Sequence[Any], rows: list[Any]
    ) -> None:
        staged = self._call(
            f"upsert into {name!r}",
            write,
            self._conn(),
            self._table(name),
            key,
            names,
            types,
            rows,
            name in self._has_conflicts,
        )
        if staged:
            self._has_conflicts.add(name)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        if self._framework is not None:
            self._framework.delete(name, ids)
            return
        schema = self._schema(name)
        layout = layout_of(schema)
        self._query(
            sql.SQL("DELETE FROM {} WHERE {} = ANY({})").format(
                self._table(name), sql.Identifier(layout.key), layout.key_param(array=True)
            ),
            (layout.typed_ids(schema, ids),),
        )

    def drop(self, name: str) -> None:
        # A table without vector columns is no collection: never dropped (a failed copy
        # undoing what it "created" must not remove an application's table of that name).
        if self._framework is not None:
            self._framework.drop(name)
        elif name in self.list_collections():
            self._query(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table(name)))
        self._schemas.pop(name, None)
        self._plans.pop(name, None)

    # -- change feed -------------------------------------------------------------------------
    def install_change_capture(self, name: str) -> str:
        if self._framework is not None:
            raise ConfigError(
                f"vecmigrate sync does not follow layout={self._framework.layout} collections "
                "yet (their records share tables with other collections)",
                hint="copy again to catch up, or sync the tables without ?layout=",
            )
        return super().install_change_capture(name)

    # -- querying ----------------------------------------------------------------------------
    def search(
        self,
        name: str,
        vectors: np.ndarray,
        k: int,
        *,
        filter: Filter | None = None,
        params: dict[str, Any] | None = None,
        vector_field: str | None = None,
    ) -> tuple[list[list[Any]], list[list[float]]]:
        schema = self._schema(name)
        if self._framework is not None:
            schema.vector_field(vector_field)  # the one vector field, or ConfigError
            ef = int((params or {}).get("ef_search", max(40, 2 * k)))
            node = self._filter(schema, filter)
            return self._framework.search(name, schema, vectors, k, node, ef)
        where, where_params = self._where(schema, filter)
        field = schema.vector_field(vector_field)
        layout = layout_of(schema)
        ef = int((params or {}).get("ef_search", max(40, 2 * k)))
        op = sql.SQL(OPERATOR[field.metric])
        searched, param = layout.searched(field.name)
        query = sql.SQL(
            "SELECT {}, {} {} {} AS d FROM {} WHERE {} ORDER BY {} {} {} LIMIT {}"
        ).format(
            layout.key_sql(),
            searched,
            op,
            param,
            self._table(name),
            where,
            searched,
            op,
            param,
            sql.Literal(k),
        )
        conn = self._conn()
        return self._call(f"search in {name!r}", knn, conn, query, where_params, vectors, ef)
