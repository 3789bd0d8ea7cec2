"""Azure AI Search's one error mapping (``connectors/azure_search/_client.translate_error``)
and a constructor that makes no request: real client exceptions over real HTTP — a refused
connection, and a tiny server answering every request with one status (echoing the
``api-key`` header, so a leaked key would show)."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest

from tests.conftest import require_module
from tests.protocol.status_server import (
    UNREACHABLE,
    StatusServer,
    check_auth_status_is_config_error,
    check_status_is_transient,
    check_unreachable_is_transient,
    running_status_server,
)
from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError, DataError, TerminalError

SECRET = "azs-unit-secret-4be1"


def _echo_key(headers: Message) -> Any:
    """An Azure error body echoing the request's ``api-key`` header."""
    return {"error": {"code": "X", "message": f"refused {headers.get('api-key')}"}}


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    require_module("azure.search.documents")
    monkeypatch.setenv("VM_AZS_UNIT_KEY", SECRET)


@pytest.fixture
def status_server(secret_env: None) -> Iterator[StatusServer]:
    with running_status_server(_echo_key) as server:
        yield server


def _uri(base_url: str) -> str:
    return (
        f"azure-search://svc.search.windows.net?base_url={base_url}"
        "&api_key=env:VM_AZS_UNIT_KEY&max_retries=0"
    )


@pytest.mark.usefixtures("secret_env")
def test_unreachable_host_is_transient_and_named() -> None:
    check_unreachable_is_transient(_uri(UNREACHABLE), SECRET)


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_are_config_errors_without_the_key(
    status_server: StatusServer, status: int
) -> None:
    status_server.status = status
    check_auth_status_is_config_error(_uri(status_server.url), status, SECRET)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_throttling_and_server_errors_are_transient(
    status_server: StatusServer, status: int
) -> None:
    status_server.status = status
    check_status_is_transient(_uri(status_server.url), status)


def test_404_is_a_config_error_naming_the_index(status_server: StatusServer) -> None:
    status_server.status = 404
    with (
        connect(_uri(status_server.url)) as conn,
        pytest.raises(ConfigError, match="no index 'docs'"),
    ):
        conn.count("docs")


def test_client_refusals_are_classified(status_server: StatusServer) -> None:
    """A real 400 from the client: a DataError on a write, terminal elsewhere."""
    from azure.core.credentials import AzureKeyCredential
    from azure.core.exceptions import AzureError, HttpResponseError
    from azure.search.documents.indexes import SearchIndexClient

    from vecmigrate.connectors.azure_search._client import translate_error

    status_server.status = 400
    client = SearchIndexClient(status_server.url, AzureKeyCredential(SECRET), retry_total=0)
    try:
        with pytest.raises(HttpResponseError) as caught:
            list(client.list_index_names())
    finally:
        client.close()
    refused = caught.value
    on_write = translate_error(refused, "azure-search upsert 'docs'")
    assert isinstance(on_write, DataError)
    assert str(on_write).startswith("azure-search upsert 'docs': HTTP 400")
    on_read = translate_error(refused, "azure-search count 'docs'")
    assert isinstance(on_read, TerminalError) and not isinstance(on_read, DataError)
    assert isinstance(translate_error(AzureError("no credential"), "x"), ConfigError)
    assert translate_error(KeyError("id"), "x") is None


@pytest.mark.usefixtures("secret_env")
def test_uri_parameters_are_checked_and_no_request_is_made() -> None:
    with pytest.raises(ConfigError, match="must reference a secret"):
        connect(f"azure-search://svc.search.windows.net?api_key={SECRET}")
    with pytest.raises(ConfigError, match="names a service, not a path"):
        connect("azure-search://svc.search.windows.net/indexes?api_key=env:VM_AZS_UNIT_KEY")
    with pytest.raises(ConfigError, match="base_url must be an http"):
        connect("azure-search://svc.search.windows.net?base_url=ftp://x")
    conn = connect("azure-search://svc.search.windows.net?api_key=env:VM_AZS_UNIT_KEY")
    assert conn.endpoint == "https://svc.search.windows.net"  # type: ignore[attr-defined]
    conn.close()
    assert conn._index_client is None  # type: ignore[attr-defined]


def test_storage_identity_is_the_service_and_base_url() -> None:
    from vecmigrate.connectors.identity import storage_identity

    a = storage_identity("azure-search://one.search.windows.net?api_key=env:A")
    assert a == storage_identity("azure-search://one.search.windows.net?timeout=5")
    assert a != storage_identity("azure-search://two.search.windows.net")
    assert a != storage_identity("azure-search://one.search.windows.net?base_url=http://x:1")
