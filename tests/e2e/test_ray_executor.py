"""Partitions run as Ray tasks (a local Ray instance with 2 worker CPUs): same
checkpoints, dead letters and verification as local threads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import json_of, make_dump, run_cli
from vecmigrate.connectors import connect
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.pipeline.jobstate import JobState
from vecmigrate.records import vectors_to_numpy
from vecmigrate.testing.data import sample_batch, sample_ids, sample_schema
from vecmigrate.verify.digest import collection_digest


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    ray = require_module("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_cli_copy_on_ray_is_complete_and_verified(tmp_path: Path) -> None:
    require_module("ray")
    make_dump(tmp_path / "src", rows=11000, dim=16)  # 3 part files
    out = run_cli(
        "copy",
        f"dump://{tmp_path / 'src'}",
        f"lancedb://{tmp_path / 'lance'}",
        "-c",
        "docs",
        "--executor",
        "ray",
        "--workers",
        "2",
        "--batch-rows",
        "500",
        "--json",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    result = json_of(out)
    assert result["rows_written"] == 11000 and result["partitions"] >= 2
    assert result["verified"], result["checks"]


def test_ray_workers_send_refused_records_back_and_checkpoints_are_kept(
    tmp_path: Path, ray_local: None
) -> None:
    schema = sample_schema("docs")
    batch = sample_batch(schema)
    vec = vectors_to_numpy(batch.column("vector")).copy()
    vec[[5, 120]] = np.nan
    batch = batch.set_column(
        batch.schema.get_field_index("vector"),
        "vector",
        pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), vec.shape[1]),
    )
    src = connect(f"dump://{tmp_path / 'src'}")
    src.create(schema)
    for start in range(0, batch.num_rows, 50):
        src.upsert("docs", batch.slice(start, 50))
    src.finalize("docs")
    dst = connect(f"dump://{tmp_path / 'dst'}")
    job = tmp_path / "job.sqlite"
    opts = CopyOptions(executor="ray", workers=2, batch_rows=40, job_path=job)
    result = copy_collection(src, dst, "docs", options=opts)

    assert result.dead_letters == 2 and result.rows_written == batch.num_rows - 2
    dead = pq.read_table(result.dead_letter_dir)
    ids = sample_ids(schema.id_type)
    assert sorted(dead.column("id").to_pylist()) == sorted([ids[5], ids[120]])
    assert set(dead.column("_reason").to_pylist()) == {"vector contains NaN or Inf"}
    state = JobState(job)
    try:
        parts = state.partitions()
        assert all(p.done for p in parts) and sum(p.rows for p in parts) == batch.num_rows - 2
    finally:
        state.close()
    kept = src.fetch("docs", [i for i in ids if i not in (ids[5], ids[120])])
    assert kept.num_rows == batch.num_rows - 2
    assert collection_digest(dst, "docs").count == batch.num_rows - 2
