"""What every dialect of the proxy needs from a collection, over its ``MigrationRouter``.

Each request goes through the router the library gives applications: writes through
``upsert``/``delete`` (primary decides, outbox for the secondary), top-k through
``search``, records through ``fetch``. Two reads the router has no public call for
(counting, and listing records by filter without a query vector) use the router's own
read path (``MigrationRouter._read``): the side its phase reads from for the request key,
its fallback to the source and its read timeout, its metrics. Nothing here decides a
side on its own.

Search results are completed with the records of the returned ids, fetched through the
router in the same phase and with the same request key, so a canary user's documents come
from the system that ranked them.

Hot path (docs/proxy.md, bench/proxy.py): a query's hits come back as columns
(``search_columns``) that a dialect turns into its response without a ``Record`` per hit,
and an upsert that gives every part of its records skips reading them first where the
phase mirrors writes nowhere and the primary merges an upsert itself (``merges_upserts``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import DataError
from vecmigrate.filters import Node, evaluate
from vecmigrate.layout import conform
from vecmigrate.live.phases import PhaseState, Side
from vecmigrate.live.router import MigrationRouter
from vecmigrate.model import CollectionSchema, IdType, VectorField
from vecmigrate.records import metadata_rows, vectors_to_numpy

log = logging.getLogger(__name__)
_STRIPES = 64

RecordTest = Callable[["Record"], bool]


@dataclass
class Record:
    """One record as a dialect shows it: id, vector, document, metadata (no nulls)."""

    id: Any
    vector: np.ndarray | None
    document: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hit:
    """One search result: the record and the engine's own score for it."""

    record: Record
    score: float


@dataclass
class Columns:
    """Records as columns, one row per distinct record (what a search returned), for a
    dialect that builds its response from them without a ``Record`` per hit."""

    batch: pa.RecordBatch
    schema: CollectionSchema
    ids: list[Any]
    vectors: np.ndarray | None  # (rows, dim); None when the batch has no vectors

    @classmethod
    def of(cls, batch: pa.RecordBatch, schema: CollectionSchema) -> Columns:
        """The columns of a batch in ``schema``'s layout."""
        ids = batch.column("id").to_pylist()
        vname = schema.vector.name
        vectors = vectors_to_numpy(batch.column(vname)) if vname in batch.schema.names else None
        return cls(batch, schema, ids, vectors)

    def documents(self) -> list[str | None]:
        """Each row's document (None without one)."""
        if "document" not in self.batch.schema.names:
            return [None] * len(self.ids)
        docs: list[str | None] = self.batch.column("document").to_pylist()
        return docs

    def metadatas(self) -> list[dict[str, Any]]:
        """Each row's metadata without nulls (as ``Record.metadata``)."""
        if not self.batch.num_rows:
            return []
        return [
            {k: v for k, v in m.items() if v is not None}
            for m in metadata_rows(self.batch, self.schema)
        ]


def merges_upserts(conn: Connector) -> bool:
    """Whether ``conn``'s upsert of an existing record keeps the metadata keys the write
    lacks (Chroma's does), so that a Chroma-style partial upsert needs no read first. A
    framework layout (``?layout=``) packs metadata into keys of its own that an upsert
    replaces whole, so it does not count."""
    return conn.engine == "chroma" and not getattr(conn.config, "layout", None)


class ProxyCollection:
    """One collection served through its router; thread-safe (called from a worker pool)."""

    def __init__(self, router: MigrationRouter, *, scan_batch: int = 1000) -> None:
        self.router = router
        self.name = router.collection
        self.schema: CollectionSchema = router.schema
        self.scan_batch = scan_batch
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._writes = 0
        self._idle = threading.Condition()
        self._merging = {side: merges_upserts(conn) for side, conn in router.conns.items()}
        # Set by a dialect that can pass requests through to the engine as they are: the
        # side a phase's requests then go to unchanged, None while they take the normal path.
        self.passes_to: Callable[[PhaseState], Side | None] = lambda state: None

    # -- what the collection is ------------------------------------------------------------
    @property
    def vector(self) -> VectorField:
        """The default vector field (the one dialects with one vector per record serve)."""
        return self.schema.vector

    def phase(self) -> PhaseState:
        """The phase the router routes by now."""
        return self.router.current()

    def typed_id(self, raw: Any) -> Any:
        """A client's id (dialects send text or numbers) in the collection's id type."""
        if self.schema.id_type is IdType.INT:
            try:
                return int(raw)
            except (TypeError, ValueError):
                raise DataError(
                    f"ids of {self.name!r} are integers, got {raw!r}", collection=self.name
                ) from None
        return str(raw)

    # -- reads -----------------------------------------------------------------------------
    def fetch(
        self,
        ids: Sequence[Any],
        *,
        key: str | None,
        where: Node | None = None,
        test: RecordTest | None = None,
    ) -> list[Record]:
        """Records of these ids (missing ones absent), in the order asked, that match
        ``where`` (exactly evaluated) and ``test``."""
        wanted = list(dict.fromkeys(self.typed_id(i) for i in ids))
        if not wanted:
            return []
        found = self._records(self.router.fetch(wanted, key=key), where, test)
        by_id = {r.id: r for r in found}
        return [by_id[i] for i in wanted if i in by_id]

    def search(
        self,
        vectors: np.ndarray,
        k: int,
        *,
        filter: dict[str, Any] | None,
        key: str | None,
    ) -> list[list[Hit]]:
        """Top-k per query vector through the router, with each hit's record from the
        same side (one round trip where the engine returns records with its hits). An id
        the side no longer holds when its record is read (deleted meanwhile) is left out."""
        ids, scores, batch = self.router.search_records(vectors, k, filter, key=key)
        records = {r.id: r for r in self._records(batch, None, None)}
        return [
            [
                Hit(records[i], float(s))
                for i, s in zip(row, row_scores, strict=False)
                if i in records
            ]
            for row, row_scores in zip(ids, scores, strict=False)
        ]

    def search_columns(
        self,
        vectors: np.ndarray,
        k: int,
        *,
        filter: dict[str, Any] | None,
        key: str | None,
    ) -> tuple[list[list[int]], Columns]:
        """``search`` as columns: per query vector the rows of the hits in the engine's
        order, and the records' columns (one row per distinct record). A hit whose record
        the side no longer holds (deleted meanwhile) is left out."""
        ids, _, batch = self.router.search_records(vectors, k, filter, key=key)
        cols = Columns.of(batch, self.schema)
        row_of = {rid: n for n, rid in enumerate(cols.ids)}
        hits = [[row_of[i] for i in row if i in row_of] for row in ids]
        return hits, cols

    def scan(
        self,
        *,
        key: str | None,
        where: Node | None = None,
        test: RecordTest | None = None,
        stop_after: int | None = None,
    ) -> list[Record]:
        """Records matching ``where`` and ``test`` in the read side's scan order, at most
        ``stop_after`` of them: a full pass over the collection (a dialect's "list by
        filter" without a query vector)."""
        state = self.router.current()

        def run(side: Side) -> list[Record]:
            conn, name = self.router.conns[side], self.router.names[side]
            schema = self.router.schema_of(side)
            out: list[Record] = []
            for part in conn.partitions(name, 1):
                for batch, _ in conn.scan(name, part, schema=schema, batch_rows=self.scan_batch):
                    out += self._records(conform(batch, self.schema), where, test)
                    if stop_after is not None and len(out) >= stop_after:
                        return out[:stop_after]
            return out

        _, records = self.router._read(state, state.read_side(key), "scan", run)
        return records

    def count(self, *, key: str | None, filter: dict[str, Any] | None = None) -> int:
        """Number of records (matching a portable filter) on the phase's read side."""
        state = self.router.current()
        _, n = self.router._read(
            state,
            state.read_side(key),
            "count",
            lambda side: self.router.conns[side].count(self.router.names[side], filter or None),
        )
        return int(n)

    def _records(
        self, batch: pa.RecordBatch, where: Node | None, test: RecordTest | None
    ) -> list[Record]:
        if batch.num_rows == 0:
            return []
        if where is not None:
            batch = batch.filter(pa.array(evaluate(where, batch)))
        records = to_records(batch, self.schema)
        return [r for r in records if test(r)] if test is not None else records

    # -- writes ----------------------------------------------------------------------------
    @contextmanager
    def writing(self, ids: Sequence[Any]) -> Iterator[None]:
        """Hold this proxy's locks of ``ids`` for a read-modify-write (a partial update
        reads the primary's record, merges, writes), and count the write as in flight so
        a shutdown waits for it."""
        stripes = sorted({hash(str(i)) % _STRIPES for i in ids})
        with self._idle:
            self._writes += 1
        try:
            for s in stripes:
                self._stripes[s].acquire()
            try:
                yield
            finally:
                for s in reversed(stripes):
                    self._stripes[s].release()
        finally:
            with self._idle:
                self._writes -= 1
                self._idle.notify_all()

    def merges_upserts(self, state: PhaseState) -> bool:
        """Whether a write routed by ``state`` can upsert records unread: the phase mirrors
        writes nowhere (no secondary needs whole records) and its primary merges an upsert
        into the record it holds (``merges_upserts``)."""
        return state.secondary() is None and self._merging[state.primary()]

    def upsert_unread(self, records: Sequence[Record], used: PhaseState) -> None:
        """Upsert records written without reading them first, decided under ``used``
        (``merges_upserts``). Should the phase have changed meanwhile, the router may have
        queued these (partial) records for a new secondary: the primary's merged records
        are queued after them (``router.reconcile``), so the secondary ends equal."""
        self.upsert(records)
        if self.router.current().version != used.version:
            self.router.reconcile([r.id for r in records])

    def current(self, ids: Sequence[Any]) -> dict[Any, Record]:
        """What the primary holds now for these ids (a request without a key reads the
        primary in every phase; the router falls back to the source if the target fails)."""
        return {r.id: r for r in self.fetch(ids, key=None)}

    def upsert(self, records: Sequence[Record]) -> None:
        """Write whole records through the router (the primary decides the response)."""
        if not records:
            return
        vname = self.vector.name
        rows: list[dict[str, Any]] = []
        for r in records:
            if r.document is not None and not self.schema.has_document:
                raise DataError(
                    "this collection stores no documents (it had none when the migration "
                    "began), so the document would be lost",
                    collection=self.name,
                    record_id=r.id,
                    field="document",
                )
            if r.vector is None:
                raise DataError("a record needs a vector", collection=self.name, record_id=r.id)
            rows.append(
                {"id": r.id, vname: r.vector, "document": r.document, "metadata": r.metadata}
            )
        self.router.upsert(rows)

    def delete(self, ids: Sequence[Any]) -> None:
        """Delete through the router (missing ids are a no-op)."""
        if ids:
            self.router.delete(list(ids))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no write is in flight here (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._writes:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def status(self) -> dict[str, Any]:
        """The phase this instance routes by, and the outbox backlog."""
        state = self.router.current()
        forwarding = self.passes_to(state)
        depth: dict[str, Any]
        try:
            depth = {
                side: {"pending": d.pending, "oldest_age_s": round(d.oldest_age, 3), "dead": d.dead}
                for side, d in self.router.state.outbox.depth(self.name).items()
            }
        except Exception as exc:  # the state store is down: the phase still routes
            depth = {"error": f"{type(exc).__name__}: {exc}"}
        return {
            "phase": state.phase.value,
            "label": state.label,
            "version": state.version,
            "canary_percent": state.canary_percent,
            "primary": state.primary(),
            "secondary": state.secondary(),
            "reads_without_key": state.read_side(None),
            "source": self.router.names["source"],
            "target": self.router.names["target"],
            "outbox": depth,
            "writes_in_flight": self._writes,
            "forwarding": forwarding is not None,
            "forwarding_to": forwarding,
        }


def combine(op: str, parts: Sequence[dict[str, Any] | bool]) -> dict[str, Any] | bool:
    """``$and``/``$or`` of portable filters some of which are constants (True: every
    record, False: none), simplified: a dialect's condition on a field the collection does
    not have is a constant, decided without asking an engine."""
    absorbing, neutral = (False, True) if op == "$and" else (True, False)
    if any(p is absorbing for p in parts):
        return absorbing
    kept = [p for p in parts if not isinstance(p, bool)]
    if not kept:
        return neutral
    return kept[0] if len(kept) == 1 else {op: kept}


def to_records(batch: pa.RecordBatch, schema: CollectionSchema) -> list[Record]:
    """Records of a batch in ``schema``'s layout (metadata without nulls)."""
    ids = batch.column("id").to_pylist()
    names = batch.schema.names
    vname = schema.vector.name
    vectors = vectors_to_numpy(batch.column(vname)) if vname in names else None
    docs = batch.column("document").to_pylist() if "document" in names else [None] * len(ids)
    metas = metadata_rows(batch, schema)
    return [
        Record(
            i,
            vectors[n] if vectors is not None else None,
            docs[n],
            {k: v for k, v in metas[n].items() if v is not None},
        )
        for n, i in enumerate(ids)
    ]


def check_dim(vectors: np.ndarray, dim: int) -> None:
    """DataError in the words engines use when a vector has the wrong dimension."""
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        got = vectors.shape[-1] if vectors.ndim else 0
        raise DataError(f"Collection expecting embedding with dimension of {dim}, got {got}")
