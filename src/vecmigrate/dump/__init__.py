"""The portable dump format: Parquet parts + schema.json + manifest.json with checksums.

::

    dump/
      manifest.json                 format, tool version, created, collections with per-file
                                    rows + sha256 and an order-independent content digest
      <collection>/_schema.json     CollectionSchema (with embedding provenance)
      <collection>/part-*.parquet   id, vector columns, document, metadata struct, ...

Parts are written atomically (temp file + rename) and named by a hash of their ids, so a
batch re-sent after a crash overwrites its own part instead of duplicating it. Each is
encoded in memory and checksummed before it is written (never read back to be hashed);
zstd, except float vectors: stored plain and uncompressed (see ``_encoding``). With a
key, each part is stored AES-256-GCM encrypted (see ``vecmigrate.dump.crypto``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vecmigrate import __version__
from vecmigrate.dump import crypto
from vecmigrate.dump.parts import (
    check_part_layout,
    conform_part_batch,
    invalid_rows,
    null_vector_row,
    row_id,
    validate_part_batch,
)
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import CollectionSchema

__all__ = [
    "Dump",
    "PartInfo",
    "StoredPart",
    "check_part_layout",
    "conform_part_batch",
    "crypto",
    "file_identity",
    "invalid_rows",
    "null_vector_row",
    "row_id",
    "sha256_file",
    "validate_part_batch",
]

DUMP_FORMAT = "vecmigrate-dump"
DUMP_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Leading underscore: Spark, pyarrow and pandas skip it when reading the folder as a dataset.
SCHEMA = "_schema.json"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class PartInfo:
    """One Parquet part as recorded in the manifest."""

    file: str
    rows: int
    sha256: str


def file_identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    """(device, inode, size, mtime in ns): changes when the file is rewritten or replaced."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class StoredPart:
    """A part just written: its manifest record and the identity of the file written."""

    info: PartInfo
    identity: tuple[int, int, int, int]


def _ids_text(ids: pa.Array | pa.ChunkedArray) -> bytes:
    """What a part's name hashes: its ids as text joined by US (0x1F), then their count.
    Built by Arrow in one pass; the values, not the buffers, since slices share their
    parent's buffers."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    count = str(len(ids)).encode()
    if ids.null_count or not (
        pa.types.is_integer(ids.type)
        or pa.types.is_string(ids.type)
        or pa.types.is_large_string(ids.type)
    ):
        # Not an id type a schema declares: the same text, built value by value.
        return "\x1f".join(map(str, ids.to_pylist())).encode() + count
    text = ids.cast(pa.large_string())  # integers as decimal text, like str()
    one_list = pa.LargeListArray.from_arrays(pa.array([0, len(text)], pa.int64()), text)
    joined = pc.binary_join(one_list, pa.scalar("\x1f", pa.large_string()))[0]
    return bytes(joined.as_buffer()) + count


@dataclass(frozen=True)
class _Encoding:
    """How a part's Parquet columns are encoded (``pq.write_table``'s options)."""

    use_dictionary: list[str] | bool
    compression: dict[str, str] | str


@functools.lru_cache(maxsize=64)
def _encoding(schema: pa.Schema) -> _Encoding:
    """Float vectors plain and uncompressed, every other column pyarrow's defaults with
    zstd. Vector values almost never repeat and their bits barely compress (random 50-d
    vectors: +10 % size uncompressed), while a dictionary (Parquet builds one for up to
    1 MiB of values per column chunk) and zstd cost ~30 % of writing and reading a part."""
    plain = {
        f.name
        for f in schema
        if (
            pa.types.is_fixed_size_list(f.type)
            or pa.types.is_list(f.type)
            or pa.types.is_large_list(f.type)
        )
        and pa.types.is_floating(f.type.value_type)
    }
    if not plain:
        return _Encoding(True, "zstd")
    # Parquet names leaf columns by path (``vector.list.element``, ``metadata.genre``):
    # ask the writer itself rather than spelling its nesting rules here.
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    leaves = pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema
    paths = [leaves.column(i).path for i in range(len(leaves))]
    vector = {p for p in paths if any(p == n or p.startswith(f"{n}.") for n in plain)}
    return _Encoding(
        [p for p in paths if p not in vector],
        {p: "none" if p in vector else "zstd" for p in paths},
    )


def _required_elements(table: pa.Table) -> pa.Table:
    """``table`` with its float vectors' elements declared non-null where none is null.
    Parquet then stores no definition level per float and decodes a vector column ~40 %
    faster (50k x 384-d: 45 vs 81 ms); readers get the schema's type back from ``conform``
    (a zero-copy cast). A column holding a null element keeps its type, so no value is
    lost in a part that is then refused on reading."""
    for i, f in enumerate(table.schema):
        t = f.type
        if not (
            pa.types.is_fixed_size_list(t)
            and pa.types.is_floating(t.value_type)
            and t.value_field.nullable
        ):
            continue
        column = table.column(i)
        if any(c.values.null_count for c in column.chunks):
            continue
        required = pa.list_(t.value_field.with_nullable(False), t.list_size)
        table = table.set_column(i, f.with_type(required), column.cast(required))
    return table


class Dump:
    """A dump directory: read and write collections, parts and the manifest."""

    def __init__(self, root: Path, key: bytes | None = None) -> None:
        self.root = root
        self.key = key
        # (manifest file identity, collection) -> its "encryption" entry: asked for every
        # part read, and a 1,000-part manifest takes milliseconds to parse.
        self._encryption_seen: dict[tuple[tuple[int, int, int, int], str], Any] = {}

    # -- layout --------------------------------------------------------------------------
    def collection_dir(self, name: str) -> Path:
        """Folder of one collection; refuses names that would escape the dump."""
        if not _SAFE_NAME.match(name) or name in (".", ".."):
            raise ConfigError(
                f"collection name {name!r} cannot be a dump folder",
                hint="use letters, digits, '_', '-', '.' or pass --target-collection",
            )
        return self.root / name

    def collections(self) -> list[str]:
        """Collections present (with a schema.json)."""
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob(f"*/{SCHEMA}"))

    def has(self, name: str) -> bool:
        """Whether the collection exists in this dump."""
        return (self.collection_dir(name) / SCHEMA).is_file()

    def part_files(self, name: str) -> list[Path]:
        """Part files on disk, sorted by name."""
        return sorted(self.collection_dir(name).glob("part-*.parquet"))

    # -- schema ----------------------------------------------------------------------------
    def write_schema(self, schema: CollectionSchema) -> None:
        """Create the collection folder and its schema.json."""
        d = self.collection_dir(schema.name)
        d.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(d / SCHEMA, schema.to_json())

    def read_schema(self, name: str) -> CollectionSchema:
        """Parse schema.json; clear errors for a missing file or unknown version."""
        path = self.collection_dir(name) / SCHEMA
        if not path.is_file():
            raise ConfigError(
                f"dump {self.root} has no collection {name!r}",
                hint=f"collections: {', '.join(self.collections()) or 'none'}",
            )
        try:
            return CollectionSchema.from_json(path.read_text())
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc.message}", hint=exc.hint) from None
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"{path} is not a valid schema: {exc}") from None

    def remove(self, name: str) -> None:
        """Delete a collection and drop it from the manifest."""
        shutil.rmtree(self.collection_dir(name), ignore_errors=True)
        manifest = self.read_manifest()
        if manifest and name in manifest.get("collections", {}):
            del manifest["collections"][name]
            self._write_manifest(manifest)

    # -- parts -----------------------------------------------------------------------------
    def write_part(self, name: str, batch: pa.Table | pa.RecordBatch) -> Path:
        """Write one part atomically, named by a hash of its ids (idempotent re-send)."""
        return self.collection_dir(name) / self.store_part(name, batch).info.file

    def store_part(self, name: str, batch: pa.Table | pa.RecordBatch) -> StoredPart:
        """``write_part``, returning what the manifest will say of the part (its rows and
        the sha256 of the stored bytes, hashed before they are written: never re-read)
        and the file's identity, to tell later whether it is still the file written."""
        text = _ids_text(batch.column("id"))
        digest = (
            crypto.part_name_digest(self.key, text)
            if self.key
            else hashlib.sha256(text).hexdigest()
        )
        path = self.collection_dir(name) / f"part-{digest[:20]}.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        table = _required_elements(
            batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        )
        sink = pa.BufferOutputStream()
        encoding = _encoding(table.schema)
        pq.write_table(
            table,
            sink,
            compression=encoding.compression,
            row_group_size=max(1, table.num_rows),
            use_dictionary=encoding.use_dictionary,
        )
        parquet = sink.getvalue()
        data: pa.Buffer | bytes = (
            parquet
            if self.key is None
            else crypto.encrypt(self.key, parquet.to_pybytes(), f"{name}/{path.name}")
        )
        sha = hashlib.sha256(data).hexdigest()
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            stat = os.fstat(f.fileno())
        os.replace(tmp, path)  # keeps the inode and mtime fstat saw
        return StoredPart(PartInfo(path.name, table.num_rows, sha), file_identity(stat))

    def listed_parts(self, name: str) -> list[PartInfo]:
        """Parts the manifest lists; refuses unlisted or missing files. Checksums are
        checked by ``open_part`` on the bytes it parses, so each file is read once."""
        entry = self.manifest_entry(name)
        parts = [PartInfo(**p) for p in entry["files"]]
        on_disk = {p.name for p in self.part_files(name)}
        listed = {p.file for p in parts}
        if on_disk - listed:
            raise DataError(
                f"dump has parts the manifest does not list: {sorted(on_disk - listed)[:3]}",
                collection=name,
                hint="the export did not finish; rerun it with --resume",
            )
        for p in parts:
            path = self.collection_dir(name) / p.file
            if not path.is_file():
                raise DataError(f"part {p.file} listed in the manifest is missing", collection=name)
        return parts

    def open_part(self, name: str, file: str, sha256: str) -> pq.ParquetFile:
        """A part verified against its sha256; the hashed bytes are the ones parsed, so the
        file cannot change between check and read."""
        return self.load_part(name, file, sha256)[0]

    def load_part(
        self, name: str, file: str, sha256: str | None = None
    ) -> tuple[pq.ParquetFile, str]:
        """(parsed part, sha256 of its stored bytes), decrypting when encrypted; checked
        against ``sha256`` when given. Errors name the part: missing or unreadable file,
        checksum mismatch, missing or wrong key, not Parquet."""
        path = self.collection_dir(name) / file
        try:
            data = _read_into_arrow(path)
        except OSError as exc:
            raise DataError(
                f"cannot read part {name}/{file}: {exc.strerror or exc}",
                collection=name,
                hint="restore the dump's files, then rerun with --resume",
            ) from None
        stored_sha = hashlib.sha256(data).hexdigest()
        if sha256 is not None and stored_sha != sha256:
            raise DataError(
                f"checksum mismatch for {file}: the file changed or is truncated",
                collection=name,
                hint="re-export this collection",
            )
        expected = self._encryption(name)
        if crypto.is_encrypted(data.slice(0, 16).to_pybytes()):
            data = pa.py_buffer(self._decrypt(name, file, data.to_pybytes(), expected))
        elif expected is not None:
            raise DataError(
                f"part {name}/{file} is not encrypted, but the manifest says the collection is",
                collection=name,
                hint="the dump was altered; re-export it",
            )
        try:
            return pq.ParquetFile(pa.BufferReader(data)), stored_sha
        except (ValueError, OSError) as exc:  # ArrowInvalid, or a footer's non-UTF-8 text
            raise DataError(
                f"part {name}/{file} is not readable Parquet: {exc}", collection=name
            ) from None

    def _encryption(self, name: str) -> dict[str, Any] | None:
        """The manifest's encryption entry of a collection (None: not encrypted)."""
        try:
            seen = (file_identity((self.root / MANIFEST).stat()), name)
        except FileNotFoundError:
            return None
        cached = self._encryption_seen  # swapped whole by other threads, never mutated
        if seen in cached:
            known: dict[str, Any] | None = cached[seen]
            return known
        manifest = self.read_manifest()
        entry = (manifest or {}).get("collections", {}).get(name) or {}
        enc: dict[str, Any] | None = entry.get("encryption")
        self._encryption_seen = {seen: enc}
        return enc

    def _decrypt(self, name: str, file: str, data: bytes, expected: dict[str, Any] | None) -> bytes:
        where = f"part {name}/{file}"
        if self.key is None:
            raise ConfigError(
                f"{where} is encrypted and no key was given",
                hint="read the dump as dump:///path?key=env:NAME (or key=file:/path)",
            )
        if expected and expected.get("key_fingerprint") != crypto.fingerprint(self.key):
            raise ConfigError(
                f"wrong key for {where}: the dump was encrypted with key "
                f"{expected.get('key_fingerprint')}, this key is {crypto.fingerprint(self.key)}",
                hint="pass the key the dump was exported with",
            )
        plain = crypto.decrypt(self.key, data, f"{name}/{file}")
        if plain is None:
            raise ConfigError(
                f"cannot decrypt {where}: wrong key, or the file was altered or renamed",
                hint="pass the key the dump was exported with",
            )
        return plain

    # -- manifest --------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or None when the dump has not been finalised yet."""
        path = self.root / MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path} is not a dump manifest (a JSON {type(data).__name__}, not an object)",
                hint="restore the manifest from the dump's origin, or export the dump again",
            )
        if data.get("format") != DUMP_FORMAT or data.get("format_version") != DUMP_FORMAT_VERSION:
            raise ConfigError(
                f"{path}: unsupported dump format {data.get('format')!r} "
                f"version {data.get('format_version')!r}",
                hint="upgrade vecmigrate to read this dump",
            )
        return data

    def ids_proven_unique(self, name: str) -> bool:
        """Whether the manifest says the writer proved each id occurs once in the parts."""
        return self.manifest_entry(name).get("ids_unique") is True

    def manifest_entry(self, name: str) -> dict[str, Any]:
        """The manifest's record of one collection; refuses unfinished dumps."""
        manifest = self.read_manifest()
        if manifest is None or name not in manifest.get("collections", {}):
            raise DataError(
                "dump is incomplete: the manifest does not list this collection",
                collection=name,
                hint="the export did not finish; rerun it with --resume",
            )
        entry: dict[str, Any] = manifest["collections"][name]
        return entry

    def record_collection(
        self,
        name: str,
        parts: list[PartInfo],
        digest: dict[str, Any],
        schema: CollectionSchema,
        *,
        ids_unique: bool = False,
    ) -> None:
        """Add or replace a collection's entry in the manifest. ``ids_unique``: the caller
        proved that the parts hold each id once (their sha256 binds them to that proof)."""
        manifest = self.read_manifest() or {
            "format": DUMP_FORMAT,
            "format_version": DUMP_FORMAT_VERSION,
            "collections": {},
        }
        manifest["tool_version"] = __version__
        manifest["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        manifest["collections"][name] = {
            "rows": sum(p.rows for p in parts),
            "source": dict(schema.provenance),
            "files": [p.__dict__ for p in parts],
            "digest": digest,
        }
        if ids_unique:
            manifest["collections"][name]["ids_unique"] = True
        if self.key is not None:
            manifest["collections"][name]["encryption"] = crypto.manifest_entry(self.key)
        self._write_manifest(manifest)

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(self.root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))


def _read_into_arrow(path: Path) -> pa.Buffer:
    """A file's bytes in a buffer of Arrow's memory pool, where its parsed columns live
    too: a part is a large allocation a copy makes again and again, which the system
    allocator would leave scattered over its per-thread heaps (~60 MiB more peak RSS for a
    1M x 384-d dump -> LanceDB copy)."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        buf = pa.allocate_buffer(size)
        got = f.readinto(memoryview(buf))
    if got != size:  # the file shrank while it was read
        return buf.slice(0, got)
    return buf
