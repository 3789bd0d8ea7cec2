"""LanceDB (embedded, real engine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType
from vecmigrate.testing.suite import ConnectorConformance


class TestLanceDBStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[Connector]:
        require_module("lancedb")
        conn = connect(f"lancedb://{tmp_path / 'lance'}")
        yield conn
        conn.close()


class TestLanceDBIntIds(TestLanceDBStringIds):
    id_type = IdType.INT
