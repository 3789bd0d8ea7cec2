"""Filtered ground truth, tie-aware recall and filter-violation detection on a real dump."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors import connect
from vecmigrate.errors import TransientError
from vecmigrate.model import CollectionSchema
from vecmigrate.testing.data import sample_batch, sample_metadata, sample_schema
from vecmigrate.verify.gates import evaluate_gates
from vecmigrate.verify.recall import (
    QuerySet,
    SystemRun,
    filter_violations,
    ground_truth,
    rank_biased_overlap,
    recall_at_k,
    returned_facts,
    run_queries,
)


def _sample_dump(tmp_path: Path) -> tuple[Any, CollectionSchema, pa.RecordBatch]:
    """A dump holding the sample collection ``docs``: (connection, schema, its rows)."""
    conn = connect(f"dump://{tmp_path / 'd'}")
    schema = sample_schema("docs")
    conn.create(schema)
    batch = sample_batch(schema)
    conn.upsert("docs", batch)
    conn.finalize("docs")
    return conn, schema, batch


def test_filtered_truth_recall_and_violations(tmp_path: Path) -> None:
    conn, schema, batch = _sample_dump(tmp_path)
    vectors = batch.column("vector").flatten().to_numpy().reshape(batch.num_rows, -1)[:6] + 0.01
    flt = {"genre": "news"}
    queries = QuerySet(vectors, ["a"] * 3 + ["news"] * 3, [None] * 3 + [flt] * 3)
    truth = ground_truth(conn, "docs", schema, queries, 10)
    news = {
        i
        for i, m in zip(batch.column("id").to_pylist(), sample_metadata(), strict=True)
        if m["genre"] == "news"
    }
    assert all(set(ids) <= news for ids in truth.ids[3:])
    exact = run_queries(conn, "docs", queries, 10)  # the dump searches exactly
    facts = returned_facts(conn, "docs", schema, queries, [exact])
    assert recall_at_k(exact, truth, facts.scores, 10).tolist() == [1.0] * 6
    assert filter_violations(exact, facts).sum() == 0
    ignoring = SystemRun(exact.ids[:3] + [list(truth.ids[0])] * 3, exact.latencies)
    facts = returned_facts(conn, "docs", schema, queries, [exact, ignoring])
    assert filter_violations(ignoring, facts)[3:].sum() > 0
    assert recall_at_k(ignoring, truth, facts.scores, 10)[3:].max() < 1.0


def test_rank_biased_overlap() -> None:
    assert rank_biased_overlap(list("abcde"), list("abcde")) == 1.0
    assert rank_biased_overlap(list("abcde"), list("vwxyz")) == 0.0
    swapped = rank_biased_overlap(list("abcde"), list("bacde"))
    assert np.isclose(swapped, 0.9) and rank_biased_overlap(list("abcde"), list("edcba")) < swapped


def test_user_queries_with_filter_and_expected_ids(tmp_path: Path) -> None:
    from vecmigrate.verify.gates import VerifyConfig
    from vecmigrate.verify.run import verify_migration

    conn, _, batch = _sample_dump(tmp_path)
    ids = batch.column("id").to_pylist()
    vec = batch.column("vector").flatten().to_numpy().reshape(batch.num_rows, -1)
    lines = [
        {"vector": vec[0].tolist(), "group": "faq", "expected": [ids[0]]},
        {
            "vector": vec[4].tolist(),
            "group": "faq",
            "filter": {"genre": "news"},
            "expected": [ids[4], "x"],
        },
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    cfg = VerifyConfig(queries=10, filter_queries=0, user_queries=path)
    report = verify_migration(conn, conn, "docs", config=cfg)
    faq = report["systems"]["target"]["faq"]
    assert faq["queries"] == 2 and faq["expected_found@10"] == 0.75
    assert report["passed"] and "expected_found@10" not in report["systems"]["target"]["sampled"]


def test_short_filtered_results_score_full_recall_and_overlap(tmp_path: Path) -> None:
    """A filter matching 2 records: both systems returning both is recall 1 and overlap 1."""
    from vecmigrate.pipeline import CopyOptions, copy_collection
    from vecmigrate.verify.recall import overlap_at_k

    conn, schema, batch = _sample_dump(tmp_path)
    lance = connect(f"lancedb://{tmp_path / 'lance'}")
    copy_collection(conn, lance, "docs", options=CopyOptions(job_path=tmp_path / "j.sqlite"))
    vectors = batch.column("vector").flatten().to_numpy().reshape(batch.num_rows, -1)[10:14]
    flt = {"genre": "news", "year": 1990}
    queries = QuerySet(vectors, ["rare"] * 4, [flt] * 4)
    truth = ground_truth(conn, "docs", schema, queries, 10)
    assert [len(ids) for ids in truth.ids] == [2] * 4
    runs = [run_queries(c, "docs", queries, 10) for c in (conn, lance)]
    assert [len(ids) for run in runs for ids in run.ids] == [2] * 8
    facts = returned_facts(conn, "docs", schema, queries, runs)
    for run in runs:
        assert recall_at_k(run, truth, facts.scores, 10).tolist() == [1.0] * 4
    assert overlap_at_k(runs[0], runs[1], 10).tolist() == [1.0] * 4
    half = SystemRun([ids[:1] for ids in runs[1].ids], runs[1].latencies)
    assert recall_at_k(half, truth, facts.scores, 10).tolist() == [0.5] * 4
    assert overlap_at_k(runs[0], half, 10).tolist() == [0.5] * 4


def test_recall_counts_ids_once_and_ties_only_against_a_full_top_k() -> None:
    from vecmigrate.exact import GroundTruth

    lat = np.zeros(1)
    short = GroundTruth(ids=[["a", "b", "c"]], scores=np.array([[0.9, 0.8, 0.7, -np.inf, -np.inf]]))
    # "x" outranks every match but does not match the filter: no tie with a short answer.
    scores = [{"a": 0.9, "x": 0.95}]
    assert recall_at_k(SystemRun([["a", "a", "x"]], lat), short, scores, 5).tolist() == [1 / 3]
    full = GroundTruth(ids=[["a", "b"]], scores=np.array([[0.9, 0.8]]))
    tie = SystemRun([["a", "t"]], lat)
    assert recall_at_k(tie, full, [{"a": 0.9, "t": 0.8}], 2).tolist() == [1.0]
    failing = [{"t"}]  # a tie that fails the query's filter is not a hit
    assert recall_at_k(tie, full, [{"a": 0.9, "t": 0.8}], 2, failing).tolist() == [0.5]
    nothing = GroundTruth(ids=[[]], scores=np.full((1, 2), -np.inf))
    assert recall_at_k(SystemRun([[]], lat), nothing, [{}], 2).tolist() == [1.0]


def test_overlap_over_the_larger_result_set() -> None:
    from vecmigrate.verify.recall import overlap_at_k

    lat = np.zeros(4)
    a = SystemRun([["a", "b", "c"], [], ["a", "b"], ["a", "a", "b", "c"]], lat)
    b = SystemRun([["a", "b", "c"], [], ["a", "b", "c", "d"], ["a", "b", "x", "y"]], lat)
    assert overlap_at_k(a, b, 10).tolist() == [1.0, 1.0, 0.5, 0.5]
    assert overlap_at_k(a, b, 2).tolist() == [1.0, 1.0, 1.0, 0.5]


def test_self_retrieval_gate_allows_an_approximate_index_the_recall_drop_share() -> None:
    from vecmigrate.verify.gates import Gates

    def report(index: str | None, misses: int) -> dict[str, object]:
        side = {"recall@10": 1.0, "empty_rate": 0.0, "filter_violations": 0}
        return {
            "k": 10,
            "systems": {"source": {"all": side}, "target": {"all": side}},
            "parity": {"missing": [], "extra": [], "changed": [], "duplicates": []},
            "serving": {"target": {"index": index}},
            "self_retrieval": {
                "regression_count": misses,
                "systems": {"target": {"asked": 200}},
            },
        }

    def gate(index: str | None, misses: int) -> dict[str, object]:
        results = evaluate_gates(Gates(), report(index, misses))
        return next(g for g in results if g["gate"] == "self-retrieval misses")

    assert not gate("flat", 1)["passed"] and not gate(None, 1)["passed"]  # exact: none
    assert gate("hnsw", 2)["passed"] and gate("hnsw", 2)["threshold"] == 2  # 1% of 200
    assert not gate("hnsw", 3)["passed"]


class _RacedOnce:
    """A connector whose every query fails transiently once before it is answered
    (Chroma's "Error finding id" while the application writes during ``verify --live``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failed = 0
        self._raced = False

    def search(self, *args: Any, **kwargs: Any) -> Any:
        self._raced = not self._raced
        if self._raced:
            self.failed += 1
            raise TransientError("Error finding id (a concurrent write raced the read)")
        return self.inner.search(*args, **kwargs)


def test_a_transiently_failing_query_is_asked_again(tmp_path: Path) -> None:
    conn, _, batch = _sample_dump(tmp_path)
    vectors = batch.column("vector").flatten().to_numpy().reshape(batch.num_rows, -1)[:3]
    queries = QuerySet(vectors, ["all"] * 3, [None] * 3)
    raced = _RacedOnce(conn)
    got = run_queries(raced, "docs", queries, 5)  # type: ignore[arg-type]
    assert got.ids == run_queries(conn, "docs", queries, 5).ids and raced.failed == 3
