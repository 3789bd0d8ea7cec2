"""FAISS index files with a Parquet sidecar (real faiss-cpu)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.errors import DataError
from vecmigrate.model import IdType, Metric
from vecmigrate.records import vectors_to_numpy
from vecmigrate.testing.data import sample_batch, sample_ids, sample_schema, sample_vectors
from vecmigrate.testing.suite import ConnectorConformance


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


# -- the index file's copy of each vector (what searches serve) ---------------------------
def _loaded(tmp_path: Path, metric: Metric) -> tuple[Path, np.ndarray]:
    require_module("faiss")
    conn = connect(f"faiss://{tmp_path}")
    schema = sample_schema("docs", metric=metric)
    conn.create(schema)
    conn.upsert("docs", sample_batch(schema))
    conn.close()
    return tmp_path / "docs.faiss", sample_vectors()


def _rewrite(path: Path, vectors: np.ndarray, metric_type: int) -> None:
    """Replace the index file as another tool would, leaving the sidecar alone."""
    faiss = require_module("faiss")
    index = faiss.IndexFlat(vectors.shape[1], metric_type)
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(index, str(path))


@pytest.mark.parametrize("metric", [Metric.COSINE, Metric.L2])
def test_reads_the_copy_the_index_file_serves(tmp_path: Path, metric: Metric) -> None:
    faiss = require_module("faiss")
    path, vectors = _loaded(tmp_path, metric)
    index = faiss.read_index(str(path))
    served = index.reconstruct_n(0, index.ntotal)
    served[3] = -served[3]  # one vector negated in the index only
    _rewrite(path, served, index.metric_type)
    ids = sample_ids(IdType.STRING)
    conn = connect(f"faiss://{tmp_path}")
    got = vectors_to_numpy(conn.fetch("docs", ids[2:5]).column("vector"))
    assert np.allclose(got, np.stack([vectors[2], -vectors[3], vectors[4]]), atol=1e-5)
    assert np.array_equal(got[[0, 2]], vectors[[2, 4]])  # agreeing rows untouched
    for flt in (None, {"year": {"$gte": 0}}):  # both searches see what reads return
        assert conn.search("docs", -vectors[3:4], 1, filter=flt)[0] == [[ids[3]]]
    # The sidecar stays the truth: the next write rebuilds the index from it.
    conn.delete("docs", [ids[0]])
    conn.close()
    again = connect(f"faiss://{tmp_path}")
    assert np.array_equal(
        vectors_to_numpy(again.fetch("docs", [ids[3]]).column("vector"))[0], vectors[3]
    )
    assert again.search("docs", vectors[3:4], 1)[0] == [[ids[3]]]
    again.close()


def test_an_index_that_lost_rows_is_a_data_error(tmp_path: Path) -> None:
    faiss = require_module("faiss")
    path, _ = _loaded(tmp_path, Metric.L2)
    index = faiss.read_index(str(path))
    _rewrite(path, index.reconstruct_n(0, index.ntotal - 1), index.metric_type)
    conn = connect(f"faiss://{tmp_path}")
    with pytest.raises(DataError, match="holds 239 vectors, its sidecar 240"):
        conn.count("docs")
    conn.close()


def test_describe_reads_the_metric_of_the_index_file(tmp_path: Path) -> None:
    faiss = require_module("faiss")
    path, vectors = _loaded(tmp_path, Metric.L2)
    _rewrite(path, vectors, faiss.METRIC_INNER_PRODUCT)  # rebuilt by hand as inner product
    conn = connect(f"faiss://{tmp_path}")
    schema = conn.describe("docs")
    assert schema.vector.metric is Metric.DOT
    assert "recorded l2" in schema.engine_settings["vector.metric"]
    assert schema.engine_settings["vector.index"] == "IndexFlatIP (inner product)"
    conn.close()
