"""Pinecone's one error mapping (``connectors/pinecone/_client.translate_error``) and a
constructor that makes no request: real client exceptions, a real refused connection."""

from __future__ import annotations

import pytest

from tests.conftest import require_module
from vecmigrate.connectors import connect
from vecmigrate.errors import TerminalError, TransientError

SECRET = "pc-unit-secret-5d1e"


@pytest.fixture
def uri(monkeypatch: pytest.MonkeyPatch) -> str:
    require_module("pinecone")
    monkeypatch.setenv("VM_PC_UNIT_KEY", SECRET)
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    return "pinecone://?host=http://127.0.0.1:1&api_key=env:VM_PC_UNIT_KEY"


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


def test_http_statuses_are_classified() -> None:
    require_module("pinecone")
    from pinecone.errors.exceptions import ApiError, NotFoundError, PineconeValueError

    from vecmigrate.connectors.pinecone import PineconeConnector

    translate = PineconeConnector.translate_error
    refused = translate(ApiError("bad vector", 400), "upsert into 'docs'")
    assert isinstance(refused, TerminalError) and not isinstance(refused, TransientError)
    assert str(refused) == "upsert into 'docs': HTTP 400: bad vector"
    assert isinstance(translate(NotFoundError(), "x"), TerminalError)
    assert isinstance(translate(PineconeValueError("top_k must be > 0"), "x"), TerminalError)
    for status in (408, 429, 500, 503):
        assert isinstance(translate(ApiError("busy", status), "x"), TransientError)


def test_other_exceptions_are_not_the_clients() -> None:
    require_module("pinecone")
    from vecmigrate.connectors.pinecone._client import translate_error

    assert translate_error(KeyError("id"), "x") is None
