"""Writing source records into a target: validate, map, conform, split to the target's
limits, upsert with retries, and bisect a refused batch down to the refused records,
which become dead letters. ``copy`` and ``sync`` write through the same code."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import DataError, TerminalError
from vecmigrate.mapping import Mapping
from vecmigrate.model import CollectionSchema
from vecmigrate.pipeline.deadletter import DeadLetterSink
from vecmigrate.pipeline.validate import invalid_vector_rows, oversized_metadata
from vecmigrate.records import conform
from vecmigrate.retry import RetryPolicy, call_with_retry

log = logging.getLogger("vecmigrate.write")


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

    def write(self, batch: pa.RecordBatch) -> Written:
        """Validate, map, split and upsert one source batch."""
        done = Written()
        bad = {
            row: (reason, fld)
            for row, fld, reason in reversed(invalid_vector_rows(batch, self.source_schema))
        }
        batch = self._dead_letter(batch, bad, done)
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
            batch = self._dead_letter(batch, reasons, done)
        try:
            converted = conform(mapped, self.target_schema)
        except TerminalError:
            self._isolate(batch, done)
            return done
        limit = self.target.capabilities.max_metadata_bytes
        oversized = oversized_metadata(converted, self.target_schema, limit)
        if oversized:
            keep = np.ones(converted.num_rows, dtype=bool)
            keep[list(oversized)] = False
            converted = converted.filter(pa.array(keep))
            batch = self._dead_letter(batch, oversized, done)
        for chunk in self._split(converted):
            self._upsert_isolating(chunk, done)
        return done

    def _dead_letter(
        self, batch: pa.RecordBatch, reasons: dict[int, tuple[str, str]], done: Written
    ) -> pa.RecordBatch:
        """Write each refused row once (with its first reason); return the rows kept."""
        if not reasons:
            return batch
        for row, (reason, fld) in sorted(reasons.items()):
            self.dead.write(batch.slice(row, 1), reason, fld)
        done.refused += len(reasons)
        keep = np.ones(batch.num_rows, dtype=bool)
        keep[list(reasons)] = False
        return batch.filter(pa.array(keep))

    def _isolate(self, batch: pa.RecordBatch, done: Written) -> None:
        # A batch that cannot be converted as a whole: convert row by row to name the culprits.
        for i in range(batch.num_rows):
            row = batch.slice(i, 1)
            try:
                converted = conform(self.mapping.apply(row)[0], self.target_schema)
            except TerminalError as exc:
                self.dead.write(row, exc.message, getattr(exc, "field", None))
                done.refused += 1
                continue
            self._upsert_isolating(converted, done)

    def _split(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        per_row = max(1, batch.nbytes // max(1, batch.num_rows))
        step = max(1, min(self.max_rows, self.max_bytes // per_row))
        for start in range(0, batch.num_rows, step):
            yield batch.slice(start, step)

    def _upsert_isolating(self, batch: pa.RecordBatch, done: Written) -> None:
        """Upsert with retries; a refused batch is bisected down to the refused records."""
        if batch.num_rows == 0:
            return
        try:
            _, retries = call_with_retry(
                lambda: self.target.upsert(self.target_collection, batch),
                self.retry,
                what=f"upsert into {self.target_collection!r}",
            )
            done.written += batch.num_rows
            done.retries += retries
        except TerminalError as exc:
            if batch.num_rows == 1:
                rid = batch.column("id")[0].as_py()
                log.warning("record %r refused by the target: %s", rid, exc.message)
                self.dead.write(batch, exc.message, getattr(exc, "field", None))
                done.refused += 1
                return
            half = batch.num_rows // 2
            self._upsert_isolating(batch.slice(0, half), done)
            self._upsert_isolating(batch.slice(half), done)
