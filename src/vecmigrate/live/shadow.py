"""Shadow reads: the other system answers the same query off the request path.

A bounded worker pool runs the comparisons; when it is full the work is dropped and
counted, so shadowing never adds latency to the caller. ``fraction`` shadows a random
share of reads only, bounding the load shadowing adds to the other system. Each
comparison records overlap@k with the served result, the ids the shadow missed, and shadow
results that fail the request's filter (judged exactly with ``filters.evaluate`` on the
records fetched back).
Every ``sample_every``-th search is kept with both answers (``take_samples``), so the
shadow gate can judge each side's recall against exact ground truth (``shadow_recall.py``).
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector, Filter
from vecmigrate.errors import ConfigError
from vecmigrate.filters import evaluate, parse
from vecmigrate.live.metrics import RouterMetrics
from vecmigrate.live.state import ShadowTotals
from vecmigrate.model import CollectionSchema
from vecmigrate.retry import RetryPolicy, call_with_retry

log = logging.getLogger(__name__)
SAMPLE_SCHEMA = pa.schema(
    [
        ("vector", pa.list_(pa.float32())),
        ("k", pa.int32()),
        ("filter", pa.string()),  # the portable filter as JSON, null for none
        ("served", pa.list_(pa.string())),
        ("shadow", pa.list_(pa.string())),
        ("served_side", pa.string()),
    ]
)


def overlap_at_k(served: Sequence[Any], shadow: Sequence[Any], k: int) -> float:
    """|served ∩ shadow| over the size of the larger result (at most k); 1.0 when both
    are empty (an empty filtered result agreed on is agreement)."""
    size = min(k, max(len(served), len(shadow)))
    if size == 0:
        return 1.0
    return len(set(served[:k]) & set(shadow[:k])) / size


class ShadowReader:
    """Runs shadow comparisons on a bounded pool and sums them per phase version."""

    def __init__(
        self,
        metrics: RouterMetrics,
        collection: str,
        *,
        workers: int = 2,
        queue: int = 32,
        sample_every: int = 5,
        retry: RetryPolicy | None = None,
        fraction: float = 1.0,
        seed: int | None = None,
    ) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(
                f"shadow fraction {fraction!r} is not in (0, 1]",
                hint="1.0 shadows every read; 0.1 one read in ten (drawn at random)",
            )
        self.fraction = fraction
        self._draw = random.Random(seed)
        self.sample_every = sample_every
        # A comparison failing transiently (a read raced by a write) is asked again, as the
        # request path would ask its side again: only what stays failing is an error.
        self.retry = retry or RetryPolicy(attempts=1)
        self._seen = 0
        self._samples: dict[int, list[dict[str, Any]]] = {}
        self.metrics = metrics
        self.collection = collection
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vm-shadow")
        self._slots = threading.BoundedSemaphore(workers + queue)
        self._lock = threading.Lock()
        self.totals: dict[int, ShadowTotals] = {}

    def _totals(self, version: int) -> ShadowTotals:
        return self.totals.setdefault(version, ShadowTotals())

    def wanted(self) -> bool:
        """Whether to shadow this read: each with probability ``fraction``, drawn at random
        so that periodic traffic cannot line up with the choice."""
        return self.fraction >= 1.0 or self._draw.random() < self.fraction

    def submit(self, version: int, task: Callable[[], ShadowTotals]) -> bool:
        """Queue one comparison without blocking; False (and counted) when the pool is full."""
        if not self._slots.acquire(blocking=False):
            with self._lock:
                self._totals(version).dropped += 1
            self.metrics.shadow.labels(self.collection, "dropped").inc()
            return False

        def run() -> None:
            try:
                result, _ = call_with_retry(task, self.retry, what="shadow read")
            except Exception as exc:  # a shadow failure must never reach the caller
                log.debug("shadow read failed: %s", exc)
                result = ShadowTotals(errors=1)
                self.metrics.shadow.labels(self.collection, "error").inc()
            finally:
                self._slots.release()
            with self._lock:
                self._totals(version).add(result)

        self._pool.submit(run)
        return True

    def compare_search(
        self,
        conn: Connector,
        name: str,
        schema: CollectionSchema,
        vectors: np.ndarray,
        k: int,
        filter: Filter | None,
        served: list[list[Any]],
        *,
        served_side: str = "source",
        version: int = 0,
    ) -> ShadowTotals:
        """Ask the shadow side the same query and compare with what was served."""
        ids, _ = conn.search(name, vectors, k, filter=filter)
        self._sample(version, vectors, k, filter, served, ids, served_side)
        out = ShadowTotals()
        node = parse(filter, schema) if filter else None
        for s, t in zip(served, ids, strict=True):
            ov = overlap_at_k(s, t, k)
            out.comparisons += 1
            out.overlap_sum += ov
            out.min_overlap = min(out.min_overlap, ov)
            out.missing += len(set(s) - set(t))
            self.metrics.shadow_overlap.labels(self.collection).observe(ov)
        if node is not None:
            bad = self._violators(conn, name, schema, node, ids)
            if bad:  # judged again after a fresh search: a record rewritten between the
                # search and the fetch is not the engine's fault, one returned again is
                again, _ = conn.search(name, vectors, k, filter=filter)
                bad = self._violators(conn, name, schema, node, again) & bad
            out.violations += len(bad)
        self.metrics.shadow.labels(self.collection, "compared").inc(out.comparisons)
        self.metrics.shadow_missing.labels(self.collection).inc(out.missing)
        self.metrics.shadow_violations.labels(self.collection).inc(out.violations)
        return out

    @staticmethod
    def _violators(
        conn: Connector, name: str, schema: CollectionSchema, node: Any, ids: list[list[Any]]
    ) -> set[Any]:
        """Ids among the results whose record, fetched now, fails the filter."""
        wanted = sorted({i for row in ids for i in row}, key=str)
        if not wanted:
            return set()
        batch = conn.fetch(name, wanted, schema=schema)
        mask = evaluate(node, batch)
        return {i for i, ok in zip(batch.column("id").to_pylist(), mask, strict=True) if not ok}

    def compare_fetch(
        self,
        conn: Connector,
        name: str,
        schema: CollectionSchema,
        ids: list[Any],
        served: list[Any],
    ) -> ShadowTotals:
        """Fetch the same ids from the shadow side; count those it lacks."""
        got = set(conn.fetch(name, ids, schema=schema).column("id").to_pylist())
        missing = len(set(served) - got)
        self.metrics.shadow.labels(self.collection, "compared").inc()
        self.metrics.shadow_missing.labels(self.collection).inc(missing)
        # a fetch has no ranking: overlap is the share of served ids the shadow has
        ov = 1.0 if not served else 1.0 - missing / len(served)
        self.metrics.shadow_overlap.labels(self.collection).observe(ov)
        return ShadowTotals(comparisons=1, overlap_sum=ov, min_overlap=ov, missing=missing)

    def _sample(
        self,
        version: int,
        vectors: np.ndarray,
        k: int,
        filter: Filter | None,
        served: list[list[Any]],
        shadow: list[list[Any]],
        served_side: str,
    ) -> None:
        with self._lock:
            for q, a, b in zip(vectors, served, shadow, strict=True):
                self._seen += 1
                if self._seen % self.sample_every:
                    continue
                self._samples.setdefault(version, []).append(
                    {
                        "vector": np.asarray(q, np.float32).tolist(),
                        "k": k,
                        "filter": json.dumps(filter) if filter else None,
                        "served": [str(i) for i in a],
                        "shadow": [str(i) for i in b],
                        "served_side": served_side,
                    }
                )

    def take_samples(self) -> dict[int, bytes]:
        """The sampled searches since the last call, per phase version, as Arrow IPC."""
        from vecmigrate.live.outbox import encode_batch

        with self._lock:
            samples, self._samples = self._samples, {}
        return {
            v: encode_batch(pa.RecordBatch.from_pylist(rows, schema=SAMPLE_SCHEMA))
            for v, rows in samples.items()
        }

    def snapshot(self) -> dict[int, ShadowTotals]:
        """A copy of the running totals per phase version."""
        with self._lock:
            return {v: ShadowTotals(**vars(t)) for v, t in self.totals.items()}

    def close(self) -> None:
        """Finish queued comparisons and stop the pool."""
        self._pool.shutdown(wait=True, cancel_futures=True)
