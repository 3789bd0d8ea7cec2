"""Talking to Milvus for the Milvus connector (used only by it): one private pymilvus
client per connector, the minimum server version, and pymilvus / gRPC failures mapped to
vecmigrate's transient / terminal / data errors."""

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
from vecmigrate.errors import ConfigError, ConnectorError, DataError, TerminalError, TransientError

MIN_SERVER = (2, 3)
_TRANSIENT_HINTS = ("unavailable", "timeout", "timed out", "rate limit", "deny to", "connect")


def milvus_error(exc: Exception, what: str) -> ConnectorError:
    """Map pymilvus and gRPC failures to vecmigrate's transient / terminal / data errors."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, MilvusUnavailableException | ConnectionError | TimeoutError):
        return TransientError(f"{what}: {msg}")
    if isinstance(exc, DataNotMatchException | DataTypeNotMatchException | ParamError):
        return DataError(f"{what}: {msg}")
    if isinstance(exc, MilvusException):
        low = msg.lower()
        if any(h in low for h in _TRANSIENT_HINTS):
            return TransientError(f"{what}: {msg}")
        return TerminalError(f"{what}: {msg}")
    if type(exc).__module__.startswith("grpc"):
        return TransientError(f"{what}: {msg}")
    return TerminalError(f"{what}: {msg}")


def connect(uri: Any, lite: bool, secure: bool, token: Secret | None) -> MilvusClient:
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


def check_version(text: str, uri: Any) -> tuple[int, int] | None:
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
