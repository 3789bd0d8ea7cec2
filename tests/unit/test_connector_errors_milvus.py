"""Milvus: driver errors mapped in one place; nothing is opened before the first call;
capabilities that depend on the server version come from ``capabilities_for``."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pymilvus")

from pymilvus.exceptions import MilvusException, ParamError

from vecmigrate.connectors import connect, connector_class
from vecmigrate.connectors.milvus import MilvusConnector, MilvusLiteConnector
from vecmigrate.connectors.milvus._client import translate_error
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError
from vecmigrate.model import FullTextField, IdType
from vecmigrate.testing.data import rich_schema

SECRET = "milvus-test-token-9f3b"


def test_unreachable_server_connects_then_fails_transiently(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VECMIGRATE_TEST_MILVUS_TOKEN", SECRET)
    conn = connect("milvus://127.0.0.1:1?token=env:VECMIGRATE_TEST_MILVUS_TOKEN")
    assert "_client" not in conn.__dict__  # the constructor opened nothing
    with pytest.raises(TransientError) as err:
        conn.list_collections()
    text = str(err.value)
    assert "127.0.0.1:1" in text
    assert SECRET not in text
    conn.close()


def test_terminal_data_and_config_errors() -> None:
    refused = MilvusException(code=100, message="collection not found[collection=x]")
    assert isinstance(translate_error(refused, "milvus drop 'x'"), TerminalError)
    assert not isinstance(translate_error(refused, "w"), TransientError)
    busy = MilvusException(code=2, message="server unavailable")
    assert isinstance(translate_error(busy, "w"), TransientError)
    assert isinstance(translate_error(ParamError(message="bad vector"), "w"), DataError)
    denied = MilvusException(code=1800, message="permission denied: PrivilegeInsert")
    assert isinstance(translate_error(denied, "w"), ConfigError)


def test_not_the_drivers_error_is_left_alone() -> None:
    assert translate_error(KeyError("id"), "milvus upsert 'x'") is None
    assert MilvusConnector.translate_error(KeyError("id"), "w") is None


def test_capabilities_come_from_the_class_and_the_server_version() -> None:
    assert connector_class("milvus") is MilvusConnector
    assert connector_class("milvus-lite") is MilvusLiteConnector
    assert MilvusLiteConnector.capabilities.index_kinds == {"flat", "ivf_flat", "auto"}
    assert "hnsw" in MilvusConnector.capabilities.index_kinds
    old = MilvusConnector.capabilities_for((2, 3))
    assert not old.named_vectors and not old.sparse_vectors and not old.full_text
    # 2.5 added BM25 functions (full-text search)
    assert MilvusConnector.capabilities_for((2, 4)) == MilvusConnector.capabilities.model_copy(
        update={"full_text": False}
    )
    assert MilvusConnector.capabilities_for((2, 5)) == MilvusConnector.capabilities
    assert MilvusConnector.capabilities.full_text and MilvusLiteConnector.capabilities.full_text
    assert MilvusConnector.capabilities_for(None) == MilvusConnector.capabilities
    assert MilvusLiteConnector.capabilities_for(None) == MilvusLiteConnector.capabilities


def test_an_old_server_refuses_the_schema_before_anything_is_changed() -> None:
    conn = connect("milvus://127.0.0.1:1")
    conn.__dict__["server_version"] = (2, 3)  # as read from a 2.3 server
    with pytest.raises(ConfigError, match="no sparse vectors"):
        conn.create(rich_schema("sp", id_type=IdType.STRING, sparse=True), if_exists="replace")
    with pytest.raises(ConfigError, match="one vector field"):
        conn.create(rich_schema("nv", id_type=IdType.STRING, named=True), if_exists="replace")
    conn.__dict__["server_version"] = (2, 4)
    bm25 = FullTextField(name="sparse_bm25")
    with pytest.raises(ConfigError, match="no full-text search"):
        conn.create(
            rich_schema("ft", id_type=IdType.INT).replace(full_text=(bm25,)), if_exists="replace"
        )
    assert "_client" not in conn.__dict__  # refused without a call to the server
    conn.close()


def test_milvus_lite_opens_its_file_on_first_use(tmp_path: Path) -> None:
    pytest.importorskip("milvus_lite")
    path = tmp_path / "sub" / "m.db"
    conn = connect(f"milvus-lite://{path}")
    assert type(conn) is MilvusLiteConnector and conn.server_version is None
    assert not path.parent.exists()
    conn.close()  # closing an unopened connector opens nothing
    assert not path.parent.exists()
    with connect(f"milvus-lite://{path}") as conn:
        assert conn.list_collections() == []
    assert path.exists()


def test_milvus_lite_needs_a_db_file(tmp_path: Path) -> None:
    conn = connect(f"milvus-lite://{tmp_path / 'm.sqlite'}")
    with pytest.raises(ConfigError, match=r"ending in \.db"):
        conn.list_collections()
