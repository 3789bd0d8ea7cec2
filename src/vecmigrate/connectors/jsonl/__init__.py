"""JSON Lines files as a source and a target: ``jsonl:///path/docs.jsonl`` (one collection,
named after the file) or ``jsonl:///dir`` (every ``*.jsonl`` / ``*.ndjson`` in it).

Lines other tools wrote are read as they are laid out (``connectors/tabular/``): the
keys holding id, text, vectors and metadata are named by ``?id_field=``... or recognised by
common names; every other key is a typed metadata field (types from the first 1,000
objects; a value of another type later travels unchanged in ``metadata_extra``). A file is
read line by line from byte offsets (one pass counts its lines and splits it into ranges
of 50,000), never whole. A line that is not JSON, not an object, or whose vector is not a
list of ``dim`` numbers is handed on as a record with a NaN vector, which the copy
dead-letters and counts, its ``metadata_extra`` naming the line and the reason.

As a target, vecmigrate writes ``{"id", "namespace", "document", <vectors>, <sparse>,
"metadata": {...}}`` per line (vectors in their shortest float32 text, which reads back
exactly) and the schema beside the file in ``<file>.vecmigrate.json``. Each upsert
appends its lines in one write under a lock; a job sends each id once, so the only repeats
are the batches a resumed job re-sends: ``--resume`` first cuts a line a killed run left
half-written, and ``finalize`` keeps the last copy of each id. Append-only, like the dump.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from vecmigrate.connectors.base import IfExists
from vecmigrate.connectors.files import make_dir
from vecmigrate.connectors.jsonl._rows import (
    RowLayout,
    encode_lines,
    infer_layout,
    native_layout,
    rows_to_batch,
)
from vecmigrate.connectors.tabular import (
    SAMPLE_ROWS,
    FileConfig,
    Unit,
    WritableFileConnector,
    stored_schema,
)
from vecmigrate.model import CollectionSchema
from vecmigrate.uri import ConnectionURI

SIDECAR = ".vecmigrate.json"
UNIT_ROWS = 50_000


@dataclass(frozen=True)
class JsonlConfig(FileConfig):
    """The keys of JSON Lines other tools wrote (``connectors/tabular/``)."""


def sidecar(path: Path) -> Path:
    """Where vecmigrate keeps the schema of a JSON Lines file it wrote."""
    return path.with_name(path.name + SIDECAR)


class JsonlConnector(WritableFileConnector):
    """JSON Lines files, one collection per file."""

    Config = JsonlConfig
    schemes = ("jsonl",)
    suffixes = (".jsonl", ".ndjson", ".jsonlines")

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self._layouts: dict[str, RowLayout] = {}
        self._units: dict[tuple[str, int, int], list[Unit]] = {}
        self._lock = threading.Lock()

    def is_ours(self, path: Path) -> bool:
        return sidecar(path).exists()

    # -- schema ----------------------------------------------------------------------------------
    def read_schema(self, name: str) -> CollectionSchema:
        path = self.path_of(name)
        if self.is_ours(path):
            schema = stored_schema(sidecar(path).read_text(), name, "jsonl")
            self._layouts[name] = native_layout(schema)
            return schema
        rows: list[dict[str, Any]] = []
        with path.open("rb") as f:
            for raw in f:
                try:
                    obj = json.loads(raw)
                except (UnicodeDecodeError, json.JSONDecodeError):
                    continue  # read as a bad record by the scan
                if isinstance(obj, dict):
                    rows.append(obj)
                if len(rows) >= SAMPLE_ROWS:
                    break
        schema, layout = infer_layout(name, rows, self.config)
        self._layouts[name] = layout
        return schema

    def _layout(self, name: str) -> RowLayout:
        if name not in self._layouts:
            self.describe(name)
        return self._layouts[name]

    # -- reading ---------------------------------------------------------------------------------
    def units(self, name: str) -> list[Unit]:
        """Byte ranges of about ``UNIT_ROWS`` records: [start, end, first line number]."""
        path = self.path_of(name)
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._units:
            self._units = {key: _line_units(path)}
        return self._units[key]

    def read_unit(
        self, name: str, schema: CollectionSchema, key: Any, skip: int, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        start, end, number = key
        path = self.path_of(name)
        layout = self._layout(name)
        where = f"jsonl {path.name}"
        pending: list[tuple[int, bytes]] = []
        with path.open("rb") as f:
            f.seek(start)
            pos = start
            for raw in f:
                if pos >= end:
                    break
                pos += len(raw)
                number += 1
                if not raw.strip():
                    continue
                if skip:
                    skip -= 1
                    continue
                pending.append((number - 1, raw))
                if len(pending) >= batch_rows:
                    yield rows_to_batch(pending, layout, schema, where)
                    pending = []
        if pending:
            yield rows_to_batch(pending, layout, schema, where)

    # -- writing ---------------------------------------------------------------------------------
    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        path = self.write_path(schema.name)
        exists = path.is_file()
        if exists and not self.is_ours(path) and if_exists != "fail":
            raise self.not_ours(path, "write into or replace")
        what = f"jsonl collection {schema.name!r} ({path})"
        if self._keep_existing(schema.name, exists, if_exists, what):
            _cut_partial_line(path)
            return
        if exists:
            self.drop(schema.name)
        make_dir(path.parent)
        tmp = sidecar(path).with_name(f".{sidecar(path).name}.tmp")
        tmp.write_text(schema.to_json())
        os.replace(tmp, sidecar(path))
        path.write_bytes(b"")
        self._schemas[schema.name] = schema
        self._layouts[schema.name] = native_layout(schema)

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        path = self.path_of(name)
        if not self.is_ours(path):
            raise self.not_ours(path, "write into")
        text = "".join(line + "\n" for line in encode_lines(batch, self._schema(name)))
        with self._lock, path.open("a", encoding="utf-8") as f:
            f.write(text)

    def drop(self, name: str) -> None:
        self._schemas.pop(name, None)
        self._layouts.pop(name, None)
        path = self.collections().get(name)
        if path is None:
            return
        if not self.is_ours(path):
            raise self.not_ours(path, "delete")
        path.unlink(missing_ok=True)
        sidecar(path).unlink(missing_ok=True)

    def finalize(self, name: str) -> None:
        """Keep the last copy of each id (a resumed job re-sent some batches)."""
        self._call(f"jsonl finalize {name!r}", self._finalize, name)

    def _finalize(self, name: str) -> None:
        path = self.path_of(name)
        if not self.is_ours(path):
            return
        decoder = json.JSONDecoder()
        ids: list[Any] = []
        with path.open("r", encoding="utf-8") as f:
            for line in f:
                # vecmigrate writes the id first: read it without parsing the vectors.
                ids.append(decoder.raw_decode(line, len('{"id":'))[0] if line.strip() else None)
        present = [rid for rid in ids if rid is not None]
        if len(set(present)) == len(present):
            return
        last = {rid: i for i, rid in enumerate(ids)}
        tmp = path.with_name(f".{path.name}.tmp")
        with path.open("r", encoding="utf-8") as src, tmp.open("w", encoding="utf-8") as out:
            for i, line in enumerate(src):
                if ids[i] is not None and last[ids[i]] == i:
                    out.write(line)
        os.replace(tmp, path)


def _line_units(path: Path) -> list[Unit]:
    units: list[Unit] = []
    start = pos = records = 0
    first = line = 1
    with path.open("rb") as f:
        for raw in f:
            pos += len(raw)
            line += 1
            if raw.strip():
                records += 1
            if records >= UNIT_ROWS:
                units.append(Unit([start, pos, first], records))
                start, first, records = pos, line, 0
    if records or not units:
        units.append(Unit([start, pos, first], records))
    return units


def _cut_partial_line(path: Path) -> None:
    """Remove the end of a line a killed write left without its newline."""
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        step = 1 << 16
        end = size
        while end > 0:
            begin = max(0, end - step)
            f.seek(begin)
            chunk = f.read(end - begin)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                f.truncate(begin + cut + 1)
                return
            end = begin
        f.truncate(0)


__all__ = ["JsonlConfig", "JsonlConnector"]
