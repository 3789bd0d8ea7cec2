"""Chroma: driver errors mapped in one place; nothing is opened before the first call."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("chromadb")

import httpx
from chromadb.errors import InternalError, InvalidArgumentError

from vecmigrate.connectors import connect
from vecmigrate.connectors.chroma import ChromaConnector
from vecmigrate.connectors.chroma._client import translate_error
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError

SECRET = "chroma-test-token-51ac"


def test_unreachable_server_connects_then_fails_transiently(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VECMIGRATE_TEST_CHROMA_TOKEN", SECRET)
    conn = connect("chroma+http://127.0.0.1:1?token=env:VECMIGRATE_TEST_CHROMA_TOKEN")
    assert "client" not in conn.__dict__  # the constructor opened nothing
    with pytest.raises(TransientError) as err:
        conn.list_collections()
    text = str(err.value)
    assert "127.0.0.1:1" in text
    assert SECRET not in text


def test_terminal_data_and_config_errors() -> None:
    assert isinstance(translate_error(InternalError("compaction failed"), "w"), TerminalError)
    got = translate_error(InvalidArgumentError("expecting embedding with dimension of 3"), "w")
    assert isinstance(got, DataError)
    request = httpx.Request("GET", "http://127.0.0.1:8000/api/v2/auth/identity")
    for status, kind in ((401, ConfigError), (503, TransientError), (400, TerminalError)):
        response = httpx.Response(status, request=request)
        try:
            try:
                response.raise_for_status()
            except httpx.HTTPStatusError:
                raise Exception(f"HTTP {status}") from None  # as chromadb re-raises it
        except Exception as exc:
            assert type(translate_error(exc, "w")) is kind, status


def test_not_the_drivers_error_is_left_alone() -> None:
    assert translate_error(KeyError("id"), "chroma upsert 'x'") is None
    assert ChromaConnector.translate_error(KeyError("id"), "w") is None
    assert translate_error(ValueError("raised outside chromadb"), "w") is None


def test_embedded_store_opens_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "store"
    conn = connect(f"chroma://{path}")
    assert not path.exists()  # the directory is created by the first call only
    with pytest.raises(ConfigError, match="does not exist"):
        connect(f"chroma://{path}", read_only=True)
    assert conn.list_collections() == []
    assert path.exists()


def test_a_relative_path_opens_the_directory_it_names_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chromadb caches clients per path string: './store' after a chdir is another store."""
    import chromadb

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    first = connect("chroma:./store")
    assert first.list_collections() == []
    chromadb.PersistentClient(path=str(tmp_path / "a" / "store")).create_collection("docs")
    assert first.list_collections() == ["docs"]
    first.close()
    monkeypatch.chdir(tmp_path / "b")
    second = connect("chroma:./store")
    assert second.list_collections() == []
    second.close()


def test_a_read_raced_by_a_concurrent_delete_is_transient() -> None:
    raced = InternalError("Error executing plan: Internal error: Error finding id")
    assert isinstance(translate_error(raced, "chroma scan 'docs'"), TransientError)
