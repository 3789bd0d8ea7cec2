"""Pinecone beyond the shared suite: retries, dead letters, namespaces, limits, pod indexes,
the stored schema, secrets and the CLI — the official client over real HTTP against the
Pinecone *protocol test double* (``tests/protocol/pinecone_server.py``), not the service."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import json_of, make_dump, run_cli
from vecmigrate.connectors import Connector, connect
from vecmigrate.connectors.pinecone._records import index_url
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError
from vecmigrate.model import CollectionSchema, MetadataField, VectorField
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.records import build_batch, metadata_rows
from vecmigrate.retry import RetryPolicy
from vecmigrate.verify.digest import collection_digest

KEY = "pc-e2e-secret-7f3a9c1d"
ENV = "VECMIGRATE_E2E_PINECONE_KEY"
FAST = RetryPolicy(attempts=6, base_seconds=0.01, max_seconds=0.05)


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    require_module("pinecone")
    from tests.protocol.pinecone_server import serving

    with serving(KEY, ENV) as srv:
        yield srv


def uri(srv: Any, index: str = "", **params: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    return f"pinecone://{index}?host={srv.url}&api_key=env:{ENV}{extra}"


@pytest.fixture(autouse=True)
def _own_failures(server: Any) -> Iterator[None]:
    """Injected failures never outlive the test that injected them (the server is shared
    by the module); one the test left unconsumed means it did not test what it meant to."""
    server.clear_failures()
    yield
    left = server.clear_failures()
    assert not left, f"injected failures left unconsumed: {left}"


@contextlib.contextmanager
def _on_pipeline_retries(logger: str, *steps: Callable[[], None]) -> Iterator[list[str]]:
    """Run ``steps[i]`` when the pipeline logs its (i+1)-th retry warning on ``logger``.

    A failure injected "until cleared" and cleared here has, by construction, outlasted
    the official client's own retries — however many the client makes: its count (3 by
    default) is throttled by a process-wide retry budget per host name, shared by every
    127.0.0.1 double, so it depends on what ran earlier in the process."""
    seen: list[str] = []

    class Hook(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())
            if len(seen) <= len(steps):
                steps[len(seen) - 1]()

    log, hook = logging.getLogger(logger), Hook(logging.WARNING)
    level = log.level
    log.setLevel(logging.WARNING)
    log.addHandler(hook)
    try:
        yield seen
    finally:
        log.removeHandler(hook)
        log.setLevel(level)


@pytest.fixture(scope="module")
def conn(server: Any) -> Iterator[Connector]:
    c = connect(uri(server))
    yield c
    c.close()


def _schema(name: str, dim: int = 8, namespaces: tuple[str, ...] | None = None) -> CollectionSchema:
    return CollectionSchema(
        name=name,
        vectors=(VectorField(dim=dim),),
        has_document=True,
        namespaces=namespaces,
        metadata=(
            MetadataField(name="n", type="int64"),
            MetadataField(name="ints", type="list<int64>"),
            MetadataField(name="obj", type="json"),
        ),
    )


def _batch(schema: CollectionSchema, ids: list[Any], seed: int = 0, **kw: Any) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    meta = [{"n": 2**40 + i, "ints": [i, -i], "obj": {"k": [i]}} for i in range(len(ids))]
    return build_batch(
        schema,
        ids,
        {"vector": rng.normal(size=(len(ids), schema.vector.dim)).astype(np.float32)},
        documents=kw.pop("documents", [f"doc {i}" for i in range(len(ids))]),
        metadata=kw.pop("metadata", meta),
        **kw,
    )


def _raw_index(pc: Any, name: str, server: Any) -> Any:
    """The official client on an index of the double. Never ``pc.index(name=...)``: the
    double describes bare hosts, as the API does, which the client would dial as https."""
    return pc.index(host=index_url(pc.indexes.describe(name).host, server.url))


def _dump_with(tmp_path: Path, schema: CollectionSchema, batch: pa.RecordBatch) -> Connector:
    dump = connect(f"dump://{tmp_path / 'src'}")
    dump.create(schema)
    dump.upsert(schema.name, batch)
    dump.finalize(schema.name)
    return dump


def test_transient_429_and_5xx_are_retried_without_loss(
    server: Any, conn: Connector, tmp_path: Path
) -> None:
    schema = _schema("retry-target")
    dump = _dump_with(tmp_path, schema, _batch(schema, [f"r{i}" for i in range(600)]))
    before = len(server.requests)
    # 429 until the pipeline retries (so past the client's own retries), then 503 until it
    # retries again, then nothing: exactly two pipeline retries, whatever the client does.
    server.fail(429, times=None, path="/vectors/upsert", after=1)

    def to_503() -> None:
        server.clear_failures()
        server.fail(503, times=None, path="/vectors/upsert")

    opts = CopyOptions(batch_rows=150, job_path=tmp_path / "job.sqlite", retry=FAST, workers=1)
    try:
        with _on_pipeline_retries("vecmigrate.retry", to_503, server.clear_failures) as seen:
            result = copy_collection(dump, conn, schema.name, options=opts)
        assert result.rows_written == 600 and result.dead_letters == 0
        assert len(seen) == 2 and result.retries == 2
        assert "HTTP 429" in seen[0] and "HTTP 503" in seen[1]
        statuses = [r[2] for r in server.requests[before:] if r[1] == "/vectors/upsert"]
        assert statuses.count(429) >= 1 and statuses.count(503) >= 1
        assert set(statuses) == {200, 429, 503} and statuses.count(200) == 4  # 600 / 150
        assert conn.count(schema.name) == 600
        assert (
            collection_digest(dump, schema.name).compare(collection_digest(conn, schema.name)).equal
        )
    finally:
        conn.drop(schema.name)


def test_read_failures_past_the_client_retries_resume_from_the_token(
    server: Any, conn: Connector, tmp_path: Path
) -> None:
    schema = _schema("resume-source")
    conn.create(schema)
    try:
        conn.upsert(schema.name, _batch(schema, [f"s{i:04d}" for i in range(700)]))
        # One fetch per batch of 100 ids: the scan fails on its 4th batch, past the client's
        # retries, until the pipeline restarts it from the last token handed over.
        server.fail(500, times=None, path="/vectors/fetch", after=3)
        opts = CopyOptions(batch_rows=100, job_path=tmp_path / "a.sqlite", workers=1, retry=FAST)
        out = connect(f"dump://{tmp_path / 'a'}")
        with _on_pipeline_retries("vecmigrate.copy", server.clear_failures) as seen:
            result = copy_collection(conn, out, schema.name, options=opts)
        assert len(seen) == 1 and "HTTP 500" in seen[0]
        assert result.rows_written == 700  # restarted from the token: nothing read twice
        assert (
            collection_digest(conn, schema.name).compare(collection_digest(out, schema.name)).equal
        )
        # Failing past the pipeline's retries too: the copy stops, --resume finishes it.
        server.fail(500, times=None, path="/vectors/fetch", after=3)
        out = connect(f"dump://{tmp_path / 'b'}")
        opts = CopyOptions(batch_rows=100, job_path=tmp_path / "b.sqlite", workers=1,
                           retry=RetryPolicy(attempts=2, base_seconds=0.01))  # fmt: skip
        with pytest.raises(TransientError, match="HTTP 500"):
            copy_collection(conn, out, schema.name, options=opts)
        assert server.clear_failures() == [(500, "/vectors/fetch", 0, None)]
        opts.resume = True
        result = copy_collection(conn, out, schema.name, options=opts)
        assert result.resumed and 0 < result.rows_written < 700
        assert (
            collection_digest(conn, schema.name).compare(collection_digest(out, schema.name)).equal
        )
    finally:
        conn.drop(schema.name)


def test_metadata_over_40kb_is_dead_lettered_by_name(
    server: Any, conn: Connector, tmp_path: Path
) -> None:
    schema = _schema("too-big")
    docs = [f"doc {i}" for i in range(50)]
    docs[7] = "x" * 45_000
    dump = _dump_with(
        tmp_path, schema, _batch(schema, [f"b{i:02d}" for i in range(50)], documents=docs)
    )
    opts = CopyOptions(job_path=tmp_path / "job.sqlite", dead_letter_dir=tmp_path / "dead")
    try:
        result = copy_collection(dump, conn, schema.name, options=opts)
        assert (result.rows_written, result.dead_letters) == (49, 1)
        dead = pq.read_table(tmp_path / "dead").to_pylist()
        assert [(r["id"], r["_field"]) for r in dead] == [("b07", "document")]
        assert "40,960" in dead[0]["_reason"]
        assert conn.count(schema.name) == 49
    finally:
        conn.drop(schema.name)


def test_the_server_itself_refuses_what_pinecone_refuses(server: Any) -> None:
    """The double enforces the limits the connector must respect (so they are tested)."""
    from pinecone import Pinecone
    from pinecone.errors.exceptions import ApiError

    pc = Pinecone(api_key=KEY, host=server.url)
    server.create_index("raw", 4, "cosine", {"deployment_type": "managed", "cloud": "aws",
                                            "region": "us-east-1"})  # fmt: skip
    idx = _raw_index(pc, "raw", server)
    cases = [
        ([{"id": "a", "values": [1.0, 0, 0, 0], "metadata": {"t": "x" * 41_000}}], 400),
        ([{"id": "a", "values": [1.0, 0, 0]}], 400),
        ([{"id": "a", "values": [0.0, 0, 0, 0]}], 400),
        ([{"id": f"i{i}", "values": [1.0, 0, 0, 0]} for i in range(1001)], 400),
        ([{"id": f"i{i}", "values": [0.123456789] * 4, "metadata": {"t": "y" * 30_000}}
          for i in range(80)], 413),
    ]  # fmt: skip
    for vectors, status in cases:
        with pytest.raises(ApiError) as err:
            idx.upsert(vectors=vectors)
        assert err.value.status_code == status
    assert idx.describe_index_stats().total_vector_count == 0
    # $ne / $nin also match records lacking the field here (MongoDB's reading; Pinecone
    # does not say), which is why the connector adds an $exists guard.
    idx.upsert(vectors=[{"id": "has", "values": [1.0, 0, 0, 0], "metadata": {"g": "a"}},
                        {"id": "lacks", "values": [1.0, 0, 0, 0]}])  # fmt: skip
    got = idx.query(vector=[1.0, 0, 0, 0], top_k=5, filter={"g": {"$ne": "b"}})
    assert sorted(m.id for m in got.matches) == ["has", "lacks"]
    pc.indexes.delete("raw")


def test_namespaces_round_trip(server: Any, conn: Connector, tmp_path: Path) -> None:
    spaces = ("", "team-a", "team-b")
    schema = _schema("with-ns", namespaces=spaces)
    ids = [f"n{i:03d}" for i in range(90)] + ["shared", "shared"]
    ns = [spaces[i % 3] for i in range(90)] + ["team-a", "team-b"]
    conn.create(schema)
    restored = "with-ns-restored"
    try:
        conn.upsert(schema.name, _batch(schema, ids, namespaces=ns))
        got = conn.describe(schema.name)
        assert got.namespaces == spaces
        assert conn.count(schema.name) == 92
        assert conn.count(schema.name, {"obj": {"$exists": True}}) == 92
        assert len(conn.partitions(schema.name, 8)) == 3
        both = conn.fetch(schema.name, ["shared"])
        assert sorted(both.column("namespace").to_pylist()) == ["team-a", "team-b"]
        # Pinecone ids are unique per namespace; vecmigrate's (dumps, digests) per
        # collection, so a dump refuses the pair: delete removes it from every namespace.
        conn.delete(schema.name, ["shared"])
        assert conn.count(schema.name) == 90
        # Pinecone -> dump -> another index, namespaces kept per record.
        dump = connect(f"dump://{tmp_path / 'dump'}")
        copy_collection(conn, dump, schema.name, options=CopyOptions(job_path=tmp_path / "e"))
        copy_collection(
            dump, conn, schema.name, target_collection=restored,
            options=CopyOptions(job_path=tmp_path / "i"),
        )  # fmt: skip
        a, b = collection_digest(conn, schema.name), collection_digest(conn, restored)
        assert a.compare(collection_digest(dump, schema.name)).equal and a.compare(b).equal
        assert conn.describe(restored).namespaces == spaces
        # One namespace seen as a flat collection.
        with connect(uri(server, namespace="team-a")) as only_a:
            flat = only_a.describe(schema.name)
            assert flat.namespaces is None
            assert only_a.count(schema.name) == 30
            hits, _ = only_a.search(schema.name, np.ones((2, 8), dtype=np.float32), 50)
            assert {h for row in hits for h in row} == set(ids[1:90:3])
            assert only_a.count(schema.name, {"n": {"$gte": 2**40 + 45}}) == 15
            # A collection without namespaces written through it lands in team-a only.
            flat_schema = _schema("flat-into-ns")
            only_a.create(flat_schema)
            only_a.upsert(flat_schema.name, _batch(flat_schema, ["f1", "f2"]))
            assert conn.describe(flat_schema.name).namespaces == ("team-a",)
            only_a.drop(flat_schema.name)
            with pytest.raises(ConfigError, match="scoped to namespace"):
                only_a.create(schema.replace(name="x-ns"))
        with connect(uri(server, "one-index")) as scoped:
            assert scoped.list_collections() == []
            with pytest.raises(ConfigError, match="scoped to index"):
                scoped.create(_schema("another-index"))
    finally:
        conn.drop(schema.name)
        conn.drop(restored)


def test_pod_based_index_is_refused_for_scans_unless_ids_are_supplied(
    server: Any, conn: Connector, tmp_path: Path
) -> None:
    server.create_index("pods", 8, "dotproduct", {
        "deployment_type": "pod", "environment": "us-east1-gcp", "pod_type": "p1.x1",
        "replicas": 1, "shards": 1})  # fmt: skip
    try:
        schema = conn.describe("pods")
        assert schema.engine_settings["deployment"] == "pod"
        with pytest.raises(ConfigError, match="pod-based") as err:
            conn.partitions("pods", 2)
        assert "ids_file" in (err.value.hint or "")
        # Writes and reads by id work on pods; a user-supplied id list makes it scannable.
        conn.upsert("pods", _batch(schema, [f"p{i}" for i in range(30)]))
        ids = tmp_path / "ids.txt"
        ids.write_text("".join(f"p{i}\n" for i in range(25)) + "missing\n\tp29\n")
        with connect(uri(server, "pods", ids_file=str(ids))) as by_ids:
            out = connect(f"dump://{tmp_path / 'out'}")
            opts = CopyOptions(batch_rows=7, job_path=tmp_path / "job.sqlite")
            result = copy_collection(by_ids, out, "pods", options=opts)
        assert result.rows_written == 26
        got = out.fetch("pods", [f"p{i}" for i in range(30)])
        assert sorted(got.column("id").to_pylist()) == sorted(
            [f"p{i}" for i in range(25)] + ["p29"]
        )
    finally:
        conn.drop("pods")


def test_types_ids_and_names_round_trip(conn: Connector) -> None:
    name = "Odd_Name/élan"  # not a valid index name: sanitised, original kept in the schema
    schema = _schema(name)
    ids = ["plain", "~u:looks-escaped", "naïve/ü", "x" * 400]
    conn.create(schema)
    try:
        assert name in conn.list_collections()
        conn.upsert(name, _batch(schema, ids))
        got = conn.fetch(name, ids)
        assert sorted(got.column("id").to_pylist()) == sorted(ids)
        rows = {r: m for r, m in zip(got.column("id").to_pylist(), metadata_rows(got, schema),
                                     strict=True)}  # fmt: skip
        assert rows["naïve/ü"] == {"n": 2**40 + 2, "ints": [2, -2], "obj": {"k": [2]}}
        assert type(rows["plain"]["n"]) is int
        assert conn.count(name, {"ints": -2}) == 1
        assert conn.count(name, {"$not": {"ints": {"$in": [1, 3]}}}) == 2
        with pytest.raises(DataError, match="characters") as err:
            conn.upsert(name, _batch(schema, ["é" * 200]))
        assert err.value.field == "id"
        huge = _batch(schema, ["big"], metadata=[{"n": 2**60}])
        with pytest.raises(DataError, match="float64") as err:
            conn.upsert(name, huge)
        assert err.value.field == "n"
    finally:
        conn.drop(name)


def test_schema_too_large_for_tags_lives_in_a_reserved_namespace(conn: Connector) -> None:
    # High-entropy names: the compressed schema cannot fit in 18 tags of 120 characters.
    fields = tuple(
        MetadataField(name=hashlib.sha256(str(i).encode()).hexdigest()[:24], type="string")
        for i in range(300)
    )
    schema = CollectionSchema(name="wide", vectors=(VectorField(dim=4),), metadata=fields)
    conn.create(schema)
    try:
        conn.upsert("wide", _batch(schema, ["a", "b"], metadata=[{fields[5].name: "v"}, {}]))
        tags = conn.client.indexes.describe("wide").tags  # type: ignore[attr-defined]
        assert tags == {"vecmigrate-schema": "namespace:__vecmigrate_schema__"}
        fresh = connect(str(conn.uri.raw))
        got = fresh.describe("wide")
        assert [f.name for f in got.metadata] == [f.name for f in fields]
        assert fresh.count("wide") == 2 and got.namespaces is None
        ids = [i for p in fresh.partitions("wide", 4) for b, _ in fresh.scan("wide", p)
               for i in b.column("id").to_pylist()]  # fmt: skip
        assert sorted(ids) == ["a", "b"]
        fresh.close()
    finally:
        conn.drop("wide")


def test_large_vectors_are_split_under_the_request_limit(server: Any, conn: Connector) -> None:
    schema = _schema("wide-vectors", dim=1536)
    conn.create(schema)
    before = len(server.requests)
    try:
        conn.upsert(schema.name, _batch(schema, [f"w{i}" for i in range(300)]))
        upserts = [r for r in server.requests[before:] if r[1] == "/vectors/upsert"]
        assert len(upserts) > 1 and all(r[2] == 200 for r in upserts)
        assert max(r[3] for r in upserts) <= 2 * 1024 * 1024
        assert conn.count(schema.name) == 300
    finally:
        conn.drop(schema.name)


def test_a_wrong_key_fails_without_revealing_keys(server: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("WRONG_PC_KEY", "not-the-key-42")
    with (
        connect(uri(server).replace(ENV, "WRONG_PC_KEY")) as bad,
        pytest.raises(TerminalError, match="401") as err,
    ):
        bad.list_collections()
    assert "not-the-key-42" not in str(err.value) and KEY not in str(err.value)


def test_cli_import_then_export(server: Any, tmp_path: Path) -> None:
    make_dump(tmp_path / "src", 1200, dim=32)
    target = uri(server, "docs")
    imported = run_cli("import", str(tmp_path / "src"), target, "--json", "-v", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert json_of(imported)["rows_written"] == 1200
    exported = run_cli("export", target, "-o", str(tmp_path / "out"), "--json", "-v",
                       cwd=tmp_path)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    inspected = run_cli("inspect", target, "--json", cwd=tmp_path)
    row = json_of(inspected)["collections"][0]
    assert row["name"] == "docs" and row["count"] == 1200
    for proc in (imported, exported, inspected):
        assert KEY not in proc.stdout + proc.stderr
    for f in (tmp_path / "out").rglob("*"):
        if f.is_file() and f.suffix == ".json":
            assert KEY not in f.read_text()
    src, out = connect(f"dump://{tmp_path / 'src'}"), connect(f"dump://{tmp_path / 'out'}")
    assert collection_digest(src, "docs").compare(collection_digest(out, "docs")).equal
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["collections"]
    with connect(target) as c:
        c.drop("docs")


def test_index_written_by_another_tool_is_described_from_samples(
    server: Any, tmp_path: Path
) -> None:
    from pinecone import Pinecone

    pc = Pinecone(api_key=KEY, host=server.url)
    pc.indexes.create(
        name="foreign",
        schema={"fields": {"_values": {"type": "dense_vector", "dimension": 4,
                                       "metric": "euclidean"}}},
        deployment={"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"},
    )  # fmt: skip
    idx = _raw_index(pc, "foreign", server)
    vectors = [
        {"id": f"f{i}", "values": [float(i + 1), 0.5, 0.0, 1.0],
         "metadata": {"text": f"chunk {i}", "page": i, "lang": ["en"], "ok": i % 2 == 0}}
        for i in range(12)
    ]  # fmt: skip
    idx.upsert(vectors=vectors[:6], namespace="docs")
    idx.upsert(vectors=vectors[6:])
    with connect(uri(server, document_field="text")) as c:
        schema = c.describe("foreign")
        assert schema.vector.metric.value == "l2" and schema.vector.dim == 4
        assert schema.has_document and schema.namespaces == ("", "docs")
        types = {m.name: m.type for m in schema.metadata}
        assert types == {"page": "float64", "lang": "list<string>", "ok": "bool"}
        rows = [b for p in c.partitions("foreign", 2) for b, _ in c.scan("foreign", p)]
        table = pa.Table.from_batches(rows)
        assert table.num_rows == 12
        assert sorted(table.column("document").to_pylist()) == sorted(
            f"chunk {i}" for i in range(12)
        )
        assert c.count("foreign", {"page": {"$lt": 3}}) == 3
        # Nearest first across both namespaces (euclidean: lower scores are nearer).
        hits, scores = c.search("foreign", np.array([[6.2, 0.5, 0.0, 1.0]], np.float32), 3)
        assert hits[0] == ["f5", "f6", "f4"] and scores[0] == sorted(scores[0])
        c.drop("foreign")


def test_filtered_count_past_the_query_cap_counts_exactly(
    conn: Connector, monkeypatch: Any
) -> None:
    import vecmigrate.connectors.pinecone as pinecone_connector

    schema = _schema("count-cap", namespaces=("", "x"))
    conn.create(schema)
    try:
        ids = [f"c{i}" for i in range(40)]
        conn.upsert(schema.name, _batch(schema, ids, namespaces=["", "x"] * 20))
        flt = {"$not": {"n": {"$in": [2**40 + 1, 2**40 + 2]}}}
        want = conn.count(schema.name, flt)
        monkeypatch.setattr(pinecone_connector, "MAX_TOP_K", 5)  # every namespace hits the cap
        assert want == 38 and conn.count(schema.name, flt) == 38
    finally:
        conn.drop(schema.name)
