"""OpenSearch through the official client against the protocol test double
(``tests/protocol/search_server.py``): no OpenSearch server can run on this machine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import require_module
from tests.protocol.search_server import SearchServer
from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType
from vecmigrate.testing.suite import ConnectorConformance


@pytest.fixture(scope="module")
def os_server() -> Iterator[SearchServer]:
    require_module("opensearchpy")
    server = SearchServer("opensearch")
    try:
        yield server
    finally:
        server.stop()


class TestOpenSearchStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, os_server: SearchServer) -> Iterator[Connector]:
        conn = connect(os_server.uri())
        yield conn
        conn.close()


class TestOpenSearchIntIds(TestOpenSearchStringIds):
    id_type = IdType.INT
