"""Pinecone through the official client (10.x, API 2026-07) over real HTTP, against the
Pinecone *protocol test double* in ``tests/protocol/pinecone_server.py`` — not the service,
which cannot run on this machine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType
from vecmigrate.testing.suite import ConnectorConformance

API_KEY = "pc-test-key-0123456789"


@pytest.fixture(scope="module")
def pinecone_server(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Any]:
    """A Pinecone protocol server on 127.0.0.1 for this module; the key is in the env."""
    require_module("pinecone")
    from tests.protocol.pinecone_server import PineconeServer

    server = PineconeServer(API_KEY)
    monkeypatch_module.setenv("VECMIGRATE_TEST_PINECONE_KEY", API_KEY)
    try:
        yield server
    finally:
        server.stop()


def pinecone_uri(server: Any, index: str = "", **params: str) -> str:
    """A connection URI for the protocol server (the key comes from the environment)."""
    query = "&".join(
        [f"host={server.url}", "api_key=env:VECMIGRATE_TEST_PINECONE_KEY"]
        + [f"{k}={v}" for k, v in params.items()]
    )
    return f"pinecone://{index}?{query}"


@pytest.fixture(scope="module")
def shared_connector(pinecone_server: Any) -> Iterator[Connector]:
    # One connector per module: the client builds a TLS context per HTTP client (~0.1 s),
    # even for plain http; each test still works in its own freshly named index.
    conn = connect(pinecone_uri(pinecone_server))
    yield conn
    conn.close()


class TestPinecone(ConnectorConformance):
    @pytest.fixture
    def connector(self, shared_connector: Connector) -> Connector:
        return shared_connector


class TestPineconeIntIds(TestPinecone):
    id_type = IdType.INT
