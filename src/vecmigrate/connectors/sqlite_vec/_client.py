"""SQLite calls for ``connectors/sqlite_vec``: opening a connection with sqlite-vec loaded,
and the error mapping.

This Python's sqlite3 cannot load extensions, so connections come from pysqlite3; errors
of either module are mapped (a caller may hand in a stdlib connection's error).
"""

from __future__ import annotations

import sqlite3 as std_sqlite3
from pathlib import Path
from typing import Any

import pysqlite3.dbapi2 as sqlite3
import sqlite_vec

from vecmigrate.connectors.files import make_dir, os_error
from vecmigrate.errors import DataError, TerminalError, TransientError, VecmigrateError

_ERROR = (sqlite3.Error, std_sqlite3.Error)
_OPERATIONAL = (sqlite3.OperationalError, std_sqlite3.OperationalError)
# A record SQLite refuses: a constraint, a value it cannot bind, a vector vec0 cannot hold.
_BAD_RECORD = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.DataError,
    std_sqlite3.IntegrityError,
    std_sqlite3.InterfaceError,
    std_sqlite3.DataError,
)


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """ "database is locked" / busy (another writer holds the file) is TransientError; a
    record SQLite or vec0 refuses is DataError; any other SQLite error TerminalError. File
    system errors (making the database's directory) go by ``os_error``."""
    if isinstance(exc, OSError):
        return os_error(exc, what)
    if not isinstance(exc, _ERROR):
        return None
    text = str(exc)
    if isinstance(exc, _OPERATIONAL) and ("locked" in text or "busy" in text):
        return TransientError(f"{what}: {text}")
    if isinstance(exc, _BAD_RECORD) or (isinstance(exc, _OPERATIONAL) and "mismatch" in text):
        return DataError(f"{what}: {text}")
    return TerminalError(f"{what}: {text}")


def open_db(path: Path) -> Any:
    """A connection to ``path`` (created with its directory if missing) in WAL mode with
    sqlite-vec loaded and vecmigrate's schema table present."""
    make_dir(path.parent)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _vecmigrate_schema (name TEXT PRIMARY KEY, schema TEXT)"
        )
    except BaseException:
        conn.close()
        raise
    return conn
