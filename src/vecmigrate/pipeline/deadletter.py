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

from vecmigrate.dump import crypto
from vecmigrate.errors import ConfigError

# Sealed dead-letter files (a copy that reads or writes an encrypted dump) end with this.
ENCRYPTED_SUFFIX = ".enc"


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
    leaves a half-written file; read them all with ``read_dead_letters(directory)``
    (or ``pq.read_table(directory)`` when they are not encrypted). With ``key`` (the copy
    reads or writes an encrypted dump) each file is sealed the way dump parts are, so
    refused records never land on disk in the clear.
    """

    def __init__(self, directory: Path, key: bytes | None = None) -> None:
        self.directory = directory
        self.key = key
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
            name = f"{self._stamp}-{os.getpid()}-{next(self._seq):06d}.parquet"
            path = self.directory / (name + ENCRYPTED_SUFFIX if self.key else name)
            tmp = path.with_name(f".{path.name}.tmp")
            if self.key is None:
                pq.write_table(table, tmp)
            else:
                sink = pa.BufferOutputStream()
                pq.write_table(table, sink)
                plain = sink.getvalue().to_pybytes()
                tmp.write_bytes(crypto.encrypt(self.key, plain, aad=path.name))
            os.replace(tmp, path)
            self.count += n


def read_dead_letters(directory: Path, key: bytes | None = None) -> pa.Table:
    """Every refused record in ``directory``, decrypting sealed files with ``key``."""
    tables = []
    for path in sorted(directory.glob("*.parquet*")):
        if path.name.endswith(ENCRYPTED_SUFFIX):
            if key is None:
                raise ConfigError(
                    f"dead letter {path.name} is encrypted",
                    hint="pass the key of the encrypted dump the copy read or wrote",
                )
            plain = crypto.decrypt(key, path.read_bytes(), aad=path.name)
            if plain is None:
                raise ConfigError(f"dead letter {path.name}: wrong key or altered file")
            tables.append(pq.read_table(pa.BufferReader(plain)))
        else:
            tables.append(pq.read_table(path))
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
