"""turbopuffer calls for ``connectors/turbopuffer``: the official client, its one error
mapping, and bounded, paged calls on one namespace (the limits are in ``_records``).

Everything here takes the client; connection state and caching stay in the connector,
whose contract calls (which the base class runs inside ``translate_error``) are the only
callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import turbopuffer  # missing: the registry names the extra
from turbopuffer import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    NotFoundError,
    TurbopufferError,
)

from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError, VecmigrateError

DEFAULT_BASE_URL = "https://{region}.turbopuffer.com"


def open_client(
    *,
    api_key: str,
    region: str | None,
    base_url: str | None,
    timeout: float,
    max_retries: int,
) -> turbopuffer.Turbopuffer:
    """The official client (making one sends no request). Telemetry stays off: request
    timings are not sent to turbopuffer on later requests."""
    return turbopuffer.Turbopuffer(
        api_key=api_key,
        region=region if base_url is None else None,
        base_url=base_url or DEFAULT_BASE_URL,
        timeout=timeout,
        max_retries=max_retries,
        telemetry=False,
    )


def _where(exc: APIConnectionError) -> str:
    try:
        url = exc.request.url
        return f"{url.host}:{url.port}" if url.port else str(url.host)
    except Exception:  # a request without a URL: say nothing rather than guess
        return "the turbopuffer API"


def _detail(exc: APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body)
    return str(body or exc.message)


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """turbopuffer's errors: connection failures, timeouts, 408/429 and 5xx are transient;
    401/403 are the user's to fix (ConfigError, never showing the key); 404 names the
    missing namespace; 400/422 of a write are a DataError, other refusals terminal;
    anything else is not the client's."""
    if isinstance(exc, APITimeoutError):
        return TransientError(f"{what}: timed out talking to {_where(exc)}")
    if isinstance(exc, APIConnectionError):
        return TransientError(f"{what}: cannot reach {_where(exc)} ({exc.message})")
    if isinstance(exc, APIStatusError):
        status = exc.status_code
        msg = f"{what}: HTTP {status}: {_detail(exc)}"
        if status in (408, 409, 429) or status >= 500:
            return TransientError(msg)
        if status in (401, 403):
            return ConfigError(
                f"{what}: HTTP {status}: turbopuffer refused the API key",
                hint="check ?api_key=env:NAME (the key's value is never shown) and ?region=",
            )
        if status == 404:
            return ConfigError(msg, hint="check the namespace name and ?region=")
        if status in (400, 422) and (" upsert" in what or "writing" in what):
            return DataError(msg)
        return TerminalError(msg)
    if isinstance(exc, TurbopufferError):
        return ConfigError(f"{what}: {exc}", hint="check the turbopuffer:// URI parameters")
    return None


# -- namespaces -------------------------------------------------------------------------------
def list_namespaces(client: turbopuffer.Turbopuffer, prefix: str | None) -> list[str]:
    """Every namespace id (the client follows ``next_cursor``)."""
    kwargs: dict[str, Any] = {"prefix": prefix} if prefix else {}
    return [ns.id for ns in client.namespaces(**kwargs)]


def namespace_attributes(client: turbopuffer.Turbopuffer, name: str) -> dict[str, Any] | None:
    """The namespace's attribute schema from its metadata (None: no such namespace)."""
    try:
        meta = client.namespace(name).metadata()
    except NotFoundError:
        return None
    return {
        k: v.model_dump(mode="json", exclude_none=True, by_alias=True)
        for k, v in meta.schema_.items()
    }


def count_rows(client: turbopuffer.Turbopuffer, name: str, filters: Any | None) -> int:
    """Exact number of documents matching ``filters`` (a ``Count`` aggregation)."""
    kwargs: dict[str, Any] = {"aggregate_by": {"n": ["Count"]}}
    if filters is not None:
        kwargs["filters"] = filters
    res = client.namespace(name).query(**kwargs)
    value: Any = (res.aggregations or {}).get("n")
    return int(value or 0)


def page(
    client: turbopuffer.Turbopuffer,
    name: str,
    *,
    filters: Any | None,
    limit: int,
    attributes: Sequence[str] | bool,
    offset: int | None = None,
) -> list[dict[str, Any]]:
    """Up to ``limit`` documents in ascending id order, vectors base64-encoded."""
    kwargs: dict[str, Any] = {
        "rank_by": ["id", "asc"],
        "top_k": limit,
        "include_attributes": list(attributes) if not isinstance(attributes, bool) else attributes,
        "vector_encoding": "base64",
    }
    if filters is not None:
        kwargs["filters"] = filters
    if offset:
        kwargs["offset"] = offset
    res = client.namespace(name).query(**kwargs)
    return [r.model_dump(mode="json", by_alias=True) for r in res.rows or []]


def write_columns(
    client: turbopuffer.Turbopuffer,
    name: str,
    ids: Sequence[Any],
    columns: dict[str, list[Any]],
    sizes: Sequence[int],
    *,
    distance_metric: str | None,
    chunk_bytes: int,
) -> None:
    """``upsert_columns`` writes of contiguous rows, each under ``chunk_bytes`` of JSON
    (``distance_metric``: the namespace's, None when its schema names none)."""
    extra: dict[str, Any] = {} if distance_metric is None else {"distance_metric": distance_metric}
    start = 0
    while start < len(ids):
        end, total = start, 0
        while end < len(ids) and (end == start or total + sizes[end] <= chunk_bytes):
            total += sizes[end]
            end += 1
        body = {"id": list(ids[start:end])}
        body.update({k: v[start:end] for k, v in columns.items()})
        client.namespace(name).write(
            upsert_columns=body,  # type: ignore[arg-type]
            create_namespace=False,
            **extra,
        )
        start = end


def delete_ids(
    client: turbopuffer.Turbopuffer, name: str, ids: Sequence[Any], per_request: int
) -> None:
    """``deletes`` writes of at most ``per_request`` ids (missing ids are a no-op)."""
    for start in range(0, len(ids), per_request):
        client.namespace(name).write(deletes=list(ids[start : start + per_request]))
