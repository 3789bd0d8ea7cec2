"""Chroma's HTTP API (v2, as ``chromadb.HttpClient`` 1.x and the JS client call it) over
the proxy's collections.

Served: heartbeat, version, pre-flight checks, identity, the configured tenant and
database, collections (list, count, get by name or id, create/get-or-create of a served
collection), and per collection ``add``, ``upsert``, ``update``, ``delete`` (by ids and/or
``where``/``where_document``), ``get`` (ids, where, where_document, include, limit,
offset), ``query`` (query_embeddings, n_results, where, where_document, ids, include) and
``count``. Anything else is refused with Chroma's error shape naming the route.

Semantics kept from Chroma (checked against ``chroma run`` 1.5):

* ``add`` skips ids that exist; ``update`` skips ids that do not; ``upsert`` and
  ``update`` merge into an existing record: a vector or document not given is kept,
  metadata keys are merged and a key set to null is removed.
* ``where``: ``$ne``/``$nin`` also match records without the field; a condition on a
  field the collection does not have matches nothing (``$ne``/``$nin``: everything);
  ``$contains``/``$not_contains`` test list fields.
* Distances are Chroma's for the collection's space: ``l2`` squared euclidean,
  ``cosine`` 1 - cosine similarity, ``ip`` 1 - inner product. They are computed from the
  query and the vector of each returned record as the serving side holds it, because
  engines report other quantities (pgvector ``<->`` is the non-squared distance, LanceDB
  and Qdrant score differently): the engine ranks, the proxy reports the distance.

Not like Chroma: ``get`` by ids answers in the order asked (Chroma: its storage order);
``get`` without ids and ``query`` with ``ids`` or ``where_document`` read the collection
on the serving side once and evaluate filters exactly (fine for small collections, a
full scan for large ones); filters see the metadata fields the collection had when the
migration began.

While the phase sends every request to one Chroma server alone (source-only or
target-only on a ``chroma+http://`` side), the record calls are passed through to it as
they are, and answered exactly as the server answers (``chroma_forward``).
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from vecmigrate.errors import ConfigError
from vecmigrate.filters import Node, parse
from vecmigrate.model import CollectionSchema, Metric
from vecmigrate.proxy.app import (
    STATUS,
    ErrorKind,
    FastJSONResponse,
    Proxy,
    ProxyError,
    guarded,
    json_body,
    json_loads,
)
from vecmigrate.proxy.chroma_forward import ChromaForward
from vecmigrate.proxy.service import ProxyCollection, Record, RecordTest, check_dim, combine

API = "/api/v2"
VERSION = "1.0.0"
SPACE = {Metric.COSINE: "cosine", Metric.DOT: "ip", Metric.L2: "l2"}
_ERROR_NAMES: dict[ErrorKind, str] = {
    "invalid": "InvalidArgumentError",
    "unauthorized": "AuthorizationError",
    "not_found": "NotFoundError",
    "conflict": "ChromaError",
    "internal": "InternalError",
    "unsupported": "ChromaError",
    "unavailable": "InternalError",
    "timeout": "InternalError",
}
_INCLUDE = frozenset({"documents", "embeddings", "metadatas", "distances", "uris", "data"})
_GET_INCLUDE = ["metadatas", "documents"]
_QUERY_INCLUDE = ["metadatas", "documents", "distances"]
_COLLECTION_NS = uuid.UUID("6f1c51a2-3d43-4d35-9a1e-6d3b0f6e8a11")
MAX_BATCH = 5461  # what Chroma 1.x advertises


class ChromaDialect:
    """Chroma's v2 routes for one tenant and database."""

    name = "chroma"

    def __init__(
        self, proxy: Proxy, *, tenant: str = "default_tenant", database: str = "default_database"
    ) -> None:
        self.proxy = proxy
        self.tenant = tenant
        self.database = database
        for c in proxy.collections.values():
            if len(c.schema.vectors) != 1:
                raise ConfigError(
                    f"{c.name!r} has {len(c.schema.vectors)} vector fields; Chroma collections "
                    "have one"
                )
        self.ids = {
            name: str(uuid.uuid5(_COLLECTION_NS, f"{tenant}/{database}/{name}"))
            for name in proxy.collections
        }
        caps = [
            c.router.conns[side].capabilities.max_batch_rows
            for c in proxy.collections.values()
            for side in ("source", "target")
        ]
        self.max_batch = min([MAX_BATCH, *(n for n in caps if n)])
        self.forward = {
            name: ChromaForward(c, proxy.forwarded) for name, c in proxy.collections.items()
        }

    # -- Dialect ---------------------------------------------------------------------------
    def error(self, kind: ErrorKind, message: str) -> Response:
        """``{"error": "<ChromaErrorName>", "message": ...}`` as Chroma answers."""
        return FastJSONResponse(
            {"error": _ERROR_NAMES[kind], "message": message},
            status_code=STATUS[kind],
        )

    def client_key(self, request: Request) -> str | None:
        """Chroma's token auth: ``X-Chroma-Token`` or ``Authorization: Bearer``."""
        token = request.headers.get("x-chroma-token")
        if token:
            return token
        auth = request.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None

    def routes(self) -> list[BaseRoute]:
        """The Chroma routes served."""
        db = f"{API}/tenants/{{tenant}}/databases/{{database}}"
        col = f"{db}/collections/{{collection}}"
        # Starlette tries routes in order: the record calls first (POST only, so they
        # shadow no GET route), the rest in an order where no route shadows another.
        table: list[tuple[str, Callable[[Request], Any], str]] = [
            (f"{col}/query", self.query, "POST"),
            (f"{col}/upsert", self.upsert, "POST"),
            (f"{col}/get", self.get, "POST"),
            (f"{col}/add", self.add, "POST"),
            (f"{col}/update", self.update, "POST"),
            (f"{col}/delete", self.delete, "POST"),
            (API, self.heartbeat, "GET"),
            (f"{API}/heartbeat", self.heartbeat, "GET"),
            (f"{API}/version", self.version, "GET"),
            (f"{API}/pre-flight-checks", self.pre_flight, "GET"),
            (f"{API}/auth/identity", self.identity, "GET"),
            (f"{API}/tenants/{{tenant}}", self.get_tenant, "GET"),
            (f"{API}/tenants/{{tenant}}/databases", self.list_databases, "GET"),
            (db, self.get_database, "GET"),
            (f"{db}/collections", self.list_collections, "GET"),
            (f"{db}/collections", self.create_collection, "POST"),
            (f"{db}/collections_count", self.count_collections, "GET"),
            (f"{db}/collections/by-id/{{collection}}", self.get_collection, "GET"),
            (col, self.get_collection, "GET"),
            (f"{col}/count", self.count, "GET"),
        ]
        return [Route(path, guarded(self, fn), methods=[m]) for path, fn, m in table]

    # -- server, tenant, database ----------------------------------------------------------
    async def heartbeat(self, request: Request) -> Response:
        return FastJSONResponse({"nanosecond heartbeat": time.time_ns()})

    async def version(self, request: Request) -> Response:
        return FastJSONResponse(VERSION)

    async def pre_flight(self, request: Request) -> Response:
        return FastJSONResponse(
            {"max_batch_size": self.max_batch, "supports_base64_encoding": True}
        )

    async def identity(self, request: Request) -> Response:
        return FastJSONResponse(
            {"user_id": "", "tenant": self.tenant, "databases": [self.database]}
        )

    async def get_tenant(self, request: Request) -> Response:
        self._tenant(request)
        return FastJSONResponse({"name": self.tenant, "resource_name": None})

    async def list_databases(self, request: Request) -> Response:
        self._tenant(request)
        return FastJSONResponse([self._database_json()])

    async def get_database(self, request: Request) -> Response:
        self._scope(request)
        return FastJSONResponse(self._database_json())

    def _database_json(self) -> dict[str, Any]:
        return {"id": str(uuid.UUID(int=0)), "name": self.database, "tenant": self.tenant}

    def _tenant(self, request: Request) -> None:
        tenant = request.path_params["tenant"]
        if tenant != self.tenant:
            raise ProxyError("not_found", f"Tenant [{tenant}] not found")

    def _scope(self, request: Request) -> None:
        self._tenant(request)
        database = request.path_params["database"]
        if database != self.database:
            raise ProxyError(
                "not_found", f"Database [{database}] not found. Are you sure it exists?"
            )

    # -- collections -----------------------------------------------------------------------
    def _collection(self, request: Request) -> ProxyCollection:
        self._scope(request)
        wanted = request.path_params["collection"]
        for name, cid in self.ids.items():
            if wanted in (name, cid):
                return self.proxy.collections[name]
        raise ProxyError("not_found", f"Collection [{wanted}] does not exist")

    def collection_json(self, c: ProxyCollection) -> dict[str, Any]:
        """A collection as Chroma describes it (``CollectionModel.from_json``)."""
        v = c.vector
        params = v.index.params if v.index else {}
        hnsw = {
            "space": SPACE[v.metric],
            "ef_construction": params.get("ef_construction", 100),
            "ef_search": params.get("ef_search", 100),
            "max_neighbors": params.get("M", 16),
            "resize_factor": 1.2,
            "sync_threshold": 1000,
        }
        return {
            "id": self.ids[c.name],
            "name": c.name,
            "configuration_json": {
                "hnsw": hnsw,
                "spann": None,
                "embedding_function": {"type": "legacy"},
            },
            "schema": None,
            "metadata": None,
            "dimension": v.dim,
            "tenant": self.tenant,
            "database": self.database,
            "log_position": 0,
            "version": 0,
        }

    async def list_collections(self, request: Request) -> Response:
        self._scope(request)
        models = [self.collection_json(c) for c in self.proxy.collections.values()]
        offset = int(request.query_params.get("offset") or 0)
        limit = request.query_params.get("limit")
        end = offset + int(limit) if limit else None
        return FastJSONResponse(models[offset:end])

    async def count_collections(self, request: Request) -> Response:
        self._scope(request)
        return FastJSONResponse(len(self.proxy.collections))

    async def get_collection(self, request: Request) -> Response:
        return FastJSONResponse(self.collection_json(self._collection(request)))

    async def create_collection(self, request: Request) -> Response:
        self._scope(request)
        body = await json_body(request)
        name = body.get("name")
        found = self.proxy.collections.get(str(name))
        if found is None:
            raise ProxyError(
                "unsupported",
                f"the vecmigrate proxy serves the collection(s) "
                f"{', '.join(sorted(self.proxy.collections))} while they migrate; it does not "
                f"create {name!r}",
            )
        if not body.get("get_or_create"):
            raise ProxyError("conflict", f"Collection [{name}] already exists")
        return FastJSONResponse(self.collection_json(found))

    # -- records ---------------------------------------------------------------------------
    # Each record call first tries the pass-through (``chroma_forward``), which answers
    # while the phase sends every request to one Chroma server, on the same worker-pool
    # hop as the normal path it otherwise falls back to.
    async def count(self, request: Request) -> Response:
        c, key = self._collection(request), self.proxy.keys.key(request)
        return await self._read(c, "count", b"", lambda _: c.count(key=key))

    async def get(self, request: Request) -> Response:
        c, key = self._collection(request), self.proxy.keys.key(request)
        body = await request.body()
        return await self._read(c, "get", body, lambda parsed: get_records(c, parsed, key))

    async def query(self, request: Request) -> Response:
        c, key = self._collection(request), self.proxy.keys.key(request)
        body = await request.body()
        return await self._read(c, "query", body, lambda parsed: query_records(c, parsed, key))

    async def _read(
        self, c: ProxyCollection, op: str, body: bytes, normal: Callable[[Any], Any]
    ) -> Response:
        forward = self.forward[c.name]

        def answer() -> Response:
            passed = forward.read(op, body)
            if passed is not None:
                return passed
            return FastJSONResponse(normal(json_loads(body)))

        return await self.proxy.run(answer)

    async def add(self, request: Request) -> Response:
        return await self._write(request, "add", _written("add"), status=201)

    async def upsert(self, request: Request) -> Response:
        return await self._write(request, "upsert", _written("upsert"))

    async def update(self, request: Request) -> Response:
        return await self._write(request, "update", _written("update"))

    async def delete(self, request: Request) -> Response:
        return await self._write(
            request, "delete", lambda c, parsed: {"deleted": delete_records(c, parsed)}
        )

    async def _write(
        self,
        request: Request,
        op: str,
        normal: Callable[[ProxyCollection, Any], Any],
        status: int = 200,
    ) -> Response:
        c = self._collection(request)
        body = await request.body()
        forward = self.forward[c.name]

        def answer() -> Response:
            parsed = json_loads(body)
            passed = forward.write(op, body, parsed)
            if passed is not None:
                return passed
            return FastJSONResponse(normal(c, parsed), status_code=status)

        return await self.proxy.run(answer)


def _written(mode: str) -> Callable[[ProxyCollection, Any], Any]:
    """The normal path of an add, upsert or update: Chroma answers them with ``{}``."""

    def run(c: ProxyCollection, body: Any) -> Any:
        write_records(c, body, mode)
        return {}

    return run


# -- request bodies ------------------------------------------------------------------------
def _list(body: Mapping[str, Any], name: str) -> list[Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise ProxyError("invalid", f"{name} must be a list, got {type(value).__name__}")
    return value


def embeddings(raw: list[Any], dim: int) -> np.ndarray:
    """Vectors as Chroma clients send them: lists of numbers, or base64 little-endian
    float32 (when the server says ``supports_base64_encoding``)."""
    rows: list[np.ndarray] = []
    for item in raw:
        if isinstance(item, str):
            try:
                rows.append(np.frombuffer(base64.b64decode(item), dtype="<f4"))
            except ValueError as exc:
                raise ProxyError("invalid", f"an embedding is not base64 float32: {exc}") from None
        else:
            rows.append(np.asarray(item, dtype=np.float32).reshape(-1))
    vectors = np.vstack(rows).astype(np.float32) if rows else np.empty((0, dim), np.float32)
    if any(r.shape[0] != dim for r in rows):
        bad = next(r.shape[0] for r in rows if r.shape[0] != dim)
        raise ProxyError(
            "invalid", f"Collection expecting embedding with dimension of {dim}, got {bad}"
        )
    return vectors


def include_of(body: Mapping[str, Any], default: list[str]) -> list[str]:
    """The ``include`` list, checked."""
    include = body.get("include")
    if include is None:
        return list(default)
    bad = [i for i in include if i not in _INCLUDE]
    if bad:
        raise ProxyError("invalid", f"unknown include value(s) {bad}")
    return [str(i) for i in include if i != "data"]


def portable_where(where: Any, schema: CollectionSchema) -> dict[str, Any] | bool:
    """A Chroma ``where`` as a portable filter with Chroma's semantics, or a constant
    (True: matches every record, False: none) when a part names an unknown field."""
    if not isinstance(where, dict) or not where:
        raise ProxyError("invalid", f"where must be a non-empty object, got {where!r}")
    parts: list[dict[str, Any] | bool] = []
    for key, value in where.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise ProxyError("invalid", f"{key} takes a non-empty list")
            parts.append(combine(key, [portable_where(v, schema) for v in value]))
        elif key.startswith("$"):
            raise ProxyError("invalid", f"unknown where operator {key!r}")
        else:
            ops = value if isinstance(value, dict) else {"$eq": value}
            if not ops:
                raise ProxyError("invalid", f"where on {key!r} has no operator")
            parts += [_condition(schema, key, op, operand) for op, operand in ops.items()]
    return combine("$and", parts)


def _condition(schema: CollectionSchema, name: str, op: str, value: Any) -> dict[str, Any] | bool:
    f = schema.metadata_field(name)
    negated = op in ("$ne", "$nin", "$not_contains")
    if f is None:  # Chroma: no record has the field
        return negated
    if op in ("$contains", "$not_contains"):
        if not f.type.startswith("list<"):
            raise ProxyError("invalid", f"{op} on {name!r} needs a list field (it is {f.type})")
        cond: dict[str, Any] = {name: {"$eq": value}}
        return {"$not": cond} if op == "$not_contains" else cond
    if op in ("$ne", "$nin"):  # Chroma: also records without the field
        return {"$or": [{name: {op: value}}, {name: {"$exists": False}}]}
    if op in ("$eq", "$gt", "$gte", "$lt", "$lte", "$in"):
        return {name: {op: value}}
    raise ProxyError("invalid", f"unknown where operator {op!r} on {name!r}")


def document_test(where_document: Any) -> RecordTest:
    """A Chroma ``where_document`` as a test on a record's document."""
    if not isinstance(where_document, dict) or len(where_document) != 1:
        raise ProxyError("invalid", "where_document must be an object with one operator")
    ((op, value),) = where_document.items()
    if op in ("$and", "$or"):
        if not isinstance(value, list) or not value:
            raise ProxyError("invalid", f"{op} takes a non-empty list")
        tests = [document_test(v) for v in value]
        joined = all if op == "$and" else any
        return lambda r: joined(t(r) for t in tests)
    if op in ("$contains", "$not_contains"):
        text = str(value)
        if op == "$contains":
            return lambda r: r.document is not None and text in r.document
        return lambda r: r.document is None or text not in r.document
    if op in ("$regex", "$not_regex"):
        try:
            pattern = re.compile(str(value))
        except re.error as exc:
            raise ProxyError("invalid", f"bad $regex {value!r}: {exc}") from None
        if op == "$regex":
            return lambda r: r.document is not None and pattern.search(r.document) is not None
        return lambda r: r.document is None or pattern.search(r.document) is None
    raise ProxyError("invalid", f"unknown where_document operator {op!r}")


def _filters(
    c: ProxyCollection, body: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, Node | None, RecordTest | None, bool]:
    """(portable filter, its parsed node, document test, matches nothing)."""
    where = body.get("where")
    portable: dict[str, Any] | bool | None = None
    if where:
        portable = portable_where(where, c.schema)
    if portable is False:
        return None, None, None, True
    flt = portable if isinstance(portable, dict) else None
    node = parse(flt, c.schema) if flt else None
    wd = body.get("where_document")
    return flt, node, document_test(wd) if wd else None, False


# -- operations (run on the worker pool) ---------------------------------------------------
def write_records(c: ProxyCollection, body: Mapping[str, Any], mode: str) -> None:
    """``add`` / ``upsert`` / ``update`` with Chroma's semantics (see the module doc)."""
    raw_ids = _list(body, "ids") or []
    ids = [c.typed_id(i) for i in raw_ids]
    n = len(ids)
    if len(set(ids)) != n:
        dupes = sorted({str(i) for i in ids if ids.count(i) > 1})
        raise ProxyError("invalid", f"Expected IDs to be unique, found duplicates of: {dupes}")
    raw_vectors = _list(body, "embeddings")
    vectors = embeddings(raw_vectors, c.vector.dim) if raw_vectors is not None else None
    docs = _list(body, "documents")
    metas = _list(body, "metadatas")
    if body.get("uris") is not None and any(u is not None for u in body["uris"]):
        raise ProxyError("unsupported", "the vecmigrate proxy does not store uris")
    for name, column in (("embeddings", vectors), ("documents", docs), ("metadatas", metas)):
        if column is not None and len(column) != n:
            raise ProxyError("invalid", f"{len(column)} {name} for {n} ids")
    if mode != "update" and vectors is None:
        raise ProxyError("invalid", f"{mode} needs embeddings (the proxy does not embed text)")
    with c.writing(ids):
        state = c.phase()
        if (
            mode == "upsert"
            and vectors is not None
            and metas is not None
            and whole_parts(c, docs, metas)
            and c.merges_upserts(state)
        ):
            # Every part given and the primary merges metadata keys itself: what merged()
            # would make from the stored record is what the engine makes of the write, so
            # the read before it (a round trip) is skipped.
            c.upsert_unread(
                [
                    Record(rid, vectors[i], docs[i] if docs is not None else None, dict(metas[i]))
                    for i, rid in enumerate(ids)
                ],
                state,
            )
            return
        old = c.current(ids)
        out: list[Record] = []
        for i, rid in enumerate(ids):
            before = old.get(rid)
            if (mode == "add" and before is not None) or (mode == "update" and before is None):
                continue
            out.append(
                merged(
                    before,
                    rid,
                    vectors[i] if vectors is not None else None,
                    docs[i] if docs is not None else None,
                    metas[i] if metas is not None else None,
                )
            )
        c.upsert(out)


def whole_parts(c: ProxyCollection, docs: list[Any] | None, metas: list[Any]) -> bool:
    """Whether an upsert gives every part of every record: a document (where the
    collection stores documents) and metadata with at least one key and no null (a null
    removes a key, which only a read-modify-write does)."""
    if c.schema.has_document and (docs is None or any(d is None for d in docs)):
        return False
    return all(
        isinstance(m, dict) and bool(m) and all(v is not None for v in m.values()) for m in metas
    )


def merged(
    before: Record | None,
    rid: Any,
    vector: np.ndarray | None,
    document: str | None,
    metadata: Mapping[str, Any] | None,
) -> Record:
    """A record after a Chroma write: given parts replace, metadata merges (null removes)."""
    meta = dict(before.metadata) if before is not None else {}
    for k, v in (metadata or {}).items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    if before is None:
        return Record(rid, vector, document, meta)
    return Record(
        rid,
        vector if vector is not None else before.vector,
        document if document is not None else before.document,
        meta,
    )


def delete_records(c: ProxyCollection, body: Mapping[str, Any]) -> int:
    """``delete`` by ids and/or filters; the number of records deleted."""
    raw_ids = _list(body, "ids")
    _, node, test, nothing = _filters(c, body)
    if raw_ids is None and node is None and test is None and not nothing:
        raise ProxyError("invalid", "delete needs ids, where or where_document")
    if nothing:
        return 0
    if raw_ids is not None:
        ids = [c.typed_id(i) for i in raw_ids]
    else:
        ids = [r.id for r in c.scan(key=None, where=node, test=test)]
    limit = body.get("limit")
    with c.writing(ids):
        doomed = [r.id for r in c.fetch(ids, key=None, where=node, test=test)]
        if limit is not None:
            doomed = doomed[: int(limit)]
        c.delete(doomed)
    return len(doomed)


def get_records(c: ProxyCollection, body: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    """``get``: by ids (in the order asked) or by filters, with offset and limit."""
    include = include_of(body, _GET_INCLUDE)
    raw_ids = _list(body, "ids")
    _, node, test, nothing = _filters(c, body)
    offset = int(body.get("offset") or 0)
    limit = body.get("limit")
    stop = offset + int(limit) if limit is not None else None
    records: list[Record] = []
    if not nothing:
        if raw_ids is not None:
            records = c.fetch(raw_ids, key=key, where=node, test=test)
        else:
            records = c.scan(key=key, where=node, test=test, stop_after=stop)
    records = records[offset:stop]
    return {
        "ids": [str(r.id) for r in records],
        "embeddings": _vectors(records) if "embeddings" in include else None,
        "documents": [r.document for r in records] if "documents" in include else None,
        "uris": [None] * len(records) if "uris" in include else None,
        "metadatas": [r.metadata or None for r in records] if "metadatas" in include else None,
        "include": include,
    }


def query_records(c: ProxyCollection, body: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    """``query``: top ``n_results`` per query embedding, nearest first."""
    include = include_of(body, _QUERY_INCLUDE)
    raw = _list(body, "query_embeddings")
    if not raw:
        raise ProxyError("invalid", "query needs query_embeddings (the proxy does not embed)")
    vectors = embeddings(raw, c.vector.dim)
    check_dim(vectors, c.vector.dim)
    n = int(body.get("n_results") or 10)
    if n < 1:
        raise ProxyError("invalid", f"n_results must be positive, got {n}")
    flt, node, test, nothing = _filters(c, body)
    raw_ids = _list(body, "ids")
    space = SPACE[c.vector.metric]
    if nothing:
        return _query_response([([], []) for _ in vectors], [], [], [], None, include)
    if raw_ids is not None or test is not None:
        # Restricted to ids or to documents: the candidates are read and ranked exactly.
        if raw_ids is not None:
            pool = c.fetch(raw_ids, key=key, where=node, test=test)
        else:
            pool = c.scan(key=key, where=node, test=test)
        pool = [r for r in pool if r.vector is not None]
        matrix = np.vstack([r.vector for r in pool if r.vector is not None]) if pool else None
        every = list(range(len(pool)))
        ranked = [_ranked(matrix, every, q, space, n) for q in vectors]
        return _query_response(
            ranked,
            [str(r.id) for r in pool],
            [r.document for r in pool] if "documents" in include else [],
            [r.metadata or None for r in pool] if "metadatas" in include else [],
            matrix,
            include,
        )
    hits, cols = c.search_columns(vectors, n, filter=flt, key=key)
    ranked = [_ranked(cols.vectors, row, q, space, n) for row, q in zip(hits, vectors, strict=True)]
    return _query_response(
        ranked,
        [str(i) for i in cols.ids],
        cols.documents() if "documents" in include else [],
        [m or None for m in cols.metadatas()] if "metadatas" in include else [],
        cols.vectors,
        include,
    )


def _query_response(
    ranked: list[tuple[list[int], list[float]]],
    ids: list[str],
    docs: list[str | None],
    metas: list[dict[str, Any] | None],
    matrix: np.ndarray | None,
    include: list[str],
) -> dict[str, Any]:
    """Chroma's query response from rows ranked per query and the rows' columns (a column
    not included may be empty)."""
    return {
        "ids": [[ids[i] for i in rows] for rows, _ in ranked],
        "embeddings": [
            [matrix[i].tolist() for i in rows] if matrix is not None else [] for rows, _ in ranked
        ]
        if "embeddings" in include
        else None,
        "documents": [[docs[i] for i in rows] for rows, _ in ranked]
        if "documents" in include
        else None,
        "uris": [[None for _ in rows] for rows, _ in ranked] if "uris" in include else None,
        "metadatas": [[metas[i] for i in rows] for rows, _ in ranked]
        if "metadatas" in include
        else None,
        "distances": [d for _, d in ranked] if "distances" in include else None,
        "include": include,
    }


def _ranked(
    matrix: np.ndarray | None, rows: list[int], q: np.ndarray, space: str, n: int
) -> tuple[list[int], list[float]]:
    """The ``n`` nearest of ``rows`` (of ``matrix``) by Chroma distance, with their
    distances (stable: the engine's order on ties)."""
    if matrix is None or not rows:
        return [], []
    d = distances(q, matrix[rows], space)
    order = np.argsort(d, kind="stable")[:n]
    return [rows[i] for i in order], d[order].tolist()


def distances(q: np.ndarray, matrix: np.ndarray, space: str) -> np.ndarray:
    """Chroma's distance of each row of ``matrix`` to ``q`` in ``space`` (float32, as
    Chroma computes it): l2 = squared euclidean, cosine = 1 - cos, ip = 1 - dot."""
    q32 = np.asarray(q, dtype=np.float32)
    m32 = np.asarray(matrix, dtype=np.float32)
    if space == "l2":
        diff = m32 - q32[None, :]
        out: np.ndarray = np.einsum("ij,ij->i", diff, diff)
        return out
    if space == "cosine":
        qn = float(np.linalg.norm(q32)) or 1.0
        norms = np.linalg.norm(m32, axis=1)
        norms[norms == 0] = 1.0
        cos: np.ndarray = 1.0 - (m32 @ q32) / (norms * qn)
        return cos.astype(np.float32)
    ip: np.ndarray = (1.0 - m32 @ q32).astype(np.float32)
    return ip


def _vectors(records: list[Record]) -> list[list[float] | None]:
    return [r.vector.tolist() if r.vector is not None else None for r in records]
