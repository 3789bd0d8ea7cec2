"""Weaviate beyond the conformance suite: tenants, named vectors, foreign classes, retries,
auth, and a CLI export/import round trip. The official weaviate-client talks REST + gRPC to
the protocol test double in ``tests/protocol/weaviate_server.py`` (not a Weaviate server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import json_of, make_dump, run_cli
from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError
from vecmigrate.model import CollectionSchema, IdType, IndexSpec, MetadataField, Metric, VectorField
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.records import build_batch, vectors_to_numpy
from vecmigrate.verify.digest import collection_digest


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    require_module("weaviate")
    from tests.protocol.weaviate_server import WeaviateDouble

    double = WeaviateDouble().start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def conn(server: Any) -> Iterator[Any]:
    c = connect(server.uri())
    yield c
    c.close()


def _tenant_schema(name: str) -> CollectionSchema:
    # "Tag": Weaviate stores the property as "tag"; the field keeps its name
    return CollectionSchema(
        name=name,
        vectors=(VectorField(dim=8),),
        has_document=True,
        metadata=(MetadataField(name="n", type="int64"), MetadataField(name="Tag", type="string")),
        namespaces=("acme", "globex"),
    )


def _tenant_batch(schema: CollectionSchema, rows: int = 90) -> pa.RecordBatch:
    rng = np.random.default_rng(3)
    # ids are unique across tenants: the dump format keys records by id alone
    ids = [f"r{i}" for i in range(rows)]
    return build_batch(
        schema,
        ids,
        {"vector": rng.normal(size=(rows, 8)).astype(np.float32)},
        documents=[f"text {i}" for i in range(rows)],
        metadata=[{"n": i, "Tag": "even" if i % 2 == 0 else "odd"} for i in range(rows)],
        namespaces=["acme" if i < 45 else "globex" for i in range(rows)],
    )


def fetched_meta(conn: Any, name: str, rid: str) -> Any:
    return conn.fetch(name, [rid]).column("metadata").to_pylist()[0]


def test_collisions_under_weaviate_property_casing_are_refused(conn: Any) -> None:
    schema = CollectionSchema(
        name="casing",
        vectors=(VectorField(dim=2),),
        metadata=(
            MetadataField(name="Tag", type="string"),
            MetadataField(name="tag", type="int64"),
        ),
    )
    with pytest.raises(ConfigError, match="one property"):
        conn.create(schema)


def test_tenants_are_namespaces_round_trip(conn: Any, tmp_path: Path) -> None:
    schema = _tenant_schema("tenants_rt")
    conn.create(schema)
    try:
        batch = _tenant_batch(schema)
        conn.upsert(schema.name, batch)
        got = conn.describe(schema.name)
        assert got.namespaces == ("acme", "globex")
        assert got.engine_settings["multi_tenancy"] is True
        assert conn.count(schema.name) == 90
        assert conn.count(schema.name, {"Tag": "even"}) == 45
        assert fetched_meta(conn, schema.name, "r2") == {"n": 2, "Tag": "even"}
        parts = conn.partitions(schema.name, 8)
        assert sorted(t for p in parts for t in p.spec["tenants"]) == ["acme", "globex"]
        rows = [
            (ns, rid)
            for p in parts
            for b, _ in conn.scan(schema.name, p, batch_rows=20)
            for ns, rid in zip(
                b.column("namespace").to_pylist(), b.column("id").to_pylist(), strict=True
            )
        ]
        assert sorted(rows) == sorted(
            zip(batch.column("namespace").to_pylist(), batch.column("id").to_pylist(), strict=True)
        )
        # one partition over both tenants: resuming mid-way loses and repeats nothing
        whole = conn.partitions(schema.name, 1)[0]
        first, token = [], None
        for i, (b, tok) in enumerate(conn.scan(schema.name, whole, batch_rows=20)):
            first += b.column("id").to_pylist()
            token = tok
            if i == 3:  # acme gave 20 + 20 + 5 rows; this is the first of globex
                break
        assert token is not None and '"globex"' in token
        rest = [
            i
            for b, _ in conn.scan(schema.name, whole, resume=token, batch_rows=20)
            for i in b.column("id").to_pylist()
        ]
        assert sorted(first + rest) == sorted(batch.column("id").to_pylist())
        fetched = conn.fetch(schema.name, ["r1", "r50"])
        assert sorted(fetched.column("namespace").to_pylist()) == ["acme", "globex"]
        # a new namespace in the data becomes a tenant
        more = _tenant_batch(schema, 2)
        more = more.set_column(0, "id", pa.array(["x1", "x2"]))
        more = more.set_column(1, "namespace", pa.array(["initech", "initech"]))
        conn.upsert(schema.name, more)
        assert conn.describe(schema.name).namespaces == ("acme", "globex", "initech")
        bad = more.set_column(1, "namespace", pa.array([None, "acme"], pa.string()))
        with pytest.raises(DataError, match="namespace"):
            conn.upsert(schema.name, bad)
        # round trip through a dump into a new multi-tenant class: equal digests
        dump = connect(f"dump://{tmp_path / 'dump'}")
        copy_collection(conn, dump, schema.name, options=CopyOptions(job_path=tmp_path / "a.db"))
        copy_collection(
            dump,
            conn,
            schema.name,
            target_collection="tenants_rt2",
            options=CopyOptions(job_path=tmp_path / "b.db"),
        )
        assert conn.describe("tenants_rt2").namespaces == ("acme", "globex", "initech")
        a, b = collection_digest(conn, schema.name), collection_digest(conn, "tenants_rt2")
        assert a.compare(b).equal
        conn.delete(schema.name, ["r1", "x2", "never"])
        assert conn.count(schema.name) == 92 - 2
    finally:
        conn.drop(schema.name)
        conn.drop("tenants_rt2")


def test_named_vectors_index_settings_and_distances(conn: Any) -> None:
    schema = CollectionSchema(
        name="named_vecs",
        id_type=IdType.INT,
        vectors=(
            VectorField(
                name="text_vec",
                dim=8,
                metric=Metric.DOT,
                index=IndexSpec(kind="hnsw", params={"M": 8, "ef_construction": 64, "ef": 40}),
            ),
            VectorField(name="img_vec", dim=4, metric=Metric.L2, index=IndexSpec(kind="flat")),
        ),
    )
    conn.create(schema)
    try:
        rng = np.random.default_rng(5)
        a = rng.normal(size=(50, 8)).astype(np.float32)
        b = rng.normal(size=(50, 4)).astype(np.float32)
        conn.upsert(
            schema.name, build_batch(schema, list(range(50)), {"text_vec": a, "img_vec": b})
        )
        got = conn.describe(schema.name)
        text_vec, img_vec = got.vectors
        assert text_vec.index == IndexSpec(
            kind="hnsw", params={"M": 8, "ef_construction": 64, "ef": 40}
        )
        assert text_vec.metric is Metric.DOT and img_vec.metric is Metric.L2
        assert img_vec.index is not None and img_vec.index.kind == "flat"
        assert got.engine_settings["vectors"]["img_vec"]["distance"] == "l2-squared"
        q = b[7] + 0.01
        ids, scores = conn.search(schema.name, q[None, :], 3, vector_field="img_vec")
        exact = np.argsort(((b - q) ** 2).sum(axis=1))[:3]
        assert ids[0] == [int(i) for i in exact]
        assert scores[0][0] == pytest.approx(float(((b[exact[0]] - q) ** 2).sum()), rel=1e-5)
        ids, scores = conn.search(schema.name, a[:1], 1, vector_field="text_vec")
        assert ids[0] == [int(np.argmax(a @ a[0]))]
        assert scores[0][0] == pytest.approx(-float(a[ids[0][0]] @ a[0]), rel=1e-5)
        back = conn.fetch(schema.name, [3])
        assert np.array_equal(vectors_to_numpy(back.column("img_vec"))[0], b[3])
    finally:
        conn.drop(schema.name)


def test_uuid_ids_and_refusals(conn: Any) -> None:
    schema = CollectionSchema(
        name="uuid_ids",
        id_type=IdType.UUID,
        vectors=(VectorField(dim=4),),
        metadata=(MetadataField(name="tags", type="list<string>"),),
    )
    conn.create(schema)
    try:
        ids = [str(uuid.uuid4()) for _ in range(5)]
        vecs = np.eye(5, 4, dtype=np.float32) + 0.1
        conn.upsert(schema.name, build_batch(schema, ids, {"vector": vecs}))
        part = conn.partitions(schema.name, 1)[0]
        scanned = [i for b, _ in conn.scan(schema.name, part) for i in b.column("id").to_pylist()]
        assert sorted(scanned) == sorted(ids)
        with pytest.raises(DataError, match="not a UUID"):
            conn.upsert(schema.name, build_batch(schema, ["nope"], {"vector": vecs[:1]}))
        with pytest.raises(ConfigError, match="empty list"):
            conn.count(schema.name, {"tags": {"$exists": True}})
    finally:
        conn.drop(schema.name)


def test_foreign_class_is_described_from_its_config(server: Any, conn: Any) -> None:
    from weaviate.classes.data import DataObject

    col = conn.client.collections.create_from_dict(
        {
            "class": "Article",
            "properties": [
                {"name": "title", "dataType": ["text"]},
                {"name": "words", "dataType": ["int"]},
                {"name": "labels", "dataType": ["text[]"]},
            ],
            "vectorIndexConfig": {"distance": "dot"},
        }
    )
    try:
        objs = [
            DataObject(properties={"title": f"t{i}", "words": i, "labels": ["a"]}, vector=[i, 1.0])
            for i in range(3)
        ]
        assert not col.data.insert_many(objs).has_errors
        schema = conn.describe("Article")
        assert schema.id_type is IdType.UUID and not schema.has_document
        assert schema.vector.dim == 2 and schema.vector.metric is Metric.DOT
        assert {(m.name, m.type) for m in schema.metadata} == {
            ("title", "string"),
            ("words", "int64"),
            ("labels", "list<string>"),
        }
        table = pa.Table.from_batches(
            [b for b, _ in conn.scan("Article", conn.partitions("Article", 1)[0])]
        )
        assert sorted(m["words"] for m in table.column("metadata").to_pylist()) == [0, 1, 2]
        assert "Article" in conn.list_collections()
    finally:
        conn.drop("Article")


def test_transient_failures_are_retried_without_loss(
    server: Any, conn: Any, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    schema = make_dump(src, 1200, dim=16, name="retried")
    dump = connect(f"dump://{src}")
    # UNAVAILABLE: the client itself retries (after 1 s); RESOURCE_EXHAUSTED (429): ours
    server.fail("BatchObjects", 1, grpc.StatusCode.UNAVAILABLE)
    server.fail("BatchObjects", 2, grpc.StatusCode.RESOURCE_EXHAUSTED)
    before = server.calls.get("BatchObjects", 0)
    try:
        opts = CopyOptions(workers=2, batch_rows=200, job_path=tmp_path / "job.db")
        result = copy_collection(dump, conn, schema.name, options=opts)
        assert result.rows_written == 1200 and result.dead_letters == 0
        assert server.calls["BatchObjects"] - before >= 6 + 3
        assert not server.faults["BatchObjects"]
        server.fail("Search", 1, grpc.StatusCode.UNAVAILABLE)
        assert (
            collection_digest(conn, schema.name).compare(collection_digest(dump, schema.name)).equal
        )
        server.fail("GET /v1/schema/Retried", 1, 503)
        with pytest.raises(TransientError, match="503"):
            conn.describe(schema.name)
        server.fail("Aggregate", 1, grpc.StatusCode.RESOURCE_EXHAUSTED)
        with pytest.raises(TransientError, match="RESOURCE_EXHAUSTED"):
            conn.count(schema.name)
        server.fail("BatchObjects", 1, grpc.StatusCode.INVALID_ARGUMENT)
        with pytest.raises(TerminalError) as refused:
            conn.upsert(
                schema.name,
                next(iter(dump.scan(schema.name, dump.partitions(schema.name, 1)[0])))[0],
            )
        assert not isinstance(refused.value, TransientError)
    finally:
        conn.drop(schema.name)


def test_api_key_from_env_is_used_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.protocol.weaviate_server import WeaviateDouble

    secret = "wv-" + uuid.uuid4().hex
    double = WeaviateDouble(api_key=secret).start()
    try:
        monkeypatch.setenv("WV_TEST_KEY", secret)
        with connect(double.uri(api_key="env:WV_TEST_KEY")) as c:
            c.create(CollectionSchema(name="authed", vectors=(VectorField(dim=2),)))
            assert c.count("authed") == 0
            assert secret not in repr(c)
        monkeypatch.setenv("WV_TEST_KEY", "wrong")
        with pytest.raises(TerminalError) as err:
            connect(double.uri(api_key="env:WV_TEST_KEY")).list_collections()
        assert "api_key" in str(err.value) and secret not in str(err.value)
    finally:
        double.stop()


def test_cli_import_into_and_export_from_weaviate(server: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_dump(src, 1200, dim=32, name="docs")
    uri = server.uri()
    try:
        imported = run_cli("import", f"dump://{src}", uri, "-c", "docs", "--json", cwd=tmp_path)
        assert imported.returncode == 0, imported.stderr
        assert json_of(imported)["rows_written"] == 1200
        shown = run_cli("inspect", uri, "--json", cwd=tmp_path, check=True)
        assert "docs" in shown.stdout and "cosine" in shown.stdout
        out = tmp_path / "out"
        exported = run_cli("export", uri, "-c", "docs", "-o", str(out), "--json", cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        a = collection_digest(connect(f"dump://{src}"), "docs")
        b = collection_digest(connect(f"dump://{out}"), "docs")
        assert a.compare(b).equal
    finally:
        with connect(uri) as c:
            c.drop("docs")


def test_not_and_nin_are_refused_before_weaviate_1_33() -> None:
    from tests.protocol.weaviate_server import WeaviateDouble

    double = WeaviateDouble(version="1.32.5").start()
    try:
        with connect(double.uri()) as c:
            schema = _tenant_schema("older")
            c.create(schema.replace(namespaces=None))
            assert c.count("older", {"Tag": {"$ne": "x"}}) == 0
            for flt in ({"$not": {"Tag": "x"}}, {"Tag": {"$nin": ["x"]}}):
                with pytest.raises(ConfigError, match="cannot express"):
                    c.count("older", flt)
    finally:
        double.stop()
