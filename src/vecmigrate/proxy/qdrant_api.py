"""Qdrant's REST API (as ``qdrant-client`` calls it with ``prefer_grpc=False``) over the
proxy's collections.

Served: ``GET /`` (version), collections (list, info, exists; ``create`` of a served
collection answers "already exists"; ``PUT .../index`` is acknowledged and ignored: the
engines behind the proxy filter without it), and per collection points ``upsert``
(``points`` or ``batch``), ``delete`` (ids or filter), ``retrieve`` (``POST .../points``,
``GET .../points/{id}``), ``scroll``, ``count``, ``search``, ``search/batch``, ``query``,
``query/batch``, payload ``set``/``overwrite``/``delete``/``clear`` and ``update
vectors``. Anything else is refused with Qdrant's error shape naming the route.

* Ids are Qdrant's: unsigned integers, or UUIDs (written in their canonical form).
* The payload is the record's metadata; a collection with documents shows its document
  under the payload key ``document``, and a ``document`` key written becomes it.
* Filters (``must``/``should``/``must_not``, ``match`` value/any/except, ``range``,
  ``is_empty``, ``has_id`` at the top of ``must``) become portable filters. A condition on
  a field the collection does not have matches nothing. Full-text, geo, ``values_count``,
  ``is_null``, ``nested`` and ``min_should`` are refused, naming the condition.
* Scores are Qdrant's for the collection's distance, computed from the query and each
  returned record's vector: ``Cosine`` the cosine similarity, ``Dot`` the inner product,
  ``Euclid`` the euclidean distance (ascending). ``score_threshold`` applies to them.
* ``scroll`` pages in point-id order and reads the serving side once per page: fine for
  thousands of points, slow for millions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vecmigrate.errors import ConfigError
from vecmigrate.filters import Node, parse
from vecmigrate.model import CollectionSchema, IdType, Metric
from vecmigrate.proxy.app import STATUS, ErrorKind, Proxy, ProxyError, guarded, json_body
from vecmigrate.proxy.service import ProxyCollection, Record, combine

DOC_KEY = "document"
DISTANCE = {Metric.COSINE: "Cosine", Metric.DOT: "Dot", Metric.L2: "Euclid"}
VERSION = "1.15.0"
_OK: dict[str, Any] = {"operation_id": 0, "status": "completed"}

Filter = dict[str, Any] | bool


class QdrantDialect:
    """Qdrant's REST routes."""

    name = "qdrant"

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        for c in proxy.collections.values():
            if len(c.schema.vectors) != 1:
                raise ConfigError(
                    f"{c.name!r} has {len(c.schema.vectors)} vector fields; the proxy serves "
                    "collections with one"
                )

    # -- Dialect ---------------------------------------------------------------------------
    def error(self, kind: ErrorKind, message: str) -> Response:
        """``{"status": {"error": ...}, "time": 0}`` as Qdrant answers."""
        prefix = {"not_found": "Not found: ", "invalid": "Wrong input: "}.get(kind, "")
        return JSONResponse(
            {"status": {"error": prefix + message}, "time": 0.0}, status_code=STATUS[kind]
        )

    def client_key(self, request: Request) -> str | None:
        """Qdrant's ``api-key`` header, or ``Authorization: Bearer``."""
        key = request.headers.get("api-key")
        if key:
            return key
        auth = request.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None

    def routes(self) -> list[BaseRoute]:
        """The Qdrant routes served."""
        col = "/collections/{collection}"
        pts = f"{col}/points"
        table: list[tuple[str, Callable[[Request], Any], str]] = [
            ("/", self.root, "GET"),
            ("/collections", self.list_collections, "GET"),
            (col, self.get_collection, "GET"),
            (col, self.create_collection, "PUT"),
            (f"{col}/exists", self.exists, "GET"),
            (f"{col}/index", self.create_index, "PUT"),
            (pts, self.upsert, "PUT"),
            (pts, self.retrieve, "POST"),
            (f"{pts}/delete", self.delete, "POST"),
            (f"{pts}/scroll", self.scroll, "POST"),
            (f"{pts}/count", self.count, "POST"),
            (f"{pts}/search", self.search, "POST"),
            (f"{pts}/search/batch", self.search_batch, "POST"),
            (f"{pts}/query", self.query, "POST"),
            (f"{pts}/query/batch", self.query_batch, "POST"),
            (f"{pts}/payload", self.set_payload, "POST"),
            (f"{pts}/payload", self.overwrite_payload, "PUT"),
            (f"{pts}/payload/delete", self.delete_payload, "POST"),
            (f"{pts}/payload/clear", self.clear_payload, "POST"),
            (f"{pts}/vectors", self.update_vectors, "PUT"),
            (pts + "/{point}", self.get_point, "GET"),
        ]
        return [Route(path, guarded(self, fn), methods=[m]) for path, fn, m in table]

    # -- helpers ---------------------------------------------------------------------------
    def _collection(self, request: Request) -> ProxyCollection:
        return self.proxy.collection(request.path_params["collection"])

    @staticmethod
    def _ok(result: Any, started: float) -> Response:
        return JSONResponse(
            {"result": result, "status": "ok", "time": round(time.perf_counter() - started, 6)}
        )

    async def _run(
        self, request: Request, fn: Callable[[ProxyCollection, Mapping[str, Any], str | None], Any]
    ) -> Response:
        started = time.perf_counter()
        c, key = self._collection(request), self.proxy.keys.key(request)
        body = await json_body(request)
        if not isinstance(body, dict):
            raise ProxyError("invalid", "the request body must be a JSON object")
        return self._ok(await self.proxy.run(fn, c, body, key), started)

    # -- server and collections ------------------------------------------------------------
    async def root(self, request: Request) -> Response:
        agent = request.headers.get("user-agent", "")
        version = VERSION
        if agent.startswith("python-client/"):  # answer as the version the client expects
            version = agent.split("/", 1)[1].split(" ", 1)[0]
        return JSONResponse({"title": "qdrant - vector search engine", "version": version})

    async def list_collections(self, request: Request) -> Response:
        names = [{"name": n} for n in self.proxy.collections]
        return self._ok({"collections": names}, time.perf_counter())

    async def exists(self, request: Request) -> Response:
        name = request.path_params["collection"]
        return self._ok({"exists": name in self.proxy.collections}, time.perf_counter())

    async def get_collection(self, request: Request) -> Response:
        started = time.perf_counter()
        c = self._collection(request)
        count = await self.proxy.run(lambda: c.count(key=None))
        return self._ok(collection_info(c, count), started)

    async def create_collection(self, request: Request) -> Response:
        name = request.path_params["collection"]
        if name in self.proxy.collections:
            raise ProxyError("invalid", f"Collection `{name}` already exists!")
        raise ProxyError(
            "unsupported",
            f"the vecmigrate proxy serves {', '.join(sorted(self.proxy.collections))} while "
            f"they migrate; it does not create {name!r}",
        )

    async def create_index(self, request: Request) -> Response:
        self._collection(request)
        return self._ok(_OK, time.perf_counter())

    # -- points ----------------------------------------------------------------------------
    async def upsert(self, request: Request) -> Response:
        return await self._run(request, upsert_points)

    async def delete(self, request: Request) -> Response:
        return await self._run(request, delete_points)

    async def retrieve(self, request: Request) -> Response:
        return await self._run(request, retrieve_points)

    async def get_point(self, request: Request) -> Response:
        started = time.perf_counter()
        c, key = self._collection(request), self.proxy.keys.key(request)
        raw = request.path_params["point"]
        pid: Any = int(raw) if raw.isdigit() else raw
        body = {"ids": [pid], "with_payload": True, "with_vector": True}
        found = await self.proxy.run(retrieve_points, c, body, key)
        if not found:
            raise ProxyError("not_found", f"Point with id {raw} does not exists!")
        return self._ok(found[0], started)

    async def scroll(self, request: Request) -> Response:
        return await self._run(request, scroll_points)

    async def count(self, request: Request) -> Response:
        return await self._run(request, count_points)

    async def search(self, request: Request) -> Response:
        return await self._run(request, search_points)

    async def search_batch(self, request: Request) -> Response:
        return await self._run(
            request,
            lambda c, body, key: [search_points(c, s, key) for s in body.get("searches") or []],
        )

    async def query(self, request: Request) -> Response:
        return await self._run(request, query_points)

    async def query_batch(self, request: Request) -> Response:
        return await self._run(
            request,
            lambda c, body, key: [query_points(c, s, key) for s in body.get("searches") or []],
        )

    async def set_payload(self, request: Request) -> Response:
        return await self._run(request, lambda c, b, _: change_payload(c, b, "set"))

    async def overwrite_payload(self, request: Request) -> Response:
        return await self._run(request, lambda c, b, _: change_payload(c, b, "overwrite"))

    async def delete_payload(self, request: Request) -> Response:
        return await self._run(request, lambda c, b, _: change_payload(c, b, "delete"))

    async def clear_payload(self, request: Request) -> Response:
        return await self._run(request, lambda c, b, _: change_payload(c, b, "clear"))

    async def update_vectors(self, request: Request) -> Response:
        return await self._run(request, update_vectors)


def collection_info(c: ProxyCollection, count: int) -> dict[str, Any]:
    """``CollectionInfo`` as Qdrant describes a collection."""
    v = c.vector
    params = v.index.params if v.index else {}
    vector = {"size": v.dim, "distance": DISTANCE[v.metric]}
    return {
        "status": "green",
        "optimizer_status": "ok",
        "indexed_vectors_count": count,
        "points_count": count,
        "segments_count": 1,
        "config": {
            "params": {
                "vectors": vector if _unnamed(c.schema) else {v.name: vector},
                "shard_number": 1,
                "replication_factor": 1,
                "write_consistency_factor": 1,
                "on_disk_payload": True,
            },
            "hnsw_config": {
                "m": int(params.get("M", 16)),
                "ef_construct": int(params.get("ef_construction", 100)),
                "full_scan_threshold": 10000,
                "max_indexing_threads": 0,
                "on_disk": False,
            },
            "optimizer_config": {
                "deleted_threshold": 0.2,
                "vacuum_min_vector_number": 1000,
                "default_segment_number": 0,
                "max_segment_size": None,
                "memmap_threshold": None,
                "indexing_threshold": 20000,
                "flush_interval_sec": 5,
                "max_optimization_threads": None,
            },
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
            "quantization_config": None,
        },
        "payload_schema": {},
    }


def _unnamed(schema: CollectionSchema) -> bool:
    return schema.vector.name == "vector"


# -- ids, vectors, payloads ----------------------------------------------------------------
def point_id(c: ProxyCollection, raw: Any) -> Any:
    """A client's point id in the collection's id type (UUIDs in canonical form)."""
    if c.schema.id_type is IdType.INT:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ProxyError("invalid", f"point ids of {c.name!r} are integers, got {raw!r}")
        return c.typed_id(raw)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    try:
        return str(uuid.UUID(str(raw)))
    except ValueError:
        raise ProxyError(
            "invalid", f"a point id is an unsigned integer or a UUID: {raw!r}"
        ) from None


def _out_id(c: ProxyCollection, rid: Any) -> Any:
    if c.schema.id_type is IdType.INT:
        return int(rid)
    text = str(rid)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ProxyError(
            "internal",
            f"record {text!r} of {c.name!r} has an id Qdrant clients cannot hold (not an "
            "unsigned integer or a UUID)",
        ) from None


def _vector(c: ProxyCollection, raw: Any, what: str = "vector") -> np.ndarray:
    v = c.vector
    if isinstance(raw, dict):  # named vectors: {"name": [...]}
        if v.name not in raw or len(raw) != 1:
            raise ProxyError("invalid", f"{what}: {c.name!r} has the one vector {v.name!r}")
        raw = raw[v.name]
    try:
        out = np.asarray(raw, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise ProxyError("invalid", f"{what} is not a dense vector") from None
    if out.shape[0] != v.dim:
        raise ProxyError(
            "invalid", f"Vector dimension error: expected dim: {v.dim}, got {out.shape[0]}"
        )
    return out


def _from_payload(
    c: ProxyCollection, payload: Mapping[str, Any] | None
) -> tuple[str | None, dict[str, Any]]:
    meta = dict(payload or {})
    doc = meta.pop(DOC_KEY, None) if c.schema.has_document else None
    if doc is not None and not isinstance(doc, str):
        raise ProxyError("invalid", f"payload {DOC_KEY!r} of {c.name!r} holds its text document")
    return doc, {k: v for k, v in meta.items() if v is not None}


def _payload(c: ProxyCollection, r: Record, selector: Any) -> dict[str, Any] | None:
    if selector is None or selector is False:
        return None
    payload = dict(r.metadata)
    if c.schema.has_document and r.document is not None:
        payload[DOC_KEY] = r.document
    if selector is True:
        return payload
    if isinstance(selector, list):
        return {k: v for k, v in payload.items() if k in selector}
    if isinstance(selector, dict) and "include" in selector:
        return {k: v for k, v in payload.items() if k in selector["include"]}
    if isinstance(selector, dict) and "exclude" in selector:
        return {k: v for k, v in payload.items() if k not in selector["exclude"]}
    raise ProxyError("invalid", f"with_payload {selector!r} is not understood")


def _vector_out(c: ProxyCollection, r: Record, selector: Any) -> Any:
    if not selector or r.vector is None:
        return None
    if isinstance(selector, list) and c.vector.name not in selector:
        return None
    values = r.vector.tolist()
    return values if _unnamed(c.schema) else {c.vector.name: values}


def _record_json(
    c: ProxyCollection, r: Record, with_payload: Any, with_vector: Any
) -> dict[str, Any]:
    return {
        "id": _out_id(c, r.id),
        "payload": _payload(c, r, with_payload),
        "vector": _vector_out(c, r, with_vector),
        "shard_key": None,
        "order_value": None,
    }


# -- filters -------------------------------------------------------------------------------
def portable_filter(flt: Any, schema: CollectionSchema) -> tuple[Filter, list[Any] | None]:
    """A Qdrant filter as (portable filter or constant, ids of a top-level ``has_id``)."""
    if flt is None:
        return True, None
    if not isinstance(flt, dict):
        raise ProxyError("invalid", f"a filter is an object, got {flt!r}")
    if flt.get("min_should"):
        raise ProxyError("unsupported", "min_should filters are not served by the proxy")
    ids: list[Any] | None = None
    parts: list[Filter] = []
    for cond in _conditions(flt.get("must")):
        if isinstance(cond, dict) and set(cond) == {"has_id"}:
            got = list(cond["has_id"])
            ids = got if ids is None else [i for i in ids if i in got]
            continue
        parts.append(_condition(cond, schema))
    should = _conditions(flt.get("should"))
    if should:
        parts.append(combine("$or", [_condition(x, schema) for x in should]))
    must_not = _conditions(flt.get("must_not"))
    if must_not:
        parts.append(_negate(combine("$or", [_condition(x, schema) for x in must_not])))
    return combine("$and", parts), ids


def _conditions(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _negate(f: Filter) -> Filter:
    return (not f) if isinstance(f, bool) else {"$not": f}


def _condition(cond: Any, schema: CollectionSchema) -> Filter:
    if not isinstance(cond, dict):
        raise ProxyError("invalid", f"a filter condition is an object, got {cond!r}")
    if cond.keys() & {"must", "should", "must_not", "min_should"}:
        inner, ids = portable_filter(cond, schema)
        if ids is not None:
            raise ProxyError("unsupported", "has_id is served at the top level of must only")
        return inner
    if "is_empty" in cond:
        name = cond["is_empty"].get("key")
        return True if schema.metadata_field(name) is None else {name: {"$exists": False}}
    if "key" not in cond:
        kind = next(iter(cond), "?")
        raise ProxyError("unsupported", f"filter condition {kind!r} is not served by the proxy")
    name = cond["key"]
    unknown = schema.metadata_field(name) is None
    if "match" in cond and cond["match"] is not None:
        match = cond["match"]
        if "value" in match:
            return False if unknown else {name: {"$eq": match["value"]}}
        if "any" in match:
            return False if unknown else {name: {"$in": list(match["any"])}}
        if "except" in match:
            return False if unknown else {name: {"$nin": list(match["except"])}}
        raise ProxyError("unsupported", f"match {sorted(match)} on {name!r} is not served")
    if "range" in cond and cond["range"] is not None:
        ops = {f"${k}": v for k, v in cond["range"].items() if v is not None}
        if not ops or set(ops) - {"$gt", "$gte", "$lt", "$lte"}:
            raise ProxyError("unsupported", f"range {cond['range']!r} on {name!r}")
        return False if unknown else {name: ops}
    other = sorted(k for k, v in cond.items() if k != "key" and v is not None)
    raise ProxyError("unsupported", f"condition {other} on {name!r} is not served by the proxy")


def _selected(
    c: ProxyCollection, body: Mapping[str, Any], key: str | None, filter_key: str = "filter"
) -> tuple[Filter, Node | None, list[Any] | None]:
    flt, ids = portable_filter(body.get(filter_key), c.schema)
    node = parse(flt, c.schema) if isinstance(flt, dict) else None
    return flt, node, [point_id(c, i) for i in ids] if ids is not None else None


# -- operations (run on the worker pool) ---------------------------------------------------
def upsert_points(c: ProxyCollection, body: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    """``PUT .../points``: whole points replace (Qdrant's upsert)."""
    records: list[Record] = []
    if "batch" in body:
        b = body["batch"]
        ids = b.get("ids") or []
        vectors = b.get("vectors")
        if isinstance(vectors, dict):
            vectors = vectors.get(c.vector.name)
        payloads = b.get("payloads") or [None] * len(ids)
        if vectors is None or len(vectors) != len(ids) or len(payloads) != len(ids):
            raise ProxyError("invalid", "batch needs one vector (and payload) per id")
        rows = list(zip(ids, vectors, payloads, strict=True))
    else:
        points = body.get("points") or []
        rows = [(p.get("id"), p.get("vector"), p.get("payload")) for p in points]
    for raw_id, raw_vector, payload in rows:
        doc, meta = _from_payload(c, payload)
        records.append(Record(point_id(c, raw_id), _vector(c, raw_vector), doc, meta))
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        last = {r.id: r for r in records}  # Qdrant applies them in order: the last wins
        records = list(last.values())
    with c.writing(ids):
        c.upsert(records)
    return _OK


def _target_ids(c: ProxyCollection, body: Mapping[str, Any]) -> list[Any]:
    """The ids a points selector names: ``points`` (ids), or ``filter``."""
    if body.get("points") is not None:
        return [point_id(c, i) for i in body["points"]]
    if body.get("filter") is None:
        raise ProxyError("invalid", "give points (ids) or a filter")
    flt, node, ids = _selected(c, body, None)
    if flt is False:
        return []
    if ids is not None:
        return [r.id for r in c.fetch(ids, key=None, where=node)]
    return [r.id for r in c.scan(key=None, where=node)]


def delete_points(c: ProxyCollection, body: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    """``POST .../points/delete`` by ids or filter."""
    ids = _target_ids(c, body)
    with c.writing(ids):
        c.delete(ids)
    return _OK


def change_payload(c: ProxyCollection, body: Mapping[str, Any], how: str) -> dict[str, Any]:
    """Payload ``set`` (merge keys), ``overwrite``, ``delete`` (keys) or ``clear``: the
    primary's record is read, changed and written whole."""
    if body.get("key"):
        raise ProxyError("unsupported", "payload changes at a nested key are not served")
    ids = _target_ids(c, body)
    with c.writing(ids):
        changed: list[Record] = []
        for r in c.current(ids).values():
            payload = _payload(c, r, True) or {}
            if how == "set":
                payload.update(body.get("payload") or {})
            elif how == "overwrite":
                payload = dict(body.get("payload") or {})
            elif how == "delete":
                for k in body.get("keys") or []:
                    payload.pop(k, None)
            else:
                payload = {}
            doc, meta = _from_payload(c, payload)
            changed.append(Record(r.id, r.vector, doc, meta))
        c.upsert(changed)
    return _OK


def update_vectors(c: ProxyCollection, body: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    """``PUT .../points/vectors``: new vectors, payloads kept."""
    given = {
        point_id(c, p.get("id")): _vector(c, p.get("vector")) for p in body.get("points") or []
    }
    ids = list(given)
    with c.writing(ids):
        current = c.current(ids)
        c.upsert([Record(i, given[i], r.document, r.metadata) for i, r in current.items()])
    return _OK


def retrieve_points(
    c: ProxyCollection, body: Mapping[str, Any], key: str | None
) -> list[dict[str, Any]]:
    """``POST .../points``: points by id (missing ones absent)."""
    ids = [point_id(c, i) for i in body.get("ids") or []]
    with_payload, with_vector = body.get("with_payload", True), body.get("with_vector", False)
    return [_record_json(c, r, with_payload, with_vector) for r in c.fetch(ids, key=key)]


def _sort_key(rid: Any) -> tuple[int, Any]:
    return (0, rid) if isinstance(rid, int) else (1, str(rid))


def scroll_points(c: ProxyCollection, body: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    """``POST .../points/scroll``: a page of points in id order from ``offset``."""
    if body.get("order_by"):
        raise ProxyError("unsupported", "scroll with order_by is not served by the proxy")
    flt, node, ids = _selected(c, body, key)
    limit = int(body.get("limit") or 10)
    records: list[Record] = []
    if flt is not False:
        if ids is not None:
            records = c.fetch(ids, key=key, where=node)
        else:
            records = c.scan(key=key, where=node)
    records.sort(key=lambda r: _sort_key(r.id))
    if body.get("offset") is not None:
        start = _sort_key(point_id(c, body["offset"]))
        records = [r for r in records if _sort_key(r.id) >= start]
    page, rest = records[:limit], records[limit:]
    with_payload, with_vector = body.get("with_payload", True), body.get("with_vector", False)
    return {
        "points": [_record_json(c, r, with_payload, with_vector) for r in page],
        "next_page_offset": _out_id(c, rest[0].id) if rest else None,
    }


def count_points(c: ProxyCollection, body: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    """``POST .../points/count`` (always exact)."""
    flt, node, ids = _selected(c, body, key)
    if flt is False:
        return {"count": 0}
    if ids is not None:
        return {"count": len(c.fetch(ids, key=key, where=node))}
    return {"count": c.count(key=key, filter=flt if isinstance(flt, dict) else None)}


def search_points(
    c: ProxyCollection, body: Mapping[str, Any], key: str | None
) -> list[dict[str, Any]]:
    """``POST .../points/search`` (the legacy search API)."""
    raw = body.get("vector")
    if isinstance(raw, dict) and "vector" in raw:  # NamedVector {"name", "vector"}
        raw = {raw.get("name"): raw["vector"]}
    return _nearest(c, body, key, _vector(c, raw), body.get("filter"))


def query_points(c: ProxyCollection, body: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    """``POST .../points/query`` with a nearest-vector query (or a point id to search
    near that point's vector)."""
    if body.get("prefetch"):
        raise ProxyError("unsupported", "query with prefetch is not served by the proxy")
    using = body.get("using")
    if using not in (None, c.vector.name):
        raise ProxyError("invalid", f"{c.name!r} has no vector {using!r}")
    query = body.get("query")
    if isinstance(query, dict) and "nearest" in query:
        query = query["nearest"]
    elif isinstance(query, dict) and not _unnamed(c.schema) and c.vector.name in query:
        pass
    elif isinstance(query, dict):
        raise ProxyError("unsupported", f"query {sorted(query)} is not served by the proxy")
    if query is None:
        raise ProxyError("unsupported", "query without a vector (scroll-like) is not served")
    if isinstance(query, int | str):  # a point id: search near its vector
        found = c.fetch([point_id(c, query)], key=key)
        if not found or found[0].vector is None:
            raise ProxyError("not_found", f"Point with id {query} does not exists!")
        vector = found[0].vector
    else:
        vector = _vector(c, query, "query")
    return {"points": _nearest(c, body, key, vector, body.get("filter"))}


def _nearest(
    c: ProxyCollection, body: Mapping[str, Any], key: str | None, q: np.ndarray, flt: Any
) -> list[dict[str, Any]]:
    limit = int(body.get("limit") or 10)
    offset = int(body.get("offset") or 0)
    portable, ids = portable_filter(flt, c.schema)
    if portable is False:
        return []
    node = parse(portable, c.schema) if isinstance(portable, dict) else None
    if ids is not None:
        pool = c.fetch([point_id(c, i) for i in ids], key=key, where=node)
    else:
        pool = [
            h.record
            for h in c.search(
                q[None, :],
                limit + offset,
                filter=portable if isinstance(portable, dict) else None,
                key=key,
            )[0]
        ]
    ranked = _ranked(pool, q, c.vector.metric)[offset : offset + limit]
    threshold = body.get("score_threshold")
    if threshold is not None:
        limit_score = float(threshold)
        if c.vector.metric is Metric.L2:  # a distance: lower is better
            ranked = [(r, s) for r, s in ranked if s <= limit_score]
        else:
            ranked = [(r, s) for r, s in ranked if s >= limit_score]
    with_payload, with_vector = body.get("with_payload", False), body.get("with_vector", False)
    return [
        {**_record_json(c, r, with_payload, with_vector), "version": 0, "score": s}
        for r, s in ranked
    ]


def _ranked(records: list[Record], q: np.ndarray, metric: Metric) -> list[tuple[Record, float]]:
    usable = [r for r in records if r.vector is not None]
    if not usable:
        return []
    s = scores(q, np.vstack([r.vector for r in usable if r.vector is not None]), metric)
    order = np.argsort(s if metric is Metric.L2 else -s, kind="stable")
    return [(usable[i], float(s[i])) for i in order]


def scores(q: np.ndarray, matrix: np.ndarray, metric: Metric) -> np.ndarray:
    """Qdrant's score of each row of ``matrix`` for ``q``: cosine similarity (Cosine),
    inner product (Dot), euclidean distance (Euclid)."""
    q32 = np.asarray(q, dtype=np.float32)
    m32 = np.asarray(matrix, dtype=np.float32)
    if metric is Metric.L2:
        out: np.ndarray = np.sqrt(np.einsum("ij,ij->i", m32 - q32, m32 - q32))
        return out
    dots: np.ndarray = m32 @ q32
    if metric is Metric.DOT:
        return dots
    norms = np.linalg.norm(m32, axis=1)
    norms[norms == 0] = 1.0
    cos: np.ndarray = dots / (norms * (float(np.linalg.norm(q32)) or 1.0))
    return cos
