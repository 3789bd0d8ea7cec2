"""sync against real engines: generic (digests) and change-feed (pgvector triggers) modes,
--watch through the CLI, and a crash mid-sync that must not lose changes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import VECMIGRATE, json_of, run_cli
from tests.faults import FaultyTarget
from vecmigrate.connectors import Connector, connect
from vecmigrate.errors import TransientError
from vecmigrate.mapping import MappingSpec
from vecmigrate.model import CollectionSchema, IdType, MetadataField, VectorField
from vecmigrate.pipeline import copy_collection
from vecmigrate.pipeline.sync import SyncOptions, last_result, sync_collection
from vecmigrate.records import build_batch, metadata_rows
from vecmigrate.retry import RetryPolicy

DIM = 8


def _schema(name: str, id_type: IdType = IdType.STRING) -> CollectionSchema:
    return CollectionSchema(
        name=name,
        id_type=id_type,
        vectors=(VectorField(dim=DIM),),
        has_document=True,
        metadata=(
            MetadataField(name="genre", type="string"),
            MetadataField(name="year", type="int64"),
        ),
    )


def _records(schema: CollectionSchema, ids: list[Any], seed: int, year: int = 2000) -> Any:
    rng = np.random.default_rng(seed)
    return build_batch(
        schema,
        ids,
        {"vector": rng.normal(size=(len(ids), DIM)).astype(np.float32)},
        documents=[f"doc {i} v{seed}" for i in ids],
        metadata=[{"genre": "abc"[hash(str(i)) % 3], "year": year} for i in ids],
    )


def _ids(schema: CollectionSchema, numbers: range | list[int]) -> list[Any]:
    return list(numbers) if schema.id_type is IdType.INT else [f"r{i:05d}" for i in numbers]


def _fill(conn: Connector, schema: CollectionSchema, n: int) -> None:
    conn.create(schema, if_exists="replace")
    conn.upsert(schema.name, _records(schema, _ids(schema, range(n)), seed=1))


def _mutate(src: Connector, schema: CollectionSchema, n: int) -> None:
    """5 inserts, 4 updates (vector, metadata, document), 3 deletes."""
    name = schema.name
    src.upsert(name, _records(schema, _ids(schema, range(n, n + 5)), seed=2))
    src.upsert(name, _records(schema, _ids(schema, [3, 4]), seed=3))  # new vectors + docs
    src.upsert(name, _records(schema, _ids(schema, [5, 6]), seed=1, year=1999))  # metadata only
    src.delete(name, _ids(schema, [10, 11, 12]))


def _backfill(src: Connector, dst: Connector, name: str, tmp: Path, spec: Any = None) -> None:
    from vecmigrate.pipeline import CopyOptions

    opts = CopyOptions(
        job_path=tmp / "copy.sqlite", mapping=spec, if_exists="replace", replace_confirmed=True
    )
    assert copy_collection(src, dst, name, options=opts).ok


def _opts(tmp: Path, **kw: Any) -> SyncOptions:
    return SyncOptions(state_path=tmp / "sync.sqlite", **kw)


@pytest.mark.parametrize("pair", ["chroma->lancedb", "pgvector->chroma"])
def test_generic_sync_applies_inserts_updates_deletes(
    pair: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if pair.startswith("pgvector"):
        src_uri = request.getfixturevalue("postgres").uri()
        dst_uri, schema = f"chroma://{tmp_path / 'c'}", _schema("gen_pg", IdType.INT)
    else:
        src_uri, dst_uri = f"chroma://{tmp_path / 'c'}", f"lancedb://{tmp_path / 'l'}"
        schema = _schema("gen_chroma")
    n = 300
    with connect(src_uri) as src, connect(dst_uri) as dst:
        _fill(src, schema, n)
        _backfill(src, dst, schema.name, tmp_path)
        _mutate(src, schema, n)
        r = sync_collection(src, dst, schema.name, options=_opts(tmp_path, mode="generic"))
        assert (r.missing, r.changed, r.extra) == (5, 4, 3)
        assert (r.upserted, r.deleted, r.dead_letters) == (9, 3, 0)
        assert r.parity and r.parity["equal"] and r.parity["target_count"] == n + 5 - 3
        assert r.dirty_buckets < r.buckets / 4  # the difference, not the whole collection
        again = sync_collection(src, dst, schema.name, options=_opts(tmp_path))
        assert again.mode == "generic" and again.rows_changed == 0 and again.dirty_buckets == 0
        assert again.ok


def test_generic_sync_with_mapping_uses_the_copy_mapping(tmp_path: Path) -> None:
    spec = MappingSpec.model_validate(
        {
            "id": {"strategy": "uuid5", "original_field": "source_id"},
            "fields": {"genre": {"rename": "kind"}},
        }
    )
    schema = _schema("mapped")
    with (
        connect(f"chroma://{tmp_path / 'c'}") as src,
        connect(f"lancedb://{tmp_path / 'l'}") as dst,
    ):
        _fill(src, schema, 200)
        _backfill(src, dst, "mapped", tmp_path, spec)
        _mutate(src, schema, 200)
        r = sync_collection(src, dst, "mapped", options=_opts(tmp_path, mapping=spec))
        assert (r.missing, r.changed, r.extra, r.upserted, r.deleted) == (5, 4, 3, 9, 3)
        assert r.parity and r.parity["equal"] and r.parity["target_count"] == 202
        assert dst.describe("mapped").metadata_field("kind") is not None


def _pg_table(postgres: Any, name: str, n: int) -> tuple[str, CollectionSchema]:
    schema = _schema(name, IdType.INT)
    with connect(postgres.uri()) as pg:
        pg.remove_change_capture(name)  # type: ignore[attr-defined]
        _fill(pg, schema, n)
    return postgres.uri(), schema


def _pg_sql(postgres: Any, statement: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


def test_change_feed_sync_on_pgvector(postgres: Any, tmp_path: Path) -> None:
    uri, schema = _pg_table(postgres, "feed_docs", 300)
    name = schema.name
    lance = f"lancedb://{tmp_path / 'l'}"
    with connect(uri) as src, connect(lance) as dst:
        _backfill(src, dst, name, tmp_path)
        src.delete(name, [0])  # written after the backfill, before capture: the first run finds it
        run_cli("sync", "--install-capture", uri, "-c", name, cwd=tmp_path, check=True)
        src.upsert(name, _records(schema, [1000], seed=5))  # captured
        first = sync_collection(src, dst, name, options=_opts(tmp_path))
        assert first.mode == "changes" and first.initial_generic
        assert first.parity and first.parity["equal"] and first.parity["target_count"] == 300
        assert first.lag_rows == 0

        # Delete then re-insert one id; an update storm on another; a plain delete.
        src.delete(name, [7])
        src.upsert(name, _records(schema, [7], seed=6))
        for year in range(1900, 1950):
            _pg_sql(postgres, f"UPDATE feed_docs SET year = {year} WHERE id = 8")
        src.delete(name, [9])
        _pg_sql(postgres, "UPDATE feed_docs SET id = 5000 WHERE id = 20")  # key change: D + U
        r = sync_collection(src, dst, name, options=_opts(tmp_path, prune=True))
        assert r.mode == "changes" and not r.initial_generic and r.rows_scanned == 0
        assert r.changes_read == 2 + 50 + 1 + 2
        assert r.upserted == 3 and r.deleted == 2  # ids 7, 8, 5000 current; 9, 20 gone
        assert r.parity and r.parity["equal"] and r.lag_rows == 0
        got = metadata_rows(dst.fetch(name, [8]), dst.describe(name))
        assert got[0]["year"] == 1949  # last write wins
        assert _pg_sql(postgres, "SELECT count(*) FROM vm_changes_feed_docs")[0][0] == 0  # pruned

        # TRUNCATE is recorded too: the next run falls back to comparing everything.
        _pg_sql(postgres, "TRUNCATE feed_docs")
        src.upsert(name, _records(schema, [1, 2], seed=7))
        t = sync_collection(src, dst, name, options=_opts(tmp_path))
        assert t.parity and t.parity["equal"] and t.parity["target_count"] == 2

        # Removed, written while nothing records, reinstalled: the stored position no longer
        # covers those writes, so the next run starts over with a generic pass.
        src.remove_change_capture(name)  # type: ignore[attr-defined]
        assert not src.change_capture_installed(name)  # type: ignore[attr-defined]
        src.upsert(name, _records(schema, [3], seed=8))
        src.install_change_capture(name)  # type: ignore[attr-defined]
        again = sync_collection(src, dst, name, options=_opts(tmp_path))
        assert again.initial_generic and again.missing == 1 and again.parity
        assert again.parity["equal"] and again.parity["target_count"] == 3
        src.remove_change_capture(name)  # type: ignore[attr-defined]


def test_crash_mid_change_feed_sync_loses_nothing(postgres: Any, tmp_path: Path) -> None:
    uri, schema = _pg_table(postgres, "crash_docs", 100)
    name = schema.name
    with connect(uri) as src, connect(f"lancedb://{tmp_path / 'l'}") as dst:
        _backfill(src, dst, name, tmp_path)
        src.install_change_capture(name)  # type: ignore[attr-defined]
        assert sync_collection(src, dst, name, options=_opts(tmp_path)).ok
        for i in range(30):  # 30 changes, one id each: pages of 10
            src.upsert(name, _records(schema, [i], seed=100 + i, year=3000 + i))
        # The second upsert is written but its acknowledgement is lost: the process "dies".
        faulty = FaultyTarget(dst, fail_after_write_rate=0.5, seed=0)
        opts = _opts(tmp_path, page_rows=10, fetch_rows=10, retry=RetryPolicy(attempts=1))
        with pytest.raises(TransientError):
            sync_collection(src, faulty, name, options=opts)  # type: ignore[arg-type]
        assert faulty.upsert_calls == 2
        with _state(tmp_path) as st:
            window = json.loads(st)
        assert window["after_seq"] > 0 and window["until"] is not None  # page 1 acknowledged
        resumed = sync_collection(src, dst, name, options=_opts(tmp_path))
        assert resumed.changes_read == 20  # pages 2 and 3 again; page 1 not re-read
        assert resumed.parity and resumed.parity["equal"]
        got = metadata_rows(dst.fetch(name, list(range(30))), dst.describe(name))
        years = {m["year"] for m in got}
        assert years == {3000 + i for i in range(30)}


def test_change_feed_takes_a_transaction_that_commits_late_and_maps_ids(
    postgres: Any, tmp_path: Path
) -> None:
    """A transaction that wrote before a sync but committed after it has a lower seq than
    changes already applied: a seq watermark would skip it; the snapshot window must not."""
    import psycopg

    uri, schema = _pg_table(postgres, "late_docs", 50)
    name = schema.name
    spec = MappingSpec.model_validate({"id": {"strategy": "uuid5", "original_field": "src"}})
    opts = _opts(tmp_path, mapping=spec)
    with connect(uri) as src, connect(f"lancedb://{tmp_path / 'l'}") as dst:
        _backfill(src, dst, name, tmp_path, spec)
        src.install_change_capture(name)  # type: ignore[attr-defined]
        assert sync_collection(src, dst, name, options=opts).ok
        with psycopg.connect(postgres.dsn) as slow:  # not autocommit: one open transaction
            slow.execute("UPDATE late_docs SET year = 1111 WHERE id = 30")
            _pg_sql(postgres, "UPDATE late_docs SET year = 2222 WHERE id = 31")
            src.delete(name, [32])  # a mapped (uuid5) id to delete on the target
            r1 = sync_collection(
                src, dst, name, options=_opts(tmp_path, mapping=spec, verify=False)
            )
            assert (r1.changes_read, r1.upserted, r1.deleted) == (2, 1, 1)
            slow.commit()
        r2 = sync_collection(src, dst, name, options=opts)
        assert (r2.changes_read, r2.upserted) == (1, 1)
        assert r2.parity and r2.parity["equal"] and r2.parity["target_count"] == 49
        years = {m["src"]: m["year"] for m in metadata_rows(*_scan_all(dst, name))}
        assert years["30"] == 1111 and years["31"] == 2222 and "32" not in years


def _scan_all(conn: Connector, name: str) -> tuple[Any, CollectionSchema]:
    import pyarrow as pa

    schema = conn.describe(name)
    batches = [b for p in conn.partitions(name, 1) for b, _ in conn.scan(name, p, schema=schema)]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0], schema


class _state:
    """The stored change-feed window of the test's state file."""

    def __init__(self, tmp: Path) -> None:
        import sqlite3

        self.db = sqlite3.connect(tmp / "sync.sqlite")

    def __enter__(self) -> str:
        return str(self.db.execute("SELECT value FROM job WHERE key='feed'").fetchone()[0])

    def __exit__(self, *exc: object) -> None:
        self.db.close()


def test_watch_rounds_through_the_cli_and_sigterm(tmp_path: Path) -> None:
    schema = _schema("watched")
    src_uri, dst_uri = f"chroma://{tmp_path / 'c'}", f"lancedb://{tmp_path / 'l'}"
    with connect(src_uri) as src, connect(dst_uri) as dst:
        _fill(src, schema, 150)
        _backfill(src, dst, "watched", tmp_path)
        _mutate(src, schema, 150)
    args = ["sync", src_uri, dst_uri, "-c", "watched", "--json", "--watch"]
    proc = run_cli(*args, "--interval", "0.1", "--max-rounds", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rounds = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
    assert rounds[0]["rows_changed"] == 12 and rounds[1]["rows_changed"] == 0
    assert all(r["parity"]["equal"] and r["mode"] == "generic" for r in rounds)
    (state_file,) = (tmp_path / ".vecmigrate" / "jobs").glob("sync-watched-*.sqlite")
    stored = last_result(state_file)  # what a cutover gate reads
    assert stored and stored["round"] == 2 and stored["parity"]["equal"] and stored["ok"]

    # A long --watch stops cleanly on SIGTERM, after the round in flight.
    live = subprocess.Popen(
        [VECMIGRATE, *args, "--interval", "60"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert live.stdout is not None
    first = json.loads(live.stdout.readline())
    assert first["ok"]
    started = time.monotonic()
    live.send_signal(signal.SIGTERM)
    assert live.wait(timeout=20) == 0
    assert time.monotonic() - started < 15


def test_cli_refuses_a_feed_the_engine_lacks(tmp_path: Path) -> None:
    proc = run_cli("sync", "--install-capture", f"dump://{tmp_path}", "-c", "x", cwd=tmp_path)
    assert proc.returncode == 2 and "no change feed" in proc.stderr


def test_refused_record_is_dead_lettered_and_exits_1(tmp_path: Path) -> None:
    from vecmigrate.pipeline import CopyOptions
    from vecmigrate.records import numpy_to_vectors

    schema = _schema("nan_docs")
    src_uri, dst_uri = f"dump://{tmp_path / 'dump'}", f"lancedb://{tmp_path / 'l'}"
    with connect(src_uri) as src, connect(dst_uri) as dst:
        src.create(schema)
        src.upsert("nan_docs", _records(schema, _ids(schema, range(20)), seed=1))
        bad = _records(schema, ["r-nan"], seed=9)
        vectors = np.ones((1, DIM), np.float32)
        vectors[0, 3] = np.nan
        src.upsert("nan_docs", bad.set_column(2, "vector", numpy_to_vectors(vectors)))
        src.finalize("nan_docs")
        copied = copy_collection(
            src, dst, "nan_docs", options=CopyOptions(job_path=tmp_path / "copy.sqlite")
        )
        assert copied.dead_letters == 1
    proc = run_cli("sync", src_uri, dst_uri, "-c", "nan_docs", "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["missing"], out["upserted"], out["dead_letters"], out["ok"]) == (1, 0, 1, False)
    assert out["parity"]["equal"] is False  # the refused record is still missing
    import pyarrow.parquet as pq

    dead = pq.read_table(tmp_path / out["dead_letter_dir"])
    assert dead.column("id").to_pylist() == ["r-nan"]
    assert dead.column("_reason").to_pylist() == ["vector contains NaN or Inf"]


def test_sync_from_a_foreign_qdrant_collection_with_uuid_ids(tmp_path: Path) -> None:
    """Points written by qdrant-client itself (UUID ids, plain payload, no vecmigrate
    schema): sync updates the edited point instead of deleting it (issue #12, item 8)."""
    require_module("qdrant_client")
    from qdrant_client import QdrantClient, models

    qpath, lance = tmp_path / "q", f"lancedb://{tmp_path / 'l'}"
    src_uri = f"qdrant+local://{qpath}"
    rng = np.random.default_rng(7)
    ids = [str(uuid.UUID(int=int(rng.integers(2**62)) << 64 | n)) for n in range(40)]

    def point(pid: str, year: int) -> Any:
        vec = rng.normal(size=DIM).tolist()
        return models.PointStruct(id=pid, vector=vec, payload={"genre": "ab"[year % 2], "y": year})

    client = QdrantClient(path=str(qpath))
    client.create_collection(
        "foreign", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    )
    client.upsert("foreign", points=[point(pid, 2000 + n) for n, pid in enumerate(ids)])
    client.close()  # local mode: one client holds the directory at a time
    run_cli("copy", src_uri, lance, "-c", "foreign", "--json", cwd=tmp_path, check=True)

    edited, gone, added = ids[3], ids[4], str(uuid.uuid4())
    client = QdrantClient(path=str(qpath))
    client.upsert("foreign", points=[point(edited, 1), point(added, 2)])
    client.delete("foreign", points_selector=models.PointIdsList(points=[gone]))
    client.close()

    proc = run_cli("sync", src_uri, lance, "-c", "foreign", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json_of(proc)
    assert (out["missing"], out["changed"], out["extra"]) == (1, 1, 1)
    assert (out["upserted"], out["deleted"], out["dead_letters"]) == (2, 1, 0)
    assert out["parity"]["equal"] and out["parity"]["target_count"] == 40
    diff = run_cli("diff", src_uri, lance, "-c", "foreign", "--json", cwd=tmp_path)
    assert diff.returncode == 0, diff.stderr
    assert json_of(diff)["equal"]
    with connect(lance) as dst:
        got = dst.fetch("foreign", [edited, gone, added])
        years = {r["id"]: r["metadata"]["y"] for r in got.to_pylist()}
        assert years == {edited: 1, added: 2}
    again = json_of(run_cli("sync", src_uri, lance, "-c", "foreign", "--json", cwd=tmp_path))
    assert again["rows_changed"] == 0 and again["ok"]
