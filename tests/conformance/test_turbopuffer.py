"""turbopuffer through the official ``turbopuffer`` client over real HTTP, against the
*protocol test double* in ``tests/protocol/turbopuffer_server.py`` — not the service,
which cannot be reached from this machine. The double validates every request it
receives and every response it sends against the client's own generated types; each
module run ends by checking that nothing broke them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.conformance.doubles import DoubleConformance, connected, double_uri, serving
from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.errors import ConfigError, DataError, TransientError
from vecmigrate.model import IdType, MetadataField, Metric, VectorField
from vecmigrate.records import build_batch, vectors_to_numpy
from vecmigrate.testing.data import ROWS, sample_batch, sample_ids, sample_schema

API_KEY = "tpuf-test-key-6c1f0e"


@pytest.fixture(scope="module")
def tpuf_server(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Any]:
    """A turbopuffer protocol server on 127.0.0.1; the key in the env. At the end, the
    double must have seen no request and sent no response that breaks the client's types."""
    require_module("turbopuffer")
    from tests.protocol.turbopuffer_server import TurbopufferServer

    env = {"VECMIGRATE_TEST_TPUF_KEY": API_KEY}
    with serving(TurbopufferServer(API_KEY), monkeypatch_module, env) as server:
        yield server


def tpuf_uri(server: Any, **params: str) -> str:
    """A connection URI for the protocol server (the key comes from the environment)."""
    settings = [f"base_url={server.url}", "api_key=env:VECMIGRATE_TEST_TPUF_KEY", "max_retries=0"]
    return double_uri("turbopuffer://api", settings, params)


@pytest.fixture(scope="module")
def shared_connector(tpuf_server: Any) -> Iterator[Connector]:
    with connected(tpuf_uri(tpuf_server)) as conn:
        yield conn


class TestTurbopuffer(DoubleConformance):
    server_fixture = "tpuf_server"


class TestTurbopufferIntIds(TestTurbopuffer):
    id_type = IdType.INT


# -- the client's types guard the double ---------------------------------------------------------
def test_validator_catches_what_the_client_types_forbid() -> None:
    require_module("turbopuffer")
    from turbopuffer.types import NamespaceQueryParams, NamespaceWriteParams

    from tests.protocol import turbopuffer_model as model

    ok = {"rank_by": ["id", "asc"], "top_k": 5, "filters": ["And", [["a", "Eq", 1]]]}
    assert model.request_violations(NamespaceQueryParams, ok) == []
    bad = {"rank_by": ["id", "up"], "top_k": "5", "filters": ["a", "Like", 1], "vector": [1]}
    found = model.request_violations(NamespaceQueryParams, bad)
    assert any("undeclared member 'vector'" in p for p in found)
    assert any("rank_by" in p for p in found) and any("filters" in p for p in found)
    assert any("top_k" in p for p in found)
    write = {"upsert_columns": {"vector": ["AAAA"]}, "distance_metric": "dot_product"}
    found = model.request_violations(NamespaceWriteParams, write)
    assert any("upsert_columns.id" in p for p in found)
    assert any("distance_metric" in p for p in found)
    query_endpoint = model.route("POST", "/v2/namespaces/x/query")
    assert query_endpoint is not None
    problems = query_endpoint[0].response({"rows": [{"$dist": 0.1}], "billing": {}, "extra": 1})
    assert any("undeclared field 'extra'" in p for p in problems)
    assert any("rows.0.id" in p for p in problems)
    assert any("performance" in p for p in problems)


def test_double_refuses_a_request_the_types_forbid(tpuf_server: Any) -> None:
    """Through the client itself: an undeclared member is a 400 and a recorded violation."""
    import turbopuffer

    client = turbopuffer.Turbopuffer(api_key=API_KEY, base_url=tpuf_server.url, max_retries=0)
    try:
        with pytest.raises(turbopuffer.BadRequestError):
            client.namespace("nope").query(rank_by=["id", "asc"], top_k=1, extra_body={"x": 1})
        assert any("undeclared member 'x'" in v for v in tpuf_server.take_violations())
    finally:
        client.close()


# -- what turbopuffer adds to the suite -----------------------------------------------------------
def test_create_declares_the_schema_before_any_record(
    shared_connector: Connector, tpuf_server: Any
) -> None:
    """``create`` makes an empty, typed namespace: id type, vector type and ANN metric,
    metadata types, the document and metadata_extra not filterable."""
    schema = sample_schema("typed_empty", id_type=IdType.INT, metric=Metric.L2)
    shared_connector.create(schema)
    try:
        stored = tpuf_server.namespaces["typed_empty"].schema
        assert stored["id"]["type"] == "uint"
        assert stored["vector"] == {
            "type": "[16]f32", "ann": {"distance_metric": "euclidean_squared"}
        }  # fmt: skip
        assert stored["year"]["type"] == "int" and stored["tags"]["type"] == "[]string"
        assert stored["_vecmigrate_document"]["filterable"] is False
        assert shared_connector.count("typed_empty") == 0
        got = shared_connector.describe("typed_empty")
        assert (got.id_type, got.vector.metric) == (IdType.INT, Metric.L2)
        assert got.vector.metric_source == "turbopuffer schema vector.ann.distance_metric"
    finally:
        shared_connector.drop("typed_empty")
    assert "typed_empty" not in shared_connector.list_collections()


def test_upsert_is_columnar_base64_and_never_creates(
    shared_connector: Connector, tpuf_server: Any
) -> None:
    schema = sample_schema("columnar")
    shared_connector.create(schema)
    try:
        n0 = len(tpuf_server.requests)
        shared_connector.upsert(schema.name, sample_batch(schema, n=50))
        writes = [b for op, _, b in tpuf_server.requests[n0:] if op == "write"]
        assert len(writes) == 1
        cols = writes[0]["upsert_columns"]
        assert len(cols["id"]) == 50 and isinstance(cols["vector"][0], str)
        assert writes[0]["create_namespace"] is False
    finally:
        # Dropped by another client: this one still has the schema cached.
        with connect(tpuf_uri(tpuf_server)) as other:
            other.drop(schema.name)
    # Writing to the dropped namespace fails instead of silently making an untyped one.
    with pytest.raises(ConfigError, match="HTTP 404"):
        shared_connector.upsert(schema.name, sample_batch(schema, n=3))
    assert schema.name not in tpuf_server.namespaces
    shared_connector.drop(schema.name)  # forgets the cached schema


def test_partitions_are_id_ranges_cut_at_offsets(
    shared_connector: Connector, tpuf_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vecmigrate.connectors.turbopuffer as tp

    monkeypatch.setattr(tp, "MIN_PARTITION_ROWS", 50)
    schema = sample_schema("ranges")
    shared_connector.create(schema)
    try:
        shared_connector.upsert(schema.name, sample_batch(schema))
        parts = shared_connector.partitions(schema.name, 4)
        assert len(parts) == 4
        seen = [
            i
            for p in parts
            for b, _ in shared_connector.scan(schema.name, p, batch_rows=25)
            for i in b["id"].to_pylist()
        ]
        assert sorted(seen) == sorted(sample_ids(IdType.STRING)) and len(seen) == ROWS
    finally:
        shared_connector.drop(schema.name)


def test_limits_are_refused_by_name(shared_connector: Connector, tpuf_server: Any) -> None:
    conn = shared_connector
    with pytest.raises(ConfigError, match="not a valid turbopuffer namespace"):
        conn.create(sample_schema("bad/name"))
    with pytest.raises(ConfigError, match="outside turbopuffer's 1-10752"):
        conn.create(sample_schema("wide").replace(vectors=(VectorField(dim=20_000),)))
    with pytest.raises(ConfigError, match="metric dot"):
        conn.create(sample_schema("dotty", metric=Metric.DOT))
    json_field = sample_schema("jsonish").replace(
        metadata=(MetadataField(name="blob", type="json"),)
    )
    with pytest.raises(ConfigError, match="metadata type json"):
        conn.create(json_field)
    schema = sample_schema("limits")
    conn.create(schema)
    try:
        n0 = len(tpuf_server.requests)
        long_id = build_batch(
            schema, ["x" * 65], {"vector": np.ones((1, 16), np.float32)}, documents=["d"]
        )
        with pytest.raises(DataError, match="1-64 bytes") as err:
            conn.upsert(schema.name, long_id)
        assert err.value.record_id == "x" * 65  # type: ignore[attr-defined]
        nan = build_batch(
            schema, ["nan"], {"vector": np.full((1, 16), np.nan, np.float32)}, documents=["d"]
        )
        with pytest.raises(DataError, match="finite"):
            conn.upsert(schema.name, nan)
        with pytest.raises(ConfigError, match="1-1200 results"):
            conn.search(schema.name, np.ones((1, 16), np.float32), 1201)
        assert len(tpuf_server.requests) == n0  # refused before any call
    finally:
        conn.drop(schema.name)


def test_foreign_namespace_is_described_from_its_schema(tpuf_server: Any) -> None:
    """A namespace another tool wrote (types inferred by turbopuffer, no document): the
    metric and dimension from the schema, attributes typed, searchable."""
    import turbopuffer

    client = turbopuffer.Turbopuffer(api_key=API_KEY, base_url=tpuf_server.url, max_retries=0)
    ns = client.namespace("foreign")
    ns.write(
        upsert_columns={
            "id": [1, 2], "vector": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "title": ["a", "b"]
        },
        distance_metric="euclidean_squared",
    )  # fmt: skip
    try:
        conn = connect(tpuf_uri(tpuf_server))
        schema = conn.describe("foreign")
        assert (schema.vector.dim, schema.vector.metric) == (3, Metric.L2)
        assert schema.id_type is IdType.INT and not schema.has_document
        assert [(m.name, m.type) for m in schema.metadata] == [("title", "string")]
        ids, scores = conn.search("foreign", np.array([[0.9, 0.1, 0]], np.float32), 2)
        assert ids == [[1, 2]] and scores[0][0] < scores[0][1]
        assert conn.fetch("foreign", [2])["metadata"].to_pylist() == [{"title": "b"}]
        conn.close()
    finally:
        ns.delete_all()
        client.close()


def test_scores_are_turbopuffer_distances(shared_connector: Connector) -> None:
    schema = sample_schema("dists", metric=Metric.L2)
    shared_connector.create(schema)
    try:
        batch = sample_batch(schema)
        shared_connector.upsert(schema.name, batch)
        vecs = vectors_to_numpy(batch["vector"])[:3]
        ids, scores = shared_connector.search(schema.name, vecs + 0.5, 4)
        assert [row[0] for row in ids] == batch["id"].to_pylist()[:3]
        np.testing.assert_allclose([s[0] for s in scores], [16 * 0.25] * 3, rtol=1e-5)
    finally:
        shared_connector.drop(schema.name)


def test_errors_are_translated(tpuf_server: Any) -> None:
    conn = connect(tpuf_uri(tpuf_server))
    try:
        tpuf_server.fail(429, op="namespaces")
        with pytest.raises(TransientError, match="HTTP 429"):
            conn.list_collections()
        tpuf_server.fail(503, op="namespaces")
        with pytest.raises(TransientError, match="HTTP 503"):
            conn.list_collections()
        with pytest.raises(ConfigError, match="no namespace 'never_made'"):
            conn.describe("never_made")
        schema = sample_schema("errs")
        conn.create(schema)
        try:
            tpuf_server.fail(400, op="write")
            with pytest.raises(DataError, match="HTTP 400"):
                conn.upsert(schema.name, sample_batch(schema, n=3))
        finally:
            conn.drop(schema.name)
        assert tpuf_server.clear_failures() == []
    finally:
        conn.close()
    tpuf_server.take_violations()


def test_uuid_ids_round_trip(shared_connector: Connector, tpuf_server: Any) -> None:
    """UUID ids live in a ``uuid`` id column: written lowercase, scanned in order, fetched."""
    import uuid

    schema = sample_schema("uuids", id_type=IdType.UUID)
    ids = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(40)]
    batch = build_batch(
        schema, ids, {"vector": np.random.default_rng(2).normal(size=(40, 16)).astype(np.float32)},
        documents=[f"d{i}" for i in range(40)],
    )  # fmt: skip
    shared_connector.create(schema)
    try:
        assert tpuf_server.namespaces["uuids"].schema["id"]["type"] == "uuid"
        shared_connector.upsert(schema.name, batch)
        part = shared_connector.partitions(schema.name, 1)[0]
        seen = [i for b, _ in shared_connector.scan(schema.name, part, batch_rows=15)
                for i in b["id"].to_pylist()]  # fmt: skip
        assert seen == sorted(ids)
        got = shared_connector.fetch(schema.name, [ids[5].upper(), ids[9]])
        assert sorted(got["id"].to_pylist()) == sorted([ids[5], ids[9]])
    finally:
        shared_connector.drop(schema.name)
