from __future__ import annotations

import numpy as np
import pytest

from vecmigrate.exact import exact_topk
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
