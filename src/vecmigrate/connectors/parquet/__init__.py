"""Parquet files as a source and a target: ``parquet:///path``.

The path is one collection — a ``.parquet`` file, or a folder of them read as one data set
(named after the file or folder) — or a folder of such folders. Files other tools wrote
are read as they are laid out (``connectors/tabular/``: ``?id_field=&vector_field=``...);
vectors are fixed-size or variable lists of floats, read row group by row group
(``ParquetFile.iter_batches``) through a bounded buffer, never a whole file or a whole
row group at once.

As a target, a collection is a folder (``parquet:///out/docs``, or ``docs/`` inside
``parquet:///out``) of part files in the collection's Arrow layout plus
``_vecmigrate_schema.json`` (hidden from pandas, Polars, DuckDB and pyarrow data set
readers by its leading underscore). Each upsert writes one part, atomically (a temp file
renamed); ``finalize`` removes the temp files of a killed run and, when a resumed job
re-sent batches, keeps the last copy of each id. Append-only like the dump: no deletes.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vecmigrate.connectors.base import IfExists
from vecmigrate.connectors.files import make_dir
from vecmigrate.connectors.foreign import check_ids
from vecmigrate.connectors.tabular import (
    SAMPLE_ROWS,
    ArrowLayout,
    FileConfig,
    Unit,
    WritableFileConnector,
    infer_arrow_layout,
    read_arrow_batch,
    rebatch,
    row_namer,
    stored_schema,
)
from vecmigrate.errors import ConfigError
from vecmigrate.model import CollectionSchema, Partition
from vecmigrate.records import conform
from vecmigrate.uri import ConnectionURI

SCHEMA_FILE = "_vecmigrate_schema.json"
# Column chunks are read through a buffer this large instead of whole: pyarrow's default
# reads a row group's chunks at once, and a file written in one call holds up to 1Mi rows
# per row group (1.5 GiB of 384-d vectors; peak RSS 1.8-2.0 GiB importing it, ~0.5 GiB so).
READ_BUFFER = 8 * 1024 * 1024
SCHEMA_KEY = b"vecmigrate.schema"
PART_PREFIX = "part-"


@dataclass(frozen=True)
class ParquetConfig(FileConfig):
    """The columns of Parquet files other tools wrote (``connectors/tabular/``)."""


class ParquetConnector(WritableFileConnector):
    """Parquet files and folders of them."""

    Config = ParquetConfig
    schemes = ("parquet",)
    suffixes = (".parquet", ".pq")
    folders: ClassVar[bool] = True

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self._layouts: dict[str, ArrowLayout | None] = {}
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._ids_checked: set[str] = set()

    # -- where the data is ---------------------------------------------------------------------
    def is_collection(self, path: Path) -> bool:
        if path.is_file():
            return True
        return path.is_dir() and ((path / SCHEMA_FILE).exists() or bool(_data_files(path)))

    def files(self, name: str) -> tuple[Path, list[Path]]:
        """The collection's folder (or file) and its data files, in order."""
        path = self.path_of(name)
        return path, [path] if path.is_file() else _data_files(path)

    def is_ours(self, path: Path) -> bool:
        return path.is_dir() and (path / SCHEMA_FILE).exists()

    # -- schema ----------------------------------------------------------------------------------
    def read_schema(self, name: str) -> CollectionSchema:
        path, files = self.files(name)
        stored = self._stored_schema(path, name)
        if stored is not None:
            self._layouts[name] = None
            return stored
        if not files:
            raise ConfigError(f"parquet collection {name!r} at {path} holds no .parquet files")
        first = open_streaming(files[0])

        def sample() -> pa.Table:
            batches = first.iter_batches(batch_size=SAMPLE_ROWS)
            head = next(batches, None)
            return pa.Table.from_batches([head]) if head else first.schema_arrow.empty_table()

        schema, layout = infer_arrow_layout(
            "parquet", name, first.schema_arrow, self.config, sample
        )
        for f in files[1:]:
            other = pq.read_schema(f)
            missing = [c for c in layout.columns() if c not in other.names]
            if missing:
                raise ConfigError(
                    f"parquet collection {name!r}: {f.name} has no column {missing[0]!r} "
                    f"(unlike {files[0].name})",
                    hint="every file of a folder must hold the same columns",
                )
        self._layouts[name] = layout
        return schema

    def _stored_schema(self, path: Path, name: str) -> CollectionSchema | None:
        if path.is_dir() and (path / SCHEMA_FILE).exists():
            return stored_schema((path / SCHEMA_FILE).read_text(), name, "parquet")
        if path.is_file():  # a part file vecmigrate wrote, copied on its own
            meta = pq.read_schema(path).metadata or {}
            if SCHEMA_KEY in meta:
                return stored_schema(meta[SCHEMA_KEY].decode(), name, "parquet")
        return None

    def _layout(self, name: str) -> ArrowLayout | None:
        if name not in self._layouts:
            self.describe(name)
        return self._layouts[name]

    # -- reading ---------------------------------------------------------------------------------
    def units(self, name: str) -> list[Unit]:
        path, files = self.files(name)
        out = []
        for f in files:
            meta = pq.ParquetFile(f).metadata
            rel = f.name if path.is_dir() else ""
            for rg in range(meta.num_row_groups):
                out.append(Unit([rel, rg], meta.row_group(rg).num_rows))
        return out

    def partitions(self, name: str, n: int) -> list[Partition]:
        self._check_ids(name)
        return super().partitions(name, n)

    def _check_ids(self, name: str) -> None:
        """An application's file: its id column read once (only that column), before a
        record is; a file keeps nothing unique, and records keyed by a repeated id would
        be merged on the target (``refuse_repeated_keys``)."""
        layout = self._layout(name)
        if layout is None or name in self._ids_checked:
            return
        files, key = self.files(name)[1], layout.id

        def read() -> Iterator[pa.Array]:
            for f in files:
                for batch in pq.ParquetFile(f).iter_batches(columns=[key]):
                    yield batch.column(0)

        # A row without an id is refused on its own (a dead letter naming the row).
        check_ids(name, key, read, nulls_refused=False)
        self._ids_checked.add(name)

    def read_unit(
        self, name: str, schema: CollectionSchema, key: Any, skip: int, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        rel, rg = key
        path = self.path_of(name)
        file = path / rel if rel else path
        layout = self._layout(name)
        pf = open_streaming(file)
        first = sum(pf.metadata.row_group(i).num_rows for i in range(rg))
        columns = None if layout is None else layout.columns()
        batches = pf.iter_batches(batch_size=batch_rows, row_groups=[rg], columns=columns)

        def converted() -> Iterator[pa.RecordBatch]:
            seen = 0
            for raw in batches:
                at, seen = seen, seen + raw.num_rows
                if seen <= skip:  # before the resume point: counted, not converted
                    continue
                if at < skip:
                    raw, at = raw.slice(skip - at), skip
                if layout is None:
                    yield conform(raw, schema, strict=True)
                else:
                    base = first + at
                    where = row_namer(f"parquet {file.name} row {{}}", base)
                    yield read_arrow_batch(raw, layout, schema, where)

        yield from rebatch(converted(), 0, batch_rows)

    # -- writing ---------------------------------------------------------------------------------
    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        path = self.write_path(schema.name)
        exists = path.exists() and self.is_collection(path)
        what = f"parquet collection {schema.name!r} ({path})"
        if exists and not self.is_ours(path) and if_exists != "fail":
            raise self.not_ours(path, "write into or replace")
        if self._keep_existing(schema.name, exists, if_exists, what):
            return
        if exists:
            self.drop(schema.name)
        make_dir(path)
        _write_atomic(path / SCHEMA_FILE, schema.to_json())
        self._schemas[schema.name] = schema
        self._layouts[schema.name] = None

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        path = self.path_of(name)
        if not self.is_ours(path):
            raise self.not_ours(path, "write into")
        schema = self._schema(name)
        table = pa.Table.from_batches([batch]).replace_schema_metadata(
            {SCHEMA_KEY: schema.to_json().encode()}
        )
        with self._lock:
            part = f"{PART_PREFIX}{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}"
        tmp = path / f".{part}.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, path / f"{part}.parquet")

    def drop(self, name: str) -> None:
        self._schemas.pop(name, None)
        self._layouts.pop(name, None)
        found = self.collections().get(name)
        if found is None:
            return
        if not self.is_ours(found):
            raise self.not_ours(found, "delete")
        for p in found.iterdir():
            if p.name.startswith((PART_PREFIX, f".{PART_PREFIX}")) or p.name == SCHEMA_FILE:
                p.unlink(missing_ok=True)
        if not any(found.iterdir()):
            found.rmdir()

    def finalize(self, name: str) -> None:
        """Remove a killed run's temp files; keep the last copy of each id."""
        self._call(f"parquet finalize {name!r}", self._finalize, name)

    def _finalize(self, name: str) -> None:
        path = self.path_of(name)
        if not self.is_ours(path):
            return
        for stale in path.glob(f".{PART_PREFIX}*.tmp"):
            stale.unlink(missing_ok=True)
        parts = [p for p in _data_files(path) if p.name.startswith(PART_PREFIX)]
        id_type = self._schema(name).id_arrow_type()
        ids = [pq.read_table(p, columns=["id"]).column("id").cast(id_type) for p in parts]
        chunks = [c for col in ids for c in col.chunks]
        every = pa.chunked_array(chunks, type=id_type)
        if pc.count_distinct(every).as_py() == len(every):
            return
        counts = pc.value_counts(every)
        repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
        seen: set[Any] = set()
        # Last part first, last row first: the first copy met is the one kept.
        for part, col in reversed(list(zip(parts, ids, strict=True))):
            values = col.to_pylist()
            hit = pc.is_in(col, value_set=repeated).to_pylist()
            drop = set()
            for row in range(len(values) - 1, -1, -1):
                if not hit[row]:
                    continue
                if values[row] in seen:
                    drop.add(row)
                seen.add(values[row])
            if drop:
                table = pq.read_table(part)
                keep = pa.array([i not in drop for i in range(table.num_rows)])
                tmp = path / f".{part.name}.tmp"
                pq.write_table(table.filter(keep), tmp)
                os.replace(tmp, part)


def _data_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.name.lower().endswith((".parquet", ".pq"))
        and not p.name.startswith((".", "_"))
    )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


__all__ = ["ParquetConfig", "ParquetConnector"]


def open_streaming(file: Path) -> pq.ParquetFile:
    """A Parquet file whose batches are decoded from buffered reads of their pages."""
    return pq.ParquetFile(file, buffer_size=READ_BUFFER, pre_buffer=False)
