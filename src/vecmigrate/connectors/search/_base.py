"""The connector both Elasticsearch and OpenSearch derive from: index lifecycle, bulk
writes, point-in-time scans with ``search_after`` over slot-range partitions, and kNN
search. Each engine module supplies its client calls and vector mappings; the document
layout and query DSL live in ``_filters``.
"""

from __future__ import annotations

import contextlib
import json
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.config import ConnectorConfig, Secret
from vecmigrate.connectors.search._filters import (
    ID_FIELD,
    META_KEY,
    SLOT_FIELD,
    SLOTS,
    bulk_index_lines,
    check_bulk,
    hits_to_batch,
    index_properties,
    portable_types,
    query,
)
from vecmigrate.errors import ConfigError, TerminalError, TransientError
from vecmigrate.model import (
    CollectionSchema,
    IdType,
    MetadataField,
    Partition,
    ResumeToken,
    VectorField,
)
from vecmigrate.retry import RetryPolicy, call_with_retry
from vecmigrate.uri import ConnectionURI

READ_RETRY = RetryPolicy(attempts=5, base_seconds=0.1, max_seconds=2.0)
FETCH_CHUNK = 1000  # ids per search: stays far inside index.max_result_window (10,000)
_DERIVED = frozenset({"described_from", "foreign", "document_field", "vector_mappings"})
MAX_PAGE = 10_000  # index.max_result_window's default


@dataclass(frozen=True)
class SearchConfig(ConnectorConfig):
    """What Elasticsearch and OpenSearch share: TLS (and its CA, verification), basic
    auth, shards of new indexes, and the field other tools keep the document in."""

    https: bool = False
    verify: bool = True
    ca: str | None = None
    user: str | None = None
    password: Secret | None = None
    shards: int = 1
    document_field: str = "document"


class SearchEngineConnector(Connector):
    config: SearchConfig
    """Shared logic of the Elasticsearch and OpenSearch connectors (see module docstring)."""

    sliced_foreign_scans = False  # whether sliced PIT searches split foreign indexes

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        # host:port, named by every error (a refused connection says nothing else).
        self.address = f"{uri.host or '127.0.0.1'}:{uri.port or 9200}"
        self._dirty: set[str] = set()  # indexes this connector wrote since its last refresh
        self._client: Any = None
        self._client_lock = threading.Lock()

    # -- what each engine supplies ---------------------------------------------------------
    @abstractmethod
    def _open_client(self) -> Any:
        """The engine's client (which connects on its first request)."""

    @abstractmethod
    def _vector_mapping(self, field: VectorField) -> dict[str, Any]:
        """Mapping of one vector field, index parameters included."""

    @abstractmethod
    def _vector_from_mapping(self, name: str, spec: dict[str, Any]) -> VectorField | None:
        """The vector field a mapping property describes, or None if it is not a vector."""

    @abstractmethod
    def _index_settings(self) -> dict[str, Any]:
        """Settings of an index vecmigrate creates."""

    @abstractmethod
    def _knn_body(
        self, field: str, vector: list[float], k: int, flt: dict[str, Any] | None, params: Any
    ) -> dict[str, Any]:
        """Search body of a (filtered) kNN query."""

    @abstractmethod
    def _source_param(self) -> Any:
        """``_source`` of searches that must return vectors."""

    @abstractmethod
    def _foreign_sort(self) -> list[Any]:
        """Deterministic scan order of indexes vecmigrate did not create (no id copy)."""

    @abstractmethod
    def _op(self, op: str, **kw: Any) -> Any:
        """Run one client operation (create, exists, delete, mapping, refresh, count,
        search, bulk, open_pit, close_pit, mappings) and return the response body."""

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The engine's client, made on first use."""
        with self._client_lock:
            if self._client is None:
                self._client = self._open_client()
            return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _op_call(self, what: str, op: str, **kw: Any) -> Any:
        """One client operation (``_op``), its errors translated (``translate_error``)."""
        return self._call(f"{what} at {self.address}", self._op, op, **kw)

    def _read(self, what: str, op: str, **kw: Any) -> Any:
        """A read call, retried on transient failures (reads are not retried upstream)."""
        result, _ = call_with_retry(lambda: self._op_call(what, op, **kw), READ_RETRY, what=what)
        return result

    def _refresh(self, name: str, *, always: bool = True) -> None:
        """Make writes searchable (searches and counts see refreshed segments only)."""
        if always or name in self._dirty:
            self._read(f"refreshing {name!r}", "refresh", index=name)
            self._dirty.discard(name)

    def list_collections(self) -> list[str]:
        # Only indexes with a vector field are collections; system indexes start with ".".
        mappings = self._read("listing indexes", "mappings")
        return sorted(
            name
            for name, m in mappings.items()
            if not name.startswith(".")
            and any(
                p.get("type") in ("dense_vector", "knn_vector")
                for p in ((m.get("mappings") or {}).get("properties") or {}).values()
            )
        )

    # -- schema ------------------------------------------------------------------------------
    def describe(self, name: str) -> CollectionSchema:
        if not self._read(f"looking up {name!r}", "exists", index=name):
            raise ConfigError(f"{self.uri} has no index {name!r}")
        mapping = self._read(f"reading the mapping of {name!r}", "mapping", index=name)
        stored = (mapping.get("_meta") or {}).get(META_KEY)
        if stored:
            schema = CollectionSchema.from_json(json.dumps(stored))
            # What the index really holds (index parameters) beside what vecmigrate meant.
            props = mapping.get("properties") or {}
            actual = {v.name: props.get(v.name, {}) for v in schema.vectors}
            settings = {**schema.engine_settings, "vector_mappings": actual}
            schema = schema.replace(name=name, engine=self.engine, engine_settings=settings)
        else:
            schema = self._infer(name, mapping)
        self._schemas[name] = schema
        return schema

    def _infer(self, name: str, mapping: dict[str, Any]) -> CollectionSchema:
        """Schema of an index another tool made, from its mapping and a sample."""
        props: dict[str, Any] = mapping.get("properties") or {}
        vectors = [
            vf for key, spec in props.items() if (vf := self._vector_from_mapping(key, spec))
        ]
        body = {"size": 100, "query": {"match_all": {}}}
        sample = self._read(f"sampling {name!r}", "search", index=name, body=body)
        # The text field other tools keep the document in (e.g. LangChain's "text").
        doc_field = self.config.document_field
        meta = portable_types(props, sample["hits"]["hits"], doc_field)
        return CollectionSchema(
            name=name,
            vectors=tuple(vectors),
            metadata=tuple(MetadataField(name=k, type=t) for k, t in meta.items()),  # type: ignore[arg-type]
            has_document=props.get(doc_field, {}).get("type") in ("text", "match_only_text"),
            engine=self.engine,
            engine_settings={
                "described_from": "mapping",
                "foreign": ID_FIELD not in props,
                "document_field": doc_field,
            },
        )

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        name = schema.name
        exists = bool(self._read(f"looking up {name!r}", "exists", index=name))
        if self._keep_existing(name, exists, if_exists, f"{self.engine} index {name!r}"):
            return
        if exists:
            self._op_call(f"deleting {name!r}", "delete", index=name)
        props = index_properties(schema, self.engine)
        for v in schema.vectors:
            props[v.name] = self._vector_mapping(v)
        # Settings that describe() derives from an index must not be stored as intent:
        # this index is vecmigrate's own layout whatever the source's was.
        settings = {k: v for k, v in schema.engine_settings.items() if k not in _DERIVED}
        schema = schema.replace(engine=self.engine, engine_settings=settings)
        stored = json.loads(schema.to_json())
        body = {
            "settings": self._index_settings(),
            "mappings": {"dynamic": "strict", "_meta": {META_KEY: stored}, "properties": props},
        }
        self._op_call(f"creating {name!r}", "create", index=name, body=body)
        self._schemas[name] = schema

    def drop(self, name: str) -> None:
        if self._read(f"looking up {name!r}", "exists", index=name):
            self._op_call(f"deleting {name!r}", "delete", index=name)
        self._schemas.pop(name, None)

    def count(self, name: str, filter: Filter | None = None) -> int:
        node = self._filter(self._schema(name), filter)
        self._refresh(name)
        got = self._read(f"counting {name!r}", "count", index=name, body={"query": query(node)})
        return int(got["count"])

    def finalize(self, name: str) -> None:
        # Searches and counts see only refreshed segments: make every write visible.
        self._refresh(name)

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        schema = self._schema(name)
        total = self.count(name)
        n = max(1, min(n, total // 100 + 1))
        if schema.engine_settings.get("foreign"):
            if n == 1 or not self.sliced_foreign_scans:
                return [Partition(id="all", spec={"foreign": True}, estimated_rows=total)]
            # No id copy to range over: slices of one shared PIT (all slices must use the
            # same PIT, so these partitions resume only while it lives).
            pit = self._read(f"opening a point in time on {name!r}", "open_pit", index=name)
            return [
                Partition(
                    id=f"slice-{i}",
                    spec={"foreign": True, "pit": pit, "slice": i, "max": n},
                    estimated_rows=total // n,
                )
                for i in range(n)
            ]
        # Slot ranges of a stable id hash: disjoint, covering, independent of any PIT.
        bounds = [SLOTS * i // n for i in range(n + 1)]
        return [
            Partition(
                id=f"slots-{i}",
                spec={"lo": bounds[i], "hi": bounds[i + 1]},
                estimated_rows=total // n,
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
        spec = partition.spec
        state = json.loads(resume) if resume else {}
        after = state.get("after")
        if spec.get("foreign"):
            sort = self._foreign_sort()
            flt: dict[str, Any] = {"match_all": {}}
        else:
            sort = [{ID_FIELD: "asc"}]
            flt = {"range": {SLOT_FIELD: {"gte": spec["lo"], "lt": spec["hi"]}}}
        self._refresh(name)
        # _shard_doc values only mean something inside their PIT: such a scan resumes in
        # the same PIT, which is left to expire (keep_alive) unless the scan finished.
        pinned = "_shard_doc" in sort
        pit = (state.get("pit") if pinned and after is not None else None) or spec.get("pit")
        resumed_pit = pit is not None
        owned = pit is None or "pit" not in spec  # a shared (sliced) PIT just expires
        if after is not None and not pinned and len(after) == len(sort) + 1:
            # ES appended its implicit _shard_doc tiebreaker, whose values change with the
            # PIT (merges renumber documents): in a new PIT, "after this id" is (id, max).
            after = [*after[:-1], 2**63 - 1]
        pit = pit or self._read(f"opening a point in time on {name!r}", "open_pit", index=name)
        done = False
        page = min(batch_rows, MAX_PAGE)  # index.max_result_window caps size, even with a PIT
        try:
            while True:
                body: dict[str, Any] = {
                    "size": page,
                    "query": flt,
                    "sort": sort,
                    "pit": {"id": pit, "keep_alive": "5m"},
                    "_source": self._source_param(),
                    "track_total_hits": False,
                }
                if "slice" in spec:
                    body["slice"] = {"id": spec["slice"], "max": spec["max"]}
                if after is not None:
                    body["search_after"] = after
                try:
                    got = self._read(f"scanning {name!r}", "search", body=body)
                except TerminalError as exc:
                    if resumed_pit and "search_context_missing" in exc.message:
                        raise TerminalError(
                            f"the point in time a scan of {name!r} resumes in has expired",
                            hint="rerun with --restart: an index without vecmigrate's id field "
                            "resumes only within 5 minutes",
                        ) from None
                    raise
                pit = got.get("pit_id", pit)
                hits = got["hits"]["hits"]
                done = len(hits) < page
                if not hits:
                    return
                after = hits[-1]["sort"]
                token = {"after": after, "pit": pit} if pinned else {"after": after}
                yield hits_to_batch(hits, schema), json.dumps(token)
                if done:
                    return
        finally:
            if owned and (done or not pinned):
                with contextlib.suppress(TransientError, TerminalError):  # it expires anyway
                    self._op_call(f"closing a point in time on {name!r}", "close_pit", id=pit)

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        keys = [str(i) for i in ids]
        self._refresh(name, always=False)
        batches = [hits_to_batch([], schema)]
        for start in range(0, len(keys), FETCH_CHUNK):
            chunk = keys[start : start + FETCH_CHUNK]
            body = {
                "size": len(chunk),
                "query": {"ids": {"values": chunk}},
                "_source": self._source_param(),
            }
            got = self._read(f"fetching from {name!r}", "search", index=name, body=body)
            batches.append(hits_to_batch(got["hits"]["hits"], schema))
        table = pa.Table.from_batches(batches).combine_chunks()
        return table.to_batches()[0] if table.num_rows else batches[0]

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        self._dirty.add(name)
        self._bulk(name, bulk_index_lines(batch, schema), batch.column("id").to_pylist())

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        if ids:
            self._dirty.add(name)
            lines = [json.dumps({"delete": {"_id": str(i)}}) for i in ids]
            self._bulk(name, lines, list(ids))

    def _bulk(self, name: str, lines: list[str], ids: list[Any]) -> None:
        """One ``_bulk`` request, its items inspected one by one (``check_bulk``)."""
        body = "\n".join(lines) + "\n"
        got = self._op_call(f"bulk request to {name!r}", "bulk", index=name, body=body)
        vectors = [v.name for v in self._schema(name).vectors]
        check_bulk(got, ids, name, self.engine, vectors)

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
        flt = query(node) if node is not None else None
        field = schema.vector_field(vector_field).name
        self._refresh(name, always=False)
        out_ids: list[list[Any]] = []
        out_scores: list[list[float]] = []
        to_id: Callable[[str], Any] = int if schema.id_type is IdType.INT else str
        for q in np.asarray(vectors, dtype=np.float32).tolist():
            body = self._knn_body(field, q, k, flt, params or {})
            hits = self._read(f"searching {name!r}", "search", index=name, body=body)
            got = hits["hits"]["hits"]
            out_ids.append([to_id(h["_id"]) for h in got])
            out_scores.append([float(h["_score"]) for h in got])
        return out_ids, out_scores
