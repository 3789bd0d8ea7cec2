"""sqlite-vec (real extension, loaded into pysqlite3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.suite import ConnectorConformance
from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType


class TestSqliteVecStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[Connector]:
        require_module("sqlite_vec")
        conn = connect(f"sqlite-vec://{tmp_path / 'vec.db'}")
        yield conn
        conn.close()


class TestSqliteVecIntIds(TestSqliteVecStringIds):
    id_type = IdType.INT
