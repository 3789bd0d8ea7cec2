"""PostgreSQL + pgvector: ``pgvector://user@host:5432/db?password=env:PGPASSWORD&schema=public``.

A collection is a table: ``id`` (text or bigint, primary key), ``document`` text, one
``vector(dim)`` column per vector field, one typed column per metadata field and a
``metadata_extra`` jsonb. Reads use keyset pagination and move vectors as pgvector's binary
form straight into one numpy array; writes are binary COPY into a staging table, then one
``INSERT ... ON CONFLICT (id) DO UPDATE``. The vecmigrate schema is the table's COMMENT;
tables made by other tools are described from the catalog.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
from pgvector.psycopg import register_vector
from psycopg import sql

from vecmigrate.connectors.base import (
    Change,
    Connector,
    Filter,
    IfExists,
    key_range_partitions,
)
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError
from vecmigrate.filters import ALL_OPS, Bool, Node
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    IndexKind,
    IndexSpec,
    MetadataField,
    MetadataType,
    Metric,
    Partition,
    ResumeToken,
    VectorField,
)
from vecmigrate.records import conform, encode_json, vectors_to_numpy

_OPS = {Metric.COSINE: "vector_cosine_ops", Metric.DOT: "vector_ip_ops", Metric.L2: "vector_l2_ops"}
_OPERATOR = {Metric.COSINE: "<=>", Metric.DOT: "<#>", Metric.L2: "<->"}
_METRIC_OF_OPS = {v: k for k, v in _OPS.items()}
_SQL_TYPE: dict[str, str] = {
    "string": "text",
    "int64": "bigint",
    "float64": "double precision",
    "bool": "boolean",
    "list<string>": "text[]",
    "list<int64>": "bigint[]",
    "list<float64>": "double precision[]",
    "json": "jsonb",
}
_PORTABLE_OF_SQL: dict[str, MetadataType] = {
    "text": "string",
    "character varying": "string",
    "bigint": "int64",
    "integer": "int64",
    "smallint": "int64",
    "double precision": "float64",
    "real": "float64",
    "boolean": "bool",
    "text[]": "list<string>",
    "character varying[]": "list<string>",
    "bigint[]": "list<int64>",
    "integer[]": "list<int64>",
    "double precision[]": "list<float64>",
    "real[]": "list<float64>",
    "jsonb": "json",
    "json": "json",
}
_DOC_COLUMNS = ("document", "content", "text")


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


def _errors(exc: Exception, what: str) -> Exception:
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.ConnectionException):
        return TransientError(f"{what}: {exc}")
    if isinstance(
        exc, psycopg.DataError | psycopg.IntegrityError | psycopg.errors.CardinalityViolation
    ):
        return DataError(f"{what}: {str(exc).splitlines()[0]}")
    return TerminalError(f"{what}: {str(exc).splitlines()[0]}")


class PgvectorConnector(Connector):
    """Tables with pgvector columns in one PostgreSQL database."""

    schemes = ("pgvector", "postgresql")
    capabilities = Capabilities(
        filter_ops=ALL_OPS,
        id_types=frozenset(IdType),
        metrics=frozenset(Metric),
        named_vectors=True,
        max_batch_rows=5000,
        max_batch_bytes=64 * 1024 * 1024,
        index_kinds=frozenset({"flat", "hnsw", "ivf_flat"}),
    )

    def __init__(self, uri: Any) -> None:
        super().__init__(uri)
        self._conninfo = {
            "host": uri.host or "127.0.0.1",
            "port": uri.port or 5432,
            "dbname": uri.path.lstrip("/") or "postgres",
            "user": uri.user or "postgres",
            "password": uri.secret("password"),
            "connect_timeout": 10,
        }
        self.namespace = uri.params.get("schema", "public")
        self._local = threading.local()
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._schemas: dict[str, CollectionSchema] = {}
        self._has_conflicts: set[str] = set()

    # -- connections -------------------------------------------------------------------------
    def _conn(self) -> psycopg.Connection[Any]:
        """One connection per thread: the pipeline reads and writes from several threads."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = psycopg.connect(**{k: v for k, v in self._conninfo.items() if v is not None})
            except psycopg.OperationalError as exc:
                # libpq messages name host and port, never the password.
                raise TransientError(
                    f"cannot connect to {self.uri}: {str(exc).splitlines()[0]}"
                ) from None
            try:
                register_vector(conn)
            except psycopg.ProgrammingError as exc:
                raise ConfigError(
                    f"{self.uri}: the vector extension is not installed",
                    hint="CREATE EXTENSION vector",
                ) from exc
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
        conn = self._conn()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise _errors(exc, f"{self.uri}") from None

    # -- discovery ---------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        rows = self._query(
            "SELECT DISTINCT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND t.typname = 'vector' "
            "AND NOT a.attisdropped",
            (self.namespace,),
        )
        return sorted(r[0] for r in rows)

    def _columns(self, name: str) -> list[tuple[str, str, int]]:
        return [
            (r[0], r[1], r[2])
            for r in self._query(
                "SELECT a.attname, format_type(a.atttypid, NULL), a.atttypmod FROM pg_attribute a "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum",
                (f'"{self.namespace}"."{name}"',),
            )
        ]

    def describe(self, name: str) -> CollectionSchema:
        if name not in self.list_collections():
            raise ConfigError(f"{self.uri} has no table {name!r} with a vector column")
        comment = self._query(
            "SELECT obj_description(%s::regclass, 'pg_class')", (f'"{self.namespace}"."{name}"',)
        )[0][0]
        if comment and comment.startswith("{"):
            schema = CollectionSchema.from_json(comment).replace(name=name, engine="pgvector")
        else:
            schema = self._infer(name)
        self._schemas[name] = schema
        return schema

    def _infer(self, name: str) -> CollectionSchema:
        cols = self._columns(name)
        types = {c: t for c, t, _ in cols}
        if "id" not in types:
            raise ConfigError(
                f"table {name!r} has no 'id' column", hint="rename its key column to id"
            )
        indexes = {
            r[0]: (r[1], r[2])
            for r in self._query(
                "SELECT a.attname, am.amname, oc.opcname FROM pg_index i "
                "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam "
                "JOIN pg_opclass oc ON oc.oid = i.indclass[0] "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                "WHERE i.indrelid = %s::regclass",
                (f'"{self.namespace}"."{name}"',),
            )
        }
        vectors, metadata = [], []
        notes: dict[str, Any] = {}
        doc = next((c for c in _DOC_COLUMNS if types.get(c) == "text"), None)
        for col, typ, mod in cols:
            if col in ("id", doc, "metadata_extra"):
                continue
            if typ == "vector":
                am, ops = indexes.get(col, ("", ""))
                metric = _METRIC_OF_OPS.get(ops, Metric.COSINE)
                if not ops:
                    notes[f"{col}.metric"] = "assumed cosine: no vector index on this column"
                kind: IndexKind = {"hnsw": "hnsw", "ivfflat": "ivf_flat"}.get(am, "flat")  # type: ignore[assignment]
                vectors.append(
                    VectorField(name=col, dim=mod, metric=metric, index=IndexSpec(kind=kind))
                )
            else:
                metadata.append(MetadataField(name=col, type=_PORTABLE_OF_SQL.get(typ, "json")))
                if typ not in _PORTABLE_OF_SQL:
                    notes[f"{col}.type"] = f"{typ} read as JSON (to_jsonb)"
        if doc:
            notes["document_column"] = doc
        if "metadata_extra" not in types:
            notes["metadata_extra"] = False
        id_type = IdType.INT if types["id"] in ("bigint", "integer", "smallint") else IdType.STRING
        return CollectionSchema(
            name=name,
            id_type=id_type,
            vectors=tuple(vectors),
            metadata=tuple(metadata),
            has_document=doc is not None,
            engine="pgvector",
            engine_settings=notes,
        )

    def _schema(self, name: str) -> CollectionSchema:
        return self._schemas.get(name) or self.describe(name)

    def count(self, name: str, filter: Filter | None = None) -> int:
        node = self._filter(self._schema(name), filter)
        where, params = where_sql(node) if node else (sql.SQL("true"), [])
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self._table(name), where)
        return int(self._query(query, params)[0][0])

    # -- create ------------------------------------------------------------------------------
    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        reserved = {"id", "document", "metadata_extra"} | {v.name for v in schema.vectors}
        clash = [m.name for m in schema.metadata if m.name in reserved]
        if clash:
            raise ConfigError(
                f"metadata fields {clash} clash with column names of {schema.name!r}",
                hint="rename them in a mapping file",
            )
        exists = schema.name in self.list_collections()
        if exists and if_exists == "fail":
            raise ConfigError(
                f"table {schema.name!r} already exists", hint="pass --if-exists replace or reuse"
            )
        if exists and if_exists == "reuse":
            self.describe(schema.name)  # the table's own layout decides how to write it
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
            sql.SQL("{} {}").format(sql.Identifier(m.name), sql.SQL(_SQL_TYPE[m.type]))
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
                    sql.SQL(_OPS[v.metric]),
                    opts,
                )
            )

    # -- reading -----------------------------------------------------------------------------
    def _select(self, schema: CollectionSchema) -> sql.Composed:
        cols: list[sql.Composable] = [sql.SQL("id")]
        if schema.has_document:
            cols.append(sql.Identifier(self._doc_column(schema)))
        # vector_send gives pgvector's binary form: int16 dim, int16 unused, dim x float4 (BE).
        cols += [sql.SQL("vector_send({})").format(sql.Identifier(v.name)) for v in schema.vectors]
        # json-typed columns go through to_jsonb so timestamps, numerics etc. arrive as JSON.
        cols += [
            sql.SQL("to_jsonb({})").format(sql.Identifier(m.name))
            if m.type == "json"
            else sql.Identifier(m.name)
            for m in schema.metadata
        ]
        cols.append(
            sql.SQL("metadata_extra") if self._has_extra(schema) else sql.SQL("NULL::jsonb")
        )
        return sql.SQL(", ").join(cols)

    @staticmethod
    def _doc_column(schema: CollectionSchema) -> str:
        return str(schema.engine_settings.get("document_column", "document"))

    @staticmethod
    def _has_extra(schema: CollectionSchema) -> bool:
        """Tables vecmigrate created have metadata_extra; other tables may not."""
        return bool(schema.engine_settings.get("metadata_extra", True))

    def _to_batch(self, rows: list[tuple[Any, ...]], schema: CollectionSchema) -> pa.RecordBatch:
        width = 2 + schema.has_document + len(schema.vectors) + len(schema.metadata)
        columns = list(zip(*rows, strict=True)) if rows else [()] * width
        n = len(rows)
        arrays: dict[str, pa.Array] = {"id": pa.array(columns[0], schema.id_arrow_type())}
        i = 1
        if schema.has_document:
            arrays["document"] = pa.array(columns[1], pa.string())
            i = 2
        for v in schema.vectors:
            raw = np.frombuffer(b"".join(columns[i]), dtype=">f4").reshape(n, v.dim + 1)
            matrix = raw[:, 1:].astype(np.float32)
            arrays[v.name] = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), v.dim)
            i += 1
        children = []
        for m in schema.metadata:
            values = columns[i]
            if m.type == "json":
                values = tuple(None if x is None else encode_json(x) for x in values)
            children.append(pa.array(values, m.arrow_type))
            i += 1
        if schema.metadata:
            arrays["metadata"] = pa.StructArray.from_arrays(
                children, fields=list(schema.metadata_struct_type())
            )
        arrays["metadata_extra"] = pa.array(
            [None if x is None else encode_json(x) for x in columns[i]], pa.string()
        )
        return conform(pa.RecordBatch.from_pydict(arrays), schema)

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
                    self._select(schema), self._table(name), where, sql.Literal(batch_rows)
                ),
                params,
            )
            if not rows:
                return
            after = rows[-1][0]
            yield self._to_batch(rows, schema), json.dumps({"after": after})
            if len(rows) < batch_rows:
                return

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        rows = self._query(
            sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s) ORDER BY id").format(
                self._select(schema), self._table(name)
            ),
            (self._typed_ids(schema, ids),),
        )
        return self._to_batch(rows, schema)

    def _typed_ids(self, schema: CollectionSchema, ids: Sequence[Any]) -> list[Any]:
        return [int(i) for i in ids] if schema.id_type is IdType.INT else [str(i) for i in ids]

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        batch = conform(batch, schema)
        extra = batch.column("metadata_extra")
        if not self._has_extra(schema) and extra.null_count < len(extra):
            row = next(i for i, x in enumerate(extra.to_pylist()) if x)
            raise DataError(
                f"table {name!r} has no metadata_extra column for values that do not fit its types",
                collection=name,
                record_id=batch.column("id")[row].as_py(),
                field="metadata_extra",
            )
        names = ["id"] + ([self._doc_column(schema)] if schema.has_document else [])
        names += [v.name for v in schema.vectors] + [m.name for m in schema.metadata]
        columns: list[Sequence[Any]] = [self._typed_ids(schema, batch.column("id").to_pylist())]
        if schema.has_document:
            columns.append(batch.column("document").to_pylist())
        for v in schema.vectors:
            m = vectors_to_numpy(batch.column(v.name))
            # pgvector's binary recv format per row; COPY sends each row's bytes untouched.
            raw = np.empty((len(m), v.dim + 1), dtype=">f4")
            raw[:, 1:] = m
            raw.view(">i2")[:, 0] = v.dim
            raw.view(">i2")[:, 1] = 0
            columns.append([r.tobytes() for r in raw])
        if schema.metadata:
            struct = batch.column("metadata")
            for f, child in zip(schema.metadata, struct.flatten(), strict=True):
                values = child.to_pylist()
                columns.append(
                    [None if x is None else json.loads(x) for x in values]
                    if f.type == "json"
                    else values
                )
        types = ["bigint" if schema.id_type is IdType.INT else "text"] + (
            ["text"] if schema.has_document else []
        )
        types += ["bytea"] * len(schema.vectors) + [_SQL_TYPE[m.type] for m in schema.metadata]
        if self._has_extra(schema):
            names.append("metadata_extra")
            columns.append([None if x is None else json.loads(x) for x in extra.to_pylist()])
            types.append("jsonb")
        rows = list(zip(*columns, strict=True))
        ident = [sql.Identifier(c) for c in names]
        conn = self._conn()
        try:
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
        except psycopg.Error as exc:
            raise _errors(exc, f"upsert into {name!r}") from None

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
            (self._typed_ids(schema, ids),),
        )

    def drop(self, name: str) -> None:
        self._query(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table(name)))
        self._schemas.pop(name, None)

    # -- change capture (the ChangeFeed capability, used by ``sync``) -----------------------
    def _capture_names(self, name: str) -> tuple[str, str, str]:
        """Change table, trigger function and trigger names for table ``name``."""
        base = (
            name
            if len(name) <= 40
            else f"{name[:30]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
        )
        return f"vm_changes_{base}", f"vm_capture_{base}", f"vm_capture_{base}_trg"

    def install_change_capture(self, name: str) -> str:
        """A trigger records every insert, update, delete and truncate of ``name`` in a change
        table (seq, id, op, xid, at). Rows carry the writing transaction's id so readers take
        exactly what committed between two snapshots, whatever order transactions commit in."""
        self.describe(name)  # refuses a table that is not a vector collection
        id_type = dict((c, t) for c, t, _ in self._columns(name))["id"]
        table, fn, trg = self._capture_names(name)
        ch, fq = (
            self._table(table),
            sql.SQL("{}.{}").format(sql.Identifier(self.namespace), sql.Identifier(fn)),
        )
        body = sql.SQL(
            "BEGIN "
            "IF TG_OP = 'TRUNCATE' THEN INSERT INTO {ch} (id, op) VALUES (NULL, 'T'); RETURN NULL; "
            "END IF; "
            "IF TG_OP = 'DELETE' THEN INSERT INTO {ch} (id, op) VALUES (OLD.id, 'D'); RETURN NULL; "
            "END IF; "
            "IF TG_OP = 'UPDATE' THEN IF OLD.id IS DISTINCT FROM NEW.id THEN "
            "INSERT INTO {ch} (id, op) VALUES (OLD.id, 'D'); END IF; END IF; "
            "INSERT INTO {ch} (id, op) VALUES (NEW.id, 'U'); RETURN NULL; END"
        ).format(ch=ch)
        statements = [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (seq bigserial PRIMARY KEY, id {}, "
                "op char(1) NOT NULL, xid xid8 NOT NULL DEFAULT pg_current_xact_id(), "
                "at timestamptz NOT NULL DEFAULT clock_timestamp())"
            ).format(ch, sql.SQL(id_type)),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (xid)").format(
                sql.Identifier(f"{table}_xid"), ch
            ),
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS {}"
            ).format(fq, sql.Literal(body.as_string(self._conn()))),
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                sql.Identifier(trg), self._table(name)
            ),
            sql.SQL(
                "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} "
                "FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(sql.Identifier(trg), self._table(name), fq),
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                sql.Identifier(f"{trg}_t"), self._table(name)
            ),
            sql.SQL(
                "CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()"
            ).format(sql.Identifier(f"{trg}_t"), self._table(name), fq),
        ]
        conn = self._conn()
        try:
            with conn.transaction(), conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        except psycopg.Error as exc:
            raise _errors(exc, f"install change capture on {name!r}") from None
        return f"{self.namespace}.{table}"

    def remove_change_capture(self, name: str) -> None:
        """Drop the triggers, function and change table of ``name`` (missing is a no-op)."""
        table, fn, trg = self._capture_names(name)
        if name in self.list_collections():
            for t in (trg, f"{trg}_t"):
                self._query(
                    sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                        sql.Identifier(t), self._table(name)
                    )
                )
        self._query(
            sql.SQL("DROP FUNCTION IF EXISTS {}.{}()").format(
                sql.Identifier(self.namespace), sql.Identifier(fn)
            )
        )
        self._query(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table(table)))

    def change_capture_installed(self, name: str) -> bool:
        """The change table exists and the row trigger is on ``name``."""
        table, _, trg = self._capture_names(name)
        rows = self._query(
            "SELECT to_regclass(%s) IS NOT NULL AND EXISTS (SELECT 1 FROM pg_trigger "
            "WHERE tgrelid = to_regclass(%s) AND tgname = %s)",
            (f'"{self.namespace}"."{table}"', f'"{self.namespace}"."{name}"', trg),
        )
        return bool(rows[0][0])

    def change_capture_id(self, name: str) -> str | None:
        """The change table's oid: a new one after the capture is removed and reinstalled."""
        if not self.change_capture_installed(name):
            return None
        table = f'"{self.namespace}"."{self._capture_names(name)[0]}"'
        return str(self._query("SELECT to_regclass(%s)::oid::text", (table,))[0][0])

    def change_position(self, name: str) -> str:
        """The current snapshot: every transaction it sees as committed is covered."""
        return str(self._query("SELECT pg_current_snapshot()::text")[0][0])

    def changes(
        self, name: str, since: str, until: str, *, after_seq: int = 0, limit: int = 5000
    ) -> list[Change]:
        """Changes of transactions visible in ``until`` but not in ``since``, by seq."""
        rows = self._query(
            sql.SQL(
                "SELECT seq, id, op, extract(epoch FROM at)::float8 FROM {} "
                "WHERE xid >= pg_snapshot_xmin(%s::pg_snapshot) AND seq > %s "
                "AND pg_visible_in_snapshot(xid, %s::pg_snapshot) "
                "AND NOT pg_visible_in_snapshot(xid, %s::pg_snapshot) ORDER BY seq LIMIT {}"
            ).format(self._table(self._capture_names(name)[0]), sql.Literal(limit)),
            (since, after_seq, until, since),
        )
        ops = {"U": "upsert", "D": "delete", "T": "truncate"}
        return [Change(int(r[0]), r[1], ops[r[2]], float(r[3])) for r in rows]  # type: ignore[arg-type]

    def change_backlog(self, name: str, since: str) -> tuple[int, float]:
        """Committed changes not visible in ``since``, and the age of the oldest (DB clock)."""
        n, age = self._query(
            sql.SQL(
                "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(at)), 0)"
                "::float8 FROM {} WHERE xid >= pg_snapshot_xmin(%s::pg_snapshot) "
                "AND NOT pg_visible_in_snapshot(xid, %s::pg_snapshot)"
            ).format(self._table(self._capture_names(name)[0])),
            (since, since),
        )[0]
        return int(n), float(age)

    def prune_changes(self, name: str, upto: str) -> int:
        """Delete the changes of transactions visible in ``upto`` (already applied)."""
        conn = self._conn()
        query = sql.SQL(
            "DELETE FROM {} WHERE xid < pg_snapshot_xmax(%s::pg_snapshot) "
            "AND pg_visible_in_snapshot(xid, %s::pg_snapshot)"
        ).format(self._table(self._capture_names(name)[0]))
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(query, (upto, upto))
                return int(cur.rowcount)
        except psycopg.Error as exc:
            raise _errors(exc, f"prune changes of {name!r}") from None

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
        op = sql.SQL(_OPERATOR[field.metric])
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
        ids: list[list[Any]] = []
        scores: list[list[float]] = []
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef)))
                # With a filter, HNSW keeps scanning until k rows pass it (pgvector >= 0.8).
                cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                for q in np.asarray(vectors, dtype=np.float32):
                    rows = cur.execute(query, (q, *where_params, q)).fetchall()
                    ids.append([r[0] for r in rows])
                    scores.append([float(r[1]) for r in rows])
        except psycopg.Error as exc:
            raise _errors(exc, f"search in {name!r}") from None
        return ids, scores
