"""A turbopuffer **protocol test double** — not turbopuffer.

turbopuffer is a hosted service; nothing can run it on this machine. The connector's tests
drive the official ``turbopuffer`` client (pointed here with ``base_url``) over real HTTP
against this small stdlib server on 127.0.0.1, which implements, in memory, only the
endpoints the connector calls: list namespaces (``GET /v1/namespaces``), metadata
(``GET /v2/namespaces/:ns/metadata``), schema (``GET /v1/namespaces/:ns/schema``), write
(``POST /v2/namespaces/:ns``), query (``POST /v2/namespaces/:ns/query``) and delete
(``DELETE /v2/namespaces/:ns``).

**Checked against the client's generated types.** Every request body (and the list
query string) is validated against the client's params TypedDicts and its filter / rank
grammars, every response against the client's response models (``turbopuffer_model.py``):
a request that breaks them is answered 400 and recorded; a response that breaks them is
a bug of this double, answered 500 and recorded. ``take_violations()`` returns them, so a
test run fails when the double or the connector drifts from the API the client defines.

**Semantics from turbopuffer's documentation** (Write, Query, Limits), where the types say
nothing; they are this double's reading of it, not observed behaviour:

* ``Authorization: Bearer KEY`` must carry the double's key (else 401);
* namespace names: 1-128 of ``A-Z a-z 0-9 - _ .``; a namespace exists once a write made
  it (``create_namespace: true`` with the id type in ``schema``, or the first write of
  documents when it is omitted); ``create_namespace: false`` on a missing one is a 404;
* attribute types are fixed once declared or inferred (a value of another type is a 400);
  the vector is ``[N]f32`` with ``ann.distance_metric`` ``cosine_distance`` (1 - cos) or
  ``euclidean_squared``; a write's ``distance_metric`` must agree with it;
* ids: ``string`` (1-64 bytes), ``uint`` (0 to 2**64-1) or ``uuid``; an upsert replaces the
  whole document; ``null`` means absent (turbopuffer stores no nulls); array values hold
  no nulls;
* filters: ``Eq``/``NotEq`` (``null``: missing / present), ``In``/``NotIn``, ``Lt Lte Gt
  Gte`` (false on a missing attribute), ``Contains``/``ContainsAny`` and their ``Not``
  forms on arrays, ``And``/``Or``/``Not``. The negative operators (``NotEq``, ``NotIn``,
  ``NotContains(Any)``) are the complement of the positive ones, so they *match*
  documents lacking the attribute — the less convenient reading, which a connector must
  guard against. Filtering on a ``filterable: false`` attribute is a 400;
* query: ``rank_by`` ``["id"|attr, "asc"|"desc"]`` or ``[vector, "ANN"|"kNN", floats]``
  (exact kNN here, ties by id), ``top_k`` 1-1,200, ``offset`` only with an attribute
  order, ``include_attributes`` true / a list / false, ``vector_encoding`` float or base64;
  ``aggregate_by`` ``Count`` (not with ``rank_by``, ``top_k`` or ``include_attributes``);
* writes are visible at once (queries default to strong consistency);
* failures (any status) are injected on demand with ``fail(status, times, op=...)``.
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.protocol import turbopuffer_model as model
from tests.protocol.httpdouble import DoubleHandler, StatusFailureDouble

MAX_TOP_K = 1200
MAX_ID_BYTES = 64
MAX_LIST_PAGE = 1000
_NAMESPACE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_VECTOR_TYPE = re.compile(r"^\[(\d+)\]f32$")
_SCALARS = {"string", "int", "uint", "float", "bool", "uuid", "datetime"}
_ID_TYPES = {"string", "uint", "uuid"}


class ApiFailure(Exception):
    """An error answer: HTTP status and turbopuffer's ``{"status": "error", "error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bad(message: str) -> ApiFailure:
    return ApiFailure(400, message)


@dataclass
class NamespaceState:
    """One namespace: its attribute schema and documents (id -> attributes)."""

    name: str
    schema: dict[str, dict[str, Any]] = field(default_factory=dict)
    docs: dict[Any, dict[str, Any]] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    updated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def id_type(self) -> str:
        return str(self.schema.get("id", {}).get("type", "string"))

    @property
    def vector(self) -> tuple[str, int, str | None] | None:
        """(attribute, dimension, metric) of the vector attribute, if any."""
        for key, conf in self.schema.items():
            m = _VECTOR_TYPE.match(conf["type"])
            if m:
                ann = conf.get("ann")
                metric = ann.get("distance_metric") if isinstance(ann, dict) else None
                return key, int(m.group(1)), metric
        return None


def _value_type(v: Any) -> str | None:
    """The attribute type a JSON value infers (None: no type turbopuffer infers)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list) and v:
        kinds = {_value_type(x) for x in v}
        if len(kinds) == 1 and None not in kinds and not isinstance(v[0], list):
            return f"[]{kinds.pop()}"
    return None


def _fits(v: Any, t: str) -> bool:
    if t.startswith("[]"):
        return isinstance(v, list) and all(_fits(x, t[2:]) for x in v)
    if t == "bool":
        return isinstance(v, bool)
    if t == "int":
        return isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63
    if t == "uint":
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64
    if t == "float":
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if t == "uuid":
        return _uuid(v) is not None
    return isinstance(v, str)


def _uuid(v: Any) -> str | None:
    try:
        return str(uuid.UUID(v)) if isinstance(v, str) else None
    except ValueError:
        return None


def _check_id(v: Any, id_type: str) -> Any:
    if id_type == "uint":
        if not _fits(v, "uint"):
            raise _bad(f"id {v!r} is not a uint")
        return v
    if id_type == "uuid":
        u = _uuid(v)
        if u is None:
            raise _bad(f"id {v!r} is not a uuid")
        return u
    if not isinstance(v, str) or not 1 <= len(v.encode()) <= MAX_ID_BYTES:
        raise _bad(f"id {v!r} is not a string of 1-{MAX_ID_BYTES} bytes")
    return v


def _decode_vector(v: Any, dim: int) -> list[float]:
    if isinstance(v, str):
        raw = base64.b64decode(v, validate=True)
        if len(raw) != 4 * dim:
            raise _bad(f"vector has {len(raw) // 4} dimensions, expected {dim}")
        values = list(struct.unpack(f"<{dim}f", raw))
    else:
        if len(v) != dim:
            raise _bad(f"vector has {len(v)} dimensions, expected {dim}")
        values = list(struct.unpack(f"<{dim}f", struct.pack(f"<{dim}f", *v)))  # float32
    if not all(math.isfinite(x) for x in values):
        raise _bad("vector values must be finite")
    return values


def _distance(metric: str, q: list[float], v: list[float]) -> float:
    if metric == "euclidean_squared":
        return float(sum((a - b) ** 2 for a, b in zip(q, v, strict=True)))
    dot = sum(a * b for a, b in zip(q, v, strict=True))
    nq = math.sqrt(sum(a * a for a in q))
    nv = math.sqrt(sum(b * b for b in v))
    return 1.0 - (dot / (nq * nv) if nq and nv else 0.0)


def _compare(a: Any, b: Any) -> int | None:
    """-1/0/1, or None when ``a`` and ``b`` are not comparable (a missing value, types)."""
    if a is None or b is None or isinstance(a, list):
        return None
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return None if type(a) is not type(b) else (a > b) - (a < b)
    if (isinstance(a, num) and isinstance(b, num)) or (isinstance(a, str) and isinstance(b, str)):
        return (a > b) - (a < b)
    return None


class TurbopufferServer(StatusFailureDouble):
    """The API of one organisation and region on one port (``url`` is what ``?base_url=``
    points at); violations are of the client's types."""

    requests: list[tuple[str, int, Any]]  # (operation, HTTP status, body)

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.namespaces: dict[str, NamespaceState] = {}
        super().__init__()

    def _ns(self, name: str) -> NamespaceState:
        ns = self.namespaces.get(name)
        if ns is None:
            raise ApiFailure(404, f"namespace '{name}' was not found")
        return ns

    # -- operations ----------------------------------------------------------------------------
    def op_namespaces(self, q: dict[str, list[str]], _: str) -> Any:
        prefix = q.get("prefix", [""])[0]
        size = int(q.get("page_size", ["100"])[0])
        if not 1 <= size <= MAX_LIST_PAGE:
            raise _bad(f"page_size must be 1-{MAX_LIST_PAGE}")
        cursor = q.get("cursor", [""])[0]
        names = sorted(n for n in self.namespaces if n.startswith(prefix) and n > cursor)
        out: dict[str, Any] = {"namespaces": [{"id": n} for n in names[:size]]}
        if len(names) > size:
            out["next_cursor"] = names[size - 1]
        return out

    def op_metadata(self, _: Any, name: str) -> Any:
        ns = self._ns(name)
        size = len(json.dumps(list(ns.docs.values())))
        return {
            "approx_logical_bytes": size,
            "approx_row_count": len(ns.docs),
            "created_at": ns.created_at,
            "updated_at": ns.updated_at,
            "encryption": {"mode": "default"},
            "index": {"status": "up-to-date"},
            "schema": ns.schema,
        }

    def op_schema(self, _: Any, name: str) -> Any:
        return self._ns(name).schema

    def op_delete_all(self, _: Any, name: str) -> Any:
        self._ns(name)
        del self.namespaces[name]
        return {"status": "OK"}

    def _declare(self, ns: NamespaceState, schema: dict[str, Any]) -> None:
        for key, conf in schema.items():
            conf = {"type": conf} if isinstance(conf, str) else dict(conf)
            t = conf.get("type")
            if key == "id":
                if t not in _ID_TYPES:
                    raise _bad(f"id type must be one of {sorted(_ID_TYPES)}, not {t!r}")
            elif not (t in _SCALARS or (t or "").startswith("[]") or _VECTOR_TYPE.match(t or "")):
                raise _bad(f"attribute {key!r}: unsupported type {t!r}")
            old = ns.schema.get(key)
            if old is not None and old["type"] != t:
                raise _bad(f"attribute {key!r} has type {old['type']!r}; it cannot change")
            if _VECTOR_TYPE.match(t or "") and "ann" not in conf:
                conf["ann"] = True
            if not _VECTOR_TYPE.match(t or "") and key != "id":
                conf.setdefault("filterable", True)
            ns.schema[key] = {**(old or {}), **conf}

    def op_write(self, body: dict[str, Any], name: str) -> Any:
        if not _NAMESPACE.match(name):
            raise _bad(f"invalid namespace name {name!r}")
        unsupported = set(body) - {
            "upsert_columns", "deletes", "schema", "distance_metric", "create_namespace"
        }  # fmt: skip
        if unsupported:
            raise _bad(f"the double does not implement {sorted(unsupported)}")
        exists = name in self.namespaces
        create = body.get("create_namespace")
        columns = body.get("upsert_columns")
        if not exists and create is False:
            raise ApiFailure(404, f"namespace '{name}' was not found")
        if not exists and create is None and not columns:
            raise ApiFailure(404, f"namespace '{name}' was not found")
        ns = self.namespaces.get(name) or NamespaceState(name)
        # Work on a copy: a refused write changes nothing.
        draft = NamespaceState(
            name, json.loads(json.dumps(ns.schema)), dict(ns.docs), ns.created_at
        )
        self._declare(draft, body.get("schema") or {})
        if not exists and "id" not in draft.schema:
            if create:
                raise _bad("creating an empty namespace requires the id type in schema")
            draft.schema["id"] = {
                "type": "uint" if isinstance((columns or {}).get("id", [""])[0], int) else "string"
            }
        metric = body.get("distance_metric")
        vec = draft.vector
        if vec and vec[2] and metric and metric != vec[2]:
            raise _bad(f"distance_metric {metric!r} differs from the namespace's {vec[2]!r}")
        upserted = self._upsert(draft, columns, metric) if columns else 0
        deleted = 0
        for rid in body.get("deletes") or []:
            key = _check_id(rid, draft.id_type)
            deleted += draft.docs.pop(key, None) is not None
        ns.schema, ns.docs = draft.schema, draft.docs
        ns.updated_at = datetime.now(UTC).isoformat()
        self.namespaces[name] = ns
        out: dict[str, Any] = {
            "status": "OK",
            "message": "write succeeded",
            "rows_affected": upserted + deleted,
            "billing": {"billable_logical_bytes_written": len(json.dumps(body))},
        }
        if columns:
            out["rows_upserted"] = upserted
        if body.get("deletes"):
            out["rows_deleted"] = deleted
        return out

    def _upsert(self, ns: NamespaceState, columns: dict[str, Any], metric: str | None) -> int:
        ids = columns["id"]
        if any(len(v) != len(ids) for v in columns.values() if isinstance(v, list)):
            raise _bad("upsert_columns: every column needs one value per id")
        if "vector" in columns and ns.vector is None:
            first = next((v for v in columns["vector"] if v is not None), None)
            dim = len(base64.b64decode(first)) // 4 if isinstance(first, str) else len(first or [])
            ns.schema["vector"] = {"type": f"[{dim}]f32", "ann": True}
        vec = ns.vector
        if "vector" in columns and vec is not None:
            if metric is None and vec[2] is None:
                raise _bad("distance_metric is required when writing vectors")
            if vec[2] is None:
                ns.schema[vec[0]]["ann"] = {"distance_metric": metric}
        for key, values in columns.items():
            if key in ("id", "vector") or key in ns.schema:
                continue
            kinds = {_value_type(v) for v in values if v is not None}
            kinds.discard(None)
            if len(kinds) > 1 or not kinds:
                raise _bad(
                    f"attribute {key!r}: cannot infer one type from {sorted(map(str, kinds))}"
                )
            ns.schema[key] = {"type": kinds.pop(), "filterable": True}
        for i, rid in enumerate(ids):
            key = _check_id(rid, ns.id_type)
            doc: dict[str, Any] = {}
            for col, values in columns.items():
                v = values[i]
                if col == "id" or v is None:
                    continue
                if col == "vector":
                    assert vec is not None
                    doc[col] = _decode_vector(v, vec[1])
                    continue
                t = ns.schema[col]["type"]
                if _VECTOR_TYPE.match(t) or not _fits(v, t):
                    raise _bad(f"attribute {col!r} of id {rid!r}: {v!r} is not a {t}")
                if isinstance(v, list) and any(x is None for x in v):
                    raise _bad(f"attribute {col!r} of id {rid!r}: arrays hold no nulls")
                doc[col] = float(v) if t == "float" else v
            ns.docs[key] = doc
        return len(ids)

    def _matches(self, ns: NamespaceState, f: list[Any], rid: Any, doc: dict[str, Any]) -> bool:
        if f[0] == "And":
            return all(self._matches(ns, c, rid, doc) for c in f[1])
        if f[0] == "Or":
            return any(self._matches(ns, c, rid, doc) for c in f[1])
        if f[0] == "Not":
            return not self._matches(ns, f[1], rid, doc)
        attr, op, arg = f[0], f[1], f[2] if len(f) > 2 else None
        conf = ns.schema.get(attr, {})
        if attr != "id" and conf.get("filterable") is False:
            raise _bad(f"attribute {attr!r} is not filterable")
        value = rid if attr == "id" else doc.get(attr)
        if attr == "id" and ns.id_type == "uuid":
            arg = [_uuid(a) for a in arg] if isinstance(arg, list) else _uuid(arg)
        if op.startswith("Not"):
            positive = op[3:]
            if positive in ("Eq", "In", "Contains", "ContainsAny"):
                return not self._matches(ns, [attr, positive, arg], rid, doc)
            raise _bad(f"the double does not implement filter operator {op!r}")
        if op == "Eq":
            return value is None if arg is None else _compare(value, arg) == 0
        if op == "In":
            return value is not None and any(_compare(value, a) == 0 for a in arg)
        if op == "Contains":
            return isinstance(value, list) and any(_compare(x, arg) == 0 for x in value)
        if op == "ContainsAny":
            return isinstance(value, list) and any(_compare(x, a) == 0 for x in value for a in arg)
        if op in ("Lt", "Lte", "Gt", "Gte"):
            c = _compare(value, arg)
            return c is not None and {"Lt": c < 0, "Lte": c <= 0, "Gt": c > 0, "Gte": c >= 0}[op]
        raise _bad(f"the double does not implement filter operator {op!r}")

    def op_query(self, body: dict[str, Any], name: str) -> Any:
        ns = self._ns(name)
        flt = body.get("filters")
        hits = [
            (rid, doc) for rid, doc in ns.docs.items()
            if flt is None or self._matches(ns, flt, rid, doc)
        ]  # fmt: skip
        perf = {
            "approx_namespace_size": len(ns.docs), "cache_hit_ratio": 1.0,
            "cache_temperature": "hot", "exhaustive_search_count": len(ns.docs),
            "query_execution_ms": 1, "server_total_ms": 1,
        }  # fmt: skip
        billing = {"billable_logical_bytes_queried": 1, "billable_logical_bytes_returned": 1}
        if "aggregate_by" in body:
            if {"rank_by", "top_k", "include_attributes", "limit"} & set(body):
                raise _bad(
                    "aggregate_by cannot be combined with rank_by, top_k or include_attributes"
                )
            aggs: dict[str, Any] = {}
            for label, agg in body["aggregate_by"].items():
                if agg != ["Count"]:
                    raise _bad(f"the double implements only Count, not {agg!r}")
                aggs[label] = len(hits)
            return {"aggregations": aggs, "billing": billing, "performance": perf}
        rank = body.get("rank_by")
        top_k = body.get("top_k", body.get("limit"))
        if rank is None or top_k is None:
            raise _bad("rank_by and top_k are required unless aggregate_by is set")
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise _bad(f"top_k must be 1-{MAX_TOP_K}")
        offset = int(body.get("offset") or 0)
        dists: dict[Any, float] = {}
        if len(rank) == 2 and rank[1] in ("asc", "desc"):
            attr = rank[0]
            present = [h for h in hits if attr == "id" or h[1].get(attr) is not None]

            def sort_key(h: tuple[Any, dict[str, Any]]) -> Any:
                return h[0] if attr == "id" else (h[1][attr], h[0])

            hits = sorted(present, key=sort_key, reverse=rank[1] == "desc")
        elif len(rank) == 3 and rank[1] in ("ANN", "kNN") and isinstance(rank[2], list):
            if offset:
                raise _bad("offset needs an attribute order")
            vec = ns.vector
            if vec is None or rank[0] != vec[0]:
                raise _bad(f"no vector attribute {rank[0]!r}")
            q = _decode_vector(rank[2], vec[1])
            metric = vec[2] or body.get("distance_metric") or "cosine_distance"
            dists = {rid: _distance(metric, q, doc[vec[0]]) for rid, doc in hits if vec[0] in doc}
            hits = sorted((h for h in hits if h[0] in dists), key=lambda h: (dists[h[0]], h[0]))
        else:
            raise _bad(f"the double does not implement rank_by {rank!r}")
        hits = hits[offset : offset + top_k]
        include = body.get("include_attributes", False)
        encoding = body.get("vector_encoding", "float")
        if isinstance(include, list):
            unknown = [a for a in include if a not in ns.schema]
            if unknown:
                raise _bad(f"unknown attributes {unknown}")
        rows = []
        for rid, doc in hits:
            row: dict[str, Any] = {"id": rid}
            if dists:
                row["$dist"] = dists[rid]
            wanted = list(ns.schema) if include is True else include or []
            for attr in wanted:
                if attr == "id":
                    continue
                v = doc.get(attr)
                if attr == (ns.vector or ("",))[0] and v is not None and encoding == "base64":
                    v = base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
                row[attr] = v
            rows.append(row)
        return {"rows": rows, "billing": billing, "performance": perf}

    # -- HTTP plumbing ---------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: str, headers: Any, raw: bytes
    ) -> tuple[int, Any]:
        """One request: (HTTP status, JSON body)."""
        found = model.route(method, path)
        op = found[0].op if found else f"{method} {path}"
        body: Any = None
        try:
            if found is None:
                raise ApiFailure(404, f"no endpoint {method} {path}")
            ep, params = found
            if headers.get("Authorization") != f"Bearer {self.api_key}":
                raise ApiFailure(401, "unauthorized: the API key is not valid")
            injected = self._injected(ep.op)
            if injected:
                raise ApiFailure(injected, "injected failure")
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise _bad("the request body is not valid JSON") from None
            qs = parse_qs(query)
            problems: list[str] = []
            if ep.method == "GET" and ep.params is not None:
                problems = model.query_violations(ep.params, qs)
            elif ep.params is not None:
                problems = model.request_violations(ep.params, body)
            elif raw:
                problems = [f"{ep.op}: takes no body"]
            if problems:
                with self.lock:
                    self.model_violations += [f"request {ep.op}: {p}" for p in problems]
                raise _bad("; ".join(problems[:5]))
            with self.lock:
                handler = getattr(self, f"op_{ep.op}")
                arg = qs if ep.method == "GET" and ep.params is not None else body
                payload = handler(arg, unquote(params.get("namespace", "")))
            problems = ep.response(payload)
            if problems:
                with self.lock:
                    self.model_violations += [f"response {ep.op}: {p}" for p in problems]
                raise ApiFailure(500, "; ".join(problems[:5]))
            with self.lock:
                self.requests.append((ep.op, 200, body))
            return 200, payload
        except ApiFailure as exc:
            with self.lock:
                self.requests.append((op, exc.status, body))
            return exc.status, {"status": "error", "error": exc.message}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(DoubleHandler):
            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                status, payload = server.handle(
                    method, parts.path, parts.query, self.headers, self._body()
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
