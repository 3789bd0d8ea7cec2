"""The Weaviate client for ``connectors/weaviate``: opening it (on first use, never in the
constructor) and the one mapping of its errors to vecmigrate's."""

from __future__ import annotations

from typing import Any

from vecmigrate.errors import TerminalError, TransientError, VecmigrateError
from vecmigrate.uri import ConnectionURI

TRANSIENT = {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED"} | {
    "429",
    "500",
    "502",
    "503",
    "504",
}
_AUTH = ("401", "403", "UNAUTHENTICATED", "PERMISSION_DENIED")


def open_client(
    uri: ConnectionURI,
    key: str | None,
    *,
    secure: bool,
    grpc_host: str | None,
    grpc_port: int,
) -> tuple[Any, str]:
    """A connected client for ``uri`` and the server's version; TransientError when the
    server does not answer ready."""
    import weaviate
    from weaviate.classes.init import AdditionalConfig, Auth, Timeout

    host = uri.host or "127.0.0.1"
    client = weaviate.connect_to_custom(
        http_host=host,
        http_port=uri.port or 8080,
        http_secure=secure,
        grpc_host=grpc_host or host,
        grpc_port=grpc_port,
        grpc_secure=secure,
        auth_credentials=Auth.api_key(key) if key else None,
        # the init checks would also ask PyPI for the latest client; readiness is below
        skip_init_checks=True,
        additional_config=AdditionalConfig(timeout=Timeout(init=10, query=60, insert=120)),
    )
    try:
        if not client.is_ready():
            raise TransientError(f"Weaviate at {uri} is not ready")
        meta = client.get_meta()
    except BaseException:
        client.close()
        raise
    return client, str(meta.get("version", "0"))


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (the client wraps transport errors)."""
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(out) < 6:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def error_status(exc: BaseException) -> str | None:
    """The gRPC status name or HTTP status found in the exception chain, if any."""
    for seen in _chain(exc):
        code = getattr(seen, "code", None)
        if callable(code):
            try:
                return str(code().name)
            except Exception:
                pass
        status = getattr(seen, "status_code", None)
        if isinstance(status, int):
            return str(status)
    return None


def _unreached(exc: BaseException) -> bool:
    """A failure to reach the server or a timeout (not an answer it gave)."""
    kind = type(exc).__name__
    return isinstance(exc, ConnectionError | TimeoutError) or "Connect" in kind or "Timeout" in kind


def _is_client_error(exc: Exception) -> bool:
    """Raised by weaviate-client or the transports under it (httpx, gRPC)."""
    import grpc  # type: ignore[import-untyped]
    import httpx
    from weaviate.exceptions import WeaviateBaseError

    return isinstance(
        exc, WeaviateBaseError | grpc.RpcError | httpx.HTTPError | ConnectionError | TimeoutError
    )


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """Weaviate's errors: UNAVAILABLE/RESOURCE_EXHAUSTED/DEADLINE_EXCEEDED/ABORTED, 429/5xx
    and connection failures are transient, anything else the client raises is terminal
    (401/403 with a hint to check the key, never the key); other exceptions are not its."""
    if not _is_client_error(exc):
        return None
    status = error_status(exc)
    text = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
    if status in TRANSIENT:
        return TransientError(f"{what}: {status}: {text}")
    # Without a status, look down the chain too: a refused connection at start-up is a
    # WeaviateStartUpError raised from an httpx.ConnectError.
    if _unreached(exc) or (status is None and any(map(_unreached, _chain(exc)))):
        return TransientError(f"{what}: {text}")
    return TerminalError(f"{what}: {text}", hint="check api_key" if status in _AUTH else None)
