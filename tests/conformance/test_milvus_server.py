"""Milvus standalone 2.3 (a real server, started once per session by ``milvus_server``).

Every new collection costs a Milvus 2.3 server about 2.5 s (its load observer ticks once a
second), so the string-id class runs the whole shared suite and the int-id class the cases
where the key type matters; filter compilation and index mapping do not involve it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pymilvus import DataType, MilvusClient

from vecmigrate.connectors import Connector, connect
from vecmigrate.connectors.milvus import MilvusConnector
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import evaluate, parse
from vecmigrate.model import Capabilities, IdType, IndexSpec, Metric
from vecmigrate.records import build_batch, vectors_to_numpy
from vecmigrate.testing.data import (
    ROWS,
    rich_schema,
    sample_batch,
    sample_schema,
    sample_vectors,
)
from vecmigrate.testing.suite import ConnectorConformance

_KEY_SENSITIVE = {
    "test_describe_round_trips_schema",
    "test_partitions_cover_every_row_once[3]",
    "test_resume_continues_without_loss_or_duplicates",
    "test_fetch_by_ids",
    "test_upsert_twice_updates_by_id",
    "test_delete",
    "test_search_agrees_with_exact",
    "test_export_dump_import_gives_equal_digests",
}


def _server_caps(conn: Connector) -> Capabilities:
    """What the connected server stores (the class declares what a current one does)."""
    return MilvusConnector.capabilities_for(conn.server_version)  # type: ignore[attr-defined]


class TestMilvusServerStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, milvus_server: Any) -> Iterator[Connector]:
        conn = connect(milvus_server.uri)
        yield conn
        conn.close()

    def test_named_vectors_round_trip_and_are_searchable(
        self, connector: Connector, name: str
    ) -> None:
        if not _server_caps(connector).named_vectors:
            pytest.skip("this server keeps one vector field per collection")
        super().test_named_vectors_round_trip_and_are_searchable(connector, name)

    def test_sparse_vectors_round_trip(self, connector: Connector, name: str) -> None:
        if not _server_caps(connector).sparse_vectors:
            pytest.skip("this server has no sparse vectors")
        super().test_sparse_vectors_round_trip(connector, name)


class TestMilvusServerIntIds(TestMilvusServerStringIds):
    id_type = IdType.INT

    @pytest.fixture(autouse=True)
    def _key_sensitive_only(self, request: pytest.FixtureRequest) -> None:
        if not {request.node.name, request.node.originalname} & _KEY_SENSITIVE:
            pytest.skip("id-type independent: run with string ids (2.5 s per collection)")


@pytest.fixture
def conn(milvus_server: Any) -> Iterator[Connector]:
    c = connect(milvus_server.uri)
    yield c
    c.close()


@pytest.fixture
def name(conn: Connector) -> Iterator[str]:
    n = f"srv_{uuid.uuid4().hex[:10]}"
    yield n
    conn.drop(n)


def test_version_gates_capabilities(conn: Connector) -> None:
    assert type(conn) is MilvusConnector
    version = conn.server_version
    assert version is not None and version >= (2, 3)
    assert {"hnsw", "ivf_pq", "ivf_flat", "flat"} <= conn.capabilities.index_kinds
    caps = MilvusConnector.capabilities_for(version)
    assert caps.named_vectors is (version >= (2, 4))
    assert caps.sparse_vectors is (version >= (2, 4))
    assert MilvusConnector.capabilities_for((2, 5)) == MilvusConnector.capabilities
    assert MilvusConnector.capabilities_for(None) == MilvusConnector.capabilities


def test_sparse_vectors_on_2_3_are_a_clear_refusal(conn: Connector, name: str) -> None:
    if _server_caps(conn).sparse_vectors:
        pytest.skip("this server stores sparse vectors")
    with pytest.raises(ConfigError, match="no sparse vectors"):
        conn.create(rich_schema(name, id_type=IdType.STRING, sparse=True))
    assert name not in conn.list_collections()


def test_one_vector_field_on_2_3_is_a_clear_refusal(conn: Connector, name: str) -> None:
    if _server_caps(conn).named_vectors:
        pytest.skip("this server stores several vector fields")
    with pytest.raises(ConfigError, match="one vector field"):
        conn.create(rich_schema(name, id_type=IdType.STRING, named=True))
    assert name not in conn.list_collections()


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        (
            IndexSpec(kind="hnsw", params={"M": 8, "ef_construction": 64}),
            IndexSpec(kind="hnsw", params={"M": 8, "ef_construction": 64}),
        ),
        (
            IndexSpec(kind="ivf_pq", params={"nlist": 4, "m": 4}),
            IndexSpec(kind="ivf_pq", params={"nlist": 4, "m": 4, "nbits": 8}),
        ),
    ],
    ids=["hnsw", "ivf_pq"],
)
def test_real_index_is_built_described_and_searched(
    conn: Connector, name: str, spec: IndexSpec, want: IndexSpec
) -> None:
    schema = sample_schema(name)
    schema = schema.replace(vectors=(schema.vector.model_copy(update={"index": spec}),))
    conn.create(schema)
    batch = sample_batch(schema)
    conn.upsert(name, batch)
    conn.finalize(name)
    fresh = connect(conn.uri.raw)  # a new connector describes from the engine
    try:
        assert fresh.describe(name).vector.index == want
        engine = fresh.client.describe_index(name, "vector")  # type: ignore[attr-defined]
        assert engine["index_type"] == spec.kind.upper()
        # k above HNSW's default ef: the connector raises ef to k.
        ids, _ = fresh.search(name, vectors_to_numpy(batch.column("vector"))[:2], 100)
        assert [len(i) for i in ids] == [100, 100]
        assert ids[0][0] == batch.column("id")[0].as_py()
    finally:
        fresh.close()


def test_negated_list_containment_uses_not(conn: Connector, name: str) -> None:
    schema = sample_schema(name)
    conn.create(schema)
    batch = sample_batch(schema)
    conn.upsert(name, batch)
    for flt in ({"$not": {"tags": "t1"}}, {"$not": {"tags": {"$in": ["t2", "t6"]}}}):
        want = int(evaluate(parse(flt, schema), batch).sum())
        assert 0 < want < ROWS
        assert conn.count(name, flt) == want


def test_int_keys_at_the_int64_limits_scan_in_order_across_segments(
    conn: Connector, name: str
) -> None:
    """Sealed (flushed) and growing segments together; extreme keys; exact ranges."""
    schema = sample_schema(name, id_type=IdType.INT)
    conn.create(schema)
    if conn.server_version < (2, 5):  # type: ignore[attr-defined]
        top = build_batch(schema, [2**63 - 1], {"vector": sample_vectors(1)})
        with pytest.raises(DataError, match="never returns it"):
            conn.upsert(name, top)  # 2.3.5 counts the row but no query returns it
    ids = [-(2**63), 2**63 - 2, *range(-300, 300, 3)]
    vectors = sample_vectors(len(ids))
    half = len(ids) // 2  # two segments: one sealed by a waited flush, one growing
    conn.upsert(name, build_batch(schema, ids[:half], {"vector": vectors[:half]}))
    conn.client.flush(name)  # type: ignore[attr-defined]
    conn.upsert(name, build_batch(schema, ids[half:], {"vector": vectors[half:]}))
    conn.MIN_PARTITION_ROWS = 40  # type: ignore[attr-defined]
    parts = conn.partitions(name, 4)
    assert len(parts) == 4
    seen: list[int] = []
    for p in parts:
        for b, _ in conn.scan(name, p, batch_rows=23):
            seen += b.column("id").to_pylist()
    assert seen == sorted(ids)
    # Resuming right after the smallest key: 2.3 cannot parse "> -9223372036854775808".
    _, token = next(conn.scan(name, parts[0], batch_rows=1))
    batch, _ = next(conn.scan(name, parts[0], resume=token, batch_rows=1))
    assert batch.column("id").to_pylist() == [sorted(ids)[1]]
    [whole] = conn.partitions(name, 1)
    assert conn.fetch(name, [-(2**63)]).num_rows == 1
    assert sum(b.num_rows for b, _ in conn.scan(name, whole, batch_rows=1000)) == len(ids)
    conn.delete(name, [-(2**63), 0, 1])  # 1 does not exist
    assert conn.count(name) == len(ids) - 2


def test_oversized_values_are_data_errors_naming_the_record(conn: Connector, name: str) -> None:
    schema = sample_schema(name)
    conn.create(schema)
    batch = sample_batch(schema).slice(0, 2)
    docs = pa.array(["fine", "x" * 70_000])
    big_doc = batch.set_column(batch.schema.get_field_index("document"), "document", docs)
    with pytest.raises(DataError, match="document") as err:
        conn.upsert(name, big_doc)
    assert err.value.record_id == batch.column("id")[1].as_py()
    long_id = batch.set_column(0, "id", pa.array(["ok", "i" * 600]))
    with pytest.raises(DataError, match="512 bytes"):
        conn.upsert(name, long_id)
    assert conn.count(name) == 0


def test_describe_and_scan_a_collection_made_by_another_tool(
    conn: Connector, milvus_server: Any, name: str
) -> None:
    client = MilvusClient(uri=f"http://{milvus_server.host}:{milvus_server.port}")
    ms = client.create_schema(auto_id=False, enable_dynamic_field=False)
    ms.add_field("pk", DataType.INT64, is_primary=True)
    ms.add_field("emb", DataType.FLOAT_VECTOR, dim=3)
    ms.add_field("text", DataType.VARCHAR, max_length=100)
    ms.add_field("year", DataType.INT64)
    ms.add_field(
        "tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=8, max_length=20
    )
    index = client.prepare_index_params()
    index.add_index("emb", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 2})
    client.create_collection(name, schema=ms, index_params=index, consistency_level="Strong")
    client.insert(
        name,
        [
            {"pk": i, "emb": [float(i), 1.0, 0.5], "text": f"t{i}", "year": 2000 + i, "tags": ["a"]}
            for i in range(5)
        ],
    )
    client.close()
    schema = conn.describe(name)
    assert schema.id_type is IdType.INT and schema.has_document
    assert schema.vector.metric is Metric.L2
    assert schema.vector.index == IndexSpec(kind="ivf_flat", params={"nlist": 2})
    assert {(m.name, m.type) for m in schema.metadata} == {
        ("year", "int64"),
        ("tags", "list<string>"),
    }
    [part] = conn.partitions(name, 1)
    rows = [r for b, _ in conn.scan(name, part, batch_rows=2) for r in b.to_pylist()]
    assert [r["id"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[2]["document"] == "t2" and rows[2]["metadata"]["year"] == 2002
    assert conn.count(name, {"year": {"$gte": 2003}}) == 2
    assert conn.count(name, {"$not": {"tags": "a"}}) == 0
    ids, _ = conn.search(name, np.array([[4.0, 1.0, 0.5]], dtype=np.float32), 2)
    assert ids[0] == [4, 3]
