"""Azure AI Search through the official ``azure-search-documents`` client over real HTTP,
against the *protocol test double* in ``tests/protocol/azure_search_server.py`` — not the
service, which cannot be reached from this machine. The double validates every request it
receives and every response it sends against the client's own generated models; each
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
from vecmigrate.model import IdType, IndexSpec, MetadataField, Metric, VectorField
from vecmigrate.records import build_batch, vectors_to_numpy
from vecmigrate.testing.data import ROWS, sample_batch, sample_ids, sample_schema

API_KEY = "azs-test-key-51d2c7"


@pytest.fixture(scope="module")
def azs_server(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Any]:
    """An Azure AI Search protocol server on 127.0.0.1; the key in the env. At the end, the
    double must have seen no request and sent no response that breaks the client's models."""
    require_module("azure.search.documents")
    from tests.protocol.azure_search_server import AzureSearchServer

    env = {"VECMIGRATE_TEST_AZS_KEY": API_KEY}
    with serving(AzureSearchServer(API_KEY), monkeypatch_module, env) as server:
        yield server


def azs_uri(server: Any, **params: str) -> str:
    """A connection URI for the protocol server (the key comes from the environment)."""
    settings = [f"base_url={server.url}", "api_key=env:VECMIGRATE_TEST_AZS_KEY", "max_retries=0"]
    return double_uri("azure-search://test.search.windows.net", settings, params)


@pytest.fixture(scope="module")
def shared_connector(azs_server: Any) -> Iterator[Connector]:
    with connected(azs_uri(azs_server)) as conn:
        yield conn


class TestAzureSearch(DoubleConformance):
    server_fixture = "azs_server"


class TestAzureSearchIntIds(TestAzureSearch):
    id_type = IdType.INT


# -- the client's models guard the double -------------------------------------------------------
def test_validator_catches_what_the_client_models_forbid() -> None:
    require_module("azure.search.documents")
    from azure.search.documents.indexes.models import _models as im
    from azure.search.documents.models import _models as dm

    from tests.protocol import azure_search_model as model

    ok = {"search": "*", "orderby": "id asc", "top": 5, "filter": "id gt 'a'"}
    assert model.check(dm.SearchRequest, ok, "r", request=True) == []
    bad = {
        "top": "5",
        "bogus": 1,
        "orderby": ["id asc"],
        "vectorFilterMode": "prefilter",
        "vectorQueries": [{"kind": "vectr", "vector": [1.0]}],
    }
    found = model.check(dm.SearchRequest, bad, "r", request=True)
    assert any("no member 'bogus'" in p for p in found)
    assert any("r.top" in p for p in found)
    assert any("orderby: expected a commaDelimited string" in p for p in found)
    assert any("vectorFilterMode" in p for p in found)
    assert any("unknown VectorQuery kind 'vectr'" in p for p in found)
    index = {
        "name": "x",
        "fields": [{"name": "id", "key": True}],
        "vectorSearch": {
            "algorithms": [{"name": "a", "kind": "hnsw", "hnswParameters": {"metric": "dot"}}],
            "profiles": [{"name": "p", "algorithm": "a"}],
        },
    }
    found = model.check(im.SearchIndex, index, "i", request=True)
    assert any("requires 'type'" in p for p in found)
    assert any("metric" in p and "'dot'" in p for p in found)
    result = {"value": [{"key": "a", "status": "yes"}]}
    found = model.check(dm.IndexDocumentsResult, result, "res", request=False)
    assert any("statusCode" in p for p in found) and any("status" in p for p in found)


def test_double_refuses_a_request_the_models_forbid(azs_server: Any) -> None:
    """Through the client itself: an undeclared member is a 400 and a recorded violation."""
    from azure.core.credentials import AzureKeyCredential
    from azure.core.exceptions import HttpResponseError
    from azure.search.documents import SearchClient

    client = SearchClient(azs_server.url, "nope", AzureKeyCredential(API_KEY), retry_total=0)
    try:
        from azure.core.rest import HttpRequest

        req = HttpRequest(
            "POST",
            "/indexes('nope')/docs/search.post.search?api-version=2026-04-01",
            json={"search": "*", "x": 1},
        )
        resp = client.send_request(req)
        assert resp.status_code == 400
        with pytest.raises(HttpResponseError):
            resp.raise_for_status()
        assert any("no member 'x'" in v for v in azs_server.take_violations())
    finally:
        client.close()


# -- what Azure AI Search adds to the suite -------------------------------------------------------
def test_create_declares_the_index(shared_connector: Connector, azs_server: Any) -> None:
    """``create`` makes the whole index: key, vector field with its profile and HNSW
    algorithm carrying the metric and parameters, typed filterable metadata."""
    schema = sample_schema("typed-empty", id_type=IdType.INT, metric=Metric.DOT)
    vec = schema.vector.model_copy(
        update={"index": IndexSpec(kind="hnsw", params={"m": 8, "ef_construction": 200})}
    )
    shared_connector.create(schema.replace(vectors=(vec,)))
    try:
        d = azs_server.indexes["typed-empty"].definition
        fields = {f["name"]: f for f in d["fields"]}
        assert fields["id"]["key"] and fields["id"]["sortable"]
        assert fields["vector"]["type"] == "Collection(Edm.Single)"
        assert fields["vector"]["dimensions"] == 16
        assert fields["year"]["type"] == "Edm.Int64" and fields["year"]["filterable"]
        assert fields["tags"]["type"] == "Collection(Edm.String)"
        assert fields["vecmigrate_document"]["filterable"] is False
        algo = d["vectorSearch"]["algorithms"][0]
        assert algo["kind"] == "hnsw"
        assert algo["hnswParameters"] == {
            "m": 8, "efConstruction": 200, "efSearch": 500, "metric": "dotProduct"
        }  # fmt: skip
        assert shared_connector.count("typed-empty") == 0
        got = shared_connector.describe("typed-empty")
        assert (got.id_type, got.vector.metric) == (IdType.INT, Metric.DOT)
        assert got.vector.metric_source.startswith("Azure AI Search")
        assert got.vector.index is not None
        assert got.vector.index.kind == "hnsw"
        assert got.vector.index.params == {"m": 8, "ef_construction": 200, "ef": 500}
    finally:
        shared_connector.drop("typed-empty")
    assert "typed-empty" not in shared_connector.list_collections()


def test_flat_index_spec_makes_exhaustive_knn(shared_connector: Connector, azs_server: Any) -> None:
    schema = sample_schema("flat-one", metric=Metric.L2)
    vec = schema.vector.model_copy(update={"index": IndexSpec(kind="flat")})
    shared_connector.create(schema.replace(vectors=(vec,)))
    try:
        algo = azs_server.indexes["flat-one"].definition["vectorSearch"]["algorithms"][0]
        assert algo["kind"] == "exhaustiveKnn"
        assert algo["exhaustiveKnnParameters"] == {"metric": "euclidean"}
        got = shared_connector.describe("flat-one").vector
        assert got.index is not None and (got.index.kind, got.metric) == ("flat", Metric.L2)
    finally:
        shared_connector.drop("flat-one")


def test_keys_azure_refuses_are_encoded_and_round_trip(
    shared_connector: Connector, azs_server: Any
) -> None:
    schema = sample_schema("odd-keys")
    ids = ["plain-1", "doc/é", "_under", "=eq", "a b", "x'y"]
    batch = build_batch(
        schema, ids, {"vector": np.random.default_rng(3).normal(size=(6, 16)).astype(np.float32)},
        documents=[f"d{i}" for i in range(6)],
    )  # fmt: skip
    shared_connector.create(schema)
    try:
        shared_connector.upsert(schema.name, batch)
        stored = set(azs_server.indexes["odd-keys"].docs)
        assert "plain-1" in stored and all(k == "plain-1" or k.startswith("=") for k in stored)
        got = shared_connector.fetch(schema.name, ["doc/é", "x'y", "missing"])
        assert sorted(got["id"].to_pylist()) == ["doc/é", "x'y"]
        part = shared_connector.partitions(schema.name, 1)[0]
        seen = [i for b, _ in shared_connector.scan(schema.name, part, batch_rows=4)
                for i in b["id"].to_pylist()]  # fmt: skip
        assert sorted(seen) == sorted(ids)
        shared_connector.delete(schema.name, ["a b"])
        assert shared_connector.count(schema.name) == 5
    finally:
        shared_connector.drop(schema.name)


def test_upsert_batches_within_the_documented_limits(
    shared_connector: Connector, azs_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vecmigrate.connectors.azure_search._records as rec

    monkeypatch.setattr(rec, "MAX_BATCH_DOCS", 100)  # 240 rows: three requests
    schema = sample_schema("batches")
    shared_connector.create(schema)
    try:
        n0 = len(azs_server.requests)
        shared_connector.upsert(schema.name, sample_batch(schema))
        writes = [b for op, _, b in azs_server.requests[n0:] if op == "index"]
        assert [len(w["value"]) for w in writes] == [100, 100, 40]
        assert {a["@search.action"] for w in writes for a in w["value"]} == {"mergeOrUpload"}
        assert shared_connector.count(schema.name) == ROWS
    finally:
        shared_connector.drop(schema.name)


def test_scan_pages_by_key_not_skip(shared_connector: Connector, azs_server: Any) -> None:
    schema = sample_schema("paging")
    shared_connector.create(schema)
    try:
        shared_connector.upsert(schema.name, sample_batch(schema))
        n0 = len(azs_server.requests)
        part = shared_connector.partitions(schema.name, 4)[0]
        seen = [i for b, _ in shared_connector.scan(schema.name, part, batch_rows=100)
                for i in b["id"].to_pylist()]  # fmt: skip
        assert sorted(seen) == sorted(sample_ids(IdType.STRING))
        searches = [b for op, _, b in azs_server.requests[n0:] if op == "search"]
        assert len(searches) == 3
        assert all("skip" not in s and s["orderby"] == "id asc" for s in searches)
        assert "filter" not in searches[0] and searches[1]["filter"].startswith("id gt '")
    finally:
        shared_connector.drop(schema.name)


def test_collection_names_azure_refuses_live_in_hashed_indexes(
    shared_connector: Connector, azs_server: Any
) -> None:
    from vecmigrate.connectors.azure_search._records import index_name

    schema = sample_schema("My_Docs.v2")
    iname = index_name("My_Docs.v2")
    assert iname.startswith("my-docs-v2-") and len(iname) == len("my-docs-v2-") + 8
    shared_connector.create(schema)
    try:
        assert set(azs_server.indexes) >= {iname}
        assert "My_Docs.v2" in shared_connector.list_collections()
        assert shared_connector.describe("My_Docs.v2").name == "My_Docs.v2"
        with pytest.raises(ConfigError, match="already exists"):
            shared_connector.create(schema)
    finally:
        shared_connector.drop("My_Docs.v2")
    assert iname not in azs_server.indexes


def test_limits_are_refused_by_name(shared_connector: Connector, azs_server: Any) -> None:
    conn = shared_connector
    n0 = len(azs_server.requests)
    with pytest.raises(ConfigError, match="outside Azure AI Search's 2-4096"):
        conn.create(sample_schema("wide").replace(vectors=(VectorField(dim=5000),)))
    with pytest.raises(ConfigError, match="metadata type json"):
        conn.create(
            sample_schema("jsonish").replace(metadata=(MetadataField(name="blob", type="json"),))
        )
    with pytest.raises(ConfigError, match="not a valid Azure AI Search field name"):
        conn.create(
            sample_schema("badfield").replace(
                metadata=(MetadataField(name="_hidden", type="string"),)
            )
        )
    assert len(azs_server.requests) == n0  # refused before any call
    schema = sample_schema("limits")
    conn.create(schema)
    try:
        n0 = len(azs_server.requests)
        nan = build_batch(
            schema, ["nan"], {"vector": np.full((1, 16), np.nan, np.float32)}, documents=["d"]
        )
        with pytest.raises(DataError, match="finite"):
            conn.upsert(schema.name, nan)
        with pytest.raises(ConfigError, match="1-1000 results"):
            conn.search(schema.name, np.ones((1, 16), np.float32), 1001)
        assert len(azs_server.requests) == n0
    finally:
        conn.drop(schema.name)


def test_refused_document_is_a_data_error_naming_it(
    shared_connector: Connector, azs_server: Any
) -> None:
    """A per-document refusal (HTTP 207) names the record, not just the batch."""
    schema = sample_schema("refusals")
    shared_connector.create(schema)
    try:
        # Another tool narrowed ``year`` to Edm.Int32: the service refuses the big value.
        azs_server.indexes["refusals"].definition["fields"][
            next(i for i, f in enumerate(azs_server.indexes["refusals"].definition["fields"])
                 if f["name"] == "year")
        ]["type"] = "Edm.Int32"  # fmt: skip
        batch = sample_batch(schema, n=3)
        meta = batch["metadata"].to_pylist()
        meta[1]["year"] = 2**40
        import pyarrow as pa

        batch = batch.set_column(
            batch.schema.get_field_index("metadata"), "metadata",
            pa.array(meta, type=batch.schema.field("metadata").type),
        )  # fmt: skip
        with pytest.raises(DataError, match="refused the document") as err:
            shared_connector.upsert(schema.name, batch)
        assert err.value.record_id == batch["id"].to_pylist()[1]  # type: ignore[attr-defined]
    finally:
        shared_connector.drop(schema.name)


def test_foreign_index_is_described_from_its_definition(azs_server: Any) -> None:
    """An index another tool made (exhaustive KNN, euclidean, another key name, no
    document): metric and dimension from its profile, fields typed, searchable."""
    from azure.core.credentials import AzureKeyCredential
    from azure.search.documents import SearchClient
    from azure.search.documents.indexes import SearchIndexClient
    from azure.search.documents.indexes.models import (
        ExhaustiveKnnAlgorithmConfiguration,
        ExhaustiveKnnParameters,
        SearchField,
        SearchIndex,
        SimpleField,
        VectorSearch,
        VectorSearchProfile,
    )

    cred = AzureKeyCredential(API_KEY)
    ic = SearchIndexClient(azs_server.url, cred, retry_total=0)
    ic.create_index(
        SearchIndex(
            name="foreign",
            fields=[
                SimpleField(name="hotelId", type="Edm.String", key=True, sortable=True),
                SimpleField(name="title", type="Edm.String", filterable=True),
                SearchField(
                    name="emb",
                    type="Collection(Edm.Single)",
                    searchable=True,
                    vector_search_dimensions=3,
                    vector_search_profile_name="p",
                ),
            ],
            vector_search=VectorSearch(
                algorithms=[
                    ExhaustiveKnnAlgorithmConfiguration(
                        name="knn", parameters=ExhaustiveKnnParameters(metric="euclidean")
                    )
                ],
                profiles=[VectorSearchProfile(name="p", algorithm_configuration_name="knn")],
            ),
        )
    )
    sc = SearchClient(azs_server.url, "foreign", cred, retry_total=0)
    sc.upload_documents(
        [
            {"hotelId": "h1", "title": "a", "emb": [1.0, 0.0, 0.0]},
            {"hotelId": "h2", "title": "b", "emb": [0.0, 1.0, 0.0]},
        ]
    )
    try:
        conn = connect(azs_uri(azs_server))
        schema = conn.describe("foreign")
        assert (schema.vector.dim, schema.vector.metric) == (3, Metric.L2)
        assert schema.vector.index is not None and schema.vector.index.kind == "flat"
        assert schema.id_type is IdType.STRING and not schema.has_document
        assert [(m.name, m.type) for m in schema.metadata] == [("title", "string")]
        ids, scores = conn.search("foreign", np.array([[0.9, 0.1, 0]], np.float32), 2)
        assert ids == [["h1", "h2"]] and scores[0][0] > scores[0][1]
        assert conn.fetch("foreign", ["h2"])["metadata"].to_pylist() == [{"title": "b"}]
        new = build_batch(
            schema, ["h3"], {"vector": np.array([[0.0, 0.0, 1.0]], np.float32)},
            metadata=[{"title": "c"}],
        )  # fmt: skip
        conn.upsert("foreign", new)
        assert azs_server.indexes["foreign"].docs["h3"]["title"] == "c"
        with pytest.raises(ConfigError, match="not filterable and sortable"):
            list(conn.scan("foreign", conn.partitions("foreign", 1)[0]))
        conn.close()
    finally:
        ic.delete_index("foreign")
        sc.close()
        ic.close()


def test_scores_are_azure_search_scores(shared_connector: Connector) -> None:
    schema = sample_schema("scores", metric=Metric.L2)
    shared_connector.create(schema)
    try:
        batch = sample_batch(schema)
        shared_connector.upsert(schema.name, batch)
        vecs = vectors_to_numpy(batch["vector"])[:3]
        ids, scores = shared_connector.search(schema.name, vecs + 0.5, 4)
        assert [row[0] for row in ids] == batch["id"].to_pylist()[:3]
        # euclidean: 1 / (1 + distance), distance = sqrt(16 * 0.25) = 2
        np.testing.assert_allclose([s[0] for s in scores], [1 / 3] * 3, rtol=1e-5)
    finally:
        shared_connector.drop(schema.name)


def test_errors_are_translated(azs_server: Any) -> None:
    conn = connect(azs_uri(azs_server))
    try:
        azs_server.fail(429, op="list_indexes")
        with pytest.raises(TransientError, match="HTTP 429"):
            conn.list_collections()
        azs_server.fail(503, op="list_indexes")
        with pytest.raises(TransientError, match="HTTP 503"):
            conn.list_collections()
        with pytest.raises(ConfigError, match="no index 'never-made'"):
            conn.describe("never-made")
        schema = sample_schema("errs")
        conn.create(schema)
        try:
            azs_server.fail(400, op="index")
            with pytest.raises(DataError, match="HTTP 400"):
                conn.upsert(schema.name, sample_batch(schema, n=3))
        finally:
            conn.drop(schema.name)
        assert azs_server.clear_failures() == []
    finally:
        conn.close()
    azs_server.take_violations()
