"""The dump format as a connector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType
from vecmigrate.testing.suite import ConnectorConformance


class TestDumpStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[Connector]:
        conn = connect(f"dump://{tmp_path / 'store'}")
        yield conn
        conn.close()


class TestDumpIntIds(TestDumpStringIds):
    id_type = IdType.INT
