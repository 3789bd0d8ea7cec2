from __future__ import annotations

import pytest

from vecmigrate.errors import ConfigError
from vecmigrate.uri import ConnectionURI, redact


def test_parse_parts() -> None:
    u = ConnectionURI.parse("pgvector://app@db.local:5433/vectors?table=items")
    assert (u.scheme, u.host, u.port, u.path, u.user) == (
        "pgvector",
        "db.local",
        5433,
        "/vectors",
        "app",
    )
    assert u.params == {"table": "items"}


def test_literal_password_refused_and_not_echoed() -> None:
    with pytest.raises(ConfigError) as err:
        ConnectionURI.parse("pgvector://app:hunter2@db/x")
    assert "hunter2" not in str(err.value)


def test_literal_secret_param_refused() -> None:
    with pytest.raises(ConfigError) as err:
        ConnectionURI.parse("pinecone://idx?api_key=sk-live-123")
    assert "sk-live-123" not in str(err.value)


def test_env_secret_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VM_TEST_PW", "s3cr3t")
    u = ConnectionURI.parse("pgvector://app@db/x?password=env:VM_TEST_PW")
    assert u.secret("password") == "s3cr3t"
    assert "s3cr3t" not in str(u)


def test_missing_env_secret_is_clear() -> None:
    u = ConnectionURI.parse("pgvector://app@db/x?password=env:VM_NOT_SET_ANYWHERE")
    with pytest.raises(ConfigError, match="VM_NOT_SET_ANYWHERE"):
        u.secret("password")


def test_redact_hides_passwords_and_keys() -> None:
    text = "failed: postgresql://u:pw123@h/db and https://x?api_key=abc&token=env:T"
    out = redact(text)
    assert "pw123" not in out and "abc" not in out
    assert "env:T" in out


def test_local_path() -> None:
    assert str(ConnectionURI.parse("lancedb:///tmp/x").local_path) == "/tmp/x"
