"""NumPy ``.npy`` files as a source (read-only): ``npy:///path/vectors.npy`` (one collection,
named after the file) or ``npy:///dir`` (every ``*.npy`` in it).

The array is ``(rows, dim)`` floats; the file is memory-mapped and read slice by slice.
``?ids_file=ids.txt`` (relative to the ``.npy`` file's folder, or absolute) holds one id
per line, in row order; ids that are all canonical integers are int ids, others text.
Without it the ids are the row numbers 0..n-1. One pass over the ids file checks that it
has one id per row and notes where every block of rows starts. float16 vectors widen to
float32; float64 ones move only when float32 holds each value exactly (a copy otherwise
stops, naming the record: ``numpy .astype('float32')`` the file first if that precision is
enough). There are no documents or metadata; ``?metric=`` or sampled unit length gives
the metric.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.tabular import (
    SAMPLE_ROWS,
    FileConfig,
    FileConnector,
    Unit,
    int_or_text_ids,
    vector_field,
)
from vecmigrate.errors import ConfigError
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.records import conform
from vecmigrate.uri import ConnectionURI

UNIT_ROWS = 65_536


@dataclass(frozen=True)
class NpyConfig(FileConfig):
    """The ids of an ``.npy`` file's rows, and its metric (``connectors/tabular/``)."""

    # A text file with one id per line, in row order (default: row numbers).
    ids_file: str | None = None


@dataclass(frozen=True)
class _Ids:
    """What one pass over an ids file found: its lines, where every block starts, kind."""

    path: Path
    count: int
    starts: tuple[int, ...]  # byte offset of lines 0, UNIT_ROWS, 2*UNIT_ROWS...
    ints: bool


class NpyConnector(FileConnector):
    """``.npy`` arrays of vectors, with an optional ids file; read-only."""

    Config = NpyConfig
    config: NpyConfig
    schemes = ("npy",)
    suffixes = (".npy",)

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self._ids: dict[tuple[str, int, int], _Ids] = {}

    def _array(self, name: str) -> np.ndarray:
        path = self.path_of(name)
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise ConfigError(f"npy {path} is not a NumPy array file: {exc}") from None
        if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] < 1:
            shape = getattr(arr, "shape", None)
            raise ConfigError(
                f"npy {path} holds an array of shape {shape}; vectors are (rows, dim)",
                hint="save a 2-d array: numpy.save(path, vectors.reshape(len(vectors), -1))",
            )
        if arr.dtype.kind != "f":
            raise ConfigError(
                f"npy {path} holds {arr.dtype} values; vectors are floats",
                hint="numpy.save(path, vectors.astype('float32'))",
            )
        return arr

    def _ids_path(self, name: str) -> Path | None:
        if self.config.ids_file is None:
            return None
        path = self.path_of(name)
        if path != self.root:
            raise ConfigError(
                f"npy:// parameter ids_file names the ids of one file, but {self.uri} is a folder",
                hint="give the .npy file's path: npy:///path/vectors.npy?ids_file=ids.txt",
            )
        ids = Path(self.config.ids_file).expanduser()
        return ids if ids.is_absolute() else path.parent / ids

    def _ids_info(self, name: str) -> _Ids | None:
        path = self._ids_path(name)
        if path is None:
            return None
        if not path.is_file():
            raise ConfigError(f"npy ids_file {path} does not exist", hint="check ?ids_file=")
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._ids:
            starts, count, pos, ints = [], 0, 0, True
            with path.open("rb") as f:
                for raw in f:
                    if count % UNIT_ROWS == 0:
                        starts.append(pos)
                    pos += len(raw)
                    try:
                        text = raw.rstrip(b"\r\n").decode("utf-8")
                    except UnicodeDecodeError:
                        raise ConfigError(
                            f"npy ids_file {path} line {count + 1} is not UTF-8"
                        ) from None
                    ints = ints and int_or_text_ids([text]) == "int"
                    count += 1
            self._ids = {key: _Ids(path, count, tuple(starts), ints and count > 0)}
        return self._ids[key]

    def signature(self, name: str) -> tuple[Any, ...]:
        ids = self._ids_path(name)
        if ids is None or not ids.is_file():
            return super().signature(name)
        st = ids.stat()
        return (*super().signature(name), (str(ids), st.st_size, st.st_mtime_ns))

    # -- schema ----------------------------------------------------------------------------------
    def read_schema(self, name: str) -> CollectionSchema:
        arr = self._array(name)
        ids = self._ids_info(name)
        if ids is not None and ids.count != arr.shape[0]:
            raise ConfigError(
                f"npy {self.path_of(name).name} holds {arr.shape[0]:,} vectors but "
                f"{ids.path.name} {ids.count:,} ids",
                hint="the ids file has one id per line, in the array's row order",
            )
        notes: dict[str, Any] = {
            "ids": f"one per line of {ids.path.name}" if ids else "row numbers 0..n-1"
        }
        if arr.dtype == np.float64:
            notes["vector.dtype"] = "float64: moved only where float32 holds the value exactly"
        sample = np.asarray(arr[:SAMPLE_ROWS], dtype=np.float64)
        vec = vector_field("vector", int(arr.shape[1]), sample, self.config, "npy", notes)
        return CollectionSchema(
            name=name,
            id_type=IdType.INT if ids is None or ids.ints else IdType.STRING,
            vectors=(vec,),
            engine="npy",
            engine_settings=notes,
        )

    # -- reading ---------------------------------------------------------------------------------
    def units(self, name: str) -> list[Unit]:
        rows = int(self._array(name).shape[0])
        return [
            Unit([start, min(start + UNIT_ROWS, rows)], min(UNIT_ROWS, rows - start))
            for start in range(0, rows, UNIT_ROWS)
        ]

    def read_unit(
        self, name: str, schema: CollectionSchema, key: Any, skip: int, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        start, end = key
        arr = self._array(name)
        ids = self._ids_info(name)
        int_ids = schema.id_type is IdType.INT
        lines = _lines(ids, start, skip) if ids is not None else None
        dim = int(arr.shape[1])
        for s in range(start + skip, end, batch_rows):
            e = min(s + batch_rows, end)
            matrix = np.asarray(arr[s:e])
            if matrix.dtype not in (np.float32, np.float64):
                matrix = matrix.astype(np.float32)
            flat = pa.array(np.ascontiguousarray(matrix).reshape(-1))
            if lines is None:
                batch_ids: list[Any] = list(range(s, e))
            else:
                texts = [next(lines) for _ in range(e - s)]
                batch_ids = [int(t) for t in texts] if int_ids else texts
            raw = pa.RecordBatch.from_pydict(
                {
                    "id": pa.array(batch_ids, schema.id_arrow_type()),
                    "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
                }
            )
            yield conform(raw, schema)


def _lines(ids: _Ids, start: int, skip: int) -> Iterator[str]:
    """The ids from row ``start + skip`` on (``start`` is a block start)."""
    with ids.path.open("rb") as f:
        f.seek(ids.starts[start // UNIT_ROWS])
        for i, raw in enumerate(f):
            if i >= skip:
                yield raw.rstrip(b"\r\n").decode("utf-8")


__all__ = ["NpyConfig", "NpyConnector"]
