"""LanceDB: ``lancedb:///path``. Tables store the batch layout natively (Arrow in, Arrow out).

The vecmigrate schema rides in the table's Arrow schema metadata, so a round trip keeps
metric, types and provenance. Tables other tools made are read as they are laid out: the
id, text, vector and metadata columns are named by ``?id_field=`` / ``document_field`` /
``vector_field`` / ``metadata_field`` or recognised by common names (``connectors/foreign``),
a struct or JSON-text metadata column's keys become typed fields, and the layout is
recorded in the described schema's ``engine_settings`` (``lancedb.layout``) so that
reads rename columns on the way out and writes (``--if-exists reuse``) use the table's
own names and types. The metric is the one LanceDB searches with: a vector index's distance
type; un-indexed, each query names it, so unit vectors take the default l2 (every metric
ranks them alike) and others are unknown until a mapping states it. Columns map to portable
types only where every value survives: any integer width to int64 (an unsigned value above
2**63-1 travels exactly in ``metadata_extra``), float16/32 to float64, any text layout to
string, lists of those, nested structs to json; dates and timestamps are read as canonical
ISO-8601 text, the form ``cast: date`` / ``cast: timestamp`` in a mapping turns into an
int64 epoch. Columns with no exact portable form (decimals, bytes, times, durations) are
refused by name, never approximated.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.files import make_dir
from vecmigrate.connectors.foreign import SAMPLE_ROWS, FieldsConfig, check_ids
from vecmigrate.connectors.frameworks import parse_layout
from vecmigrate.connectors.lancedb._client import translate_error
from vecmigrate.connectors.lancedb._frameworks import create_table
from vecmigrate.connectors.lancedb._fulltext import build_full_text, served_full_text
from vecmigrate.connectors.lancedb._infer import (
    METRIC_NAMES,
    infer_schema,
    reuse_problems,
    served_indexes,
    with_json_keys,
)
from vecmigrate.connectors.lancedb._layout import LAYOUT_KEY, Layout
from vecmigrate.connectors.lancedb._schema import (
    build_field_indexes,
    index_options,
    native_batch,
)
from vecmigrate.connectors.lancedb._sql import NotExpressible, sql_value, where_sql
from vecmigrate.connectors.partitions import offset_partitions, scan_offsets
from vecmigrate.errors import ConfigError, TransientError
from vecmigrate.filters import ALL_OPS, NAMESPACE_KEY, Node, evaluate
from vecmigrate.idkeys import IdKeys, id_keys
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    Metric,
    Partition,
    ResumeToken,
)
from vecmigrate.uri import ConnectionURI

SCHEMA_KEY = b"vecmigrate.schema"
# Lance needs enough rows to train IVF partitions; below this a flat scan is exact and fast.
MIN_ROWS_FOR_INDEX = 5000


@dataclass(frozen=True)
class LanceDBConfig(FieldsConfig):
    """The columns of tables other tools laid out (``connectors/foreign.py``), and
    ``layout``: ``langchain`` / ``llamaindex`` for the tables those frameworks keep
    (``_frameworks``)."""

    layout: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", parse_layout(self.layout, "lancedb"))


class LanceDBConnector(Connector):
    """LanceDB tables; upsert via ``merge_insert`` on the id column."""

    Config = LanceDBConfig
    config: LanceDBConfig

    schemes = ("lancedb",)
    capabilities = Capabilities(
        filter_ops=ALL_OPS | {NAMESPACE_KEY},
        id_types=frozenset(IdType),
        metrics=frozenset(Metric),
        named_vectors=True,
        namespaces=True,
        max_batch_rows=1_000_000,
        max_batch_bytes=256 * 1024 * 1024,
        index_kinds=frozenset({"flat", "hnsw", "ivf_pq", "ivf_flat"}),
        full_text=True,  # an FTS index over the document column (BM25)
    )
    translate_error = staticmethod(translate_error)
    # Each write is one fragment: a copy coalesces its batches into pieces this large
    # (``pipeline/writer.BulkWriter``), so a bulk load needs no compaction afterwards.
    # 16 MiB: Lance's writer holds about twice a piece while it encodes it, and a copy
    # has a piece in hand per worker besides.
    bulk_write_rows = 131_072
    bulk_write_bytes = 16 * 1024 * 1024
    # A bulk load into an empty table streams its batches into one Lance append per 256
    # MiB read (``upsert_stream``): Lance encodes a stream as it arrives, and 1M x 384-d
    # took 1.6-3.0 s in 6 appends against 3.0-6.0 s in 82 appends of 16 MiB pieces.
    bulk_stream_bytes = 256 * 1024 * 1024

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self._write_lock = threading.Lock()
        # Tables being bulk-loaded into from empty: appends instead of merge_insert (whose
        # cost grows with the table), duplicates from re-sent batches removed at finalize.
        self._bulk: dict[str, _BulkLoad] = {}
        # Foreign tables reused for a copy: the copy's schema, whose metadata keys the
        # table's JSON-text metadata takes (``with_json_keys``) though no row shows them yet.
        self._reused: dict[str, CollectionSchema] = {}
        self._keys_checked: set[str] = set()

    @cached_property
    def db(self) -> Any:
        """The database, opened (and its directory made) on first use."""
        return self._call(f"lancedb {self.uri.local_path}", _open_db, self.uri.local_path)

    def _table(self, name: str) -> Any:
        try:
            return self.db.open_table(name)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"LanceDB at {self.uri} has no table {name!r}") from exc

    def list_collections(self) -> list[str]:
        names: list[str] = []
        token = None
        while True:
            page = self.db.list_tables(page_token=token)
            names += page.tables
            token = page.page_token
            if not token:
                return sorted(names)

    # -- schema ------------------------------------------------------------------------------
    def describe(self, name: str) -> CollectionSchema:
        table = self._table(name)
        stored = _stored_schema(table)
        if stored is not None:
            settings = dict(stored.engine_settings)
            settings.pop(LAYOUT_KEY, None)  # copied from a foreign source: this one is ours
            schema = stored.replace(name=name, engine="lancedb", engine_settings=settings)
        else:
            schema = infer_schema(name, table.schema, self.config, partial(_sample, table))
            if name in self._reused:  # the keys a reuse added, which no row may show yet
                schema = with_json_keys(schema, self._reused[name])
        sample = partial(_sample_vectors, table)
        schema = served_indexes(table, schema, sample, recorded=stored is not None)
        schema = served_full_text(table, schema, _document_column(schema))
        self._schemas[name] = schema
        return schema

    def _layout(self, name: str) -> Layout | None:
        """How the table lays records out when another tool made it (None: ours)."""
        return Layout.of(self._schema(name).engine_settings)

    def count(self, name: str, filter: Filter | None = None) -> int:
        node = self._filter(self._schema(name), filter)
        table = self._table(name)
        if node is None:
            return int(table.count_rows())
        where = self._where(name, node)
        if where is None:
            return len(self._matching(name, node))
        return int(table.count_rows(where))

    def _where(self, name: str, node: Node) -> str | None:
        """The filter as SQL on this table; None when it names a key inside JSON text."""
        layout = self._layout(name)
        try:
            return where_sql(node) if layout is None else where_sql(node, layout.sql_field)
        except NotExpressible:
            return None

    def _matching(self, name: str, node: Node) -> list[Any]:
        """The ids of the records that match, evaluated on the rows (JSON-text metadata)."""
        schema = self._schema(name)
        layout = self._layout(name)
        assert layout is not None
        columns = [c for c in layout.columns() if c not in layout.vectors]
        got = self._table(name).search().select(columns).limit(None).to_arrow()
        batch = layout.read_batch(got, schema, schema.replace(vectors=()))
        ids: list[Any] = batch.column("id").filter(pa.array(evaluate(node, batch))).to_pylist()
        return ids

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        exists = schema.name in self.list_collections()
        what = f"LanceDB table {schema.name!r}"
        if self._keep_existing(schema.name, exists, if_exists, what, describe=False):
            self._check_reuse(schema)
            return
        if self.config.layout:  # the table the framework reads (_frameworks)
            self._schemas[schema.name] = create_table(self.db, schema, self.config.layout)
            return
        settings = dict(schema.engine_settings)
        settings.pop(LAYOUT_KEY, None)  # a foreign source's layout; this table is laid out ours
        schema = schema.replace(engine_settings=settings)
        arrow = schema.arrow_schema().with_metadata({SCHEMA_KEY: schema.to_json().encode()})
        self.db.create_table(schema.name, schema=arrow, mode="overwrite")
        self._schemas[schema.name] = schema

    def _check_reuse(self, schema: CollectionSchema) -> None:
        """ConfigError, before the first write, naming each column of a foreign table that
        cannot take ``schema``'s records."""
        have = self.describe(schema.name)
        problems = reuse_problems(schema, have)
        if problems:
            raise ConfigError(
                f"LanceDB table {schema.name!r} cannot take these records as it is laid out: "
                f"{'; '.join(problems)}; nothing was written",
                hint="map the records to its columns in a mapping file, or copy into a new table",
            )
        self._reused[schema.name] = schema
        self._schemas[schema.name] = with_json_keys(have, schema)

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        self._check_key(name)
        # take_offsets addresses rows by position, stable while the table is not written.
        return offset_partitions(self.count(name), n)

    def _check_key(self, name: str) -> None:
        """A foreign table's id column read once, before a record is: LanceDB keeps no
        key unique, and records keyed by a repeated one would be merged on the target
        (``refuse_repeated_keys``)."""
        layout = self._layout(name)
        if layout is None or name in self._keys_checked:
            return
        if not (isinstance(layout, Layout) and layout.row_ids):
            query = self._table(name).search().select([layout.id]).limit(None)
            check_ids(
                name,
                layout.id,
                lambda: (b.column(0) for b in query.to_batches(1 << 16)),
                shown=lambda ids: layout.read_ids(ids).to_pylist(),
                otherwise=", or ?id_field=_rowid to key them by LanceDB's row ids",
            )
        self._keys_checked.add(name)

    def _read(self, name: str, got: pa.Table, schema: CollectionSchema) -> pa.RecordBatch:
        layout = self._layout(name)
        if layout is None:
            return native_batch(got, schema)
        return layout.read_batch(got, self._schema(name), schema)

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
        table = self._table(name)
        if self._layout(name) is None:  # ours: one streaming scan of the range
            yield from self._scan_native(name, table, partition, resume, schema, batch_rows)
            return

        def read(offset: int, limit: int) -> pa.RecordBatch:
            got = self._selected(name, table.take_offsets(list(range(offset, offset + limit))))
            return self._read(name, got.to_arrow(), schema)

        yield from scan_offsets("LanceDB", name, partition, resume, batch_rows, read)

    def _scan_native(
        self,
        name: str,
        table: Any,
        partition: Partition,
        resume: ResumeToken | None,
        schema: CollectionSchema,
        batch_rows: int,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        """An ``offset_partitions`` range of a table vecmigrate laid out, streamed by one
        query in table order (the order ``take_offsets`` addresses, deleted rows skipped
        alike), with the same ``{"next": offset}`` tokens as ``scan_offsets``."""
        start = json.loads(resume)["next"] if resume else partition.spec["start"]
        open_end = partition.spec["end"] is None  # the last range: to the end of the table
        end = table.count_rows() if open_end else partition.spec["end"]
        if start >= end:
            return
        # Small rows are read a few batches at a time (about 4 MiB) and handed on in slices.
        row_bytes = 128 + sum(4 * v.dim for v in schema.vectors)
        per_read = batch_rows * max(1, min(16, (4 << 20) // max(1, batch_rows * row_bytes)))
        for got in table.search().offset(start).limit(end - start).to_batches(per_read):
            read = native_batch(pa.Table.from_batches([got]), schema)
            for at in range(0, read.num_rows, batch_rows):
                batch = read.slice(at, batch_rows)
                start += batch.num_rows
                yield batch, json.dumps({"next": start})
        if start < end and not open_end:
            raise TransientError(
                f"LanceDB returned no rows at offset {start} of {name!r}; was it written to?"
            )

    def _selected(self, name: str, query: Any) -> Any:
        """``query`` reading the row ids too where they key the records (a table without
        an id column); LanceDB returns them only when selected."""
        layout = self._layout(name)
        if isinstance(layout, Layout) and layout.row_ids:
            return query.select(layout.columns())
        return query

    def _where_ids(self, name: str, ids: Sequence[Any]) -> str:
        layout = self._layout(name)
        if layout is not None:
            return layout.where_ids(ids)
        return "id IN (" + ", ".join(sql_value(i) for i in ids) + ")"

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        table = self._table(name)
        parts = []
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            q = table.search().where(self._where_ids(name, chunk)).limit(len(chunk))
            parts.append(self._selected(name, q).to_arrow())
        if not parts:
            return pa.RecordBatch.from_pylist([], schema=schema.arrow_schema())
        return self._read(name, pa.concat_tables(parts), schema)

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        self._write(name, [batch])

    def upsert_table(self, name: str, table: pa.Table) -> None:
        self._write(name, table.to_batches())

    def streams_into(self, name: str) -> bool:
        """While bulk-loading a table of vecmigrate's layout (appends of whole streams)."""
        return name in self._bulk and self._layout(name) is None

    def upsert_stream(self, name: str, batches: Iterable[pa.RecordBatch]) -> None:
        """While ``streams_into``, one append of the whole stream (Lance commits it at the
        end: all or nothing); otherwise each batch is written as it comes."""
        if not self.streams_into(name):
            super().upsert_stream(name, batches)
            return
        bulk = self._bulk[name]
        keys: list[np.ndarray] = []

        def keyed() -> Iterator[pa.RecordBatch]:
            for batch in batches:
                if batch.num_rows:
                    keys.append(id_keys(batch.column("id")))
                    yield batch

        stream = keyed()
        first = next(stream, None)
        if first is None:
            return
        reader = pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], stream))
        # One stream at a time: two side by side were 15-30 % faster at 1M x 384-d but
        # peaked 20-40 MiB higher (each Lance writer buffers its own pages), and a 10M-row
        # copy must stay under 500 MiB.
        with self._write_lock:
            bulk.append_stream(reader, keys)

    def _write(self, name: str, batches: list[pa.RecordBatch]) -> None:
        """Write ``batches`` as one Lance write: appended while bulk-loading, else merged."""
        bulk = self._bulk.get(name)
        table = bulk.table if bulk is not None else self._table(name)
        layout = self._layout(name)
        if layout is None:
            data, key = pa.Table.from_batches(batches, self._schema(name).arrow_schema()), "id"
        else:  # the table's own column names and types
            described = self._schema(name)
            data = pa.concat_tables(
                [layout.write_table(b, described, table.schema) for b in batches]
            )
            key = layout.id
        keys = id_keys(_storage(data.column(key))) if bulk is not None else None
        # Lance commits are optimistic; concurrent merge_inserts on one table conflict and
        # retry internally. Serialising writes here is simpler and no slower (each is large).
        with self._write_lock:
            bulk = self._bulk.get(name)
            if bulk is not None:
                bulk.append(data, id_keys(_storage(data.column(key))) if keys is None else keys)
            else:
                (
                    table.merge_insert(key)
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(data)
                )

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        table = self._table(name)
        with self._write_lock:
            if name in self._bulk:
                self._bulk[name].unsure = True
            for start in range(0, len(ids), 1000):
                table.delete(self._where_ids(name, ids[start : start + 1000]))

    def drop(self, name: str) -> None:
        if name in self.list_collections():
            self.db.drop_table(name)
        self._schemas.pop(name, None)
        self._reused.pop(name, None)

    def begin_bulk_load(self, name: str) -> None:
        """Append until ``finalize`` when the table is empty (see ``_bulk``)."""
        if self.count(name) == 0:
            self._bulk[name] = _BulkLoad(self._table(name))

    def _drop_duplicate_ids(self, table: Any, key: str) -> None:
        """Keep one row per id (a batch re-sent after a timeout or a kill was appended
        twice; both copies hold the same record)."""
        ids = _storage(table.search().select([key]).limit(None).to_arrow().column(key))
        if len(pc.unique(ids)) == len(ids):
            return
        counts = pc.value_counts(ids)
        dups = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
        for start in range(0, len(dups), 1000):
            chunk = dups.slice(start, 1000).to_pylist()
            where = f"`{key}` IN (" + ", ".join(map(_literal, chunk)) + ")"
            rows = table.search().where(where).limit(None).to_arrow()
            column = rows[key]
            if isinstance(column.type, pa.BaseExtensionType):
                column = pa.chunked_array([c.storage for c in column.chunks])
            first = pc.index_in(pa.array(chunk, column.type), column)
            keep = rows.take(pc.drop_null(first))
            table.delete(where)
            table.add(keep)

    def finalize(self, name: str) -> None:
        """Remove duplicates a bulk load may leave; compact the fragments many batches
        leave behind; build a requested index (on tables vecmigrate laid out: another
        tool's table keeps its own index, which ``optimize`` brings up to date).

        A bulk load this connection made alone skips both when it can: no duplicate id
        when every row in the table is one it appended, each id once, with no write
        that failed (it may have been applied); no compaction when the appends were
        few or large (``bulk_write_rows``) and the table has no index to update. A
        resumed load (its first rows appended by another process) is checked in full."""
        self._call(f"lancedb finalize {name!r}", self._finalize, name)

    def _finalize(self, name: str) -> None:
        schema = self._schema(name)
        layout = self._layout(name)
        with self._write_lock:
            bulk = self._bulk.pop(name, None)
            table = self._table(name)
            rows = table.count_rows()
            if bulk is None or not bulk.unique(rows):
                self._drop_duplicate_ids(table, layout.id if layout else "id")
                rows = table.count_rows()
            if bulk is None or _needs_compaction(table):
                table.optimize()
            wanted = _stored_schema(table) or schema  # what the copy asked for, not what is
            if document := _document_column(wanted):
                build_full_text(table, wanted, document)
            if layout is None:
                build_field_indexes(table, wanted)
            for v in schema.vectors:
                if (
                    layout is None
                    and v.index
                    and v.index.kind in ("hnsw", "ivf_pq", "ivf_flat")
                    and rows >= MIN_ROWS_FOR_INDEX
                ):
                    table.create_index(
                        metric=METRIC_NAMES[v.metric],
                        vector_column_name=v.name,
                        replace=True,
                        index_type={
                            "hnsw": "IVF_HNSW_SQ",
                            "ivf_pq": "IVF_PQ",
                            "ivf_flat": "IVF_FLAT",
                        }[v.index.kind],
                        **index_options(v),
                    )

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
        schema = self._schema(name)
        node = self._filter(schema, filter)
        field = schema.vector_field(vector_field)
        table = self._table(name)
        layout = self._layout(name)
        where = None
        if node is not None:
            where = self._where(name, node)
            if where is None and layout is not None:  # keys inside JSON text: matched here
                where = layout.where_ids(self._matching(name, node))
        key = layout.id if layout else "id"
        ids: list[list[Any]] = []
        scores: list[list[float]] = []
        for q in np.asarray(vectors, dtype=np.float32):
            column = layout.vector_column(field.name) if layout else field.name
            query = table.search(q, vector_column_name=column).distance_type(
                METRIC_NAMES[field.metric]
            )
            if where is not None:
                query = query.where(where, prefilter=True)
            res = query.select([key, "_distance"]).limit(k).to_arrow()
            got = res.column(key)
            ids.append((layout.read_ids(got) if layout else got).to_pylist())
            scores.append(res.column("_distance").to_pylist())
        return ids, scores


# Lance caches every committed version's metadata (1 GiB by default): a bulk load commits
# once per fragment, and the process grew ~17 MiB per 100 commits (150 MiB over a 10M-row
# copy). A copy reads each version once; 16 MiB keeps its memory flat.
METADATA_CACHE = 16 * 1024 * 1024


class _BulkLoad:
    """A bulk load in progress: the table appended to and the 64-bit keys of every id
    appended, to prove at ``finalize`` that no id was appended twice (``IdKeys``: flat
    memory; equal keys send ``finalize`` to the exact check on the table)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.keys = IdKeys()
        self.rows = 0
        self.unsure = False  # a write failed: it may have been applied all the same

    def append(self, data: pa.Table, keys: np.ndarray) -> None:
        """Append ``data``, whose ids' ``id_keys`` are ``keys`` (computed outside the
        write lock)."""
        try:
            self.table.add(data)
        except BaseException:
            self.unsure = True
            raise
        self.keys.extend(keys)
        self.rows += data.num_rows

    def append_stream(self, reader: pa.RecordBatchReader, keys: list[np.ndarray]) -> None:
        """Append what ``reader`` yields as one Lance write; ``keys`` holds the
        ``id_keys`` of each batch read once it returns."""
        try:
            self.table.add(reader)
        except BaseException:
            self.unsure = True
            raise
        for batch_keys in keys:
            self.keys.extend(batch_keys)
            self.rows += len(batch_keys)

    def unique(self, rows: int) -> bool:
        """The table holds exactly the rows appended, each id once."""
        return not self.unsure and rows == self.rows and not self.keys.repeated()


def _storage(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """An id column without its extension type (uuid ids), for hashing."""
    if isinstance(column.type, pa.BaseExtensionType):
        return pa.chunked_array([c.storage for c in column.chunks], column.type.storage_type)
    return column


def _document_column(schema: CollectionSchema) -> str | None:
    """The column holding the records' documents (another tool's table: its own)."""
    layout = Layout.of(schema.engine_settings)
    if layout is not None:
        return layout.document
    return "document" if schema.has_document else None


def _stored_schema(table: Any) -> CollectionSchema | None:
    """The schema vecmigrate recorded on a table it laid out (None: another tool's)."""
    stored = (table.schema.metadata or {}).get(SCHEMA_KEY)
    return CollectionSchema.from_json(stored.decode()) if stored else None


def _needs_compaction(table: Any) -> bool:
    """Whether a bulk-loaded table is worth compacting: many fragments, small on average
    (large coalesced appends are not), or an index that ``optimize`` would update."""
    try:
        stats = table.stats()  # a dict (lancedb >= 0.22)
    except (AttributeError, NotImplementedError):
        return True
    frags = stats["fragment_stats"]["num_fragments"]
    if stats["num_indices"]:
        return True
    if frags <= 8:
        return False
    return bool(stats["num_rows"] / frags < 8192 and stats["total_bytes"] / frags < 8 * 2**20)


def _sample(table: Any, column: str) -> list[Any]:
    """The first values of ``column`` (to tell JSON-object text from other text)."""
    got = table.search().select([column]).limit(SAMPLE_ROWS).to_arrow()
    values: list[Any] = got.column(column).to_pylist()
    return values


def _sample_vectors(table: Any, column: str) -> np.ndarray:
    """The first vectors of ``column`` that are set, as a (rows, dim) float64 matrix."""
    got = table.search().select([column]).limit(SAMPLE_ROWS).to_arrow().column(column)
    vectors = got.combine_chunks().drop_null()
    flat: np.ndarray = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    return flat.reshape(len(vectors), vectors.type.list_size)


def _literal(value: Any) -> str:
    """A stored id value as SQL (binary ids as X'hex')."""
    return f"X'{value.hex()}'" if isinstance(value, bytes) else sql_value(value)


def _open_db(path: Path) -> Any:
    make_dir(path)  # lancedb.connect makes it too, but names a file in the way less clearly
    session = getattr(lancedb, "Session", None)  # older lancedb: its default caches
    if session is None:
        return lancedb.connect(str(path))
    return lancedb.connect(str(path), session=session(metadata_cache_size_bytes=METADATA_CACHE))
