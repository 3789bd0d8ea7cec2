"""The copy pipeline on real dumps: dead letters, isolation of refused records, retries, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.faults import FaultyTarget
from vecmigrate.connectors import Connector, connect
from vecmigrate.errors import ConfigError
from vecmigrate.pipeline import CopyOptions, RetryPolicy, copy_collection
from vecmigrate.records import vectors_to_numpy
from vecmigrate.testing.data import ROWS, sample_batch, sample_ids, sample_schema
from vecmigrate.verify.digest import collection_digest

FAST_RETRY = RetryPolicy(attempts=8, base_seconds=0.001, max_seconds=0.01)


def _source(tmp_path: Path, batch: pa.RecordBatch | None = None) -> Connector:
    src = connect(f"dump://{tmp_path / 'src'}")
    schema = sample_schema("docs")
    src.create(schema)
    b = batch if batch is not None else sample_batch(schema)
    for start in range(0, b.num_rows, 50):
        src.upsert("docs", b.slice(start, 50))
    src.finalize("docs")
    return src


def _opts(tmp_path: Path, **kw: object) -> CopyOptions:
    return CopyOptions(job_path=tmp_path / "job.sqlite", batch_rows=40, retry=FAST_RETRY, **kw)  # type: ignore[arg-type]


def test_copy_is_complete_and_digest_equal(tmp_path: Path) -> None:
    src = _source(tmp_path)
    dst = connect(f"dump://{tmp_path / 'dst'}")
    result = copy_collection(src, dst, "docs", options=_opts(tmp_path, workers=3))
    assert result.rows_written == ROWS and result.ok and result.partitions >= 3
    assert collection_digest(src, "docs").compare(collection_digest(dst, "docs")).equal


def test_nan_vectors_and_refused_records_go_to_dead_letters(tmp_path: Path) -> None:
    schema = sample_schema("docs")
    batch = sample_batch(schema)
    vec = vectors_to_numpy(batch.column("vector")).copy()
    vec[[3, 77]] = np.nan
    batch = batch.set_column(
        batch.schema.get_field_index("vector"),
        "vector",
        pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), vec.shape[1]),
    )
    src = _source(tmp_path, batch)
    ids = sample_ids(schema.id_type)
    target = FaultyTarget(connect(f"dump://{tmp_path / 'dst'}"), refuse_ids=[ids[10], ids[150]])
    result = copy_collection(src, target, "docs", options=_opts(tmp_path))
    assert result.dead_letters == 4 and not result.ok
    assert result.rows_written == ROWS - 4
    dead = pq.read_table(result.dead_letter_dir)
    assert sorted(dead.column("id").to_pylist()) == sorted([ids[3], ids[77], ids[10], ids[150]])
    reasons = dict(
        zip(dead.column("id").to_pylist(), dead.column("_reason").to_pylist(), strict=True)
    )
    assert "NaN" in reasons[ids[3]] and "refused" in reasons[ids[10]]
    assert target.inner.count("docs") == ROWS - 4


def test_transient_failures_are_retried_without_loss(tmp_path: Path) -> None:
    src = _source(tmp_path)
    target = FaultyTarget(
        connect(f"dump://{tmp_path / 'dst'}"), transient_rate=0.2, fail_after_write_rate=0.1, seed=3
    )
    result = copy_collection(src, target, "docs", options=_opts(tmp_path))
    assert target.injected > 0 and result.retries == target.injected
    assert result.ok and target.inner.count("docs") == ROWS
    assert collection_digest(src, "docs").compare(collection_digest(target.inner, "docs")).equal


def test_failure_before_the_first_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    src = _source(tmp_path)
    target = FaultyTarget(connect(f"dump://{tmp_path / 'dst'}"), transient_rate=1.0)
    with pytest.raises(Exception, match="still failing"):
        copy_collection(src, target, "docs", options=_opts(tmp_path))
    assert not (tmp_path / "job.sqlite").exists()
    assert "docs" not in target.inner.list_collections()
    assert not (tmp_path / "dst" / "docs").exists()
    # Nothing to resume: the same command simply runs again.
    result = copy_collection(src, target.inner, "docs", options=_opts(tmp_path))
    assert result.ok and not result.resumed and result.rows_written == ROWS


def test_unfinished_job_needs_resume_or_restart(tmp_path: Path) -> None:
    src = _source(tmp_path)
    target = FaultyTarget(connect(f"dump://{tmp_path / 'dst'}"), healthy_calls=2)
    with pytest.raises(Exception, match="still failing"):
        copy_collection(src, target, "docs", options=_opts(tmp_path))
    with pytest.raises(ConfigError, match="--resume"):
        copy_collection(src, target.inner, "docs", options=_opts(tmp_path))
    result = copy_collection(src, target.inner, "docs", options=_opts(tmp_path, resume=True))
    assert result.resumed and result.ok
    assert collection_digest(src, "docs").compare(collection_digest(target.inner, "docs")).equal


def test_resumable_scan_restarts_after_the_last_batch_without_repeats() -> None:
    """A scan that fails transiently mid-way resumes after the last batch it yielded."""
    import pyarrow as pa

    from vecmigrate.errors import TransientError
    from vecmigrate.model import ResumeToken
    from vecmigrate.retry import RetryPolicy, resumable_scan

    rows = list(range(10))
    failures = iter([3, 7])  # the scan breaks before these rows, once each
    fail_at = next(failures)

    def scan(token: ResumeToken | None):  # type: ignore[no-untyped-def]
        nonlocal fail_at
        start = 0 if token is None else int(token)
        for i in range(start, len(rows)):
            if i == fail_at:
                fail_at = next(failures, -1)
                raise TransientError("scan broken by a concurrent write")
            yield pa.record_batch({"id": [i]}), str(i + 1)

    got = [
        b.column("id")[0].as_py()
        for b, _ in resumable_scan(scan, RetryPolicy(base_seconds=0), what="t")
    ]
    assert got == rows
