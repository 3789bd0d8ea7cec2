"""Amazon S3 Vectors through boto3's ``s3vectors`` client over real HTTP, against the
*protocol test double* in ``tests/protocol/s3vectors_server.py`` — not the service, which
cannot run on this machine. The double validates every request it receives and every
response it sends against botocore's service model; each module run ends by checking
that nothing broke it."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.conformance.doubles import DoubleConformance, connected, double_uri, serving
from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError
from vecmigrate.model import IdType, MetadataField, Metric, VectorField
from vecmigrate.records import build_batch, vectors_to_numpy
from vecmigrate.testing.data import sample_batch, sample_schema

ACCESS_KEY = "AKIAVECMIGRATETEST01"
SECRET_KEY = "s3v-test-secret-0123456789"
BUCKET = "vecmigrate-test"


@pytest.fixture(scope="module")
def s3v_server(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Any]:
    """An S3 Vectors protocol server on 127.0.0.1 with one bucket; keys in the env. At
    the end, the double must not have seen a request or sent a response that breaks the
    service model (tests that provoke one take it themselves)."""
    require_module("boto3")
    from tests.protocol.s3vectors_server import S3VectorsServer

    server = S3VectorsServer(ACCESS_KEY)
    server.create_bucket(BUCKET)
    env = {"VECMIGRATE_TEST_S3V_KEY_ID": ACCESS_KEY, "VECMIGRATE_TEST_S3V_SECRET": SECRET_KEY}
    with serving(server, monkeypatch_module, env):
        yield server


def s3v_uri(server: Any, bucket: str = BUCKET, **params: str) -> str:
    """A connection URI for the protocol server (the keys come from the environment)."""
    settings = [
        "region=us-east-1",
        f"endpoint_url={server.url}",
        "access_key_id=env:VECMIGRATE_TEST_S3V_KEY_ID",
        "secret_access_key=env:VECMIGRATE_TEST_S3V_SECRET",
    ]
    return double_uri(f"s3vectors://{bucket}", settings, params)


@pytest.fixture(scope="module")
def shared_connector(s3v_server: Any) -> Iterator[Connector]:
    with connected(s3v_uri(s3v_server)) as conn:
        yield conn


class TestS3Vectors(DoubleConformance):
    server_fixture = "s3v_server"


class TestS3VectorsIntIds(TestS3Vectors):
    id_type = IdType.INT


# -- the service model guards the double --------------------------------------------------------
def _raw_call(server: Any, path: str, body: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
    """POST a JSON body signed with botocore (so only the model can object to it)."""
    import botocore.auth  # type: ignore[import-untyped]
    import botocore.awsrequest  # type: ignore[import-untyped]
    import botocore.credentials  # type: ignore[import-untyped]

    data = json.dumps(body).encode()
    request = botocore.awsrequest.AWSRequest(
        method="POST", url=server.url + path, data=data,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    creds = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
    botocore.auth.SigV4Auth(creds, "s3vectors", "us-east-1").add_auth(request)
    prepared = request.prepare()
    req = urllib.request.Request(
        prepared.url, data=data, headers=dict(prepared.headers), method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # 127.0.0.1 only
            return resp.status, "", json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("x-amzn-ErrorType", ""), json.loads(exc.read())


def _boto_client(server: Any, validate: bool = True) -> Any:
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    return boto3.client(
        "s3vectors",
        region_name="us-east-1",
        endpoint_url=server.url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(parameter_validation=validate, retries={"total_max_attempts": 1}),
    )


def test_validator_catches_what_the_model_forbids() -> None:
    """The validator on its own: constraints botocore's client does not check (maximums,
    enums, unknown members, patterns, unions) are all found, by path."""
    require_module("botocore")
    from tests.protocol import s3vectors_model as model

    shape = model.service_model().operation_model("PutVectors").input_shape
    vec = {"key": "k", "data": {"float32": [0.5]}}
    assert model.violations(shape, {"indexName": "idx", "vectors": [vec]}) == []
    found = model.violations(shape, {"indexName": "idx", "vectors": [vec] * 501, "extra": 1})
    assert any("PutVectorsInputList): 501 items, more than the maximum 500" in v for v in found)
    assert any("'extra' is not a member" in v for v in found)
    found = model.violations(shape, {"vectors": [{"key": "", "data": {}}]})
    assert any("VectorKey): 0 characters, fewer than the minimum 1" in v for v in found)
    assert any("a union takes exactly one member" in v for v in found)
    create = model.service_model().operation_model("CreateIndex").input_shape
    found = model.violations(
        create,
        {"indexName": "i" * 64, "dataType": "float16", "dimension": 4097,
         "distanceMetric": "dotproduct", "tags": {"bad#key": "v"}},
    )  # fmt: skip
    for expected in (
        "IndexName): 64 characters, more than the maximum 63",
        "'float16' is not one of ['float32']",
        "4097 is above the maximum 4096",
        "'dotproduct' is not one of ['euclidean', 'cosine']",
    ):
        assert any(expected in v for v in found), expected
    delete = model.service_model().operation_model("DeleteIndex").input_shape
    found = model.violations(delete, {"indexArn": "arn:aws:s3:::bucket/idx"})
    assert any(
        "IndexArn): 'arn:aws:s3:::bucket/idx' does not match the pattern" in v for v in found
    )
    out = model.service_model().operation_model("GetIndex").output_shape
    found = model.violations(out, {"index": {"indexName": "idx", "vectorCount": 3}})
    assert any("'vectorCount' is not a member" in v for v in found)
    assert any("required member 'indexArn' is missing" in v for v in found)


def test_double_refuses_a_request_that_breaks_the_model(s3v_server: Any) -> None:
    """A request only the model forbids (no hand-written check in the double looks at
    it) is answered ValidationException and recorded — a double that accepted anything
    would have stored it."""
    index = {"vectorBucketName": BUCKET, "indexName": "model-guard"}
    status, _, _ = _raw_call(
        s3v_server, "/CreateIndex",
        {**index, "dataType": "float32", "dimension": 2, "distanceMetric": "cosine"},
    )  # fmt: skip
    assert status == 200
    try:
        # botocore checks minimums client-side but never maximums: this goes out as is.
        client = _boto_client(s3v_server)
        with pytest.raises(Exception) as caught:
            client.delete_vectors(**index, keys=[f"k{i}" for i in range(501)])
        assert caught.value.response["Error"]["Code"] == "ValidationException"  # type: ignore[attr-defined]
        assert "501 items, more than the maximum 500" in str(caught.value)
        # A member the model does not have, and a wrong type, sent raw.
        status, code, body = _raw_call(
            s3v_server, "/QueryVectors", {**index, "topK": "3", "queryVektor": {}}
        )
        assert (status, code) == (400, "ValidationException")
        assert "'queryVektor' is not a member" in body["message"]
        assert "TopK): expected an integer" in body["message"]
        # An enum only the model knows (the double never reads dataType).
        status, code, body = _raw_call(
            s3v_server, "/CreateIndex",
            {**index, "indexName": "other", "dataType": "bfloat16", "dimension": 2,
             "distanceMetric": "cosine"},
        )  # fmt: skip
        assert (status, code) == (400, "ValidationException")
        assert "'bfloat16' is not one of ['float32']" in body["message"]
        assert "other" not in s3v_server.buckets[BUCKET].indexes
        seen = s3v_server.take_violations()
        assert len(seen) == 4 and all(v.startswith("request ") for v in seen)
    finally:
        s3v_server.buckets[BUCKET].indexes.pop("model-guard", None)


def test_double_reports_a_response_that_breaks_the_model(
    s3v_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A response the model does not allow (here a member GetIndex does not have) is not
    sent: the double answers 500 and records the drift."""
    from tests.protocol.s3vectors_server import IndexState

    original = IndexState.describe

    def drifted(self: IndexState) -> dict[str, Any]:
        return {**original(self), "vectorCount": len(self.vectors)}

    monkeypatch.setattr(IndexState, "describe", drifted)
    index = {"vectorBucketName": BUCKET, "indexName": "drift"}
    _raw_call(
        s3v_server, "/CreateIndex",
        {**index, "dataType": "float32", "dimension": 2, "distanceMetric": "cosine"},
    )  # fmt: skip
    try:
        status, code, body = _raw_call(s3v_server, "/GetIndex", index)
        assert (status, code) == (500, "InternalServerException")
        assert "'vectorCount' is not a member" in body["message"]
        assert s3v_server.take_violations() == [
            "response GetIndex: GetIndexOutput.index (Index): 'vectorCount' is not a member "
            "(members: ['creationTime', 'dataType', 'dimension', 'distanceMetric', "
            "'encryptionConfiguration', 'indexArn', 'indexMode', 'indexName', "
            "'metadataConfiguration', 'vectorBucketName'])"
        ]
    finally:
        s3v_server.buckets[BUCKET].indexes.pop("drift", None)


# -- configuration and limits, refused by name before any call ---------------------------------
def test_uri_refuses_literal_secrets_and_bad_buckets(s3v_server: Any) -> None:
    with pytest.raises(ConfigError, match="must reference a secret"):
        connect(f"s3vectors://{BUCKET}?region=us-east-1&access_key_id=env:X&secret_access_key=abc")
    with pytest.raises(ConfigError, match="together"):
        connect(f"s3vectors://{BUCKET}?access_key_id=env:X")
    with pytest.raises(ConfigError, match="not a valid S3 vector bucket name"):
        connect("s3vectors://a_b?region=us-east-1")
    with pytest.raises(ConfigError, match="does not take parameter"):
        connect(f"s3vectors://{BUCKET}?regoin=us-east-1")
    before = len(s3v_server.requests)
    conn = connect(s3v_uri(s3v_server))  # no I/O until used
    assert len(s3v_server.requests) == before
    conn.close()


def test_limits_are_refused_by_name_before_any_call(
    shared_connector: Connector, s3v_server: Any
) -> None:
    conn = shared_connector
    before = len(s3v_server.requests)
    wide = sample_schema("too_wide").replace(vectors=(VectorField(dim=4097),))
    with pytest.raises(ConfigError, match=r"dimension 4097 .* 1-4096"):
        conn.create(wide)
    dot = sample_schema("dotty", metric=Metric.DOT)
    with pytest.raises(ConfigError, match="metric dot"):
        conn.create(dot)
    many_json = sample_schema("json_heavy").replace(
        metadata=tuple(MetadataField(name=f"j{i}", type="json") for i in range(9))
    )
    with pytest.raises(ConfigError, match="non-filterable metadata keys"):
        conn.create(many_json)
    assert len(s3v_server.requests) == before
    with pytest.raises(ConfigError, match="1-100 results per query"):
        conn.search("anything", np.ones((1, 16), dtype=np.float32), 101)
    assert len(s3v_server.requests) == before


def test_record_limits_are_data_errors_naming_the_field(
    shared_connector: Connector, s3v_server: Any
) -> None:
    conn = shared_connector
    schema = sample_schema("limits_records")
    conn.create(schema)
    try:
        before = len(s3v_server.requests)
        batch = sample_batch(schema, n=2)
        meta = batch.column("metadata").to_pylist()
        meta[1]["genre"] = "x" * 3000  # filterable: 2 KB per vector
        big = batch.set_column(
            batch.schema.get_field_index("metadata"), "metadata",
            pa.array(meta, type=batch.schema.field("metadata").type),
        )  # fmt: skip
        with pytest.raises(DataError, match=r"filterable metadata is .* 2,048 bytes") as caught:
            conn.upsert(schema.name, big)
        assert caught.value.field == "genre" and caught.value.record_id == "doc-0001"
        docs = pa.array(["d", "y" * 41_000])  # the document is non-filterable: 40 KB total
        big = batch.set_column(batch.schema.get_field_index("document"), "document", docs)
        with pytest.raises(DataError, match=r"metadata is .* 40,960 bytes") as caught:
            conn.upsert(schema.name, big)
        assert caught.value.field == "document"
        ids = pa.array(["k" * 1025, "ok"])
        with pytest.raises(DataError, match="1-1024 characters"):
            conn.upsert(schema.name, batch.set_column(0, "id", ids))
        zero = np.zeros((2, 16), dtype=np.float32)
        flat = build_batch(schema, ["z1", "z2"], {"vector": zero})
        with pytest.raises(DataError, match="all-zero vector"):
            conn.upsert(schema.name, flat)
        meta = batch.column("metadata").to_pylist()
        meta[0]["year"] = 2**60
        huge = batch.set_column(
            batch.schema.get_field_index("metadata"), "metadata",
            pa.array(meta, type=batch.schema.field("metadata").type),
        )  # fmt: skip
        with pytest.raises(DataError, match="would not round-trip"):
            conn.upsert(schema.name, huge)
        assert len(s3v_server.requests) == before
        assert conn.count(schema.name) == 0
    finally:
        conn.drop(schema.name)


def test_non_filterable_keys_and_put_chunks(s3v_server: Any) -> None:
    """``?non_filterable=`` declares keys at creation: searching on them is refused,
    counting still works; 1,200 vectors go out in calls of at most 500."""
    conn = connect(s3v_uri(s3v_server, non_filterable="genre"))
    schema = sample_schema("hidden_genre")
    try:
        conn.create(schema)
        got = conn.describe(schema.name).engine_settings["non_filterable"]
        assert got == sorted(["_vecmigrate_document", "_vecmigrate_extra", "genre"])
        n0 = len(s3v_server.requests)
        conn.upsert(schema.name, sample_batch(schema, n=1200))
        puts = [r for r in s3v_server.requests[n0:] if r[0] == "PutVectors"]
        assert len(puts) == 3
        with pytest.raises(ConfigError, match="non-filterable metadata key"):
            conn.search(schema.name, np.ones((1, 16), dtype=np.float32), 5, filter={"genre": "art"})
        assert conn.count(schema.name, {"genre": "art"}) == 300
        assert conn.count(schema.name, {"year": {"$gte": 2020}}) == 170
    finally:
        conn.drop(schema.name)
        conn.close()


def test_euclidean_index_round_trips_its_metric(shared_connector: Connector) -> None:
    """The suite's metric case skips at dot (S3 Vectors has none) before it reaches l2."""
    schema = sample_schema("euclid", metric=Metric.L2)
    shared_connector.create(schema)
    try:
        shared_connector.upsert(schema.name, sample_batch(schema))
        got = shared_connector.describe(schema.name).vector
        assert (got.metric, got.metric_source) == (Metric.L2, "S3 Vectors index distanceMetric")
        batch = sample_batch(schema)
        ids, scores = shared_connector.search(schema.name, vectors_to_numpy(batch["vector"])[:3], 5)
        assert [row[0] for row in ids] == batch["id"].to_pylist()[:3]
        assert all(row[0] < 1e-3 and row == sorted(row) for row in scores)  # distances
    finally:
        shared_connector.drop(schema.name)


def test_parallel_scan_uses_list_segments(shared_connector: Connector, s3v_server: Any) -> None:
    conn = shared_connector
    schema = sample_schema("segments")
    conn.create(schema)
    try:
        conn.upsert(schema.name, sample_batch(schema))
        parts = conn.partitions(schema.name, 40)
        assert len(parts) == 16  # ListVectors takes at most 16 segments
        n0 = len(s3v_server.requests)
        seen = [i for p in parts for b, _ in conn.scan(schema.name, p) for i in b["id"].to_pylist()]
        assert sorted(seen) == sorted(sample_batch(schema)["id"].to_pylist())
        assert all(op == "ListVectors" for op, _ in s3v_server.requests[n0:])
    finally:
        conn.drop(schema.name)


# -- errors, mapped in one place ---------------------------------------------------------------
def test_errors_are_translated(s3v_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = connect(s3v_uri(s3v_server, max_attempts="1"))
    try:
        s3v_server.fail("TooManyRequestsException", op="ListIndexes")
        with pytest.raises(TransientError, match="TooManyRequestsException"):
            conn.list_collections()
        s3v_server.fail("ServiceUnavailableException", op="ListIndexes")
        with pytest.raises(TransientError, match="ServiceUnavailable"):
            conn.list_collections()
        s3v_server.fail("AccessDeniedException", op="ListIndexes")
        with pytest.raises(ConfigError, match="AccessDenied"):
            conn.list_collections()
        with pytest.raises(ConfigError, match="no index"):
            conn.describe("never_made")
        s3v_server.fail("ValidationException", op="PutVectors")
        schema = sample_schema("errors_x")
        conn.create(schema)
        try:
            with pytest.raises(DataError, match="ValidationException"):
                conn.upsert(schema.name, sample_batch(schema, n=3))
            s3v_server.fail("ValidationException", op="DeleteVectors")
            with pytest.raises(TerminalError, match="ValidationException") as caught:
                conn.delete(schema.name, ["doc-0001"])
            assert not isinstance(caught.value, DataError)  # a refused delete is no record's
            s3v_server.fail("KmsDisabledException", op="GetVectors")
            with pytest.raises(ConfigError, match="KmsDisabledException"):
                conn.fetch(schema.name, ["doc-0001"])
        finally:
            conn.drop(schema.name)
        assert s3v_server.clear_failures() == []
    finally:
        conn.close()
    # A wrong secret: the double refuses the credential scope, mapped to ConfigError.
    monkeypatch.setenv("VECMIGRATE_TEST_S3V_WRONG_ID", "AKIAWRONGWRONGWRONG0")
    wrong = connect(s3v_uri(s3v_server).replace("S3V_KEY_ID", "S3V_WRONG_ID"))
    with pytest.raises(ConfigError, match="AccessDenied"):
        wrong.list_collections()
    wrong.close()
    missing = connect(s3v_uri(s3v_server, bucket="no-such-bucket"))
    with pytest.raises(ConfigError, match="NotFoundException"):
        missing.list_collections()
    missing.close()
    # Nothing listens: a transient connection failure.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = connect(
        s3v_uri(s3v_server, max_attempts="1", timeout="2").replace(
            s3v_server.url, f"http://127.0.0.1:{port}"
        )
    )
    with pytest.raises(TransientError):
        dead.list_collections()
    dead.close()


def test_foreign_index_is_described_from_the_index(s3v_server: Any) -> None:
    """An index vecmigrate did not create: dimension and metric from GetIndex (with
    ``metric_source``), metadata types sampled, numbers read as float64."""
    client = _boto_client(s3v_server)
    index = {"vectorBucketName": BUCKET, "indexName": "foreign.idx"}
    client.create_index(**index, dataType="float32", dimension=3, distanceMetric="euclidean")
    try:
        client.put_vectors(
            **index,
            vectors=[
                {"key": "a", "data": {"float32": [1, 0, 0]}, "metadata": {"n": 1, "t": "x"}},
                {"key": "b", "data": {"float32": [0, 1, 0]}, "metadata": {"n": 2.5}},
            ],
        )
        conn = connect(s3v_uri(s3v_server))
        schema = conn.describe("foreign.idx")
        assert (schema.vector.dim, schema.vector.metric) == (3, Metric.L2)
        assert schema.vector.metric_source == "S3 Vectors index distanceMetric"
        assert {(m.name, m.type) for m in schema.metadata} == {("n", "float64"), ("t", "string")}
        assert "foreign.idx" in conn.list_collections()
        ids, scores = conn.search("foreign.idx", np.array([[0.9, 0.1, 0]], np.float32), 2)
        assert ids == [["a", "b"]] and scores[0][0] < scores[0][1]
        conn.close()
    finally:
        client.delete_index(**index)


def test_cli_import_export_inspect(s3v_server: Any, tmp_path: Path) -> None:
    """The CLI end to end: a dump imported into S3 Vectors, exported back with equal
    digests, inspected; no secret in any output."""
    from tests.e2e.helpers import cli, make_dump
    from vecmigrate.verify.digest import collection_digest

    make_dump(tmp_path / "src", 1200, dim=32)
    target = s3v_uri(s3v_server)
    try:
        imported = cli("import", str(tmp_path / "src"), target, "--json")
        assert imported.returncode == 0, imported.stderr
        assert imported.json()["rows_written"] == 1200
        exported = cli("export", target, "-c", "docs", "-o", str(tmp_path / "out"), "--json")
        assert exported.returncode == 0, exported.stderr
        inspected = cli("inspect", target, "--json")
        row = next(c for c in inspected.json()["collections"] if c["name"] == "docs")
        assert row["count"] == 1200 and row["vectors"][0]["metric"] == "cosine"
        for ran in (imported, exported, inspected):
            assert SECRET_KEY not in ran.stdout + ran.stderr
        src, out = connect(f"dump://{tmp_path / 'src'}"), connect(f"dump://{tmp_path / 'out'}")
        assert collection_digest(src, "docs").compare(collection_digest(out, "docs")).equal
    finally:
        with connect(target) as conn:
            conn.drop("docs")


def test_wide_vectors_are_split_under_the_payload_limit(
    shared_connector: Connector, s3v_server: Any
) -> None:
    """300 vectors of 4,096 dimensions are ~25 MB of JSON: sent in several PutVectors
    calls, each under the 20 MiB payload limit the double enforces."""
    conn = shared_connector
    schema = sample_schema("wide").replace(vectors=(VectorField(dim=4096),))
    conn.create(schema)
    try:
        rng = np.random.default_rng(1)
        matrix = rng.normal(size=(300, 4096)).astype(np.float32) / 3
        batch = build_batch(schema, [f"w{i}" for i in range(300)], {"vector": matrix})
        n0 = len(s3v_server.requests)
        conn.upsert(schema.name, batch)
        puts = [r for r in s3v_server.requests[n0:] if r[0] == "PutVectors"]
        assert len(puts) >= 2 and all(status == 200 for _, status in puts)
        assert conn.count(schema.name) == 300
    finally:
        conn.drop(schema.name)


def test_storage_identity_is_bucket_and_region() -> None:
    from vecmigrate.connectors.identity import storage_identity

    a = storage_identity(f"s3vectors://{BUCKET}?region=us-east-1&profile=x")
    assert a == storage_identity(f"s3vectors://{BUCKET}?region=us-east-1&max_attempts=2")
    assert a != storage_identity(f"s3vectors://{BUCKET}?region=eu-west-1")
    assert a != storage_identity("s3vectors://other-bucket?region=us-east-1")
