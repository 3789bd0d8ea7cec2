"""pgvector maps psycopg's errors in one place (``_client.translate_error``) and does no
I/O before its first call: an unreachable server is a TransientError naming host and port,
a refused login a ConfigError, a refused record a DataError; never the password or SQL."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from vecmigrate.connectors import connect
from vecmigrate.connectors.pgvector import PgvectorConnector
from vecmigrate.connectors.pgvector._client import translate_error
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError
from vecmigrate.testing.data import sample_batch, sample_schema

SECRET = "s3cr3t-pg-7d1e"


def test_unreachable_server_connects_then_fails_transiently(monkeypatch: Any) -> None:
    monkeypatch.setenv("VM_TEST_PG_PASSWORD", SECRET)
    conn = connect("pgvector://u@127.0.0.1:1/x?password=env:VM_TEST_PG_PASSWORD")
    assert isinstance(conn, PgvectorConnector)
    with pytest.raises(TransientError) as err:
        conn.list_collections()
    text = str(err.value)
    assert "127.0.0.1" in text and "port 1 " in text
    assert SECRET not in text and SECRET not in repr(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    conn.close()


def test_constructor_reads_no_secret_and_close_opens_nothing() -> None:
    conn = connect("pgvector://u@127.0.0.1:1/x?password=env:VM_TEST_PG_UNSET")
    conn.close()  # never connected: nothing to close, nothing opened
    assert not conn._all  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="VM_TEST_PG_UNSET"):
        conn.list_collections()


def test_unknown_role_is_a_config_error(postgres: Any) -> None:
    uri = f"pgvector://no_such_role_{uuid.uuid4().hex[:6]}@{postgres.host}:{postgres.port}/postgres"
    with connect(uri) as conn, pytest.raises(ConfigError, match="does not exist") as err:
        conn.list_collections()
    assert f"{postgres.port}" in str(err.value)


def test_a_record_the_table_refuses_is_a_data_error(postgres: Any) -> None:
    name = f"err_{uuid.uuid4().hex[:8]}"
    schema = sample_schema(name)
    with connect(postgres.uri()) as conn:
        conn.create(schema)
        try:
            with psycopg.connect(postgres.dsn, autocommit=True) as db:
                db.execute(f'ALTER TABLE "{name}" ADD CONSTRAINT old CHECK (year < 1900)')
            with pytest.raises(DataError, match="violates check constraint") as err:
                conn.upsert(name, sample_batch(schema, 3))
            assert f"upsert into {name!r}" in str(err.value)
            assert "INSERT" not in str(err.value) and "COPY" not in str(err.value)
        finally:
            conn.drop(name)


def test_translate_error_classifies_psycopg_errors() -> None:
    syntax = psycopg.errors.SyntaxError('syntax error at or near "x"\nLINE 1: SELECT secret x')
    got = translate_error(syntax, "pgvector count 'docs'")
    assert type(got) is TerminalError
    assert str(got) == "pgvector count 'docs': syntax error at or near \"x\""
    denied = psycopg.errors.InsufficientPrivilege("permission denied for table docs")
    assert isinstance(translate_error(denied, "w"), ConfigError)
    login = psycopg.OperationalError(
        'connection failed: connection to server at "10.0.0.1", port 5432 failed: '
        'FATAL:  password authentication failed for user "u"'
    )
    assert isinstance(translate_error(login, "w"), ConfigError)
    reset = psycopg.OperationalError("consuming input failed: server closed the connection")
    assert isinstance(translate_error(reset, "w"), TransientError)
    assert isinstance(translate_error(psycopg.errors.QueryCanceled("timeout"), "w"), TransientError)
    assert isinstance(translate_error(psycopg.errors.NumericValueOutOfRange("big"), "w"), DataError)
    # An OperationalError no retry passes (it was retried, then blamed on the connection).
    limit = psycopg.errors.ProgramLimitExceeded(
        "column cannot have more than 2000 dimensions for hnsw index"
    )
    assert type(translate_error(limit, "w")) is TerminalError


def test_translate_error_leaves_other_errors_alone() -> None:
    assert translate_error(KeyError("id"), "w") is None
    assert PgvectorConnector.translate_error(KeyError("id"), "w") is None
