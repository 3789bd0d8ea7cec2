"""The client and errors of the Redis connector, used only by ``connectors/redis``.

``translate_error`` is the engine's one error mapping (``Connector.translate_error``): the
base class applies it around every contract call and ``_call``. ``open_client`` makes the
redis-py client the connector opens on first use.
"""

from __future__ import annotations

from typing import Any

import redis

from vecmigrate.errors import ConfigError, TerminalError, TransientError, VecmigrateError

# Replies of a server that is busy (a script, a resharding) or still loading its data.
_RETRYABLE_REPLIES = ("BUSY", "LOADING", "TRYAGAIN")


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """A redis-py error as vecmigrate's typed error; None when ``exc`` is not redis-py's.

    A refused login or command needs the URI or the ACL fixed (ConfigError); lost or
    refused connections, timeouts and busy or loading servers may pass on a retry
    (TransientError); any other reply is TerminalError.
    """
    if not isinstance(exc, redis.RedisError):
        return None
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        return ConfigError(f"{what}: {exc}", hint="check the user and ?password=env:NAME")
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | redis.BusyLoadingError):
        return TransientError(f"{what}: {exc}")
    if isinstance(exc, redis.ResponseError) and str(exc).startswith(_RETRYABLE_REPLIES):
        return TransientError(f"{what}: {exc}")
    return TerminalError(f"{what}: {exc}")


def unknown_index(exc: redis.ResponseError) -> bool:
    """``FT.INFO``'s reply for an index that does not exist (it differs across versions)."""
    text = str(exc).lower()
    return "unknown index" in text or "no such index" in text


def open_client(
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    *,
    tls: bool,
    timeout: float,
) -> redis.Redis:
    """A redis-py client (RESP2); it connects on its first command."""
    return redis.Redis(
        host=host,
        port=port,
        username=username,
        password=password,
        ssl=tls,
        protocol=2,
        socket_timeout=timeout,
    )


def execute(target: Any, *args: Any) -> Any:
    """``execute_command`` on a client or pipeline (redis-py leaves it untyped)."""
    return target.execute_command(*args)
