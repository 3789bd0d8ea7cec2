"""LanceDB: ``lancedb:///path``. Tables store the batch layout natively (Arrow in, Arrow out).

The vecmigrate schema rides in the table's Arrow schema metadata, so a round trip keeps
metric, types and provenance; tables made by other tools are described by inference.
Their columns map to portable types only where every value survives: any integer width
to int64 (an unsigned value above 2**63-1 travels exactly in ``metadata_extra``),
float16/32 to float64, any text layout to string, lists of those, nested structs to json;
dates and timestamps are read as canonical ISO-8601 text, the form ``cast: date`` /
``cast: timestamp`` in a mapping turns into an int64 epoch. Columns with no exact portable
form (decimals, bytes, times, durations) are refused by name, never approximated.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.files import make_dir
from vecmigrate.connectors.lancedb._client import translate_error
from vecmigrate.connectors.lancedb._schema import infer_schema, portable_column
from vecmigrate.connectors.partitions import offset_partitions, scan_offsets
from vecmigrate.errors import ConfigError
from vecmigrate.filters import ALL_OPS, NAMESPACE_KEY, Bool, Node
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    Metric,
    Partition,
    ResumeToken,
)
from vecmigrate.records import conform, table_to_batch
from vecmigrate.uri import ConnectionURI

SCHEMA_KEY = b"vecmigrate.schema"
_METRIC_NAMES = {Metric.COSINE: "cosine", Metric.DOT: "dot", Metric.L2: "l2"}
# Lance needs enough rows to train IVF partitions; below this a flat scan is exact and fast.
MIN_ROWS_FOR_INDEX = 5000


class LanceDBConnector(Connector):
    """LanceDB tables; upsert via ``merge_insert`` on ``id``."""

    schemes = ("lancedb",)
    capabilities = Capabilities(
        filter_ops=ALL_OPS | {NAMESPACE_KEY},
        id_types=frozenset(IdType),
        metrics=frozenset(Metric),
        named_vectors=True,
        namespaces=True,
        max_batch_rows=10_000,
        max_batch_bytes=256 * 1024 * 1024,
        index_kinds=frozenset({"flat", "hnsw", "ivf_pq", "ivf_flat"}),
    )
    translate_error = staticmethod(translate_error)

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self._write_lock = threading.Lock()
        # Tables being bulk-loaded into from empty: appends instead of merge_insert (whose
        # cost grows with the table), duplicates from re-sent batches removed at finalize.
        self._bulk: set[str] = set()

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
        arrow = table.schema
        stored = (arrow.metadata or {}).get(SCHEMA_KEY)
        if stored:
            schema = CollectionSchema.from_json(stored.decode()).replace(
                name=name, engine="lancedb"
            )
        else:
            schema = infer_schema(name, arrow)
        schema = _served_indexes(table, schema, recorded=bool(stored))
        self._schemas[name] = schema
        return schema

    def count(self, name: str, filter: Filter | None = None) -> int:
        node = self._filter(self._schema(name), filter)
        table = self._table(name)
        return int(table.count_rows(where_sql(node)) if node else table.count_rows())

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        exists = schema.name in self.list_collections()
        what = f"LanceDB table {schema.name!r}"
        if self._keep_existing(schema.name, exists, if_exists, what, describe=False):
            return
        arrow = schema.arrow_schema().with_metadata({SCHEMA_KEY: schema.to_json().encode()})
        self.db.create_table(schema.name, schema=arrow, mode="overwrite")
        self._schemas[schema.name] = schema

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        # take_offsets addresses rows by position, stable while the table is not written.
        return offset_partitions(self.count(name), n)

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

        def read(offset: int, limit: int) -> pa.RecordBatch:
            got = table.take_offsets(list(range(offset, offset + limit))).to_arrow()
            return _to_layout(got, schema)

        yield from scan_offsets("LanceDB", name, partition, resume, batch_rows, read)

    def _where_ids(self, ids: Sequence[Any]) -> str:
        return "id IN (" + ", ".join(_sql_value(i) for i in ids) + ")"

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        table = self._table(name)
        parts = []
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            q = table.search().where(self._where_ids(chunk)).limit(len(chunk))
            parts.append(q.to_arrow())
        if not parts:
            return pa.RecordBatch.from_pylist([], schema=schema.arrow_schema())
        return _to_layout(pa.concat_tables(parts), schema)

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        table = self._table(name)
        data = pa.Table.from_batches([batch])
        # Lance commits are optimistic; concurrent merge_inserts on one table conflict and
        # retry internally. Serialising writes here is simpler and no slower (each is large).
        with self._write_lock:
            if name in self._bulk:
                table.add(data)
            else:
                (
                    table.merge_insert("id")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(data)
                )

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        table = self._table(name)
        with self._write_lock:
            for start in range(0, len(ids), 1000):
                table.delete(self._where_ids(ids[start : start + 1000]))

    def drop(self, name: str) -> None:
        if name in self.list_collections():
            self.db.drop_table(name)
        self._schemas.pop(name, None)

    def begin_bulk_load(self, name: str) -> None:
        """Append until ``finalize`` when the table is empty (see ``_bulk``)."""
        if self.count(name) == 0:
            self._bulk.add(name)

    def _drop_duplicate_ids(self, table: Any) -> None:
        """Keep one row per id (a batch re-sent after a timeout or a kill was appended
        twice; both copies hold the same record)."""
        ids = table.search().select(["id"]).limit(None).to_arrow().column("id")
        counts = pc.value_counts(ids)
        dups = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
        for start in range(0, len(dups), 1000):
            chunk = dups.slice(start, 1000).to_pylist()
            where = self._where_ids(chunk)
            rows = table.search().where(where).limit(None).to_arrow()
            first = pc.index_in(pa.array(chunk, rows.schema.field("id").type), rows["id"])
            keep = rows.take(pc.drop_null(first))
            table.delete(where)
            table.add(keep)

    def finalize(self, name: str) -> None:
        """Remove duplicates a bulk load may leave; compact the fragments many batches
        leave behind; build a requested index."""
        self._call(f"lancedb finalize {name!r}", self._finalize, name)

    def _finalize(self, name: str) -> None:
        table = self._table(name)
        schema = self._schema(name)
        with self._write_lock:
            self._bulk.discard(name)
            self._drop_duplicate_ids(table)
            table.optimize()
            rows = table.count_rows()
            for v in schema.vectors:
                if (
                    v.index
                    and v.index.kind in ("hnsw", "ivf_pq", "ivf_flat")
                    and rows >= MIN_ROWS_FOR_INDEX
                ):
                    table.create_index(
                        metric=_METRIC_NAMES[v.metric],
                        vector_column_name=v.name,
                        replace=True,
                        index_type={
                            "hnsw": "IVF_HNSW_SQ",
                            "ivf_pq": "IVF_PQ",
                            "ivf_flat": "IVF_FLAT",
                        }[v.index.kind],
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
        ids: list[list[Any]] = []
        scores: list[list[float]] = []
        for q in np.asarray(vectors, dtype=np.float32):
            query = table.search(q, vector_column_name=field.name).distance_type(
                _METRIC_NAMES[field.metric]
            )
            if node is not None:
                query = query.where(where_sql(node), prefilter=True)
            res = query.select(["id", "_distance"]).limit(k).to_arrow()
            ids.append(res.column("id").to_pylist())
            scores.append(res.column("_distance").to_pylist())
        return ids, scores


def _open_db(path: Path) -> Any:
    make_dir(path)  # lancedb.connect makes it too, but names a file in the way less clearly
    return lancedb.connect(str(path))


def _served_indexes(table: Any, schema: CollectionSchema, *, recorded: bool) -> CollectionSchema:
    """``schema`` with each vector's metric read from the index that serves its searches
    (an index rebuilt outside vecmigrate outranks what vecmigrate recorded, and the
    disagreement is noted); the index itself is noted in ``engine_settings``."""
    configs = {c.columns[0]: c for c in table.list_indices() if len(c.columns) == 1}
    settings = dict(schema.engine_settings)
    vectors = []
    for v in schema.vectors:
        settings.pop(f"{v.name}.index", None)  # a note copied from another engine
        stats = table.index_stats(configs[v.name].name) if v.name in configs else None
        if stats is None:  # no index: a flat scan with the metric each query asks for
            vectors.append(v)
            continue
        settings[f"{v.name}.index"] = (
            f"{stats.index_type} ({stats.distance_type}), {stats.num_indexed_rows} rows indexed"
        )
        served = next((m for m, n in _METRIC_NAMES.items() if n == stats.distance_type), None)
        if served is None:
            raise ConfigError(
                f"the {stats.index_type} index on {schema.name}.{v.name} serves "
                f"{stats.distance_type} distance, which vecmigrate has no metric for"
            )
        note = f"{served.value} from the {stats.index_type} index"
        if served is not v.metric and recorded:
            note += f"; vecmigrate recorded {v.metric.value} (index rebuilt outside vecmigrate)"
        if served is not v.metric or not recorded:
            settings[f"{v.name}.metric"] = note
            v = v.model_copy(update={"metric": served})
        vectors.append(v)
    return schema.replace(vectors=tuple(vectors), engine_settings=settings)


def _to_layout(table: pa.Table, schema: CollectionSchema) -> pa.RecordBatch:
    """The batch layout; a foreign table's top-level metadata columns become the struct.

    Dates and timestamps become ISO-8601 text and nested values JSON text here; every
    other type is left to ``conform``, which widens it exactly or files values that do
    not fit in ``metadata_extra``."""
    batch = table_to_batch(table)
    names = batch.schema.names
    if not schema.metadata or (
        "metadata" in names
        and batch.schema.field("metadata").type.equals(schema.metadata_struct_type())
    ):
        return conform(batch, schema)
    if "metadata" in names and pa.types.is_struct(batch.schema.field("metadata").type):
        struct = batch.column(names.index("metadata"))
        by_name = dict(zip([c.name for c in struct.type], struct.flatten(), strict=True))
        source = {m.name: by_name[m.name] for m in schema.metadata if m.name in by_name}
        batch = batch.remove_column(names.index("metadata"))
    else:
        source = {m.name: batch.column(m.name) for m in schema.metadata if m.name in names}
    if len(source) == len(schema.metadata):
        children = [portable_column(source[m.name], m) for m in schema.metadata]
        metadata = pa.StructArray.from_arrays(children, names=[m.name for m in schema.metadata])
        batch = batch.append_column("metadata", metadata)
    return conform(batch, schema)


def _sql_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | np.integer | np.floating):
        return repr(value.item() if isinstance(value, np.generic) else value)
    return "'" + str(value).replace("'", "''") + "'"


def _column(name: str) -> str:
    # Backticks quote any field name; a backtick inside one is doubled.
    return "metadata.`" + name.replace("`", "``") + "`"


def where_sql(node: Node) -> str:
    """A portable filter as a LanceDB (DataFusion) SQL predicate; literals are escaped."""
    if isinstance(node, Bool):
        if node.op == "$not":
            return f"NOT coalesce(({where_sql(node.children[0])}), false)"
        joiner = " AND " if node.op == "$and" else " OR "
        return "(" + joiner.join(f"coalesce(({where_sql(c)}), false)" for c in node.children) + ")"
    col = "namespace" if node.field.name == NAMESPACE_KEY else _column(node.field.name)
    if node.op == "$exists":
        return f"{col} IS {'NOT ' if node.value else ''}NULL"
    if node.field.type.startswith("list<"):
        wanted = node.value if node.op == "$in" else [node.value]
        return f"array_has_any({col}, [{', '.join(map(_sql_value, wanted))}])"
    if node.op in ("$in", "$nin"):
        listed = ", ".join(map(_sql_value, node.value))
        return f"({col} IS NOT NULL AND {col} {'NOT ' if node.op == '$nin' else ''}IN ({listed}))"
    sql_op = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[node.op]
    return f"({col} IS NOT NULL AND {col} {sql_op} {_sql_value(node.value)})"
