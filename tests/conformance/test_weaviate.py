"""Weaviate through the official weaviate-client (REST + gRPC) against the protocol test
double in ``tests/protocol/weaviate_server.py`` — not a Weaviate server, none can run here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType
from vecmigrate.testing.suite import ConnectorConformance


@pytest.fixture(scope="module")
def weaviate_double() -> Iterator[object]:
    require_module("weaviate")
    from tests.protocol.weaviate_server import WeaviateDouble

    server = WeaviateDouble().start()
    try:
        yield server
    finally:
        server.stop()


class TestWeaviateStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, weaviate_double: object) -> Iterator[Connector]:
        conn = connect(weaviate_double.uri())  # type: ignore[attr-defined]
        yield conn
        conn.close()


class TestWeaviateIntIds(TestWeaviateStringIds):
    id_type = IdType.INT
