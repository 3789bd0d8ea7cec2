"""turbopuffer's one error mapping (``connectors/turbopuffer/_client.translate_error``) and
a constructor that makes no request: real client exceptions over real HTTP — a refused
connection, and a tiny server answering every request with one status (echoing the
``Authorization`` header, so a leaked key would show)."""

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

SECRET = "tpuf-unit-secret-93ad"


def _echo_key(headers: Message) -> Any:
    """An error body echoing the request's Authorization header."""
    return {"status": "error", "error": f"refused {headers.get('Authorization')}"}


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    require_module("turbopuffer")
    monkeypatch.setenv("VM_TPUF_UNIT_KEY", SECRET)


@pytest.fixture
def status_server(secret_env: None) -> Iterator[StatusServer]:
    with running_status_server(_echo_key) as server:
        yield server


def _uri(base_url: str) -> str:
    return f"turbopuffer://api?base_url={base_url}&api_key=env:VM_TPUF_UNIT_KEY&max_retries=0"


@pytest.mark.usefixtures("secret_env")
def test_unreachable_host_is_transient_and_named() -> None:
    check_unreachable_is_transient(_uri(UNREACHABLE), SECRET)


def test_401_is_a_config_error_without_the_key(status_server: StatusServer) -> None:
    status_server.status = 401
    check_auth_status_is_config_error(_uri(status_server.url), 401, SECRET)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_throttling_and_server_errors_are_transient(
    status_server: StatusServer, status: int
) -> None:
    status_server.status = status
    check_status_is_transient(_uri(status_server.url), status)


def test_403_and_404_are_config_errors(status_server: StatusServer) -> None:
    status_server.status = 403
    with connect(_uri(status_server.url)) as conn:
        with pytest.raises(ConfigError, match="HTTP 403"):
            conn.list_collections()
        status_server.status = 404
        with pytest.raises(ConfigError, match="HTTP 404"):
            conn.list_collections()


def test_client_refusals_are_classified() -> None:
    require_module("turbopuffer")
    import httpx2
    from turbopuffer import BadRequestError, TurbopufferError

    from vecmigrate.connectors.turbopuffer._client import translate_error

    request = httpx2.Request("POST", "http://127.0.0.1:9/v2/namespaces/docs")
    response = httpx2.Response(400, request=request)
    refused = BadRequestError("bad", response=response, body={"error": "bad vector"})
    on_write = translate_error(refused, "turbopuffer upsert 'docs'")
    assert isinstance(on_write, DataError)
    assert str(on_write) == "turbopuffer upsert 'docs': HTTP 400: bad vector"
    on_read = translate_error(refused, "turbopuffer count 'docs'")
    assert isinstance(on_read, TerminalError) and not isinstance(on_read, DataError)
    assert isinstance(translate_error(TurbopufferError("no api_key"), "x"), ConfigError)
    assert translate_error(KeyError("id"), "x") is None


@pytest.mark.usefixtures("secret_env")
def test_uri_parameters_are_checked_and_no_request_is_made() -> None:
    with pytest.raises(ConfigError, match="must reference a secret"):
        connect(f"turbopuffer://api?region=gcp-us-central1&api_key={SECRET}")
    with pytest.raises(ConfigError, match=r"needs \?region="):
        connect("turbopuffer://api?api_key=env:VM_TPUF_UNIT_KEY")
    with pytest.raises(ConfigError, match="not both"):
        connect("turbopuffer://api?region=r&base_url=http://x&api_key=env:VM_TPUF_UNIT_KEY")
    with pytest.raises(ConfigError, match="names no host or path"):
        connect("turbopuffer://somewhere/else?region=r&api_key=env:VM_TPUF_UNIT_KEY")
    conn = connect("turbopuffer://api?region=gcp-us-central1&api_key=env:VM_TPUF_UNIT_KEY")
    conn.close()
    assert conn._client is None  # type: ignore[attr-defined]


def test_storage_identity_is_region_base_url_and_prefix() -> None:
    from vecmigrate.connectors.identity import storage_identity

    a = storage_identity("turbopuffer://api?region=gcp-us-central1&api_key=env:A")
    assert a == storage_identity("turbopuffer://api?region=gcp-us-central1&timeout=5")
    assert a != storage_identity("turbopuffer://api?region=aws-us-east-1")
    assert a != storage_identity("turbopuffer://api?region=gcp-us-central1&prefix=team-")
