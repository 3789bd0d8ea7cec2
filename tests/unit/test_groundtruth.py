from __future__ import annotations

import numpy as np
import pytest

from vecmigrate.exact import TopK, exact_topk
from vecmigrate.model import Metric


def _naive(q: np.ndarray, c: np.ndarray, k: int, metric: Metric) -> np.ndarray:
    if metric is Metric.COSINE:
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        c = c / np.linalg.norm(c, axis=1, keepdims=True)
        s = q @ c.T
    elif metric is Metric.DOT:
        s = q @ c.T
    else:
        s = -((q[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("metric", list(Metric))
def test_streamed_topk_equals_naive(metric: Metric) -> None:
    rng = np.random.default_rng(0)
    c = rng.normal(size=(2000, 32)).astype(np.float64)
    q = rng.normal(size=(25, 32))
    ids = list(range(2000))
    batches = [(ids[s : s + 333], c[s : s + 333]) for s in range(0, 2000, 333)]
    got = exact_topk(batches, q, 10, metric)
    want = _naive(q, c, 10, metric)
    assert [list(map(int, r)) for r in got.ids] == want.tolist()
    assert np.all(np.diff(got.scores, axis=1) <= 0)


def test_topk_keeps_only_the_ids_of_the_k_best_not_every_scanned_one() -> None:
    """Memory stays flat with the corpus: after 200 batches of 1,000 records, the top-k
    holds k ids per query (it held all 200,000), and they are the right ones."""
    rng = np.random.default_rng(5)
    queries = rng.normal(size=(3, 8)).astype(np.float32)
    top = TopK(queries, 4, Metric.L2)
    corpus = rng.normal(size=(200_000, 8)).astype(np.float32)
    for start in range(0, len(corpus), 1000):
        top.add([f"r{i}" for i in range(start, start + 1000)], corpus[start : start + 1000])
    assert top.ids.shape == (3, 4)
    distances = ((queries[:, None, :] - corpus[None, :, :]) ** 2).sum(axis=2)
    want = [[f"r{i}" for i in row] for row in np.argsort(distances, axis=1)[:, :4]]
    assert top.result().ids == want
