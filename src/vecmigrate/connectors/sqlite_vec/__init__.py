"""sqlite-vec: ``sqlite-vec:///path/db.sqlite``. A collection is a regular table (id, document,
float32 vector blob, one typed column per metadata field, metadata_extra) plus a ``vec0``
virtual table ``<name>__vec`` for KNN, joined by rowid.

This Python's sqlite3 cannot load extensions, so the connector uses pysqlite3 (one
connection per thread, opened on first use by ``_client``). vec0 has no inner-product
metric: collections are cosine or l2. Filtered search is exact (vector distance over the
rows the SQL filter keeps); unfiltered search uses the vec0 index.

Vectors are kept twice (the table's blob and vec0's copy). Reads return vec0's copy, the
one every search serves, so a copy changed behind vecmigrate's back shows up as a changed
record (``sync`` rewrites both); a record vec0 lacks is a DataError naming it. ``describe``
takes the metric from the vec0 declaration, which is what searches use.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.partitions import key_range_partitions
from vecmigrate.connectors.sqlite_vec._client import open_db, translate_error
from vecmigrate.connectors.sqlite_vec._filters import quote as _q
from vecmigrate.connectors.sqlite_vec._filters import sql_value as _sql
from vecmigrate.connectors.sqlite_vec._filters import where_sql
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import ALL_OPS
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    Metric,
    Partition,
    ResumeToken,
)
from vecmigrate.records import build_batch, encode_json, vectors_to_numpy
from vecmigrate.uri import ConnectionURI

_SQL_TYPE = {"string": "TEXT", "int64": "INTEGER", "float64": "REAL", "bool": "INTEGER"}
_DISTANCE = {Metric.COSINE: "vec_distance_cosine", Metric.L2: "vec_distance_l2"}
_VEC0_METRIC = re.compile(r"distance_metric\s*=\s*(\w+)", re.IGNORECASE)
log = logging.getLogger("vecmigrate.connectors.sqlite_vec")


class SqliteVecConnector(Connector):
    """Tables with a sqlite-vec ``vec0`` companion in one SQLite file."""

    schemes = ("sqlite-vec",)
    capabilities = Capabilities(
        id_types=frozenset(IdType),
        metrics=frozenset({Metric.COSINE, Metric.L2}),
        filter_ops=ALL_OPS,
        max_batch_rows=5000,
        index_kinds=frozenset({"flat"}),
    )
    translate_error = staticmethod(translate_error)

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self.path: Path = uri.local_path
        self._local = threading.local()
        self._write = threading.Lock()

    def _conn(self) -> Any:
        """This thread's connection, opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._call(f"sqlite-vec {self.path}", open_db, self.path)
        return conn

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._conn().execute(sql, params).fetchall())

    def list_collections(self) -> list[str]:
        return sorted(r[0] for r in self._exec("SELECT name FROM _vecmigrate_schema"))

    def describe(self, name: str) -> CollectionSchema:
        rows = self._exec("SELECT schema FROM _vecmigrate_schema WHERE name = ?", (name,))
        if not rows:
            raise ConfigError(
                f"{self.uri} has no vecmigrate collection {name!r}",
                hint="tables made by other tools are not described yet",
            )
        schema = CollectionSchema.from_json(rows[0][0]).replace(name=name, engine="sqlite-vec")
        schema = self._served_metric(schema)
        self._schemas[name] = schema
        return schema

    def _served_metric(self, schema: CollectionSchema) -> CollectionSchema:
        """``schema`` with the metric its vec0 table was declared with (KNN uses that one),
        noted in ``engine_settings`` when it is not the metric vecmigrate recorded."""
        vec = schema.name + "__vec"
        rows = self._exec("SELECT sql FROM sqlite_master WHERE name = ?", (vec,))
        if not rows:
            raise DataError(
                f"sqlite-vec collection {schema.name!r} has no vec0 index table {vec!r}",
                collection=schema.name,
                hint="copy it again with --if-exists replace",
            )
        found = _VEC0_METRIC.search(rows[0][0] or "")
        declared = found.group(1).lower() if found else "l2"  # vec0's default
        if declared not in {m.value for m in _DISTANCE}:
            raise ConfigError(
                f"the vec0 index of {schema.name!r} serves {declared} distance, "
                "which vecmigrate has no metric for"
            )
        v = schema.vector
        settings = dict(schema.engine_settings)
        settings[f"{v.name}.index"] = f"vec0 exact KNN ({declared})"
        if declared != v.metric.value:
            settings[f"{v.name}.metric"] = (
                f"{declared} from the vec0 index declaration; vecmigrate recorded "
                f"{v.metric.value} (the index was rebuilt outside vecmigrate)"
            )
            v = v.model_copy(update={"metric": Metric(declared)})
        return schema.replace(vectors=(v, *schema.vectors[1:]), engine_settings=settings)

    def count(self, name: str, filter: Filter | None = None) -> int:
        node = self._filter(self._schema(name), filter)
        where, params = where_sql(node) if node else ("1", [])
        return int(self._exec(f"SELECT count(*) FROM {_q(name)} WHERE {where}", params)[0][0])

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        if len(schema.vectors) != 1:
            raise ConfigError("a sqlite-vec collection holds one vector field")
        exists = schema.name in self.list_collections()
        if self._keep_existing(schema.name, exists, if_exists, f"collection {schema.name!r}"):
            return
        self.drop(schema.name)
        v = schema.vector
        cols = [
            f"id {'INTEGER' if schema.id_type is IdType.INT else 'TEXT'} NOT NULL UNIQUE",
            "document TEXT",
            "vector BLOB NOT NULL",
            "metadata_extra TEXT",
        ]
        clash = {m.name for m in schema.metadata} & {"id", "document", "vector", "metadata_extra"}
        if clash:
            raise ConfigError(f"metadata fields {sorted(clash)} clash with column names")
        cols += [f"{_q(m.name)} {_SQL_TYPE.get(m.type, 'TEXT')}" for m in schema.metadata]
        with self._write:
            self._exec(f"CREATE TABLE {_q(schema.name)} ({', '.join(cols)})")
            self._exec(
                f"CREATE VIRTUAL TABLE {_q(schema.name + '__vec')} USING "
                f"vec0(embedding float[{v.dim}] distance_metric={v.metric.value})"
            )
            self._exec(
                "INSERT OR REPLACE INTO _vecmigrate_schema VALUES (?, ?)",
                (schema.name, schema.to_json()),
            )
        self._schemas[schema.name] = schema

    # -- reading -----------------------------------------------------------------------------
    def _select(self, schema: CollectionSchema) -> str:
        """Rows as ``_to_batch`` reads them: both copies of each vector (vec0's, the
        table's last), from the table ``t`` joined to its vec0 companion by rowid."""
        cols = ", ".join(
            [
                "t.rowid",
                "t.id",
                "t.document",
                "v.embedding",
                "t.metadata_extra",
                *(f"t.{_q(m.name)}" for m in schema.metadata),
                "t.vector",
            ]
        )
        return (
            f"SELECT {cols} FROM {_q(schema.name)} t "
            f"LEFT JOIN {_q(schema.name + '__vec')} v ON v.rowid = t.rowid"
        )

    def _to_batch(self, rows: list[tuple[Any, ...]], schema: CollectionSchema) -> pa.RecordBatch:
        dim = schema.vector.dim
        unindexed = [r[1] for r in rows if r[3] is None]
        if unindexed:  # searches can never return these records: refuse, never skip them
            raise DataError(
                f"{len(unindexed)} record(s) of {schema.name!r} are missing from its vec0 "
                f"index (searches cannot return them): {unindexed[:10]}",
                collection=schema.name,
                record_id=unindexed[0],
                field=schema.vector.name,
                hint="upsert them again (vecmigrate sync from their source rewrites both copies)",
            )
        differ = [r[1] for r in rows if r[3] != r[-1]]
        if differ:
            log.warning(
                "sqlite-vec %r: the vec0 index holds another vector than the table for %d "
                "record(s) %s; reading the index's copy (the one searches serve)",
                schema.name,
                len(differ),
                differ[:10],
            )
        vectors = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32).reshape(
            len(rows), dim
        )
        metas = []
        for r in rows:
            meta: dict[str, Any] = json.loads(r[4]) if r[4] else {}
            for m, value in zip(schema.metadata, r[5:-1], strict=True):
                if value is None:
                    continue
                if m.type == "bool":
                    value = bool(value)
                elif m.type.startswith("list<") or m.type == "json":
                    value = json.loads(value)
                meta[m.name] = value
            metas.append(meta)
        return build_batch(
            schema,
            [r[1] for r in rows],
            {schema.vector.name: vectors},
            documents=[r[2] for r in rows],
            metadata=metas,
        )

    def partitions(self, name: str, n: int) -> list[Partition]:
        lo, hi, total = self._exec(f"SELECT min(rowid), max(rowid), count(*) FROM {_q(name)}")[0]
        if not total:
            return [Partition(id="rows-0", spec={"after": None, "upto": None}, estimated_rows=0)]
        n = max(1, min(n, total // 1000 + 1))
        return key_range_partitions([lo - 1 + (hi - lo + 1) * i // n for i in range(1, n)], total)

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
            rows = self._exec(
                f"{self._select(schema)} WHERE t.rowid > ? AND t.rowid <= ? "
                "ORDER BY t.rowid LIMIT ?",
                (-1 if after is None else after, 2**62 if upto is None else upto, batch_rows),
            )
            if not rows:
                return
            after = rows[-1][0]
            yield self._to_batch(rows, schema), json.dumps({"after": after})

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(ids), 500):
            chunk = [self._id(schema, i) for i in ids[start : start + 500]]
            marks = ", ".join("?" * len(chunk))
            rows += self._exec(f"{self._select(schema)} WHERE t.id IN ({marks})", chunk)
        return self._to_batch(rows, schema)

    @staticmethod
    def _id(schema: CollectionSchema, value: Any) -> Any:
        return int(value) if schema.id_type is IdType.INT else str(value)

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        ids = [self._id(schema, i) for i in batch.column("id").to_pylist()]
        if len(set(ids)) != len(ids):
            raise DataError("batch repeats an id", collection=name, field="id")
        blobs = [
            r.tobytes()
            for r in np.ascontiguousarray(vectors_to_numpy(batch.column(schema.vector.name)))
        ]
        docs = (
            batch.column("document").to_pylist()
            if "document" in batch.schema.names
            else [None] * len(ids)
        )
        extra = batch.column("metadata_extra").to_pylist()
        columns = []
        if schema.metadata:
            struct = batch.column("metadata")
            for m, child in zip(schema.metadata, struct.flatten(), strict=True):
                values = child.to_pylist()
                if m.type.startswith("list<"):
                    values = [None if v is None else encode_json(v) for v in values]
                columns.append([_sql(v) for v in values])
        names = ["id", "document", "vector", "metadata_extra", *(m.name for m in schema.metadata)]
        rows = list(zip(ids, docs, blobs, extra, *columns, strict=True))
        sets = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in names[1:])
        upsert = (
            f"INSERT INTO {_q(name)} ({', '.join(map(_q, names))}) "
            f"VALUES ({', '.join('?' * len(names))}) "
            f"ON CONFLICT(id) DO UPDATE SET {sets}"
        )
        conn = self._conn()
        with self._write:
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(upsert, rows)
                marks = ", ".join("?" * len(ids))
                rowids = conn.execute(
                    f"SELECT rowid, vector FROM {_q(name)} WHERE id IN ({marks})", ids
                ).fetchall()
                vec = _q(name + "__vec")
                conn.executemany(f"DELETE FROM {vec} WHERE rowid = ?", [(r[0],) for r in rowids])
                conn.executemany(f"INSERT INTO {vec} (rowid, embedding) VALUES (?, ?)", rowids)
                conn.execute("COMMIT")
            except Exception:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        schema = self._schema(name)
        keys = [self._id(schema, i) for i in ids]
        conn = self._conn()
        with self._write:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                rowids = conn.execute(
                    f"SELECT rowid FROM {_q(name)} WHERE id IN ({marks})", chunk
                ).fetchall()
                conn.executemany(f"DELETE FROM {_q(name + '__vec')} WHERE rowid = ?", rowids)
                conn.execute(f"DELETE FROM {_q(name)} WHERE id IN ({marks})", chunk)

    def drop(self, name: str) -> None:
        with self._write:
            self._exec(f"DROP TABLE IF EXISTS {_q(name)}")
            self._exec(f"DROP TABLE IF EXISTS {_q(name + '__vec')}")
            self._exec("DELETE FROM _vecmigrate_schema WHERE name = ?", (name,))
        self._schemas.pop(name, None)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

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
        field = schema.vector_field(vector_field)
        ids: list[list[Any]] = []
        scores: list[list[float]] = []
        for q in np.asarray(vectors, dtype=np.float32):
            blob = q.tobytes()
            if node is None:
                rows = self._exec(
                    f"SELECT t.id, v.distance FROM {_q(name + '__vec')} v "
                    f"JOIN {_q(name)} t ON t.rowid = v.rowid "
                    "WHERE v.embedding MATCH ? AND k = ? ORDER BY v.distance",
                    (blob, k),
                )
            else:
                # Distances to vec0's copy, as unfiltered KNN measures them; the subquery
                # keeps metadata column names unambiguous (vec0 has hidden columns).
                where, wparams = where_sql(node)
                rows = self._exec(
                    f"SELECT id, d FROM (SELECT id, {_DISTANCE[field.metric]}("
                    f"(SELECT embedding FROM {_q(name + '__vec')} v WHERE v.rowid = t.rowid), ?"
                    f") AS d FROM {_q(name)} t WHERE {where}) "
                    "WHERE d IS NOT NULL ORDER BY d LIMIT ?",
                    (blob, *wparams, k),
                )
            ids.append([r[0] for r in rows])
            scores.append([float(r[1]) for r in rows])
        return ids, scores
