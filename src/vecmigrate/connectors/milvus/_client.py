"""Talking to Milvus for the Milvus connector (used only by it): one private pymilvus
client per connector, the minimum server version, and pymilvus / gRPC failures mapped to
vecmigrate's transient / terminal / data / configuration errors (``translate_error``)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from pymilvus import MilvusClient
from pymilvus.exceptions import (
    DataNotMatchException,
    DataTypeNotMatchException,
    MilvusException,
    MilvusUnavailableException,
    ParamError,
)

from vecmigrate.connectors.config import Secret
from vecmigrate.errors import (
    ConfigError,
    DataError,
    TerminalError,
    TransientError,
    VecmigrateError,
)
from vecmigrate.uri import ConnectionURI

MIN_SERVER = (2, 3)
_TRANSIENT_HINTS = ("unavailable", "timeout", "timed out", "rate limit", "deny to", "connect")
_AUTH_HINTS = ("unauthenticated", "authenticat", "permission denied", "privilege")


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """pymilvus and gRPC failures as vecmigrate errors; None for anything else (a bug)."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    grpc_error = type(exc).__module__.startswith("grpc")
    if isinstance(exc, MilvusException | ParamError) or grpc_error:
        low = msg.lower()
        if any(h in low for h in _AUTH_HINTS):
            return ConfigError(
                f"{what}: {msg}", hint="check the token (token=env:NAME) and its privileges"
            )
    if isinstance(exc, MilvusUnavailableException | ConnectionError | TimeoutError):
        return TransientError(f"{what}: {msg}")
    if isinstance(exc, DataNotMatchException | DataTypeNotMatchException | ParamError):
        return DataError(f"{what}: {msg}")
    if isinstance(exc, MilvusException):
        low = msg.lower()
        if any(h in low for h in _TRANSIENT_HINTS):
            return TransientError(f"{what}: {msg}")
        return TerminalError(f"{what}: {msg}")
    if grpc_error:
        return TransientError(f"{what}: {msg}")
    if isinstance(exc, OSError) or type(exc).__module__.startswith(("pymilvus", "milvus_lite")):
        return TerminalError(f"{what}: {msg}")  # a milvus-lite file, or pymilvus refusing
    return None


def connect(uri: ConnectionURI, lite: bool, secure: bool, token: Secret | None) -> MilvusClient:
    """A new client for ``uri`` (a milvus-lite file, or a server with optional token / db)."""
    # pymilvus shares one connection per address unless told otherwise, and closing
    # any client closes it for all: each connector owns its own.
    alias = f"vecmigrate-{uuid.uuid4().hex}"
    if lite:
        path = uri.local_path
        if path.suffix != ".db":
            raise ConfigError(
                f"milvus-lite needs a file ending in .db, got {str(path)!r}",
                hint="use milvus-lite:///path/to/store.db",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        return MilvusClient(str(path), alias=alias)
    scheme = "https" if secure else "http"
    kwargs: dict[str, Any] = {
        "alias": alias,
        "uri": f"{scheme}://{uri.host or '127.0.0.1'}:{uri.port or 19530}",
    }
    if token is not None:
        kwargs["token"] = token.reveal()
    db = uri.path.strip("/")
    if db:
        kwargs["db_name"] = db
    return MilvusClient(**kwargs)


def check_version(text: str, uri: ConnectionURI) -> tuple[int, int] | None:
    """The (major, minor) of a server version string; ConfigError below 2.3; None when the
    server does not say (managed ones)."""
    m = re.match(r"v?(\d+)\.(\d+)", text)
    if not m:
        return None
    version = (int(m.group(1)), int(m.group(2)))
    if version < MIN_SERVER:
        raise ConfigError(
            f"Milvus at {uri} is version {text}; vecmigrate needs 2.3 or newer",
            hint="2.3 added upsert and JSON containment, which the connector relies on",
        )
    return version
