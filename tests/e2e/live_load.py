"""A steady, bounded load generator for the live-cutover test (httpx, a few clients).

Writers own disjoint ids, so each id's last acknowledged write is known exactly (the
ledger); readers search with filters and fetch, with a user key per request. Every
request is bounded by a timeout; the run by a request count and a deadline.

Like a load balancer in front of several app instances, a request whose connection
broke (the instance died or refused it, or an idle keep-alive connection had expired) is
sent again to an instance still in ``bases`` (up to ``BALANCER_ATTEMPTS`` tries): every
request here is idempotent. A timeout or an error answer is not retried:
those are the router's failures to report.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

# Tries of a request whose connection broke: the instance died, or a pooled keep-alive
# connection was closed by the server meanwhile (both on one request when an instance is
# killed and the client's idle connection to the other one has expired).
BALANCER_ATTEMPTS = 3
FILTERS: list[dict[str, Any] | None] = [
    None,
    {"genre": "a"},
    {"year": {"$gte": 2010}},
    {"$and": [{"genre": {"$in": ["b", "c"]}}, {"year": {"$lt": 2015}}]},
]


@dataclass
class Sample:
    """One request as the client saw it."""

    kind: str
    phase: str
    seconds: float
    ok: bool
    side: str | None = None
    user: str | None = None
    error: str | None = None
    retried: bool = False  # its first connection broke; a balancer sent it again


class Load:
    """Writer and reader clients against the app, until ``stop()`` or a bound is hit."""

    def __init__(
        self,
        bases: list[str],
        writer_ids: list[list[str]],
        read_ids: list[str],
        *,
        dim: int,
        readers: int = 2,
        users: int = 200,
        think: float = 0.01,
        max_requests: int = 20_000,
        max_seconds: float = 120.0,
        seed: int = 0,
    ) -> None:
        self.bases = bases  # app instances: each request goes to a random one
        self.writer_ids = writer_ids
        self.read_ids = read_ids
        self.dim = dim
        self.readers = readers
        self.users = users
        self.think = think
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.seed = seed
        self.samples: list[Sample] = []
        self.ledger: dict[str, tuple[str, str | None]] = {}  # id -> (op, document)
        self.uncertain: set[str] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._count = 0
        self._lock = threading.Lock()

    def _go(self) -> bool:
        with self._lock:
            self._count += 1
            n = self._count
        return (
            not self._stop.is_set() and n <= self.max_requests and time.monotonic() < self.deadline
        )

    def _call(self, client: httpx.Client, kind: str, body: dict[str, Any], user: str | None) -> Any:
        at, started = time.monotonic(), time.perf_counter()
        error: str | None = None
        for attempt in range(BALANCER_ATTEMPTS):  # noqa: B007 - read after the loop
            base = random.choice(self.bases)
            try:
                r = client.post(f"{base}/{kind}", json=body)
                error = None
                break
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                error = repr(exc)[:300]
            except httpx.HTTPError as exc:
                error = repr(exc)[:300]
                break
        took, retried = time.perf_counter() - started, attempt > 0
        if error is None and r.status_code != 200:
            error = r.text[:300]
        if error is not None:
            self._record(Sample(kind, "?", took, False, None, user, error, retried), at, base)
            return None
        data = r.json()
        ok = Sample(kind, data["phase"], took, True, data.get("side"), user, None, retried)
        self._record(ok, at, base)
        return data

    def _record(self, sample: Sample, at: float, base: str) -> None:
        """Keep one request's sample (``at``: monotonic start; ``base``: the instance)."""
        self.samples.append(sample)

    def _writer(self, w: int) -> None:
        rng = random.Random(self.seed * 100 + w)
        ids = self.writer_ids[w]
        rev = 0
        with httpx.Client(timeout=10.0) as client:
            while self._go():
                rev += 1
                if rng.random() < 0.75:
                    chosen = rng.sample(ids, rng.randint(1, 3))
                    records = [
                        {
                            "id": i,
                            "vector": np.random.default_rng(rev * 7919 + w)
                            .normal(size=self.dim)
                            .tolist(),
                            "document": f"{i} w{w} r{rev}",
                            "metadata": {
                                "genre": rng.choice("abc"),
                                "year": rng.randint(2000, 2024),
                            },
                        }
                        for i in chosen
                    ]
                    if self._call(client, "upsert", {"records": records}, None) is None:
                        self.uncertain.update(chosen)
                    else:
                        for rec in records:
                            self.ledger[rec["id"]] = ("upsert", rec["document"])
                else:
                    chosen = rng.sample(ids, rng.randint(1, 2))
                    if self._call(client, "delete", {"ids": chosen}, None) is None:
                        self.uncertain.update(chosen)
                    else:
                        for i in chosen:
                            self.ledger[i] = ("delete", None)
                time.sleep(self.think * 3)

    def _reader(self, r: int) -> None:
        rng = random.Random(self.seed * 100 + 50 + r)
        vecs = np.random.default_rng(self.seed + r).normal(size=(64, self.dim))
        with httpx.Client(timeout=10.0) as client:
            while self._go():
                user = f"user-{rng.randrange(self.users)}"
                if rng.random() < 0.7:
                    body = {
                        "vector": vecs[rng.randrange(64)].tolist(),
                        "k": 10,
                        "filter": rng.choice(FILTERS),
                        "user": user,
                    }
                    self._call(client, "search", body, user)
                else:
                    body = {"ids": rng.sample(self.read_ids, 5), "user": user}
                    self._call(client, "fetch", body, user)
                time.sleep(self.think)

    def start(self) -> Load:
        """Start the writer and reader threads."""
        for w in range(len(self.writer_ids)):
            self._threads.append(threading.Thread(target=self._writer, args=(w,), daemon=True))
        for r in range(self.readers):
            self._threads.append(threading.Thread(target=self._reader, args=(r,), daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """Stop every client and wait for its last request."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def failures(self) -> list[Sample]:
        """Requests that did not succeed."""
        return [s for s in self.samples if not s.ok]

    def latency_by_phase(self) -> dict[str, dict[str, Any]]:
        """p50/p99 of reads and writes per phase label, in milliseconds."""
        out: dict[str, dict[str, Any]] = {}
        for phase in sorted({s.phase for s in self.samples if s.ok}):
            row: dict[str, Any] = {}
            for group, kinds in (("read", ("search", "fetch")), ("write", ("upsert", "delete"))):
                ms = [
                    s.seconds * 1000
                    for s in self.samples
                    if s.ok and s.phase == phase and s.kind in kinds
                ]
                if ms:
                    row[group] = {
                        "requests": len(ms),
                        "p50_ms": round(float(np.percentile(ms, 50)), 2),
                        "p99_ms": round(float(np.percentile(ms, 99)), 2),
                    }
            out[phase] = row
        return out
