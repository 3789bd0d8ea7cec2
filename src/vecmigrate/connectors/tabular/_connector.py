"""The file connectors' base classes: a URI's collections found as units (row groups,
files, line ranges), partitioned, scanned, searched exactly, and (writable kinds) written."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.files import os_error
from vecmigrate.connectors.partitions import balanced_groups
from vecmigrate.connectors.tabular._layout import (
    _INT_TEXT,
    CACHE_BYTES,
    LAYOUT_KEY,
    READ_ONLY_CAPABILITIES,
    WRITABLE_CAPABILITIES,
    FileConfig,
    IdKind,
)
from vecmigrate.errors import ConfigError, DataError, VecmigrateError
from vecmigrate.exact import TopK
from vecmigrate.filters import evaluate
from vecmigrate.model import (
    CollectionSchema,
    Partition,
    ResumeToken,
)
from vecmigrate.records import (
    table_to_batch,
    vectors_to_numpy,
)


@dataclass(frozen=True)
class Unit:
    """A slice of a collection read in one go: a row group, a file, a line range."""

    key: Any  # JSON: what the format needs to find it again
    rows: int


class FileConnector(Connector):
    """A file format as a connector: collections found on disk, scanned in units,
    counted, fetched, filtered and searched exactly (there is no index)."""

    Config: ClassVar[type[FileConfig]] = FileConfig
    config: FileConfig
    storage: ClassVar[Literal["path", "server", "service"]] = "path"
    capabilities = READ_ONLY_CAPABILITIES
    # Name endings of this format's files (the first is what a write makes).
    suffixes: ClassVar[tuple[str, ...]] = ()
    # A folder can itself be one collection (Parquet data sets, saved HF data sets).
    folders: ClassVar[bool] = False

    def __init__(self, uri: Any) -> None:
        super().__init__(uri)
        self.root: Path = uri.local_path.expanduser()
        # Converted batches of one small collection, for exact search, fetch and filtered
        # counts (``verify`` asks each query on its own: one scan each otherwise).
        self._cache: tuple[Any, list[pa.RecordBatch]] | None = None
        self._cache_lock = threading.Lock()

    # -- finding collections -----------------------------------------------------------------
    def stem(self, path: Path) -> str:
        """The collection name of a file or folder: its name without the format's ending."""
        for suffix in self.suffixes:
            if path.name.lower().endswith(suffix) and len(path.name) > len(suffix):
                return path.name[: -len(suffix)]
        return path.stem if path.is_file() else path.name

    def is_collection(self, path: Path) -> bool:
        """``path`` is one collection of this format (a file; a folder for some formats)."""
        return path.is_file()

    def members(self, folder: Path) -> dict[str, Path]:
        """The collections inside a folder that is not one itself."""
        out: dict[str, Path] = {}
        for p in sorted(folder.iterdir()):
            if p.name.startswith((".", "_")):
                continue
            if (p.is_file() and p.name.lower().endswith(self.suffixes)) or (
                self.folders and p.is_dir() and self.is_collection(p)
            ):
                out.setdefault(self.stem(p), p)
        return out

    def collections(self) -> dict[str, Path]:
        """{name: file or folder} of every collection the URI names."""
        root = self.root
        try:
            if not root.exists():
                return {}
            if self.is_collection(root):
                return {self.stem(root): root}
            if root.is_dir():
                return self.members(root)
        except OSError as exc:
            raise os_error(exc, f"{self.engine} {root}") from None
        raise ConfigError(
            f"{self.uri} is neither a {self.engine} file nor a folder of them",
            hint=f"name a file ending in {' or '.join(self.suffixes)}, or a folder of them",
        )

    def path_of(self, name: str) -> Path:
        """Where collection ``name`` is; ConfigError naming the ones there are."""
        found = self.collections().get(name)
        if found is None:
            known = ", ".join(sorted(self.collections())) or "none"
            raise ConfigError(
                f"{self.engine} at {self.uri} has no collection {name!r}",
                hint=f"its collections: {known}",
            )
        return found

    def list_collections(self) -> list[str]:
        return sorted(self.collections())

    # -- the format's part ---------------------------------------------------------------------
    def describe(self, name: str) -> CollectionSchema:
        schema = self.read_schema(name)
        self._schemas[name] = schema
        return schema

    def read_schema(self, name: str) -> CollectionSchema:
        """The schema of ``name``, read or inferred from the file."""
        raise NotImplementedError

    def units(self, name: str) -> list[Unit]:
        """Every unit of ``name``, in order."""
        raise NotImplementedError

    def read_unit(
        self, name: str, schema: CollectionSchema, key: Any, skip: int, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        """The records of one unit after the first ``skip``, in ``schema``'s layout, in
        batches of at most ``batch_rows``."""
        raise NotImplementedError

    # -- reading ---------------------------------------------------------------------------------
    def count(self, name: str, filter: Filter | None = None) -> int:
        schema = self._schema(name)
        node = self._filter(schema, filter)
        if node is None:
            return sum(u.rows for u in self.units(name))
        return sum(int(evaluate(node, b).sum()) for b in self._all_batches(name, schema))

    def partitions(self, name: str, n: int) -> list[Partition]:
        units = list(enumerate(self.units(name)))
        groups = balanced_groups(units, lambda u: u[1].rows, n)
        return [
            Partition(
                id=f"units-{i}",
                spec={"units": [u.key for _, u in sorted(g, key=lambda x: x[0])]},
                estimated_rows=sum(u.rows for _, u in g),
            )
            for i, g in enumerate(groups)
        ]

    def scan(
        self,
        name: str,
        partition: Partition,
        resume: ResumeToken | None = None,
        *,
        schema: CollectionSchema | None = None,
        batch_rows: int = 1000,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        schema = schema or self._schema(name)
        keys = partition.spec["units"]
        start, done = (0, 0)
        if resume:
            pos = json.loads(resume)
            start, done = pos["unit"], pos["row"]
        for ui in range(start, len(keys)):
            row = done if ui == start else 0
            for batch in self.read_unit(name, schema, keys[ui], row, max(1, batch_rows)):
                if batch.num_rows == 0:
                    continue
                row += batch.num_rows
                yield batch, json.dumps({"unit": ui, "row": row})

    def signature(self, name: str) -> tuple[Any, ...]:
        """What changes when the collection's files change (name, size, mtime of each)."""
        path = self.path_of(name)
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
        return tuple((p.name, st.st_size, st.st_mtime_ns) for p in files for st in [p.stat()])

    def _all_batches(self, name: str, schema: CollectionSchema) -> Iterator[pa.RecordBatch]:
        """Every record, in batches: from the cache when the collection is small
        (``CACHE_BYTES``) and its files unchanged, else scanned (and cached when small)."""
        key = (name, schema.to_json(), self.signature(name))
        cached = self._cache
        if cached is not None and cached[0] == key:
            yield from cached[1]
            return
        kept: list[pa.RecordBatch] | None = []
        size = 0
        for part in self.partitions(name, 1):
            for batch, _ in self.scan(name, part, schema=schema, batch_rows=10_000):
                if kept is not None:
                    size += batch.nbytes
                    if size <= CACHE_BYTES:
                        kept.append(batch)
                    else:
                        kept = None
                yield batch
        if kept is not None:
            with self._cache_lock:
                self._cache = (key, kept)

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        want = schema.id_arrow_type()
        wanted = []
        for i in ids:  # an id of another type matches nothing
            try:
                wanted.append(pa.scalar(i, type=want).as_py())
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
                continue
        keys = pa.array(wanted, type=want)
        found = [
            b.filter(pc.is_in(b.column("id"), value_set=keys))
            for b in self._all_batches(name, schema)
        ]
        return table_to_batch(pa.Table.from_batches(found, schema=schema.arrow_schema()))

    def search(
        self,
        name: str,
        vectors: np.ndarray,
        k: int,
        *,
        filter: Filter | None = None,
        params: dict[str, Any] | None = None,
        vector_field: str | None = None,
    ) -> tuple[list[list[Any]], list[list[float]]]:
        """Exact search over every record (files have no index): the ground truth."""
        schema = self._schema(name)
        node = self._filter(schema, filter)
        field = schema.vector_field(vector_field)
        top = TopK(np.asarray(vectors, dtype=np.float32), k, field.metric)
        for batch in self._all_batches(name, schema):
            matrix = vectors_to_numpy(batch.column(field.name))
            keep = np.isfinite(matrix).all(axis=1)
            if node is not None:
                keep &= np.asarray(evaluate(node, batch), dtype=bool)
            mask = None if keep.all() else np.broadcast_to(keep, (len(vectors), batch.num_rows))
            top.add(batch.column("id").to_pylist(), np.where(keep[:, None], matrix, 0), mask)
        truth = top.result()
        return truth.ids, [
            [float(s) for s in row[: len(ids)]]
            for row, ids in zip(truth.scores, truth.ids, strict=True)
        ]

    # -- writing: read-only unless a format says otherwise ---------------------------------------
    def _read_only(self) -> VecmigrateError:
        return ConfigError(
            f"{self.engine} files are read-only for vecmigrate: {self.uri} cannot be a target",
            hint="copy into an engine, or into parquet:///path or jsonl:///path.jsonl",
        )

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        raise self._read_only()

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        raise self._read_only()

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        raise self._read_only()

    def drop(self, name: str) -> None:
        if name in self.collections():  # missing is a no-op, as for every engine
            raise self._read_only()

    @classmethod
    def translate_error(cls, exc: Exception, what: str) -> VecmigrateError | None:
        if isinstance(exc, OSError):
            return os_error(exc, what)
        if isinstance(exc, pa.ArrowInvalid | pa.ArrowNotImplementedError | pa.ArrowTypeError):
            return DataError(f"{what}: {exc}")
        return None


def stored_schema(text: str, name: str, engine: str) -> CollectionSchema:
    """A schema vecmigrate stored beside a file it wrote, as this collection's: named
    ``name``, without notes about where another engine kept things."""
    schema = CollectionSchema.from_json(text)
    settings = {k: v for k, v in schema.engine_settings.items() if k != LAYOUT_KEY}
    return schema.replace(name=name, engine=engine, engine_settings=settings)


class WritableFileConnector(FileConnector):
    """A format vecmigrate also writes (Parquet, JSON Lines): append-only like the dump.

    ``upsert`` appends; a copy job sends each id once, and the only repeats are the
    batches a resumed job re-sends, so ``finalize`` keeps the last copy of each id and the
    result is what idempotent upserts give. ``delete`` (and so ``sync``) is refused
    (``capabilities.mutable`` is False). Files vecmigrate did not write are never
    replaced, appended to or deleted.
    """

    capabilities = WRITABLE_CAPABILITIES
    strict_layout = True

    def collection_location(self, name: str) -> str | None:
        try:
            return os.path.realpath(self.write_path(name))
        except ConfigError:  # the URI is another collection's file: not this one's place
            return None

    def write_path(self, name: str) -> Path:
        """Where ``create`` puts collection ``name``: the URI's path when it is named after
        it (``parquet:///out/docs`` for ``docs``), else a member of the URI's folder."""
        found = self.collections().get(name)
        if found is not None:
            return found
        root, stem = self.root, self.stem(self.root)
        suffixed = root.name.lower().endswith(self.suffixes)
        if root.exists() and self.is_collection(root):
            raise ConfigError(
                f"{self.uri} is the collection {stem!r}; it cannot hold {name!r} too",
                hint=f"pass --target-collection {stem}, or name a folder to hold {name!r}",
            )
        empty = not root.exists() or (root.is_dir() and not any(root.iterdir()))
        if empty and (suffixed or self.folders) and stem == name:
            return root
        if suffixed and not root.is_dir():
            raise ConfigError(
                f"{self.uri} names the collection {stem!r}, not {name!r}",
                hint=f"pass --target-collection {stem}, or name a folder to hold {name!r}",
            )
        return root / (name if self.folders else name + self.suffixes[0])

    def is_ours(self, path: Path) -> bool:
        """vecmigrate wrote the collection at ``path`` (its schema is stored beside it)."""
        raise NotImplementedError

    def not_ours(self, path: Path, doing: str) -> VecmigrateError:
        """ConfigError: ``doing`` would change files another tool wrote."""
        return ConfigError(
            f"{self.engine} {path} was not written by vecmigrate; it will not {doing} it",
            hint="write to a new path (or remove the file yourself first)",
        )

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        raise ConfigError(
            f"{self.engine} files are append-only; they cannot delete records",
            hint="copy again, or apply deletes on an engine with vecmigrate sync",
        )


def int_or_text_ids(values: Sequence[str]) -> IdKind:
    """``int`` when every id is a canonical integer in int64 range, else ``text``."""
    for v in values:
        if _INT_TEXT.fullmatch(v) is None or not -(2**63) <= int(v) < 2**63:
            return "text"
    return "int" if values else "text"
