"""A Weaviate **protocol test double** — not Weaviate.

No Weaviate server can run on this machine, so the connector's tests drive the official
``weaviate-client`` against this small server on 127.0.0.1: REST (stdlib ``http.server``)
for meta, readiness, schema and tenants, and gRPC (``grpcio`` with the service classes the
client itself ships, ``weaviate.proto.v1``) for Search, BatchObjects, BatchDelete,
Aggregate and TenantsGet. It implements only what the connector uses, following
Weaviate 1.33's documented behaviour as closely as a few hundred lines can:

* class names are capitalised, property names get a lower-case first letter; the schema
  comes back with the server's defaults filled in;
  properties must exist (as with ``AUTOSCHEMA_ENABLED=false``); one vector length per index;
* unfiltered lists and ``after`` cursors walk objects in uuid order (the cursor cannot be
  combined with filters or searches); filtered lists come in insertion (docID) order;
  limit defaults to 10, offset + limit at most 10,000;
* filters: ``Equal`` on arrays means "contains", ``NotEqual`` / ``ContainsNone`` / ``Not``
  also match objects lacking the property, ``IsNull`` needs ``indexNullState`` and treats
  an empty array or empty string as null, ``field`` tokenization compares trimmed values;
* near-vector search is exact kNN: cosine ``1 - cos``, dot ``-a·b``, ``l2-squared``;
* multi-tenant classes need a tenant on every data call; errors use Weaviate's shapes.

Faults are injected per call (``fail(method, times, code)``) to test retries.
"""

from __future__ import annotations

import json
import threading
import uuid as uuidlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
from weaviate.proto.v1 import (
    aggregate_pb2,
    base_pb2,
    batch_delete_pb2,
    batch_pb2,
    properties_pb2,
    search_get_pb2,
    tenants_pb2,
    weaviate_pb2_grpc,
)

from tests.protocol.weaviate_model import (
    DEFAULT_LIMIT,
    MAX_RESULTS,
    VERSION,
    ClassState,
    WeaviateError,
    coerce,
    fill_defaults,
    matches,
    props_from_grpc,
    value_to_grpc,
)


class WeaviateDouble:
    """The shared state plus REST and gRPC front ends; ``start()``/``stop()``."""

    def __init__(self, api_key: str | None = None, version: str = VERSION) -> None:
        self.api_key = api_key
        self.version = version
        self.classes: dict[str, ClassState] = {}
        self.lock = threading.RLock()
        self.faults: dict[str, list[Any]] = {}
        self.calls: dict[str, int] = {}
        self.http_port = 0
        self.grpc_port = 0

    # -- faults and bookkeeping ---------------------------------------------------------------
    def fail(self, method: str, times: int = 1, code: Any = None) -> None:
        """Fail the next ``times`` calls of ``method`` (gRPC name or ``"GET /v1/schema"``)."""
        with self.lock:
            self.faults.setdefault(method, []).extend([code] * times)

    def _enter(self, method: str) -> Any:
        with self.lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            pending = self.faults.get(method)
            return pending.pop(0) if pending else None

    def _cls(self, name: str) -> ClassState:
        cls = self.classes.get(name[:1].upper() + name[1:])
        if cls is None:
            raise WeaviateError(f"could not find class {name} in schema", status=404)
        return cls

    def _shard(self, cls: ClassState, tenant: str) -> dict[str, Any]:
        if cls.mt and not tenant:
            raise WeaviateError(
                f"class {cls.config['class']} has multi-tenancy enabled, "
                "but request was without tenant"
            )
        if not cls.mt and tenant:
            raise WeaviateError(
                f"class {cls.config['class']} has multi-tenancy disabled, "
                "but request was with tenant"
            )
        key = tenant or None
        if key not in cls.tenants:
            raise WeaviateError(f'tenant not found: "{tenant}"')
        return cls.tenants[key]

    # -- REST -----------------------------------------------------------------------------------
    def rest(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("?")[0].split("/") if p][1:]  # drop "v1"
        with self.lock:
            if parts == ["meta"]:
                return 200, {
                    "hostname": "http://[::]:8080",
                    "modules": {},
                    "version": self.version,
                    "grpcMaxMessageSize": 104858000,
                }
            if parts[:1] == [".well-known"]:
                return (200, None) if parts[1] in ("ready", "live") else (404, None)
            if parts == ["schema"] and method == "GET":
                return 200, {"classes": [c.config for c in self.classes.values()]}
            if parts == ["schema"] and method == "POST":
                cfg = fill_defaults(body)
                if cfg["class"] in self.classes:
                    raise WeaviateError(f'class name "{cfg["class"]}" already exists')
                state = ClassState(cfg)
                if not state.mt:
                    state.tenants[None] = {}
                self.classes[cfg["class"]] = state
                return 200, cfg
            if len(parts) == 2 and parts[0] == "schema":
                if method == "DELETE":
                    self.classes.pop(parts[1][:1].upper() + parts[1][1:], None)
                    return 200, None
                cls = self.classes.get(parts[1][:1].upper() + parts[1][1:])
                return (200, cls.config) if cls else (404, None)
            if len(parts) == 3 and parts[0] == "schema" and parts[2] == "tenants":
                cls = self._cls(parts[1])
                if not cls.mt:
                    raise WeaviateError(f"multi-tenancy is not enabled for class {parts[1]!r}")
                if method == "GET":
                    return 200, [{"name": t, "activityStatus": "HOT"} for t in cls.tenants]
                if method == "POST":
                    for t in body:
                        cls.tenants.setdefault(t["name"], {})
                    return 200, body
            raise WeaviateError(f"{method} {path} is not served by this double", status=404)

    # -- gRPC -----------------------------------------------------------------------------------
    def batch_objects(self, req: batch_pb2.BatchObjectsRequest) -> batch_pb2.BatchObjectsReply:
        errors = []
        with self.lock:
            for i, obj in enumerate(req.objects):
                try:
                    self._put(obj)
                except WeaviateError as exc:
                    errors.append(batch_pb2.BatchObjectsReply.BatchError(index=i, error=str(exc)))
        return batch_pb2.BatchObjectsReply(took=0.0, errors=errors)

    def _put(self, obj: batch_pb2.BatchObject) -> None:
        cls = self._cls(obj.collection)
        shard = self._shard(cls, obj.tenant)
        uid = str(uuidlib.UUID(obj.uuid))
        schema = cls.props()
        props = {}
        for k, v in props_from_grpc(obj.properties).items():
            if k not in schema:
                raise WeaviateError(
                    f"no such prop with name '{k}' found in class "
                    f"'{cls.config['class']}' in the schema"
                )
            if v is not None:
                props[k] = coerce(schema[k]["dataType"][0], v, k)
        named = cls.config.get("vectorConfig")
        vectors: dict[str, np.ndarray] = {}
        if obj.vector_bytes:
            if named:
                raise WeaviateError("collection uses named vectors: an unnamed vector was sent")
            vectors["default"] = np.frombuffer(obj.vector_bytes, dtype="<f4").copy()
        for v in obj.vectors:
            if not named or v.name not in named:
                raise WeaviateError(f"target vector '{v.name}' does not exist in the collection")
            vectors[v.name] = np.frombuffer(v.vector_bytes, dtype="<f4").copy()
        for name, vec in vectors.items():
            dim = cls.dims.setdefault(name, len(vec))
            if dim != len(vec):
                raise WeaviateError(
                    f"new node has a vector with length {len(vec)}. "
                    f"Existing nodes have vectors with length {dim}"
                )
        shard.pop(uid, None)  # a re-put moves the object to the end of insertion order
        shard[uid] = (props, vectors)

    def _objects(self, cls: ClassState, tenant: str, flt: base_pb2.Filters | None) -> list[Any]:
        shard = self._shard(cls, tenant)
        return [
            (uid, props, vecs)
            for uid, (props, vecs) in shard.items()
            if flt is None or matches(flt, uid, props, cls)
        ]

    def search(self, req: search_get_pb2.SearchRequest) -> search_get_pb2.SearchReply:
        with self.lock:
            cls = self._cls(req.collection)
            flt = req.filters if req.HasField("filters") else None
            limit = req.limit or DEFAULT_LIMIT
            if req.offset + limit > MAX_RESULTS:
                raise WeaviateError(
                    f"query maximum results exceeded: offset {req.offset} + limit {limit}"
                    f" > {MAX_RESULTS}",
                    code=grpc.StatusCode.INVALID_ARGUMENT,
                )
            rows = self._objects(cls, req.tenant, flt)
            distances: list[float] | None = None
            if req.after:
                if flt is not None or req.HasField("near_vector") or req.sort_by or req.offset:
                    raise WeaviateError(
                        "cursor api: invalid 'after' parameter: "
                        "other params cannot be set along with after",
                        code=grpc.StatusCode.INVALID_ARGUMENT,
                    )
                after = str(uuidlib.UUID(req.after))
                rows = sorted((r for r in rows if r[0] > after), key=lambda r: r[0])
            elif req.HasField("near_vector"):
                rows, distances = self._knn(cls, req.near_vector, rows)
            elif flt is None:  # an unfiltered list walks the objects bucket, keyed by uuid
                rows.sort(key=lambda r: r[0])
            rows = rows[req.offset : req.offset + limit]
            if distances is not None:
                distances = distances[req.offset : req.offset + limit]
            results = [
                self._result(cls, req, r, None if distances is None else distances[i])
                for i, r in enumerate(rows)
            ]
        return search_get_pb2.SearchReply(took=0.0, results=results)

    def _knn(self, cls: ClassState, nv: Any, rows: list[Any]) -> tuple[list[Any], list[float]]:
        named = cls.config.get("vectorConfig")
        targets = list(nv.targets.target_vectors) or list(nv.target_vectors)
        if named and not targets:
            if len(named) != 1:
                raise WeaviateError(
                    "multiple vectors exist for this class, specify target vectors",
                    code=grpc.StatusCode.INVALID_ARGUMENT,
                )
            targets = list(named)
        target = targets[0] if named else "default"
        raw = nv.vectors[0].vector_bytes if nv.vectors else nv.vector_bytes
        q = np.frombuffer(raw, dtype="<f4").astype(np.float64) if raw else np.asarray(nv.vector)
        rows = [r for r in rows if target in r[2]]
        if not rows:
            return [], []
        if len(q) != cls.dims.get(target):
            raise WeaviateError(
                f"vector search: query vector has length {len(q)}, "
                f"the index {cls.dims.get(target)}",
                code=grpc.StatusCode.INVALID_ARGUMENT,
            )
        m = np.stack([r[2][target] for r in rows]).astype(np.float64)
        metric = cls.distance("" if not named else target)
        if metric == "cosine":
            d = 1 - (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))
        elif metric == "dot":
            d = -(m @ q)
        else:
            d = ((m - q) ** 2).sum(axis=1)
        order = np.argsort(d, kind="stable")
        return [rows[i] for i in order], [float(d[i]) for i in order]

    def _result(
        self, cls: ClassState, req: Any, row: Any, distance: float | None
    ) -> search_get_pb2.SearchResult:
        uid, props, vecs = row
        schema = cls.props()
        wanted = (
            list(schema)
            if not req.HasField("properties") or req.properties.return_all_nonref_properties
            else list(req.properties.non_ref_properties)
        )
        fields = {
            k: value_to_grpc(schema[k]["dataType"][0], props[k])
            for k in wanted
            if k in props and props[k] is not None
        }
        meta = search_get_pb2.MetadataResult(id=uid, id_as_bytes=uuidlib.UUID(uid).bytes)
        md = req.metadata
        if distance is not None and md.distance:
            meta.distance, meta.distance_present = distance, True
        if md.vector or md.vectors:
            if cls.config.get("vectorConfig"):
                names = list(md.vectors) or list(vecs)
                for n in names:
                    if n in vecs:
                        meta.vectors.append(
                            base_pb2.Vectors(
                                name=n,
                                vector_bytes=vecs[n].astype("<f4").tobytes(),
                                type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32,
                            )
                        )
            elif "default" in vecs:
                meta.vector_bytes = vecs["default"].astype("<f4").tobytes()
        return search_get_pb2.SearchResult(
            properties=search_get_pb2.PropertiesResult(
                non_ref_props=properties_pb2.Properties(fields=fields),
                target_collection=cls.config["class"],
            ),
            metadata=meta,
        )

    def batch_delete(
        self, req: batch_delete_pb2.BatchDeleteRequest
    ) -> batch_delete_pb2.BatchDeleteReply:
        with self.lock:
            cls = self._cls(req.collection)
            if not req.HasField("filters"):
                raise WeaviateError(
                    "batch delete needs a filter", code=grpc.StatusCode.INVALID_ARGUMENT
                )
            rows = self._objects(cls, req.tenant, req.filters)[:MAX_RESULTS]
            if not req.dry_run:
                shard = self._shard(cls, req.tenant)
                for uid, _, _ in rows:
                    shard.pop(uid, None)
        objects = (
            [
                batch_delete_pb2.BatchDeleteObject(uuid=uuidlib.UUID(r[0]).bytes, successful=True)
                for r in rows
            ]
            if req.verbose
            else []
        )
        return batch_delete_pb2.BatchDeleteReply(
            took=0.0, failed=0, matches=len(rows), successful=len(rows), objects=objects
        )

    def aggregate(self, req: aggregate_pb2.AggregateRequest) -> aggregate_pb2.AggregateReply:
        with self.lock:
            cls = self._cls(req.collection)
            n = len(
                self._objects(cls, req.tenant, req.filters if req.HasField("filters") else None)
            )
        return aggregate_pb2.AggregateReply(
            took=0.0, single_result=aggregate_pb2.AggregateReply.Single(objects_count=n)
        )

    def tenants_get(self, req: tenants_pb2.TenantsGetRequest) -> tenants_pb2.TenantsGetReply:
        with self.lock:
            cls = self._cls(req.collection)
            if not cls.mt:
                raise WeaviateError(
                    f"multi-tenancy is not enabled for class {req.collection!r}",
                    code=grpc.StatusCode.INVALID_ARGUMENT,
                )
            names = [t for t in cls.tenants if t is not None]
            if req.HasField("names"):
                names = [n for n in req.names.values if n in cls.tenants]
        hot = tenants_pb2.TENANT_ACTIVITY_STATUS_HOT
        return tenants_pb2.TenantsGetReply(
            took=0.0, tenants=[tenants_pb2.Tenant(name=n, activity_status=hot) for n in names]
        )

    # -- servers --------------------------------------------------------------------------------
    def start(self) -> WeaviateDouble:
        """Start REST and gRPC on free 127.0.0.1 ports."""
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _rest_handler(self))
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8),
            options=[("grpc.max_receive_message_length", 104858000)],
        )
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(_Servicer(self), self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        return self

    def stop(self) -> None:
        """Stop both servers (idempotent)."""
        self._grpc.stop(grace=None)
        self._http.shutdown()
        self._http.server_close()

    def uri(self, **params: str) -> str:
        """A vecmigrate URI for this double."""
        query = "&".join([f"grpc_port={self.grpc_port}", *(f"{k}={v}" for k, v in params.items())])
        return f"weaviate://127.0.0.1:{self.http_port}?{query}"


def _rest_handler(double: WeaviateDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            route = f"{self.command} {self.path.split('?')[0]}"
            fault = double._enter(route)
            try:
                if fault is not None:
                    status, body = int(fault), {"error": [{"message": "injected fault"}]}
                elif (
                    double.api_key
                    and not self.path.startswith("/v1/.well-known/")  # open, as in Weaviate
                    and self.headers.get("Authorization") != f"Bearer {double.api_key}"
                ):
                    status, body = 401, {"code": 401, "message": "anonymous access not enabled"}
                else:
                    status, body = double.rest(self.command, self.path, json.loads(raw or b"null"))
            except WeaviateError as exc:
                status, body = exc.status, {"error": [{"message": str(exc)}]}
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    return Handler


class _Servicer(weaviate_pb2_grpc.WeaviateServicer):  # type: ignore[misc]
    def __init__(self, double: WeaviateDouble) -> None:
        self.d = double

    def _run(self, name: str, fn: Any, request: Any, context: Any) -> Any:
        fault = self.d._enter(name)
        if fault is not None:
            context.abort(fault, f"injected {fault.name}")
        if self.d.api_key:
            meta = dict(context.invocation_metadata())
            if meta.get("authorization") != f"Bearer {self.d.api_key}":
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "anonymous access not enabled")
        try:
            return fn(request)
        except WeaviateError as exc:
            context.abort(exc.code, str(exc))

    def Search(self, request: Any, context: Any) -> Any:
        return self._run("Search", self.d.search, request, context)

    def BatchObjects(self, request: Any, context: Any) -> Any:
        return self._run("BatchObjects", self.d.batch_objects, request, context)

    def BatchDelete(self, request: Any, context: Any) -> Any:
        return self._run("BatchDelete", self.d.batch_delete, request, context)

    def Aggregate(self, request: Any, context: Any) -> Any:
        return self._run("Aggregate", self.d.aggregate, request, context)

    def TenantsGet(self, request: Any, context: Any) -> Any:
        return self._run("TenantsGet", self.d.tenants_get, request, context)
