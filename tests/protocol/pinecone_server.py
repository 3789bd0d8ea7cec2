"""A Pinecone **protocol test double** — not Pinecone.

Pinecone is a cloud service (and Pinecone Local is a container image), so nothing can run
it on this machine. The connector's tests drive the official ``pinecone`` client (10.x,
API version ``2026-07``) over real HTTP against this small stdlib server on 127.0.0.1. It
implements only what the connector uses, following Pinecone's public API reference:

* control plane on the main port: ``GET/POST /indexes``, ``GET/DELETE /indexes/{name}``;
  an index is ``schema.fields._values`` (dense_vector, dimension, metric) plus a
  ``deployment`` (``managed`` = serverless, or ``pod``) and string tags (≤ 20, keys
  ``[A-Za-z0-9_-]{1,80}``, printable-ASCII values ≤ 120 chars);
* each index is served on its own port, like Pinecone Local (``host`` in its description,
  bare ``127.0.0.1:PORT`` as the API gives hosts; the data plane speaks plain http):
  ``/vectors/upsert`` (≤ 1,000 vectors and ≤ 2 MB a request, ids 1-512 ASCII characters,
  metadata ≤ 40 KB of JSON per record, values str / number / bool / list of str, no
  nulls; numbers are stored as float64 and come back as floats), ``/vectors/fetch``
  (≤ 1,000 ids), ``/vectors/list`` (serverless only; ids in bitwise order, ``limit``
  1-100, default 100, opaque ``paginationToken``), ``/vectors/delete``, ``/query``
  (exact kNN: cosine and dotproduct higher-is-better, euclidean = squared distance,
  lower-is-better; ``topK`` ≤ 10,000, ≤ 1,000 with values or metadata) and
  ``/describe_index_stats`` (a filter is refused, as on serverless; the default namespace
  is reported as ``__default__``);
* metadata filters as documented: ``$eq $ne $gt $gte $lt $lte $in $nin $exists $and $or``;
  on a list of strings ``$eq``/``$in`` match when any element matches and ``$ne``/``$nin``
  when none does. Pinecone does not document what ``$ne``/``$nin`` do to records lacking
  the field; this double follows MongoDB (they match), the less convenient reading, so a
  connector has to guard against it;
* errors in Pinecone's shapes: 400 bad request, 401 bad ``Api-Key``, 404, 409, 413 body
  over 2 MB; 429 and 5xx are injected on demand with ``fail(status, times)`` (or until
  ``clear_failures()``);
* bulk import from object storage (``/bulk/imports``: start, describe, list, cancel), as
  documented: the URI names a folder of namespace sub-folders (``__default__`` for the
  default namespace) of ``*.parquet`` files (other files ignored); each file has ``id``
  STRING, ``values`` LIST<FLOAT> (float32), optionally ``metadata`` STRING (a JSON object,
  at most 40 KB, the upsert metadata rules) and ``sparse_values`` STRUCT<indices:
  LIST<UINT32>, values: LIST<FLOAT>>; other columns are ignored. An import takes at most
  100 namespaces, 100,000 files and 10 GB a file, only into namespaces that do not exist
  yet, on serverless indexes. It runs in the background (``Pending`` -> ``InProgress`` ->
  ``Completed``, each step ``import_delay`` s); what breaks the layout makes it
  ``Failed`` with an ``error`` message, as Pinecone reports it (``errorMode.onError``
  ``continue`` skips bad records instead, ``abort`` — the default — fails). Only
  ``file://`` URIs can be read here. Request and response bodies are checked against the
  model (``pinecone_model.py``); what breaks it is kept in ``model_violations``.

Writes are visible at once (the real service is eventually consistent).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.protocol.httpdouble import DoubleHandler, close, listen
from tests.protocol.pinecone_model import request_violations, response_violations

MAX_UPSERT_VECTORS = 1000
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_ID_LENGTH = 512
MAX_FETCH_IDS = 1000
MAX_TOP_K = 10_000
MAX_TOP_K_WITH_DATA = 1000
DEFAULT_NAMESPACE = "__default__"
_INDEX_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,43}[a-z0-9])?$")
_TAG_KEY = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_METRICS = ("cosine", "dotproduct", "euclidean")
MAX_IMPORT_NAMESPACES = 100
MAX_IMPORT_FILES = 100_000
MAX_IMPORT_FILE_BYTES = 10 * 1024**3
MAX_IMPORT_RECORDS = 100_000_000
_TERMINAL = ("Completed", "Failed", "Cancelled")


class ApiFailure(Exception):
    """An error response: HTTP status plus Pinecone's error code and message."""

    def __init__(self, status: int, message: str, code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class IndexState:
    """One index: its description and its namespaces of records."""

    name: str
    dimension: int
    metric: str
    deployment: dict[str, Any]
    tags: dict[str, str] | None
    namespaces: dict[str, dict[str, tuple[list[float], dict[str, Any] | None]]] = field(
        default_factory=dict
    )
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    imports: dict[str, ImportOp] = field(default_factory=dict)

    @property
    def serverless(self) -> bool:
        return self.deployment.get("deployment_type") == "managed"

    def host(self) -> str:
        """Bare host:port, as the API returns it (clients assume https unless told)."""
        assert self.server is not None
        return f"127.0.0.1:{self.server.server_address[1]}"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host(),
            "status": {"ready": True, "state": "Ready"},
            "schema": {
                "fields": {
                    "_values": {
                        "type": "dense_vector",
                        "dimension": self.dimension,
                        "metric": self.metric,
                    }
                }
            },
            "deployment": self.deployment,
            "deletion_protection": "disabled",
            "read_capacity": {"mode": "OnDemand", "status": {"state": "Ready"}},
            "tags": self.tags,
        }


@dataclass
class ImportOp:
    """One bulk import of an index."""

    id: str
    uri: str
    status: str = "Pending"
    created_at: str = field(default_factory=lambda: _now())
    finished_at: str | None = None
    percent_complete: float | None = None
    records_imported: int | None = None
    error: str | None = None

    def describe(self) -> dict[str, Any]:
        """The ``ImportModel`` of this import (members without a value are left out)."""
        out = {
            "id": self.id,
            "uri": self.uri,
            "status": self.status,
            "createdAt": self.created_at,
            "finishedAt": self.finished_at,
            "percentComplete": self.percent_complete,
            "recordsImported": self.records_imported,
            "error": self.error,
        }
        return {k: v for k, v in out.items() if v is not None}


class ImportFailure(Exception):
    """Why an import fails (its ``error``)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- metadata and filters -------------------------------------------------------------------
def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_metadata(rid: str, md: Any) -> dict[str, Any]:
    if not isinstance(md, dict):
        raise ApiFailure(400, f"Metadata of vector {rid} must be an object")
    size = len(json.dumps(md, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise ApiFailure(
            400,
            f"Metadata size is {size} bytes, which exceeds the limit of "
            f"{MAX_METADATA_BYTES} bytes per vector",
        )
    out: dict[str, Any] = {}
    for key, value in md.items():
        if isinstance(value, str | bool):
            out[key] = value
        elif _number(value):
            out[key] = float(value)  # "gets converted to a 64 bit floating point"
        elif isinstance(value, list) and all(isinstance(x, str) for x in value):
            out[key] = list(value)
        else:
            kind = "null" if value is None else type(value).__name__
            raise ApiFailure(
                400,
                f"Metadata value for field {key!r} of vector {rid} must be a string, "
                f"number, boolean or list of strings, got {kind}",
            )
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _number(a) and _number(b):
        return float(a) == float(b)
    return isinstance(a, str) and isinstance(b, str) and a == b


def _field_matches(value: Any, op: str, arg: Any) -> bool:
    present = value is not None
    if op == "$exists":
        if not isinstance(arg, bool):
            raise ApiFailure(400, "$exists takes a boolean")
        return present == arg
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise ApiFailure(400, f"{op} takes an array")
        values = value if isinstance(value, list) else [value]
        hit = present and any(_same(v, a) for v in values for a in arg)
        return hit if op == "$in" else not hit
    if op in ("$eq", "$ne"):
        if isinstance(arg, list | dict) or arg is None:
            raise ApiFailure(400, f"{op} takes a string, number or boolean")
        values = value if isinstance(value, list) else [value]
        hit = present and any(_same(v, arg) for v in values)
        return hit if op == "$eq" else not hit
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if not _number(arg):
            raise ApiFailure(400, f"{op} takes a number")
        if not _number(value):
            return False
        v, a = float(value), float(arg)
        return {"$gt": v > a, "$gte": v >= a, "$lt": v < a, "$lte": v <= a}[op]
    raise ApiFailure(400, f"Unsupported filter operator {op!r}")


def matches(flt: dict[str, Any], md: dict[str, Any]) -> bool:
    """Whether metadata ``md`` satisfies filter ``flt`` (Pinecone's documented language)."""
    if not isinstance(flt, dict):
        raise ApiFailure(400, "A filter must be an object")
    for key, cond in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, list) or not cond:
                raise ApiFailure(400, f"{key} takes a non-empty array")
            results = [matches(c, md) for c in cond]
            if not (all(results) if key == "$and" else any(results)):
                return False
        elif key.startswith("$"):
            raise ApiFailure(400, f"Unsupported filter operator {key!r}")
        else:
            ops = cond if isinstance(cond, dict) else {"$eq": cond}
            if not ops:
                raise ApiFailure(400, f"Empty condition on field {key!r}")
            if not all(_field_matches(md.get(key), op, arg) for op, arg in ops.items()):
                return False
    return True


def _score(metric: str, q: list[float], v: list[float]) -> float:
    if metric == "euclidean":
        return sum((a - b) * (a - b) for a, b in zip(q, v, strict=True))
    dot = sum(a * b for a, b in zip(q, v, strict=True))
    if metric == "dotproduct":
        return dot
    norms = math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in v))
    return dot / norms if norms else 0.0


# -- the server ----------------------------------------------------------------------------------
class PineconeServer:
    """Control plane on ``port``; each index gets its own data-plane port."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.indexes: dict[str, IndexState] = {}
        self.lock = threading.Lock()
        self._failures: list[list[Any]] = []  # [status, path, requests to let through first]
        self.requests: list[tuple[str, str, int, int]] = []  # (method, path, status, bytes)
        self.api_versions: set[str] = set()
        # Every way a bulk-import request or response broke the API model.
        self.model_violations: list[str] = []
        self.import_delay = 0.05  # seconds an import stays Pending, then InProgress
        self._import_ids = itertools.count(101)
        self.control = listen(self._handler(None))

    @property
    def url(self) -> str:
        """Control-plane base URL (what ``?host=`` points at)."""
        return f"http://127.0.0.1:{self.control.server_address[1]}"

    def fail(self, status: int, times: int | None = 1, path: str = "", after: int = 0) -> None:
        """Answer ``times`` requests whose path starts with ``path`` with ``status``, after
        letting ``after`` such requests through; ``times=None`` fails them until
        :meth:`clear_failures` (so a test need not know how often the client retries)."""
        with self.lock:
            self._failures.append([status, path, after, times])

    def clear_failures(self) -> list[tuple[int, str, int, int | None]]:
        """Drop every injected failure; returns the ones left (status, path, still to let
        through, still to fail — ``None`` = until cleared), for a test to check it used
        what it injected and for one test's injections never to reach the next."""
        with self.lock:
            left = [(f[0], f[1], f[2], f[3]) for f in self._failures]
            self._failures.clear()
        return left

    def create_index(self, name: str, dim: int, metric: str, deployment: dict[str, Any]) -> None:
        """Create an index directly (e.g. a pod-based one the connector must refuse)."""
        self._create(
            {
                "name": name,
                "deployment": deployment,
                "schema": {
                    "fields": {
                        "_values": {"type": "dense_vector", "dimension": dim, "metric": metric}
                    }
                },
            }
        )

    def take_violations(self) -> list[str]:
        """The model violations recorded so far (and forget them)."""
        with self.lock:
            out, self.model_violations = self.model_violations, []
        return out

    def stop(self) -> None:
        """Shut down every listener."""
        for idx in list(self.indexes.values()):
            if idx.server:
                close(idx.server)
        close(self.control)

    # -- control plane ---------------------------------------------------------------------
    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not _INDEX_NAME.match(name):
            raise ApiFailure(
                400,
                "Name must consist of lower case alphanumeric characters or '-', "
                "and be at most 45 characters",
            )
        fields = (body.get("schema") or {}).get("fields") or {}
        dense = fields.get("_values")
        if not isinstance(dense, dict) or dense.get("type") != "dense_vector":
            raise ApiFailure(400, "this double serves vector indexes: schema.fields._values")
        dim, metric = dense.get("dimension"), dense.get("metric", "cosine")
        if not isinstance(dim, int) or not 1 <= dim <= 20_000:
            raise ApiFailure(400, "dimension must be an integer between 1 and 20000")
        if metric not in _METRICS:
            raise ApiFailure(400, f"metric must be one of {list(_METRICS)}")
        deployment = body.get("deployment") or {}
        if deployment.get("deployment_type") not in ("managed", "pod"):
            raise ApiFailure(400, "deployment.deployment_type must be 'managed' or 'pod'")
        tags = body.get("tags")
        if tags is not None:
            if not isinstance(tags, dict) or len(tags) > 20:
                raise ApiFailure(400, "tags: at most 20 string tags")
            for k, v in tags.items():
                ok = isinstance(v, str) and len(v) <= 120 and v.isascii() and v.isprintable()
                if not _TAG_KEY.match(k) or not ok:
                    raise ApiFailure(400, f"invalid tag {k!r}")
        deployment = dict(deployment)
        if deployment["deployment_type"] == "managed":
            deployment.setdefault(
                "environment", f"{deployment.get('region')}-{deployment.get('cloud')}"
            )
        with self.lock:
            if name in self.indexes:
                raise ApiFailure(409, f"Resource {name} already exists", "ALREADY_EXISTS")
            idx = IndexState(name, dim, metric, deployment, dict(tags) if tags else None)
            idx.server = listen(self._handler(idx))
            self.indexes[name] = idx
        return idx.describe()

    def _index(self, name: str) -> IndexState:
        idx = self.indexes.get(name)
        if idx is None:
            raise ApiFailure(404, f"Resource {name} not found", "NOT_FOUND")
        return idx

    def control_plane(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if parts == ["indexes"] and method == "GET":
            return 200, {"indexes": [i.describe() for i in list(self.indexes.values())]}
        if parts == ["indexes"] and method == "POST":
            return 201, self._create(body or {})
        if len(parts) == 2 and parts[0] == "indexes":
            idx = self._index(parts[1])
            if method == "GET":
                return 200, idx.describe()
            if method == "DELETE":
                with self.lock:
                    self.indexes.pop(idx.name, None)
                assert idx.server is not None
                threading.Thread(target=idx.server.shutdown, daemon=True).start()
                return 202, None
        raise ApiFailure(404, f"no route {method} {path}", "NOT_FOUND")

    # -- data plane --------------------------------------------------------------------------
    @staticmethod
    def _ns(name: Any) -> str:
        if name in (None, "", DEFAULT_NAMESPACE):
            return DEFAULT_NAMESPACE
        if not isinstance(name, str) or not name.isascii() or len(name) > 512:
            raise ApiFailure(400, "namespace must be 1-512 ASCII characters")
        return str(name)

    def data_plane(
        self, idx: IndexState, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        body = body or {}
        if path == "/vectors/upsert" and method == "POST":
            return 200, self._upsert(idx, body)
        if path == "/vectors/fetch" and method == "GET":
            ids = query.get("ids", [])
            if not ids or len(ids) > MAX_FETCH_IDS:
                raise ApiFailure(400, f"fetch takes 1-{MAX_FETCH_IDS} ids")
            ns = self._ns(query.get("namespace", [""])[0])
            with idx.lock:
                recs = idx.namespaces.get(ns, {})
                found = {i: recs[i] for i in ids if i in recs}
            vectors = {
                i: {"id": i, "values": v, **({"metadata": md} if md else {})}
                for i, (v, md) in found.items()
            }
            return 200, {"vectors": vectors, "namespace": _public(ns), "usage": {"readUnits": 1}}
        if path == "/vectors/list" and method == "GET":
            return 200, self._list(idx, query)
        if path == "/vectors/delete" and method == "POST":
            ns = self._ns(body.get("namespace"))
            with idx.lock:
                recs = idx.namespaces.get(ns, {})
                if body.get("deleteAll"):
                    recs.clear()
                elif "ids" in body:
                    if len(body["ids"]) > MAX_FETCH_IDS:
                        raise ApiFailure(400, f"delete takes at most {MAX_FETCH_IDS} ids")
                    for i in body["ids"]:
                        recs.pop(i, None)
                elif body.get("filter"):
                    for i in [
                        i for i, (_, md) in recs.items() if matches(body["filter"], md or {})
                    ]:
                        del recs[i]
                else:
                    raise ApiFailure(400, "delete needs ids, deleteAll or a filter")
                if not recs:
                    idx.namespaces.pop(ns, None)
            return 200, {}
        if path == "/query" and method == "POST":
            return 200, self._query(idx, body)
        if path == "/bulk/imports" or path.startswith("/bulk/imports/"):
            return self._imports(idx, method, path, query, body)
        if path == "/describe_index_stats" and method == "POST":
            if body.get("filter"):
                raise ApiFailure(
                    400, "describe_index_stats does not support filtering on serverless indexes"
                )
            with idx.lock:
                counts = {ns: len(r) for ns, r in idx.namespaces.items() if r}
            return 200, {
                "namespaces": {ns: {"vectorCount": n} for ns, n in counts.items()},
                "dimension": idx.dimension,
                "indexFullness": 0.0,
                "totalVectorCount": sum(counts.values()),
                "metric": idx.metric,
                "vectorType": "dense",
            }
        raise ApiFailure(404, f"no route {method} {path}", "NOT_FOUND")

    def _upsert(self, idx: IndexState, body: dict[str, Any]) -> dict[str, Any]:
        vectors = body.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise ApiFailure(400, "vectors must be a non-empty array")
        if len(vectors) > MAX_UPSERT_VECTORS:
            raise ApiFailure(
                400, f"Upsert batch size {len(vectors)} exceeds the limit of {MAX_UPSERT_VECTORS}"
            )
        staged = {}
        for vec in vectors:
            rid = vec.get("id")
            if not isinstance(rid, str) or not 1 <= len(rid) <= MAX_ID_LENGTH or not rid.isascii():
                raise ApiFailure(400, f"Vector ID must be 1-{MAX_ID_LENGTH} ASCII characters")
            values = vec.get("values")
            if not isinstance(values, list) or len(values) != idx.dimension:
                got = len(values) if isinstance(values, list) else 0
                raise ApiFailure(
                    400,
                    f"Vector dimension {got} does not match the dimension of the index "
                    f"{idx.dimension}",
                )
            if not all(_number(x) and math.isfinite(x) for x in values):
                raise ApiFailure(400, f"Vector {rid} has a non-numeric value")
            if not any(values):
                raise ApiFailure(
                    400, f"Dense vectors must contain at least one non-zero value ({rid})"
                )
            md = _check_metadata(rid, vec["metadata"]) if vec.get("metadata") is not None else None
            staged[rid] = ([float(x) for x in values], md or None)
        ns = self._ns(body.get("namespace"))
        with idx.lock:
            idx.namespaces.setdefault(ns, {}).update(staged)
        return {"upsertedCount": len(staged)}

    def _list(self, idx: IndexState, query: dict[str, list[str]]) -> dict[str, Any]:
        if not idx.serverless:
            raise ApiFailure(400, "list is supported only for serverless indexes")
        ns = self._ns(query.get("namespace", [""])[0])
        prefix = query.get("prefix", [""])[0]
        try:
            limit = int(query.get("limit", ["100"])[0])
        except ValueError:
            raise ApiFailure(400, "limit must be an integer") from None
        if not 1 <= limit <= 100:
            raise ApiFailure(400, "limit must be between 1 and 100")
        after = ""
        if "paginationToken" in query:
            try:
                tok = json.loads(base64.b64decode(query["paginationToken"][0]))
                after, tok_prefix = tok["skip_past"], tok.get("prefix") or ""
            except (ValueError, KeyError, TypeError):
                raise ApiFailure(400, "invalid pagination token") from None
            if tok_prefix != prefix:
                raise ApiFailure(400, "pagination token does not match the prefix")
        with idx.lock:
            ids = sorted(
                (
                    i
                    for i in idx.namespaces.get(ns, {})
                    if i.startswith(prefix) and (not after or i.encode() > after.encode())
                ),
                key=str.encode,
            )
        page = ids[:limit]
        out: dict[str, Any] = {
            "vectors": [{"id": i} for i in page],
            "namespace": _public(ns),
            "usage": {"readUnits": 1},
        }
        if len(ids) > limit:
            token = json.dumps({"skip_past": page[-1], "prefix": prefix or None})
            out["pagination"] = {"next": base64.b64encode(token.encode()).decode()}
        return out

    def _query(self, idx: IndexState, body: dict[str, Any]) -> dict[str, Any]:
        top_k = body.get("topK")
        with_data = bool(body.get("includeValues") or body.get("includeMetadata"))
        cap = MAX_TOP_K_WITH_DATA if with_data else MAX_TOP_K
        if not isinstance(top_k, int) or not 1 <= top_k <= cap:
            raise ApiFailure(400, f"topK must be between 1 and {cap}")
        q = body.get("vector")
        if not isinstance(q, list) or len(q) != idx.dimension:
            raise ApiFailure(
                400, f"Query vector dimension does not match the index {idx.dimension}"
            )
        ns = self._ns(body.get("namespace"))
        flt = body.get("filter")
        with idx.lock:
            recs = list(idx.namespaces.get(ns, {}).items())
        hits = [
            (_score(idx.metric, q, v), rid, v, md)
            for rid, (v, md) in recs
            if not flt or matches(flt, md or {})
        ]
        hits.sort(key=lambda h: (h[0] if idx.metric == "euclidean" else -h[0], h[1]))
        matches_out = []
        for score, rid, v, md in hits[:top_k]:
            m: dict[str, Any] = {
                "id": rid,
                "score": score,
                "values": v if body.get("includeValues") else [],
            }
            if body.get("includeMetadata") and md:
                m["metadata"] = md
            matches_out.append(m)
        return {"matches": matches_out, "namespace": _public(ns), "usage": {"readUnits": 5}}

    # -- bulk import ----------------------------------------------------------------------------
    def _imports(
        self, idx: IndexState, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        rest = path[len("/bulk/imports") :].strip("/")
        if not rest and method == "POST":
            status, out = 200, self._start_import(idx, body)
            self._check_response("start", out)
        elif not rest and method == "GET":
            status, out = 200, self._list_imports(idx, query)
            self._check_response("list", out)
        elif rest and method == "GET":
            status, out = 200, self._import_op(idx, unquote(rest)).describe()
            self._check_response("describe", out)
        elif rest and method == "DELETE":
            op = self._import_op(idx, unquote(rest))
            with idx.lock:
                if op.status not in _TERMINAL:
                    op.status, op.finished_at = "Cancelled", _now()
            status, out = 200, {}
        else:
            raise ApiFailure(404, f"no route {method} {path}", "NOT_FOUND")
        return status, out

    def _check_response(self, op: str, body: Any) -> None:
        found = response_violations(op, body)
        if found:
            with self.lock:
                self.model_violations += found

    @staticmethod
    def _import_op(idx: IndexState, import_id: str) -> ImportOp:
        with idx.lock:
            op = idx.imports.get(import_id)
        if op is None:
            raise ApiFailure(404, f"Import {import_id} not found", "NOT_FOUND")
        return op

    def _start_import(self, idx: IndexState, body: Any) -> dict[str, Any]:
        found = request_violations(body)
        if found:
            with self.lock:
                self.model_violations += found
            raise ApiFailure(400, f"Invalid start_import request: {found[0]}")
        if not idx.serverless:
            raise ApiFailure(400, "Import is only supported for serverless indexes")
        uri = str(body["uri"])
        if urlsplit(uri).scheme != "file":
            raise ApiFailure(400, f"this double imports only from file:// URIs, not {uri!r}")
        mode = ((body.get("errorMode") or {}).get("onError") or "abort").lower()
        op = ImportOp(id=str(next(self._import_ids)), uri=uri)
        with idx.lock:
            idx.imports[op.id] = op
        threading.Thread(target=self._run_import, args=(idx, op, mode), daemon=True).start()
        return {"id": op.id}

    def _list_imports(self, idx: IndexState, query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            limit = int(query.get("limit", ["100"])[0])
            start = (
                int(base64.b64decode(query["paginationToken"][0]))
                if "paginationToken" in query
                else 0
            )
        except ValueError:
            raise ApiFailure(400, "invalid limit or pagination token") from None
        if not 1 <= limit <= 100:
            raise ApiFailure(400, "limit must be between 1 and 100")
        with idx.lock:
            ops = sorted(idx.imports.values(), key=lambda o: int(o.id))
        out: dict[str, Any] = {"data": [o.describe() for o in ops[start : start + limit]]}
        if start + limit < len(ops):
            out["pagination"] = {"next": base64.b64encode(str(start + limit).encode()).decode()}
        return out

    def _run_import(self, idx: IndexState, op: ImportOp, mode: str) -> None:
        """Pending -> InProgress -> read and check every file -> Completed (all records at
        once) or Failed; a cancel in between wins."""
        time.sleep(self.import_delay)
        with idx.lock:
            if op.status != "Pending":
                return
            op.status, op.percent_complete = "InProgress", 0.0
        try:
            staged, count = self._read_import(idx, op.uri, mode)
        except ImportFailure as exc:
            with idx.lock:
                if op.status == "InProgress":
                    op.status, op.error, op.finished_at = "Failed", str(exc), _now()
            return
        time.sleep(self.import_delay)
        with idx.lock:
            if op.status != "InProgress":
                return
            for ns, recs in staged.items():
                if recs:
                    idx.namespaces.setdefault(ns, {}).update(recs)
            op.status, op.percent_complete, op.records_imported = "Completed", 100.0, count
            op.finished_at = _now()

    def _read_import(
        self, idx: IndexState, uri: str, mode: str
    ) -> tuple[dict[str, dict[str, tuple[list[float], dict[str, Any] | None]]], int]:
        root = Path(unquote(urlsplit(uri).path))
        if not root.is_dir():
            raise ImportFailure(f"The URI {uri} does not exist or is not accessible")
        layout: dict[str, list[Path]] = {}
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".parquet")
            if files:
                layout[folder.name] = files
        if not layout:
            raise ImportFailure(f"No namespace folders with .parquet files found under {uri}")
        if len(layout) > MAX_IMPORT_NAMESPACES:
            raise ImportFailure(
                f"The import has {len(layout)} namespaces; at most {MAX_IMPORT_NAMESPACES} "
                "namespaces can be imported at once"
            )
        if sum(len(f) for f in layout.values()) > MAX_IMPORT_FILES:
            raise ImportFailure(f"The import has more than {MAX_IMPORT_FILES} files")
        staged: dict[str, dict[str, tuple[list[float], dict[str, Any] | None]]] = {}
        count = 0
        for folder, files in layout.items():
            ns = self._ns(folder) if folder.isascii() and len(folder) <= 512 else None
            if ns is None:
                raise ImportFailure(f"Invalid namespace name {folder!r}")
            with idx.lock:
                exists = bool(idx.namespaces.get(ns))
            if exists:
                raise ImportFailure(
                    "The default namespace must be empty to import into it"
                    if ns == DEFAULT_NAMESPACE
                    else f"Namespace {folder} already exists; import only into new namespaces"
                )
            recs = staged.setdefault(ns, {})
            for path in files:
                where = f"{folder}/{path.name}"
                if path.stat().st_size > MAX_IMPORT_FILE_BYTES:
                    raise ImportFailure(f"{where}: files can be at most 10 GB")
                count += self._read_file(idx, path, where, mode, recs)
                if count > MAX_IMPORT_RECORDS:
                    raise ImportFailure(f"The import has more than {MAX_IMPORT_RECORDS} records")
        return staged, count

    def _read_file(
        self,
        idx: IndexState,
        path: Path,
        where: str,
        mode: str,
        recs: dict[str, tuple[list[float], dict[str, Any] | None]],
    ) -> int:
        try:
            pfile = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise ImportFailure(f"{where}: not a readable Parquet file: {exc}") from None
        _check_import_schema(pfile.schema_arrow, where)
        columns = [c for c in ("id", "values", "metadata", "sparse_values")
                   if c in pfile.schema_arrow.names]  # fmt: skip
        seen = imported = 0
        for batch in pfile.iter_batches(columns=columns):
            rows = batch.to_pylist()
            for n, row in enumerate(rows):
                try:
                    rid, values, md = _import_record(idx.dimension, row)
                except ApiFailure as exc:
                    if mode == "continue":
                        continue
                    raise ImportFailure(f"{where}: record {seen + n}: {exc.message}") from None
                recs[rid] = (values, md)
                imported += 1
            seen += len(rows)
        return imported

    # -- HTTP plumbing ----------------------------------------------------------------------------
    def _handler(self, idx: IndexState | None) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(DoubleHandler):
            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                raw = self._body()
                status, payload, extra = 200, None, {}
                try:
                    if self.headers.get("Api-Key") != server.api_key:
                        raise ApiFailure(401, "Invalid API Key", "UNAUTHENTICATED")
                    server.api_versions.add(self.headers.get("X-Pinecone-Api-Version", ""))
                    with server.lock:
                        hit = next(
                            (f for f in server._failures if parts.path.startswith(f[1])), None
                        )
                        if hit and hit[2] > 0:
                            hit[2] -= 1
                            hit = None
                        elif hit and hit[3] is not None:
                            hit[3] -= 1
                            if hit[3] == 0:
                                server._failures.remove(hit)
                    if hit:
                        extra = {"Retry-After": "0"}
                        raise ApiFailure(hit[0], "injected failure", "UNAVAILABLE")
                    if len(raw) > MAX_REQUEST_BYTES:
                        raise ApiFailure(
                            413,
                            f"Request size {len(raw)} bytes exceeds the limit of "
                            f"{MAX_REQUEST_BYTES} bytes",
                            "OUT_OF_RANGE",
                        )
                    try:
                        body = json.loads(raw) if raw else None
                    except ValueError:
                        raise ApiFailure(400, "request body is not valid JSON") from None
                    query = parse_qs(parts.query)
                    if idx is None:
                        status, payload = server.control_plane(method, parts.path, body)
                    else:
                        status, payload = server.data_plane(idx, method, parts.path, query, body)
                except ApiFailure as exc:
                    status = exc.status
                    payload = {
                        "error": {"code": exc.code, "message": exc.message},
                        "status": status,
                    }
                with server.lock:
                    server.requests.append((method, parts.path, status, len(raw)))
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PATCH(self) -> None:
                self._serve("PATCH")

        return Handler


def _public(ns: str) -> str:
    return "" if ns == DEFAULT_NAMESPACE else ns


def _is_str(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _is_list_of(t: pa.DataType, item: pa.DataType) -> bool:
    listy = pa.types.is_list(t) or pa.types.is_large_list(t)
    return bool(listy and t.value_type == item)


def _check_import_schema(schema: pa.Schema, where: str) -> None:
    """Refuse a file whose columns are not Pinecone's import schema (extra columns are
    ignored, as documented)."""
    for name, ok, want in (
        ("id", _is_str, "STRING"),
        ("values", lambda t: _is_list_of(t, pa.float32()), "LIST<FLOAT>"),
    ):
        if name not in schema.names:
            raise ImportFailure(f"{where}: missing required column {name!r}")
        if not ok(schema.field(name).type):
            raise ImportFailure(
                f"{where}: column {name!r} must be {want}, got {schema.field(name).type}"
            )
    if "metadata" in schema.names and not _is_str(schema.field("metadata").type):
        raise ImportFailure(
            f"{where}: column 'metadata' must be STRING (JSON), got {schema.field('metadata').type}"
        )
    if "sparse_values" in schema.names:
        t = schema.field("sparse_values").type
        ok = (
            pa.types.is_struct(t)
            and {t.field(i).name for i in range(t.num_fields)} == {"indices", "values"}
            and _is_list_of(t.field("indices").type, pa.uint32())
            and _is_list_of(t.field("values").type, pa.float32())
        )
        if not ok:
            raise ImportFailure(
                f"{where}: column 'sparse_values' must be STRUCT<indices: LIST<UINT32>, "
                f"values: LIST<FLOAT>>, got {t}"
            )


def _import_record(dim: int, row: dict[str, Any]) -> tuple[str, list[float], dict[str, Any] | None]:
    """One imported row as a stored record; ApiFailure says why it cannot be one."""
    rid = row.get("id")
    if not isinstance(rid, str) or not 1 <= len(rid) <= MAX_ID_LENGTH or not rid.isascii():
        raise ApiFailure(400, f"Vector ID must be 1-{MAX_ID_LENGTH} ASCII characters")
    values = row.get("values")
    if not isinstance(values, list) or len(values) != dim:
        got = len(values) if isinstance(values, list) else 0
        raise ApiFailure(
            400, f"Vector dimension {got} does not match the dimension of the index {dim}"
        )
    if not all(x is not None and math.isfinite(x) for x in values) or not any(values):
        raise ApiFailure(400, f"Vector {rid} has a null, non-finite or all-zero value")
    sparse = row.get("sparse_values")
    if sparse is not None and len(sparse.get("indices") or []) != len(sparse.get("values") or []):
        raise ApiFailure(400, f"Sparse vector of {rid} has indices and values of different lengths")
    text = row.get("metadata")
    md = None
    if text is not None:
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ApiFailure(400, f"Metadata of vector {rid} is not valid JSON") from None
        md = _check_metadata(rid, parsed) or None
    return rid, [float(x) for x in values], md


@contextlib.contextmanager
def serving(key: str, env: str) -> Iterator[PineconeServer]:
    """A double whose API key is ``key``, given to vecmigrate URIs as ``env:<env>``."""
    mp = pytest.MonkeyPatch()
    mp.setenv(env, key)
    srv = PineconeServer(key)
    try:
        yield srv
    finally:
        srv.stop()
        mp.undo()
