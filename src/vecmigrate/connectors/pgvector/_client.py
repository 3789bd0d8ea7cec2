"""Connections and errors of the pgvector connector, used only by ``connectors/pgvector``.

``translate_error`` is the engine's one error mapping (``Connector.translate_error``): the
base class applies it around every contract call and ``_call``. ``open_connection`` opens
one connection (the connector opens them lazily, one per thread).
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from pgvector.psycopg import register_vector

from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError, VecmigrateError

# libpq's words for a login the server refused (connection errors carry no SQLSTATE).
_LOGIN_REFUSED = re.compile(
    r"authentication failed|no pg_hba\.conf entry|no password supplied|password is required"
    r'|(role|database) ".*" does not exist'
)
_CREDENTIALS_HINT = "check the user, the database and ?password=env:NAME"


def _first_line(exc: Exception) -> str:
    """The error's first line: libpq's or the server's message, never the query text
    (which follows on ``LINE n:`` lines) nor a password (libpq never prints one)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """A psycopg error as vecmigrate's typed error; None when ``exc`` is not psycopg's.

    Lost or refused connections, timeouts and cancelled queries may pass on a retry
    (TransientError); a refused login or missing privilege needs the URI or the grants
    fixed (ConfigError); bad values are DataError and anything else TerminalError.
    """
    if not isinstance(exc, psycopg.Error):
        return None
    message = f"{what}: {_first_line(exc)}"
    if isinstance(exc, psycopg.errors.InvalidAuthorizationSpecification) or (
        isinstance(exc, psycopg.OperationalError) and _LOGIN_REFUSED.search(_first_line(exc))
    ):
        return ConfigError(message, hint=_CREDENTIALS_HINT)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return ConfigError(message, hint="grant the user access to the schema and its tables")
    if isinstance(exc, psycopg.errors.ProgramLimitExceeded):
        return TerminalError(message)  # a limit of PostgreSQL's or pgvector's: no retry passes
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.ConnectionException):
        return TransientError(message)
    if isinstance(
        exc, psycopg.DataError | psycopg.IntegrityError | psycopg.errors.CardinalityViolation
    ):
        return DataError(message)
    return TerminalError(message)


def open_connection(conninfo: dict[str, Any], where: str) -> psycopg.Connection[Any]:
    """A new connection with pgvector's types registered (``where`` names the server in
    messages). psycopg errors are left to ``translate_error``."""
    conn = psycopg.connect(**{k: v for k, v in conninfo.items() if v is not None})
    try:
        register_vector(conn)
    except psycopg.ProgrammingError as exc:
        conn.close()
        raise ConfigError(
            f"{where}: the vector extension is not installed", hint="CREATE EXTENSION vector"
        ) from exc
    return conn
