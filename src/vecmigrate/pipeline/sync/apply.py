"""Apply source changes to a target, record by record id, for ``sync``.

An id is brought up to date by reading its *current* state from the source: present ->
upsert (mapped like copy, invalid records dead-lettered), absent -> delete on the target.
Applying the same id twice is harmless, which is what makes a resumed sync exact.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from vecmigrate.connectors.base import Connector
from vecmigrate.mapping import Mapping
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.pipeline.deadletter import DeadLetterWriter
from vecmigrate.pipeline.writer import RecordWriter
from vecmigrate.retry import RetryPolicy, call_with_retry
from vecmigrate.verify.digest import id_text

log = logging.getLogger("vecmigrate.sync")


@dataclass
class Applied:
    """What one apply call did."""

    upserted: int = 0
    deleted: int = 0
    dead_letters: int = 0
    retries: int = 0

    def add(self, other: Applied) -> None:
        """Accumulate another call's counts."""
        self.upserted += other.upserted
        self.deleted += other.deleted
        self.dead_letters += other.dead_letters
        self.retries += other.retries


class Applier:
    """Writes source records (by id) to the target the way ``copy`` would."""

    def __init__(
        self,
        source: Connector,
        target: Connector,
        name: str,
        target_name: str,
        source_schema: CollectionSchema,
        mapping: Mapping,
        dead: DeadLetterWriter,
        retry: RetryPolicy,
        batch_rows: int = 500,
    ) -> None:
        self.source, self.target = source, target
        self.name, self.target_name = name, target_name
        self.source_schema, self.mapping = source_schema, mapping
        self.retry = retry
        self.batch_rows = max(1, min(batch_rows, target.capabilities.max_batch_rows))
        self.writer = RecordWriter(
            target, target_name, name, source_schema, mapping, dead, retry, batch_rows
        )

    def target_ids(self, source_ids: Sequence[Any]) -> list[Any]:
        """Ids the given source records have on the target (the mapping's id strategy)."""
        ids = self.mapping.map_ids(source_ids)
        if self.mapping.target.id_type is IdType.INT:
            return [int(i) for i in ids]
        return [str(i) for i in ids]

    def source_ids(self, ids: Sequence[Any]) -> list[Any]:
        """Ids typed as the source stores them."""
        if self.source_schema.id_type is IdType.INT:
            return [int(i) for i in ids]
        return [str(i) for i in ids]

    def bring_current(self, source_ids: Sequence[Any]) -> Applied:
        """Make the target hold each id as the source holds it now (or not at all)."""
        done = Applied()
        ids = self.source_ids(source_ids)
        for start in range(0, len(ids), self.batch_rows):
            chunk = ids[start : start + self.batch_rows]
            batch = self.source.fetch(self.name, chunk, schema=self.source_schema)
            present = {id_text(i) for i in batch.column("id").to_pylist()}
            gone = [i for i in chunk if id_text(i) not in present]
            if batch.num_rows:
                done.add(self.write(batch))
            if gone:
                done.add(self.delete(self.target_ids(gone)))
        return done

    def delete(self, target_ids: Sequence[Any]) -> Applied:
        """Delete these target ids (missing ones are a no-op), with retries."""
        done = Applied()
        for start in range(0, len(target_ids), 1000):
            chunk = list(target_ids[start : start + 1000])
            _, retries = call_with_retry(
                lambda chunk=chunk: self.target.delete(self.target_name, chunk),  # type: ignore[misc]
                self.retry,
                what=f"delete from {self.target_name!r}",
            )
            done.deleted += len(chunk)
            done.retries += retries
        return done

    # -- upserts, as copy does them ----------------------------------------------------------
    def write(self, batch: pa.RecordBatch) -> Applied:
        """Validate, map, split and upsert source records; refused ones are dead-lettered."""
        w = self.writer.write(batch)
        return Applied(upserted=w.written, dead_letters=w.refused, retries=w.retries)
