"""``verify --live`` judges filter violations on records fetched after the query is asked
again: a target a moment behind the source's writes is not blamed, one that stays wrong
is."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from vecmigrate.connectors import connect
from vecmigrate.testing.data import sample_batch, sample_schema
from vecmigrate.verify import live
from vecmigrate.verify.recall import QuerySet, filter_violations, returned_facts, run_queries


def _stale(batch: pa.RecordBatch, row: int) -> pa.RecordBatch:
    """Row ``row`` of ``batch`` with another genre: a write the target has not replayed."""
    record = batch.slice(row, 1).to_pylist()[0]
    stale = dict(record, metadata=dict(record["metadata"], genre="stale-genre"))
    return pa.RecordBatch.from_pylist([stale], schema=batch.schema)


def _judge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, later: str) -> int:
    """Filter violations of the target counted after ``rejudge_violations``. Row 3 is
    stale on the target when the query is first asked; then (``later``) the target
    stays so, catches up, or catches up while row 4 falls behind instead."""
    schema = sample_schema("docs")
    batch = sample_batch(schema)
    source, target = connect(f"lancedb://{tmp_path / 's'}"), connect(f"lancedb://{tmp_path / 't'}")
    for conn in (source, target):
        conn.create(schema)
        conn.upsert("docs", batch)
    target.upsert("docs", _stale(batch, 3))

    def meanwhile(seconds: float) -> None:  # instead of the pause before asking again
        if later != "stays":
            target.upsert("docs", batch.slice(3, 1))
        if later == "another":
            target.upsert("docs", _stale(batch, 4))

    monkeypatch.setattr(live, "time", SimpleNamespace(sleep=meanwhile))  # this module's only
    vector = batch.slice(3, 1).column("vector").flatten().to_numpy().reshape(1, -1)
    queries = QuerySet(vector, ["filtered"], [{"genre": "stale-genre"}])
    sides = {"source": (source, "docs"), "target": (target, "docs")}
    runs = {side: run_queries(conn, name, queries, 5) for side, (conn, name) in sides.items()}
    facts = returned_facts(source, "docs", schema, queries, list(runs.values()))
    assert filter_violations(runs["target"], facts).sum() == 1  # row 3, judged on the source
    assert live.rejudge_violations(sides, schema, queries, runs, facts, 5) == 1
    return int(filter_violations(runs["target"], facts).sum())


def test_a_target_a_moment_behind_is_not_blamed_for_a_filter_violation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _judge(tmp_path / "a", monkeypatch, later="stays") == 1  # stays wrong: counted
    assert _judge(tmp_path / "b", monkeypatch, later="catches up") == 0
    # Under steady writes another record is behind by the next round: not the same one
    assert _judge(tmp_path / "c", monkeypatch, later="another") == 0
