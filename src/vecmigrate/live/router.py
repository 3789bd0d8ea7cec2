"""``MigrationRouter``: the application-side router of a live migration.

The application calls ``upsert``/``delete``/``search``/``fetch`` on the router instead of
on one store; the phase in the shared state store decides where each call goes:

* writes: the primary's write decides the response; the secondary receives the same op
  through the durable outbox, replayed in order by a background thread (so a slow or
  failing secondary never fails or slows a request);
* reads: served by the phase's read side (sticky per request key in a canary); in
  shadow phases the other side answers the same query off the request path and the two
  are compared (``shadow.py``).

Writes to the same id are serialised inside one instance (striped locks), and before a
side takes primary writes its outbox backlog is applied first, so an id's last
acknowledged write is the last one applied on both sides.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeAlias, TypeVar

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector, Filter
from vecmigrate.errors import DataError, TransientError
from vecmigrate.live.metrics import RouterMetrics
from vecmigrate.live.outbox import Op, encode_batch, ids_batch, queue_reconcile
from vecmigrate.live.phases import PhaseState, Side
from vecmigrate.live.replication import Replication
from vecmigrate.live.shadow import ShadowReader
from vecmigrate.live.state import StateStore
from vecmigrate.records import build_batch, conform, table_to_batch
from vecmigrate.retry import RetryPolicy, call_with_retry

log = logging.getLogger(__name__)
T = TypeVar("T")
Records: TypeAlias = pa.RecordBatch | pa.Table | Sequence[Mapping[str, Any]]

# Primary writes: up to 5 attempts, about 1.5 s of back-off in all.
WRITE_RETRY = RetryPolicy(attempts=5, base_seconds=0.05, max_seconds=1.0)
# A read with no other side to fall back to (source-only, target-only) that fails
# transiently (a scan raced by a write, a restarting engine) is asked again this often.
READ_RETRY = RetryPolicy(attempts=3, base_seconds=0.05, max_seconds=0.5)


class MigrationRouter(Replication):
    """Routes one collection's reads and writes by the phase in ``state``."""

    def __init__(
        self,
        source: Connector,
        target: Connector,
        collection: str,
        state: StateStore,
        *,
        target_collection: str | None = None,
        instance: str | None = None,
        state_ttl: float = 1.0,
        shadow_workers: int = 2,
        shadow_queue: int = 32,
        shadow_fraction: float = 1.0,
        replay_interval: float = 0.1,
        stats_interval: float = 1.0,
        lease_ttl: float = 10.0,
        held_timeout: float = 30.0,
        alive_ttl: float = 5.0,
        metrics: RouterMetrics | None = None,
        read_timeout: float = 5.0,
        write_retry: RetryPolicy = WRITE_RETRY,
        start: bool = True,
    ) -> None:
        self.conns: dict[Side, Connector] = {"source": source, "target": target}
        self.names: dict[Side, str] = {
            "source": collection,
            "target": target_collection or collection,
        }
        self.collection = collection
        self.state = state
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.state_ttl = state_ttl
        self.replay_interval = replay_interval
        self.stats_interval = stats_interval
        self.lease_ttl = lease_ttl
        self.held_timeout = held_timeout
        self.alive_ttl = max(alive_ttl, 2 * stats_interval)
        self.read_timeout = read_timeout
        # A primary write failing transiently (a deadlock, a busy or restarting engine) is
        # tried again within this budget before the application sees the error: writes are
        # idempotent, and the held outbox entry waits meanwhile.
        self.write_retry = write_retry
        # Reads that can fall back run here: a hung side costs read_timeout, not the request.
        self._reads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vm-read")
        self.metrics = metrics or RouterMetrics(collection)
        self.shadow = ShadowReader(
            self.metrics,
            collection,
            workers=shadow_workers,
            queue=shadow_queue,
            retry=READ_RETRY,
            fraction=shadow_fraction,
        )
        self.schema = source.describe(collection)  # the canonical layout of payloads
        self._init_replication()
        self.heartbeat()
        self._state_lock = threading.Lock()
        self._cached = state.get(collection)
        self._cached_at = time.monotonic()
        self.metrics.set_phase(self._cached)
        self._threads: list[threading.Thread] = []
        if start:
            self._threads = [
                threading.Thread(target=self._loop, name="vm-outbox", daemon=True),
                threading.Thread(target=self._beat, name="vm-heartbeat", daemon=True),
            ]
            for thread in self._threads:
                thread.start()

    # -- phase -----------------------------------------------------------------------------
    def current(self) -> PhaseState:
        """The phase this instance routes by: the stored one, re-read after ``state_ttl``."""
        if time.monotonic() - self._cached_at < self.state_ttl:
            return self._cached
        return self.refresh()

    def refresh(self) -> PhaseState:
        """Re-read the phase from the state store now."""
        with self._state_lock:
            try:
                fresh = self.state.get(self.collection)
            except Exception as exc:
                # Nobody can change the phase while the store is unreachable either: keep
                # routing by the last one read (writes that need the outbox still fail).
                self.metrics.errors.labels(self.collection, "state-store").inc()
                log.warning("%s: cannot re-read the phase: %s", self.collection, exc)
                self._cached_at = time.monotonic()
                return self._cached
            if fresh.version != self._cached.version:
                log.info("%s: phase %s -> %s", self.collection, self._cached.label, fresh.label)
                self.metrics.set_phase(fresh)
            self._cached, self._cached_at = fresh, time.monotonic()
            return fresh

    # -- writes ----------------------------------------------------------------------------
    def _to_batch(self, records: Records) -> pa.RecordBatch:
        if isinstance(records, pa.Table):
            records = table_to_batch(records)
        if isinstance(records, pa.RecordBatch):
            return conform(records, self.schema)
        rows: list[Mapping[str, Any]] = list(records)
        vectors = {v.name: self._vectors(rows, v.name, v.dim) for v in self.schema.vectors}
        return build_batch(
            self.schema,
            [r["id"] for r in rows],
            vectors,
            documents=[r.get("document") for r in rows] if self.schema.has_document else None,
            metadata=[r.get("metadata") for r in rows],
        )

    def _vectors(self, rows: list[Mapping[str, Any]], field: str, dim: int) -> np.ndarray:
        """One (n, dim) float32 matrix from per-record vectors; DataError names the record."""
        out = np.empty((len(rows), dim), dtype=np.float32)
        for i, r in enumerate(rows):
            if "id" not in r:
                raise DataError("record without an id", collection=self.collection, field="id")
            try:
                out[i] = np.asarray(r[field], dtype=np.float32).reshape(dim)
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(
                    f"needs a {dim}-d vector ({type(exc).__name__}: {exc})",
                    collection=self.collection,
                    record_id=r["id"],
                    field=field,
                ) from None
        return out

    def upsert(self, records: Records) -> None:
        """Insert or replace records by id (a batch, a table, or dicts with ``id``, the
        vector field(s), ``document`` and ``metadata``)."""
        batch = _last_per_id_sorted(self._to_batch(records))
        if batch.num_rows:
            self._write("upsert", batch, batch.column("id").to_pylist())

    def delete(self, ids: Sequence[Any]) -> None:
        """Delete records by id (missing ids are a no-op)."""
        ids = sorted(set(ids), key=str)
        if ids:
            self._write("delete", ids_batch(ids, self.schema.id_arrow_type()), ids)

    def _write(self, op: Op, batch: pa.RecordBatch, ids: list[Any]) -> None:
        """Primary write decides; the secondary's copy is appended *held* before it and
        released after, so a write the primary may have applied is never missing from the
        outbox, even if this process dies in between (``_recover_held`` resolves it)."""
        self._routed_write(op, ids, lambda side: self._apply(side, op, batch, ids), (op, batch))

    def write_single(
        self, side: Side, ids: Sequence[Any], apply: Callable[[Side], None], op: str
    ) -> bool:
        """``apply(side)`` as the write of ``ids`` when the phase writes to ``side`` alone
        (no secondary: source-only, target-only), under the discipline of every write:
        the ids' locks, ``side``'s outbox backlog applied first, ``write_retry``, the write
        metrics, and the fence (a write that lands after a phase with a secondary began is
        queued for it). For a write the router cannot express as a batch (a dialect's own
        request passed through). False, with nothing written, when the phase now has a
        secondary or another primary: the caller takes its normal path."""
        return self._routed_write(op, list(ids), apply, None, only=side)

    def _routed_write(
        self,
        op: str,
        ids: list[Any],
        apply: Callable[[Side], None],
        queued: tuple[Op, pa.RecordBatch] | None,
        *,
        only: Side | None = None,
    ) -> bool:
        """The write path of ``_write`` and ``write_single``: ``queued`` is the op and batch
        the outbox queues for a secondary; without them (``only``), a phase that has a
        secondary or another primary than ``only`` writes nothing and returns False."""
        with self._locked(ids):
            state = self.current()
            primary, secondary = state.primary(), state.secondary()
            if queued is None and (secondary is not None or primary != only):
                return False
            seq = None
            if secondary is not None and queued is not None:
                payload = encode_batch(queued[1], writer=self.instance)
                seq = self.state.outbox.append(
                    self.collection, secondary, queued[0], payload, held=True
                )
            started = time.perf_counter()
            try:
                # Up to ``seq``, not to the outbox's end when the catch-up began: around a
                # primary switch an instance still on the old phase may queue its write of
                # these ids for this primary (its secondary) after that moment but before
                # this entry; applied after this write, it would overwrite it.
                self._catch_up(primary, upto=seq)
                if seq is not None and secondary is not None:
                    self._after_older_writes(seq, secondary, ids)
                call_with_retry(
                    lambda: apply(primary),
                    self.write_retry,
                    what=f"{primary} {op} of {self.collection!r}",
                    hint="the write was not acknowledged: the application may send it again",
                )
            except Exception:
                self.metrics.writes.labels(self.collection, primary, op, "primary", "error").inc()
                self.metrics.errors.labels(self.collection, f"{primary}-write").inc()
                if seq is not None and secondary is not None:
                    self._resolve_quietly(seq, secondary, ids)
                raise
            finally:
                self.metrics.latency.labels(self.collection, primary, op).observe(
                    time.perf_counter() - started
                )
            self.metrics.writes.labels(self.collection, primary, op, "primary", "ok").inc()
            if seq is not None and secondary is not None:
                if not self.state.outbox.mark_ready(seq):
                    # Another instance took this one for dead (its heartbeat lapsed: a
                    # stalled process) and resolved the entry from the primary, maybe
                    # before this write landed: queue the primary's value once more.
                    self._queue_sync(primary, secondary, ids)
                self.metrics.writes.labels(
                    self.collection, secondary, op, "secondary", "queued"
                ).inc()
            else:
                self._fence(state, ids)
        # The replayer is not woken per write: it applies what is queued every
        # ``replay_interval``, one engine call per window of entries. Waking it per write
        # cost the secondary one call per write (a Chroma upsert ~10 ms of server CPU):
        # under dual-write load that CPU came out of the primary's reads.
        return True

    def sole_side(self, state: PhaseState) -> Side | None:
        """The side that alone takes every write and answers every read in ``state`` (no
        secondary, no fallback, no shadow reads: source-only and target-only), else None."""
        side = state.primary()
        if (
            state.secondary() is not None
            or state.read_side(None) != side
            or state.fallback_side(side) is not None
            or state.shadow_side(side) is not None
        ):
            return None
        return side

    def _after_older_writes(self, seq: int, secondary: Side, ids: list[Any]) -> None:
        """Wait while an older held entry (another instance's write in flight) touches
        ``ids``: the primary then applies each id's writes in outbox order, which is the
        order the secondary replays them, so both end with the same last value."""
        wanted = {str(i) for i in ids}
        deadline = time.monotonic() + self.lease_ttl
        while True:
            older = [
                e
                for e in self.state.outbox.held(self.collection, 0)
                if e.seq < seq
                and e.side == secondary
                and wanted.intersection(map(str, e.batch().column("id").to_pylist()))
            ]
            if not older:
                return
            if time.monotonic() > deadline:
                raise TransientError(
                    f"{self.collection}: another instance's write of the same id(s) is still "
                    f"in flight (outbox entry {older[0].seq}); retry"
                )
            self._recover_dead_writers()
            time.sleep(0.005)

    def _queue_sync(self, primary: Side, secondary: Side, ids: list[Any]) -> None:
        """Queue the primary's current value of ``ids`` for the secondary (a held ``sync``
        entry, resolved from the primary): they reach both sides like any dual write."""
        queue_reconcile(
            self.state.outbox,
            self.collection,
            secondary,
            self.conns[primary],
            self.names[primary],
            self.schema_of(primary),
            self.schema,
            ids,
        )

    def _fence(self, used: PhaseState, ids: list[Any]) -> Side | None:
        """A write routed without a secondary (source-only) whose primary write landed
        after a phase with a secondary began: the request read the phase up to a TTL
        before, then may have waited (locks, catch-up, a loaded machine) for seconds, so
        its write missed the outbox and any reconcile scan already taken. Queue the
        primary's current value of its ids for the new secondary (a held ``sync`` entry,
        resolved from the primary), so it reaches both sides like any dual write. Only a
        write that landed less than a TTL after the change goes undetected here, which is
        what waiting a TTL after ``advance`` covers. Returns the side queued for, if any."""
        now = self.current()
        secondary = now.secondary()
        if now.version == used.version or secondary is None or now.primary() != used.primary():
            return None
        self._queue_sync(now.primary(), secondary, ids)
        self.metrics.writes.labels(self.collection, secondary, "sync", "secondary", "fenced").inc()
        log.info(
            "%s: %d id(s) written under %s queued for the %s",
            self.collection,
            len(ids),
            used.label,
            secondary,
        )
        return secondary

    def _apply(self, side: Side, op: Op, batch: pa.RecordBatch, ids: list[Any]) -> None:
        conn, name = self.conns[side], self.names[side]
        if op == "delete":
            conn.delete(name, ids)
        else:
            conn.upsert(name, conform(batch, self.schema_of(side)))

    def reconcile(self, ids: Sequence[Any], *, chunk: int = 500) -> int:
        """Queue the primary's current version of these ids for the secondary (an upsert,
        or a delete when the primary lacks them): repairs what ``diff`` found, safely while
        writes continue. Returns the number of ids queued."""
        state = self.current()
        primary, secondary = state.primary(), state.secondary()
        if secondary is None:
            return 0
        ids = list(ids)
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            with self._locked(part):
                self._queue_sync(primary, secondary, part)
        self._wake.set()
        return len(ids)

    # -- reads -----------------------------------------------------------------------------
    def search(
        self,
        vectors: np.ndarray,
        k: int,
        filter: Filter | None = None,
        *,
        key: str | None = None,
    ) -> tuple[list[list[Any]], list[list[float]]]:
        """Top-k ids and scores from the phase's read side (``key``: the request key that
        keeps one user on one system during a canary)."""
        ids, scores, _ = self._search(vectors, k, filter, key, records=False)
        return ids, scores

    def search_records(
        self,
        vectors: np.ndarray,
        k: int,
        filter: Filter | None = None,
        *,
        key: str | None = None,
    ) -> tuple[list[list[Any]], list[list[float]], pa.RecordBatch]:
        """``search`` with the records it returned, in this collection's layout, from the
        same side and (where the engine can) the same round trip."""
        ids, scores, batch = self._search(vectors, k, filter, key, records=True)
        assert batch is not None
        return ids, scores, conform(batch, self.schema)

    def _search(
        self,
        vectors: np.ndarray,
        k: int,
        filter: Filter | None,
        key: str | None,
        *,
        records: bool,
    ) -> tuple[list[list[Any]], list[list[float]], pa.RecordBatch | None]:
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        state = self.current()

        def call(s: Side) -> tuple[list[list[Any]], list[list[float]], pa.RecordBatch | None]:
            conn, name = self.conns[s], self.names[s]
            if records:
                return conn.search_records(
                    name, vectors, k, filter=filter, schema=self.schema_of(s)
                )
            found, scores = conn.search(name, vectors, k, filter=filter)
            return found, scores, None

        side, (ids, scores, batch) = self._read(state, state.read_side(key), "search", call)
        other = state.shadow_side(side)
        if other is not None and self.shadow.wanted():
            conn, name, schema = self.conns[other], self.names[other], self.schema_of(other)
            self.shadow.submit(
                state.version,
                lambda: self.shadow.compare_search(
                    conn,
                    name,
                    schema,
                    vectors,
                    k,
                    filter,
                    ids,
                    served_side=side,
                    version=state.version,
                ),
            )
        return ids, scores, batch

    def fetch(self, ids: Sequence[Any], *, key: str | None = None) -> pa.RecordBatch:
        """Records by id from the phase's read side, in this collection's layout (an id
        asked for twice comes back once, as most engines answer it)."""
        ids = list(dict.fromkeys(ids))
        state = self.current()
        side, batch = self._read(
            state,
            state.read_side(key),
            "fetch",
            lambda s: self.conns[s].fetch(self.names[s], ids, schema=self.schema_of(s)),
        )
        other = state.shadow_side(side)
        if other is not None and self.shadow.wanted():
            served = batch.column("id").to_pylist()
            oc, on, osch = self.conns[other], self.names[other], self.schema_of(other)
            self.shadow.submit(
                state.version, lambda: self.shadow.compare_fetch(oc, on, osch, ids, served)
            )
        return conform(batch, self.schema)

    def _read(
        self, state: PhaseState, side: Side, kind: str, call: Callable[[Side], T]
    ) -> tuple[Side, T]:
        """(side that answered, answer): ``side``'s, or the fallback side's when ``side``
        fails or takes longer than ``read_timeout``; with no fallback, a transient failure
        is retried (``READ_RETRY``)."""
        fallback = state.fallback_side(side)
        try:
            if fallback is None:
                answer, _ = call_with_retry(
                    lambda: self._timed(side, kind, lambda: call(side)),
                    READ_RETRY,
                    what=f"{side} {kind} of {self.collection!r}",
                    hint="the read can be sent again",
                )
                return side, answer
            future = self._reads.submit(call, side)
            return side, self._timed(side, kind, lambda: future.result(self.read_timeout))
        except Exception as exc:
            if fallback is None:
                raise
            log.warning(
                "%s: %s %s failed (%s); the %s answered",
                self.collection,
                side,
                kind,
                type(exc).__name__,
                fallback,
            )
            self.metrics.reads.labels(self.collection, fallback, kind, "fallback").inc()
            return fallback, self._timed(fallback, kind, lambda: call(fallback))

    def _timed(self, side: Side, kind: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            out = call()
        except Exception as exc:
            outcome = "timeout" if isinstance(exc, FutureTimeout) else "error"
            self.metrics.reads.labels(self.collection, side, kind, outcome).inc()
            self.metrics.errors.labels(self.collection, f"{side}-{kind}").inc()
            raise
        finally:
            self.metrics.latency.labels(self.collection, side, kind).observe(
                time.perf_counter() - started
            )
        self.metrics.reads.labels(self.collection, side, kind, "ok").inc()
        return out

    def close(self) -> None:
        """Stop the replayer and the shadow pool, store the last totals, release leases."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.shadow.close()
        self._reads.shutdown(wait=False, cancel_futures=True)
        try:
            self.publish()
        finally:
            for side in ("source", "target", f"alive:{self.instance}"):
                self.state.outbox.release_lease(self.collection, side, self.instance)

    def __enter__(self) -> MigrationRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _last_per_id_sorted(batch: pa.RecordBatch) -> pa.RecordBatch:
    """One row per id (the last one given, as applying them in order would leave it),
    ordered by id: two instances writing the same ids then lock rows in one order, so
    engines that lock rows (PostgreSQL) cannot deadlock them against each other."""
    ids = batch.column("id").to_pylist()
    last = {i: row for row, i in enumerate(ids)}
    rows = [last[i] for i in sorted(last, key=str)]
    if rows == list(range(batch.num_rows)):
        return batch
    return batch.take(pa.array(rows, pa.int64()))
