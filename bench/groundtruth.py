"""Benchmark: exact ground truth for 1,000 queries over 1,000,000 x 384 float32 vectors.

Generated corpus (seeded), streamed in batches of 20,000 as a scan would deliver it.
Reports wall time and peak RSS, and checks the result against a naive exact computation
on a subset of the queries.  Run: ``.venv/bin/python bench/groundtruth.py``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from vecmigrate.exact import TopK
from vecmigrate.model import Metric


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=20_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    top = TopK(queries, args.k, Metric.COSINE)
    gen_seconds = 0.0
    t0 = time.perf_counter()
    for start in range(0, args.rows, args.batch):
        g = time.perf_counter()
        batch = np.random.default_rng(start).normal(size=(args.batch, args.dim)).astype(np.float32)
        gen_seconds += time.perf_counter() - g
        top.add(list(range(start, start + args.batch)), batch)
    truth = top.result()
    seconds = time.perf_counter() - t0 - gen_seconds
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Naive check on 20 queries: full similarity matrix, full sort.
    sub = queries[:20] / np.linalg.norm(queries[:20], axis=1, keepdims=True)
    best = np.full((20, 0), -np.inf)
    best_ids = np.empty((20, 0), dtype=np.int64)
    for start in range(0, args.rows, args.batch):
        c = np.random.default_rng(start).normal(size=(args.batch, args.dim)).astype(np.float32)
        s = sub @ (c / np.linalg.norm(c, axis=1, keepdims=True)).T
        best = np.concatenate([best, s], axis=1)
        best_ids = np.concatenate(
            [best_ids, np.broadcast_to(np.arange(start, start + args.batch), s.shape)], axis=1
        )
        order = np.argsort(-best, axis=1)[:, : args.k]
        best, best_ids = np.take_along_axis(best, order, 1), np.take_along_axis(best_ids, order, 1)
    agree = all(set(truth.ids[i]) == set(best_ids[i].tolist()) for i in range(20))
    print(
        f"{args.queries} queries x {args.rows:,} x {args.dim}: {seconds:.1f}s "
        f"(excluding {gen_seconds:.1f}s generating data), peak RSS {rss:.0f} MiB, "
        f"matches naive exact on 20 queries: {agree}"
    )
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
