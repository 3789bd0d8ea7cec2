"""Writing source records into a target: validate, map, conform, split to the target's
limits, upsert with retries, and bisect a refused batch down to the refused records,
which become dead letters. ``copy`` and ``sync`` write through the same code."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import DataError, TerminalError
from vecmigrate.mapping import Mapping
from vecmigrate.model import CollectionSchema, ResumeToken
from vecmigrate.pipeline.deadletter import DeadLetterBuffer, DeadLetterSink
from vecmigrate.pipeline.validate import invalid_vector_rows, oversized_metadata
from vecmigrate.records import conform, table_to_batch
from vecmigrate.retry import RetryPolicy, call_with_retry

log = logging.getLogger("vecmigrate.write")
# At most this many source batches are coalesced into one write (``RecordWriter.bulk``).
BULK_BATCHES = 16


@dataclass
class Written:
    """What became of one source batch."""

    written: int = 0
    refused: int = 0
    retries: int = 0

    def add(self, other: Written) -> None:
        """Accumulate another batch's counts."""
        self.written += other.written
        self.refused += other.refused
        self.retries += other.retries


class RecordWriter:
    """Writes source batches into one target collection; refused records are
    dead-lettered once each, with their first reason, and counted."""

    def __init__(
        self,
        target: Connector,
        target_collection: str,
        source_collection: str,
        source_schema: CollectionSchema,
        mapping: Mapping,
        dead: DeadLetterSink,
        retry: RetryPolicy,
        batch_rows: int,
    ) -> None:
        self.target, self.target_collection = target, target_collection
        self.collection, self.source_schema = source_collection, source_schema
        self.mapping, self.target_schema = mapping, mapping.target
        self.dead, self.retry = dead, retry
        caps = target.capabilities
        self.max_rows = max(1, min(caps.max_batch_rows, batch_rows))
        self.max_bytes = caps.max_batch_bytes
        # A connector class that writes faster in large pieces (LanceDB: one fragment per
        # write) declares their size; copies coalesce source batches up to it, or up to
        # ``BULK_BATCHES`` of them, which bounds what a resumed run re-sends (``BulkWriter``).
        # Read from the class: a wrapper that intercepts ``upsert`` (fault injection,
        # routing) sees every source batch unless it declares a size itself.
        kind = type(target)
        bulk_rows = min(
            caps.max_batch_rows,
            int(getattr(kind, "bulk_write_rows", 0)),
            BULK_BATCHES * max(1, batch_rows),
        )
        bulk_bytes = min(
            caps.max_batch_bytes, int(getattr(kind, "bulk_write_bytes", 0)) or caps.max_batch_bytes
        )
        self.bulk_size = (bulk_rows, bulk_bytes) if bulk_rows > self.max_rows else None
        # A target that appends a stream in one write (``upsert_stream``) is handed its
        # batches as they are read, this many source bytes per write (``StreamedPiece``).
        self.stream_bytes = int(getattr(kind, "bulk_stream_bytes", 0))

    def bulk(self) -> BulkWriter | None:
        """A coalescing writer when the target prefers pieces larger than a source batch."""
        return BulkWriter(self, *self.bulk_size) if self.bulk_size else None

    def write(self, batch: pa.RecordBatch) -> Written:
        """Validate, map, split and upsert one source batch."""
        done = Written()
        converted = self.prepare(batch, done, self.dead)
        if converted is not None:
            self.send(converted, done, self.dead)
        return done

    def prepare(
        self, batch: pa.RecordBatch, done: Written, dead: DeadLetterSink
    ) -> pa.RecordBatch | None:
        """One source batch validated, mapped and conformed to the target's layout;
        refused rows go to ``dead`` and are counted in ``done`` (None: no row is left)."""
        bad = {
            row: (reason, fld)
            for row, fld, reason in reversed(invalid_vector_rows(batch, self.source_schema))
        }
        batch = self._dead_letter(batch, bad, done, dead)
        mapped, refusals = self.mapping.apply(batch)
        if refusals:
            first = refusals[0]
            if self.mapping.spec.on_invalid == "fail":
                raise DataError(
                    first.reason,
                    collection=self.collection,
                    record_id=batch.column("id")[first.row].as_py(),
                    field=first.field,
                    hint="fix the data or set on_invalid: dead_letter in the mapping",
                )
            reasons = {r.row: (r.reason, r.field) for r in reversed(refusals)}
            batch = self._dead_letter(batch, reasons, done, dead)
        try:
            converted = conform(mapped, self.target_schema)
        except TerminalError:
            isolated = self._isolate(batch, done, dead)
            if isolated is None:
                return None
            batch, converted = isolated
        limit = self.target.capabilities.max_metadata_bytes
        oversized = oversized_metadata(converted, self.target_schema, limit)
        if oversized:
            keep = np.ones(converted.num_rows, dtype=bool)
            keep[list(oversized)] = False
            converted = converted.filter(pa.array(keep))
            batch = self._dead_letter(batch, oversized, done, dead)
        return converted

    def send(
        self,
        batch: pa.RecordBatch | pa.Table,
        done: Written,
        dead: DeadLetterSink,
        max_rows: int | None = None,
    ) -> None:
        """Upsert converted rows in pieces within the target's limits."""
        for chunk in self._split(batch, max_rows or self.max_rows):
            self._upsert_isolating(chunk, done, dead)

    def _dead_letter(
        self,
        batch: pa.RecordBatch,
        reasons: dict[int, tuple[str, str]],
        done: Written,
        dead: DeadLetterSink,
    ) -> pa.RecordBatch:
        """Write each refused row once (with its first reason); return the rows kept."""
        if not reasons:
            return batch
        for row, (reason, fld) in sorted(reasons.items()):
            dead.write(batch.slice(row, 1), reason, fld)
        done.refused += len(reasons)
        keep = np.ones(batch.num_rows, dtype=bool)
        keep[list(reasons)] = False
        return batch.filter(pa.array(keep))

    def _isolate(
        self, batch: pa.RecordBatch, done: Written, dead: DeadLetterSink
    ) -> tuple[pa.RecordBatch, pa.RecordBatch] | None:
        """A batch that cannot be converted as a whole, converted row by row to name the
        culprits: (the source rows that convert, their conversions), None if none do."""
        kept, rows = [], []
        for i in range(batch.num_rows):
            row = batch.slice(i, 1)
            try:
                rows.append(conform(self.mapping.apply(row)[0], self.target_schema))
            except TerminalError as exc:
                dead.write(row, exc.message, getattr(exc, "field", None))
                done.refused += 1
                continue
            kept.append(i)
        if not rows:
            return None
        converted = pa.Table.from_batches(rows, self.target_schema.arrow_schema())
        return batch.take(pa.array(kept, pa.int64())), table_to_batch(converted)

    def _split(
        self, batch: pa.RecordBatch | pa.Table, max_rows: int
    ) -> Iterator[pa.RecordBatch | pa.Table]:
        per_row = max(1, batch.nbytes // max(1, batch.num_rows))
        step = max(1, min(max_rows, self.max_bytes // per_row))
        for start in range(0, batch.num_rows, step):
            yield batch.slice(start, step)

    def _upsert_isolating(
        self, batch: pa.RecordBatch | pa.Table, done: Written, dead: DeadLetterSink
    ) -> None:
        """Upsert with retries; a refused batch is bisected down to the refused records."""
        if batch.num_rows == 0:
            return
        try:
            _, retries = call_with_retry(
                lambda: self._upsert(batch),
                self.retry,
                what=f"upsert into {self.target_collection!r}",
            )
            done.written += batch.num_rows
            done.retries += retries
        except TerminalError as exc:
            if batch.num_rows == 1:
                rid = batch.column("id")[0].as_py()
                log.warning("record %r refused by the target: %s", rid, exc.message)
                row = table_to_batch(batch) if isinstance(batch, pa.Table) else batch
                dead.write(row, exc.message, getattr(exc, "field", None))
                done.refused += 1
                return
            half = batch.num_rows // 2
            self._upsert_isolating(batch.slice(0, half), done, dead)
            self._upsert_isolating(batch.slice(half), done, dead)

    def _upsert(self, piece: pa.RecordBatch | pa.Table) -> None:
        if isinstance(piece, pa.Table):
            self.target.upsert_table(self.target_collection, piece)
        else:
            self.target.upsert(self.target_collection, piece)


class BulkWriter:
    """Coalesces consecutive source batches into the large writes a target prefers
    (``bulk_write_rows`` / ``bulk_write_bytes``: LanceDB fragments). ``flush`` validates,
    maps and conforms each batch held and upserts them as one piece: a table of chunks,
    never concatenated (a copy of every byte: 0.8 s of thread CPU in a 1M x 384-d copy,
    most of it faulting in fresh pages). Nothing is acknowledged before that write, so the
    caller checkpoints after ``flush`` only; refused records are dead-lettered once the
    piece is written, so a killed run that re-sends the piece dead-letters them once."""

    def __init__(self, writer: RecordWriter, rows: int, nbytes: int) -> None:
        self.writer, self.rows, self.nbytes = writer, rows, nbytes
        self._held: list[pa.RecordBatch] = []
        self._held_rows = self._held_bytes = 0

    def add(self, batch: pa.RecordBatch) -> None:
        """Hold one source batch for the next piece."""
        if batch.num_rows:
            self._held.append(batch)
            self._held_rows += batch.num_rows
            self._held_bytes += batch.nbytes

    @property
    def full(self) -> bool:
        """Enough rows held for one large write."""
        return self._held_rows >= self.rows or self._held_bytes >= self.nbytes

    def flush(self) -> Written:
        """Write the batches held as one piece; what became of them all."""
        done, dead = Written(), DeadLetterBuffer()
        piece = self._convert(done, dead)  # the source batches are let go of here
        if piece is not None:
            self.writer.send(piece, done, self.writer.dead, self.rows)
        for item in dead.drain():
            self.writer.dead.write(item.batch, item.reason, item.field)
        return done

    def _convert(self, done: Written, dead: DeadLetterSink) -> pa.Table | None:
        """The batches held, each validated, mapped and conformed, as the chunks of one
        table (None: no rows left to upsert); refused rows go to ``dead``. Not
        concatenated: the target writes the chunks as one piece (``upsert_table``)."""
        held, self._held, self._held_rows, self._held_bytes = self._held, [], 0, 0
        converted = []
        for batch in held:
            out = self.writer.prepare(batch, done, dead)
            if out is not None and out.num_rows:
                converted.append(out)
        if not converted:
            return None
        return pa.Table.from_batches(converted, self.writer.target_schema.arrow_schema())


class StreamedPiece:
    """One streamed write (``upsert_stream``): source batches taken from ``items`` while
    the target consumes them, each validated, mapped and conformed on the way, until
    ``nbytes`` source bytes were read, the source ended (None) or failed (an exception,
    kept in ``source_failure`` for after the write). Nothing is held: the caller
    checkpoints ``last`` once the write returned, and on a failed write re-reads from the
    previous checkpoint. Refused records wait in ``dead`` until then."""

    def __init__(self, writer: RecordWriter, nbytes: int) -> None:
        self.writer, self.nbytes = writer, nbytes
        self.done, self.dead = Written(), DeadLetterBuffer()
        self.last: ResumeToken | None = None
        self.rows_read = self.rows_sent = 0
        self.ended = False  # the source has no more batches (or failed)
        self.source_failure: BaseException | None = None
        self.failure: BaseException | None = None  # raised while preparing a batch

    def batches(self, items: Iterator[Any]) -> Iterator[pa.RecordBatch]:
        """The prepared batches of this piece, pulled from ``items`` on demand."""
        size = 0
        try:
            while size < self.nbytes:
                item = next(items)
                if item is None or isinstance(item, BaseException):
                    self.ended, self.source_failure = True, item
                    return
                batch, token = item
                out = self.writer.prepare(batch, self.done, self.dead)
                self.last, self.rows_read = token, self.rows_read + batch.num_rows
                size += batch.nbytes
                if out is not None and out.num_rows:
                    self.rows_sent += out.num_rows
                    yield out
        except GeneratorExit:  # the target stopped consuming: its call says why
            raise
        except BaseException as exc:
            self.failure = exc
            raise

    def acknowledged(self) -> Written:
        """After the write returned: what became of the piece's rows; its refused records
        are written to the job's dead letters now."""
        self.done.written += self.rows_sent
        for item in self.dead.drain():
            self.writer.dead.write(item.batch, item.reason, item.field)
        return self.done
