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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import ConfigError
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.records import vectors_to_numpy
from vecmigrate.verify.groundtruth import GroundTruth, TopK, prepare_queries, similarity

TIE_EPS = 1e-5


@dataclass
class QuerySet:
    """Query vectors with the group each belongs to (and expected ids when given)."""

    vectors: np.ndarray
    groups: list[str]
    expected: list[list[str] | None] = field(default_factory=list)


def sample_queries(
    conn: Connector, name: str, schema: CollectionSchema, n: int, seed: int
) -> QuerySet:
    """``n`` corpus vectors, reservoir-sampled per partition so every region is represented."""
    rng = np.random.default_rng(seed)
    parts = conn.partitions(name, 4)
    per_part = math.ceil(n / max(1, len(parts)))
    field_name = schema.vector.name
    chosen: list[np.ndarray] = []
    for part in parts:
        reservoir: list[np.ndarray] = []
        seen = 0
        for batch, _ in conn.scan(name, part, schema=schema, batch_rows=5000):
            for vec in vectors_to_numpy(batch.column(field_name)):
                seen += 1
                if len(reservoir) < per_part:
                    reservoir.append(vec.copy())
                elif (j := int(rng.integers(seen))) < per_part:
                    reservoir[j] = vec.copy()
        chosen += reservoir
    if not chosen:
        raise ConfigError(f"collection {name!r} is empty: nothing to query")
    picked = rng.permutation(len(chosen))[:n]
    vectors = np.stack([chosen[i] for i in sorted(picked)])
    return QuerySet(vectors, ["sampled"] * len(vectors), [None] * len(vectors))


def load_user_queries(path: Path, dim: int) -> QuerySet:
    """JSON lines: ``{"vector": [...], "group": "faq", "expected": ["id1", ...]}``."""
    vectors, groups, expected = [], [], []
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
        if q.get("filter"):
            raise ConfigError(f"{path}:{lineno}: filtered queries need the portable filter module")
        vectors.append(vec)
        groups.append(str(q.get("group", "user")))
        expected.append([str(i) for i in q["expected"]] if "expected" in q else None)
    return QuerySet(np.stack(vectors), groups, expected)


def ground_truth(
    conn: Connector, name: str, schema: CollectionSchema, queries: np.ndarray, k: int
) -> GroundTruth:
    """Exact top-k over a full scan of ``conn``."""
    field_name = schema.vector.name
    top = TopK(queries, k, schema.vector.metric)
    for part in conn.partitions(name, 1):
        for batch, _ in conn.scan(name, part, schema=schema, batch_rows=20_000):
            top.add(
                [str(i) for i in batch.column("id").to_pylist()],
                vectors_to_numpy(batch.column(field_name)),
            )
    return top.result()


@dataclass
class SystemRun:
    """One system's answers and per-query latencies (seconds)."""

    ids: list[list[str]]
    latencies: np.ndarray


def run_queries(conn: Connector, name: str, queries: np.ndarray, k: int) -> SystemRun:
    """Ask every query on its own, timing each one."""
    ids, lat = [], []
    for q in queries:
        t0 = time.perf_counter()
        got, _ = conn.search(name, q[None, :], k)
        lat.append(time.perf_counter() - t0)
        ids.append([str(i) for i in got[0]])
    return SystemRun(ids, np.asarray(lat))


def true_scores(
    conn: Connector, name: str, schema: CollectionSchema, queries: np.ndarray, runs: list[SystemRun]
) -> list[dict[str, float]]:
    """Exact similarity of every returned id to its query (for tie-aware recall)."""
    wanted = sorted({i for run in runs for row in run.ids for i in row})
    vectors: dict[str, np.ndarray] = {}
    typed: list[Any] = [int(i) for i in wanted] if schema.id_type is IdType.INT else wanted
    for start in range(0, len(typed), 1000):
        batch = conn.fetch(name, typed[start : start + 1000], schema=schema)
        for rid, vec in zip(
            batch.column("id").to_pylist(),
            vectors_to_numpy(batch.column(schema.vector.name)),
            strict=True,
        ):
            vectors[str(rid)] = vec
    q = prepare_queries(queries, schema.vector.metric)
    out = []
    for qi in range(len(q)):
        ids = sorted({i for run in runs for i in run.ids[qi] if i in vectors})
        sims = (
            similarity(q[qi : qi + 1], np.stack([vectors[i] for i in ids]), schema.vector.metric)[0]
            if ids
            else []
        )
        out.append(dict(zip(ids, map(float, sims), strict=True)))
    return out


def recall_at_k(
    run: SystemRun, truth: GroundTruth, scores: list[dict[str, float]], k: int
) -> np.ndarray:
    """Per-query recall@k with ties at the k-th exact neighbour counted as hits."""
    out = np.zeros(len(run.ids))
    for qi, got in enumerate(run.ids):
        exact = truth.ids[qi][:k]
        if not exact:
            out[qi] = 1.0
            continue
        kth = float(truth.scores[qi, min(k, len(exact)) - 1])
        hits = sum(1 for i in got[:k] if i in exact or scores[qi].get(i, -np.inf) >= kth - TIE_EPS)
        out[qi] = min(hits, len(exact)) / len(exact)
    return out


def overlap_at_k(a: SystemRun, b: SystemRun, k: int) -> np.ndarray:
    """Per-query |A_k ∩ B_k| / k between two systems."""
    return np.asarray([len(set(x[:k]) & set(y[:k])) / k for x, y in zip(a.ids, b.ids, strict=True)])


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
