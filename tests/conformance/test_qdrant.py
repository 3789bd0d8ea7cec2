"""Qdrant through qdrant-client's local mode (no Qdrant server can run on this machine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.suite import ConnectorConformance
from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType


class TestQdrantLocalStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[Connector]:
        require_module("qdrant_client")
        conn = connect(f"qdrant+local://{tmp_path / 'qdrant'}")
        yield conn
        conn.close()


class TestQdrantLocalIntIds(TestQdrantLocalStringIds):
    id_type = IdType.INT
