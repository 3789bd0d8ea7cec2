"""Retrieval parity: both systems against exact ground truth computed from the data.

Query set: corpus vectors sampled (seeded, stratified across the source's partitions)
plus user queries from a JSON-lines file. Each system answers every query (timed one by
one); recall@k counts a returned id as a hit when it is in the exact top-k or ties with
the k-th exact neighbour (similarity >= k-th true similarity - eps), so ties are not misses.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import ConfigError
from vecmigrate.exact import GroundTruth, TopK, prepare_queries, similarity
from vecmigrate.filters import evaluate, parse
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.records import metadata_rows, vectors_to_numpy
from vecmigrate.retry import RetryPolicy, call_with_retry, scan_resuming

TIE_EPS = 1e-5


# A query the engine fails transiently is asked again within this budget.
QUERY_RETRY = RetryPolicy(attempts=4, base_seconds=0.1, max_seconds=1.0)


@dataclass
class QuerySet:
    """Query vectors, the group each belongs to, its filter and expected ids when given."""

    vectors: np.ndarray
    groups: list[str]
    filters: list[dict[str, Any] | None] = field(default_factory=list)
    expected: list[list[str] | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.filters = self.filters or [None] * len(self.groups)
        self.expected = self.expected or [None] * len(self.groups)

    def __add__(self, other: QuerySet) -> QuerySet:
        return QuerySet(
            np.concatenate([self.vectors, other.vectors]),
            self.groups + other.groups,
            self.filters + other.filters,
            self.expected + other.expected,
        )


def sample_queries(
    conn: Connector, name: str, schema: CollectionSchema, n: int, seed: int
) -> tuple[QuerySet, list[dict[str, Any]], list[Any]]:
    """``n`` corpus vectors reservoir-sampled per partition (every region represented),
    with the sampled records' metadata (to generate filter queries from) and ids (for
    the self-retrieval check: one scan serves both)."""
    rng = np.random.default_rng(seed)
    parts = conn.partitions(name, 4)
    per_part = math.ceil(n / max(1, len(parts)))
    chosen: list[tuple[np.ndarray, dict[str, Any], Any]] = []
    for part in parts:
        reservoir: list[tuple[np.ndarray, dict[str, Any], Any]] = []
        seen = 0
        for batch, _ in scan_resuming(conn, name, part, schema=schema, batch_rows=5000):
            vectors = vectors_to_numpy(batch.column(schema.vector.name))
            ids = batch.column("id").to_pylist()
            metas: list[dict[str, Any]] | None = None
            for row in range(batch.num_rows):
                seen += 1
                slot = len(reservoir) if len(reservoir) < per_part else int(rng.integers(seen))
                if slot < per_part:
                    metas = metas if metas is not None else metadata_rows(batch, schema)
                    item = (vectors[row].copy(), metas[row], ids[row])
                    reservoir[slot : slot + 1] = [item]
        chosen += reservoir
    if not chosen:
        raise ConfigError(f"collection {name!r} is empty: nothing to query")
    picked = sorted(rng.permutation(len(chosen))[:n])
    vectors = np.stack([chosen[i][0] for i in picked])
    queries = QuerySet(vectors, ["sampled"] * len(vectors))
    return queries, [chosen[i][1] for i in picked], [chosen[i][2] for i in picked]


def filter_queries(
    schema: CollectionSchema,
    sample: list[dict[str, Any]],
    vectors: np.ndarray,
    per_group: int,
    seed: int,
) -> QuerySet:
    """Broad and selective filters generated from the metadata schema and a sample of values."""
    rng = np.random.default_rng(seed)
    filters: list[tuple[str, dict[str, Any]]] = []
    for f in schema.metadata:
        values = [m[f.name] for m in sample if m.get(f.name) is not None]
        if not values:
            continue
        if f.type == "string":
            common = Counter(values).most_common()
            filters.append((f"{f.name} = common", {f.name: common[0][0]}))
            if len(common) > 2:
                filters.append(
                    (f"{f.name} in rare", {f.name: {"$in": [v for v, _ in common[-2:]]}})
                )
        elif f.type in ("int64", "float64"):
            median, p90 = np.percentile(values, [50, 90])
            cast = int if f.type == "int64" else float
            filters.append((f"{f.name} > median", {f.name: {"$gt": cast(median)}}))
            filters.append((f"{f.name} >= p90", {f.name: {"$gte": cast(p90)}}))
        elif f.type == "bool":
            filters.append((f"{f.name} = true", {f.name: True}))
        elif f.type == "list<string>":
            top = Counter(v for vs in values for v in vs).most_common(1)
            filters.append((f"{f.name} has common", {f.name: top[0][0]}))
    out = QuerySet(np.zeros((0, vectors.shape[1]), np.float32), [], [])
    for group, flt in filters[:8]:
        pick = rng.choice(len(vectors), size=min(per_group, len(vectors)), replace=False)
        out = out + QuerySet(vectors[pick], [f"filter: {group}"] * len(pick), [flt] * len(pick))
    return out


def load_user_queries(path: Path, dim: int) -> QuerySet:
    """JSON lines: ``{"vector": [...], "group": "faq", "filter": {...}, "expected": [ids]}``."""
    vectors, groups = [], []
    filters: list[dict[str, Any] | None] = []
    expected: list[list[str] | None] = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
            vec = np.asarray(q["vector"], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{lineno}: not a query ({exc})") from None
        if vec.shape != (dim,):
            raise ConfigError(f"{path}:{lineno}: query has {vec.size} dims, the collection {dim}")
        vectors.append(vec)
        groups.append(str(q.get("group", "user")))
        filters.append(q.get("filter") or None)
        expected.append([str(i) for i in q["expected"]] if q.get("expected") else None)
    return QuerySet(np.stack(vectors), groups, filters, expected)


def ground_truth(
    conn: Connector, name: str, schema: CollectionSchema, queries: QuerySet, k: int
) -> GroundTruth:
    """Exact (filtered) top-k over a full scan of ``conn``; filters evaluated exactly."""
    distinct = sorted({json.dumps(f, sort_keys=True) for f in queries.filters if f})
    nodes = [parse(json.loads(f), schema) for f in distinct]
    which = np.asarray(
        [distinct.index(json.dumps(f, sort_keys=True)) + 1 if f else 0 for f in queries.filters]
    )
    top = TopK(queries.vectors, k, schema.vector.metric)
    for part in conn.partitions(name, 1):
        for batch, _ in scan_resuming(conn, name, part, schema=schema, batch_rows=20_000):
            mask = None
            if nodes:
                rows = np.vstack(
                    [np.ones(batch.num_rows, bool), *(evaluate(n, batch) for n in nodes)]
                )
                mask = rows[which]
            ids = [str(i) for i in batch.column("id").to_pylist()]
            top.add(ids, vectors_to_numpy(batch.column(schema.vector.name)), mask)
    return top.result()


@dataclass
class SystemRun:
    """One system's answers and per-query latencies (seconds)."""

    ids: list[list[str]]
    latencies: np.ndarray


def run_queries(conn: Connector, name: str, queries: QuerySet, k: int) -> SystemRun:
    """Ask every query on its own (with its filter), timing each one. A transient failure
    (a read raced by the application's writes during ``verify --live``, a busy engine) is
    asked again; the time kept is the answered attempt's."""
    ids, lat = [], []
    for q, flt in zip(queries.vectors, queries.filters, strict=True):
        (got, took), _ = call_with_retry(
            partial(_timed_search, conn, name, q[None, :], k, flt),
            QUERY_RETRY,
            what=f"search of {name!r}",
            hint="the engine kept failing the query: check it is healthy, then verify again",
        )
        lat.append(took)
        ids.append([str(i) for i in got[0]])
    return SystemRun(ids, np.asarray(lat))


def _timed_search(
    conn: Connector, name: str, q: np.ndarray, k: int, flt: Any
) -> tuple[list[list[Any]], float]:
    t0 = time.perf_counter()
    got, _ = conn.search(name, q, k, filter=flt)
    return got, time.perf_counter() - t0


@dataclass
class ReturnedFacts:
    """What the source's data says about every id the systems returned."""

    scores: list[dict[str, float]]  # per query: id -> exact similarity to the query
    failing: list[set[str]]  # per query: returned ids that do not pass its filter


def returned_facts(
    conn: Connector, name: str, schema: CollectionSchema, queries: QuerySet, runs: list[SystemRun]
) -> ReturnedFacts:
    """Exact similarity of each returned id (for tie-aware recall) and filter violations,
    both judged on the source's own records."""
    wanted = sorted({i for run in runs for row in run.ids for i in row})
    typed: list[Any] = [int(i) for i in wanted] if schema.id_type is IdType.INT else wanted
    batches = [
        conn.fetch(name, typed[s : s + 1000], schema=schema) for s in range(0, len(typed), 1000)
    ]
    ids = [str(i) for b in batches for i in b.column("id").to_pylist()]
    position = {rid: n for n, rid in enumerate(ids)}
    matrix = (
        np.concatenate([vectors_to_numpy(b.column(schema.vector.name)) for b in batches])
        if ids
        else np.zeros((0, schema.vector.dim), np.float32)
    )
    passing: dict[str, set[str]] = {}
    for key in {json.dumps(f, sort_keys=True) for f in queries.filters if f}:
        node = parse(json.loads(key), schema)
        passing[key] = {
            i
            for b in batches
            for i, ok in zip(map(str, b.column("id").to_pylist()), evaluate(node, b), strict=True)
            if ok
        }
    q = prepare_queries(queries.vectors, schema.vector.metric)
    scores, failing = [], []
    for qi, flt in enumerate(queries.filters):
        returned = sorted({i for run in runs for i in run.ids[qi] if i in position})
        rows = [position[i] for i in returned]
        sims = similarity(q[qi : qi + 1], matrix[rows], schema.vector.metric)[0] if rows else []
        scores.append(dict(zip(returned, map(float, sims), strict=True)))
        allowed = passing.get(json.dumps(flt, sort_keys=True)) if flt else None
        failing.append(set() if allowed is None else set(returned) - allowed)
    return ReturnedFacts(scores, failing)


def filter_violations(run: SystemRun, facts: ReturnedFacts) -> np.ndarray:
    """Per query, how many returned ids fail the query's filter."""
    return np.asarray(
        [len(set(ids) & bad) for ids, bad in zip(run.ids, facts.failing, strict=True)]
    )


def recall_at_k(
    run: SystemRun,
    truth: GroundTruth,
    scores: list[dict[str, float]],
    k: int,
    failing: list[set[str]] | None = None,
) -> np.ndarray:
    """Per-query recall@k: distinct true neighbours returned in the top k over the number
    expected, min(k, how many records match the query's filter).

    When the exact answer is a full k, an id tying with the k-th exact neighbour counts as
    a hit (unless ``failing`` says it fails the query's filter). A shorter exact answer
    holds every matching record, so only its own ids are hits.
    """
    out = np.zeros(len(run.ids))
    for qi, got in enumerate(run.ids):
        exact = {str(i) for i in truth.ids[qi][:k]}
        if not exact:
            out[qi] = 1.0  # nothing to find (a filter may match nothing)
            continue
        returned = set(got[:k])  # an id returned twice is one hit
        hits = len(returned & exact)
        if len(exact) == k:
            kth = float(truth.scores[qi, k - 1])
            bad = failing[qi] if failing is not None else set()
            hits += sum(
                1 for i in returned - exact - bad if scores[qi].get(i, -np.inf) >= kth - TIE_EPS
            )
        out[qi] = min(hits, len(exact)) / len(exact)
    return out


def expected_hits(run: SystemRun, expected: list[list[str] | None], k: int) -> np.ndarray:
    """Per query, the fraction of the user's expected ids in the top k (NaN: none given)."""
    return np.asarray(
        [
            np.nan if not want else len(set(got[:k]) & set(want)) / len(want)
            for got, want in zip(run.ids, expected, strict=True)
        ]
    )


def overlap_at_k(a: SystemRun, b: SystemRun, k: int) -> np.ndarray:
    """Per-query |A_k ∩ B_k| over the size of the larger of the two (distinct) result
    sets, at most k: a filter matching fewer than k records caps both lists, and two
    systems returning the same short list agree fully. 1.0 when both are empty."""
    out = []
    for x, y in zip(a.ids, b.ids, strict=True):
        sa, sb = set(x[:k]), set(y[:k])
        size = max(len(sa), len(sb))
        out.append(len(sa & sb) / size if size else 1.0)
    return np.asarray(out, dtype=np.float64)


def rank_biased_overlap(a: list[str], b: list[str], p: float = 0.9) -> float:
    """Extrapolated rank-biased overlap (Webber et al. 2010) of two ranked lists."""
    k = max(len(a), len(b))
    if k == 0:
        return 1.0
    seen_a: set[str] = set()
    seen_b: set[str] = set()
    overlap = 0  # |A[:d] ∩ B[:d]|
    total = 0.0
    for d in range(1, k + 1):
        x = a[d - 1] if d <= len(a) else None
        y = b[d - 1] if d <= len(b) else None
        if y is not None:
            seen_b.add(y)
            overlap += y in seen_a
        if x is not None:
            overlap += x in seen_b
            seen_a.add(x)
        total += overlap / d * p**d
    return float(overlap / k * p**k + (1 - p) / p * total)


def bootstrap_ci(values: np.ndarray, seed: int = 0, rounds: int = 1000) -> tuple[float, float]:
    """95% bootstrap confidence interval of the mean."""
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(rounds, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def latency_summary(lat: np.ndarray) -> dict[str, float]:
    """p50/p95/p99 in milliseconds and sequential queries per second."""
    if len(lat) == 0:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "qps": 0.0}
    p50, p95, p99 = np.percentile(lat * 1000, [50, 95, 99])
    return {
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "qps": float(len(lat) / lat.sum()) if lat.sum() > 0 else 0.0,
    }
