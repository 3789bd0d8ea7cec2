"""Talking to Chroma for the Chroma connector (used only by it): opening the embedded or
HTTP client, and chromadb / httpx failures mapped to vecmigrate's errors
(``translate_error``)."""

from __future__ import annotations

from types import TracebackType

import chromadb
import httpx
from chromadb.api import ClientAPI
from chromadb.errors import ChromaAuthError, ChromaError, RateLimitError

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
_RACED = "Error finding id"
_AUTH_HINT = "check the token (token=env:NAME), tenant and database"


def auth_headers(token: Secret | None) -> dict[str, str] | None:
    """The headers a Chroma server's token auth takes (None without a token)."""
    secret = reveal(token)
    return {"Authorization": f"Bearer {secret}"} if secret else None


def open_client(uri: ConnectionURI, tenant: str, database: str, token: Secret | None) -> ClientAPI:
    """The Chroma client of ``uri``: HTTP (it asks the server who it is) or embedded (it
    creates its directory)."""
    if uri.scheme == "chroma+http":
        return chromadb.HttpClient(
            host=uri.host or "127.0.0.1",
            port=uri.port or 8000,
            headers=auth_headers(token),
            tenant=tenant,
            database=database,
        )
    # chromadb caches one client per path string for the life of the process: a relative
    # path would reopen whichever directory it first meant (after a chdir, another store).
    path = uri.local_path.absolute()
    return chromadb.PersistentClient(path=str(path), tenant=tenant, database=database)


def _raised_in_chromadb(tb: TracebackType | None) -> bool:
    """Whether the innermost frame of ``tb`` is chromadb's (a ValueError it raised)."""
    module = ""
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    return module.startswith("chromadb")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """chromadb and httpx failures as vecmigrate errors: an unreachable server or a busy
    one (408, 429, 5xx) is transient, a refused token a ConfigError, a record Chroma
    refuses (dimension, NaN, bad value) a DataError; None for anything else (a bug)."""
    text = _first_line(exc)
    # chromadb re-raises transport and HTTP failures as ValueError / Exception.
    cause = exc.__cause__ or exc.__context__
    http = exc if isinstance(exc, httpx.HTTPError) else cause
    if isinstance(http, httpx.TransportError):
        detail = text if http is exc else f"{text} ({_first_line(http)})"
        return TransientError(f"{what}: {detail}")
    if isinstance(exc, ConnectionError | TimeoutError):
        return TransientError(f"{what}: {text}")
    status: int | None = None
    if isinstance(http, httpx.HTTPStatusError):
        status = http.response.status_code
    elif isinstance(exc, ChromaAuthError):
        status = 403
    elif isinstance(exc, RateLimitError):
        status = 429
    if status in _AUTH_STATUS:
        return ConfigError(f"{what}: HTTP {status}: {text}", hint=_AUTH_HINT)
    if status in _RETRY_STATUS:
        return TransientError(f"{what}: HTTP {status}: {text}")
    if isinstance(exc, OSError):
        return TransientError(f"{what}: {text}")
    ours = isinstance(exc, ChromaError | httpx.HTTPError) or status is not None
    if isinstance(exc, ValueError) and _raised_in_chromadb(exc.__traceback__):
        return DataError(f"{what}: {text}")
    if ours or type(exc).__module__.startswith("chromadb"):
        if "NaN" in text or "dimension" in text:
            return DataError(f"{what}: {text}")
        if _RACED in text:
            # A read planned before a concurrent delete landed: the same read succeeds
            # again once the write is visible (seen under live cutover's writes).
            return TransientError(f"{what}: {text} (a concurrent write raced the read)")
        return TerminalError(f"{what}: {text}")
    return None
