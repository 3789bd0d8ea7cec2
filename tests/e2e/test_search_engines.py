"""Elasticsearch and OpenSearch end to end, through the official clients, against the
protocol test double (``tests/protocol/search_server.py``; neither engine runs here).

Covers what the conformance suite does not: the CLI moving a collection dump -> ES ->
dump -> OpenSearch -> dump with equal digests, injected 429/503 (whole requests and bulk
items) retried without loss, refused records dead-lettered with id and field, indexes
made by other tools described from their mapping and scanned, and credentials that
never show up in errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import json_of, make_dump, run_cli
from tests.protocol.search_server import SearchServer
from vecmigrate.connectors import Connector, connect
from vecmigrate.errors import ConfigError, DataError, TerminalError
from vecmigrate.model import CollectionSchema, MetadataField, Metric, VectorField
from vecmigrate.pipeline import CopyOptions, RetryPolicy, copy_collection
from vecmigrate.records import build_batch
from vecmigrate.verify.digest import collection_digest

SECRET = "s3cr3t-Zq9-planted"
DIALECTS = ["elasticsearch", "opensearch"]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, SearchServer]]:
    require_module("elasticsearch")
    require_module("opensearchpy")
    # ES with an API key, OpenSearch with basic auth: both secrets travel as env: refs.
    es = SearchServer("elasticsearch", api_key=SECRET)
    os_ = SearchServer("opensearch", user="admin", password=SECRET)
    try:
        yield {"elasticsearch": es, "opensearch": os_}
    finally:
        es.stop()
        os_.stop()


@pytest.fixture
def uris(servers: dict[str, SearchServer], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("VM_SEARCH_SECRET", SECRET)
    return {
        "elasticsearch": servers["elasticsearch"].uri(api_key="env:VM_SEARCH_SECRET"),
        "opensearch": servers["opensearch"].uri(user="admin", password="env:VM_SEARCH_SECRET"),
    }


def test_cli_dump_to_es_to_opensearch_and_back(uris: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_dump(src, 2000, dim=32)
    es, os_ = uris["elasticsearch"], uris["opensearch"]
    steps = [
        ("import", str(src), es, "-c", "docs"),
        ("export", es, "-c", "docs", "-o", str(tmp_path / "from_es")),
        ("import", str(tmp_path / "from_es"), os_, "-c", "docs"),
        ("export", os_, "-c", "docs", "-o", str(tmp_path / "from_os")),
    ]
    for step in steps:
        proc = run_cli(*step, "--json", "--workers", "2", "--batch-rows", "500", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert SECRET not in proc.stdout + proc.stderr
        out = json_of(proc)
        assert out.get("dead_letters", 0) == 0
    for path in tmp_path.rglob("*"):  # dumps, manifests, job files: never the secret
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    want = collection_digest(connect(f"dump://{src}"), "docs")
    final = collection_digest(connect(f"dump://{tmp_path / 'from_os'}"), "docs")
    assert want.compare(final, tolerance=1e-6).equal
    for uri in (es, os_):
        with connect(uri) as conn:
            assert conn.count("docs") == 2000
            assert want.compare(collection_digest(conn, "docs"), tolerance=1e-6).equal, uri
            assert conn.describe("docs").vector.dim == 32
            conn.drop("docs")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_injected_429_503_are_retried_without_loss(
    dialect: str, servers: dict[str, SearchServer], uris: dict[str, str], tmp_path: Path
) -> None:
    server = servers[dialect]
    src = tmp_path / "src"
    make_dump(src, 1200, dim=16)
    opts = CopyOptions(
        workers=2,
        batch_rows=200,
        retry=RetryPolicy(attempts=6, base_seconds=0.01),
        job_path=tmp_path / "import.sqlite",
    )
    with connect(f"dump://{src}") as dump, connect(uris[dialect]) as conn:
        server.fail(503, 1)  # the index lookup before create: a read, retried in place
        server.reject_items(5)  # first bulk: 5 items refused with 429 (write queue full)
        res = copy_collection(dump, conn, "docs", target_collection="retry", options=opts)
        assert res.rows_written == 1200 and res.dead_letters == 0
        server.fail(429, 2, path="_bulk")  # two whole bulk requests throttled
        res2 = copy_collection(
            dump,
            conn,
            "docs",
            target_collection="retry",
            options=CopyOptions(
                workers=2,
                batch_rows=200,
                if_exists="reuse",
                retry=RetryPolicy(attempts=6, base_seconds=0.01),
                job_path=tmp_path / "again.sqlite",
            ),
        )
        assert res.retries >= 1 and res2.retries >= 2
        assert conn.count("retry") == 1200
        # Reads retry too: a 503 on a scan page loses nothing.
        server.fail(503, 1, path="_search")
        out = connect(f"dump://{tmp_path / 'out'}")
        exported = copy_collection(
            conn, out, "retry", options=CopyOptions(workers=2, job_path=tmp_path / "e.sqlite")
        )
        assert exported.rows_written == 1200
        want = collection_digest(dump, "docs")
        assert want.compare(collection_digest(conn, "retry"), tolerance=1e-6).equal
        assert want.compare(collection_digest(out, "retry"), tolerance=1e-6).equal
        conn.drop("retry")


def _schema(name: str, dim: int = 4) -> CollectionSchema:
    return CollectionSchema(
        name=name,
        vectors=(VectorField(dim=dim, metric=Metric.COSINE),),
        has_document=True,
        metadata=(MetadataField(name="year", type="int64"),),
    )


@pytest.mark.parametrize("dialect", DIALECTS)
def test_refused_record_is_a_data_error_then_a_dead_letter(
    dialect: str, uris: dict[str, str], tmp_path: Path
) -> None:
    schema = _schema("refused")
    vectors = np.ones((4, 4), dtype=np.float32)
    vectors[2] = 0.0  # a zero vector: no cosine similarity, both engines refuse it
    batch = build_batch(
        schema, ["a", "b", "c", "d"], {"vector": vectors}, metadata=[{"year": i} for i in range(4)]
    )
    with connect(uris[dialect]) as conn:
        conn.create(schema, if_exists="replace")
        with pytest.raises(DataError) as err:
            conn.upsert("refused", batch)
        assert err.value.record_id == "c" and err.value.field == "vector"
        assert "zero" in str(err.value)
        dump = connect(f"dump://{tmp_path / 'src'}")
        dump.create(schema)
        dump.upsert("refused", batch)
        dump.finalize("refused")
        opts = CopyOptions(workers=1, batch_rows=4, job_path=tmp_path / "j.sqlite")
        res = copy_collection(
            dump,
            conn,
            "refused",
            options=CopyOptions(
                workers=1,
                batch_rows=4,
                if_exists="replace",
                replace_confirmed=True,
                job_path=opts.job_path,
            ),
        )
        assert res.rows_written == 3 and res.dead_letters == 1
        dead = pq.read_table(next(Path(str(res.dead_letter_dir)).rglob("*.parquet")))
        assert dead.column("id").to_pylist() == ["c"]
        assert dead.column("_field").to_pylist() == ["vector"]
        assert conn.count("refused") == 3
        conn.drop("refused")


def _foreign_index(dialect: str, server: SearchServer) -> Any:
    """An index made by another tool: its own mapping, dynamic fields, arrays, no _meta."""
    props: dict[str, Any] = {"document": {"type": "text"}, "title": {"type": "keyword"}}
    if dialect == "elasticsearch":
        from elasticsearch import Elasticsearch

        client: Any = Elasticsearch(f"http://127.0.0.1:{server.port}", api_key=SECRET)
        props["emb"] = {"type": "dense_vector", "dims": 3, "similarity": "dot_product"}
        client.indices.create(index="foreign", mappings={"properties": props})
    else:
        from opensearchpy import OpenSearch

        client = OpenSearch(
            hosts=[{"host": "127.0.0.1", "port": server.port}], http_auth=("admin", SECRET)
        )
        props["emb"] = {"type": "knn_vector", "dimension": 3}  # no method: space_type l2
        client.indices.create(
            index="foreign",
            body={"settings": {"index.knn": True}, "mappings": {"properties": props}},
        )
    lines = []
    for i in range(130):
        v = np.array([1.0, i % 7, i % 3], dtype=np.float64)
        v /= np.linalg.norm(v)  # unit length: ES dot_product requires it
        doc = {
            "document": f"text {i}",
            "title": f"t{i}",
            "emb": v.tolist(),
            "count": i,  # dynamic: long
            "price": i + 0.5,  # dynamic: ES and OpenSearch map JSON floats to float
            "tags": [f"x{i % 3}", "all"],  # an array: the mapping says text+keyword only
            "on": i % 2 == 0,
        }
        lines += [json.dumps({"index": {"_index": "foreign", "_id": f"f{i}"}}), json.dumps(doc)]
    client.bulk(body="\n".join(lines) + "\n", refresh="true")
    return client


@pytest.mark.parametrize("dialect", DIALECTS)
def test_index_made_by_another_tool_is_described_and_scanned(
    dialect: str, servers: dict[str, SearchServer], uris: dict[str, str], tmp_path: Path
) -> None:
    client = _foreign_index(dialect, servers[dialect])
    try:
        with connect(uris[dialect]) as conn:
            schema = conn.describe("foreign")
            assert schema.vector.dim == 3
            assert schema.vector.metric == (Metric.DOT if dialect == "elasticsearch" else Metric.L2)
            assert schema.has_document and schema.engine_settings["foreign"] is True
            types = {m.name: m.type for m in schema.metadata}
            assert types == {
                "title": "string",
                "count": "int64",
                "price": "float64",
                "tags": "list<string>",
                "on": "bool",
            }
            assert conn.count("foreign", {"tags": "x1"}) == 43
            # ES: slices of one shared PIT; OpenSearch: one partition sorted on _id.
            parts = conn.partitions("foreign", 4)
            assert len(parts) == (2 if dialect == "elasticsearch" else 1)
            ids: list[str] = []
            for part in parts:
                scan = conn.scan("foreign", part, batch_rows=20)
                first, token = next(scan)
                scan.close()  # a resumed scan continues after the token
                rest = [b for b, _ in conn.scan("foreign", part, token, batch_rows=20)]
                ids += first.column("id").to_pylist()
                ids += [x for b in rest for x in b.column("id").to_pylist()]
            assert sorted(ids) == sorted(f"f{i}" for i in range(130))  # disjoint, covering
            row = conn.fetch("foreign", ["f4"]).to_pylist()[0]
            assert row["document"] == "text 4"
            assert row["metadata"]["tags"] == ["x1", "all"]
            got, _ = conn.search("foreign", np.array([[1.0, 0.0, 0.0]], np.float32), 3)
            assert len(got[0]) == 3
            # Exported by the pipeline, partitions in parallel: same content as the index.
            dump = connect(f"dump://{tmp_path / 'dump'}")
            opts = CopyOptions(workers=2, batch_rows=30, job_path=tmp_path / "f.sqlite")
            res = copy_collection(conn, dump, "foreign", options=opts)
            assert res.rows_written == 130 and res.partitions == len(parts)
            assert (
                collection_digest(conn, "foreign").compare(collection_digest(dump, "foreign")).equal
            )
    finally:
        client.indices.delete(index="foreign")
        client.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_wrong_credentials_fail_without_showing_them(
    dialect: str, uris: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VM_SEARCH_SECRET", "wrong-" + SECRET)
    conn: Connector = connect(uris[dialect])
    with pytest.raises(TerminalError) as err:
        conn.list_collections()
    assert "401" in str(err.value) and "security_exception" in str(err.value)
    assert SECRET not in str(err.value) and SECRET not in repr(conn)
    conn.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_named_vectors_with_their_own_metrics(dialect: str, uris: dict[str, str]) -> None:
    schema = CollectionSchema(
        name="named",
        vectors=(
            VectorField(name="text", dim=4, metric=Metric.COSINE),
            VectorField(name="image", dim=3, metric=Metric.L2),
        ),
        metadata=(MetadataField(name="n", type="int64"),),
    )
    rng = np.random.default_rng(1)
    text, image = rng.normal(size=(50, 4)), rng.normal(size=(50, 3))
    ids = [f"r{i}" for i in range(50)]
    batch = build_batch(
        schema, ids, {"text": text, "image": image}, metadata=[{"n": i} for i in range(50)]
    )
    with connect(uris[dialect]) as conn:
        conn.create(schema, if_exists="replace")
        conn.upsert("named", batch)
        got = conn.describe("named")
        assert [(v.name, v.dim, v.metric) for v in got.vectors] == [
            ("text", 4, Metric.COSINE),
            ("image", 3, Metric.L2),
        ]
        assert "named" in conn.list_collections()
        hits, _ = conn.search("named", image[7:8].astype(np.float32), 1, vector_field="image")
        assert hits == [["r7"]]
        hits, _ = conn.search("named", text[9:10].astype(np.float32), 1, vector_field="text")
        assert hits == [["r9"]]
        back = conn.fetch("named", ["r3"])
        np.testing.assert_allclose(back.column("image").to_pylist()[0], image[3], rtol=1e-6)
        conn.drop("named")
        assert "named" not in conn.list_collections()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_langchain_style_index_is_copied_into_vecmigrate_layout(
    dialect: str, servers: dict[str, SearchServer], uris: dict[str, str], tmp_path: Path
) -> None:
    # LangChain's ElasticsearchStore/OpenSearchVectorSearch layout: text, vector, metadata{}.
    server = servers[dialect]
    with connect(uris[dialect]) as conn:
        client: Any = conn.client  # type: ignore[attr-defined]
        vec = (
            {"type": "dense_vector", "dims": 3, "similarity": "cosine"}
            if dialect == "elasticsearch"
            else {
                "type": "knn_vector",
                "dimension": 3,
                "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene"},
            }
        )
        mappings = {
            "properties": {
                "text": {"type": "text"},
                "vector": vec,
                "metadata": {"properties": {"source": {"type": "keyword"}}},
            }
        }
        if dialect == "elasticsearch":
            client.indices.create(index="lc", mappings=mappings)
        else:
            client.indices.create(
                index="lc", body={"settings": {"index.knn": True}, "mappings": mappings}
            )
        lines = []
        for i in range(60):
            doc = {
                "text": f"chunk {i}",
                "vector": [1.0, i / 10, 0.5],
                "metadata": {"source": f"f{i % 4}.pdf", "page": i},
            }
            lines += [json.dumps({"index": {"_index": "lc", "_id": f"u{i}"}}), json.dumps(doc)]
        client.bulk(body="\n".join(lines) + "\n", refresh="true")
    assert server.indexes["lc"].props["metadata"]["properties"]["page"]["type"] == "long"
    src_uri = uris[dialect] + "&document_field=text"
    with connect(src_uri) as src, connect(uris[dialect]) as dst:
        schema = src.describe("lc")
        assert schema.has_document and {(m.name, m.type) for m in schema.metadata} == {
            ("metadata", "json")
        }
        opts = CopyOptions(workers=1, batch_rows=25, job_path=tmp_path / "lc.sqlite")
        res = copy_collection(src, dst, "lc", target_collection="lc_copy", options=opts)
        assert res.rows_written == 60 and res.dead_letters == 0
        copied = dst.describe("lc_copy")
        assert "foreign" not in copied.engine_settings and len(dst.partitions("lc_copy", 4)) == 1
        row = dst.fetch("lc_copy", ["u5"]).to_pylist()[0]
        assert row["document"] == "chunk 5"
        assert json.loads(row["metadata"]["metadata"]) == {"source": "f1.pdf", "page": 5}
        assert collection_digest(src, "lc").compare(collection_digest(dst, "lc_copy")).equal
        dst.drop("lc_copy")
        dst.drop("lc")


def test_older_servers_es_9_0_and_opensearch_2_3(tmp_path: Path) -> None:
    """ES 9.0 has no ``_source.exclude_vectors`` (the connector must not send it);
    OpenSearch before 2.4 has no PIT API (a clear error, not a stack trace)."""
    es = SearchServer("elasticsearch", version="9.0.0")
    old_os = SearchServer("opensearch", version="2.3.0")
    try:
        schema = _schema("old")
        batch = build_batch(
            schema, ["a", "b"], {"vector": np.ones((2, 4), np.float32)}, metadata=[{"year": 1}] * 2
        )
        with connect(es.uri()) as conn:
            conn.create(schema)
            conn.upsert("old", batch)
            part = conn.partitions("old", 1)[0]
            got = [b for b, _ in conn.scan("old", part)]
            assert got[0].column("vector").to_pylist()[1] == [1.0] * 4
            assert len(conn.fetch("old", ["a"])) == 1
        with connect(old_os.uri()) as conn:
            conn.create(schema)
            conn.upsert("old", batch)
            with pytest.raises(ConfigError, match="point-in-time"):
                list(conn.scan("old", conn.partitions("old", 1)[0]))
    finally:
        es.stop()
        old_os.stop()


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1 (cert path, key path)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_https_with_a_private_ca(
    dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_module("cryptography")
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("VM_TLS_SECRET", SECRET)
    if dialect == "elasticsearch":
        server = SearchServer(dialect, api_key=SECRET, tls=(cert, key))
        auth = {"api_key": "env:VM_TLS_SECRET"}
    else:
        server = SearchServer(dialect, user="admin", password=SECRET, tls=(cert, key))
        auth = {"user": "admin", "password": "env:VM_TLS_SECRET"}
    try:
        schema = _schema("tls")
        batch = build_batch(
            schema, ["a"], {"vector": np.ones((1, 4), np.float32)}, metadata=[{"year": 1}]
        )
        with connect(server.uri(https="1", ca=cert, **auth)) as conn:
            conn.create(schema)
            conn.upsert("tls", batch)
            assert conn.count("tls") == 1
        # Without the CA the certificate is refused for good (not retried), with a hint.
        with connect(server.uri(https="1", **auth)) as conn, pytest.raises(TerminalError) as err:
            conn.count("tls")
        assert "TLS" in str(err.value) and "?ca=" in str(err.value)
    finally:
        server.stop()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_resume_in_a_new_pit_after_a_merge_has_no_duplicates(
    dialect: str, servers: dict[str, SearchServer], uris: dict[str, str]
) -> None:
    schema = _schema("merged")
    ids = [f"m{i:03d}" for i in range(100)]
    batch = build_batch(
        schema,
        ids,
        {"vector": np.ones((100, 4), np.float32)},
        metadata=[{"year": i} for i in range(100)],
    )
    with connect(uris[dialect]) as conn:
        conn.create(schema, if_exists="replace")
        conn.upsert("merged", batch)
        part = conn.partitions("merged", 1)[0]
        scan = conn.scan("merged", part, batch_rows=30)
        first, token = next(scan)
        scan.close()
        servers[dialect].merge("merged")  # the next PIT numbers documents differently
        rest = [x for b, _ in conn.scan("merged", part, token) for x in b.column("id").to_pylist()]
        got = first.column("id").to_pylist() + rest
        assert len(got) == 100 and sorted(got) == ids
        conn.drop("merged")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_immense_keyword_is_refused_naming_the_field(dialect: str, uris: dict[str, str]) -> None:
    schema = CollectionSchema(
        name="immense",
        vectors=(VectorField(dim=4),),
        metadata=(MetadataField(name="genre", type="string"),),
    )
    batch = build_batch(
        schema,
        ["ok", "huge"],
        {"vector": np.ones((2, 4), np.float32)},
        metadata=[{"genre": "news"}, {"genre": "é" * 20_000}],  # 40,000 UTF-8 bytes
    )
    with connect(uris[dialect]) as conn:
        conn.create(schema, if_exists="replace")
        with pytest.raises(DataError) as err:
            conn.upsert("immense", batch)
        assert err.value.record_id == "huge" and err.value.field == "genre"
        assert conn.count("immense") == 1
        conn.drop("immense")
