"""Retries with exponential back-off and full jitter, for TransientError only."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

import pyarrow as pa

from vecmigrate.errors import TransientError
from vecmigrate.model import CollectionSchema, Partition, ResumeToken

T = TypeVar("T")
log = logging.getLogger("vecmigrate.retry")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure."""

    attempts: int = 6
    base_seconds: float = 0.2
    max_seconds: float = 10.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter back-off for the given (1-based) failed attempt."""
        return rng.uniform(0, min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1)))


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    hint: str = "the job is resumable: fix the cause and rerun with --resume",
) -> tuple[T, int]:
    """Run ``fn``; on TransientError wait and try again. Returns (result, retries used)."""
    rng = rng or random.Random()
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn(), attempt - 1
        except TransientError as exc:
            if attempt == policy.attempts:
                raise TransientError(
                    f"{what} still failing after {attempt} attempts: {exc.message}",
                    hint=hint,
                ) from exc
            wait = policy.delay(attempt, rng)
            log.warning("%s failed (%s); retry %d in %.2fs", what, exc.message, attempt, wait)
            sleep(wait)
    raise AssertionError("unreachable")


def resumable_scan(
    scan: Callable[[ResumeToken | None], Iterator[tuple[pa.RecordBatch, ResumeToken]]],
    policy: RetryPolicy | None = None,
    *,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
    """The batches of ``scan(token)``; a TransientError (a dropped connection, an engine
    scan broken by concurrent writes) restarts it after the last batch yielded, with
    back-off, so nothing is read twice or skipped. Consecutive failures beyond
    ``policy.attempts`` raise."""
    policy = policy or RetryPolicy()
    token: ResumeToken | None = None
    failures, rng = 0, random.Random()
    while True:
        try:
            for batch, after in scan(token):
                token, failures = after, 0
                yield batch, after
            return
        except TransientError as exc:
            failures += 1
            if failures >= policy.attempts:
                raise TransientError(
                    f"{what} still failing after {failures} attempts: {exc.message}"
                ) from exc
            wait = policy.delay(failures, rng)
            log.warning("%s failed (%s); resuming in %.2fs", what, exc.message, wait)
            sleep(wait)


class Scannable(Protocol):
    """What ``scan_resuming`` needs of a connector."""

    def scan(
        self,
        name: str,
        partition: Partition,
        resume: ResumeToken | None = None,
        *,
        schema: CollectionSchema | None = None,
        batch_rows: int = 1000,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]: ...


def scan_resuming(
    conn: Scannable,
    name: str,
    partition: Partition,
    *,
    schema: CollectionSchema | None = None,
    batch_rows: int = 1000,
    policy: RetryPolicy | None = None,
) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
    """``conn.scan`` of one partition, resumed after transient failures (``resumable_scan``)."""

    def scan(token: ResumeToken | None) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        return conn.scan(name, partition, token, schema=schema, batch_rows=batch_rows)

    return resumable_scan(scan, policy, what=f"scan of {name!r}")
