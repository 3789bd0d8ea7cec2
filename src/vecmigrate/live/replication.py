"""The outbox side of ``MigrationRouter``: per-id write serialisation, held-entry
resolution, ordered replay under a lease, catch-up before a side takes primary writes,
and the background thread that replays, recovers and publishes metrics."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import TransientError
from vecmigrate.live.metrics import RouterMetrics
from vecmigrate.live.outbox import replay, resolve_held
from vecmigrate.live.phases import PhaseState, Side
from vecmigrate.live.shadow import ShadowReader
from vecmigrate.live.state import StateStore
from vecmigrate.model import CollectionSchema

log = logging.getLogger("vecmigrate.live.router")
_STRIPES = 64


class Replication(ABC):
    """State and behaviour the router's write path and its replayer thread share."""

    conns: dict[Side, Connector]
    names: dict[Side, str]
    collection: str
    state: StateStore
    instance: str
    metrics: RouterMetrics
    shadow: ShadowReader
    schema: CollectionSchema
    lease_ttl: float
    held_timeout: float
    alive_ttl: float
    replay_interval: float
    stats_interval: float

    def _init_replication(self) -> None:
        self._schemas: dict[Side, CollectionSchema] = {"source": self.schema}
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._side_locks: dict[Side, threading.Lock] = {
            "source": threading.Lock(),
            "target": threading.Lock(),
        }
        self._wake = threading.Event()
        self._stop = threading.Event()

    @abstractmethod
    def current(self) -> PhaseState:
        """The phase this instance routes by (the router re-reads it after a TTL)."""

    def schema_of(self, side: Side) -> CollectionSchema:
        """The schema of one side's collection (described once)."""
        if side not in self._schemas:
            self._schemas[side] = self.conns[side].describe(self.names[side])
        return self._schemas[side]

    @contextmanager
    def _locked(self, ids: Sequence[Any]) -> Iterator[None]:
        """Hold the stripe locks of these ids (in a fixed order: no deadlock)."""
        stripes = sorted({hash(str(i)) % _STRIPES for i in ids})
        for s in stripes:
            self._stripes[s].acquire()
        try:
            yield
        finally:
            for s in reversed(stripes):
                self._stripes[s].release()

    def _resolve(self, seq: int, secondary: Side, ids: list[Any], *, wait: float = 10.0) -> bool:
        """Turn a held entry into a ``sync`` of what the primary holds now (see
        ``outbox.resolve_held``): whatever the primary did with the write, both sides end
        equal. False when it stays held for now."""
        primary: Side = "source" if secondary == "target" else "target"
        done = resolve_held(
            self.state.outbox,
            self.collection,
            seq,
            secondary,
            self.conns[primary],
            self.names[primary],
            self.schema_of(primary),
            self.schema,
            ids,
            wait=wait,
        )
        if done:
            self.metrics.writes.labels(
                self.collection, secondary, "sync", "secondary", "queued"
            ).inc()
        return done

    def _resolve_quietly(
        self, seq: int, secondary: Side, ids: list[Any], wait: float = 10.0
    ) -> bool:
        try:
            return self._resolve(seq, secondary, ids, wait=wait)
        except Exception as exc:  # the primary is unreachable: _recover_held retries later
            log.debug("%s: cannot resolve outbox entry %d yet: %s", self.collection, seq, exc)
            return False

    # -- liveness: whose held entries may be resolved now ---------------------------------------
    def heartbeat(self) -> None:
        """Say this instance is alive for ``alive_ttl`` (renewed by the background thread):
        while it is, its held entries are its own to release."""
        self.state.outbox.acquire_lease(
            self.collection, f"alive:{self.instance}", self.instance, self.alive_ttl
        )

    def _writer_alive(self, writer: str | None) -> bool:
        if writer is None or writer == self.instance:
            return True  # unknown writers wait out held_timeout; this one is alive
        return self.state.outbox.lease_holder(self.collection, f"alive:{writer}") == writer

    def _recover_held(self) -> None:
        """Resolve held entries whose writer died (its heartbeat expired) at once, and any
        older than ``held_timeout``, oldest first: they block the replay behind them."""
        for entry in self.state.outbox.held(self.collection, 0):
            writer = entry.writer()
            dead = not self._writer_alive(writer)
            if not dead and time.time() - entry.created < self.held_timeout:
                continue
            ids = entry.batch().column("id").to_pylist()
            side: Side = "source" if entry.side == "source" else "target"
            if dead:  # another process's write: no writer of these ids here to wait for
                if not self._resolve_quietly(entry.seq, side, ids, 0.5):
                    return
                continue
            with self._locked(ids):  # a live writer of these ids in this process finishes first
                still = {e.seq for e in self.state.outbox.held(self.collection, 0)}
                if entry.seq in still and not self._resolve_quietly(entry.seq, side, ids, 0.5):
                    return  # the older ones first: try again on the next round

    def _recover_dead_writers(self) -> None:
        """The part of ``_recover_held`` safe under a write's own stripe locks."""
        for entry in self.state.outbox.held(self.collection, 0):
            if self._writer_alive(entry.writer()):
                continue
            ids = entry.batch().column("id").to_pylist()
            side: Side = "source" if entry.side == "source" else "target"
            if not self._resolve_quietly(entry.seq, side, ids, 0.2):
                return

    def _catch_up(self, side: Side, upto: int | None = None) -> None:
        """Before a side takes a primary write, wait until the writes queued for it up to
        outbox entry ``upto`` (default: all so far) are applied (by this instance if it
        holds the side's replay lease, else by the one that does), so an older queued op
        never lands after a newer one. This is what keeps instances whose cached phases
        differ for a moment (around a primary switch or a rollback) from reordering an id's
        writes: a write queued for a secondary passes its own entry's seq."""
        outbox = self.state.outbox
        if not outbox.has_pending(self.collection, side):
            return
        if upto is None:
            upto = outbox.last_seq(self.collection)
        deadline = time.monotonic() + self.lease_ttl
        while True:
            _, error = self._replay_side(side, block=True)
            head = outbox.pending(self.collection, side, limit=1)
            if not head or head[0].seq > upto:
                return
            self._recover_dead_writers()  # a writer killed mid-write must not block this one
            if time.monotonic() > deadline:
                raise TransientError(
                    f"{self.collection}: {side} has queued writes that cannot be applied "
                    f"yet ({error or 'a write in flight, or another replayer'}); retry"
                )
            self._wake.set()
            time.sleep(0.02)

    # -- outbox replay and bookkeeping -------------------------------------------------------
    def _replay_side(self, side: Side, *, block: bool) -> tuple[bool, str | None]:
        """One replay pass of a side under its lease; (empty afterwards?, last error)."""
        lock = self._side_locks[side]
        if not lock.acquire(blocking=block):
            return False, None  # another thread is replaying this side
        try:
            if not self.state.outbox.acquire_lease(
                self.collection, side, self.instance, self.lease_ttl
            ):
                return False, None  # another instance replays this side
            result = replay(
                self.state.outbox,
                self.collection,
                side,
                self.conns[side],
                self.names[side],
                self.schema_of(side),
                max_seconds=self.lease_ttl / 4,
                on_applied=lambda run: self.metrics.replayed.labels(self.collection, side).inc(
                    len(run)
                ),
            )
            if result.error:
                self.metrics.replay_failures.labels(self.collection, side).inc()
                log.debug("%s: replay to %s paused: %s", self.collection, side, result.error)
                return False, result.error
            if result.blocked:  # a primary write in flight: not a failure, no back-off
                return False, None
            return not self.state.outbox.has_pending(self.collection, side), None
        finally:
            lock.release()

    def _beat(self) -> None:
        """Renew this instance's liveness every ``stats_interval`` on a thread of its own:
        other instances resolve the held entries of an instance whose heartbeat lapsed
        from the primary, as a dead writer's, so the heartbeat must not wait for a replay
        pass or an engine call (a live writer's entry resolved before its primary write
        lands leaves the secondary without that write)."""
        while not self._stop.wait(self.stats_interval):
            try:
                self.heartbeat()
            except Exception as exc:  # the state store is down: renewed on the next round
                log.warning("%s: heartbeat: %s", self.collection, exc)

    def _loop(self) -> None:
        backoff: dict[Side, float] = {"source": 0.0, "target": 0.0}
        retry_at: dict[Side, float] = {"source": 0.0, "target": 0.0}
        next_stats = 0.0
        while not self._stop.is_set():
            self._wake.wait(self.replay_interval)
            self._wake.clear()
            try:
                now = time.monotonic()
                sides: tuple[Side, Side] = ("source", "target")
                for side in sides:
                    if now < retry_at[side]:
                        continue
                    if not self.state.outbox.has_pending(self.collection, side):
                        continue
                    _, error = self._replay_side(side, block=False)
                    if error is None:
                        backoff[side] = 0.0
                    else:  # exponential back-off up to 2 s while the side is failing
                        backoff[side] = min(2.0, max(0.05, backoff[side] * 2))
                        retry_at[side] = now + backoff[side]
                self.current()
                if now >= next_stats:
                    self._recover_held()
                    self.publish()
                    next_stats = now + self.stats_interval
            except Exception as exc:  # keep the replayer alive whatever happens
                self.metrics.errors.labels(self.collection, "replayer").inc()
                log.warning("%s: outbox replayer: %s", self.collection, exc)

    def publish(self) -> None:
        """Export outbox depth/age; store the phase this instance routes by (``cutover
        status``) and its shadow totals and samples (for gates)."""
        self.state.record_instance(self.collection, self.instance, self.current().version)
        for side, d in self.state.outbox.depth(self.collection).items():
            self.metrics.outbox_depth.labels(self.collection, side).set(d.pending)
            self.metrics.outbox_age.labels(self.collection, side).set(d.oldest_age)
            self.metrics.outbox_dead.labels(self.collection, side).set(d.dead)
        for version, totals in self.shadow.snapshot().items():
            self.state.record_shadow(self.collection, self.instance, version, totals)
        for version, payload in self.shadow.take_samples().items():
            self.state.record_shadow_queries(self.collection, version, payload)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every write queued before this call has been applied to its secondary
        (True), or ``timeout`` passes (False). Writes arriving meanwhile are not waited for,
        so this returns under steady load too."""
        outbox = self.state.outbox
        upto = outbox.last_seq(self.collection)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            heads = [
                outbox.pending(self.collection, side, limit=1) for side in ("source", "target")
            ]
            if all(not head or head[0].seq > upto for head in heads):
                return True
            self._wake.set()
            time.sleep(0.05)
        return False
