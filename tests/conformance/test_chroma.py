"""Chroma, embedded and over HTTP (``chroma run`` started by the session fixture)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.suite import ConnectorConformance
from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType


class TestChromaEmbedded(ConnectorConformance):
    @pytest.fixture
    def connector(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connector]:
        require_module("chromadb")
        # Chroma caches one client per path per process: one folder per test keeps them apart.
        path: Path = tmp_path_factory.mktemp(f"chroma-{uuid.uuid4().hex[:6]}")
        conn = connect(f"chroma://{path}")
        yield conn
        conn.close()


class TestChromaEmbeddedIntIds(TestChromaEmbedded):
    id_type = IdType.INT


class TestChromaHttp(ConnectorConformance):
    @pytest.fixture
    def connector(self, chroma_server: Any) -> Iterator[Connector]:
        conn = connect(chroma_server.uri)
        yield conn
        conn.close()
