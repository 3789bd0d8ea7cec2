"""Redis maps redis-py's errors in one place (``_client.translate_error``) and makes its
client on first use: an unreachable server is a TransientError naming host and port, a
refused login a ConfigError, a refused command a TerminalError; never the password."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from vecmigrate.connectors import connect
from vecmigrate.connectors.redis import RedisConnector
from vecmigrate.connectors.redis._client import translate_error
from vecmigrate.errors import ConfigError, TerminalError, TransientError
from vecmigrate.testing.data import sample_batch, sample_schema

SECRET = "s3cr3t-redis-41ab"


def test_unreachable_server_connects_then_fails_transiently(monkeypatch: Any) -> None:
    monkeypatch.setenv("VM_TEST_REDIS_PASSWORD", SECRET)
    conn = connect("redis://u@127.0.0.1:1?password=env:VM_TEST_REDIS_PASSWORD")
    assert isinstance(conn, RedisConnector)
    assert "client" not in conn.__dict__  # nothing made before the first call
    with pytest.raises(TransientError) as err:
        conn.list_collections()
    text = str(err.value)
    assert "127.0.0.1:1" in text
    assert SECRET not in text and SECRET not in repr(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    conn.close()


def test_constructor_reads_no_secret_and_close_opens_nothing() -> None:
    conn = connect("redis://127.0.0.1:1?password=env:VM_TEST_REDIS_UNSET")
    conn.close()
    assert "client" not in conn.__dict__  # close() made no client just to close it
    with pytest.raises(ConfigError, match="VM_TEST_REDIS_UNSET"):
        conn.list_collections()


def test_a_command_the_server_refuses_is_terminal(redis_server: Any) -> None:
    name = f"err_{uuid.uuid4().hex[:8]}"
    schema = sample_schema(name)
    with connect(redis_server.uri) as conn:
        conn.create(schema)
        conn.upsert(name, sample_batch(schema, 3))
        try:
            # The index vanishes behind the connector's back (its schema stays cached).
            other = redis.Redis(host=redis_server.host, port=redis_server.port)
            other.execute_command("FT.DROPINDEX", name)  # type: ignore[no-untyped-call]
            other.close()
            with pytest.raises(TerminalError, match=r"(?i)no such index") as err:
                conn.count(name)
            assert not isinstance(err.value, TransientError)
            assert f"search in {name!r}" in str(err.value)
        finally:
            conn.drop(name)


def test_translate_error_classifies_redis_errors() -> None:
    refused = translate_error(redis.ResponseError("ERR syntax error"), "redis count 'docs'")
    assert type(refused) is TerminalError
    assert str(refused) == "redis count 'docs': ERR syntax error"
    busy = redis.ResponseError("BUSY Redis is busy running a script")
    assert isinstance(translate_error(busy, "w"), TransientError)
    assert isinstance(translate_error(redis.BusyLoadingError("loading"), "w"), TransientError)
    assert isinstance(translate_error(redis.TimeoutError("Timeout reading"), "w"), TransientError)
    login = redis.AuthenticationError("invalid username-password pair or user is disabled.")
    assert isinstance(translate_error(login, "w"), ConfigError)
    acl = redis.exceptions.NoPermissionError("this user has no permissions to run 'ft.search'")
    assert isinstance(translate_error(acl, "w"), ConfigError)


def test_translate_error_leaves_other_errors_alone() -> None:
    assert translate_error(KeyError("id"), "w") is None
    assert RedisConnector.translate_error(KeyError("id"), "w") is None
