"""Exact k-nearest neighbours computed from the data itself, in bounded memory.

The corpus streams past the queries in batches; each batch is one BLAS matrix product
(float32, all cores) and a running top-k is merged with ``argpartition``. Memory is
O(queries x (k + batch)), whatever the corpus size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from vecmigrate.model import Metric


def prepare_queries(queries: np.ndarray, metric: Metric) -> np.ndarray:
    """Queries as float32 (unit length for cosine)."""
    q: np.ndarray = np.ascontiguousarray(queries, dtype=np.float32)
    if metric is Metric.COSINE:
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        q = (q / np.where(norms > 0, norms, 1)).astype(np.float32)
    return q


def similarity(q: np.ndarray, corpus: np.ndarray, metric: Metric) -> np.ndarray:
    """Higher is closer: cosine similarity, inner product, or negated squared L2.

    ``q`` must come from ``prepare_queries``; the corpus is normalised here for cosine.
    """
    c = np.asarray(corpus, dtype=np.float32)
    if metric is Metric.COSINE:
        norms = np.linalg.norm(c, axis=1)
        sims: np.ndarray = (q @ c.T) / np.where(norms > 0, norms, 1)[None, :]
        return sims
    dots: np.ndarray = q @ c.T
    if metric is Metric.DOT:
        return dots
    # -(|q|^2 - 2 q.c + |c|^2); |q|^2 is constant per query but kept so values are true distances.
    l2: np.ndarray = -(
        np.einsum("ij,ij->i", q, q)[:, None] - 2 * dots + np.einsum("ij,ij->i", c, c)[None, :]
    )
    return l2


@dataclass
class GroundTruth:
    """Exact top-k row positions and similarities per query (best first)."""

    ids: list[list[object]]
    scores: np.ndarray  # (queries, k) similarities, descending

    def kth_score(self) -> np.ndarray:
        """The k-th best true similarity per query (ties at or above it are hits)."""
        return self.scores[:, -1]


class TopK:
    """Running exact top-k over corpus batches, keeping only the ids of the k best per
    query: memory stays flat however many records are scanned (the ids of every scanned
    record were kept: 10M string ids, ~900 MB)."""

    def __init__(self, queries: np.ndarray, k: int, metric: Metric) -> None:
        self.q = prepare_queries(queries, metric)
        self.k = k
        self.metric = metric
        n = len(self.q)
        self.scores = np.full((n, 0), -np.inf, dtype=np.float32)
        self.ids: np.ndarray = np.empty((n, 0), dtype=object)

    def add(
        self, ids: Sequence[object], vectors: np.ndarray, mask: np.ndarray | None = None
    ) -> None:
        """Merge one corpus batch; ``mask`` (rows, or queries x rows) keeps only True rows."""
        if len(ids) == 0:
            return
        sims = similarity(self.q, vectors, self.metric).astype(np.float32, copy=False)
        if mask is not None:
            sims = np.where(mask, sims, np.float32(-np.inf))
        merged = np.concatenate([self.scores, sims], axis=1)
        k = min(self.k, merged.shape[1])
        part = np.argpartition(-merged, k - 1, axis=1)[:, :k]
        self.scores = np.take_along_axis(merged, part, axis=1)
        # Columns past the kept ones are this batch's rows.
        kept = self.ids.shape[1]
        batch = np.empty(len(ids), dtype=object)
        batch[:] = list(ids)  # element by element: a tuple id stays one id
        new = part >= kept
        chosen: np.ndarray = np.empty(part.shape, dtype=object)
        chosen[new] = batch[part[new] - kept]
        if kept:
            chosen[~new] = np.take_along_axis(self.ids, np.minimum(part, kept - 1), axis=1)[~new]
        self.ids = chosen

    def result(self) -> GroundTruth:
        """Top-k ids, best first (rows excluded by a mask are dropped), and scores."""
        order = np.argsort(-self.scores, axis=1, kind="stable")
        scores = np.take_along_axis(self.scores, order, axis=1)
        ranked = np.take_along_axis(self.ids, order, axis=1)
        ids = [
            [i for i, s in zip(row_i, row_s, strict=True) if np.isfinite(s)]
            for row_i, row_s in zip(ranked.tolist(), scores, strict=True)
        ]
        return GroundTruth(ids=ids, scores=scores)


def exact_topk(
    batches: Iterable[tuple[list[object], np.ndarray]], queries: np.ndarray, k: int, metric: Metric
) -> GroundTruth:
    """Exact top-k of ``queries`` over a stream of (ids, vectors) corpus batches."""
    top = TopK(queries, k, metric)
    for ids, vectors in batches:
        top.add(ids, vectors)
    return top.result()
