"""Retries with exponential back-off and full jitter, for TransientError only."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from vecmigrate.errors import TransientError

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
                    hint="the job is resumable: fix the cause and rerun with --resume",
                ) from exc
            wait = policy.delay(attempt, rng)
            log.warning("%s failed (%s); retry %d in %.2fs", what, exc.message, attempt, wait)
            sleep(wait)
    raise AssertionError("unreachable")
