"""An example third-party connector (docs/writing-a-connector.md): ``tablefile:./dir``
keeps each collection as ``<name>.parquet`` in the collection's Arrow layout beside
``<name>.schema.json``. Small on purpose: it shows the contract, not a fast engine."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.partitions import offset_partitions, scan_offsets
from vecmigrate.errors import ConfigError
from vecmigrate.exact import TopK
from vecmigrate.filters import ALL_OPS, evaluate
from vecmigrate.model import Capabilities, CollectionSchema, IdType, Metric, Partition, ResumeToken
from vecmigrate.records import conform, table_to_batch, vectors_to_numpy
from vecmigrate.uri import ConnectionURI


class TablefileConnector(Connector):
    """Collections as Parquet files in a folder."""

    schemes = ("tablefile",)
    storage: ClassVar = "path"
    capabilities = Capabilities(
        id_types=frozenset({IdType.STRING, IdType.INT}),
        metrics=frozenset(Metric),
        filter_ops=ALL_OPS,
        max_batch_rows=10_000,
    )

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self.root = uri.local_path
        # The pipeline writes from several threads; each write rewrites the whole file.
        self._lock = threading.Lock()

    def _files(self, name: str) -> tuple[Path, Path]:
        return self.root / f"{name}.parquet", self.root / f"{name}.schema.json"

    def _table(self, name: str) -> pa.Table:
        return pq.read_table(self._files(name)[0], schema=self._schema(name).arrow_schema())

    def _write(self, name: str, table: pa.Table) -> None:
        data, _ = self._files(name)
        tmp = data.with_suffix(".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, data)  # readers see the old file or the new one, never half

    # -- discovery ---------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        return sorted(p.name.removesuffix(".schema.json") for p in self.root.glob("*.schema.json"))

    def describe(self, name: str) -> CollectionSchema:
        path = self._files(name)[1]
        if not path.exists():
            raise ConfigError(f"tablefile collection {name!r} does not exist in {self.root}")
        schema = CollectionSchema.from_json(path.read_text())
        self._schemas[name] = schema
        return schema

    def count(self, name: str, filter: Filter | None = None) -> int:
        node = self._filter(self._schema(name), filter)
        table = self._table(name)
        if node is None:
            return table.num_rows
        return int(evaluate(node, table_to_batch(table)).sum())

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        return offset_partitions(self.count(name), n, min_rows=100)

    def scan(
        self,
        name: str,
        partition: Partition,
        resume: ResumeToken | None = None,
        *,
        schema: CollectionSchema | None = None,
        batch_rows: int = 1000,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        table = self._table(name)
        return scan_offsets(
            "tablefile",
            name,
            partition,
            resume,
            batch_rows,
            lambda offset, limit: table_to_batch(table.slice(offset, limit)),
        )

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        table = self._table(name)
        keys = pa.array(list(ids), type=table.schema.field("id").type)
        return table_to_batch(table.filter(pc.is_in(table["id"], value_set=keys)))

    # -- writing -----------------------------------------------------------------------------
    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        exists = self._files(schema.name)[1].exists()
        what = f"tablefile collection {schema.name!r}"
        if self._keep_existing(schema.name, exists, if_exists, what):
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self._files(schema.name)[1].write_text(schema.to_json())
        self._schemas[schema.name] = schema
        self._write(schema.name, schema.arrow_schema().empty_table())

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        batch = conform(batch, self._schema(name))
        ids = batch.column("id")
        if pc.count_distinct(ids).as_py() < len(ids):  # an id repeated: its last copy wins
            last = {key: row for row, key in enumerate(ids.to_pylist())}
            batch = batch.take(pa.array(sorted(last.values())))
        with self._lock:
            kept = self._without(name, batch.column("id"))
            self._write(name, pa.concat_tables([kept, pa.Table.from_batches([batch])]))

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        keys = pa.array(list(ids), type=self._schema(name).id_arrow_type())
        with self._lock:
            self._write(name, self._without(name, keys))

    def _without(self, name: str, ids: pa.Array) -> pa.Table:
        table = self._table(name)
        return table.filter(pc.invert(pc.is_in(table["id"], value_set=ids)))

    def drop(self, name: str) -> None:
        for path in self._files(name):
            path.unlink(missing_ok=True)
        self._schemas.pop(name, None)

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
        """Exact search (no index)."""
        schema = self._schema(name)
        node = self._filter(schema, filter)
        field = schema.vector_field(vector_field)
        batch = table_to_batch(self._table(name))
        mask = None
        if node is not None:
            mask = np.broadcast_to(evaluate(node, batch), (len(vectors), batch.num_rows))
        top = TopK(np.asarray(vectors, dtype=np.float32), k, field.metric)
        top.add(batch.column("id").to_pylist(), vectors_to_numpy(batch.column(field.name)), mask)
        truth = top.result()
        return truth.ids, [
            [float(s) for s in row[: len(ids)]]
            for row, ids in zip(truth.scores, truth.ids, strict=True)
        ]
