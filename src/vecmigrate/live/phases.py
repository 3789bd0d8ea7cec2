"""Cutover phases and the routing each one implies.

``source-only -> dual-write -> shadow-read -> canary(p%) -> target-primary -> target-only``.
Every phase but ``target-only`` can be rolled back to an earlier one: until then the
source keeps receiving every write, so it is a complete, current copy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from vecmigrate.errors import ConfigError

Side = Literal["source", "target"]
CANARY_BUCKETS = 10_000


class Phase(str, Enum):
    """One step of a live migration, by its portable name."""

    SOURCE_ONLY = "source-only"
    DUAL_WRITE = "dual-write"
    SHADOW_READ = "shadow-read"
    CANARY = "canary"
    TARGET_PRIMARY = "target-primary"
    TARGET_ONLY = "target-only"

    @property
    def rank(self) -> int:
        """Position in the forward order (0 = source-only)."""
        return ORDER.index(self)


ORDER: tuple[Phase, ...] = tuple(Phase)


@dataclass(frozen=True)
class PhaseState:
    """The phase a collection is in, as every application instance must see it."""

    phase: Phase = Phase.SOURCE_ONLY
    canary_percent: float = 0.0
    version: int = 0

    @property
    def label(self) -> str:
        """``canary:10`` for a canary, the phase name otherwise."""
        if self.phase is Phase.CANARY:
            return f"canary:{self.canary_percent:g}"
        return str(self.phase.value)

    def primary(self) -> Side:
        """The side whose write decides the response (the system of record)."""
        return "target" if self.phase.rank >= Phase.TARGET_PRIMARY.rank else "source"

    def secondary(self) -> Side | None:
        """The side that receives every write through the outbox, if any."""
        if self.phase in (Phase.SOURCE_ONLY, Phase.TARGET_ONLY):
            return None
        return "source" if self.primary() == "target" else "target"

    def read_side(self, key: str | None) -> Side:
        """Where a read with request key ``key`` is served from (sticky in a canary).

        A canary read without a key goes to the source: without a key there is nothing
        to keep one user on one system, and the source is the system of record.
        """
        if self.phase is Phase.CANARY:
            if key is None:
                return "source"
            return "target" if canary_bucket(key) < self.canary_percent * 100 else "source"
        return "target" if self.phase.rank >= Phase.TARGET_PRIMARY.rank else "source"

    def fallback_side(self, served: Side) -> Side | None:
        """Where a read goes when ``served`` fails or times out: the source, which holds
        every acknowledged write until target-only (the target may still lag behind)."""
        if served == "target" and self.phase is not Phase.TARGET_ONLY:
            return "source"
        return None

    def shadow_side(self, served: Side) -> Side | None:
        """The other side, queried off the request path to compare, when this phase does."""
        if self.phase in (Phase.SHADOW_READ, Phase.CANARY, Phase.TARGET_PRIMARY):
            return "target" if served == "source" else "source"
        return None


def canary_bucket(key: str) -> int:
    """A stable bucket in ``[0, 10000)`` for a request key: same key, same bucket, on every
    instance and every run (a keyed hash, not Python's per-process ``hash``)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % CANARY_BUCKETS


def parse_phase(name: str) -> Phase:
    """A phase by name; ConfigError lists the valid ones."""
    try:
        return Phase(name)
    except ValueError:
        valid = ", ".join(p.value for p in ORDER)
        raise ConfigError(f"unknown phase {name!r}", hint=f"one of {valid}") from None


def next_state(
    current: PhaseState, *, to: Phase | None = None, percent: float | None = None
) -> PhaseState:
    """The state ``advance`` moves to: the next phase, or a larger canary percentage.

    From a canary, ``percent`` above the current one stays in the canary; without it the
    next phase is ``target-primary``. Skipping phases is refused: each one is a check.
    """
    if percent is not None and not 0 < percent <= 100:
        raise ConfigError(f"canary percent must be in (0, 100], got {percent:g}")
    if current.phase is Phase.TARGET_ONLY:
        raise ConfigError("already target-only: the migration is complete")
    if current.phase is Phase.CANARY and percent is not None and to in (None, Phase.CANARY):
        if percent <= current.canary_percent:
            raise ConfigError(
                f"canary is at {current.canary_percent:g}%; advance needs a larger percent",
                hint="use rollback to lower it",
            )
        return PhaseState(Phase.CANARY, percent, current.version + 1)
    nxt = ORDER[current.phase.rank + 1]
    if to is not None and to is not nxt:
        raise ConfigError(
            f"cannot advance from {current.phase.value} to {to.value}",
            hint=f"the next phase is {nxt.value}; phases are not skipped",
        )
    if nxt is Phase.CANARY:
        return PhaseState(nxt, percent if percent is not None else 10.0, current.version + 1)
    if percent is not None:
        raise ConfigError(f"--percent applies to a canary, not to {nxt.value}")
    return PhaseState(nxt, 0.0, current.version + 1)


def rollback_state(
    current: PhaseState, *, to: Phase | None = None, percent: float | None = None
) -> PhaseState:
    """The state ``rollback`` moves to: the previous phase by default, or any earlier one
    (a canary may also be lowered to a smaller percent). Refused from target-only and
    source-only."""
    if current.phase is Phase.TARGET_ONLY:
        raise ConfigError(
            "target-only cannot be rolled back: the source no longer receives writes",
            hint="migrate back with copy + a new cutover instead",
        )
    if current.phase is Phase.SOURCE_ONLY:
        raise ConfigError("source-only is the first phase: nothing to roll back")
    if current.phase is Phase.CANARY and percent is not None and to in (None, Phase.CANARY):
        if not 0 < percent < current.canary_percent:
            raise ConfigError(
                f"rollback of a {current.canary_percent:g}% canary needs a smaller percent"
            )
        return PhaseState(Phase.CANARY, percent, current.version + 1)
    dest = to if to is not None else ORDER[current.phase.rank - 1]
    if dest.rank >= current.phase.rank:
        raise ConfigError(f"cannot roll back from {current.phase.value} to {dest.value}")
    pct = (percent if percent is not None else 10.0) if dest is Phase.CANARY else 0.0
    return PhaseState(dest, pct, current.version + 1)
