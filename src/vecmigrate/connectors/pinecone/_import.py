"""Pinecone's bulk import from object storage: the Parquet layout, staging and the import.

Pinecone imports Parquet files from a folder in object storage (its "import from object
storage"): ``<uri>/<namespace>/*.parquet``, one sub-folder per namespace (``__default__``
for the default one), each file with the columns

* ``id`` — STRING, required;
* ``values`` — LIST<FLOAT> (float32), required: the dense vector;
* ``metadata`` — STRING, optional: the record's metadata as a JSON object (NULL: none);
* ``sparse_values`` — STRUCT<indices: LIST<UINT32>, values: LIST<FLOAT>>, optional (a
  Pinecone index vecmigrate writes holds one dense vector, so it never writes one).

An import reads at most 100 namespaces, 100,000 files, 10 GB a file and 100,000,000
records, and only into namespaces that do not exist yet (the default namespace must be
empty). Files that do not end in ``.parquet`` are ignored, so the staging marker
(``_vecmigrate_staging.json``) can live at the top of the folder.

The records written are those ``upsert`` would send — the same id escaping, vector checks
and metadata encoding (``encode_batch``), metadata as the JSON text of the same object —
so a bulk load ends identical to upserts.

Two ways to use it:

* The connector (``?import_uri=s3://bucket/prefix``): a copy into an index it created stages
  every batch under ``<import_uri>/<index>/`` (one file per batch and namespace, named
  after the ids it holds, so a batch re-sent after a resume replaces its file), and at
  ``finalize`` starts the import when at least ``import_min_rows`` rows were staged, or
  upserts the staged rows when fewer were (and then deletes them).
* ``write_import_layout`` alone: write a collection's records under a folder, then start
  the import yourself (``index.start_import(uri=layout.uri, integration_id=...)``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vecmigrate.connectors.pinecone._records import (
    DOC_KEY,
    check_ids,
    check_vectors,
    encode_metadata,
    namespace_groups,
    to_pinecone_id,
)
from vecmigrate.errors import ConfigError, TerminalError
from vecmigrate.model import CollectionSchema
from vecmigrate.records import vectors_to_numpy

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE_DIR = "__default__"
MARKER = "_vecmigrate_staging.json"
FILE_PREFIX = "vecmigrate-"
# Below this many rows a copy upserts: Pinecone documents that an import takes at least
# ten minutes, which is a rough (unmeasured) break-even with batched upserts near 1M rows.
DEFAULT_MIN_ROWS = 1_000_000
MAX_NAMESPACES = 100
MAX_FILES = 100_000
MAX_RECORDS = 100_000_000
MAX_FILE_BYTES = 10 * 1024**3
TERMINAL = ("Completed", "Failed", "Cancelled")

IMPORT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("values", pa.list_(pa.float32()), nullable=False),
        pa.field("metadata", pa.string()),
    ]
)


@dataclass
class EncodedBatch:
    """A batch as Pinecone records: ids, vectors, metadata (and its JSON size) by row,
    and the rows of each namespace."""

    pids: list[str]
    matrix: np.ndarray
    metas: list[tuple[dict[str, Any], int]]
    groups: dict[str, list[int]]


def encode_batch(
    name: str,
    batch: pa.RecordBatch,
    schema: CollectionSchema,
    doc_key: str,
    namespace: str | None,
) -> EncodedBatch:
    """The records ``upsert`` writes for ``batch``; DataError names what Pinecone refuses.
    ``namespace`` (a URI scoped to one) overrides the batch's namespaces."""
    ids = batch.column("id").to_pylist()
    pids = [to_pinecone_id(i) for i in ids]
    check_ids(name, ids, pids)
    matrix = vectors_to_numpy(batch.column(schema.vector.name))
    check_vectors(name, ids, matrix, schema.vector.name)
    metas = encode_metadata(batch, schema, doc_key, name, ids)
    if namespace is not None:
        spaces = [namespace] * len(ids)
    elif "namespace" in batch.schema.names:
        spaces = [s or "" for s in batch.column("namespace").to_pylist()]
    else:
        spaces = [""] * len(ids)
    return EncodedBatch(pids, matrix, metas, namespace_groups(name, ids, spaces))


def import_table(enc: EncodedBatch, rows: list[int]) -> pa.Table:
    """Rows ``rows`` of an encoded batch as a table in Pinecone's import schema."""
    dim = enc.matrix.shape[1]
    flat = pa.array(np.ascontiguousarray(enc.matrix[rows], dtype=np.float32).reshape(-1))
    offsets = pa.array(np.arange(0, (len(rows) + 1) * dim, dim, dtype=np.int32))
    metadata = [
        json.dumps(enc.metas[i][0], separators=(",", ":"), ensure_ascii=False)
        if enc.metas[i][0]
        else None
        for i in rows
    ]
    return pa.table(
        [
            pa.array([enc.pids[i] for i in rows], pa.string()),
            pa.ListArray.from_arrays(offsets, flat),
            pa.array(metadata, pa.string()),
        ],
        schema=IMPORT_SCHEMA,
    )


def table_records(
    table: pa.Table,
) -> tuple[list[str], np.ndarray, list[tuple[dict[str, Any], int]]]:
    """A staged table back as ids, vectors and metadata (with its JSON size), as
    ``upsert_rows`` takes them."""
    pids = table.column("id").to_pylist()
    values = table.column("values").combine_chunks()
    flat = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    matrix = flat.reshape(len(pids), -1) if pids else flat.reshape(0, 0)
    metas: list[tuple[dict[str, Any], int]] = []
    for text in table.column("metadata").to_pylist():
        metas.append((json.loads(text), len(text.encode())) if text else ({}, 0))
    return pids, matrix, metas


def namespace_dir(ns: str) -> str:
    """The folder Pinecone imports namespace ``ns`` from (``""``: the default one)."""
    if ns in ("", DEFAULT_NAMESPACE_DIR):
        return DEFAULT_NAMESPACE_DIR
    if "/" in ns or ns in (".", ".."):
        raise ConfigError(
            f"namespace {ns!r} cannot be a folder of Pinecone's import layout",
            hint="drop ?import_uri= from the target URI to upsert these records instead",
        )
    return ns


@dataclass
class ImportLayout:
    """What a folder in Pinecone's import layout holds: its URI (what ``start_import``
    takes), rows per namespace (``""``: the default one), files and bytes."""

    uri: str
    namespaces: dict[str, int] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    largest_file: int = 0

    @property
    def rows(self) -> int:
        """Records in every namespace."""
        return sum(self.namespaces.values())

    def over_limits(self) -> str | None:
        """Which of Pinecone's per-import limits this layout breaks (None: none)."""
        if len(self.namespaces) > MAX_NAMESPACES:
            return f"{len(self.namespaces)} namespaces (an import takes at most {MAX_NAMESPACES})"
        if self.files > MAX_FILES:
            return f"{self.files:,} files (an import takes at most {MAX_FILES:,})"
        if self.rows > MAX_RECORDS:
            return f"{self.rows:,} records (an import takes at most {MAX_RECORDS:,})"
        if self.largest_file > MAX_FILE_BYTES:
            return f"a file of {self.largest_file:,} bytes (at most {MAX_FILE_BYTES:,})"
        return None


class ImportStage:
    """A folder in Pinecone's import layout, written through ``pyarrow.fs`` (any URI it
    opens: ``s3://``, ``gs://``, ``abfs://``, ``file://``)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        try:
            self.fs, self.root = pafs.FileSystem.from_uri(self.uri)
        except (pa.ArrowException, ValueError) as exc:
            raise ConfigError(
                f"cannot open import location {self.uri!r}: {exc}",
                hint="import_uri takes s3://BUCKET/PREFIX (gs://, abfs:// or file:// too)",
            ) from None
        self.root = self.root.rstrip("/")

    # -- the marker: staging in progress, and the import started from it ----------------------
    def marker(self) -> dict[str, Any] | None:
        """The staging marker (None: nothing is being staged here)."""
        path = f"{self.root}/{MARKER}"
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(path) as f:
            value = json.loads(f.read().decode())
        return value if isinstance(value, dict) else None

    def set_marker(self, value: dict[str, Any]) -> None:
        """Write the staging marker."""
        self.fs.create_dir(self.root, recursive=True)
        with self.fs.open_output_stream(f"{self.root}/{MARKER}") as f:
            f.write(json.dumps(value).encode())

    def clear_marker(self) -> None:
        """Remove the staging marker (staging is over; the files stay)."""
        if self.fs.get_file_info(f"{self.root}/{MARKER}").type == pafs.FileType.File:
            self.fs.delete_file(f"{self.root}/{MARKER}")

    # -- files ---------------------------------------------------------------------------------
    def _parquet(self) -> list[pafs.FileInfo]:
        if self.fs.get_file_info(self.root).type == pafs.FileType.NotFound:
            return []
        found = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True))
        return [f for f in found if f.type == pafs.FileType.File and f.path.endswith(".parquet")]

    def reset(self, marker: dict[str, Any] | None) -> None:
        """Remove what an earlier staging left here (files vecmigrate wrote), refusing a
        folder holding other Parquet files (Pinecone would import them too); then write
        ``marker`` (None: none)."""
        files = self._parquet()
        foreign = [f.path for f in files if not f.base_name.startswith(FILE_PREFIX)]
        if foreign:
            raise ConfigError(
                f"import location {self.uri!r} holds Parquet files vecmigrate did not write "
                f"(e.g. {foreign[0]!r}); Pinecone would import them too",
                hint="point import_uri at an empty prefix, or remove those files",
            )
        for f in files:
            self.fs.delete_file(f.path)
        if marker is not None:
            self.set_marker(marker)
        else:
            self.clear_marker()

    def write(self, ns: str, table: pa.Table) -> str:
        """Write one file of namespace ``ns``, named after the ids it holds (writing the
        same ids again replaces it); returns its path."""
        digest = hashlib.sha256("\n".join(table.column("id").to_pylist()).encode())
        folder = f"{self.root}/{namespace_dir(ns)}"
        path = f"{folder}/{FILE_PREFIX}{digest.hexdigest()[:24]}.parquet"
        self.fs.create_dir(folder, recursive=True)
        with self.fs.open_output_stream(path) as out:
            pq.write_table(table, out)
        return path

    def layout(self) -> ImportLayout:
        """The namespaces, rows (from the files' footers), files and bytes staged here."""
        out = ImportLayout(self.uri)
        for f in self._parquet():
            ns = self._namespace_of(f.path)
            with self.fs.open_input_file(f.path) as handle:
                rows = pq.ParquetFile(handle).metadata.num_rows
            out.namespaces[ns] = out.namespaces.get(ns, 0) + rows
            out.files += 1
            out.bytes += f.size or 0
            out.largest_file = max(out.largest_file, f.size or 0)
        return out

    def _namespace_of(self, path: str) -> str:
        folder = path[len(self.root) + 1 :].rsplit("/", 1)[0]
        return "" if folder == DEFAULT_NAMESPACE_DIR else folder

    def tables(self) -> Iterator[tuple[str, pa.Table]]:
        """Each staged file as (namespace, table), one file at a time."""
        for f in self._parquet():
            with self.fs.open_input_file(f.path) as handle:
                yield self._namespace_of(f.path), pq.read_table(handle)


def write_import_layout(
    batches: Iterable[pa.RecordBatch],
    schema: CollectionSchema,
    uri: str,
    *,
    document_key: str | None = None,
    namespace: str | None = None,
) -> ImportLayout:
    """Write records in Pinecone's import layout under ``uri`` (``uri/<namespace>/*.parquet``,
    one file per batch and namespace), for a Pinecone import you start yourself.

    ``batches`` are in ``schema``'s layout (e.g. a dump's ``scan``); records are encoded as
    the Pinecone connector writes them (``document_key``: the metadata key of documents,
    default ``_vecmigrate_document``; ``namespace`` puts every record in that one). The
    folder must hold no other Parquet files. Create the index with vecmigrate first (so
    it keeps the schema), then ``index.start_import(uri=layout.uri, integration_id=...)``.
    """
    stage = ImportStage(uri)
    stage.reset(None)
    key = document_key or str(schema.engine_settings.get("document_key") or DOC_KEY)
    for batch in batches:
        enc = encode_batch(schema.name, batch, schema, key, namespace)
        for ns, rows in enc.groups.items():
            stage.write(ns, import_table(enc, rows))
    return stage.layout()


def run_import(
    index: Any,
    stage: ImportStage,
    iname: str,
    layout: ImportLayout,
    *,
    integration_id: str | None,
    timeout: float,
    poll: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Start Pinecone's import of ``stage`` (or follow the one the marker names, started by
    an earlier run) and wait for it to end; TerminalError when it fails, is cancelled,
    imports fewer records than staged, or outlives ``timeout`` seconds."""
    marker = stage.marker() or {}
    spaces = ", ".join(repr(ns or DEFAULT_NAMESPACE_DIR) for ns in sorted(layout.namespaces)[:5])
    if len(layout.namespaces) > 5:
        spaces += f" and {len(layout.namespaces) - 5} more"
    where = f"Pinecone import into index {iname!r} (namespaces {spaces}) from {stage.uri!r}"
    import_id = marker.get("import_id")
    if import_id is None:
        started = index.start_import(
            uri=stage.uri, integration_id=integration_id, error_mode="abort"
        )
        import_id = str(started.id)
        stage.set_marker({**marker, "import_id": import_id})
        log.info("%s started as import %s", where, import_id)
    deadline = time.monotonic() + timeout
    while True:
        op = index.describe_import(import_id)
        if op.status in TERMINAL:
            break
        if time.monotonic() > deadline:
            raise TerminalError(
                f"{where}: import {import_id} is still {op.status} after {timeout:g} s",
                hint="run the copy again with --resume to keep waiting for it (vecmigrate "
                "remembers its id), or raise ?import_timeout=",
            )
        sleep(poll)
    if op.status != "Completed":
        # A later run starts a new import instead of reporting this one again.
        stage.set_marker({k: v for k, v in marker.items() if k != "import_id"})
        raise TerminalError(
            f"{where}: import {import_id} {op.status.lower()}: {op.error or 'no error given'}",
            hint="fix what the error names, then copy again with --if-exists replace (an "
            "import only fills namespaces that do not exist yet); or drop ?import_uri= "
            "to upsert",
        )
    if op.records_imported is not None and op.records_imported != layout.rows:
        raise TerminalError(
            f"{where}: import {import_id} completed with {op.records_imported:,} records "
            f"of the {layout.rows:,} staged",
            hint="compare the two with vecmigrate diff, then copy again with --if-exists replace",
        )
    return op
