"""Raw HTTP calls to a Chroma server's record routes (``chroma+http://`` only), for
``vecmigrate proxy``'s pass-through: a request body the application sent is posted as it
is, and the server's status and body come back as they are, without the chromadb client's
models or any conversion.

Transport failures and a busy server (408, 429, 5xx) raise ``TransientError`` and a
refused token ``ConfigError``, as ``translate_error`` maps them for the connector; any
other answer (a 4xx is Chroma's verdict on the request itself) is returned.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from vecmigrate.connectors.chroma._client import _AUTH_STATUS, auth_headers, translate_error
from vecmigrate.connectors.config import Secret
from vecmigrate.errors import ConfigError, TransientError, VecmigrateError
from vecmigrate.uri import ConnectionURI

# The record routes of a collection and their HTTP method (``count`` reads no body).
OPS = {
    "query": "POST",
    "get": "POST",
    "count": "GET",
    "add": "POST",
    "upsert": "POST",
    "update": "POST",
    "delete": "POST",
}


@dataclass(frozen=True)
class Answer:
    """A Chroma server's answer, untouched."""

    status: int
    body: bytes
    content_type: str


class ChromaHTTP:
    """One Chroma server's record routes over a pooled ``httpx.Client`` (thread-safe)."""

    def __init__(
        self,
        uri: ConnectionURI,
        tenant: str,
        database: str,
        token: Secret | None,
        *,
        timeout: float = 30.0,
        connections: int = 32,
    ) -> None:
        self.where = f"Chroma at {uri}"
        base = f"http://{uri.host or '127.0.0.1'}:{uri.port or 8000}"
        self._prefix = f"/api/v2/tenants/{quote(tenant, safe='')}/databases/" + quote(
            database, safe=""
        )
        # The token goes into the client's headers only: never into a message or a log.
        self._http = httpx.Client(
            base_url=base,
            headers=auth_headers(token),
            timeout=timeout,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def collection_id(self, name: str, *, fresh: bool = False) -> str:
        """The server's id of collection ``name`` (looked up once, then kept)."""
        if not fresh:
            cid = self._ids.get(name)
            if cid is not None:
                return cid
        what = f"{self.where}: collection {name!r}"
        answer = self._send("GET", f"{self._prefix}/collections/{quote(name, safe='')}", b"", what)
        if answer.status == 404:
            raise ConfigError(f"{self.where} has no collection {name!r}")
        try:
            cid = str(json.loads(answer.body)["id"])
        except (ValueError, KeyError, TypeError):
            raise TransientError(
                f"{what}: HTTP {answer.status} without a collection id: {answer.body[:200]!r}"
            ) from None
        with self._lock:
            self._ids[name] = cid
        return cid

    def send(self, name: str, op: str, body: bytes = b"") -> Answer:
        """``body`` to the ``op`` route of collection ``name`` (query, get, count, add,
        upsert, update, delete), and the server's answer as it is."""
        method = OPS[op]
        what = f"{self.where}: {op} of {name!r}"
        cid = self.collection_id(name)
        answer = self._send(method, self._route(cid, op), body, what)
        if answer.status == 404:
            # The collection was dropped (and perhaps made again) since its id was looked
            # up: Chroma refused the call whole, so sending it to the new id is safe.
            fresh = self.collection_id(name, fresh=True)
            if fresh != cid:
                answer = self._send(method, self._route(fresh, op), body, what)
        return answer

    def _route(self, cid: str, op: str) -> str:
        return f"{self._prefix}/collections/{cid}/{op}"

    def _send(self, method: str, path: str, body: bytes, what: str) -> Answer:
        try:
            response = self._http.request(
                method,
                path,
                content=body if method == "POST" else None,
                headers={"content-type": "application/json"} if method == "POST" else None,
            )
        except httpx.HTTPError as exc:
            raise _translated(exc, what) from exc
        status = response.status_code
        if status in _AUTH_STATUS or status in (408, 429) or status >= 500:
            error = httpx.HTTPStatusError(
                _message(response.content), request=response.request, response=response
            )
            raise _translated(error, what) from None
        return Answer(
            status, response.content, response.headers.get("content-type", "application/json")
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()


def _translated(exc: Exception, what: str) -> VecmigrateError:
    out = translate_error(exc, what)
    return out if out is not None else TransientError(f"{what}: {type(exc).__name__}: {exc}")


def _message(body: bytes) -> str:
    """Chroma's error message out of its error body (``{"error", "message"}``), short."""
    try:
        parsed = json.loads(body)
        text = str(parsed.get("message") or parsed.get("error") or parsed)
    except (ValueError, AttributeError):
        text = body.decode("utf-8", "replace")
    return text.strip().splitlines()[0][:300] if text.strip() else "(no message)"
