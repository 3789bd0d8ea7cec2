"""Weaviate's one error mapping (``connectors/weaviate/_client.translate_error``) and a
constructor that makes no request: real client exceptions, a real refused connection."""

from __future__ import annotations

import pytest

from tests.conftest import require_module
from vecmigrate.connectors import connect
from vecmigrate.errors import TerminalError, TransientError

SECRET = "wv-unit-secret-8b2c"


@pytest.fixture
def uri(monkeypatch: pytest.MonkeyPatch) -> str:
    require_module("weaviate")
    monkeypatch.setenv("VM_WV_UNIT_KEY", SECRET)
    # Ports 1 and 2 on loopback: nothing listens there, connections are refused at once.
    return "weaviate://127.0.0.1:1?grpc_port=2&api_key=env:VM_WV_UNIT_KEY"


def test_unreachable_server_connects_then_fails_transiently(uri: str) -> None:
    conn = connect(uri)  # no request yet
    try:
        with pytest.raises(TransientError) as err:
            conn.list_collections()
        assert "127.0.0.1:1" in str(err.value)
        assert SECRET not in str(err.value) and SECRET not in repr(conn)
    finally:
        conn.close()


def test_close_opens_no_client(uri: str) -> None:
    conn = connect(uri)
    conn.close()
    assert conn._client is None  # type: ignore[attr-defined]


def _status_error(status: int) -> Exception:
    import httpx
    from weaviate.exceptions import UnexpectedStatusCodeError

    request = httpx.Request("GET", "http://127.0.0.1:8080/v1/schema")
    response = httpx.Response(status, json={"error": [{"message": "no"}]}, request=request)
    return UnexpectedStatusCodeError("Get schema", response)


def test_statuses_are_classified() -> None:
    require_module("weaviate")
    from vecmigrate.connectors.weaviate import WeaviateConnector

    translate = WeaviateConnector.translate_error
    refused = translate(_status_error(422), "creating 'docs'")
    assert isinstance(refused, TerminalError) and not isinstance(refused, TransientError)
    assert str(refused).startswith("creating 'docs': ")
    denied = translate(_status_error(401), "listing classes")
    assert isinstance(denied, TerminalError) and not isinstance(denied, TransientError)
    assert denied.hint == "check api_key"
    for status in (429, 503):
        busy = translate(_status_error(status), "x")
        assert isinstance(busy, TransientError) and str(status) in str(busy)


def test_other_exceptions_are_not_the_clients() -> None:
    require_module("weaviate")
    from vecmigrate.connectors.weaviate._client import translate_error

    assert translate_error(KeyError("id"), "x") is None
