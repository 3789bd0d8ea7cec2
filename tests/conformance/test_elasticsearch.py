"""Elasticsearch through the official client against the protocol test double
(``tests/protocol/search_server.py``): no Elasticsearch server can run on this machine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import require_module
from tests.protocol.search_server import SearchServer
from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType
from vecmigrate.testing.suite import ConnectorConformance


@pytest.fixture(scope="module")
def es_server() -> Iterator[SearchServer]:
    require_module("elasticsearch")
    server = SearchServer("elasticsearch")
    try:
        yield server
    finally:
        server.stop()


class TestElasticsearchStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, es_server: SearchServer) -> Iterator[Connector]:
        conn = connect(es_server.uri())
        yield conn
        conn.close()


class TestElasticsearchIntIds(TestElasticsearchStringIds):
    id_type = IdType.INT
