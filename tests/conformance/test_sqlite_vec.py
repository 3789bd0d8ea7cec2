"""sqlite-vec (real extension, loaded into pysqlite3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.errors import DataError
from vecmigrate.model import IdType, Metric
from vecmigrate.records import vectors_to_numpy
from vecmigrate.testing.data import DIM, sample_batch, sample_ids, sample_schema, sample_vectors
from vecmigrate.testing.suite import ConnectorConformance


class TestSqliteVecStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[Connector]:
        require_module("sqlite_vec")
        conn = connect(f"sqlite-vec://{tmp_path / 'vec.db'}")
        yield conn
        conn.close()


class TestSqliteVecIntIds(TestSqliteVecStringIds):
    id_type = IdType.INT


# -- the vec0 copy of each vector (what searches serve) -----------------------------------
def _loaded(tmp_path: Path, metric: Metric = Metric.L2) -> tuple[Connector, np.ndarray]:
    require_module("sqlite_vec")
    conn = connect(f"sqlite-vec://{tmp_path / 'vec.db'}")
    schema = sample_schema("docs", metric=metric)
    conn.create(schema)
    conn.upsert("docs", sample_batch(schema))
    return conn, sample_vectors()


def _vec0(conn: Connector, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    return list(conn._conn().execute(sql, params).fetchall())  # type: ignore[attr-defined]


def _rowid(conn: Connector, rid: str) -> int:
    return int(_vec0(conn, "SELECT rowid FROM docs WHERE id = ?", (rid,))[0][0])


def test_reads_the_copy_the_vec0_index_serves(tmp_path: Path) -> None:
    conn, vectors = _loaded(tmp_path)
    ids = sample_ids(IdType.STRING)
    rowid = _rowid(conn, ids[3])
    # Behind vecmigrate's back: vec0's copy negated, the table's blob untouched.
    _vec0(conn, "DELETE FROM docs__vec WHERE rowid = ?", (rowid,))
    _vec0(
        conn,
        "INSERT INTO docs__vec (rowid, embedding) VALUES (?, ?)",
        (rowid, (-vectors[3]).tobytes()),
    )
    got = vectors_to_numpy(conn.fetch("docs", ids[2:5]).column("vector"))
    assert np.array_equal(got, np.stack([vectors[2], -vectors[3], vectors[4]]))
    part = conn.partitions("docs", 1)[0]
    scanned = {r["id"]: r["vector"] for b, _ in conn.scan("docs", part) for r in b.to_pylist()}
    assert np.array_equal(scanned[ids[3]], -vectors[3]) and len(scanned) == len(ids)
    # Filtered search measures the same copy as unfiltered KNN.
    for flt in (None, {"year": {"$gte": 0}}):
        found, dist = conn.search("docs", -vectors[3:4], 1, filter=flt)
        assert found == [[ids[3]]] and dist[0][0] < 1e-6
    # An upsert rewrites both copies: the record reads back as written.
    conn.upsert("docs", sample_batch(conn.describe("docs")).slice(3, 1))
    got = vectors_to_numpy(conn.fetch("docs", [ids[3]]).column("vector"))
    assert np.array_equal(got[0], vectors[3])
    conn.close()


def test_a_record_missing_from_vec0_is_a_data_error_naming_it(tmp_path: Path) -> None:
    conn, _ = _loaded(tmp_path)
    ids = sample_ids(IdType.STRING)
    _vec0(conn, "DELETE FROM docs__vec WHERE rowid = ?", (_rowid(conn, ids[5]),))
    part = conn.partitions("docs", 1)[0]
    with pytest.raises(DataError, match=ids[5]):
        list(conn.scan("docs", part))
    with pytest.raises(DataError, match="missing from its vec0 index"):
        conn.fetch("docs", [ids[5]])
    conn.close()


def test_describe_reads_the_metric_vec0_was_declared_with(tmp_path: Path) -> None:
    conn, _ = _loaded(tmp_path, Metric.L2)
    assert conn.describe("docs").vector.metric is Metric.L2
    rows = _vec0(conn, "SELECT rowid, embedding FROM docs__vec")
    _vec0(conn, "DROP TABLE docs__vec")  # rebuilt by hand with another metric
    _vec0(
        conn,
        f"CREATE VIRTUAL TABLE docs__vec USING vec0(embedding float[{DIM}] distance_metric=cosine)",
    )
    for row in rows:
        _vec0(conn, "INSERT INTO docs__vec (rowid, embedding) VALUES (?, ?)", row)
    schema = conn.describe("docs")
    assert schema.vector.metric is Metric.COSINE
    assert "recorded l2" in schema.engine_settings["vector.metric"]
    assert "cosine" in schema.engine_settings["vector.index"]
    conn.close()
