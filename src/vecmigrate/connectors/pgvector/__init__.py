"""PostgreSQL + pgvector: ``pgvector://user@host:5432/db?password=env:PGPASSWORD&schema=public``.

A collection is a table: ``id`` (text or bigint, primary key), ``document`` text, one
``vector(dim)`` column per vector field, one ``sparsevec(dim)`` column per sparse field
(``_sparse``), one typed column per metadata field and a
``metadata_extra`` jsonb. Reads use keyset pagination and move vectors as pgvector's binary
form straight into one numpy array; writes are binary COPY into a staging table, then one
``INSERT ... ON CONFLICT (id) DO UPDATE``. The vecmigrate schema is the table's COMMENT;
tables made by other tools are described from the catalog.

Helper modules: ``_client`` (connections, the one error mapping), ``_sql`` (filters as SQL),
``_schema`` (describing tables), ``_records`` (rows to and from Arrow), ``_changes`` (the
change feed ``vecmigrate sync`` reads). This module holds the connector contract.
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
from vecmigrate.connectors.config import ConnectorConfig, Secret, reveal
from vecmigrate.connectors.partitions import key_range_partitions
from vecmigrate.connectors.pgvector import _client
from vecmigrate.connectors.pgvector._changes import ChangeCapture
from vecmigrate.connectors.pgvector._records import copy_rows, rows_to_batch, select_list, typed_ids
from vecmigrate.connectors.pgvector._schema import describe_table, vector_tables
from vecmigrate.connectors.pgvector._sparse import column_type as sparse_column_type
from vecmigrate.connectors.pgvector._sql import OPERATOR, OPS, SQL_TYPE, where_sql
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
from vecmigrate.uri import ConnectionURI

# Re-exported: where_sql was importable from here before the split.
__all__ = ["PgvectorConnector", "where_sql"]


@dataclass(frozen=True)
class PgvectorConfig(ConnectorConfig):
    """The password (a reference) and the PostgreSQL schema holding the tables."""

    password: Secret | None = None
    schema: str = "public"


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
        max_batch_rows=5000,
        max_batch_bytes=64 * 1024 * 1024,
        index_kinds=frozenset({"flat", "hnsw", "ivf_flat"}),
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
        return vector_tables(self._query, self.namespace)

    def describe(self, name: str) -> CollectionSchema:
        if name not in self.list_collections():
            raise ConfigError(f"{self.uri} has no table {name!r} with a vector column")
        schema = describe_table(self._query, self.namespace, name)
        self._schemas[name] = schema
        return schema

    def count(self, name: str, filter: Filter | None = None) -> int:
        node = self._filter(self._schema(name), filter)
        where, params = where_sql(node) if node else (sql.SQL("true"), [])
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self._table(name), where)
        return int(self._query(query, params)[0][0])

    # -- create ------------------------------------------------------------------------------
    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        reserved = {"id", "document", "metadata_extra"} | {v.name for v in schema.vectors}
        reserved |= {s.name for s in schema.sparse}
        clash = [m.name for m in schema.metadata if m.name in reserved]
        if clash:
            raise ConfigError(
                f"metadata fields {clash} clash with column names of {schema.name!r}",
                hint="rename them in a mapping file",
            )
        # On reuse, the table's own layout (described) decides how to write it.
        exists = schema.name in self.list_collections()
        if self._keep_existing(schema.name, exists, if_exists, f"table {schema.name!r}"):
            return
        cols: list[sql.Composable] = [
            sql.SQL("id {} PRIMARY KEY").format(
                sql.SQL("bigint" if schema.id_type is IdType.INT else "text")
            )
        ]
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
        table = self._table(schema.name)
        self._query(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        self._query(sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(cols)))
        self._query(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(schema.to_json()))
        )
        self._schemas[schema.name] = schema

    def finalize(self, name: str) -> None:
        """Build vector indexes after the bulk load: far faster than maintaining them during it."""
        schema = self._schema(name)
        for v in schema.vectors:
            kind = v.index.kind if v.index else "auto"
            if kind in ("flat", "none"):
                continue
            params = dict(v.index.params) if v.index else {}
            idx = sql.Identifier(f"{name}_{v.name}_idx"[:63])
            if kind == "ivf_flat":
                lists = int(params.get("nlist", params.get("lists", 100)))
                using, opts = "ivfflat", sql.SQL("lists = {}").format(sql.Literal(lists))
            else:
                m = int(params.get("M", params.get("m", 16)))
                efc = int(params.get("ef_construction", 64))
                using, opts = (
                    "hnsw",
                    sql.SQL("m = {}, ef_construction = {}").format(
                        sql.Literal(m), sql.Literal(efc)
                    ),
                )
            self._query(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING {} ({} {}) WITH ({})").format(
                    idx,
                    self._table(name),
                    sql.SQL(using),
                    sql.Identifier(v.name),
                    sql.SQL(OPS[v.metric]),
                    opts,
                )
            )

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        total = self.count(name)
        n = max(1, min(n, total // 1000 + 1))
        uppers = [
            r[0]
            for r in self._query(
                sql.SQL(
                    "SELECT max(id) FROM (SELECT id, ntile({}) OVER (ORDER BY id) AS b FROM {}) s "
                    "GROUP BY b ORDER BY b"
                ).format(sql.Literal(n), self._table(name))
            )
        ]
        return key_range_partitions(uppers[:-1], total)

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
        after = json.loads(resume)["after"] if resume else partition.spec["after"]
        upto = partition.spec["upto"]
        while True:
            conds = []
            params: list[Any] = []
            if after is not None:
                conds.append(sql.SQL("id > %s"))
                params.append(after)
            if upto is not None:
                conds.append(sql.SQL("id <= %s"))
                params.append(upto)
            where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds) if conds else sql.SQL("")
            rows = self._query(
                sql.SQL("SELECT {} FROM {}{} ORDER BY id LIMIT {}").format(
                    select_list(schema), self._table(name), where, sql.Literal(batch_rows)
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
        rows = self._query(
            sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s) ORDER BY id").format(
                select_list(schema), self._table(name)
            ),
            (typed_ids(schema, ids),),
        )
        return rows_to_batch(rows, schema)

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        # ``batch`` arrives conformed to the schema (the base class does it).
        names, types, rows = copy_rows(name, self._schema(name), batch)
        conn = self._conn()
        self._call(f"upsert into {name!r}", self._write, conn, name, names, types, rows)

    def _write(
        self,
        conn: psycopg.Connection[Any],
        name: str,
        names: list[str],
        types: list[str],
        rows: list[tuple[Any, ...]],
    ) -> None:
        ident = [sql.Identifier(c) for c in names]
        if name not in self._has_conflicts:
            # Fast path: straight COPY, atomic per batch. A re-sent batch (after a resume)
            # or an update violates the key; from then on this table goes through staging.
            try:
                with conn.transaction(), conn.cursor() as cur:
                    self._copy(cur, self._table(name), ident, types, rows)
                return
            except psycopg.errors.UniqueViolation:
                self._has_conflicts.add(name)
        stage = sql.Identifier(f"vm_stage_{abs(hash(name)) % 10**8}")
        updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(c) for c in ident[1:])
        cols = sql.SQL(", ").join(ident)
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS"
                ).format(stage, self._table(name))
            )
            self._copy(cur, stage, ident, types, rows)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT (id) DO UPDATE SET {}"
                ).format(self._table(name), cols, cols, stage, updates)
            )

    @staticmethod
    def _copy(
        cur: psycopg.Cursor[Any],
        table: sql.Composable,
        ident: list[sql.Identifier],
        types: list[str],
        rows: list[tuple[Any, ...]],
    ) -> None:
        query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            table, sql.SQL(", ").join(ident)
        )
        with cur.copy(query) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        schema = self._schema(name)
        self._query(
            sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._table(name)),
            (typed_ids(schema, ids),),
        )

    def drop(self, name: str) -> None:
        self._query(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table(name)))
        self._schemas.pop(name, None)

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
        node = self._filter(schema, filter)
        where, where_params = where_sql(node) if node else (sql.SQL("true"), [])
        field = schema.vector_field(vector_field)
        ef = int((params or {}).get("ef_search", max(40, 2 * k)))
        op = sql.SQL(OPERATOR[field.metric])
        query = sql.SQL(
            "SELECT id, {} {} %s AS d FROM {} WHERE {} ORDER BY {} {} %s LIMIT {}"
        ).format(
            sql.Identifier(field.name),
            op,
            self._table(name),
            where,
            sql.Identifier(field.name),
            op,
            sql.Literal(k),
        )
        conn = self._conn()
        return self._call(f"search in {name!r}", _knn, conn, query, where_params, vectors, ef)


def _knn(
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
