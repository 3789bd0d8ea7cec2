"""The shared state of a live migration: phase, audit trail, shadow-read totals, outbox.

Every application instance reads the phase from the same store (re-read after a short
TTL), so they agree; ``vecmigrate cutover`` changes it with compare-and-set and records
who, when, from, to and the gate results. ``open_state`` picks the store from a URI:
``sqlite:///path/state.db`` (one host), ``postgresql://user@host:5432/db?password=env:X``
or ``redis://host:6379/0?password=env:X`` (many hosts); all speak the interface below.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

from vecmigrate.errors import ConfigError, VecmigrateError
from vecmigrate.live.outbox import Outbox
from vecmigrate.live.phases import PhaseState
from vecmigrate.uri import ConnectionURI, path_uri, uri_scheme


class PhaseConflictError(VecmigrateError):
    """The phase changed under us (another operator or instance): re-read and retry."""


@dataclass(frozen=True)
class PhaseEvent:
    """One audited phase change."""

    seq: int
    collection: str
    at: float
    actor: str
    action: str
    before: PhaseState
    after: PhaseState
    gates: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form, as ``cutover status --json`` prints it."""
        return {
            "seq": self.seq,
            "collection": self.collection,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
            "actor": self.actor,
            "action": self.action,
            "from": self.before.label,
            "to": self.after.label,
            "version": self.after.version,
            "gates": self.gates,
            "note": self.note,
        }


@dataclass
class ShadowTotals:
    """Shadow-read comparisons summed over a phase (per instance, or over all of them)."""

    comparisons: int = 0
    overlap_sum: float = 0.0
    min_overlap: float = 1.0
    missing: int = 0
    violations: int = 0
    errors: int = 0
    dropped: int = 0

    @property
    def mean_overlap(self) -> float | None:
        """Mean overlap@k of the compared reads (None before the first one)."""
        return self.overlap_sum / self.comparisons if self.comparisons else None

    def add(self, other: ShadowTotals) -> None:
        """Accumulate ``other`` into this one."""
        self.comparisons += other.comparisons
        self.overlap_sum += other.overlap_sum
        self.min_overlap = min(self.min_overlap, other.min_overlap)
        self.missing += other.missing
        self.violations += other.violations
        self.errors += other.errors
        self.dropped += other.dropped

    def to_json(self) -> dict[str, Any]:
        """JSON form with the mean."""
        return {**asdict(self), "mean_overlap": self.mean_overlap}


class StateStore(ABC):
    """Phase, audit events and shadow totals of live migrations, plus their outbox."""

    @property
    @abstractmethod
    def outbox(self) -> Outbox:
        """The durable outbox of secondary writes kept in the same store."""

    @abstractmethod
    def get(self, collection: str) -> PhaseState:
        """The current phase (``source-only``, version 0, when never set)."""

    @abstractmethod
    def transition(
        self,
        collection: str,
        expected: PhaseState,
        new: PhaseState,
        *,
        actor: str,
        action: str,
        gates: list[dict[str, Any]] | None = None,
        note: str | None = None,
    ) -> PhaseEvent:
        """Compare-and-set the phase and append the audit event, atomically.

        Raises PhaseConflictError when the stored version is not ``expected.version``.
        """

    @abstractmethod
    def events(self, collection: str, limit: int = 50) -> list[PhaseEvent]:
        """The latest audit events, oldest first."""

    @abstractmethod
    def record_shadow(
        self, collection: str, instance: str, version: int, totals: ShadowTotals
    ) -> None:
        """Store one instance's running shadow totals for a phase version (replaces)."""

    @abstractmethod
    def shadow_totals(self, collection: str, version: int) -> ShadowTotals:
        """Shadow totals of every instance for a phase version."""

    @abstractmethod
    def record_instance(self, collection: str, instance: str, version: int) -> None:
        """An application instance routes by phase ``version`` now (its heartbeat)."""

    @abstractmethod
    def instances(self, collection: str) -> dict[str, tuple[int, float]]:
        """Each instance's routed phase version and when it last said so (epoch seconds)."""

    @abstractmethod
    def record_shadow_queries(self, collection: str, version: int, payload: bytes) -> None:
        """Keep a batch of sampled shadow queries (``shadow.py``) of a phase version; a
        version keeps at most ``SHADOW_QUERY_BATCHES`` of them."""

    @abstractmethod
    def shadow_queries(self, collection: str, version: int) -> list[bytes]:
        """The sampled shadow query batches of a phase version, oldest first."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


SHADOW_QUERY_BATCHES = 50


def open_state(uri: str) -> StateStore:
    """Open the state store a URI names: ``sqlite:///path``, ``postgresql://...`` or
    ``redis://...``."""
    parsed = ConnectionURI.parse(uri if uri_scheme(uri) else path_uri("sqlite", uri))
    if parsed.scheme == "sqlite":
        from vecmigrate.live.sqlstore import SqliteStateStore

        return SqliteStateStore(parsed.local_path)
    if parsed.scheme in ("postgresql", "postgres", "pgvector"):
        from vecmigrate.live.sqlstore import PostgresStateStore

        return PostgresStateStore(parsed)
    if parsed.scheme in ("redis", "rediss"):
        from vecmigrate.live.redisstore import RedisStateStore

        return RedisStateStore(parsed)
    raise ConfigError(
        f"unknown state store scheme {parsed.scheme!r}",
        hint="use sqlite:///path/state.db, postgresql://user@host:5432/db or redis://host:6379/0",
    )


def gates_json(gates: list[Any]) -> str:
    """Gate results as stored in an audit event."""
    return json.dumps(gates, default=str)
