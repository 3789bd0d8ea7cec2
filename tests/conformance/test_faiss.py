"""FAISS index files with a Parquet sidecar (real faiss-cpu)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conformance.suite import ConnectorConformance
from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType, Metric


class TestFaissStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[Connector]:
        require_module("faiss")
        conn = connect(f"faiss://{tmp_path / 'faiss'}")
        yield conn
        conn.close()


class TestFaissIntIds(TestFaissStringIds):
    id_type = IdType.INT


def test_reads_an_index_file_made_by_faiss_itself(tmp_path: Path) -> None:
    faiss = require_module("faiss")
    vectors = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(8))
    index.add_with_ids(vectors, np.arange(100, 150))
    faiss.write_index(index, str(tmp_path / "legacy.faiss"))
    conn = connect(f"faiss://{tmp_path}")
    schema = conn.describe("legacy")
    assert (schema.id_type, schema.vector.dim, schema.vector.metric) == (IdType.INT, 8, Metric.L2)
    rows = [
        r
        for p in conn.partitions("legacy", 2)
        for b, _ in conn.scan("legacy", p)
        for r in b.to_pylist()
    ]
    assert [r["id"] for r in rows] == list(range(100, 150))
    assert np.allclose(rows[7]["vector"], vectors[7])
    ids, _ = conn.search("legacy", vectors[:1], 1)
    assert ids == [[100]]
