"""LanceDB maps lance's and lancedb's errors in one place (``_client.translate_error``) and
opens the database on first use: a path that cannot be a directory is a typed error naming
it, a table whose data files are gone a TerminalError, a lost commit race transient."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tests.conftest import require_module
from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError, TerminalError, TransientError
from vecmigrate.testing.data import sample_batch, sample_schema


@pytest.fixture(autouse=True)
def _lancedb() -> None:
    require_module("lancedb")


def test_a_path_under_a_regular_file_connects_then_fails_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = blocker / "lance"
    conn = connect(f"lancedb://{store}")
    with pytest.raises(TerminalError) as err:
        conn.list_collections()
    assert str(store) in str(err.value) and "Not a directory" in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    conn.close()


def test_constructor_touches_nothing(tmp_path: Path) -> None:
    conn = connect(f"lancedb://{tmp_path / 'new'}")
    conn.close()
    assert not (tmp_path / "new").exists()
    assert conn.list_collections() == []
    assert (tmp_path / "new").is_dir()  # made on first use
    with pytest.raises(ConfigError, match="does not exist"):
        connect(f"lancedb://{tmp_path / 'missing'}", read_only=True)


def test_a_table_whose_data_files_are_gone_is_terminal(tmp_path: Path) -> None:
    schema = sample_schema("docs")
    conn = connect(f"lancedb://{tmp_path / 'lance'}")
    conn.create(schema)
    conn.upsert("docs", sample_batch(schema, 20))
    for data in (tmp_path / "lance" / "docs.lance" / "data").iterdir():
        data.unlink()
    part = conn.partitions("docs", 1)[0]
    with pytest.raises(TerminalError, match=r"lancedb scan 'docs': .*Not found") as err:
        list(conn.scan("docs", part))
    assert ".rs:" not in str(err.value)  # where in Lance's Rust sources: left out


def test_translate_error() -> None:
    from vecmigrate.connectors.lancedb import LanceDBConnector
    from vecmigrate.connectors.lancedb._client import translate_error

    assert LanceDBConnector.translate_error is translate_error
    what = "lancedb upsert 'docs'"
    conflict = RuntimeError("lance error: Retryable commit conflict for version 3, /a/b.rs:1:2")
    got = translate_error(conflict, what)
    assert isinstance(got, TransientError)
    assert str(got) == "lancedb upsert 'docs': lance error: Retryable commit conflict for version 3"
    assert isinstance(translate_error(OSError("object store timed out"), what), TransientError)
    assert isinstance(translate_error(ValueError("No field named zz"), what), TerminalError)
    denied = translate_error(PermissionError(errno.EACCES, "Permission denied", "/l"), what)
    assert isinstance(denied, ConfigError) and "/l" in str(denied)
    assert translate_error(KeyError("x"), what) is None
    assert translate_error(RecursionError(), what) is None
