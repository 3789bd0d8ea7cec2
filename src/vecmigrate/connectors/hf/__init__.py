"""Hugging Face ``datasets`` saved with ``save_to_disk`` as a source (read-only):
``hf:///path`` is a saved ``Dataset`` (one collection, named after the folder), a saved
``DatasetDict`` (one collection per split) or a folder of saved datasets.

The Arrow files are read directly with pyarrow, memory-mapped, record batch by record
batch (their order from ``state.json``): the ``datasets`` package is neither needed nor
used. Columns are named by ``?id_field=&vector_field=``... or recognised
(``connectors/tabular/``); a ``Sequence(Value("float32"))`` feature (a list, or a
fixed-size list with ``length=``) holds vectors; ``?exclude_fields=image`` leaves out
columns no portable type holds (images, audio as bytes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from vecmigrate.connectors.tabular import (
    SAMPLE_ROWS,
    ArrowLayout,
    FileConfig,
    FileConnector,
    Unit,
    infer_arrow_layout,
    read_arrow_batch,
    rebatch,
    row_namer,
)
from vecmigrate.errors import ConfigError
from vecmigrate.model import CollectionSchema
from vecmigrate.uri import ConnectionURI

STATE = "state.json"
INFO = "dataset_info.json"


@dataclass(frozen=True)
class HfConfig(FileConfig):
    """The columns of a saved data set (``connectors/tabular/``)."""


@contextmanager
def _reader(path: Path) -> Iterator[Any]:
    """A saved Arrow file's batches: the stream format ``datasets`` writes (or a file)."""
    source = pa.memory_map(str(path))
    try:
        try:
            reader: Any = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_file(source)
        yield reader
    finally:
        source.close()


def _batches(reader: Any) -> Iterator[pa.RecordBatch]:
    if isinstance(reader, pa.ipc.RecordBatchFileReader):
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
    else:
        yield from reader


class HfConnector(FileConnector):
    """Data sets saved by Hugging Face ``datasets``; read-only."""

    Config = HfConfig
    schemes = ("hf",)
    suffixes = ()
    folders: ClassVar[bool] = True

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self._layouts: dict[str, ArrowLayout] = {}
        self._rows: dict[tuple[str, int, int], int] = {}

    def stem(self, path: Path) -> str:
        return path.name

    def is_collection(self, path: Path) -> bool:
        if not path.is_dir():
            return False
        return (path / STATE).is_file() or ((path / INFO).is_file() and any(path.glob("*.arrow")))

    def collections(self) -> dict[str, Path]:
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(
                f"{self.uri} is a file; a saved Hugging Face data set is a folder",
                hint="give the folder Dataset.save_to_disk (or DatasetDict.save_to_disk) wrote",
            )
        return super().collections()

    def files(self, name: str) -> list[Path]:
        """The data set's Arrow files, in order."""
        path = self.path_of(name)
        state = path / STATE
        if state.is_file():
            listed = json.loads(state.read_text()).get("_data_files") or []
            files = [path / f["filename"] for f in listed]
        else:
            files = sorted(path.glob("*.arrow"))
        if not files:
            raise ConfigError(f"hf data set {name!r} at {path} lists no Arrow files")
        return files

    # -- schema ----------------------------------------------------------------------------------
    def read_schema(self, name: str) -> CollectionSchema:
        first = self.files(name)[0]
        with _reader(first) as reader:
            arrow = reader.schema
            batches, rows = [], 0
            for batch in _batches(reader):
                batches.append(batch)
                rows += batch.num_rows
                if rows >= SAMPLE_ROWS:
                    break
            head = pa.Table.from_batches(batches, schema=arrow).slice(0, SAMPLE_ROWS)
        schema, layout = infer_arrow_layout("hf", name, arrow, self.config, lambda: head)
        self._layouts[name] = layout
        return schema

    def _layout(self, name: str) -> ArrowLayout:
        if name not in self._layouts:
            self.describe(name)
        return self._layouts[name]

    # -- reading ---------------------------------------------------------------------------------
    def units(self, name: str) -> list[Unit]:
        """One unit per Arrow file (counting reads batch headers of the mapped file only)."""
        out = []
        for f in self.files(name):
            st = f.stat()
            key = (str(f), st.st_size, st.st_mtime_ns)
            if key not in self._rows:
                with _reader(f) as reader:
                    self._rows[key] = sum(b.num_rows for b in _batches(reader))
            out.append(Unit([f.name], self._rows[key]))
        return out

    def read_unit(
        self, name: str, schema: CollectionSchema, key: Any, skip: int, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        file = self.path_of(name) / key[0]
        layout = self._layout(name)
        with _reader(file) as reader:

            def converted() -> Iterator[pa.RecordBatch]:
                seen = 0
                for raw in _batches(reader):
                    at, seen = seen, seen + raw.num_rows
                    if seen <= skip:
                        continue
                    if at < skip:
                        raw, at = raw.slice(skip - at), skip
                    where = row_namer(f"hf {file.name} row {{}}", at)
                    yield read_arrow_batch(raw.select(layout.columns()), layout, schema, where)

            yield from rebatch(converted(), 0, batch_rows)


__all__ = ["HfConfig", "HfConnector"]
