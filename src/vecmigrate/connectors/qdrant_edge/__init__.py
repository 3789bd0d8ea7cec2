"""Qdrant Edge: ``qdrant-edge:///path`` — Qdrant's own Rust storage and search engine,
embedded in the process (PyPI ``qdrant-edge-py``, ``qdrant_edge.EdgeShard``), no server.

Each collection is one Edge shard in ``<path>/<collection>/``. Points are laid out as the
Qdrant connector lays them out (``qdrant._records``): int ids are point ids, other ids are
their own UUID or uuid5(collection/id) with the original in the payload, and documents and
namespaces are reserved payload keys, so a collection moves between a Qdrant server and
Edge unchanged. Filters are compiled by the Qdrant connector and rebuilt as Edge's classes
(``_filters``). Named and sparse vectors are Edge's own; HNSW ``M`` / ``ef_construction``
become the shard's ``m`` / ``ef_construct`` (``flat``: m=0) and the graph is built by
Edge's optimizer in ``finalize``. The vecmigrate schema is kept in the shard folder;
shards made by other programs are described from their config (``_schema``). Shards are
opened on first use and Edge locks each one to a single process while it is open.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import qdrant_edge as qe

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.config import ConnectorConfig
from vecmigrate.connectors.qdrant import QdrantConnector
from vecmigrate.connectors.qdrant._infer import PAYLOAD_INDEX, indexed_payload
from vecmigrate.connectors.qdrant._records import (
    ID_KEY,
    POINT_IDS_SETTING,
    point_candidates,
    record_id,
)
from vecmigrate.connectors.qdrant_edge._client import (
    SCHEMA_FILE,
    Shards,
    translate_error,
)
from vecmigrate.connectors.qdrant_edge._filters import edge_filter
from vecmigrate.connectors.qdrant_edge._records import (
    UNNAMED_FIELD,
    point_id,
    read_points,
    to_batch,
    to_points,
    vector_key,
)
from vecmigrate.connectors.qdrant_edge._schema import (
    ENGINE,
    edge_config,
    infer,
    read_config,
    served,
)
from vecmigrate.errors import ConfigError
from vecmigrate.model import (
    CollectionSchema,
    IdType,
    Partition,
    ResumeToken,
)
from vecmigrate.uri import ConnectionURI

_INFER_SAMPLE = 1000


@dataclass(frozen=True)
class QdrantEdgeConfig(ConnectorConfig):
    """Qdrant Edge takes no parameters: the path is the store."""


class QdrantEdgeConnector(Connector):
    """Qdrant Edge shards (one per collection) with named dense and sparse vectors."""

    Config = QdrantEdgeConfig
    config: QdrantEdgeConfig

    schemes = ("qdrant-edge",)
    storage = "path"
    # Qdrant's own engine: what it can store and express is what the Qdrant connector declares.
    capabilities = QdrantConnector.capabilities

    translate_error = staticmethod(translate_error)

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self._lock = threading.Lock()

    @cached_property
    def shards(self) -> Shards:
        """The store's shards; none is opened before a call needs it."""
        return Shards(self.uri.local_path.expanduser())

    def close(self) -> None:
        shards = self.__dict__.pop("shards", None)  # never used: nothing to close
        if shards is not None:
            shards.close()

    def list_collections(self) -> list[str]:
        return self.shards.names()

    # -- schema ------------------------------------------------------------------------------
    def describe(self, name: str) -> CollectionSchema:
        if not self.shards.exists(name):
            raise ConfigError(f"{self.uri} has no collection {name!r}")
        shard = self.shards.get(name)  # loading completes a config Edge derives from segments
        path = self.shards.path(name)
        config = read_config(path)
        stored = path / SCHEMA_FILE
        if stored.is_file():
            recorded = CollectionSchema.from_json(stored.read_text(encoding="utf-8"))
            schema = served(recorded.replace(name=name), config)
        else:
            records, _ = shard.scroll(qe.ScrollRequest(limit=_INFER_SAMPLE, with_payload=True))
            schema = infer(name, config, read_points(records))
        schema = indexed_payload(schema, set(shard.info().payload_schema or {}))
        self._schemas[name] = schema
        return schema

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        exists = self.shards.exists(schema.name)
        what = f"Qdrant Edge collection {schema.name!r}"
        if self._keep_existing(schema.name, exists, if_exists, what):
            return
        config, notes = edge_config(schema)
        # What this shard is made with, not what a source collection had: vectors are
        # always named here, and UUID ids are the point ids.
        settings = {
            k: v
            for k, v in schema.engine_settings.items()
            if k not in ("unnamed_vector", UNNAMED_FIELD, POINT_IDS_SETTING)
        }
        settings.update(notes)
        if schema.id_type is IdType.UUID:
            settings[POINT_IDS_SETTING] = "native"
        schema = schema.replace(engine=ENGINE, engine_settings=settings)
        if exists:
            self.shards.drop(schema.name)
        self._schemas.pop(schema.name, None)
        shard = self.shards.create(schema.name, config, schema.to_json())
        # A payload index on each field the source indexed, before the points (Qdrant's way).
        for m in schema.metadata:
            if m.indexed and m.type in PAYLOAD_INDEX:
                kind = getattr(qe.PayloadSchemaType, PAYLOAD_INDEX[m.type].capitalize())
                operation = qe.UpdateOperation.create_field_index(m.name, kind)
                self._call(f"indexing {schema.name!r}.{m.name}", shard.update, operation)
        self._schemas[schema.name] = schema

    def count(self, name: str, filter: Filter | None = None) -> int:
        flt = edge_filter(self._filter(self._schema(name), filter))
        return int(self.shards.get(name).count(qe.CountRequest(exact=True, filter=flt)))

    # -- ids ---------------------------------------------------------------------------------
    def _points(
        self, name: str, schema: CollectionSchema, ids: Sequence[Any], *, data: bool
    ) -> list[Any]:
        """The points holding the records ``ids`` wherever either id rule put them (read
        back, kept when the record id they hold is one asked for)."""
        if not ids:
            return []
        wanted = {int(i) if schema.id_type is IdType.INT else str(i) for i in ids}
        records = self._call(
            f"retrieving from {name!r}",
            self.shards.get(name).retrieve,
            point_candidates(name, schema, ids),
            True if data else qe.PayloadSelector.Include([ID_KEY]),
            data,
        )
        return [p for p in read_points(records) if record_id(p, schema) in wanted]

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        # scroll walks point ids in order from the next id; one partition keeps it exact.
        return [Partition(id="all", spec={}, estimated_rows=self.count(name))]

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
        token = json.loads(resume) if resume else {}
        if token.get("done"):
            return
        offset = token.get("offset")
        shard = self.shards.get(name)
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=batch_rows, with_payload=True, with_vector=True
            )
            records, after = self._call(f"scrolling {name!r}", shard.scroll, request)
            if not records:
                return
            offset = None if after is None else point_id(after)
            yield (
                to_batch(records, schema),
                json.dumps({"offset": offset, "done": offset is None}),
            )
            if offset is None:
                return

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        found: dict[Any, Any] = {}
        for p in self._points(name, schema, ids, data=True):
            # Two points holding one record (written by both id rules): one is returned.
            found.setdefault(record_id(p, schema), p)
        return to_batch(found.values(), schema)

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        points = to_points(name, batch, schema)
        with self._lock:
            self._call(
                f"upsert into {name!r}",
                self.shards.written(name).update,
                qe.UpdateOperation.upsert_points(points),
            )

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        schema = self._schema(name)
        points = self._points(name, schema, ids, data=False)
        if not points:
            return
        with self._lock:
            self._call(
                f"delete from {name!r}",
                self.shards.written(name).update,
                qe.UpdateOperation.delete_points([p.id for p in points]),
            )

    def drop(self, name: str) -> None:
        self.shards.drop(name)
        self._schemas.pop(name, None)

    def finalize(self, name: str) -> None:
        """Build the HNSW graphs (Edge's optimizer, once the shard passes its indexing
        threshold) and flush, so the shard on disk is complete when a copy ends."""
        with self._lock:
            shard = self._call(f"optimizing {name!r}", self.shards.written, name)
            self._call(f"optimizing {name!r}", shard.optimize)
            self._call(f"flushing {name!r}", shard.flush)

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
        flt = edge_filter(self._filter(schema, filter))
        field = schema.vector_field(vector_field)
        using = vector_key(schema, field.name) or None
        p = params or {}
        search_params = None
        if "ef_search" in p or p.get("exact"):
            ef = int(p["ef_search"]) if "ef_search" in p else None
            search_params = qe.SearchParams(hnsw_ef=ef, exact=bool(p.get("exact", False)))
        requests = [
            qe.QueryRequest(
                limit=k,
                query=qe.Query.Nearest(q.tolist(), using=using),
                filter=flt,
                params=search_params,
                with_payload=qe.PayloadSelector.Include([ID_KEY]),
                with_vector=False,
            )
            for q in np.asarray(vectors, dtype=np.float32)
        ]
        if not requests:
            return [], []
        shard = self.shards.get(name)
        got = self._call(f"search in {name!r}", shard.query_batch, qe.QueryBatchRequest(requests))
        ids = [[record_id(p, schema) for p in read_points(hits)] for hits in got]
        scores = [[float(h.score) for h in hits] for hits in got]
        return ids, scores
