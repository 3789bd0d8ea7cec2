"""What Elasticsearch and OpenSearch share: the document layout, query DSL filters, bulk
indexing with per-item errors, and point-in-time scans with ``search_after``.

Used only by ``elasticsearch.py`` and ``opensearch.py``; each subclass supplies the few
client calls and vector mappings that differ between the two engines.

Layout of a document vecmigrate writes (``_id`` is the record id as a string):
``vecmigrate_id`` (keyword copy of the id: the deterministic sort key of scans),
``vecmigrate_slot`` (long, a stable hash of the id: partitions are disjoint slot ranges),
``document`` (text), one vector field per vector, one typed field per metadata field
(lists are multi-valued fields, so the list type lives in the stored schema) and
``vecmigrate_extra`` (JSON of values that did not fit their field's type). The vecmigrate
schema is kept in the mapping's ``_meta`` so ``describe`` round-trips.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError
from vecmigrate.filters import ALL_OPS, Bool, Cond, Node
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    MetadataField,
    Metric,
    Partition,
    ResumeToken,
    VectorField,
)
from vecmigrate.pipeline.retry import RetryPolicy, call_with_retry
from vecmigrate.records import build_batch, encode_json, metadata_rows, value_fits, vectors_to_numpy

T = TypeVar("T")
ID_FIELD = "vecmigrate_id"
SLOT_FIELD = "vecmigrate_slot"
EXTRA_FIELD = "vecmigrate_extra"
DOC_FIELD = "document"
META_KEY = "vecmigrate"
SLOTS = 2**32
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
_RANGE = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
_FIELD_TYPE = {
    "string": "keyword",
    "int64": "long",
    "float64": "double",
    "bool": "boolean",
    "list<string>": "keyword",
    "list<int64>": "long",
    "list<float64>": "double",
}
_PORTABLE = {
    "keyword": "string",
    "text": "string",
    "match_only_text": "string",
    "constant_keyword": "string",
    "long": "int64",
    "integer": "int64",
    "short": "int64",
    "byte": "int64",
    "unsigned_long": "int64",
    "double": "float64",
    "float": "float64",
    "half_float": "float64",
    "scaled_float": "float64",
    "boolean": "bool",
}
_PARSE_FIELD = re.compile(r"failed to parse field \[([^\]]+)\]|field \[([^\]]+)\]")
READ_RETRY = RetryPolicy(attempts=5, base_seconds=0.1, max_seconds=2.0)


def slot(record_id: Any) -> int:
    """Stable 32-bit hash of an id: which partition (slot range) holds the record."""
    digest = hashlib.blake2b(str(record_id).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def query(node: Node | None) -> dict[str, Any]:
    """A portable filter as a query DSL ``bool`` with vecmigrate's fixed semantics."""
    if node is None:
        return {"match_all": {}}
    if isinstance(node, Bool):
        parts = [query(c) for c in node.children]
        if node.op == "$and":
            return {"bool": {"filter": parts}}
        if node.op == "$or":
            return {"bool": {"should": parts, "minimum_should_match": 1}}
        return {"bool": {"must_not": parts}}
    return _leaf(node)


def _leaf(node: Cond) -> dict[str, Any]:
    key = node.field.name
    exists = {"exists": {"field": key}}
    if node.op == "$exists":
        if node.field.type.startswith("list<"):  # an empty list is indexed as no value
            raise ConfigError(f"Elasticsearch/OpenSearch cannot tell [] from a missing {key!r}")
        return exists if node.value else {"bool": {"must_not": [exists]}}
    if node.op == "$eq":  # on a multi-valued (list) field a term query means "contains"
        return {"term": {key: node.value}}
    if node.op == "$in":
        return {"terms": {key: node.value}}
    if node.op in _RANGE:
        return {"range": {key: {_RANGE[node.op]: node.value}}}
    # $ne / $nin: must_not alone would also match records lacking the field.
    neg = {"term": {key: node.value}} if node.op == "$ne" else {"terms": {key: node.value}}
    return {"bool": {"filter": [exists], "must_not": [neg]}}


def search_capabilities(**overrides: Any) -> Capabilities:
    """Capabilities both engines share; each module overrides what differs."""
    shared: dict[str, Any] = {
        "id_types": frozenset(IdType),
        "metrics": frozenset(Metric),
        "named_vectors": True,
        "stores_null_metadata": False,
        "filter_ops": ALL_OPS,
        "max_batch_rows": 1000,
        "max_batch_bytes": 16 * 1024 * 1024,
        "index_kinds": frozenset({"hnsw", "flat"}),
    }
    return Capabilities(**{**shared, **overrides})


class SearchEngineConnector(Connector):
    """Shared logic of the Elasticsearch and OpenSearch connectors (see module docstring)."""

    # -- what each engine supplies ---------------------------------------------------------
    @abstractmethod
    def _status_of(self, exc: Exception) -> tuple[int | None, str] | None:
        """(HTTP status or None for a connection failure, reason) of a client error."""

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
    def _call(self, what: str, op: str, **kw: Any) -> Any:
        """One client call; client errors become typed errors (no secrets in them)."""
        try:
            return self._op(op, **kw)
        except Exception as exc:
            info = self._status_of(exc)
            if info is None:
                raise
            status, reason = info
            if status is None or status in TRANSIENT_STATUS:
                raise TransientError(f"{what}: {reason}") from None
            raise TerminalError(f"{what}: HTTP {status} {reason}") from None

    def _read(self, what: str, op: str, **kw: Any) -> Any:
        """A read call, retried on transient failures (reads are not retried upstream)."""
        result, _ = call_with_retry(lambda: self._call(what, op, **kw), READ_RETRY, what=what)
        return result

    def _init_cache(self) -> None:
        self._schemas: dict[str, CollectionSchema] = {}

    def list_collections(self) -> list[str]:
        mappings = self._read("listing indexes", "mappings")
        return sorted(n for n in mappings if not n.startswith("."))

    # -- schema ------------------------------------------------------------------------------
    def describe(self, name: str) -> CollectionSchema:
        if not self._read(f"looking up {name!r}", "exists", index=name):
            raise ConfigError(f"{self.uri} has no index {name!r}")
        mapping = self._read(f"reading the mapping of {name!r}", "mapping", index=name)
        stored = (mapping.get("_meta") or {}).get(META_KEY)
        if stored:
            schema = CollectionSchema.from_json(json.dumps(stored))
            schema = schema.replace(name=name, engine=self.engine)
        else:
            schema = self._infer(name, mapping)
        self._schemas[name] = schema
        return schema

    def _infer(self, name: str, mapping: dict[str, Any]) -> CollectionSchema:
        """Schema of an index another tool made: types from the mapping, list-ness from
        a sample of documents (a mapping cannot say whether a field holds arrays)."""
        props: dict[str, Any] = mapping.get("properties") or {}
        vectors: list[VectorField] = []
        meta: dict[str, str] = {}
        for key, spec in props.items():
            vf = self._vector_from_mapping(key, spec)
            if vf is not None:
                vectors.append(vf)
            elif key not in (ID_FIELD, SLOT_FIELD, EXTRA_FIELD, DOC_FIELD):
                meta[key] = _PORTABLE.get(spec.get("type", "object"), "json")
        body = {"size": 100, "query": {"match_all": {}}, "_source": list(meta) or False}
        hits = self._read(f"sampling {name!r}", "search", index=name, body=body)["hits"]["hits"]
        for key, kind in list(meta.items()):
            if kind != "json" and any(isinstance(h["_source"].get(key), list) for h in hits):
                meta[key] = f"list<{kind}>"
        return CollectionSchema(
            name=name,
            vectors=tuple(vectors),
            metadata=tuple(MetadataField(name=k, type=t) for k, t in meta.items()),  # type: ignore[arg-type]
            has_document=props.get(DOC_FIELD, {}).get("type") == "text",
            engine=self.engine,
            engine_settings={"described_from": "mapping", "foreign": ID_FIELD not in props},
        )

    def _schema(self, name: str) -> CollectionSchema:
        return self._schemas.get(name) or self.describe(name)

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        name = schema.name
        if self._read(f"looking up {name!r}", "exists", index=name):
            if if_exists == "fail":
                raise ConfigError(
                    f"{self.engine} index {name!r} already exists",
                    hint="pass --if-exists replace or reuse",
                )
            if if_exists == "reuse":
                self.describe(name)
                return
            self._call(f"deleting {name!r}", "delete", index=name)
        reserved = {ID_FIELD, SLOT_FIELD, EXTRA_FIELD, DOC_FIELD} | {v.name for v in schema.vectors}
        props: dict[str, Any] = {
            ID_FIELD: {"type": "keyword"},
            SLOT_FIELD: {"type": "long"},
            EXTRA_FIELD: {"type": "keyword", "index": False, "doc_values": False},
        }
        if schema.has_document:
            props[DOC_FIELD] = {"type": "text"}
        for v in schema.vectors:
            props[v.name] = self._vector_mapping(v)
        for m in schema.metadata:
            if m.name in reserved or "." in m.name:
                raise ConfigError(
                    f"metadata field {m.name!r} of {name!r} collides with a field vecmigrate "
                    f"uses in {self.engine} (or contains '.')",
                    hint="rename it with a mapping (--map)",
                )
            props[m.name] = (
                {"type": _FIELD_TYPE[m.type]}
                if m.type in _FIELD_TYPE
                else {"type": "keyword", "index": False, "doc_values": False}
            )
        stored = json.loads(schema.replace(engine=self.engine).to_json())
        body = {
            "settings": self._index_settings(),
            "mappings": {"dynamic": "strict", "_meta": {META_KEY: stored}, "properties": props},
        }
        self._call(f"creating {name!r}", "create", index=name, body=body)
        self._schemas[name] = schema

    def drop(self, name: str) -> None:
        if self._read(f"looking up {name!r}", "exists", index=name):
            self._call(f"deleting {name!r}", "delete", index=name)
        self._schemas.pop(name, None)

    def count(self, name: str, filter: Filter | None = None) -> int:
        node = self._filter(self._schema(name), filter)
        self._read(f"refreshing {name!r}", "refresh", index=name)
        got = self._read(f"counting {name!r}", "count", index=name, body={"query": query(node)})
        return int(got["count"])

    def finalize(self, name: str) -> None:
        # Searches and counts see only refreshed segments: make every write visible.
        self._read(f"refreshing {name!r}", "refresh", index=name)

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        schema = self._schema(name)
        total = self.count(name)
        if schema.engine_settings.get("foreign"):
            return [Partition(id="all", spec={"foreign": True}, estimated_rows=total)]
        # Slot ranges of a stable id hash: disjoint, covering, independent of any PIT.
        n = max(1, min(n, total // 100 + 1))
        bounds = [SLOTS * i // n for i in range(n + 1)]
        return [
            Partition(
                id=f"slots-{i}",
                spec={"lo": bounds[i], "hi": bounds[i + 1]},
                estimated_rows=total // n,
            )
            for i in range(n)
        ]

    def _to_batch(self, hits: list[dict[str, Any]], schema: CollectionSchema) -> pa.RecordBatch:
        n = len(hits)
        sources = [h.get("_source") or {} for h in hits]
        ids: list[Any] = [h["_id"] for h in hits]
        if schema.id_type is IdType.INT:
            ids = [int(i) for i in ids]
        vectors: dict[str, np.ndarray] = {}
        for v in schema.vectors:
            try:
                vectors[v.name] = np.asarray(
                    [s[v.name] for s in sources], dtype=np.float32
                ).reshape(n, v.dim)
            except (KeyError, ValueError):
                bad = next(
                    (h["_id"] for h, s in zip(hits, sources, strict=True) if v.name not in s),
                    None,
                )
                raise DataError(
                    "record has no vector (or one of the wrong size)",
                    collection=schema.name,
                    record_id=bad,
                    field=v.name,
                ) from None
        json_fields = {m.name for m in schema.metadata if m.type == "json"}
        metas: list[dict[str, Any]] = []
        for s in sources:
            row = {}
            for m in schema.metadata:
                value = s.get(m.name)
                if value is not None:
                    row[m.name] = json.loads(value) if m.name in json_fields else value
            if s.get(EXTRA_FIELD):
                row.update(json.loads(s[EXTRA_FIELD]))
            metas.append(row)
        docs = [s.get(DOC_FIELD) for s in sources] if schema.has_document else None
        return build_batch(schema, ids, vectors, documents=docs, metadata=metas)

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
        self._read(f"refreshing {name!r}", "refresh", index=name)
        pit = state.get("pit") if spec.get("foreign") and after else None
        pit = pit or self._read(f"opening a point in time on {name!r}", "open_pit", index=name)
        try:
            while True:
                body: dict[str, Any] = {
                    "size": batch_rows,
                    "query": flt,
                    "sort": sort,
                    "pit": {"id": pit, "keep_alive": "5m"},
                    "_source": self._source_param(),
                    "track_total_hits": False,
                }
                if after is not None:
                    body["search_after"] = after
                got = self._read(f"scanning {name!r}", "search", body=body)
                pit = got.get("pit_id", pit)
                hits = got["hits"]["hits"]
                if not hits:
                    return
                after = hits[-1]["sort"]
                token = {"after": after, "pit": pit} if spec.get("foreign") else {"after": after}
                yield self._to_batch(hits, schema), json.dumps(token)
                if len(hits) < batch_rows:
                    return
        finally:
            try:
                self._call(f"closing a point in time on {name!r}", "close_pit", id=pit)
            except (TransientError, TerminalError):
                pass  # it expires by itself after keep_alive

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        keys = [str(i) for i in ids]
        self._read(f"refreshing {name!r}", "refresh", index=name)
        body = {
            "size": len(keys),
            "query": {"ids": {"values": keys}},
            "_source": self._source_param(),
        }
        hits = self._read(f"fetching from {name!r}", "search", index=name, body=body)
        return self._to_batch(hits["hits"]["hits"], schema)

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        ids = batch.column("id").to_pylist()
        rows = metadata_rows(batch, schema)
        docs = batch.column("document").to_pylist() if "document" in batch.schema.names else None
        vecs = {v.name: vectors_to_numpy(batch.column(v.name)).tolist() for v in schema.vectors}
        fields = {m.name: m for m in schema.metadata}
        lines: list[str] = []
        for i, rid in enumerate(ids):
            src: dict[str, Any] = {ID_FIELD: str(rid), SLOT_FIELD: slot(rid)}
            if docs is not None and docs[i] is not None:
                src[DOC_FIELD] = docs[i]
            for vname, rows_v in vecs.items():
                src[vname] = rows_v[i]
            extra = {}
            for key, value in rows[i].items():
                f = fields.get(key)
                if f is not None and value_fits(value, f):
                    src[key] = encode_json(value) if f.type == "json" else value
                else:
                    extra[key] = value
            if extra:
                src[EXTRA_FIELD] = encode_json(extra)
            try:
                doc = json.dumps(src, ensure_ascii=False, allow_nan=False)
            except ValueError:
                raise DataError(
                    "NaN or infinite values cannot be indexed", collection=name, record_id=rid
                ) from None
            lines += [json.dumps({"index": {"_id": str(rid)}}), doc]
        self._bulk(name, lines, ids)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        if ids:
            lines = [json.dumps({"delete": {"_id": str(i)}}) for i in ids]
            self._bulk(name, lines, list(ids))

    def _bulk(self, name: str, lines: list[str], ids: list[Any]) -> None:
        """One ``_bulk`` request; item errors are inspected one by one."""
        got = self._call(
            f"bulk request to {name!r}", "bulk", index=name, body="\n".join(lines) + "\n"
        )
        if not got.get("errors"):
            return
        refused: tuple[Any, dict[str, Any]] | None = None
        for rid, item in zip(ids, got["items"], strict=True):
            action, result = next(iter(item.items()))
            status = int(result.get("status", 200))
            if status < 300 or (action == "delete" and status == 404):
                continue
            error = result.get("error") or {}
            if status in TRANSIENT_STATUS:  # e.g. a full write queue: resend the batch
                raise TransientError(
                    f"bulk request to {name!r}: {error.get('type', status)} for some items"
                )
            refused = refused or (rid, {"status": status, **error})
        if refused is not None:
            rid, error = refused
            reason = str(error.get("reason", ""))
            m = _PARSE_FIELD.search(reason)
            raise DataError(
                f"{self.engine} refused the record: {error.get('type')}: {reason}",
                collection=name,
                record_id=rid,
                field=(m.group(1) or m.group(2)) if m else None,
            )

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
        self._read(f"refreshing {name!r}", "refresh", index=name)
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
