"""Pinecone bulk import from object storage: the connector stages a copy as Parquet in
Pinecone's import layout and imports it (or upserts, under the threshold) — the official
client over real HTTP against the Pinecone *protocol test double*
(``tests/protocol/pinecone_server.py``), which reads ``file://`` folders; not the service,
and not S3/GCS/Azure."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vecmigrate as vm
from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.connectors.pinecone import write_import_layout
from vecmigrate.connectors.pinecone._import import IMPORT_SCHEMA, MARKER
from vecmigrate.connectors.pinecone._records import index_url
from vecmigrate.errors import ConfigError, TerminalError
from vecmigrate.model import CollectionSchema, MetadataField, VectorField
from vecmigrate.pipeline import CopyOptions
from vecmigrate.records import build_batch
from vecmigrate.verify.digest import collection_digest

KEY = "pc-import-secret-5e2b"
ENV = "VECMIGRATE_E2E_PINECONE_IMPORT_KEY"
SPACES = ("", "team-a")


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    require_module("pinecone")
    from tests.protocol.pinecone_server import serving

    with serving(KEY, ENV) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_model_violations(server: Any) -> Iterator[None]:
    server.take_violations()
    server.import_delay = 0.05
    yield
    assert server.take_violations() == []


def uri(srv: Any, **params: Any) -> str:
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    return f"pinecone://?host={srv.url}&api_key=env:{ENV}{extra}"


def staged(tmp_path: Path, **params: Any) -> dict[str, Any]:
    """Import parameters: stage under tmp_path/stage, import from 1,000 rows, poll fast."""
    return {
        "import_uri": f"file://{tmp_path / 'stage'}",
        "import_min_rows": 1000,
        "import_poll": 0.02,
        **params,
    }


def _schema(name: str) -> CollectionSchema:
    return CollectionSchema(
        name=name,
        vectors=(VectorField(dim=8),),
        has_document=True,
        namespaces=SPACES,
        metadata=(
            MetadataField(name="n", type="int64"),
            MetadataField(name="ints", type="list<int64>"),
            MetadataField(name="tags", type="list<string>"),
            MetadataField(name="obj", type="json"),
        ),
    )


def _batch(schema: CollectionSchema, start: int, n: int) -> pa.RecordBatch:
    rng = np.random.default_rng(start)
    ids = [f"r{i:05d}" for i in range(start, start + n)]
    meta: list[dict[str, Any]] = [
        {"n": 2**40 + i, "ints": [i, -i], "tags": [f"t{i % 3}"], "obj": {"k": [i]}} if i % 5 else {}
        for i in range(start, start + n)
    ]
    return build_batch(
        schema,
        ids,
        {"vector": rng.normal(size=(n, 8)).astype(np.float32)},
        documents=[f"doc {i} é" if i % 7 else None for i in range(start, start + n)],
        metadata=meta,
        namespaces=[SPACES[i % 2] for i in range(start, start + n)],
    )


def _dump(tmp_path: Path, name: str, rows: int) -> Connector:
    schema = _schema(name)
    dump = connect(f"dump://{tmp_path / 'src'}")
    dump.create(schema)
    for start in range(0, rows, 1000):
        dump.upsert(name, _batch(schema, start, min(1000, rows - start)))
    dump.finalize(name)
    return dump


def _requests(server: Any, since: int, path: str) -> list[tuple[str, str, int, int]]:
    return [r for r in server.requests[since:] if r[1].startswith(path)]


def _stored(server: Any, index: str) -> dict[str, Any]:
    """What the double holds for an index, by namespace (for exact comparisons)."""
    idx = server.indexes[index]
    with idx.lock:
        return {ns: dict(recs) for ns, recs in idx.namespaces.items() if recs}


def test_a_large_copy_is_staged_in_the_import_layout_and_imported(
    server: Any, tmp_path: Path
) -> None:
    name = "imp-docs"
    dump = _dump(tmp_path, name, 2500)
    before = len(server.requests)
    target = uri(server, **staged(tmp_path))
    opts = CopyOptions(batch_rows=400, job_path=tmp_path / "job.sqlite")
    with connect(target) as pc:
        try:
            report = vm.copy(dump, pc, name, options=opts, verify="full")
            assert report.ok and report.verified, [c.to_json() for c in report.checks]
            assert report.result.rows_written == 2500
            # The import ran, not upserts: one start, polled to Completed.
            assert not _requests(server, before, "/vectors/upsert")
            starts = [r for r in _requests(server, before, "/bulk/imports") if r[0] == "POST"]
            polls = [r for r in _requests(server, before, "/bulk/imports/") if r[0] == "GET"]
            assert len(starts) == 1 and starts[0][2] == 200 and len(polls) >= 2
            ops = list(pc._index(name).list_imports())  # type: ignore[attr-defined]
            assert [(o.status, o.records_imported) for o in ops] == [("Completed", 2500)]
            assert ops[0].uri == f"file://{tmp_path / 'stage' / name}"
            # The documented layout: <uri>/<namespace>/*.parquet, __default__ for "".
            root = tmp_path / "stage" / name
            assert sorted(p.name for p in root.iterdir()) == ["__default__", "team-a"]
            rows = {"__default__": 0, "team-a": 0}
            for ns in rows:
                for f in sorted((root / ns).iterdir()):
                    assert f.suffix == ".parquet"
                    table = pq.read_table(f)
                    assert table.schema.names == ["id", "values", "metadata"]
                    assert table.schema.field("id").type == pa.string()
                    assert table.schema.field("values").type.value_type == pa.float32()
                    assert table.schema.field("metadata").type == pa.string()
                    assert table.schema.equals(IMPORT_SCHEMA)
                    for md in table.column("metadata").to_pylist():
                        assert md is None or isinstance(json.loads(md), dict)
                    rows[ns] += table.num_rows
            assert rows == {"__default__": 1250, "team-a": 1250}
            assert not (root / MARKER).exists()  # staging is over; the files stay
            # Identical to what upserts write: the same copy without import_uri.
            with connect(uri(server)) as plain:
                opts = CopyOptions(job_path=tmp_path / "b.sqlite")
                vm.copy(dump, plain, name, target_collection="imp-upserted", options=opts)
            assert _stored(server, name) == _stored(server, "imp-upserted")
        finally:
            pc.drop(name)
            pc.drop("imp-upserted")


def test_below_the_threshold_or_without_import_uri_the_copy_upserts(
    server: Any, tmp_path: Path
) -> None:
    name = "imp-small"
    dump = _dump(tmp_path, name, 600)
    for params, job in ((staged(tmp_path), "a"), ({}, "b")):
        before = len(server.requests)
        with connect(uri(server, **params)) as pc:
            try:
                opts = CopyOptions(batch_rows=200, job_path=tmp_path / f"{job}.sqlite")
                report = vm.copy(dump, pc, name, options=opts, verify="full")
                assert report.ok and report.verified
                upserts = _requests(server, before, "/vectors/upsert")
                assert upserts and all(r[2] == 200 for r in upserts)
                assert not _requests(server, before, "/bulk/imports")
                assert pc.count(name) == 600
            finally:
                pc.drop(name)
    # Under the threshold the staged files were only a buffer: nothing is left of them.
    root = tmp_path / "stage" / name
    assert root.is_dir() and not list(root.rglob("*.parquet")) and not (root / MARKER).exists()


def test_a_staged_load_survives_a_new_connection_and_a_slow_import(
    server: Any, tmp_path: Path
) -> None:
    """A resumed job (or another worker process) stages too, found by the marker; an
    import past the timeout is followed, not restarted, on the next finalize."""
    name = "imp-resume"
    schema = _schema(name)
    params = staged(tmp_path, import_min_rows=500, import_timeout=0.1)
    with connect(uri(server, **params)) as first:
        first.create(schema)
        first.begin_bulk_load(name)
        first.upsert(name, _batch(schema, 0, 300))
    before = len(server.requests)
    server.import_delay = 0.5
    try:
        with connect(uri(server, **params)) as second:
            second.upsert(name, _batch(schema, 300, 300))
            second.upsert(name, _batch(schema, 300, 300))  # re-sent: replaces its files
            files = list((tmp_path / "stage" / name).rglob("*.parquet"))
            assert sum(pq.read_metadata(f).num_rows for f in files) == 600
            with pytest.raises(ConfigError, match="is staged"):
                second.delete(name, ["r00001"])
            assert not _requests(server, before, "/vectors/upsert")
            with pytest.raises(TerminalError, match="still") as err:
                second.finalize(name)
            assert "imp-resume" in str(err.value) and "--resume" in (err.value.hint or "")
        server.import_delay = 0.05
        with connect(uri(server, **staged(tmp_path, import_min_rows=500))) as third:
            third.finalize(name)
            starts = [r for r in _requests(server, before, "/bulk/imports") if r[0] == "POST"]
            assert len(starts) == 1  # the same import, followed to its end
            assert third.count(name) == 600
            want = connect(f"dump://{tmp_path / 'want'}")
            want.create(schema)
            want.upsert(name, _batch(schema, 0, 300))
            want.upsert(name, _batch(schema, 300, 300))
            want.finalize(name)
            assert collection_digest(want, name).compare(collection_digest(third, name)).equal
    finally:
        server.import_delay = 0.05
        with connect(uri(server)) as c:
            c.drop(name)


def test_an_invalid_layout_fails_the_import_with_a_typed_error(server: Any, tmp_path: Path) -> None:
    name = "imp-bad"
    schema = _schema(name)
    params = staged(tmp_path, import_min_rows=10)
    with connect(uri(server, **params)) as pc:
        try:
            pc.create(schema)
            pc.begin_bulk_load(name)
            pc.upsert(name, _batch(schema, 0, 50))
            # A file in the layout whose vectors are float64, not LIST<FLOAT>.
            bad = pa.table({"id": ["x1"], "values": [[0.5] * 8]})
            pq.write_table(bad, tmp_path / "stage" / name / "team-a" / "vecmigrate-bad.parquet")
            with pytest.raises(TerminalError) as err:
                pc.finalize(name)
            msg = str(err.value)
            assert "index 'imp-bad'" in msg and "'team-a'" in msg and "failed" in msg
            assert "column 'values' must be LIST<FLOAT>" in msg
            assert "--if-exists replace" in (err.value.hint or "")
            assert pc.count(name) == 0  # abort: nothing imported
        finally:
            pc.drop(name)
    assert not list((tmp_path / "stage" / name).rglob("*.parquet"))  # drop cleared them


def test_records_pinecone_refuses_are_dead_lettered_when_staging_too(
    server: Any, tmp_path: Path
) -> None:
    name = "imp-dead"
    schema = _schema(name)
    batch = _batch(schema, 0, 60)
    docs = batch.column("document").to_pylist()
    docs[7] = "x" * 45_000  # over Pinecone's 40 KB of metadata
    batch = batch.set_column(batch.schema.get_field_index("document"), "document", pa.array(docs))
    dump = connect(f"dump://{tmp_path / 'src'}")
    dump.create(schema)
    dump.upsert(name, batch)
    dump.finalize(name)
    before = len(server.requests)
    opts = CopyOptions(job_path=tmp_path / "job.sqlite", dead_letter_dir=tmp_path / "dead")
    with connect(uri(server, **staged(tmp_path, import_min_rows=10))) as pc:
        try:
            report = vm.copy(dump, pc, name, options=opts, verify="full")
            assert (report.result.rows_written, report.result.dead_letters) == (59, 1)
            dead = pq.read_table(tmp_path / "dead").to_pylist()
            assert [(r["id"], r["_field"]) for r in dead] == [("r00007", "document")]
            assert not _requests(server, before, "/vectors/upsert")
            assert pc.count(name) == 59
        finally:
            pc.drop(name)


def test_write_import_layout_alone_then_the_users_own_import(server: Any, tmp_path: Path) -> None:
    """``write_import_layout`` + the official client's import calls, as a user runs them;
    the double's checks and error shapes on files that break the documented schema."""
    from pinecone import Pinecone

    name = "imp-own"
    dump = _dump(tmp_path, name, 700)
    schema = dump.describe(name)
    batches = (b for p in dump.partitions(name, 2) for b, _ in dump.scan(name, p))
    layout = write_import_layout(batches, schema, f"file://{tmp_path / 'own'}")
    assert layout.namespaces == {"": 350, "team-a": 350} and layout.files >= 2
    pc = Pinecone(api_key=KEY, host=server.url)
    with connect(uri(server)) as conn:
        try:
            conn.create(schema)
            idx = pc.index(host=index_url(pc.indexes.describe(name).host, server.url))
            op = idx.start_import(uri=layout.uri, error_mode="abort")
            got = _wait(idx, op.id)
            assert (got.status, got.records_imported, got.percent_complete) == (
                "Completed", 700, 100.0)  # fmt: skip
            assert collection_digest(dump, name).compare(collection_digest(conn, name)).equal
            # Importing again into the namespaces now there fails, as documented.
            again = idx.start_import(uri=layout.uri)
            assert (
                _wait(idx, again.id).error
                == "The default namespace must be empty to import into it"
            )
        finally:
            conn.drop(name)

        # Files that break the documented schema: the import fails, naming file and reason.
        def vec(n: int = 1) -> pa.Array:
            return pa.array([[1.0] * 8] * n, pa.list_(pa.float32()))

        cases = {
            "missing-id": (pa.table({"values": [[1.0] * 8]}), "missing required column 'id'"),
            "json": (pa.table({"id": ["a", "b"], "values": vec(2),
                               "metadata": ["{not json", '{"k":"v"}']}),
                     "record 0: Metadata of vector a is not valid JSON"),
            "big": (pa.table({"id": ["a"], "values": vec(),
                              "metadata": [json.dumps({"t": "x" * 41_000})]}),
                    "exceeds the limit"),
            "meta-type": (pa.table({"id": ["a"], "values": vec(),
                                    "metadata": pa.array([{"k": 1}])}),
                          "column 'metadata' must be STRING"),
            "sparse-type": (pa.table({"id": ["a"], "values": vec(), "sparse_values": pa.array(
                [{"indices": [1], "values": [0.5]}])}),  # int64 indices, float64 values
                            "column 'sparse_values' must be STRUCT<indices: LIST<UINT32>"),
            "dimension": (pa.table({"id": ["a"], "values": pa.array([[1.0] * 4],
                                                                    pa.list_(pa.float32()))}),
                          "record 0: Vector dimension 4 does not match"),
        }  # fmt: skip
        conn.create(schema.replace(name="imp-own-bad", namespaces=None))
        try:
            idx = pc.index(host=index_url(pc.indexes.describe("imp-own-bad").host, server.url))
            for case, (table, error) in cases.items():
                folder = tmp_path / "bad" / case / "ns1"
                folder.mkdir(parents=True)
                pq.write_table(table, folder / "0.parquet")
                (folder / "notes.log").write_text("ignored: not .parquet")
                got = _wait(idx, idx.start_import(uri=f"file://{folder.parent}").id)
                assert got.status == "Failed" and error in (got.error or ""), (case, got.error)
                assert got.error and got.error.startswith("ns1/0.parquet")
            # error_mode=continue skips the bad record instead.
            ok = _wait(idx, idx.start_import(uri=f"file://{tmp_path / 'bad' / 'json'}",
                                             error_mode="continue").id)  # fmt: skip
            assert (ok.status, ok.records_imported) == ("Completed", 1)
            assert conn.count("imp-own-bad") == 1
            # A documented sparse_values column is read (and a namespace that now exists
            # refused: ns1 was just imported into).
            sparse = pa.StructArray.from_arrays(
                [pa.array([[3]], pa.list_(pa.uint32())), pa.array([[0.5]], pa.list_(pa.float32()))],
                names=["indices", "values"],
            )
            for folder_name, want in (("ns2", "Completed"), ("ns1", "Failed")):
                folder = tmp_path / "sparse" / folder_name
                folder.mkdir(parents=True)
                pq.write_table(pa.table({"id": ["s"], "values": vec(), "sparse_values": sparse}),
                               folder / "0.parquet")  # fmt: skip
                got = _wait(idx, idx.start_import(uri=f"file://{folder.parent}").id)
                assert got.status == want, got.error
                if want == "Failed":
                    assert (
                        got.error == "Namespace ns1 already exists; import only into new namespaces"
                    )
                (folder / "0.parquet").unlink()
            assert conn.count("imp-own-bad") == 2
            # cancel_import stops an import still running: nothing of it is written.
            server.import_delay = 0.3
            folder = tmp_path / "sparse" / "ns3"
            folder.mkdir()
            pq.write_table(pa.table({"id": ["c"], "values": vec()}), folder / "0.parquet")
            running = idx.start_import(uri=f"file://{folder.parent}")
            idx.cancel_import(running.id)
            got = _wait(idx, running.id)
            assert (got.status, got.records_imported) == ("Cancelled", None)
            time.sleep(0.7)  # past the point the import would have written its records
            assert conn.count("imp-own-bad") == 2
            statuses = [o.status for o in idx.list_imports(limit=2)]  # pages of 2
            assert statuses == ["Failed"] * len(cases) + ["Completed"] * 2 + ["Failed"] + [
                "Cancelled"
            ]
        finally:
            conn.drop("imp-own-bad")


def _wait(idx: Any, import_id: str) -> Any:
    """Poll an import to its end (the double takes ~0.1 s; 10 s means it hangs)."""
    deadline = time.monotonic() + 10
    got = idx.describe_import(import_id)
    while got.status not in ("Completed", "Failed", "Cancelled"):
        assert time.monotonic() < deadline, f"import {import_id} still {got.status}"
        time.sleep(0.01)
        got = idx.describe_import(import_id)
    return got


def test_the_import_model_refuses_bodies_the_api_does_not_have() -> None:
    """The validator the double checks its import bodies with is not a rubber stamp."""
    require_module("pinecone")
    from tests.protocol.pinecone_model import request_violations, response_violations

    assert request_violations({"uri": "s3://b/p", "errorMode": {"onError": "abort"}}) == []
    assert request_violations({"uri": "s3://b/p", "errorMode": {"onError": "skip"}})
    assert request_violations({"uri": "", "integrationId": "x"})
    assert request_violations({"uri": "s3://b/p", "bucket": "b"})
    good = {"id": "1", "uri": "s3://b/p", "status": "Pending", "createdAt": "2026-01-01T00:00Z"}
    assert response_violations("describe", good) == []
    assert response_violations("describe", {**good, "status": "Done"})
    assert response_violations("describe", {**good, "percent": 3.0})
    assert response_violations("describe", {**good, "percentComplete": 101.0})
    assert response_violations("start", {"id": 1})
    assert response_violations("list", {"data": [good], "next": "t"})
    assert response_violations("list", {"data": [good], "pagination": {"next": "t"}}) == []
