"""The dump as a connector: ``dump:///path``. Export is a copy into it, import a copy out.

``dump:///path?key=env:NAME`` (or ``key=file:/path``) writes and reads AES-256-GCM
encrypted parts; see ``vecmigrate.dump.crypto``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.config import ConnectorConfig, Secret, reveal
from vecmigrate.connectors.dump._client import translate_error
from vecmigrate.connectors.files import check_dir
from vecmigrate.connectors.partitions import balanced_groups
from vecmigrate.dump import (
    Dump,
    PartInfo,
    StoredPart,
    check_part_layout,
    conform_part_batch,
    crypto,
    file_identity,
)
from vecmigrate.errors import ConfigError, DataError, VecmigrateError
from vecmigrate.exact import TopK
from vecmigrate.filters import ALL_OPS, NAMESPACE_KEY, evaluate
from vecmigrate.idkeys import IdKeys
from vecmigrate.model import Capabilities, CollectionSchema, IdType, Metric, Partition, ResumeToken
from vecmigrate.records import conform, table_to_batch, vectors_to_numpy
from vecmigrate.uri import ConnectionURI
from vecmigrate.verify.digest import DigestBuilder, scan_rows


@dataclass
class _Written:
    """What ``finalize`` needs of the parts this connection wrote into one collection,
    taken from the batches in memory so that no part is read back: each part's manifest
    record and file identity, and the digest and id hashes of them all. The digest is a
    running sum over batches digested in groups of ``group_rows`` (its cost per call
    would dominate at a batch per part); ``stale`` (a part name written twice, a digest
    that failed) makes ``finalize`` read the parts back instead."""

    builder: DigestBuilder
    group_rows: int
    parts: dict[str, StoredPart] = field(default_factory=dict)
    id_keys: IdKeys = field(default_factory=IdKeys)
    pending: list[pa.RecordBatch] = field(default_factory=list)
    pending_rows: int = 0
    stale: bool = False

    def take_pending(self) -> list[pa.RecordBatch]:
        """The batches written but not digested yet, handed over once."""
        group, self.pending, self.pending_rows = self.pending, [], 0
        return group


@dataclass(frozen=True)
class DumpConfig(ConnectorConfig):
    """``?key=env:NAME``: the AES-256 key of an encrypted dump."""

    key: Secret | None = None


_RUN_BYTES = 4 * 1024 * 1024  # decoded rows checked per call of the scan (see _run_rows)
# The manifest's digest hashes vectors' exact float32 bits (a grid step of 0), what a
# copy onto an exact engine acknowledges: its check compares the two and does not read
# the dump again (``stored_digest``).
MANIFEST_DIGEST_STEP = 0.0


def _manifest_digest(schema: CollectionSchema) -> DigestBuilder:
    return DigestBuilder(schema, tolerance=MANIFEST_DIGEST_STEP)


class DumpConnector(Connector):
    """Reads and writes the portable dump format. Append-only: no update or delete."""

    Config = DumpConfig
    config: DumpConfig
    schemes = ("dump",)
    capabilities = Capabilities(
        filter_ops=ALL_OPS | {NAMESPACE_KEY},
        id_types=frozenset(IdType),
        metrics=frozenset(Metric),
        named_vectors=True,
        sparse_vectors=True,
        namespaces=True,
        mutable=False,
        max_batch_rows=131_072,
        max_batch_bytes=128 * 1024 * 1024,
        index_kinds=frozenset({"flat"}),
        full_text=True,  # kept in the schema, for a target that recreates it
    )
    # Parts hold exactly the schema's columns: an undeclared one is refused, not dropped.
    strict_layout = True
    # Each write is one part: a copy coalesces its batches into parts this large
    # (``pipeline/writer.BulkWriter``; at most 16 source batches, so a resumed run re-sends
    # little). 16 MiB: a reader holds a whole part (its checksum is checked before it is
    # parsed), so larger parts would raise the memory of every copy out of a dump.
    bulk_write_rows = 131_072
    bulk_write_bytes = 16 * 1024 * 1024
    translate_error = staticmethod(translate_error)

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self._ids_checked: set[str] = set()
        # Parts written through this connection, per collection.
        self._written: dict[str, _Written] = {}
        self._written_lock = threading.Lock()

    @cached_property
    def dump(self) -> Dump:
        """The dump directory, with its key read (``?key=``) on first use."""
        secret = reveal(self.config.key)
        return Dump(self.uri.local_path, key=crypto.parse_key(secret) if secret else None)

    def at_rest_key(self) -> bytes | None:
        """The dump's encryption key (``?key=``), when it is encrypted."""
        return self.dump.key

    def list_collections(self) -> list[str]:
        check_dir(self.dump.root)  # missing is an empty dump; a file in the way is refused
        return self.dump.collections()

    def describe(self, name: str) -> CollectionSchema:
        schema = self.dump.read_schema(name)
        self._schemas[name] = schema
        return schema

    def count(self, name: str, filter: Filter | None = None) -> int:
        if filter:
            schema = self.describe(name)
            node = self._filter(schema, filter)
            assert node is not None
            return sum(int(evaluate(node, b).sum()) for b in self._all_batches(name, schema))
        manifest = self.dump.read_manifest()
        if manifest and name in manifest.get("collections", {}):
            return int(manifest["collections"][name]["rows"])
        self.dump.read_schema(name)
        return sum(
            self.dump.load_part(name, p.name)[0].metadata.num_rows
            for p in self.dump.part_files(name)
        )

    def stored_digest(self, name: str) -> dict[str, Any] | None:
        """The digest ``finalize`` recorded in the manifest: it describes what a scan
        reads, each part being checked against the sha256 listed beside it."""
        digest = self.dump.manifest_entry(name).get("digest")
        return digest if isinstance(digest, dict) else None

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        parts = self.dump.listed_parts(name)
        self._check_layouts(name, parts)
        self._check_unique_ids(name, parts)
        groups = balanced_groups(parts, lambda p: p.rows, n)
        return [
            Partition(
                id=f"files-{i}",
                spec={"files": [[p.file, p.sha256] for p in g]},
                estimated_rows=sum(p.rows for p in g),
            )
            for i, g in enumerate(groups)
        ]

    def _check_layouts(self, name: str, parts: list[PartInfo]) -> None:
        """Refuse, before anything is copied, a part whose columns are not the schema's (a
        missing, renamed or undeclared column). Reads only Parquet footers; encrypted or
        unreadable parts are checked when the scan opens them."""
        if self.dump.key is not None:
            return
        schema = self.describe(name)
        for p in parts:
            try:
                arrow = pq.read_schema(self.dump.collection_dir(name) / p.file)
            except (OSError, ValueError):  # ArrowInvalid, or a footer's non-UTF-8 name
                continue
            check_part_layout(arrow, schema, p.file)

    def _check_unique_ids(self, name: str, parts: list[PartInfo]) -> None:
        """Refuse a dump holding an id twice (a foreign or altered dump: ``finalize``
        never writes one). Each version would otherwise overwrite the other on a target
        with unique ids, or both travel to one without. Reads only the id columns, once
        per connection; unreadable parts are left for the scan to report by name. Skipped
        when the manifest records that its writer proved the ids unique: the parts' sha256,
        checked as each is read, binds them to that proof."""
        if name in self._ids_checked or self.dump.ids_proven_unique(name):
            return
        want = self.describe(name).id_arrow_type()
        chunks = []
        try:
            for p in parts:
                if self.dump.key is None:  # one column, read without pre-buffering
                    part = pq.ParquetFile(self.dump.collection_dir(name) / p.file, pre_buffer=False)
                    col = part.read(columns=["id"], use_threads=False).column("id")
                else:
                    col = self.dump.load_part(name, p.file)[0].read(columns=["id"]).column("id")
                chunks.extend(col.cast(want, safe=True).chunks)
        except (VecmigrateError, OSError, ValueError, pa.ArrowNotImplementedError, KeyError):
            return  # ValueError: ArrowInvalid, or a corrupted footer's non-UTF-8 text
        ids = pa.chunked_array(chunks, type=want).combine_chunks()  # hashed 2x faster
        unique = len(pc.unique(ids)) == len(ids)
        pa.default_memory_pool().release_unused()  # the hash table's memory, back to the OS
        if not unique:
            counts = pc.value_counts(ids)
            dup = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
            raise DataError(
                f"{len(dup)} id(s) appear more than once in the dump, e.g. {dup.to_pylist()[:5]}",
                collection=name,
                hint="run `vecmigrate check` on the dump; keep one version of each id",
            )
        self._ids_checked.add(name)

    def scan(
        self,
        name: str,
        partition: Partition,
        resume: ResumeToken | None = None,
        *,
        schema: CollectionSchema | None = None,
        batch_rows: int = 1000,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        schema = schema or self.describe(name)
        start_file, start_row = (0, 0)
        if resume:
            pos = json.loads(resume)
            start_file, start_row = pos["file"], pos["row"]
        files = partition.spec["files"]
        for fi in range(start_file, len(files)):
            file, sha = files[fi]
            pf = self.dump.open_part(name, file, sha)
            row = 0
            skip = start_row if fi == start_file else 0
            # Decoded and checked in runs of several batches (the checks cost per call),
            # a few MiB at a time whatever the part's size.
            for run in pf.iter_batches(batch_size=_run_rows(pf, batch_rows)):
                if row + run.num_rows <= skip:
                    row += run.num_rows
                    continue
                if skip > row:
                    run = run.slice(skip - row)
                    row = skip
                checked = conform_part_batch(run, schema, file, row)
                for start in range(0, checked.num_rows, batch_rows):
                    batch = checked.slice(start, batch_rows)
                    row += batch.num_rows
                    token = {"file": fi, "row": row}
                    if row >= pf.metadata.num_rows:
                        token = {"file": fi + 1, "row": 0}
                    yield batch, json.dumps(token)

    def _all_batches(self, name: str, schema: CollectionSchema) -> Iterator[pa.RecordBatch]:
        for part in self.partitions(name, 1):
            for batch, _ in self.scan(name, part, schema=schema, batch_rows=10_000):
                yield batch

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self.describe(name)
        wanted = pa.array(list(ids), type=schema.id_arrow_type())
        found = [
            b.filter(pc.is_in(b.column("id"), value_set=wanted))
            for b in self._all_batches(name, schema)
        ]
        return table_to_batch(pa.Table.from_batches(found, schema=schema.arrow_schema()))

    # -- writing -----------------------------------------------------------------------------
    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        if self.dump.has(schema.name):
            if if_exists == "fail":
                raise ConfigError(
                    f"dump {self.uri} already has collection {schema.name!r}",
                    hint="pass --if-exists replace to overwrite it, or --resume to continue",
                )
            if if_exists == "reuse":
                return
            self.dump.remove(schema.name)
            self._forget(schema.name)
        self.dump.write_schema(schema)
        self._schemas[schema.name] = schema

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        """Write the batch as one part; it is digested from memory, not read back (in
        groups, see ``_Written``). It is in the collection's layout: ``Connector``
        conforms it before this runs."""
        self._write_part(name, pa.Table.from_batches([batch]))

    def upsert_table(self, name: str, table: pa.Table) -> None:
        """``upsert`` of a table of chunks, written as one part without concatenating."""
        self._write_part(name, table)

    def _write_part(self, name: str, table: pa.Table) -> None:
        if not self.dump.has(name):
            raise ConfigError(f"dump collection {name!r} does not exist; create it first")
        stored = self.dump.store_part(name, table)
        # Recorded once written: a failed write adds nothing to the digest.
        with self._written_lock:
            written = self._written.get(name)
            if written is None:
                schema = self._schema(name)
                written = _Written(_manifest_digest(schema), scan_rows(schema))
                self._written[name] = written
            written.stale |= stored.info.file in written.parts
            written.parts[stored.info.file] = stored
            written.pending.extend(table.to_batches())
            written.pending_rows += table.num_rows
            group = written.take_pending() if written.pending_rows >= written.group_rows else []
        self._digest(written, group)

    def _digest(self, written: _Written, group: list[pa.RecordBatch]) -> None:
        """Add written batches to the running digest, as one batch when they concatenate."""
        if not group:
            return
        try:
            try:
                merged = [pa.concat_batches(group)] if len(group) > 1 else group
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # schemas differing in metadata
                merged = group
            hashes = [written.builder.add_keyed(b) for b in merged]
        except BaseException:
            with self._written_lock:
                written.stale = True  # parts recorded whose rows the digest may lack
            raise
        with self._written_lock:
            for h in hashes:
                written.id_keys.extend(h)

    def _forget(self, name: str) -> None:
        with self._written_lock:
            self._written.pop(name, None)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        raise ConfigError(
            "a dump is append-only; it cannot delete records",
            hint="export again, or apply deletes on the target with vecmigrate sync",
        )

    def drop(self, name: str) -> None:
        if self.dump.has(name):
            self.dump.remove(name)
        self._schemas.pop(name, None)
        self._forget(name)

    def finalize(self, name: str) -> None:
        """Check parts for duplicate ids, digest them and write the manifest entry. Parts
        this connection wrote were digested and checksummed as they were written; only
        others (a resumed run's, a replaced file) are read back."""
        self._call(f"dump finalize {name!r}", self._finalize, name)

    def _finalize(self, name: str) -> None:
        schema = self.describe(name)
        # Temp files of writes a killed run never renamed: their batches were re-sent.
        for stale in self.dump.collection_dir(name).glob(".part-*.tmp"):
            stale.unlink(missing_ok=True)
        files = self.dump.part_files(name)
        with self._written_lock:
            written = self._written.get(name)
            group = written.take_pending() if written is not None else []
        if written is not None:
            self._digest(written, group)
        with self._written_lock:
            known = _all_known(written, files)
            keys = written.id_keys if written is not None else IdKeys()
        if written is not None and known is not None:
            digest = written.builder.digest
            parts = [part.info for part in known]
        else:
            # Parts written by another process (a killed run this one resumed), replaced
            # or written twice since: digested from the files, checksummed as stored.
            builder = _manifest_digest(schema)
            keys, parts = IdKeys(), []
            for path in files:
                pf, sha = self.dump.load_part(name, path.name)
                for batch in pf.iter_batches(batch_size=10_000):
                    keys.extend(builder.add_keyed(conform(batch, schema, strict=True)))
                parts.append(PartInfo(path.name, pf.metadata.num_rows, sha))
            digest = builder.digest
        if keys.repeated():
            # Equal id hashes: the same id twice, or (rarely) two ids colliding. The id
            # values themselves tell which.
            ids = [
                self.dump.load_part(name, p.file)[0].read(columns=["id"]).column("id")
                for p in parts
            ]
            _refuse_duplicate_ids(name, [c for col in ids for c in col.chunks])
        self.dump.record_collection(name, parts, digest.to_json(), schema, ids_unique=True)
        self._forget(name)

    # -- querying ----------------------------------------------------------------------------
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
        """Exact search over every part (the dump has no index): the ground truth."""
        schema = self.describe(name)
        node = self._filter(schema, filter)
        field = schema.vector_field(vector_field)
        top = TopK(np.asarray(vectors, dtype=np.float32), k, field.metric)
        for batch in self._all_batches(name, schema):
            mask = (
                None
                if node is None
                else np.broadcast_to(evaluate(node, batch), (len(vectors), batch.num_rows))
            )
            top.add(
                batch.column("id").to_pylist(), vectors_to_numpy(batch.column(field.name)), mask
            )
        truth = top.result()
        return truth.ids, [
            list(map(float, row[: len(ids)]))
            for row, ids in zip(truth.scores, truth.ids, strict=True)
        ]


def _run_rows(part: pq.ParquetFile, batch_rows: int) -> int:
    """Rows decoded at once from ``part``: whole batches, about ``_RUN_BYTES`` of them."""
    meta = part.metadata
    if not meta.num_row_groups:
        return batch_rows
    group = meta.row_group(0)
    row_bytes = max(1, int(group.total_byte_size) // max(1, int(group.num_rows)))
    return batch_rows * max(1, _RUN_BYTES // (row_bytes * batch_rows))


def _all_known(written: _Written | None, files: list[Path]) -> list[StoredPart] | None:
    """The records of ``files`` when this connection wrote exactly these parts, each
    once, all digested, and each file is still the one it wrote; else None."""
    if written is None or written.stale or len(written.parts) != len(files):
        return None
    out = []
    for path in files:
        known = written.parts.get(path.name)
        if known is None or known.identity != file_identity(path.stat()):
            return None
        out.append(known)
    return out


def _refuse_duplicate_ids(name: str, ids: list[pa.Array]) -> None:
    """DataError naming some ids the parts hold more than once (the source yielded them
    twice: ``finalize`` never lists such a dump). One hash pass over the id columns."""
    if not ids:
        return
    column = pa.chunked_array(ids)
    if len(pc.unique(column)) == len(column):
        return
    counts = pc.value_counts(column)
    dup = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    raise DataError(
        f"duplicate ids in dump parts: {sorted(map(str, dup.to_pylist()))[:5]}",
        collection=name,
        hint="the source yielded the same id twice; run `vecmigrate check` on it",
    )
