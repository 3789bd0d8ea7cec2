from __future__ import annotations

import pytest

from vecmigrate.errors import ConfigError
from vecmigrate.uri import ConnectionURI, redact


def test_parse_parts() -> None:
    u = ConnectionURI.parse("pgvector://app@db.local:5433/vectors?schema=items")
    assert (u.scheme, u.host, u.port, u.path, u.user) == (
        "pgvector",
        "db.local",
        5433,
        "/vectors",
        "app",
    )
    assert u.params == {"schema": "items"}


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


# -- the path grammar: every character as written ---------------------------------------------
from pathlib import Path  # noqa: E402
from urllib.parse import quote  # noqa: E402

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NAME = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\x00"),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", "..") and s.strip() == s and not s.startswith("~"))


@given(parts=st.lists(_NAME, min_size=1, max_size=3))
def test_percent_encoded_paths_round_trip_exactly(parts: list[str]) -> None:
    rel = "/".join(parts)
    assert ConnectionURI.parse(f"lancedb:./{quote(rel)}").local_path == Path("./" + rel)
    assert ConnectionURI.parse(f"lancedb:///{quote(rel)}").local_path == Path("/" + rel)
    assert ConnectionURI.parse(f"dump://./{quote(rel)}").local_path == Path("./" + rel)


@given(parts=st.lists(_NAME.filter(lambda s: not set(s) & set("%?#")), min_size=1, max_size=3))
def test_raw_paths_keep_case_spaces_and_unicode(parts: list[str]) -> None:
    rel = "/".join(parts)
    assert ConnectionURI.parse(f"lancedb:{rel}").local_path == Path(rel)
    assert ConnectionURI.parse(f"chroma:./{rel}").local_path == Path("./" + rel)


@given(before=_NAME, after=_NAME)
def test_a_raw_hash_is_refused_not_dropped(before: str, after: str) -> None:
    with pytest.raises(ConfigError, match="%23"):
        ConnectionURI.parse(f"lancedb:./{before}#{after}")


@pytest.mark.parametrize("raw", ["lancedb://MyLance", "chroma://data/x", "faiss://h:1/x"])
def test_a_host_where_a_path_is_meant_is_refused_with_the_fix(raw: str) -> None:
    with pytest.raises(ConfigError) as err:
        _ = ConnectionURI.parse(raw).local_path
    assert "names a host" in str(err.value) and f"{raw.split(':')[0]}:./" in str(err.value)


def test_relative_forms_preserve_case() -> None:
    for raw in ("lancedb:MyLance", "lancedb:./MyLance", "lancedb://./MyLance"):
        assert ConnectionURI.parse(raw).local_path.name == "MyLance"
