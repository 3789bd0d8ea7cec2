"""An Elasticsearch / OpenSearch **protocol test double** — not the engines.

Neither engine can run on this machine (no package carries them), so the connectors'
tests drive the official clients (``elasticsearch`` 9.x, ``opensearch-py`` 3.x) over real
HTTP against this small stdlib server on 127.0.0.1. It speaks the subset of the REST API
the connectors use, in two dialects, following the engines' public API references:

* ``GET /`` cluster info (ES 9.2.0 with the ``X-Elastic-Product: Elasticsearch`` header
  the ES client checks on every response, and ``compatible-with=9`` media types;
  OpenSearch 3.1.0 with ``distribution: opensearch``);
* indexes: ``PUT/HEAD/DELETE /{index}``, ``GET /_mapping``, ``GET /{index}/_mapping``,
  ``POST /{index}/_refresh``; index names are validated (lowercase, no ``\\/*?"<>| ,#``);
  mappings are ``dynamic: strict`` or dynamic (new fields mapped like the engines do:
  ints ``long``, floats ``float``, strings ``text`` + ``.keyword``), ``_meta`` is kept;
  ``dense_vector`` (dims, similarity, index_options) and ``knn_vector`` (dimension,
  method) are validated;
* ``_bulk`` NDJSON (index / create / delete) with per-item results and errors
  (type-checked fields, vector dimensions, ES ``dot_product`` unit-length and cosine
  zero-vector checks, NaN refused), auto-creating a missing index like the engines;
* refresh semantics: searches and ``_count`` see only what the last refresh made
  visible (writes are not searchable until ``_refresh``);
* ``_search`` with ``query`` (``bool``/``term``/``terms``/``range``/``exists``/``ids``/
  ``match_all``; OpenSearch's ``knn`` query with ``filter``), ES's top-level ``knn`` with
  ``filter`` and ``num_candidates``, ``sort`` (fields, ``_shard_doc``, ``_doc``,
  ``_score``; ``_id`` only on OpenSearch, ES refuses its fielddata), ``search_after``,
  ``from``/``size`` (≤ 10,000 window), ``_source`` filtering (ES 9.2 leaves vectors out
  of ``_source`` unless ``exclude_vectors: false``), ``track_total_hits``, ``slice``;
* point in time: ES ``POST /{index}/_pit`` / ``DELETE /_pit``, OpenSearch
  ``POST /{index}/_search/point_in_time`` / ``DELETE /_search/point_in_time``; a PIT is
  a frozen snapshot; with a PIT, ES appends the implicit ``_shard_doc`` tiebreaker;
* errors as ``{"error": {"root_cause": [...], "type", "reason"}, "status": N}``; optional
  API key / basic auth (401 ``security_exception``); ``fail(status, times)`` injects
  429/5xx responses and ``reject_items(n)`` makes the next bulk refuse n items with 429.

kNN here is exact (brute force); scores use the engines' documented formulas.
"""

from __future__ import annotations

import base64
import json
import math
import re
import ssl
import threading
import uuid
from bisect import bisect_right
from functools import cmp_to_key
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_WINDOW = 10_000
_BAD_NAME = re.compile(r'[\\/*?"<>| ,#:A-Z]')
_SEARCH_KEYS = {
    "query", "knn", "size", "from", "sort", "search_after", "pit", "_source",
    "track_total_hits", "slice",
}  # fmt: skip


class ApiFailure(Exception):
    """An error response in the engines' shape."""

    def __init__(
        self,
        status: int,
        etype: str,
        reason: str,
        caused_by: dict[str, Any] | None = None,
        raw: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.status, self.etype, self.reason, self.caused_by = status, etype, reason, caused_by
        self.raw = raw  # the engines answer unknown routes with a bare string "error"

    def error(self) -> dict[str, Any]:
        """The ``error`` object (also the shape of a refused bulk item's ``error``)."""
        err: dict[str, Any] = {"type": self.etype, "reason": self.reason}
        if self.caused_by:
            err["caused_by"] = self.caused_by
        return err

    def body(self) -> dict[str, Any]:
        if self.raw is not None:
            return {"error": self.raw, "status": self.status}
        err = self.error()
        root = {"type": self.etype, "reason": self.reason}
        return {"error": {"root_cause": [root], **err}, "status": self.status}


def _parse_json(text: str | bytes) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"Non-standard token '{token}'")

    return json.loads(text, parse_constant=refuse)


def _values(v: Any) -> list[Any]:
    return [x for x in (v if isinstance(v, list) else [v]) if x is not None]


def _is_int(x: Any, bits: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and -(2**bits) <= x < 2**bits


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


# What each field type accepts (JSON numbers/strings/booleans as the engines coerce them).
_CHECKS: dict[str, Any] = {
    "long": lambda x: _is_int(x, 63),
    "integer": lambda x: _is_int(x, 31),
    "double": _is_number,
    "float": _is_number,
    "boolean": lambda x: isinstance(x, bool) or x in ("true", "false"),
    "keyword": lambda x: isinstance(x, str | int | float | bool),
    "text": lambda x: isinstance(x, str | int | float | bool),
}


def _score(similarity: str, q: list[float], v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(q, v, strict=True))
    if similarity in ("cosine", "cosinesimil"):
        nq, nv = math.sqrt(sum(a * a for a in q)), math.sqrt(sum(b * b for b in v))
        return (1 + dot / (nq * nv)) / 2 if nq and nv else 0.0
    if similarity == "dot_product":
        return (1 + dot) / 2
    if similarity in ("max_inner_product", "innerproduct"):
        return dot + 1 if dot >= 0 else 1 / (1 - dot)
    d2 = sum((a - b) ** 2 for a, b in zip(q, v, strict=True))
    return 1 / (1 + d2)


class Index:
    """One index: mapping, live documents and the searchable (refreshed) view."""

    def __init__(self, name: str, settings: dict[str, Any], mappings: dict[str, Any]) -> None:
        self.name, self.settings, self.mappings = name, settings, mappings
        self.uuid = uuid.uuid4().hex[:22]
        self.docs: dict[str, tuple[int, dict[str, Any]]] = {}  # _id -> (doc number, source)
        self.searchable: dict[str, tuple[int, dict[str, Any]]] = {}
        self.next_doc = 0
        self.version: dict[str, int] = {}

    @property
    def props(self) -> dict[str, Any]:
        props: dict[str, Any] = self.mappings.setdefault("properties", {})
        return props


class SearchServer:
    """The double: ``SearchServer("elasticsearch")`` or ``SearchServer("opensearch")``."""

    def __init__(
        self,
        dialect: str,
        *,
        api_key: str | None = None,
        user: str | None = None,
        password: str | None = None,
        version: str | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        assert dialect in ("elasticsearch", "opensearch")
        self.dialect = dialect
        self.es = dialect == "elasticsearch"
        # ES 9.1 added _source.exclude_vectors, 9.2 made it the default; OpenSearch 2.4
        # added the PIT API.
        self.version = version or ("9.2.0" if self.es else "3.1.0")
        self.vtuple = tuple(int(x) for x in self.version.split("."))
        self.auth = {f"ApiKey {api_key}"} if api_key else set()
        if password is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.auth.add(f"Basic {token}")
        self.indexes: dict[str, Index] = {}
        self.pits: dict[str, tuple[str, dict[str, tuple[int, dict[str, Any]]]]] = {}
        self.pit_rows: dict[str, dict[str, Any]] = {}
        self.lock = threading.RLock()
        self.failures: list[tuple[int, str]] = []
        self.item_rejections = 0
        self.requests: list[tuple[str, str]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        if tls is not None:  # (certfile, keyfile): serve HTTPS like a secured cluster
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def uri(self, **params: str) -> str:
        """Connection URI for the connector (``elasticsearch://`` / ``opensearch://``)."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{self.dialect}://127.0.0.1:{self.port}" + (f"?{query}" if query else "")

    def fail(self, status: int, times: int = 1, path: str = "") -> None:
        """The next ``times`` requests (whose path contains ``path``) answer ``status``
        (429, 502, 503, 504...)."""
        with self.lock:
            self.failures += [(status, path)] * times

    def merge(self, name: str) -> None:
        """Renumber an index's documents, as a Lucene segment merge does: ``_shard_doc``
        values of a new PIT differ from an older PIT's."""
        with self.lock:
            idx = self.indexes[name]
            order = list(reversed(idx.docs))
            idx.docs = {rid: (idx.next_doc + i, idx.docs[rid][1]) for i, rid in enumerate(order)}
            idx.next_doc += len(order)
            idx.searchable = {rid: idx.docs[rid] for rid in idx.searchable if rid in idx.docs}

    def reject_items(self, n: int) -> None:
        """The next bulk request refuses its first ``n`` items with 429 (queue full)."""
        with self.lock:
            self.item_rejections = n

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    # -- dispatch --------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], body: bytes) -> Any:
        """Route one request; returns the JSON body or raises ApiFailure."""
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        with self.lock:
            self.requests.append((method, path))
            due = next((f for f in self.failures if f[1] in path), None)
            if due is not None:
                self.failures.remove(due)
                status = due[0]
                etype = "es_rejected_execution_exception" if status == 429 else "unavailable"
                raise ApiFailure(status, etype, f"injected failure {status}")
            if not parts:
                return self._info()
            if parts == ["_mapping"]:
                return {n: {"mappings": i.mappings} for n, i in self.indexes.items()}
            if parts[0] == "_bulk":
                return self._bulk(None, body, query)
            if parts[0] == "_search" and len(parts) == 1:
                return self._search(None, self._json(body))
            if self._is_pit_path(parts) and method == "DELETE":
                return self._close_pit(self._json(body))
            name = parts[0]
            if len(parts) == 1:
                return self._index_op(method, name, body)
            rest = "/".join(parts[1:])
            if rest == "_bulk":
                return self._bulk(name, body, query)
            idx = self._get(name)
            if rest == "_mapping":
                return {name: {"mappings": idx.mappings}}
            if rest == "_refresh":
                idx.searchable = dict(idx.docs)
                return {"_shards": {"total": 1, "successful": 1, "failed": 0}}
            if rest == "_count":
                q = self._json(body) or {}
                if set(q) - {"query"}:
                    raise ApiFailure(
                        400, "parsing_exception", f"request does not support {sorted(q)}"
                    )
                docs = idx.searchable
                n = sum(1 for i, (_, s) in docs.items() if self._match(idx, q.get("query"), i, s))
                return {
                    "count": n,
                    "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                }
            if rest == "_search":
                return self._search(idx, self._json(body))
            if self._is_pit_path(parts[1:]) and method == "POST" and self._has_pit():
                return self._open_pit(idx)
            raise ApiFailure(
                400, "", "", raw=f"no handler found for uri [{path}] and method [{method}]"
            )

    def _has_pit(self) -> bool:
        return self.es or self.vtuple >= (2, 4)

    def _is_pit_path(self, parts: list[str]) -> bool:
        return parts == (["_pit"] if self.es else ["_search", "point_in_time"])

    @staticmethod
    def _json(body: bytes) -> Any:
        if not body:
            return None
        try:
            return _parse_json(body)
        except ValueError as exc:
            raise ApiFailure(400, "x_content_parse_exception", f"failed to parse: {exc}") from None

    def _info(self) -> dict[str, Any]:
        if self.es:
            version = {
                "number": self.version,
                "build_flavor": "default",
                "build_type": "docker",
                "lucene_version": "10.3.1",
                "minimum_wire_compatibility_version": "8.19.0",
                "minimum_index_compatibility_version": "8.0.0",
            }
            tagline = "You Know, for Search"
        else:
            version = {
                "distribution": "opensearch",
                "number": self.version,
                "lucene_version": "10.2.1",
            }
            tagline = "The OpenSearch Project: https://opensearch.org/"
        return {
            "name": "double-0",
            "cluster_name": "vecmigrate-double",
            "cluster_uuid": "double",
            "version": version,
            "tagline": tagline,
        }

    def _get(self, name: str) -> Index:
        idx = self.indexes.get(name)
        if idx is None:
            raise ApiFailure(404, "index_not_found_exception", f"no such index [{name}]")
        return idx

    # -- indexes -----------------------------------------------------------------------------
    def _index_op(self, method: str, name: str, body: bytes) -> Any:
        if method == "HEAD":
            self._get(name)
            return None
        if method == "DELETE":
            self._get(name)
            del self.indexes[name]
            return {"acknowledged": True}
        if method == "PUT":
            spec = self._json(body) or {}
            self._create(name, spec.get("settings") or {}, spec.get("mappings") or {})
            return {"acknowledged": True, "shards_acknowledged": True, "index": name}
        if method == "GET":
            idx = self._get(name)
            return {name: {"aliases": {}, "mappings": idx.mappings, "settings": idx.settings}}
        raise ApiFailure(405, "method_not_allowed", f"{method} not allowed on /{name}")

    def _create(self, name: str, settings: dict[str, Any], mappings: dict[str, Any]) -> Index:
        if name in self.indexes:
            uid = self.indexes[name].uuid
            raise ApiFailure(
                400, "resource_already_exists_exception", f"index [{name}/{uid}] already exists"
            )
        if _BAD_NAME.search(name) or name.startswith(("-", "_", "+")) or name in (".", ".."):
            raise ApiFailure(
                400,
                "invalid_index_name_exception",
                f"Invalid index name [{name}], must be lowercase",
            )
        for field, spec in (mappings.get("properties") or {}).items():
            self._check_mapping(field, spec)
        idx = Index(name, settings, json.loads(json.dumps(mappings)))
        self.indexes[name] = idx
        return idx

    def _check_mapping(self, field: str, spec: dict[str, Any]) -> None:
        kind = spec.get("type")
        bad = None
        if kind == "dense_vector":
            if not self.es:
                bad = "No handler for type [dense_vector]"
            elif not 1 <= int(spec.get("dims", 0)) <= 4096:
                bad = (
                    f"The number of dimensions should be in the range [1, 4096] "
                    f"but was [{spec.get('dims')}]"
                )
            elif spec.get("similarity", "cosine") not in (
                "cosine", "dot_product", "l2_norm", "max_inner_product"
            ):  # fmt: skip
                bad = f"Unknown value [{spec.get('similarity')}] for field [similarity]"
            elif (spec.get("index_options") or {}).get("type", "hnsw") not in (
                "hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw", "flat", "int8_flat", "int4_flat",
                "bbq_flat", "bbq_disk",
            ):  # fmt: skip
                bad = f"Unknown vector index options type [{spec['index_options'].get('type')}]"
        elif kind == "knn_vector":
            method = spec.get("method") or {}
            if self.es:
                bad = "No handler for type [knn_vector]"
            elif not 1 <= int(spec.get("dimension", 0)) <= 16000:
                bad = f"Dimension value must be in [1, 16000] but was [{spec.get('dimension')}]"
            elif method and method.get("engine", "faiss") not in ("lucene", "faiss", "nmslib"):
                bad = f"Invalid engine [{method.get('engine')}]"
            elif method.get("space_type", "l2") not in ("l2", "cosinesimil", "innerproduct"):
                bad = f"Unable to find space: {method.get('space_type')}"
        elif kind not in (
            None, "keyword", "text", "long", "integer", "double", "float", "boolean", "object",
            "date", "match_only_text",
        ):  # fmt: skip
            bad = f"No handler for type [{kind}] declared on field [{field}]"
        if bad:
            raise ApiFailure(400, "mapper_parsing_exception", f"Failed to parse mapping: {bad}")

    # -- writing -----------------------------------------------------------------------------
    def _bulk(self, default: str | None, body: bytes, query: dict[str, str]) -> dict[str, Any]:
        lines = [ln for ln in body.decode().split("\n") if ln.strip()]
        items: list[dict[str, Any]] = []
        rejections, self.item_rejections = self.item_rejections, 0
        i = 0
        while i < len(lines):
            try:
                action_line = _parse_json(lines[i])
                ((action, meta),) = action_line.items()
            except ValueError as exc:
                raise ApiFailure(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{i + 1}]: {exc}",
                ) from None
            if action not in ("index", "create", "delete"):
                raise ApiFailure(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{i + 1}], expected one of [create, "
                    f"delete, index, update] but found [{action}]",
                )
            source = None
            if action != "delete":
                i += 1
                if i >= len(lines):
                    raise ApiFailure(
                        400,
                        "action_request_validation_exception",
                        "Validation Failed: 1: no requests added;",
                    )
                source = lines[i]
            i += 1
            name = meta.get("_index", default)
            rid = str(meta.get("_id") or uuid.uuid4().hex[:20])
            result: dict[str, Any] = {"_index": name, "_id": rid}
            try:
                if rejections > 0:
                    rejections -= 1
                    raise ApiFailure(
                        429,
                        "es_rejected_execution_exception",
                        "rejected execution of coordinating operation: queue capacity reached",
                    )
                status, outcome = self._apply(action, name, rid, source)
                result.update(outcome)
                result["status"] = status
            except ApiFailure as exc:
                result["status"] = exc.status
                result["error"] = {**exc.error(), "index": name}
            items.append({action: result})
        if query.get("refresh") in ("true", "", "wait_for"):
            for idx in self.indexes.values():
                idx.searchable = dict(idx.docs)
        return {
            "took": 1,
            "errors": any("error" in next(iter(it.values())) for it in items),
            "items": items,
        }

    def _apply(
        self, action: str, name: str | None, rid: str, source: str | None
    ) -> tuple[int, dict[str, Any]]:
        if name is None:
            raise ApiFailure(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;",
            )
        idx = self.indexes.get(name) or self._create(name, {}, {})
        shards = {"total": 2, "successful": 1, "failed": 0}
        if action == "delete":
            found = idx.docs.pop(rid, None) is not None
            version = idx.version[rid] = idx.version.get(rid, 0) + 1
            return (200 if found else 404), {
                "_version": version,
                "result": "deleted" if found else "not_found",
                "_shards": shards,
            }
        if action == "create" and rid in idx.docs:
            raise ApiFailure(
                409,
                "version_conflict_engine_exception",
                f"[{rid}]: version conflict, document already exists",
            )
        try:
            doc = _parse_json(source or "")
        except ValueError as exc:
            kind = "document_parsing_exception" if self.es else "mapper_parsing_exception"
            raise ApiFailure(400, kind, f"[1:1] failed to parse: {exc}") from None
        if not isinstance(doc, dict):
            raise ApiFailure(
                400,
                "document_parsing_exception" if self.es else "mapper_parsing_exception",
                "failed to parse, document is empty",
            )
        self._check_doc(idx, rid, doc)
        existed = rid in idx.docs
        idx.docs[rid] = (idx.next_doc, doc)
        idx.next_doc += 1
        version = idx.version[rid] = idx.version.get(rid, 0) + 1
        return (200 if existed else 201), {
            "_version": version,
            "result": "updated" if existed else "created",
            "_shards": shards,
            "_seq_no": idx.next_doc,
            "_primary_term": 1,
        }

    def _check_doc(
        self,
        idx: Index,
        rid: str,
        doc: dict[str, Any],
        props: dict[str, Any] | None = None,
        prefix: str = "",
    ) -> None:
        """Type-check a document against the mapping, mapping new fields dynamically
        (objects recurse into their own properties)."""
        kind = "document_parsing_exception" if self.es else "mapper_parsing_exception"
        props = idx.props if props is None else props
        for name, value in doc.items():
            field = prefix + name
            spec = props.get(name)
            if spec is None:
                if idx.mappings.get("dynamic") in ("strict", "strict_allow_templates"):
                    raise ApiFailure(
                        400,
                        "strict_dynamic_mapping_exception",
                        f"[1:2] mapping set to strict, dynamic introduction of [{field}] "
                        "within [_doc] is not allowed",
                    )
                if idx.mappings.get("dynamic") is False or idx.mappings.get("dynamic") == "false":
                    continue
                sample = next(iter(_values(value)), None)
                if sample is None:
                    continue
                if isinstance(sample, bool):
                    spec = {"type": "boolean"}
                elif isinstance(sample, int):
                    spec = {"type": "long"}
                elif isinstance(sample, float):
                    spec = {"type": "float"}
                elif isinstance(sample, str):
                    spec = {
                        "type": "text",
                        "fields": {"keyword": {"type": "keyword", "ignore_above": 256}},
                    }
                else:
                    spec = {"properties": {}}
                props[name] = spec
            t = spec.get("type", "object")
            if t == "object" and isinstance(value, dict):
                self._check_doc(idx, rid, value, spec.setdefault("properties", {}), field + ".")
                continue
            if t in ("dense_vector", "knn_vector"):
                self._check_vector(kind, field, spec, rid, value)
                continue
            ok = _CHECKS.get(t)
            if ok is not None and not all(ok(v) for v in _values(value)):
                preview = json.dumps(value)[:20]
                raise ApiFailure(
                    400,
                    kind,
                    f"[1:2] failed to parse field [{field}] of type [{t}] in document with id "
                    f"'{rid}'. Preview of field's value: '{preview}'",
                )

    def _check_vector(
        self, kind: str, field: str, spec: dict[str, Any], rid: str, value: Any
    ) -> None:
        dims = int(spec.get("dims") or spec.get("dimension") or 0)
        if not isinstance(value, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in value
        ):
            raise ApiFailure(
                400,
                kind,
                f"[1:2] failed to parse field [{field}] of type [{spec['type']}] in document "
                f"with id '{rid}'",
            )
        msg = None
        sim = (
            spec.get("similarity", "cosine")
            if self.es
            else (spec.get("method") or {}).get("space_type", "l2")
        )
        norm2 = sum(x * x for x in value) if len(value) == dims else 1.0
        if len(value) != dims:
            msg = (
                f"The [dense_vector] field [{field}] in doc [document with id '{rid}'] has a "
                f"different number of dimensions [{len(value)}] than defined in the mapping "
                f"[{dims}]"
                if self.es
                else f"Vector dimension mismatch. Expected: {dims}, Given: {len(value)}"
            )
        elif sim in ("cosine", "cosinesimil") and norm2 == 0:
            msg = (
                "The [cosine] similarity does not support vectors with zero magnitude. "
                f"Preview of invalid vector: {value[:5]}"
                if self.es
                else "zero vector is not supported when space type is [cosinesimil]"
            )
        elif sim == "dot_product" and abs(math.sqrt(norm2) - 1) > 1e-4:
            msg = (
                "The [dot_product] similarity can only be used with unit-length vectors. "
                f"Preview of invalid vector: {value[:5]}"
            )
        if msg is None:
            return
        cause = {"type": "illegal_argument_exception", "reason": msg}
        if self.es:  # ES: "failed to parse: <why>"; OpenSearch names the field
            raise ApiFailure(400, kind, f"[1:2] failed to parse: {msg}", cause)
        preview = json.dumps(value)[:20]
        raise ApiFailure(
            400,
            kind,
            f"failed to parse field [{field}] of type [knn_vector] in document with id "
            f"'{rid}'. Preview of field's value: '{preview}'",
            cause,
        )

    # -- searching ---------------------------------------------------------------------------
    def _field_spec(self, idx: Index, field: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"properties": idx.props}
        for part in field.split("."):
            spec = (
                (spec.get("properties") or {}).get(part)
                or (spec.get("fields") or {}).get(part)
                or {}
            )
        return spec

    def _doc_values(self, idx: Index, field: str, src: dict[str, Any]) -> list[Any]:
        # Walk object paths ("metadata.source"); a multi-field ("title.keyword") reads its
        # parent's value.
        value: Any = src
        for part in field.split("."):
            if not isinstance(value, dict):
                break
            value = value.get(part)
        return _values(value)

    def _coerce(self, spec: dict[str, Any], v: Any) -> Any:
        t = spec.get("type")
        if t in ("long", "integer", "double", "float"):
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
        if t == "boolean":
            return v if isinstance(v, bool) else {"true": True, "false": False}.get(str(v), v)
        if t == "keyword":
            return json.dumps(v) if isinstance(v, bool) else str(v)
        return v

    def _match(self, idx: Index, q: Any, rid: str, src: dict[str, Any]) -> bool:
        if q is None:
            return True
        if not isinstance(q, dict) or len(q) != 1:
            raise ApiFailure(
                400, "parsing_exception", "[_na] query malformed, must start with start_object"
            )
        ((kind, arg),) = q.items()
        if kind == "match_all":
            return True
        if kind == "match_none":
            return False
        if kind == "bool":
            unknown = set(arg) - {
                "must",
                "filter",
                "should",
                "must_not",
                "minimum_should_match",
                "boost",
            }
            if unknown:
                raise ApiFailure(
                    400,
                    "parsing_exception",
                    f"[bool] query does not support [{sorted(unknown)[0]}]",
                )

            def as_list(x: Any) -> list[Any]:
                return x if isinstance(x, list) else ([x] if x else [])

            must = as_list(arg.get("must")) + as_list(arg.get("filter"))
            should = as_list(arg.get("should"))
            if not all(self._match(idx, c, rid, src) for c in must):
                return False
            if any(self._match(idx, c, rid, src) for c in as_list(arg.get("must_not"))):
                return False
            msm = int(arg.get("minimum_should_match", 0 if must else 1))
            return not should or sum(self._match(idx, c, rid, src) for c in should) >= msm
        if kind == "ids":
            return rid in {str(x) for x in arg.get("values", [])}
        if kind == "exists":
            return bool(self._doc_values(idx, arg["field"], src))
        if kind in ("term", "terms", "range"):
            ((field, spec_arg),) = ((k, v) for k, v in arg.items() if k != "boost")
            spec = self._field_spec(idx, field)
            have = [self._coerce(spec, v) for v in self._doc_values(idx, field, src)]
            if spec.get("type") == "text":
                have = [w for h in have for w in str(h).lower().split()]
            if kind == "term":
                value = spec_arg["value"] if isinstance(spec_arg, dict) else spec_arg
                return self._coerce(spec, value) in have
            if kind == "terms":
                if not isinstance(spec_arg, list):
                    raise ApiFailure(
                        400, "parsing_exception", "[terms] query does not support [" + field + "]"
                    )
                return any(self._coerce(spec, v) in have for v in spec_arg)
            ops = {
                "gt": lambda a, b: a > b,
                "gte": lambda a, b: a >= b,
                "lt": lambda a, b: a < b,
                "lte": lambda a, b: a <= b,
            }
            bounds = [(ops[o], self._coerce(spec, b)) for o, b in spec_arg.items() if o in ops]
            return any(all(f(h, b) for f, b in bounds) for h in have)
        raise ApiFailure(400, "parsing_exception", f"unknown query [{kind}]")

    def _open_pit(self, idx: Index) -> dict[str, Any]:
        pid = base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).decode().rstrip("=")
        self.pits[pid] = (idx.name, dict(idx.searchable))
        shards = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
        if self.es:
            return {"id": pid, "_shards": shards}
        return {"pit_id": pid, "_shards": shards, "creation_time": 1764000000000}

    def _close_pit(self, body: Any) -> dict[str, Any]:
        ids = (body or {}).get("id" if self.es else "pit_id")
        ids = ids if isinstance(ids, list) else [ids]
        freed = [i for i in ids if self.pits.pop(i, None) is not None]
        for i in freed:
            self.pit_rows.pop(i, None)
        if self.es:
            if not freed:
                raise ApiFailure(404, "search_context_missing_exception", "No search context found")
            return {"succeeded": True, "num_freed": len(freed)}
        return {"pits": [{"pit_id": i, "successful": i in freed} for i in ids]}

    def _search(self, idx: Index | None, body: Any) -> dict[str, Any]:
        body = body or {}
        unknown = set(body) - _SEARCH_KEYS - (set() if self.es else {"knn"})
        if unknown or (not self.es and "knn" in body):
            key = sorted(unknown or {"knn"})[0]
            raise ApiFailure(
                400, "parsing_exception", f"Unknown key for a START_OBJECT in [{key}]."
            )
        pit = body.get("pit")
        if pit is not None:
            if idx is not None:
                raise ApiFailure(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: [indices] cannot be used with point in time. Do "
                    "not specify any index with point in time.;",
                )
            entry = self.pits.get(pit.get("id"))
            if entry is None:
                raise ApiFailure(
                    404,
                    "search_context_missing_exception",
                    f"No search context found for id [{pit.get('id')}]",
                )
            idx = self._get(entry[0])
            docs = entry[1]
        elif idx is None:
            raise ApiFailure(
                400,
                "illegal_argument_exception",
                "searching all indexes is not supported by this double",
            )
        else:
            docs = idx.searchable
        size, start = int(body.get("size", 10)), int(body.get("from", 0))
        if size + start > MAX_WINDOW:
            raise ApiFailure(
                400,
                "illegal_argument_exception",
                "Result window is too large, from + size must be less than or equal to: "
                f"[{MAX_WINDOW}] but was [{size + start}].",
            )
        query = body.get("query")
        knn = body.get("knn") if self.es else None
        os_knn = query.get("knn") if isinstance(query, dict) and not self.es else None
        sort = body.get("sort")
        sort = sort if isinstance(sort, list) else ([sort] if sort else [])
        if (
            pit is not None
            and self.es
            and "_shard_doc" not in [s if isinstance(s, str) else next(iter(s)) for s in sort]
        ):
            sort = [*sort, "_shard_doc"]  # ES's implicit PIT tiebreaker
        after = body.get("search_after")
        if after is not None and not sort:
            raise ApiFailure(
                400, "illegal_argument_exception", "[search_after] can only be used with a sort"
            )
        if after is not None and len(after) != len(sort):
            raise ApiFailure(
                400,
                "illegal_argument_exception",
                f"search_after has {len(after)} value(s) but sort has {len(sort)}.",
            )
        # A PIT is frozen: its ordered rows are computed once per query, slice and sort.
        key = json.dumps([query, knn, body.get("slice"), sort], sort_keys=True)
        cache = self.pit_rows.setdefault(pit["id"], {}) if pit is not None else {}
        rows = cache.get(key)
        if rows is None:
            rows = self._ordered(idx, docs, body, query, knn, os_knn, sort)
            cache[key] = rows
        total = len(rows)
        ordered = rows
        if after is not None:
            order = cmp_to_key(lambda x, y: self._cmp(x, y, sort))
            ordered = rows[bisect_right(rows, order(after), key=lambda r: order(r[0])) :]
        page = ordered[start : start + size]
        hits = []
        for values, (score, _num, rid, src) in page:
            hit: dict[str, Any] = {
                "_index": idx.name,
                "_id": rid,
                "_score": None if sort else score,
            }
            source = self._filter_source(idx, src, body.get("_source", True))
            if source is not None:
                hit["_source"] = source
            if sort:
                hit["sort"] = values
            hits.append(hit)
        out: dict[str, Any] = {
            "took": 1,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        }
        if pit is not None:
            out["pit_id"] = pit["id"]
        hits_obj: dict[str, Any] = {
            "max_score": None if sort or not page else max(h["_score"] for h in hits),
            "hits": hits,
        }
        if body.get("track_total_hits", True) is not False:
            hits_obj["total"] = {"value": total, "relation": "eq"}
        out["hits"] = hits_obj
        return out

    def _ordered(
        self,
        idx: Index,
        docs: dict[str, tuple[int, dict[str, Any]]],
        body: dict[str, Any],
        query: Any,
        knn: Any,
        os_knn: Any,
        sort: list[Any],
    ) -> list[tuple[list[Any], tuple[float, int, str, dict[str, Any]]]]:
        """Matching rows with their sort values, in result order."""
        scored: list[tuple[float, int, str, dict[str, Any]]] = []
        if knn is not None or os_knn is not None:
            scored = self._knn(idx, docs, knn, os_knn, query if knn is not None else None)
        else:
            for rid, (num, src) in docs.items():
                if self._match(idx, query, rid, src):
                    scored.append((1.0, num, rid, src))
        if "slice" in body:
            sl = body["slice"]
            scored = [
                s
                for s in scored
                if int(uuid.uuid5(uuid.NAMESPACE_OID, s[2]).int) % int(sl["max"]) == int(sl["id"])
            ]
        if not sort:
            return [([], s) for s in sorted(scored, key=lambda s: (-s[0], s[1]))]
        order = cmp_to_key(lambda x, y: self._cmp(x, y, sort))
        rows = [(self._sort_values(idx, sort, s), s) for s in scored]
        rows.sort(key=lambda r: order(r[0]))
        return rows

    def _knn(
        self, idx: Index, docs: dict[str, Any], knn: Any, os_knn: Any, query: Any
    ) -> list[tuple[float, int, str, dict[str, Any]]]:
        if knn is not None:
            field, vector, k = knn.get("field"), knn.get("query_vector"), int(knn.get("k", 10))
            cands = int(knn.get("num_candidates", max(k, 100)))
            if cands < k:
                raise ApiFailure(
                    400, "illegal_argument_exception", "[num_candidates] cannot be less than [k]"
                )
            if cands > 10_000:
                raise ApiFailure(
                    400, "illegal_argument_exception", "[num_candidates] cannot exceed [10000]"
                )
            flt = knn.get("filter")
            filters = flt if isinstance(flt, list) else ([flt] if flt else [])
            spec = idx.props.get(field) or {}
            if spec.get("type") != "dense_vector":
                raise ApiFailure(
                    400,
                    "illegal_argument_exception",
                    "[knn] queries are only supported on [dense_vector] fields, field "
                    f"[{field}] is not",
                )
            similarity = spec.get("similarity", "cosine")
        else:
            ((field, arg),) = os_knn.items()
            vector, k = arg.get("vector"), int(arg.get("k", 10))
            filters = [arg["filter"]] if arg.get("filter") else []
            spec = idx.props.get(field) or {}
            if spec.get("type") != "knn_vector":
                raise ApiFailure(
                    400, "illegal_argument_exception", f"Field '{field}' is not knn_vector type."
                )
            similarity = (spec.get("method") or {}).get("space_type") or spec.get(
                "space_type", "l2"
            )
        dims = int(spec.get("dims") or spec.get("dimension"))
        if not isinstance(vector, list) or len(vector) != dims:
            raise ApiFailure(
                400,
                "illegal_argument_exception",
                f"the query vector has a different number of dimensions [{len(vector or [])}] "
                f"than the document vectors [{dims}]",
            )
        scored = []
        for rid, (num, src) in docs.items():
            v = src.get(field)
            if isinstance(v, list) and all(self._match(idx, f, rid, src) for f in filters):
                scored.append((_score(similarity, vector, v), num, rid, src))
        scored.sort(key=lambda s: (-s[0], s[1]))
        scored = scored[:k]
        if query is not None:  # ES: knn hits combined with a query; only match_all-like here
            scored = [s for s in scored if self._match(idx, query, s[2], s[3])]
        return scored

    @staticmethod
    def _order(s: Any) -> str:
        if isinstance(s, str):
            return "desc" if s == "_score" else "asc"
        ((_, v),) = s.items()
        return str(v.get("order", "asc") if isinstance(v, dict) else v)

    def _sort_values(
        self, idx: Index, sort: list[Any], row: tuple[float, int, str, dict[str, Any]]
    ) -> list[Any]:
        score, num, rid, src = row
        out: list[Any] = []
        for s in sort:
            field = s if isinstance(s, str) else next(iter(s))
            if field in ("_shard_doc", "_doc"):
                out.append(num)
            elif field == "_score":
                out.append(score)
            elif field == "_id":
                if self.es:
                    raise ApiFailure(
                        400,
                        "illegal_argument_exception",
                        "Fielddata access on the _id field is disallowed, you can re-enable "
                        "it by updating the dynamic cluster setting: "
                        "indices.id_field_data.enabled",
                    )
                out.append(rid)
            else:
                spec = self._field_spec(idx, field)
                if spec.get("type") == "text":
                    raise ApiFailure(
                        400,
                        "illegal_argument_exception",
                        "Text fields are not optimised for operations that require "
                        "per-document field data like aggregations and sorting, so these "
                        "operations are disabled by default. Please use a keyword field "
                        f"instead. [{field}]",
                    )
                vals = self._doc_values(idx, field, src)
                out.append(min(vals) if vals else None)
        return out

    def _cmp(self, values: list[Any], other: list[Any], sort: list[Any]) -> int:
        """Compare two rows of sort values; missing values sort last in both orders."""
        for v, a, s in zip(values, other, sort, strict=True):
            if v == a:
                continue
            if v is None or a is None:
                return 1 if v is None else -1
            less = v < a if self._order(s) == "asc" else v > a
            return -1 if less else 1
        return 0

    def _filter_source(self, idx: Index, src: dict[str, Any], spec: Any) -> dict[str, Any] | None:
        includes: list[str] | None = None
        excludes: list[str] = []
        # ES 9.2: index.mapping.exclude_source_vectors defaults to true for new indexes.
        exclude_vectors = self.es and self.vtuple >= (9, 2)
        if spec is False:
            return None
        if isinstance(spec, str):
            includes = [spec]
        elif isinstance(spec, list):
            includes = spec
        elif isinstance(spec, dict):
            allowed = {"includes", "excludes", "include", "exclude"} | (
                {"exclude_vectors"} if self.es and self.vtuple >= (9, 1) else set()
            )
            if set(spec) - allowed:
                raise ApiFailure(
                    400,
                    "parsing_exception",
                    f"Unknown key for a VALUE_BOOLEAN in [{sorted(set(spec) - allowed)[0]}].",
                )
            includes = spec.get("includes", spec.get("include"))
            excludes = list(spec.get("excludes", spec.get("exclude", [])))
            exclude_vectors = (
                bool(spec.get("exclude_vectors", exclude_vectors)) if self.es else False
            )
        out = {}
        for k, v in src.items():
            if includes is not None and k not in includes:
                continue
            if k in excludes:
                continue
            if (
                exclude_vectors
                and (idx.props.get(k) or {}).get("type") == "dense_vector"
                and (includes is None or k not in includes)
            ):
                continue
            out[k] = v
        return out

    # -- HTTP --------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                accept = self.headers.get("Accept", "")
                status, payload = 200, None
                try:
                    if (
                        server.es
                        and "compatible-with=" in accept
                        and not re.search(r"compatible-with=(8|9)\b", accept)
                    ):
                        raise ApiFailure(
                            400,
                            "media_type_header_exception",
                            f"Invalid media-type value on headers [Accept]: {accept}",
                        )
                    if server.auth and self.headers.get("Authorization") not in server.auth:
                        raise ApiFailure(
                            401,
                            "security_exception",
                            f"unable to authenticate user for REST request [{url.path}]",
                        )
                    payload = server.handle(self.command, url.path, query, body)
                except ApiFailure as exc:
                    status, payload = exc.status, exc.body()
                except Exception as exc:  # a bug in the double shows as a 500, like the engines
                    status = 500
                    payload = ApiFailure(500, "exception", f"{type(exc).__name__}: {exc}").body()
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if server.es:
                    self.send_header("X-Elastic-Product", "Elasticsearch")
                    ctype = (
                        "application/vnd.elasticsearch+json;compatible-with=9"
                        if "vnd.elasticsearch" in accept
                        else "application/json"
                    )
                else:
                    ctype = "application/json; charset=UTF-8"
                self.send_header("Content-Type", ctype)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="security", charset="UTF-8"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        return Handler
