"""verify per namespace: the ``$namespace`` filter on real engines (LanceDB, Qdrant local),
one query group per namespace, and a cross-namespace leak failing the gate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require_module
from tests.unit.test_mapping_reshape import _namespaced_dump
from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError
from vecmigrate.filters import NAMESPACE_KEY, evaluate, operators, parse
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.records import build_batch, metadata_rows, vectors_to_numpy
from vecmigrate.verify.gates import VerifyConfig
from vecmigrate.verify.report import markdown
from vecmigrate.verify.run import verify_migration

CONFIG = VerifyConfig(queries=20, filter_queries=0, namespace_queries=200)


def test_namespace_filter_parses_evaluates_and_is_refused_where_not_compiled(
    tmp_path: Path,
) -> None:
    src = _namespaced_dump(tmp_path)
    schema = src.describe("docs")
    node = parse({NAMESPACE_KEY: "tenant-a", "year": {"$gt": 2000}}, schema)
    assert operators(node) == {"$and", "$eq", "$gt", NAMESPACE_KEY}
    part = src.partitions("docs", 1)[0]
    batch = next(iter(src.scan("docs", part, schema=schema, batch_rows=10_000)))[0]
    mask = evaluate(parse({NAMESPACE_KEY: {"$in": ["tenant-b"]}}, schema), batch)
    assert mask.tolist() == [ns == "tenant-b" for ns in batch.column("namespace").to_pylist()]
    none_or_a = evaluate(parse({NAMESPACE_KEY: {"$ne": "tenant-b"}}, schema), batch)
    assert none_or_a.tolist() == [
        ns == "tenant-a" for ns in batch.column("namespace").to_pylist()
    ]  # $ne matches only records that have a namespace, like every field
    with pytest.raises(ConfigError, match="no namespaces"):
        parse({NAMESPACE_KEY: "x"}, schema.replace(namespaces=None))
    with pytest.raises(ConfigError, match="only"):
        parse({NAMESPACE_KEY: {"$gt": "x"}}, schema)
    require_module("chromadb")
    chroma = connect(f"chroma://{tmp_path / 'c'}")
    with pytest.raises(ConfigError, match=r"\$namespace"):
        chroma._filter(schema, {NAMESPACE_KEY: "tenant-a"})


@pytest.mark.parametrize("engine", ["lancedb", "qdrant+local"])
def test_search_within_a_namespace_returns_only_its_records(tmp_path: Path, engine: str) -> None:
    if engine.startswith("qdrant"):
        require_module("qdrant_client")
    src = _namespaced_dump(tmp_path)
    dst = connect(f"{engine}://{tmp_path / 'dst'}")
    copy_collection(src, dst, "docs", options=CopyOptions(job_path=tmp_path / "j"))
    part = src.partitions("docs", 1)[0]
    batch = next(iter(src.scan("docs", part, schema=src.describe("docs"), batch_rows=10_000)))[0]
    where = dict(
        zip(batch.column("id").to_pylist(), batch.column("namespace").to_pylist(), strict=True)
    )
    queries = vectors_to_numpy(batch.column("vector"))[:15]
    for ns in ("tenant-a", "tenant-b"):
        ids, _ = dst.search("docs", queries, 10, filter={NAMESPACE_KEY: ns})
        assert all(len(row) == 10 and {where[i] for i in row} == {ns} for row in ids), ns
        assert dst.count("docs", {NAMESPACE_KEY: ns}) == sum(v == ns for v in where.values())


def _move_to_other_namespace(conn: Any, rid: str) -> None:
    schema = conn.describe("docs")
    rec = conn.fetch("docs", [rid], schema=schema)
    moved = "tenant-b" if rec.column("namespace")[0].as_py() == "tenant-a" else "tenant-a"
    conn.upsert(
        "docs",
        build_batch(
            schema,
            rec.column("id"),
            {"vector": rec.column("vector")},
            documents=rec.column("document"),
            metadata=metadata_rows(rec, schema),
            namespaces=[moved],
        ),
    )


def test_verify_reports_per_namespace_and_a_leak_fails_the_gate(tmp_path: Path) -> None:
    require_module("qdrant_client")
    src = _namespaced_dump(tmp_path)
    dst = connect(f"qdrant+local://{tmp_path / 'q'}")
    copy_collection(src, dst, "docs", options=CopyOptions(job_path=tmp_path / "j"))
    good = verify_migration(src, dst, "docs", config=CONFIG)
    assert good["passed"], [g for g in good["gates"] if not g["passed"]]
    groups = good["systems"]["target"]
    assert {"namespace: tenant-a", "namespace: tenant-b"} <= set(groups)
    assert groups["namespace: tenant-a"]["queries"] == 96  # every record of the namespace
    assert groups["namespace: tenant-a"]["recall@10"] == 1.0
    assert good["namespaces"]["queried"] == ["tenant-a", "tenant-b"]
    leak_gate = next(g for g in good["gates"] if g["gate"] == "namespace leaks")
    assert leak_gate["passed"] and leak_gate["actual"] == 0

    _move_to_other_namespace(dst, "doc-0001")  # tenant-b in the source
    bad = verify_migration(src, dst, "docs", config=CONFIG)
    assert not bad["passed"]
    leak_gate = next(g for g in bad["gates"] if g["gate"] == "namespace leaks")
    assert not leak_gate["passed"] and leak_gate["actual"] >= 1
    assert bad["systems"]["source"]["all"]["namespace_leaks"] == 0
    assert bad["systems"]["target"]["namespace: tenant-a"]["namespace_leaks"] >= 1
    assert {(x["system"], x["id"], x["query_namespace"]) for x in bad["namespaces"]["leaks"]} == {
        ("target", "doc-0001", "tenant-a")
    }
    assert "cross-namespace leaks source 0 / target" in markdown(bad)
    # the moved record also shows as changed data, named by field
    assert [c["fields"] for c in bad["parity"]["changed"]] == [["namespace"]]


def test_verify_says_when_per_namespace_groups_cannot_run(tmp_path: Path) -> None:
    require_module("chromadb")
    src = _namespaced_dump(tmp_path)
    dst = connect(f"chroma://{tmp_path / 'c'}")
    from vecmigrate.mapping import MappingSpec

    spec = MappingSpec.model_validate({"namespaces": {"to": "field", "field": "tenant"}})
    copy_collection(src, dst, "docs", options=CopyOptions(job_path=tmp_path / "j", mapping=spec))
    cfg = CONFIG.model_copy(update={"queries": 5})
    cfg.gates.max_changed = None
    report = verify_migration(src, dst, "docs", config=cfg)
    assert report["namespaces"] == {
        "skipped": "the target has no namespaces (mapped to a field or dropped)"
    }
    assert "NOT run" in markdown(report)
    assert not any(g["gate"] == "namespace leaks" for g in report["gates"])
    assert np.isfinite(report["systems"]["target"]["all"]["recall@10"])


@pytest.fixture
def weaviate_uri() -> Iterator[str]:
    require_module("weaviate")
    from tests.protocol.weaviate_server import WeaviateDouble

    server = WeaviateDouble().start()
    try:
        yield str(server.uri())
    finally:
        server.stop()


def test_weaviate_scopes_namespace_filters_to_tenants(tmp_path: Path, weaviate_uri: str) -> None:
    """Weaviate (protocol double): ``$namespace`` becomes the tenant list searched."""
    src = _namespaced_dump(tmp_path)
    with connect(weaviate_uri) as dst:
        copy_collection(src, dst, "docs", options=CopyOptions(job_path=tmp_path / "j"))
        assert dst.count("docs", {NAMESPACE_KEY: "tenant-a"}) == 96
        assert dst.count("docs", {NAMESPACE_KEY: {"$ne": "tenant-a"}, "year": 1991}) == 4
        with pytest.raises(ConfigError, match="only be combined with"):
            dst.count("docs", {"$or": [{NAMESPACE_KEY: "tenant-a"}, {"year": 1991}]})
        report = verify_migration(src, dst, "docs", config=CONFIG)
        assert report["namespaces"]["queried"] == ["tenant-a", "tenant-b"]
        leak_gate = next(g for g in report["gates"] if g["gate"] == "namespace leaks")
        assert leak_gate["passed"] and report["systems"]["target"]["all"]["namespace_leaks"] == 0


@pytest.fixture
def pinecone_uri(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    require_module("pinecone")
    from tests.protocol.pinecone_server import PineconeServer

    server = PineconeServer("pc-ns-test-key-0123")
    monkeypatch.setenv("VECMIGRATE_TEST_PINECONE_NS_KEY", "pc-ns-test-key-0123")
    try:
        yield f"pinecone://?host={server.url}&api_key=env:VECMIGRATE_TEST_PINECONE_NS_KEY"
    finally:
        server.stop()


def test_pinecone_scopes_namespace_filters_to_namespaces(tmp_path: Path, pinecone_uri: str) -> None:
    """Pinecone (protocol double): ``$namespace`` picks the namespaces queried/counted."""
    src = _namespaced_dump(tmp_path)
    with connect(pinecone_uri) as dst:
        copy_collection(src, dst, "docs", options=CopyOptions(job_path=tmp_path / "j"))
        assert dst.count("docs", {NAMESPACE_KEY: "tenant-a"}) == 96
        assert dst.count("docs", {NAMESPACE_KEY: {"$in": ["tenant-b"]}, "year": 1991}) == 4
        ids, _ = dst.search(
            "docs", np.ones((1, 16), np.float32), 20, filter={NAMESPACE_KEY: "tenant-b"}
        )
        assert len(ids[0]) == 20 and all(int(i[4:8]) % 2 == 1 for i in ids[0])
        cfg = CONFIG.model_copy(update={"namespace_queries": 10})
        report = verify_migration(src, dst, "docs", config=cfg)
        assert report["namespaces"]["queried"] == ["tenant-a", "tenant-b"]
        assert report["systems"]["target"]["all"]["namespace_leaks"] == 0
