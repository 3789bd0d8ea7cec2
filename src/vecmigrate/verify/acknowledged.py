"""What a target acknowledged during a copy (``acknowledging``): the digest of every batch
it acknowledged and a random sample of their records, for ``copycheck.check_copy``'s
sampled check to prove the copy without reading the whole target back."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector
from vecmigrate.model import CollectionSchema
from vecmigrate.records import table_to_batch
from vecmigrate.verify.digest import CollectionDigest, DigestBuilder, scan_rows

SAMPLE_RECORDS = 1000  # acknowledged records read back by the sampled check
_ALL = np.uint64(np.iinfo(np.uint64).max)


@dataclass
class _Collected:
    """What one target collection acknowledged: a digest, and a random sample of rows
    (the ``size`` records of lowest priority, a salted hash of the id)."""

    builder: DigestBuilder
    schema: CollectionSchema
    rows: list[pa.RecordBatch] = field(default_factory=list)
    priorities: list[np.ndarray] = field(default_factory=list)
    threshold: np.uint64 = _ALL
    kept: int = 0
    broken: bool = False  # batches of another layout: no sample, so no sampled check


class Acknowledged:
    """What a target acknowledged during a copy, per target collection: the digest of
    every batch it acknowledged and a random sample of their records (kept whole).
    ``fresh``: the target collections held nothing before the copy (not ``reuse``d, not
    resumed), so what was acknowledged is all they hold."""

    def __init__(
        self,
        target: Connector,
        *,
        tolerance: float,
        sample: int = SAMPLE_RECORDS,
        fresh: bool = True,
        seed: int | None = None,
        projections: bool = True,
    ) -> None:
        self.target, self.tolerance, self.sample_size, self.fresh = target, tolerance, sample, fresh
        self.projections = projections
        rng = np.random.default_rng(seed)
        self._salt = np.uint64(int(rng.integers(0, 2**63)))
        self._lock = threading.Lock()
        self._collected: dict[str, _Collected] = {}

    def _for(self, name: str) -> _Collected:
        with self._lock:
            got = self._collected.get(name)
            if got is None:
                # as the writes are conformed: ``describe`` would read an empty foreign
                # table again and replace what its create or reuse established
                schema = self.target.write_schema(name)
                got = _Collected(self._builder(schema), schema)
                self._collected[name] = got
            return got

    def _builder(self, schema: CollectionSchema) -> DigestBuilder:
        return DigestBuilder(schema, tolerance=self.tolerance, projections=self.projections)

    def record(self, name: str, batch: pa.RecordBatch) -> None:
        """Add a batch the target acknowledged into ``name``."""
        if batch.num_rows == 0:
            return
        got = self._for(name)
        keys = got.builder.add_keyed(batch)
        if not self.sample_size:
            return
        priority = keys ^ self._salt
        priority ^= priority >> np.uint64(29)
        priority *= np.uint64(0xBF58476D1CE4E5B9)
        priority ^= priority >> np.uint64(32)
        with self._lock:
            keep = np.flatnonzero(priority < got.threshold)
            if len(keep):
                self._add_sample(got, [batch.take(pa.array(keep, pa.int64()))], [priority[keep]])

    def _add_sample(
        self, got: _Collected, rows: list[pa.RecordBatch], priorities: list[np.ndarray]
    ) -> None:
        """Add sampled rows and their priorities (under the lock); rows of another layout
        than those kept so far leave no sample (the sampled check then does not run)."""
        if got.broken or not rows:
            return
        if got.rows and not rows[0].schema.equals(got.rows[0].schema):
            got.broken, got.rows, got.priorities = True, [], []
            return
        got.rows.extend(rows)
        got.priorities.extend(priorities)
        got.kept += sum(len(p) for p in priorities)
        if got.kept >= 2 * self.sample_size:
            self._shrink(got)

    def piece(self, name: str) -> Acknowledged:
        """A collector of one streamed write into ``name``, with this one's salt and
        threshold: what it records counts once ``absorb``ed, after the write returned."""
        mine = self._for(name)
        child = Acknowledged(
            self.target,
            tolerance=self.tolerance,
            sample=self.sample_size,
            fresh=self.fresh,
            projections=self.projections,
        )
        child._salt = self._salt
        builder = self._builder(mine.schema)
        child._collected[name] = _Collected(builder, mine.schema, threshold=mine.threshold)
        return child

    def schema_of(self, name: str) -> CollectionSchema:
        """The layout batches written into ``name`` are digested in."""
        return self._for(name).schema

    def absorb(self, child: Acknowledged) -> None:
        """Add what ``child`` (a ``piece``) recorded: its write was acknowledged."""
        for name, got in child._collected.items():
            mine = self._for(name)
            with self._lock:
                mine.builder.digest.merge(got.builder.digest)
                if got.broken:  # the piece's rows came in two layouts: no sample
                    mine.broken, mine.rows, mine.priorities = True, [], []
                self._add_sample(mine, got.rows, got.priorities)

    def _shrink(self, got: _Collected) -> None:
        """Keep the ``sample_size`` rows of lowest priority (under the lock)."""
        priorities = np.concatenate(got.priorities)
        table = pa.Table.from_batches(got.rows).combine_chunks()
        order = np.argsort(priorities, kind="stable")[: self.sample_size]
        got.rows = table.take(pa.array(order, pa.int64())).to_batches()
        got.priorities = [priorities[order]]
        got.kept = len(order)
        if len(order) == self.sample_size:
            got.threshold = priorities[order[-1]]

    def digest(self, name: str) -> CollectionDigest | None:
        """Digest of what ``name`` acknowledged (None: nothing was recorded for it)."""
        got = self._collected.get(name)
        return got.builder.digest if got else None

    def sample(self, name: str) -> tuple[pa.Table | None, CollectionSchema | None]:
        """The sampled acknowledged records of ``name`` (in the target's layout)."""
        got = self._collected.get(name)
        if got is None or got.broken:
            return None, None
        with self._lock:
            if got.rows:
                self._shrink(got)
            table = pa.Table.from_batches(got.rows) if got.rows else None
        return table, got.schema


class _DigestRuns:
    """Digests a streamed write's batches into ``piece`` on a thread of its own while the
    engine encodes them (a digest taken between two pulls of the stream would stall the
    engine), in runs of ~8 MiB of vectors (numpy's per-call cost dominates on small
    batches), one run ahead at most."""

    def __init__(self, piece: Acknowledged, name: str) -> None:
        self.piece, self.name = piece, name
        self.rows = scan_rows(piece.schema_of(name))
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vecmigrate-ack")
        self._ahead: Future[None] | None = None
        self._run: list[pa.RecordBatch] = []
        self._run_rows = 0

    def __enter__(self) -> _DigestRuns:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)

    def passing(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """``batches``, each handed on at once and queued for its digest."""
        for batch in batches:
            if self._run and not batch.schema.equals(self._run[0].schema):
                self._digest_run()  # a run is one layout (a second one breaks the sample)
            self._run.append(batch)
            self._run_rows += batch.num_rows
            if self._run_rows >= self.rows:
                self._digest_run()
            yield batch

    def finish(self) -> None:
        """Digest what is left, once the write returned; raises what a digest raised."""
        if self._run:
            self._digest_run()
        if self._ahead is not None:
            self._ahead.result()

    def _digest_run(self) -> None:
        if self._ahead is not None:
            self._ahead.result()
        run, self._run, self._run_rows = self._run, [], 0
        self._ahead = self._pool.submit(self.piece.record, self.name, pa.concat_batches(run))


@contextmanager
def acknowledging(
    source: Connector,
    target: Connector,
    *,
    fresh: bool = True,
    sample: int = SAMPLE_RECORDS,
    projections: bool = True,
) -> Iterator[Acknowledged]:
    """While the block runs, record every batch ``target`` acknowledges (an ``upsert``,
    ``upsert_table`` or ``upsert_stream`` that returned) into an ``Acknowledged``, for
    ``check_copy`` to prove the copy without reading the whole target back::

        with acknowledging(src, dst, fresh=...) as ack:
            result = copy_collection(src, dst, ...)
        checks = check_copy(src, dst, collection, result, spec, acknowledged=ack)

    ``projections=False`` digests vectors by their exact bits alone: enough (and cheaper)
    when the digest is compared only with the source read again (``check_copy``'s sampled
    check without a stored source digest), not with what the target stores.
    """
    tol = max(source.capabilities.vector_tolerance, target.capabilities.vector_tolerance)
    ack = Acknowledged(target, tolerance=tol, sample=sample, fresh=fresh, projections=projections)
    upsert, upsert_table, upsert_stream = target.upsert, target.upsert_table, target.upsert_stream

    def recording(name: str, batch: pa.RecordBatch, *args: Any, **kwargs: Any) -> None:
        upsert(name, batch, *args, **kwargs)
        ack.record(name, batch)

    def recording_table(name: str, table: pa.Table, *args: Any, **kwargs: Any) -> None:
        upsert_table(name, table, *args, **kwargs)
        # One digest of the piece (a bounded copy): per-call costs dominate on its chunks.
        ack.record(name, table_to_batch(table))

    def recording_stream(
        name: str, batches: Iterable[pa.RecordBatch], *args: Any, **kwargs: Any
    ) -> None:
        piece = ack.piece(name)
        with _DigestRuns(piece, name) as runs:
            upsert_stream(name, runs.passing(batches), *args, **kwargs)
            runs.finish()
        ack.absorb(piece)

    # Shadows the methods on this instance only.
    shadows = {
        "upsert": recording,
        "upsert_table": recording_table,
        "upsert_stream": recording_stream,
    }
    for verb, method in shadows.items():
        setattr(target, verb, method)
    try:
        yield ack
    finally:
        for verb, method in shadows.items():
            if vars(target).get(verb) is method:
                delattr(target, verb)
