"""Redis Stack / RediSearch: ``redis://[user@]host:6379?password=env:NAME[&tls=true]`` (db 0).

A collection is a RediSearch index over one HASH per record (key ``<collection>:<id>``),
with the vecmigrate schema kept at ``vecmigrate:schema:<collection>``; indexes made by other
tools (over HASH or JSON documents) are described from ``FT.INFO`` and read as they are laid
out (``_infer``: ids from the key or ``?id_field=``, text and vectors under any name with
``?document_field=`` / ``?vector_field=``). With ``?layout=langchain`` indexes are read and
written as LangChain's ``RedisVectorStore`` keeps them (``_frameworks``). The exact layout
is in ``_schema``; filter compilation in ``_filters``; hash / JSON encoding in ``_records``;
the client and the one error mapping in ``_client``. This module holds the connector
contract: commands and pipelines.

Scans walk ``SCAN MATCH <prefix>* TYPE hash`` and partition keys by crc32 buckets; a
resume token is the SCAN cursor plus the last key emitted from that cursor's reply.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.config import Secret, reveal
from vecmigrate.connectors.foreign import FieldsConfig
from vecmigrate.connectors.frameworks import LANGCHAIN, parse_layout
from vecmigrate.connectors.redis import _client, _frameworks
from vecmigrate.connectors.redis._access import case_superset, id_values, record_keys, sample
from vecmigrate.connectors.redis._client import execute as _exec
from vecmigrate.connectors.redis._filters import _Query, compile_filter
from vecmigrate.connectors.redis._infer import describe_index
from vecmigrate.connectors.redis._records import hash_rows, json_bodies, records_to_batch
from vecmigrate.connectors.redis._schema import (
    EXTRA,
    SCHEMA_KEY,
    Layout,
    check_creatable,
    create_args,
    has_vectors,
    match_pattern,
    own_layout,
    pairs,
    text,
)
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import ALL_OPS, Node, evaluate
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    Metric,
    Partition,
    ResumeToken,
)
from vecmigrate.uri import ConnectionURI

# Re-exported: tests and callers import these from here.
__all__ = ["Layout", "RedisConnector", "_Query", "compile_filter"]

SCORE = "__vm_score"
SCAN_COUNT = 1000  # fixed: a resumed SCAN must see the same reply for the same cursor


@dataclass(frozen=True)
class RedisConfig(FieldsConfig):
    """Database (0: RediSearch's only one), password, TLS and the socket timeout (s); the
    fields of indexes other tools made (``connectors/foreign.py``); ``layout``:
    ``langchain`` for the indexes LangChain's RedisVectorStore keeps (``_frameworks``)."""

    db: str = "0"
    password: Secret | None = None
    tls: bool = False
    timeout: float = 120.0
    layout: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", parse_layout(self.layout, "redis", (LANGCHAIN,)))


class RedisConnector(Connector):
    Config = RedisConfig
    config: RedisConfig

    """RediSearch vector indexes over HASH documents in one Redis database."""

    schemes = ("redis",)
    capabilities = Capabilities(
        filter_ops=ALL_OPS,
        id_types=frozenset(IdType),
        metrics=frozenset(Metric),
        named_vectors=True,
        stores_null_metadata=False,
        max_batch_rows=2000,
        max_batch_bytes=64 * 1024 * 1024,
        index_kinds=frozenset({"flat", "hnsw"}),
    )

    translate_error = staticmethod(_client.translate_error)

    def __init__(self, uri: ConnectionURI) -> None:
        # No I/O here: the client (and the password) is made on first use.
        super().__init__(uri)
        db = uri.path.strip("/") or self.config.db
        if db != "0":
            raise ConfigError(
                f"{uri}: RediSearch keeps indexes in database 0 only", hint="drop the /db part"
            )
        self._layouts: dict[str, Layout] = {}

    @cached_property
    def client(self) -> redis.Redis:
        """The redis-py client, made on first use (it connects on its first command)."""
        return _client.open_client(
            self.uri.host or "127.0.0.1",
            self.uri.port or 6379,
            self.uri.user,
            reveal(self.config.password),
            tls=self.config.tls,
            timeout=self.config.timeout,
        )

    def close(self) -> None:
        if "client" in self.__dict__:  # never made: nothing to close
            self.client.close()

    def _cmd(self, what: str, *args: Any) -> Any:
        """One Redis command, its errors translated naming ``what``."""
        return self._call(what, _exec, self.client, *args)

    # -- discovery ---------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        """RediSearch indexes over HASH or JSON documents with a VECTOR field."""
        names = [text(n) for n in self._cmd("FT._LIST", "FT._LIST")]
        return sorted(n for n in names if (info := self._info(n)) and has_vectors(info))

    def _info(self, name: str) -> dict[str, Any] | None:
        """``FT.INFO`` as a dict; None when there is no such index."""

        def info() -> dict[str, Any] | None:
            try:
                return pairs(_exec(self.client, "FT.INFO", name))
            except redis.ResponseError as exc:
                if _client.unknown_index(exc):
                    return None
                raise

        return self._call(f"FT.INFO {name!r}", info)

    def describe(self, name: str) -> CollectionSchema:
        info = self._info(name)
        if info is None:
            raise ConfigError(f"{self.uri} has no RediSearch index {name!r}")
        stored = self._cmd("GET", "GET", SCHEMA_KEY + name)
        if self.config.layout and stored:
            raise ConfigError(
                f"redis index {name!r} is in vecmigrate's own layout, not "
                f"{self.config.layout}'s (layout={self.config.layout})",
                hint="read it without ?layout=",
            )
        if self.config.layout:
            schema, layout = _frameworks.describe(name, info, partial(sample, self), self.config)
        elif stored:
            schema = CollectionSchema.from_json(stored.decode()).replace(name=name, engine="redis")
            layout = own_layout(schema)
        else:
            schema, layout = describe_index(name, info, partial(sample, self), self.config)
        self._schemas[name], self._layouts[name] = schema, layout
        return schema

    def _scan_from(
        self, what: str, pattern: str, cursor: int = 0, *type_filter: str
    ) -> Iterator[tuple[int, list[bytes]]]:
        """SCAN replies from ``cursor`` until the walk ends: (the cursor asked, its keys)."""
        while True:
            nxt, keys = self._cmd(
                what, "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, *type_filter
            )
            yield cursor, keys
            cursor = int(nxt)
            if cursor == 0:
                return

    def _execute(
        self, pipe: Any, name: str, what: str, owners: Sequence[Any] | None = None
    ) -> list[Any]:
        """Run a pipeline. With ``owners`` (the record id of each command), a command Redis
        refuses is a DataError naming its record rather than a failure of the whole batch."""
        results: list[Any] = self._call(what, pipe.execute, raise_on_error=owners is None)
        for rid, res in zip(owners or (), results, strict=owners is not None):
            if isinstance(res, Exception):
                raise DataError(f"redis refused the record: {res}", collection=name, record_id=rid)
        return results

    def _layout(self, name: str) -> Layout:
        if name not in self._layouts:
            self.describe(name)
        return self._layouts[name]

    def _search(self, name: str, query: str, params: dict[str, Any], *extra: Any) -> list[Any]:
        flat = [x for kv in params.items() for x in kv]
        args = ["FT.SEARCH", name, query, *(["PARAMS", len(flat), *flat] if flat else []), *extra]
        # TIMEOUT 0: the module default (500 ms, ON_TIMEOUT RETURN) silently returns partial
        # results.
        result: list[Any] = self._cmd(f"search in {name!r}", *args, "TIMEOUT", 0, "DIALECT", 2)
        return result

    def count(self, name: str, filter: Filter | None = None) -> int:
        schema = self._schema(name)
        node = self._filter(schema, filter)
        if node is not None and case_superset(node, self._layout(name)) is not None:
            # Case-folded TAGs cannot count exact matches: every record is evaluated.
            part = Partition(id="all", spec={"bucket": 0, "buckets": 1}, estimated_rows=0)
            return sum(
                int(evaluate(node, batch).sum())
                for batch, _ in self.scan(name, part, schema=schema, batch_rows=1000)
            )
        q = _Query()
        query = compile_filter(node, self._layout(name), q) if node else "*"
        return int(self._search(name, query, q.params, "LIMIT", 0, 0)[0])

    # -- create ------------------------------------------------------------------------------
    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        name = schema.name
        if self.config.layout:
            _frameworks.check_creatable(schema)
        else:
            check_creatable(schema)
        exists = self._info(name) is not None
        if self._keep_existing(name, exists, if_exists, f"redis index {name!r}"):
            return
        if exists:
            self.drop(name)
        if self.config.layout:
            self._cmd(f"creating {name!r}", *_frameworks.create_args(schema))
            self._schemas[name], self._layouts[name] = _frameworks.new_layout(schema)
            return
        self._cmd(f"creating {name!r}", *create_args(schema))
        self._cmd(f"creating {name!r}", "SET", SCHEMA_KEY + name, schema.to_json())
        self._schemas[name], self._layouts[name] = schema, own_layout(schema)

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        # Each partition walks every key name (cheap) and reads only its crc32 bucket's records,
        # so few partitions for small collections.
        total = self.count(name)
        n = max(1, min(n, total // 100))
        return [
            Partition(
                id=f"bucket-{i}-of-{n}", spec={"bucket": i, "buckets": n}, estimated_rows=total // n
            )
            for i in range(n)
        ]

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
        layout = self._layout(name)
        bucket, buckets = partition.spec["bucket"], partition.spec["buckets"]
        pos: dict[str, Any] = json.loads(resume) if resume else {"p": 0, "cursor": 0, "after": None}
        after = bytes.fromhex(pos["after"]) if pos.get("after") else None
        buf: list[bytes] = []
        for p in range(pos["p"], len(layout.prefixes)):
            pattern = match_pattern(layout.prefixes[p])
            start = pos["cursor"] if p == pos["p"] else 0
            for cursor, keys in self._scan_from(
                f"scanning {name!r}", pattern, start, "TYPE", layout.key_type
            ):
                mine = sorted(k for k in keys if buckets == 1 or zlib.crc32(k) % buckets == bucket)
                for key in mine:
                    if after is not None and key <= after:
                        continue
                    buf.append(key)
                    if len(buf) == batch_rows:
                        token = {"p": p, "cursor": cursor, "after": key.hex()}
                        yield self._read(name, schema, layout, buf), json.dumps(token)
                        buf = []
                after = None  # only the resumed reply had keys already emitted
        if buf:
            token = {"p": len(layout.prefixes), "cursor": 0, "after": None}
            yield self._read(name, schema, layout, buf), json.dumps(token)

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        layout = self._layout(name)
        got = self._read(name, schema, layout, record_keys(self, name, schema, layout, ids))
        if layout.id_field is None:
            return got
        # A key found by its id field (or derived) holds the record asked for only if
        # its id field says so (a TAG without CASESENSITIVE also matches other cases).
        wanted = pa.array([str(i) for i in ids], pa.string())
        return got.filter(pc.is_in(pc.cast(got.column("id"), pa.string()), value_set=wanted))

    def _read(
        self, name: str, schema: CollectionSchema, layout: Layout, keys: list[bytes]
    ) -> pa.RecordBatch:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            _exec(pipe, *(("JSON.GET", key) if layout.json else ("HGETALL", key)))
        raws = self._execute(pipe, name, f"reading {name!r}")
        if layout.framework:
            return _frameworks.records_to_batch(name, schema, layout, keys, raws)
        return records_to_batch(name, schema, layout, keys, raws)

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        layout = self._layout(name)
        # ``batch`` arrives conformed to the schema (the base class does it).
        if layout.json:
            self._upsert_json(name, schema, layout, batch)
            return
        ids = batch.column("id").to_pylist()
        keys = record_keys(self, name, schema, layout, ids)
        if layout.framework:
            rows = _frameworks.hash_rows(name, schema, layout, batch)
            known = _frameworks.hash_fields(schema, layout)
        else:
            rows = hash_rows(name, schema, layout, batch)
            known = [
                layout.doc_field or "",
                *(v.name for v in schema.vectors),
                *layout.fields.values(),
            ]
            known = [f for f in dict.fromkeys([*known, EXTRA]) if f]
        pipe = self.client.pipeline(transaction=False)
        owners = []
        for rid, row, rkey in zip(ids, rows, keys, strict=True):
            if layout.id_field is not None:
                row += [layout.id_field, str(rid)]
            _exec(pipe, "HSET", rkey, *row)
            owners.append(rid)
            # HSET then HDEL (not DEL + HSET): the record never vanishes from searches, and an
            # HDEL that removes nothing does not re-index it.
            absent = set(known) - {text(f) for f in row[::2]}
            if absent:
                _exec(pipe, "HDEL", rkey, *sorted(absent))
                owners.append(rid)
        self._execute(pipe, name, f"upsert into {name!r}", owners)

    def _upsert_json(
        self, name: str, schema: CollectionSchema, layout: Layout, batch: pa.RecordBatch
    ) -> None:
        """Whole JSON documents (JSON.SET replaces them): vectors as arrays of numbers."""
        ids = batch.column("id").to_pylist()
        pipe = self.client.pipeline(transaction=False)
        if layout.skip:
            raise ConfigError(
                f"writing into {name!r} would drop its vector fields {sorted(layout.skip)} "
                "(JSON.SET replaces whole documents)",
                hint="drop vector_field from the URI so every vector field is carried",
            )
        keys = record_keys(self, name, schema, layout, ids)
        bodies = json_bodies(name, schema, layout, batch)
        for rkey, body in zip(keys, bodies, strict=True):
            _exec(pipe, "JSON.SET", rkey, "$", body)
        self._execute(pipe, name, f"upsert into {name!r}", ids)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        schema, layout = self._schema(name), self._layout(name)
        keys = record_keys(self, name, schema, layout, ids)
        for start in range(0, len(keys), 1000):
            self._cmd(f"deleting from {name!r}", "UNLINK", *keys[start : start + 1000])

    def drop(self, name: str) -> None:
        own = bool(self._cmd("drop", "EXISTS", SCHEMA_KEY + name))
        if self._info(name) is not None:
            # Other tools' collections: DD deletes exactly the documents the index holds.
            self._cmd(f"dropping {name!r}", "FT.DROPINDEX", name, *([] if own else ["DD"]))
        if own:  # every key under the prefix, indexed or not
            for _, keys in self._scan_from("drop", match_pattern(f"{name}:")):
                if keys:
                    self._cmd(f"dropping {name!r}", "UNLINK", *keys)
            self._cmd("drop", "DEL", SCHEMA_KEY + name)
        self._schemas.pop(name, None)
        self._layouts.pop(name, None)

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
        schema, layout = self._schema(name), self._layout(name)
        node = self._filter(schema, filter)
        loose = case_superset(node, layout) if node else None
        q = _Query()
        where = compile_filter(node, loose or layout, q) if node else "*"
        vf = schema.vector_field(vector_field)
        attr, algo = layout.vector_attrs[vf.name]
        ef = ""
        if algo == "HNSW":
            ef = f" EF_RUNTIME {int((params or {}).get('ef_search', max(40, 2 * k)))}"
        where = f"({where})" if node else "*"
        flat = [x for kv in q.params.items() for x in kv]

        def knn(vec: np.ndarray, n: int) -> list[Any]:
            query = f"{where}=>[KNN {int(n)} @{attr} $__vec{ef} AS {SCORE}]"
            return [
                "FT.SEARCH", name, query, "PARAMS", len(flat) + 2, *flat, "__vec", vec.tobytes(),
                "SORTBY", SCORE, "RETURN", 1, SCORE, "LIMIT", 0, int(n), "TIMEOUT", 0, "DIALECT", 2,
            ]  # fmt: skip

        matrix = np.ascontiguousarray(vectors, dtype="<f4")
        if loose is not None and node is not None:
            found = [self._narrowed(name, schema, layout, node, knn, vec, k) for vec in matrix]
            return [f[0] for f in found], [f[1] for f in found]
        pipe = self.client.pipeline(transaction=False)
        for vec in matrix:
            _exec(pipe, *knn(vec, k))
        replies = self._execute(pipe, name, f"search in {name!r}")
        ids: list[list[Any]] = []
        scores: list[list[float]] = []
        for reply in replies:
            keys, fields = reply[1::2], reply[2::2]
            ids.append(self._ids_of(name, schema, layout, keys))
            scores.append([float(pairs(f)[SCORE]) for f in fields])
        return ids, scores

    def _ids_of(
        self, name: str, schema: CollectionSchema, layout: Layout, keys: list[bytes]
    ) -> list[Any]:
        """The record id of each key a search returned."""
        cut = len(layout.id_prefix.encode())
        row = (
            [k[cut:].decode() for k in keys]
            if layout.id_field is None
            else id_values(self, name, layout, keys)
        )
        return [int(r) for r in row] if schema.id_type is IdType.INT else row

    def _narrowed(
        self,
        name: str,
        schema: CollectionSchema,
        layout: Layout,
        node: Node,
        knn: Callable[[np.ndarray, int], list[Any]],
        vec: np.ndarray,
        k: int,
    ) -> tuple[list[Any], list[float]]:
        """Top ``k`` under a filter the index answers case-folded (``case_superset``): the
        nearest records of the superset, read and kept when ``node`` holds exactly, asking
        for more until ``k`` hold or the superset is exhausted (order is the engine's, so
        the kept ones are the exact top ``k``)."""
        n = max(4 * k, 40)
        while True:
            reply = self._cmd(f"search in {name!r}", *knn(vec, n))
            keys, fields = list(reply[1::2]), reply[2::2]
            batch = self._read(name, schema, layout, keys)
            mask = evaluate(node, batch)
            ok = {str(i) for i, m in zip(batch.column("id").to_pylist(), mask, strict=True) if m}
            ids = self._ids_of(name, schema, layout, keys)
            hits = [
                (rid, float(pairs(f)[SCORE]))
                for rid, f in zip(ids, fields, strict=True)
                if str(rid) in ok
            ][:k]
            if len(hits) == k or len(keys) < n:
                return [h[0] for h in hits], [h[1] for h in hits]
            n *= 4
