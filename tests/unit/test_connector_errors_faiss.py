"""FAISS maps its errors in one place (``_client.translate_error``) and touches no file
before its first call: a path that cannot be a directory is a typed error naming it, an
index file FAISS cannot read a TerminalError naming the file."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

from tests.conftest import require_module
from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError, TerminalError
from vecmigrate.testing.data import sample_schema


@pytest.fixture(autouse=True)
def _faiss() -> None:
    require_module("faiss")


def test_a_path_under_a_regular_file_connects_then_fails_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = blocker / "faiss"
    conn = connect(f"faiss://{store}")
    with pytest.raises(TerminalError) as err:
        conn.list_collections()
    assert str(store) in str(err.value) and "Not a directory" in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    with pytest.raises(TerminalError, match=re.escape(str(store))):
        conn.create(sample_schema("docs"))
    conn.close()


def test_constructor_touches_nothing(tmp_path: Path) -> None:
    conn = connect(f"faiss://{tmp_path / 'new'}")
    conn.close()
    assert not (tmp_path / "new").exists()
    assert conn.list_collections() == []  # missing: an empty store, made by ``create``
    with pytest.raises(ConfigError, match="does not exist"):
        connect(f"faiss://{tmp_path / 'missing'}", read_only=True)


def test_an_index_file_faiss_cannot_read_is_terminal_and_named(tmp_path: Path) -> None:
    (tmp_path / "broken.faiss").write_bytes(b"garbage, not an index")
    conn = connect(f"faiss://{tmp_path}")
    assert conn.list_collections() == ["broken"]
    with pytest.raises(TerminalError, match="not recognized") as err:
        conn.describe("broken")
    assert str(tmp_path / "broken.faiss") in str(err.value)
    assert "Error in" not in str(err.value)  # FAISS's C++ location is left out


def test_translate_error() -> None:
    from vecmigrate.connectors.faiss import FaissConnector
    from vecmigrate.connectors.faiss._client import translate_error

    assert FaissConnector.translate_error is translate_error
    got = translate_error(
        RuntimeError("Error in f() at io.cpp:1: Error: 'f' failed: could not open /x.faiss"),
        "faiss describe 'x'",
    )
    assert isinstance(got, TerminalError)
    assert str(got) == "faiss describe 'x': 'f' failed: could not open /x.faiss"
    full = translate_error(OSError(errno.ENOSPC, "No space left on device", "/d/x.faiss"), "w")
    assert isinstance(full, TerminalError) and "/d/x.faiss" in str(full)
    assert translate_error(KeyError("x"), "faiss describe 'x'") is None
    assert translate_error(RuntimeError("not faiss's"), "faiss describe 'x'") is None
