from __future__ import annotations

import subprocess
import sys

import pytest

from vecmigrate.connectors import REGISTRY, connect
from vecmigrate.errors import ConfigError

ENGINE_CLIENTS = ("chromadb", "lancedb", "psycopg", "pgvector", "torch", "sentence_transformers")


def test_importing_vecmigrate_and_its_cli_imports_no_engine_client() -> None:
    code = (
        "import sys, vecmigrate, vecmigrate.cli, vecmigrate.pipeline, vecmigrate.connectors;"
        f"print([m for m in {ENGINE_CLIENTS!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "scheme,module,extra",
    [
        ("lancedb", "lancedb", "lancedb"),
        ("chroma", "chromadb", "chroma"),
        ("pgvector", "psycopg", "pgvector"),
    ],
)
def test_missing_client_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, scheme: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    monkeypatch.delitem(sys.modules, REGISTRY[scheme][0], raising=False)
    with pytest.raises(ConfigError) as err:
        connect(f"{scheme}:///tmp/x" if scheme != "pgvector" else "pgvector://u@h/db")
    assert f"vecmigrate[{extra}]" in str(err.value)


def test_unknown_scheme() -> None:
    with pytest.raises(ConfigError, match="unknown engine scheme") as err:
        connect("nosuch:///x")
    assert err.value.hint and "did you mean" not in err.value.hint
    with pytest.raises(ConfigError) as typo:
        connect("lancdb:///x")
    assert typo.value.hint and typo.value.hint.startswith("did you mean lancedb://?")


def test_uri_parameters_are_typed_and_secrets_stay_references(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vecmigrate.connectors.config import Secret
    from vecmigrate.connectors.redis import RedisConfig
    from vecmigrate.uri import ConnectionURI

    cfg = RedisConfig.from_uri(
        ConnectionURI.parse("redis://h?tls=true&timeout=2.5&password=env:VM_REDIS_PW")
    )
    assert (cfg.tls, cfg.timeout, cfg.db) == (True, 2.5, "0")
    assert cfg.password == Secret("env:VM_REDIS_PW")
    monkeypatch.setenv("VM_REDIS_PW", "hunter2")
    assert cfg.password.reveal() == "hunter2" and "hunter2" not in repr(cfg)
    with pytest.raises(ConfigError, match=r"timeout='soon' is not a valid float"):
        RedisConfig.from_uri(ConnectionURI.parse("redis://h?timeout=soon"))
    with pytest.raises(ConfigError, match=r"tls='maybe'"):
        RedisConfig.from_uri(ConnectionURI.parse("redis://h?tls=maybe"))
    with pytest.raises(ConfigError) as err:
        connect("redis://h?timout=3")
    assert "'timout'" in str(err.value) and "timeout" in str(err.value.hint)
