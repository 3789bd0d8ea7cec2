"""sqlite-vec maps SQLite's errors in one place (``_client.translate_error``) and opens
its connection on first use: a path that cannot be opened is a typed error naming it,
"database is locked" transient, a refused record a DataError, the rest terminal."""

from __future__ import annotations

import errno
import sqlite3 as std_sqlite3
from pathlib import Path

import pytest

from tests.conftest import require_module
from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError
from vecmigrate.testing.data import sample_batch, sample_schema


@pytest.fixture(autouse=True)
def _sqlite_vec() -> None:
    require_module("sqlite_vec")
    require_module("pysqlite3")


def test_a_path_under_a_regular_file_connects_then_fails_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    db = blocker / "sub" / "vec.db"
    conn = connect(f"sqlite-vec://{db}")
    with pytest.raises(TerminalError) as err:
        conn.list_collections()
    assert str(db) in str(err.value) and "Not a directory" in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    conn.close()


def test_a_file_that_is_not_a_database_is_terminal_and_named(tmp_path: Path) -> None:
    db = tmp_path / "vec.db"
    db.write_bytes(b"x" * 4096)
    conn = connect(f"sqlite-vec://{db}", read_only=True)
    with pytest.raises(TerminalError, match="not a database") as err:
        conn.list_collections()
    assert str(db) in str(err.value)


def test_constructor_touches_nothing_and_close_opens_nothing(tmp_path: Path) -> None:
    db = tmp_path / "new" / "vec.db"
    conn = connect(f"sqlite-vec://{db}")
    conn.close()
    assert not (tmp_path / "new").exists()
    assert conn.list_collections() == []
    assert db.is_file()
    with pytest.raises(ConfigError, match="does not exist"):
        connect(f"sqlite-vec://{tmp_path / 'missing.db'}", read_only=True)


def test_a_failed_upsert_rolls_back_and_is_terminal(tmp_path: Path) -> None:
    schema = sample_schema("docs")
    conn = connect(f"sqlite-vec://{tmp_path / 'vec.db'}")
    conn.create(schema)
    conn._conn().execute('DROP TABLE "docs__vec"')  # type: ignore[attr-defined]
    with pytest.raises(TerminalError, match=r"upsert 'docs'.*no such table"):
        conn.upsert("docs", sample_batch(schema, 5))
    assert not conn._conn().in_transaction  # type: ignore[attr-defined]
    assert conn.count("docs") == 0


@pytest.mark.parametrize("module", ["pysqlite3.dbapi2", "sqlite3"])
def test_translate_error(module: str) -> None:
    sqlite3 = std_sqlite3 if module == "sqlite3" else require_module(module)
    from vecmigrate.connectors.sqlite_vec import SqliteVecConnector
    from vecmigrate.connectors.sqlite_vec._client import translate_error

    assert SqliteVecConnector.translate_error is translate_error
    what = "sqlite-vec upsert 'docs'"
    locked = translate_error(sqlite3.OperationalError("database is locked"), what)
    assert isinstance(locked, TransientError) and str(locked) == f"{what}: database is locked"
    refused = translate_error(sqlite3.IntegrityError("NOT NULL constraint failed: t.a"), what)
    assert isinstance(refused, DataError)
    full = translate_error(sqlite3.OperationalError("database or disk is full"), what)
    assert type(full) is TerminalError
    assert isinstance(translate_error(OSError(errno.EACCES, "denied", "/x.db"), what), ConfigError)
    assert translate_error(KeyError("x"), what) is None
