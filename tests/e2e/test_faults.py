"""Fault injection on real engines: SIGKILL at seeded random points, flaky writes that
fail before or after being applied, and a source whose files vanish mid-scan. Each must
end, after retries or ``--resume``, with digests equal: no loss, no duplicate."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import VECMIGRATE, cli, make_dump
from tests.faults import FaultyTarget
from vecmigrate.connectors import connect
from vecmigrate.connectors.lancedb import LanceDBConnector
from vecmigrate.errors import DataError, TransientError
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.pipeline.copy import _CopyRun
from vecmigrate.retry import RetryPolicy
from vecmigrate.verify.digest import collection_digest

KILLS = 20
ROWS = 12_000


def _rows_done(job: Path) -> int:
    try:
        with sqlite3.connect(f"file:{job}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT coalesce(sum(rows), 0) FROM partition").fetchone()[0])
    except sqlite3.Error:
        return 0


def _assert_identical(source: str, target: str, rows: int) -> None:
    with connect(source) as s, connect(target) as t:
        assert t.count("docs") == rows  # no loss, no duplicate
        tol = t.capabilities.vector_tolerance
        assert (
            collection_digest(s, "docs").compare(collection_digest(t, "docs"), tolerance=tol).equal
        )


def test_sigkill_at_20_seeded_points_then_resume(tmp_path: Path) -> None:
    """Kills land anywhere: start-up, planning, mid-batch, mid-part-write, finalize,
    verification. Dump to dump keeps 21 processes cheap; test_copy_cli kills copies into
    LanceDB, pgvector and Chroma once each."""
    make_dump(tmp_path / "src", ROWS, dim=32)
    source, target = f"dump://{tmp_path / 'src'}", f"dump://{tmp_path / 'out'}"
    job = tmp_path / "job.sqlite"
    args = [VECMIGRATE, "copy", source, target, "-c", "docs", "--job", str(job)]
    # small source batches: the dump coalesces 16 of them per part, and a kill must find
    # the copy still running after 20 goals of 1-3 acknowledged parts each
    args += ["--batch-rows", "10", "--workers", "2", "--json"]
    rng = random.Random(20260)
    mid_copy = 0
    for i in range(KILLS):
        before = _rows_done(job)
        proc = subprocess.Popen(
            args + (["--resume"] if i else []),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Either a random delay (start-up, planning, finalize... included) or a random
        # number of further acknowledged batches; both capped so the copy never finishes.
        timed = rng.random() < 0.3
        until = time.monotonic() + (rng.uniform(0.05, 0.8) if timed else 60)
        goal = before + (160 if timed else 160 * rng.randint(1, 3))
        while _rows_done(job) < goal and proc.poll() is None and time.monotonic() < until:
            time.sleep(0.005)
        assert proc.poll() is None, f"kill {i}: the copy ended on its own; make ROWS bigger"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid_copy += 0 < _rows_done(job) < ROWS
    assert mid_copy >= KILLS // 2

    final = cli("copy", *args[2:], "--resume")
    assert final.returncode == 0, final.stderr
    out = final.json()
    assert out["rows_total"] == ROWS and out["dead_letters"] == 0 and out["verified"]
    _assert_identical(source, target, ROWS)
    assert not list((tmp_path / "out" / "docs").glob(".*.tmp"))  # killed writes cleaned up


def test_flaky_writes_before_and_after_apply_are_retried_without_loss(tmp_path: Path) -> None:
    """5% of upserts fail before reaching LanceDB, 1% time out after it applied them."""
    make_dump(tmp_path / "src", 2500, dim=16)
    source = connect(f"dump://{tmp_path / 'src'}")
    target = FaultyTarget(
        connect(f"lancedb://{tmp_path / 'lance'}"),
        transient_rate=0.05,
        fail_after_write_rate=0.01,
        seed=11,
    )
    options = CopyOptions(
        batch_rows=20,
        job_path=tmp_path / "job.sqlite",
        retry=RetryPolicy(attempts=8, base_seconds=0.001, max_seconds=0.01),
    )
    result = copy_collection(source, target, "docs", options=options)
    assert target.injected_before > 0 and target.injected_after > 0, target.upsert_calls
    assert result.retries == target.injected_before + target.injected_after
    assert result.ok and result.rows_written == 2500
    _assert_identical(f"dump://{tmp_path / 'src'}", f"lancedb://{tmp_path / 'lance'}", 2500)


def _ten_part_dump(scratch: Path, path: Path, rows: int) -> None:
    """A finished dump of ``rows`` records in ten parts (make_dump writes 5000 per part)."""
    make_dump(scratch, rows, dim=16)
    with connect(f"dump://{scratch}") as s, connect(f"dump://{path}") as d:
        schema = s.describe("docs")
        batch = next(iter(s.scan("docs", s.partitions("docs", 1)[0], batch_rows=rows)))[0]
        d.create(schema)
        step = rows // 10
        for start in range(0, rows, step):
            d.upsert("docs", batch.slice(start, step))
        d.finalize("docs")


def test_source_files_vanishing_mid_scan_then_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dump's collection folder is moved away after the first acknowledged batch: the
    copy stops naming the part it could not read; restored, --resume completes it."""
    monkeypatch.chdir(tmp_path)
    src_dir = tmp_path / "src"
    _ten_part_dump(tmp_path / "seed", src_dir, 3000)

    source, target = f"dump://{src_dir}", f"lancedb://{tmp_path / 'lance'}"
    job = tmp_path / "job.sqlite"
    away = tmp_path / "away"

    def vanish(_rows: int) -> None:
        if not away.exists():
            (src_dir / "docs").rename(away)

    options = CopyOptions(batch_rows=100, workers=1, partitions=1, job_path=job)
    # one streamed write per source batch: the copy acknowledges rows before the end
    monkeypatch.setattr(LanceDBConnector, "bulk_stream_bytes", 1)
    with connect(source) as s, connect(target) as t, pytest.raises(DataError) as err:
        copy_collection(s, t, "docs", options=options, progress=vanish)
    message = str(err.value)
    assert "cannot read part docs/part-" in message and "No such file" in message
    assert 0 < _rows_done(job) < 3000

    away.rename(src_dir / "docs")
    resumed = cli("copy", source, target, "-c", "docs", "--job", str(job), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.json()["verified"] and resumed.json()["rows_total"] == 3000
    _assert_identical(source, target, 3000)


def test_resume_after_a_kill_between_create_and_planning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The narrowest window of a copy: the target collection exists, no partition is
    recorded yet. --resume reuses the collection instead of refusing it as pre-existing."""
    make_dump(tmp_path / "src", 500, dim=16)
    source, target = f"dump://{tmp_path / 'src'}", f"lancedb://{tmp_path / 'lance'}"
    job = tmp_path / "job.sqlite"
    # A kill -9 runs no clean-up: without this the failed start would remove the
    # collection it created (tests/unit/test_pipeline.py), leaving nothing to resume.
    monkeypatch.setattr(_CopyRun, "undo_if_unstarted", lambda self: None)
    with connect(source) as s, connect(target) as t:
        monkeypatch.setattr(s, "partitions", lambda *a, **k: (_ for _ in ()).throw(OSError))
        with pytest.raises(OSError):
            copy_collection(s, t, "docs", options=CopyOptions(job_path=job))
        assert t.list_collections() == ["docs"]
    monkeypatch.chdir(tmp_path)
    resumed = cli("copy", source, target, "-c", "docs", "--job", str(job), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.json()["verified"]
    _assert_identical(source, target, 500)


def test_source_connection_killed_mid_scan_is_retried(
    tmp_path: Path, postgres: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """PostgreSQL terminates the scanning sessions (an operator, a failover) after the
    first acknowledged batch: the scan restarts after the last batch it handed over, and
    the copy ends identical, with the retry logged."""
    psycopg = pytest.importorskip("psycopg")
    monkeypatch.chdir(tmp_path)
    make_dump(tmp_path / "src", 3000, dim=16)
    pg = postgres.uri()
    loaded = cli(
        "copy", f"dump://{tmp_path / 'src'}", pg, "-c", "docs",
        "--target-collection", "fault_src", "--if-exists", "replace", "--yes", "--json",
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    source, target = pg, f"dump://{tmp_path / 'out'}"
    killed: list[int] = []

    def terminate(_rows: int) -> None:
        if killed:
            return
        with psycopg.connect(postgres.dsn, autocommit=True, application_name="vm") as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'vm-fault-source'"
            ).fetchall()
        killed.append(len(rows))

    options = CopyOptions(
        batch_rows=100,
        workers=1,
        partitions=1,
        job_path=tmp_path / "job.sqlite",
        retry=RetryPolicy(base_seconds=0.01),
    )
    monkeypatch.setenv("PGAPPNAME", "vm-fault-source")  # libpq: names only these sessions
    with connect(source) as s, connect(target) as t:
        result = copy_collection(s, t, "fault_src", options=options, progress=terminate)
    assert killed and killed[0] >= 1
    assert "scan of 'fault_src' failed" in caplog.text and "retry in" in caplog.text
    assert result.ok and result.rows_written == 3000
    with connect(source) as s, connect(target) as t:
        assert collection_digest(s, "fault_src").compare(collection_digest(t, "fault_src")).equal


def test_flaky_source_scan_restarts_after_the_last_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every scan dies with a TransientError after handing over two batches: each restart
    continues from the last token, so the copy ends identical, no batch read twice."""
    _ten_part_dump(tmp_path / "seed", tmp_path / "src", 2000)
    source, target = f"dump://{tmp_path / 'src'}", f"dump://{tmp_path / 'out'}"
    scans: list[int] = []
    with connect(source) as s, connect(target) as t:
        real_scan = s.scan

        def dying_scan(*args: Any, **kwargs: Any) -> Any:
            scans.append(1)
            for i, item in enumerate(real_scan(*args, **kwargs)):
                if i == 2:
                    raise TransientError("injected: connection reset")
                yield item

        monkeypatch.setattr(s, "scan", dying_scan)
        options = CopyOptions(
            batch_rows=100,
            workers=2,
            job_path=tmp_path / "job.sqlite",
            retry=RetryPolicy(attempts=3, base_seconds=0.001),
        )
        result = copy_collection(s, t, "docs", options=options)
    assert len(scans) >= 10  # 20 batches, two per scan
    assert result.ok and result.rows_read == 2000 and result.rows_written == 2000
    _assert_identical(source, target, 2000)


def test_source_scan_failing_for_good_names_the_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source that stays down: after the retry budget, one clear error and a resumable job."""
    make_dump(tmp_path / "src", 300, dim=8)
    with connect(f"dump://{tmp_path / 'src'}") as s, connect(f"dump://{tmp_path / 'out'}") as t:

        def down(*args: Any, **kwargs: Any) -> Any:
            raise TransientError("injected: 503")

        monkeypatch.setattr(s, "scan", down)
        options = CopyOptions(
            job_path=tmp_path / "job.sqlite", retry=RetryPolicy(attempts=3, base_seconds=0.001)
        )
        with pytest.raises(TransientError, match="scan of 'docs' still failing after 3") as err:
            copy_collection(s, t, "docs", options=options)
    assert err.value.hint and "--resume" in err.value.hint
