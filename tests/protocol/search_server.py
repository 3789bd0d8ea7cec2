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

kNN here is exact (brute force); scores use the engines' documented formulas. The double
is split over ``search_common.py`` (error shape, value checks, scoring, index state),
``search_documents.py`` (index creation, mappings, ``_bulk``) and ``search_queries.py``
(query DSL, sorting, ``search_after``, kNN, ``_source``); this module routes requests.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.protocol.search_common import ApiFailure, Index, _parse_json
from tests.protocol.search_documents import Documents
from tests.protocol.search_queries import Queries


class SearchServer(Documents, Queries):
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
