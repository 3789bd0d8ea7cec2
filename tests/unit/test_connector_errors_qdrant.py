"""Qdrant: driver errors mapped in one place; nothing is opened before the first call."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("qdrant_client")

import httpx
from qdrant_client.http.exceptions import (
    ResponseHandlingException,
    UnexpectedResponse,
)

from vecmigrate.connectors import connect
from vecmigrate.connectors.qdrant import QdrantConnector
from vecmigrate.connectors.qdrant._client import translate_error
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError

SECRET = "qdrant-test-key-7d21"
# qdrant-client checks the server's version in a thread and warns when it cannot.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Failed to obtain server version:UserWarning",
    "ignore:Api key is used with an insecure connection:UserWarning",
)


def test_unreachable_server_connects_then_fails_transiently(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VECMIGRATE_TEST_QDRANT_KEY", SECRET)
    conn = connect("qdrant://127.0.0.1:1?api_key=env:VECMIGRATE_TEST_QDRANT_KEY")
    assert "client" not in conn.__dict__  # the constructor opened nothing
    with pytest.raises(TransientError) as err:
        conn.list_collections()
    text = str(err.value)
    assert "127.0.0.1:1" in text
    assert SECRET not in text
    conn.close()


def _response(status: int) -> UnexpectedResponse:
    return UnexpectedResponse(status, "reason", b'{"status": {"error": "no"}}', httpx.Headers())


def test_terminal_data_and_config_errors() -> None:
    assert isinstance(translate_error(_response(400), "w"), TerminalError)
    assert not isinstance(translate_error(_response(404), "w"), TransientError)
    assert isinstance(translate_error(_response(503), "w"), TransientError)
    assert isinstance(translate_error(_response(429), "w"), TransientError)
    assert isinstance(translate_error(_response(403), "w"), ConfigError)
    reset = ResponseHandlingException(httpx.ReadTimeout("timed out"))
    assert isinstance(translate_error(reset, "w"), TransientError)
    got = translate_error(ValueError("Wrong input: vector dimension error"), "w")
    assert isinstance(got, DataError)


def test_not_the_drivers_error_is_left_alone() -> None:
    assert translate_error(KeyError("id"), "qdrant upsert 'x'") is None
    assert QdrantConnector.translate_error(KeyError("id"), "w") is None


def test_local_store_opens_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "store"
    conn = connect(f"qdrant+local://{path}")
    conn.close()  # closing an unopened connector opens nothing
    assert not path.exists()
    with pytest.raises(ConfigError, match="does not exist"):
        connect(f"qdrant+local://{path}", read_only=True)
    with connect(f"qdrant+local://{path}") as conn:
        assert conn.list_collections() == []
    assert path.exists()
