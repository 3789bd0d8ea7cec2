"""The durable outbox of secondary writes, and its ordered replay.

While two systems take writes, the primary's write decides the response and the same
operation is appended here for the secondary: the op plus its full payload as Arrow IPC
bytes (the record batch for an upsert, a one-column id batch for a delete). Replay applies
a side's entries strictly in append order and stops at the first failure, so every id's
last write is the last one applied on both sides. Entries the secondary refuses for good
(``DataError``) are kept as dead letters and counted, never dropped silently.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.ipc as ipc

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import DataError
from vecmigrate.model import CollectionSchema
from vecmigrate.records import conform, table_to_batch

Op = Literal["upsert", "delete", "sync"]
DELETE_FLAG = "__vecmigrate_delete"
"""Column of a ``sync`` payload: true for the ids to delete, false for the records to put."""


WRITER_KEY = b"vecmigrate.writer"


def encode_batch(batch: pa.RecordBatch, *, writer: str | None = None) -> bytes:
    """Arrow IPC stream bytes of one batch (schema included, so entries are self-describing);
    ``writer``: the router instance whose primary write a held entry mirrors."""
    if writer is not None:
        batch = batch.replace_schema_metadata({**(batch.schema.metadata or {}), WRITER_KEY: writer})
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as stream:
        stream.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def decode_batch(payload: bytes) -> pa.RecordBatch:
    """Inverse of ``encode_batch``."""
    table = ipc.open_stream(pa.py_buffer(payload)).read_all()
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


def ids_batch(ids: Sequence[Any] | pa.Array, id_type: pa.DataType) -> pa.RecordBatch:
    """The payload of a delete: one ``id`` column."""
    arr = ids if isinstance(ids, pa.Array) else pa.array(list(ids), id_type)
    return pa.RecordBatch.from_arrays([arr], names=["id"])


def sync_batch(
    found: pa.RecordBatch, absent: Sequence[Any], schema: CollectionSchema
) -> pa.RecordBatch:
    """The payload of a ``sync`` op: the primary's current records plus the ids it lacks,
    flagged for deletion, so one entry carries a whole reconciliation in one position."""
    target = schema.arrow_schema()
    found = conform(found, schema)
    n = len(absent)
    gone = pa.RecordBatch.from_arrays(
        [pa.array(list(absent), f.type) if f.name == "id" else pa.nulls(n, f.type) for f in target],
        schema=target,
    )
    table = pa.Table.from_batches([found, gone]).combine_chunks()
    flag = pa.array([False] * found.num_rows + [True] * n, pa.bool_())
    return table_to_batch(table.append_column(DELETE_FLAG, flag))


def _deleted_rows(entry: OutboxEntry, batch: pa.RecordBatch) -> list[bool]:
    if entry.op == "sync":
        return [bool(v) for v in batch.column(DELETE_FLAG).to_pylist()]
    return [entry.op == "delete"] * batch.num_rows


@dataclass(frozen=True)
class OutboxEntry:
    """One pending secondary write."""

    seq: int
    collection: str
    side: str
    op: Op
    payload: bytes
    created: float
    attempts: int = 0
    held: bool = False

    def batch(self) -> pa.RecordBatch:
        """The decoded payload."""
        return decode_batch(self.payload)

    def writer(self) -> str | None:
        """The router instance that appended this entry before its primary write, if any."""
        meta = self.batch().schema.metadata or {}
        raw = meta.get(WRITER_KEY)
        return raw.decode() if raw is not None else None


@dataclass(frozen=True)
class OutboxDepth:
    """Backlog of one side: pending entries, age of the oldest, dead letters."""

    pending: int
    oldest_age: float
    dead: int


class Outbox(ABC):
    """A durable, ordered queue of secondary writes per (collection, side)."""

    @abstractmethod
    def append(
        self, collection: str, side: str, op: Op, payload: bytes, *, held: bool = False
    ) -> int:
        """Append one op; returns its sequence number (increasing).

        ``held``: appended before the primary write it mirrors; replay stops at it until
        ``mark_ready`` (the primary acknowledged) or ``rewrite`` (the primary failed or the
        writer died: the entry is resolved from the primary's current state).
        """

    @abstractmethod
    def mark_ready(self, seq: int) -> bool:
        """Release a held entry for replay; False (and nothing changed) when it was no
        longer held: another instance resolved (rewrote) it meanwhile."""

    @abstractmethod
    def rewrite(self, seq: int, op: Op, payload: bytes) -> None:
        """Replace an entry's op and payload in place (keeps its position) and release it."""

    @abstractmethod
    def held(self, collection: str, older_than: float) -> list[OutboxEntry]:
        """Held entries older than ``older_than`` seconds (their writer may have died)."""

    @abstractmethod
    def pending(self, collection: str, side: str, limit: int = 100) -> list[OutboxEntry]:
        """The oldest pending entries of one side, in order."""

    @abstractmethod
    def has_pending(self, collection: str, side: str) -> bool:
        """Whether one side has any pending entry."""

    @abstractmethod
    def last_seq(self, collection: str) -> int:
        """The highest sequence number appended so far (0 when none)."""

    @abstractmethod
    def complete(self, seqs: Sequence[int]) -> None:
        """Remove applied entries."""

    @abstractmethod
    def retry_later(self, seq: int, error: str) -> None:
        """Count a failed attempt on an entry that stays pending (and first in line)."""

    @abstractmethod
    def dead_letter(self, seq: int, error: str) -> None:
        """Set an entry aside for good: the secondary refused it."""

    @abstractmethod
    def depth(self, collection: str) -> dict[str, OutboxDepth]:
        """Backlog per side (``source`` and ``target``)."""

    @abstractmethod
    def acquire_lease(self, collection: str, side: str, owner: str, ttl: float) -> bool:
        """Become the only replayer of a side for ``ttl`` seconds (renewable by ``owner``)."""

    @abstractmethod
    def release_lease(self, collection: str, side: str, owner: str) -> None:
        """Give the lease up early."""

    @abstractmethod
    def lease_holder(self, collection: str, side: str) -> str | None:
        """The owner of the unexpired lease on ``side`` (None: nobody holds it)."""


@dataclass
class ReplayResult:
    """What one replay pass did."""

    applied: int = 0
    dead: int = 0
    error: str | None = None
    blocked: bool = False


def _apply(
    conn: Connector, name: str, schema: CollectionSchema, entries: list[OutboxEntry]
) -> None:
    """Apply a window of entries as at most two calls with the same end state.

    Only each id's last op in the window matters: ids whose last op is a delete are
    deleted, the others upserted with their last version. The two sets are disjoint, so
    their order does not matter, and re-applying a window after a failure is idempotent.
    """
    last: dict[Any, tuple[int, int]] = {}  # id -> (entry index, row) of its last op
    batches = [e.batch() for e in entries]
    for ei, b in enumerate(batches):
        for row, rid in enumerate(b.column("id").to_pylist()):
            last.pop(rid, None)  # re-insert: dict order follows the last op
            last[rid] = (ei, row)
    gone = [_deleted_rows(e, b) for e, b in zip(entries, batches, strict=True)]
    deletes = [rid for rid, (ei, row) in last.items() if gone[ei][row]]
    picks: dict[int, list[int]] = {}
    for ei, row in (v for v in last.values() if not gone[v[0]][v[1]]):
        picks.setdefault(ei, []).append(row)
    if deletes:
        conn.delete(name, deletes)
    if picks:
        parts = [
            conform(batches[ei], schema).take(pa.array(rows, pa.int64()))
            for ei, rows in sorted(picks.items())
        ]
        table = pa.Table.from_batches(parts).combine_chunks()
        for batch in table.to_batches():
            conn.upsert(name, batch)


def replay(
    outbox: Outbox,
    collection: str,
    side: str,
    conn: Connector,
    name: str,
    schema: CollectionSchema,
    *,
    max_entries: int = 2000,
    max_seconds: float = 1.0,
    window: int = 200,
    on_applied: Callable[[list[OutboxEntry]], None] | None = None,
) -> ReplayResult:
    """Apply one side's pending entries in order until empty, ``max_entries``, a pass of
    ``max_seconds``, or a failure.

    The caller holds the side's lease, for less time than the lease lasts: under steady
    writes the outbox never empties, and a pass that ran on would outlive its lease (then
    a second replayer could apply the same entries out of order). Entries go in windows
    (see ``_apply``); a window the engine refuses as invalid (``DataError``) is retried
    entry by entry so that only the refused entry is dead-lettered. Any other error stops
    the pass: the window stays pending, first in line, and is retried later.
    """
    result = ReplayResult()
    deadline = time.monotonic() + max_seconds
    while result.applied + result.dead < max_entries and time.monotonic() < deadline:
        entries = outbox.pending(collection, side, limit=window)
        held = next((i for i, e in enumerate(entries) if e.held), None)
        if held is not None:  # order: nothing after a write whose primary is in flight
            entries = entries[:held]
            result.blocked = True
        if not entries:
            break
        try:
            _apply(conn, name, schema, entries)
            done = entries
        except DataError:
            done = []
            for entry in entries:
                try:
                    _apply(conn, name, schema, [entry])
                except DataError as exc:
                    outbox.dead_letter(entry.seq, str(exc))
                    result.dead += 1
                    continue
                except Exception as exc:
                    outbox.complete([e.seq for e in done])
                    result.applied += len(done)
                    outbox.retry_later(entry.seq, str(exc))
                    result.error = f"{type(exc).__name__}: {exc}"
                    return result
                done.append(entry)
        except Exception as exc:  # transient or unknown: keep order, try again later
            outbox.retry_later(entries[0].seq, str(exc))
            result.error = f"{type(exc).__name__}: {exc}"
            return result
        outbox.complete([e.seq for e in done])
        result.applied += len(done)
        if on_applied is not None and done:
            on_applied(done)
    return result


def oldest_age(created: float | None) -> float:
    """Seconds since ``created`` (0 when there is no pending entry)."""
    return max(0.0, time.time() - created) if created is not None else 0.0


def resolve_held(
    outbox: Outbox,
    collection: str,
    entry_seq: int,
    side: str,
    primary: Connector,
    primary_name: str,
    primary_schema: CollectionSchema,
    schema: CollectionSchema,
    ids: Sequence[Any],
    *,
    wait: float = 10.0,
) -> bool:
    """Rewrite held entry ``entry_seq`` (for ``side``) into a ``sync`` of what the primary
    holds now for ``ids``, and release it. False (entry left held) when older held
    entries of the side do not clear within ``wait`` seconds.

    Waiting for the older held entries first means every write queued before this entry
    has reached the primary before it is read; every write queued after it comes after it
    in replay order. So the secondary ends with the primary's last value, whatever
    happened to the write (or writer) that held the entry, across instances too.
    """
    deadline = time.monotonic() + wait
    while any(e.side == side and e.seq < entry_seq for e in outbox.held(collection, 0)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    found = primary.fetch(primary_name, list(ids), schema=primary_schema)
    present = set(found.column("id").to_pylist())
    absent = [i for i in ids if i not in present]
    outbox.rewrite(entry_seq, "sync", encode_batch(sync_batch(found, absent, schema)))
    return True


def queue_reconcile(
    outbox: Outbox,
    collection: str,
    side: str,
    primary: Connector,
    primary_name: str,
    primary_schema: CollectionSchema,
    schema: CollectionSchema,
    ids: Sequence[Any],
) -> int:
    """Queue the primary's current version of ``ids`` for ``side`` (upserts, or deletes
    where the primary lacks them), safely while the application keeps writing: a held
    entry takes its place in line first, then is resolved (see ``resolve_held``). If it
    cannot be resolved now, it stays held and a router resolves it later. Returns its seq.
    """
    placeholder = encode_batch(ids_batch(list(ids), schema.id_arrow_type()))
    seq = outbox.append(collection, side, "sync", placeholder, held=True)
    resolve_held(outbox, collection, seq, side, primary, primary_name, primary_schema, schema, ids)
    return seq
