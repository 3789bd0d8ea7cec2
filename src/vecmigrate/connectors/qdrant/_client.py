"""Talking to Qdrant for the Qdrant connector (used only by it): opening the server or
local-mode client, and qdrant-client / httpx failures mapped to vecmigrate's errors
(``translate_error``)."""

from __future__ import annotations

import httpx
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import (
    ApiException,
    ResponseHandlingException,
    UnexpectedResponse,
)

from vecmigrate.connectors.config import Secret, reveal
from vecmigrate.errors import (
    ConfigError,
    DataError,
    TerminalError,
    TransientError,
    VecmigrateError,
)
from vecmigrate.uri import ConnectionURI

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_AUTH_STATUS = frozenset({401, 403})


def open_client(uri: ConnectionURI, api_key: Secret | None, https: bool) -> QdrantClient:
    """The client of ``uri``: a server's (it asks the server's version) or the local
    mode's, which opens and locks its directory."""
    if uri.scheme == "qdrant+local":
        return QdrantClient(path=str(uri.local_path))
    return QdrantClient(
        host=uri.host or "127.0.0.1",
        port=uri.port or 6333,
        api_key=reveal(api_key),
        https=https,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """qdrant-client failures as vecmigrate errors: an unreachable or busy server (408,
    429, 5xx) is transient, a refused API key a ConfigError, a request the server or the
    local mode refuses (ValueError) a DataError, other refusals terminal; None for
    anything else (a bug)."""
    source = exc.source if isinstance(exc, ResponseHandlingException) else exc
    if isinstance(source, ConnectionError | TimeoutError | httpx.TransportError):
        return TransientError(f"{what}: {_first_line(source)}")
    if isinstance(exc, UnexpectedResponse):
        status = exc.status_code
        if status in _RETRY_STATUS:
            return TransientError(f"{what}: HTTP {status}")
        if status in _AUTH_STATUS:
            return ConfigError(
                f"{what}: HTTP {status} {exc.reason_phrase}",
                hint="check the API key (api_key=env:NAME)",
            )
        return TerminalError(f"{what}: {exc}")
    if isinstance(exc, ValueError):
        return DataError(f"{what}: {exc}")
    if isinstance(exc, ApiException | httpx.HTTPError):
        return TerminalError(f"{what}: {exc}")
    return None
