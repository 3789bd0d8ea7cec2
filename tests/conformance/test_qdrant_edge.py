"""Qdrant Edge (``qdrant-edge-py``): Qdrant's own Rust engine embedded, one shard per
collection; the shared suite, shards made by other programs, and a CLI copy + verify."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import json_of, run_cli
from vecmigrate.connectors import Connector, connect
from vecmigrate.connectors.qdrant_edge._client import translate_error
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import (
    METRIC_UNKNOWN,
    CollectionSchema,
    IdType,
    IndexSpec,
    Metric,
    VectorField,
)
from vecmigrate.records import build_batch, infer_metadata_fields
from vecmigrate.testing.data import sample_batch, sample_schema
from vecmigrate.testing.suite import ConnectorConformance


class TestQdrantEdgeStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[Connector]:
        require_module("qdrant_edge")
        conn = connect(f"qdrant-edge://{tmp_path / 'edge'}")
        yield conn
        conn.close()


class TestQdrantEdgeIntIds(TestQdrantEdgeStringIds):
    id_type = IdType.INT


# -- beyond the suite ------------------------------------------------------------------------
DIM = 4
DATA = Path(__file__).resolve().parent.parent / "data" / "minilm-600.parquet"


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Connector]:
    require_module("qdrant_edge")
    conn = connect(f"qdrant-edge://{tmp_path / 'edge'}")
    yield conn
    conn.close()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_nothing_is_opened_or_created_before_the_first_call(tmp_path: Path) -> None:
    require_module("qdrant_edge")
    path = tmp_path / "store"
    conn = connect(f"qdrant-edge://{path}")
    assert "shards" not in conn.__dict__
    conn.close()  # closing an unused connector opens nothing
    assert not path.exists()
    with pytest.raises(ConfigError, match="does not exist"):
        connect(f"qdrant-edge://{path}", read_only=True)
    with connect(f"qdrant-edge://{path}") as conn:
        assert conn.list_collections() == []
        with pytest.raises(ConfigError, match="no collection 'docs'"):
            conn.describe("docs")
        with pytest.raises(ConfigError, match="folder name"):
            conn.describe("../docs")
    assert not path.exists()


def test_hnsw_params_are_mapped_and_described(edge: Connector, tmp_path: Path) -> None:
    schema = CollectionSchema(
        name="mapped",
        vectors=(
            VectorField(
                dim=DIM, index=IndexSpec(kind="hnsw", params={"M": 8, "ef_construction": 40})
            ),
            VectorField(name="exact", dim=DIM, metric=Metric.DOT, index=IndexSpec(kind="flat")),
            VectorField(name="ivf", dim=DIM, index=IndexSpec(kind="ivf_pq", params={"nlist": 8})),
        ),
    )
    edge.create(schema)
    config = json.loads((tmp_path / "edge" / "mapped" / "edge_config.json").read_text())
    hnsw = {n: v["hnsw_config"] for n, v in config["vectors"].items()}
    assert (hnsw["vector"]["m"], hnsw["vector"]["ef_construct"]) == (8, 40)
    assert hnsw["exact"]["m"] == 0  # flat: no graph, exact search
    assert (hnsw["ivf"]["m"], hnsw["ivf"]["ef_construct"]) == (16, 100)
    assert config["vectors"]["exact"]["distance"] == "Dot"
    got = edge.describe("mapped")
    assert got.engine_settings["ivf.index"] == "hnsw (Qdrant has no ivf_pq index)"
    assert [v.metric for v in got.vectors] == [Metric.COSINE, Metric.DOT, Metric.COSINE]


def _foreign_shard(path: Path, ids: list[Any]) -> None:
    """A shard as an application writes it with qdrant-edge-py: an unnamed Dot vector, a
    named Manhattan one, a sparse one, shard-wide HNSW settings, plain payloads."""
    import qdrant_edge as qe

    config = qe.EdgeConfig(
        vectors={
            "": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Dot),
            "city": qe.EdgeVectorParams(size=2, distance=qe.Distance.Manhattan),
        },
        sparse_vectors={"bm25": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        hnsw_config=qe.HnswIndexConfig(m=24, ef_construct=77, full_scan_threshold=5000),
    )
    shard = qe.EdgeShard.create(str(path), config)
    rng = np.random.default_rng(0)
    points = [
        qe.Point(
            id=pid,
            vector={
                "": rng.normal(size=DIM).tolist(),
                "city": [1.0, float(n)],
                "bm25": qe.SparseVector(indices=[n, 100 + n], values=[0.5, 0.25]),
            },
            payload={"year": 2000 + n, "title": f"t{n}", "tags": ["a", "b"], "nested": {"k": n}},
        )
        for n, pid in enumerate(ids)
    ]
    shard.update(qe.UpdateOperation.upsert_points(points))
    shard.close()


def test_foreign_shard_is_described_from_its_config(edge: Connector, tmp_path: Path) -> None:
    ids = [str(uuid.UUID(int=i + 1)) for i in range(12)]
    _foreign_shard(tmp_path / "edge" / "app", ids)
    assert edge.list_collections() == ["app"]
    schema = edge.describe("app")
    assert schema.id_type is IdType.UUID and schema.engine_settings["point_ids"] == "native"
    vec, city = schema.vectors
    assert (vec.name, vec.dim, vec.metric) == ("vector", DIM, Metric.DOT)
    assert vec.metric_source == "shard config (distance Dot)"
    assert vec.index == IndexSpec(kind="hnsw", params={"M": 24, "ef_construction": 77})
    assert (city.name, city.dim, city.metric_source) == ("city", 2, METRIC_UNKNOWN)
    assert "Manhattan" in schema.engine_settings["city.metric"]
    assert [s.name for s in schema.sparse] == ["bm25"]
    assert {(m.name, m.type) for m in schema.metadata} == {
        ("year", "int64"),
        ("title", "string"),
        ("tags", "list<string>"),
        ("nested", "json"),
    }
    rows = edge.fetch("app", [ids[3], "no-such-id"]).to_pylist()
    assert [(r["id"], r["metadata"]["year"]) for r in rows] == [(ids[3], 2003)]
    assert rows[0]["bm25"] == {"indices": [3, 103], "values": [0.5, 0.25]}
    assert edge.count("app", {"year": {"$gte": 2010}}) == 2
    hits, _ = edge.search("app", np.ones((1, DIM), dtype=np.float32), 3)
    assert len(hits[0]) == 3 and set(hits[0]) <= set(ids)
    # Written through vecmigrate: the unnamed vector and the point's own UUID are kept.
    batch = edge.fetch("app", [ids[0]])
    edge.upsert("app", batch)
    assert edge.count("app") == 12
    edge.delete("app", ids[:2])
    assert edge.count("app") == 10


def test_a_changed_distance_wins_over_the_recorded_metric(edge: Connector, tmp_path: Path) -> None:
    """The recorded schema says cosine; the shard was recreated (by hand, keeping the
    schema file) with Euclid distance: describe reports l2 and says why."""
    import qdrant_edge as qe

    recorded = CollectionSchema(name="moved", vectors=(VectorField(dim=DIM),))
    edge.create(recorded)
    edge.close()
    path = tmp_path / "edge" / "moved"
    for p in path.iterdir():
        if p.name != "vecmigrate_schema.json":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    params = qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Euclid)
    qe.EdgeShard.create(str(path), qe.EdgeConfig(vectors={"vector": params})).close()
    schema = edge.describe("moved")
    assert schema.vector.metric is Metric.L2
    assert "recorded cosine" in schema.engine_settings["vector.metric"]


def test_engine_errors_are_translated(edge: Connector, tmp_path: Path) -> None:
    schema = CollectionSchema(name="docs", vectors=(VectorField(dim=DIM),))
    edge.create(schema)
    # Edge locks an open shard to one process (and one open handle).
    other = connect(f"qdrant-edge://{tmp_path / 'edge'}")
    with pytest.raises(ConfigError, match="open in another process"):
        other.count("docs")
    other.close()
    shard = edge.shards.get("docs")  # type: ignore[attr-defined]
    import qdrant_edge as qe

    bad = qe.UpdateOperation.upsert_points([qe.Point(id=1, vector={"vector": [1.0, 2.0]})])
    with pytest.raises(DataError, match="Vector dimension error"):
        edge._call("upsert", shard.update, bad)
    negative = pa.RecordBatch.from_pylist(
        [{"id": "x", "vector": [1.0] * DIM}], schema=schema.arrow_schema()
    )
    assert translate_error(KeyError("id"), "w") is None
    assert translate_error(TypeError("unexpected keyword"), "w") is None
    edge.upsert("docs", negative)  # string ids are hashed: no error
    int_schema = CollectionSchema(name="ints", id_type=IdType.INT, vectors=(VectorField(dim=DIM),))
    edge.create(int_schema)
    neg = pa.RecordBatch.from_pylist(
        [{"id": -5, "vector": [1.0] * DIM}], schema=int_schema.arrow_schema()
    )
    with pytest.raises(DataError, match="cannot be negative"):
        edge.upsert("ints", neg)


def test_a_written_store_is_left_unchanged_by_later_readers(tmp_path: Path) -> None:
    """Edge completes its config and folds its journals on the first load after writes;
    ``close`` does that load, so a reader opening the store later changes no byte."""
    require_module("qdrant_edge")
    uri = f"qdrant-edge://{tmp_path / 'edge'}"
    schema = sample_schema("docs")
    with connect(uri) as conn:
        conn.create(schema)
        conn.upsert("docs", sample_batch(schema))
        conn.finalize("docs")
    before = _files(tmp_path / "edge")
    with connect(uri, read_only=True) as conn:
        assert conn.count("docs") == 240
        conn.fetch("docs", ["doc-0001"])
        conn.search("docs", np.ones((1, 16), dtype=np.float32), 3)
    assert _files(tmp_path / "edge") == before


def _lancedb_source(path: Path) -> str:
    require_module("lancedb")
    table = pq.read_table(DATA)
    meta = infer_metadata_fields(table.column("metadata").to_pylist())
    schema = CollectionSchema(
        name="docs",
        vectors=(VectorField(dim=384, metric=Metric.COSINE),),
        has_document=True,
        metadata=meta,
    )
    uri = f"lancedb://{path}"
    with connect(uri) as conn:
        conn.create(schema)
        conn.upsert(
            "docs",
            build_batch(
                schema,
                table.column("id").to_pylist(),
                {"vector": table.column("vector").combine_chunks()},
                documents=table.column("document").to_pylist(),
                metadata=table.column("metadata").to_pylist(),
            ),
        )
        conn.finalize("docs")
    return uri


def test_cli_copy_from_lancedb_then_verify(tmp_path: Path) -> None:
    require_module("qdrant_edge")
    source = _lancedb_source(tmp_path / "lance")
    target = f"qdrant-edge://{tmp_path / 'edge'}"
    copied = run_cli("copy", source, target, "-c", "docs", "--json", cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    result = json_of(copied)
    assert result["rows_written"] == 600 and result["verified"], result["checks"]
    checked = run_cli(
        "verify", source, target, "-c", "docs", "--queries", "50", "--json", cwd=tmp_path
    )
    assert checked.returncode == 0, checked.stderr
    report = json_of(checked)
    assert report["passed"] and report["parity"]["equal"]
    assert report["overlap"]["overlap@10"] >= 0.9
    with connect(target, read_only=True) as edge:
        described = edge.describe("docs")
        assert described.vector.dim == 384 and described.vector.metric is Metric.COSINE
        assert edge.count("docs", {"has_example": True}) == sum(
            1 for m in pq.read_table(DATA).column("metadata").to_pylist() if m["has_example"]
        )
