"""FAISS: ``faiss:///dir``. A collection is ``<name>.faiss`` (the index) plus a Parquet
sidecar ``<name>.parquet`` (ids, documents, metadata, vectors) and ``<name>.schema.json``.

FAISS stores only vectors, so the sidecar is the source of truth and the index is rebuilt
from it (Flat by default; HNSW or IVF-Flat when the schema asks, with M / ef_construction /
nlist mapped). An index file made by another tool, without a sidecar, is read too: ids
are its FAISS ids (IndexIDMap) or positions, vectors come from ``reconstruct_n``.
Each write rewrites the collection's files atomically: simple and crash-safe, fine for
the millions-of-vectors scale FAISS files usually hold, not for many tiny batches.

Searches are served by the index file, so reads compare its vectors with the sidecar's and
return the index's copy where they differ (a file changed behind vecmigrate's back shows up
as changed records; the next write rebuilds the index from the sidecar). ``describe`` takes
the metric from the index file when it disagrees with the recorded one, and says so.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.faiss._client import (
    FAISS_METRIC,
    atomic_write,
    build_index,
    index_class,
    reconstruct,
    translate_error,
    write_index,
)
from vecmigrate.connectors.files import make_dir
from vecmigrate.connectors.partitions import offset_partitions, scan_offsets
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.exact import TopK
from vecmigrate.filters import ALL_OPS, evaluate
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    IndexSpec,
    Metric,
    Partition,
    ResumeToken,
    VectorField,
)
from vecmigrate.records import (
    build_batch,
    conform,
    numpy_to_vectors,
    table_to_batch,
    vectors_to_numpy,
)
from vecmigrate.uri import ConnectionURI

# Rows reconstructed from an index at a time when comparing it with the sidecar.
_CHUNK = 65_536
log = logging.getLogger("vecmigrate.connectors.faiss")


class FaissConnector(Connector):
    """FAISS index files with a Parquet sidecar; exact filtered search over the sidecar."""

    schemes = ("faiss",)
    capabilities = Capabilities(
        id_types=frozenset({IdType.STRING, IdType.INT, IdType.UUID}),
        metrics=frozenset(Metric),
        filter_ops=ALL_OPS,
        max_batch_rows=50_000,
        max_batch_bytes=512 * 1024 * 1024,
        index_kinds=frozenset({"flat", "hnsw", "ivf_flat"}),
    )
    translate_error = staticmethod(translate_error)

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self.root: Path = uri.local_path
        self._tables: dict[str, pa.Table] = {}  # what is stored: writes start from it
        self._views: dict[str, pa.Table] = {}  # what reads return (the index's vectors)
        self._indexes: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _paths(self, name: str) -> tuple[Path, Path, Path]:
        if "/" in name or name.startswith("."):
            raise ConfigError(f"collection name {name!r} cannot be a file name")
        return (
            self.root / f"{name}.faiss",
            self.root / f"{name}.parquet",
            self.root / f"{name}.schema.json",
        )

    def list_collections(self) -> list[str]:
        try:
            names = [e.name for e in os.scandir(self.root)]
        except FileNotFoundError:
            return []  # the first ``create`` makes the directory
        return sorted(n.removesuffix(".faiss") for n in names if n.endswith(".faiss"))

    # -- schema and data ---------------------------------------------------------------------
    def describe(self, name: str) -> CollectionSchema:
        index_path, _, schema_path = self._paths(name)
        if schema_path.is_file():
            schema = CollectionSchema.from_json(schema_path.read_text()).replace(
                name=name, engine="faiss"
            )
            if index_path.is_file():
                schema = _served_metric(schema, self._index(name))
        elif index_path.is_file():
            schema = self._describe_foreign(name, self._index(name))
        else:
            raise ConfigError(f"{self.uri} has no FAISS collection {name!r}")
        self._schemas[name] = schema
        return schema

    def _describe_foreign(self, name: str, index: Any) -> CollectionSchema:
        metric = Metric.L2 if index.metric_type == faiss.METRIC_L2 else Metric.DOT
        notes = {
            "index_class": index_class(index),
            "vector.metric": f"{metric.value} from the index metric type "
            "(an inner-product index over normalised vectors may have been meant as cosine)",
        }
        return CollectionSchema(
            name=name,
            id_type=IdType.INT,
            engine="faiss",
            engine_settings=notes,
            vectors=(VectorField(dim=index.d, metric=metric, index=IndexSpec(kind="flat")),),
        )

    def _index(self, name: str) -> Any:
        """The index file as loaded (cached; replaced by each write)."""
        if name not in self._indexes:
            index_path = self._paths(name)[0]
            if not index_path.is_file():
                raise DataError(
                    f"FAISS collection {name!r} has no index file {index_path.name}",
                    collection=name,
                    hint="copy it again with --if-exists replace",
                )
            self._indexes[name] = self._call(
                f"faiss {index_path}", faiss.read_index, str(index_path)
            )
        return self._indexes[name]

    def _table(self, name: str) -> pa.Table:
        """The collection as reads return it: stored records with the vectors the index
        serves (cached)."""
        if name not in self._views:
            table = self._stored(name)
            if self._paths(name)[1].is_file():  # else the vectors came from the index itself
                table = self._served_vectors(name, table)
            self._views[name] = table
        return self._views[name]

    def _served_vectors(self, name: str, table: pa.Table) -> pa.Table:
        """``table`` with the index's copy of every vector that differs from the sidecar's."""
        field = self._schema(name).vector
        index = self._index(name)
        if index.ntotal != table.num_rows:
            raise DataError(
                f"the FAISS index of {name!r} holds {index.ntotal} vectors, its sidecar "
                f"{table.num_rows} records: the files no longer belong together",
                collection=name,
                hint="copy it again with --if-exists replace",
            )
        stored = (
            vectors_to_numpy(table.column(field.name))
            if table.num_rows
            else np.zeros((0, field.dim), np.float32)
        )
        served = stored.copy()
        bad: list[int] = []
        for start in range(0, table.num_rows, _CHUNK):
            got = reconstruct(index, start, min(_CHUNK, table.num_rows - start))
            want = stored[start : start + len(got)]
            scale = np.ones((len(want), 1), np.float32)
            if field.metric is Metric.COSINE:  # the index holds unit vectors
                scale = np.linalg.norm(want, axis=1, keepdims=True)
                want = want / np.maximum(scale, 1e-30)
            off = np.abs(got - want).max(axis=1, initial=0) > 1e-5 * np.maximum(
                1, np.abs(want).max(axis=1, initial=0)
            )
            rows = np.flatnonzero(off)
            served[start + rows] = got[rows] * scale[rows]  # at the stored length
            bad += (start + rows).tolist()
        if not bad:
            return table
        ids = table.column("id").take(bad).to_pylist()
        log.warning(
            "FAISS %r: the index file holds another vector than the sidecar for %d record(s) "
            "%s; reading the index's copy (the one searches serve)",
            name,
            len(bad),
            ids[:10],
        )
        column = table.schema.get_field_index(field.name)
        vectors = numpy_to_vectors(served).cast(table.schema.field(column).type)
        return table.set_column(column, table.schema.field(column), vectors)

    def _stored(self, name: str) -> pa.Table:
        """The whole collection in the batch layout as stored (cached)."""
        if name not in self._tables:
            schema = self._schema(name)
            sidecar = self._paths(name)[1]
            if sidecar.is_file():
                table = pq.read_table(sidecar)
            else:
                index: Any = self._index(name)
                ids = (
                    faiss.vector_to_array(index.id_map)
                    if hasattr(index, "id_map")
                    else np.arange(index.ntotal)
                )
                # IndexIDMap keeps vectors in its inner index, in the same order as id_map.
                inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
                vectors = (
                    inner.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d))
                )
                table = pa.Table.from_batches(
                    [build_batch(schema, ids.tolist(), {"vector": vectors})]
                )
            self._tables[name] = table.cast(schema.arrow_schema())
        return self._tables[name]

    def count(self, name: str, filter: Filter | None = None) -> int:
        node = self._filter(self._schema(name), filter)
        table = self._table(name)
        if node is None:
            return int(table.num_rows)
        return int(evaluate(node, table_to_batch(table)).sum())

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        return offset_partitions(self._table(name).num_rows, n)

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
            return conform(table_to_batch(table.slice(offset, limit)), schema)

        yield from scan_offsets("FAISS", name, partition, resume, batch_rows, read)

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        table = self._table(name)
        wanted = pa.array(list(ids)).cast(table.schema.field("id").type, safe=False)
        return conform(
            table_to_batch(table.filter(pc.is_in(table.column("id"), value_set=wanted))), schema
        )

    # -- writing -----------------------------------------------------------------------------
    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        if len(schema.vectors) != 1 or schema.sparse:
            raise ConfigError("a FAISS index holds one dense vector field per collection")
        exists = schema.name in self.list_collections()
        if self._keep_existing(schema.name, exists, if_exists, f"FAISS collection {schema.name!r}"):
            return
        make_dir(self.root)
        _, _, schema_path = self._paths(schema.name)
        atomic_write(schema_path, schema.to_json().encode())
        self._schemas[schema.name] = schema
        self._persist(schema.name, schema.arrow_schema().empty_table())

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        new = pa.Table.from_batches([batch])
        if len(set(new.column("id").to_pylist())) != new.num_rows:
            raise DataError("batch repeats an id", collection=name, field="id")
        with self._lock:
            old = self._stored(name)
            keep = pc.invert(
                pc.is_in(old.column("id"), value_set=new.column("id").combine_chunks())
            )
            self._persist(name, pa.concat_tables([old.filter(keep), new]))

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        with self._lock:
            table = self._stored(name)
            gone = pa.array(list(ids)).cast(table.schema.field("id").type, safe=False)
            self._persist(
                name, table.filter(pc.invert(pc.is_in(table.column("id"), value_set=gone)))
            )

    def drop(self, name: str) -> None:
        for path in self._paths(name):
            path.unlink(missing_ok=True)
        self._tables.pop(name, None)
        self._views.pop(name, None)
        self._indexes.pop(name, None)
        self._schemas.pop(name, None)

    def _persist(self, name: str, table: pa.Table) -> None:
        schema = self._schema(name)
        index_path, sidecar, _ = self._paths(name)
        vectors = (
            vectors_to_numpy(table.column(schema.vector.name))
            if table.num_rows
            else np.zeros((0, schema.vector.dim), np.float32)
        )
        index = build_index(schema.vector, vectors)
        write_index(index, index_path)
        tmp = sidecar.with_name(f".{sidecar.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, sidecar)
        self._tables[name] = self._views[name] = table
        self._indexes[name] = index

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
        batch = table_to_batch(table)
        ids = batch.column("id").to_pylist()
        q = np.ascontiguousarray(vectors, dtype=np.float32)
        if node is not None:  # exact over the rows that pass: the filter is never approximate
            top = TopK(q, k, field.metric)
            top.add(ids, vectors_to_numpy(batch.column(field.name)), evaluate(node, batch))
            truth = top.result()
            return truth.ids, [
                list(map(float, s[: len(i)])) for s, i in zip(truth.scores, truth.ids, strict=True)
            ]
        index: Any = self._index(name)
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = int((params or {}).get("ef_search", max(64, 2 * k)))
        if field.metric is Metric.COSINE:
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
        scores, positions = index.search(q, min(k, max(1, index.ntotal)))
        # Our own indexes hold rows in sidecar order; a foreign IndexIDMap answers with its ids.
        label = (lambda p: int(p)) if hasattr(index, "id_map") else ids.__getitem__
        out_ids = [[label(p) for p in row if p >= 0] for row in positions]
        return out_ids, [
            [float(s) for s, p in zip(srow, prow, strict=True) if p >= 0]
            for srow, prow in zip(scores, positions, strict=True)
        ]


def _served_metric(schema: CollectionSchema, index: Any) -> CollectionSchema:
    """``schema`` with the metric the index file searches with, noted in ``engine_settings``
    when it is not the one vecmigrate recorded (the file was rebuilt behind its back)."""
    by_type = {faiss.METRIC_L2: Metric.L2, faiss.METRIC_INNER_PRODUCT: Metric.DOT}
    if index.metric_type not in by_type:
        raise ConfigError(
            f"the FAISS index of {schema.name!r} has metric type {index.metric_type}, "
            "which vecmigrate has no metric for"
        )
    v = schema.vector
    settings = dict(schema.engine_settings)
    kind = "inner product" if index.metric_type == faiss.METRIC_INNER_PRODUCT else "l2"
    settings[f"{v.name}.index"] = f"{index_class(index)} ({kind})"
    if FAISS_METRIC[v.metric] != index.metric_type:
        served = by_type[index.metric_type]
        settings[f"{v.name}.metric"] = (
            f"{served.value} from the index file's metric type; vecmigrate recorded "
            f"{v.metric.value} (the index was rebuilt outside vecmigrate)"
        )
        v = v.model_copy(update={"metric": served})
    return schema.replace(vectors=(v, *schema.vectors[1:]), engine_settings=settings)
