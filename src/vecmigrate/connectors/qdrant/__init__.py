"""Qdrant: ``qdrant://host:6333?api_key=env:NAME`` (server) and ``qdrant+local:///path``
(qdrant-client's local mode, a pure-Python emulation of the API; no server runs here).

Point ids must be unsigned ints or UUIDs: int ids are kept; string ids become
uuid5(collection/id) and the original travels in the payload. In collections made by other
tools (and those made here for UUID ids) a UUID id is the point id itself; reads find a
record wherever either rule put it (``qdrant_codec.point_candidates``). Qdrant normalises
cosine vectors on insert, so vectors are compared after normalising. The vecmigrate schema is
kept in the collection's metadata. Sparse fields are Qdrant sparse vectors; namespaces
follow Qdrant's multitenancy advice: a tenant key in the payload, filtered on. Payload
keys, point ids and filter compilation are in ``_records``.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
from qdrant_client import QdrantClient, models

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.config import ConnectorConfig, Secret
from vecmigrate.connectors.qdrant._client import open_client, translate_error
from vecmigrate.connectors.qdrant._records import (
    DOC_KEY,
    ID_KEY,
    NS_KEY,
    POINT_IDS_SETTING,
    RESERVED_KEYS,
    batch_to_points,
    canonical_uuid,
    point_candidates,
    points_to_batch,
    query_filter,
    record_id,
)
from vecmigrate.errors import ConfigError
from vecmigrate.filters import NAMESPACE_KEY
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    IndexSpec,
    Metric,
    Partition,
    ResumeToken,
    SparseField,
    VectorField,
)
from vecmigrate.records import infer_metadata_fields
from vecmigrate.uri import ConnectionURI

SCHEMA_KEY = "vecmigrate:schema"
_DISTANCE = {
    Metric.COSINE: models.Distance.COSINE,
    Metric.DOT: models.Distance.DOT,
    Metric.L2: models.Distance.EUCLID,
}
_METRIC = {v: k for k, v in _DISTANCE.items()}


def _served_metrics(schema: CollectionSchema, info: Any) -> CollectionSchema:
    """``schema`` (as vecmigrate recorded it) with each vector's metric as the collection
    is configured to search (a collection recreated with the recorded schema but another
    distance searches with that one); a disagreement is noted in ``engine_settings``."""
    params = info.config.params.vectors
    named = params if isinstance(params, dict) else {"": params}
    unnamed = schema.engine_settings.get("unnamed_vector")
    settings = dict(schema.engine_settings)
    vectors = []
    for v in schema.vectors:
        got = named.get("" if unnamed else v.name)
        if got is None:
            vectors.append(v)
            continue
        served = _METRIC.get(got.distance)
        if served is None:
            raise ConfigError(
                f"Qdrant collection {schema.name!r} searches {v.name!r} with {got.distance} "
                "distance, which vecmigrate has no metric for"
            )
        if served is not v.metric:
            settings[f"{v.name}.metric"] = (
                f"{served.value} from the collection's vector config; vecmigrate recorded "
                f"{v.metric.value} (the collection was changed outside vecmigrate)"
            )
            v = v.model_copy(update={"metric": served})
        vectors.append(v)
    return schema.replace(engine="qdrant", vectors=tuple(vectors), engine_settings=settings)


@dataclass(frozen=True)
class QdrantConfig(ConnectorConfig):
    """API key and TLS of a Qdrant server."""

    api_key: Secret | None = None
    https: bool = False


class QdrantConnector(Connector):
    """Qdrant collections with named dense vectors and JSON payloads."""

    Config = QdrantConfig
    config: QdrantConfig

    schemes = ("qdrant", "qdrant+local")
    capabilities = Capabilities(
        id_types=frozenset(IdType),
        metrics=frozenset(Metric),
        named_vectors=True,
        sparse_vectors=True,
        namespaces=True,
        filter_ops=frozenset(
            {
                "$eq",
                "$ne",
                "$in",
                "$nin",
                "$gt",
                "$gte",
                "$lt",
                "$lte",
                NAMESPACE_KEY,
                "$exists",
                "$and",
                "$or",
                "$not",
            }
        ),
        max_batch_rows=2000,
        normalizes_cosine=True,
        vector_tolerance=1e-6,
        index_kinds=frozenset({"hnsw", "flat"}),
    )

    translate_error = staticmethod(translate_error)

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self._lock = threading.Lock()

    @cached_property
    def client(self) -> QdrantClient:
        """Opened on first use (local mode opens and locks its directory then)."""
        c = self.config
        return self._call(f"Qdrant at {self.uri}", open_client, self.uri, c.api_key, c.https)

    def close(self) -> None:
        client = self.__dict__.pop("client", None)  # never opened: nothing to close
        if client is not None:
            with contextlib.suppress(Exception):  # closing must not fail a job
                client.close()

    def list_collections(self) -> list[str]:
        got = self._call(f"Qdrant at {self.uri}: list collections", self.client.get_collections)
        return sorted(c.name for c in got.collections)

    # -- schema ------------------------------------------------------------------------------
    def describe(self, name: str) -> CollectionSchema:
        if not self.client.collection_exists(name):
            raise ConfigError(f"{self.uri} has no collection {name!r}")
        info = self.client.get_collection(name)
        stored = (getattr(info.config, "metadata", None) or {}).get(SCHEMA_KEY)
        schema = (
            _served_metrics(CollectionSchema.from_json(stored).replace(name=name), info)
            if stored
            else self._infer(name, info)
        )
        self._schemas[name] = schema
        return schema

    def _infer(self, name: str, info: Any) -> CollectionSchema:
        params = info.config.params.vectors
        named = params if isinstance(params, dict) else {"": params}
        vectors = tuple(
            VectorField(
                name=n or "vector",
                dim=p.size,
                metric=_METRIC[p.distance],
                index=IndexSpec(kind="hnsw"),
            )
            for n, p in named.items()
        )
        points, _ = self.client.scroll(name, limit=1000, with_payload=True)
        payloads = [dict(p.payload or {}) for p in points]
        has_doc = any(DOC_KEY in p for p in payloads)
        metas = [{k: v for k, v in p.items() if k not in RESERVED_KEYS} for p in payloads]
        namespaces = sorted({p[NS_KEY] for p in payloads if NS_KEY in p})
        # A point without vecmigrate's original-id key (or whose key repeats its own id)
        # holds its record under its own id: hashing that id again would address a point
        # that does not exist. Only collections vecmigrate filled alone hash every id.
        rids = [pl.get(ID_KEY, p.id) for p, pl in zip(points, payloads, strict=True)]
        own = [r == p.id for r, p in zip(rids, points, strict=True)]
        native = not points or any(own)
        if all(isinstance(r, int) for r in rids) and all(own):
            id_type = IdType.INT
        elif native and all(canonical_uuid(r) for r in rids):
            id_type = IdType.UUID
        else:
            id_type = IdType.STRING
        settings: dict[str, Any] = {"unnamed_vector": "" in named}
        if native:
            settings[POINT_IDS_SETTING] = "native"
        return CollectionSchema(
            name=name,
            id_type=id_type,
            vectors=vectors,
            sparse=tuple(SparseField(name=n) for n in (info.config.params.sparse_vectors or {})),
            metadata=infer_metadata_fields(metas),
            has_document=has_doc,
            namespaces=tuple(namespaces) if namespaces else None,
            engine="qdrant",
            engine_settings=settings,
        )

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        exists = self.client.collection_exists(schema.name)
        what = f"Qdrant collection {schema.name!r}"
        if self._keep_existing(schema.name, exists, if_exists, what):
            return
        if exists:
            self.client.delete_collection(schema.name)
        # What this collection is made with, not what a source collection had: vectors are
        # always named here, and UUID ids are the point ids.
        settings = {
            k: v
            for k, v in schema.engine_settings.items()
            if k not in ("unnamed_vector", POINT_IDS_SETTING)
        }
        if schema.id_type is IdType.UUID:
            settings[POINT_IDS_SETTING] = "native"
        schema = schema.replace(engine_settings=settings)
        vectors = {}
        for v in schema.vectors:
            params = v.index.params if v.index else {}
            hnsw = models.HnswConfigDiff(
                m=int(params.get("M", 16)), ef_construct=int(params.get("ef_construction", 100))
            )
            vectors[v.name] = models.VectorParams(
                size=v.dim, distance=_DISTANCE[v.metric], hnsw_config=hnsw
            )
        self._call(
            f"creating {schema.name!r}",
            self.client.create_collection,
            schema.name,
            vectors_config=vectors,
            sparse_vectors_config={s.name: models.SparseVectorParams() for s in schema.sparse}
            or None,
            metadata={SCHEMA_KEY: schema.to_json()},
        )
        self._schemas[schema.name] = schema

    def count(self, name: str, filter: Filter | None = None) -> int:
        flt = query_filter(self._filter(self._schema(name), filter))
        return int(self.client.count(name, count_filter=flt, exact=True).count)

    # -- ids ---------------------------------------------------------------------------------
    def _points(
        self, name: str, schema: CollectionSchema, ids: Sequence[Any], *, data: bool
    ) -> list[Any]:
        """The points holding the records ``ids``, wherever they were written: candidates
        are read back and kept when the record id they hold is one asked for."""
        if not ids:
            return []
        wanted = {int(i) if schema.id_type is IdType.INT else str(i) for i in ids}
        points = self._call(
            f"retrieving from {name!r}",
            self.client.retrieve,
            name,
            ids=point_candidates(name, schema, ids),
            with_payload=True if data else [ID_KEY],
            with_vectors=data,
        )
        return [p for p in points if record_id(p, schema) in wanted]

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        # scroll walks point ids in order from an opaque offset; one partition keeps it exact.
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
        offset = json.loads(resume)["offset"] if resume else None
        while True:
            points, offset = self._call(
                f"scrolling {name!r}",
                self.client.scroll,
                name,
                limit=batch_rows,
                offset=offset,
                with_payload=True,
                with_vectors=True,
            )
            if not points:
                return
            yield (
                points_to_batch(points, schema),
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
        return points_to_batch(list(found.values()), schema)

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        points = batch_to_points(name, batch, schema)
        with self._lock:
            self._call(f"upsert into {name!r}", self.client.upsert, name, points=points, wait=True)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        schema = self._schema(name)
        points = self._points(name, schema, ids, data=False)
        if not points:
            return
        selector = models.PointIdsList(points=[p.id for p in points])
        with self._lock:
            self._call(
                f"delete from {name!r}",
                self.client.delete,
                name,
                points_selector=selector,
                wait=True,
            )

    def drop(self, name: str) -> None:
        if self.client.collection_exists(name):
            self.client.delete_collection(name)
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
        schema = self._schema(name)
        flt = query_filter(self._filter(schema, filter))
        field = schema.vector_field(vector_field)
        using = None if schema.engine_settings.get("unnamed_vector") else field.name
        ids: list[list[Any]] = []
        scores: list[list[float]] = []
        for q in np.asarray(vectors, dtype=np.float32):
            got = self._call(
                f"search in {name!r}",
                self.client.query_points,
                name,
                query=q.tolist(),
                using=using,
                limit=k,
                query_filter=flt,
                with_payload=[ID_KEY],
            ).points
            ids.append([record_id(p, schema) for p in got])
            scores.append([float(p.score) for p in got])
        return ids, scores
