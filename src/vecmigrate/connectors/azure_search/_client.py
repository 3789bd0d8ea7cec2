"""Azure AI Search calls for ``connectors/azure_search``: the official clients, their one
error mapping, and bounded, paged calls on one index (the limits are in ``_records``).

Everything here takes a client; connection state and caching stay in the connector,
whose contract calls (which the base class runs inside ``translate_error``) are the only
callers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from azure.core.credentials import AzureKeyCredential  # missing: the registry names the extra
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.search.documents import SearchClient
from azure.search.documents.indexes import SearchIndexClient
from azure.search.documents.indexes.models import SearchIndex
from azure.search.documents.models import VectorizedQuery

from vecmigrate.connectors.azure_search._records import KEY, MAX_TOP
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError, VecmigrateError

_HOST = re.compile(r"host='([^']+)', port=(\d+)")


def client_options(*, timeout: float, max_retries: int, api_version: str | None) -> dict[str, Any]:
    """Keyword arguments of both clients: timeouts, the pipeline's retries, the API version."""
    opts: dict[str, Any] = {
        "connection_timeout": timeout,
        "read_timeout": timeout,
        "retry_total": max_retries,
    }
    if api_version:
        opts["api_version"] = api_version
    return opts


def open_index_client(endpoint: str, key: str, **opts: Any) -> SearchIndexClient:
    """The index-management client (making one sends no request)."""
    return SearchIndexClient(endpoint, AzureKeyCredential(key), **opts)


def open_search_client(endpoint: str, key: str, index: str, **opts: Any) -> SearchClient:
    """The documents client of one index (making one sends no request)."""
    return SearchClient(endpoint, index, AzureKeyCredential(key), **opts)


def _where(exc: AzureError) -> str:
    """host:port of the failed request, from the transport's message (never the key)."""
    for text in (str(exc), str(getattr(exc, "inner_exception", "") or "")):
        match = _HOST.search(text)
        if match:
            return f"{match.group(1)}:{match.group(2)}"
    return "the Azure AI Search endpoint"


def _detail(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    return str(message or exc.reason or exc.message).splitlines()[0][:300]


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """Azure AI Search's errors: connection failures and timeouts, 408/409/429 and 5xx are
    transient; 401/403 are the user's to fix (ConfigError, never showing the key); 404 names
    what is missing; 400 of a write is a DataError, other refusals terminal; anything else
    is not the client's."""
    if isinstance(exc, ServiceRequestError):
        return TransientError(f"{what}: cannot reach {_where(exc)}")
    if isinstance(exc, ServiceResponseError):
        return TransientError(f"{what}: no usable answer from {_where(exc)}")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        msg = f"{what}: HTTP {status}: {_detail(exc)}"
        if status in (408, 409, 429) or status >= 500:
            return TransientError(msg)
        if status in (401, 403):
            return ConfigError(
                f"{what}: HTTP {status}: Azure AI Search refused the API key",
                hint="check ?api_key=env:NAME (the key's value is never shown) and that it "
                "is an admin key of this service",
            )
        if status == 404:
            return ConfigError(msg, hint="check the index name and the service in the URI")
        if status in (400, 413) and ("upsert" in what or "indexing" in what):
            return DataError(msg)
        return TerminalError(msg)
    if isinstance(exc, AzureError):
        return ConfigError(f"{what}: {exc}", hint="check the azure-search:// URI parameters")
    return None


# -- indexes ----------------------------------------------------------------------------------
def index_definition_of(client: SearchIndexClient, name: str) -> dict[str, Any] | None:
    """The index's REST definition (None: no such index)."""
    try:
        index = client.get_index(name)
    except ResourceNotFoundError:
        return None
    return dict(index.as_dict())


def create_index(client: SearchIndexClient, definition: dict[str, Any]) -> None:
    """Create the index from its REST definition."""
    client.create_index(SearchIndex(definition))


# -- documents --------------------------------------------------------------------------------
def count_documents(client: SearchClient, filter: str | None) -> int:
    """Exact number of documents (``$count``), or of those matching ``filter``."""
    if filter is None:
        return int(client.get_document_count())
    results = client.search(search_text="*", filter=filter, include_total_count=True, top=0)
    return int(results.get_count() or 0)


def page(
    client: SearchClient,
    *,
    filter: str | None,
    limit: int,
    select: Sequence[str] | None,
    key: str = KEY,
) -> list[dict[str, Any]]:
    """Up to ``limit`` (at most one response page) documents in ascending key order."""
    results = client.search(
        search_text="*",
        filter=filter,
        order_by=[f"{key} asc"],
        top=min(limit, MAX_TOP),
        select=list(select) if select is not None else None,
    )
    out = []
    for doc in next(results.by_page()):
        out.append({k: v for k, v in doc.items() if not k.startswith("@search.")})
    return out


def get_documents(
    client: SearchClient, keys: Sequence[str], select: Sequence[str] | None
) -> list[dict[str, Any]]:
    """``docs('key')`` lookups, one a key (missing keys are skipped): for an index whose key
    field is not filterable, so ``search.in`` cannot name it."""
    out = []
    for k in keys:
        try:
            out.append(dict(client.get_document(k, selected_fields=list(select or []) or None)))
        except ResourceNotFoundError:
            continue
    return out


def vector_search(
    client: SearchClient,
    vector: list[float],
    k: int,
    *,
    field: str,
    filter: str | None,
    exhaustive: bool,
    key: str = KEY,
) -> list[tuple[str, float]]:
    """(key, ``@search.score``) of the ``k`` nearest documents matching ``filter`` (filtered
    before the vector search, so ``k`` results come back when ``k`` documents match)."""
    query = VectorizedQuery(
        vector=vector, k_nearest_neighbors=k, fields=field, exhaustive=exhaustive or None
    )
    results = client.search(
        search_text=None,
        vector_queries=[query],
        filter=filter,
        vector_filter_mode="preFilter" if filter else None,
        top=k,
        select=[key],
    )
    return [(str(d[key]), float(d["@search.score"])) for d in next(results.by_page())]


def index_batch(client: SearchClient, documents: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``merge_or_upload`` one batch; (key, error) of each document the service refused."""
    results = client.merge_or_upload_documents(documents)
    return [
        (str(r.key), f"HTTP {r.status_code}: {r.error_message or 'refused'}")
        for r in results
        if not r.succeeded
    ]


def delete_keys(
    client: SearchClient, keys: Sequence[str], per_request: int, key: str = KEY
) -> None:
    """``delete`` actions of at most ``per_request`` keys (a missing key is a no-op)."""
    for start in range(0, len(keys), per_request):
        results = client.delete_documents([{key: k} for k in keys[start : start + per_request]])
        failed = [r for r in results if not r.succeeded]
        if failed:
            raise TerminalError(
                f"Azure AI Search refused to delete {len(failed)} document(s), first "
                f"{failed[0].key!r}: HTTP {failed[0].status_code}: {failed[0].error_message}"
            )
