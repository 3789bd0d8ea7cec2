"""Dead letters: records the target refused for good, kept in Parquet with the reason."""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path
from typing import NamedTuple, Protocol

import pyarrow as pa
import pyarrow.parquet as pq


class DeadLetter(NamedTuple):
    """Refused records with the reason and the field at fault."""

    batch: pa.RecordBatch
    reason: str
    field: str | None


class DeadLetterSink(Protocol):
    """Where a copy puts refused records."""

    def write(self, batch: pa.RecordBatch, reason: str, field: str | None) -> None:
        """Record every row of ``batch`` as refused for ``reason``."""


class DeadLetterBuffer:
    """Holds refused records in memory until drained: a remote worker sends them back
    with the batch outcome, and the driver writes them next to its job file."""

    def __init__(self) -> None:
        self._items: list[DeadLetter] = []
        self._lock = threading.Lock()

    def write(self, batch: pa.RecordBatch, reason: str, field: str | None) -> None:
        """Keep ``batch`` as refused for ``reason``."""
        if batch.num_rows:
            with self._lock:
                self._items.append(DeadLetter(batch, reason, field))

    def drain(self) -> list[DeadLetter]:
        """Everything kept so far, emptied."""
        with self._lock:
            items, self._items = self._items, []
        return items


class DeadLetterWriter:
    """Writes refused records (all their columns) plus ``_reason`` and ``_field``.

    One small Parquet file per refusal, written atomically, so a killed job never
    leaves a half-written file; read them all with ``pq.read_table(directory)``.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._stamp = time.strftime("%Y%m%dT%H%M%S")

    def write(self, batch: pa.RecordBatch, reason: str, field: str | None) -> None:
        """Record every row of ``batch`` as refused for ``reason``."""
        n = batch.num_rows
        if n == 0:
            return
        table = pa.Table.from_batches([batch])
        table = table.append_column("_reason", pa.array([reason] * n, pa.string()))
        table = table.append_column("_field", pa.array([field] * n, pa.string()))
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{self._stamp}-{os.getpid()}-{next(self._seq):06d}.parquet"
            tmp = path.with_name(f".{path.name}.tmp")
            pq.write_table(table, tmp)
            os.replace(tmp, path)
            self.count += n
