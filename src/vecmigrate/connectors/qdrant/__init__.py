"""Qdrant: ``qdrant://host:6333?api_key=env:NAME`` (server) and ``qdrant+local:///path``
(qdrant-client's local mode, a pure-Python emulation of the API; no server runs here).

Point ids must be unsigned ints or UUIDs: int ids are kept; string ids become
uuid5(collection/id) and the original travels in the payload. In collections made by other
tools (and those made here for UUID ids) a UUID id is the point id itself; reads find a
record wherever either rule put it (``qdrant_codec.point_candidates``). Qdrant normalises
cosine vectors on insert, so vectors are compared after normalising. The vecmigrate schema is
kept in the collection's metadata. Sparse fields are Qdrant sparse vectors; namespaces
follow Qdrant's multitenancy advice: a tenant key in the payload, filtered on. Payload
keys, point ids and filter compilation are in ``_records``. ``?layout=langchain`` /
``?layout=llamaindex`` read and write collections as LangChain's and LlamaIndex's
``QdrantVectorStore`` keep them (``_frameworks``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
from qdrant_client import QdrantClient, models

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.config import Secret
from vecmigrate.connectors.foreign import SAMPLE_ROWS, FieldsConfig
from vecmigrate.connectors.frameworks import HAYSTACK, LLAMAINDEX, WITH_HAYSTACK, parse_layout
from vecmigrate.connectors.qdrant import _frameworks
from vecmigrate.connectors.qdrant._client import open_client, translate_error
from vecmigrate.connectors.qdrant._infer import (
    DISTANCE,
    PAYLOAD_INDEX,
    indexed_payload,
    infer_schema,
    reuse_schema,
    served_metrics,
)
from vecmigrate.connectors.qdrant._layout import LAYOUT_KEY, Payload
from vecmigrate.connectors.qdrant._records import (
    ID_KEY,
    POINT_IDS_SETTING,
    PayloadLayout,
    batch_to_points,
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
    Metric,
    Partition,
    ResumeToken,
)
from vecmigrate.records import vectors_to_numpy
from vecmigrate.uri import ConnectionURI

SCHEMA_KEY = "vecmigrate:schema"
# engine_settings: the aliases an application reaches the collection by (a cutover switches
# them); a Qdrant target takes those it does not have yet (``finalize``).
ALIASES_KEY = "qdrant.aliases"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QdrantConfig(FieldsConfig):
    """API key and TLS of a Qdrant server; the payload keys of collections other tools
    wrote (``connectors/foreign.py``); ``layout``: ``langchain``, ``llamaindex`` or
    ``haystack`` for collections those frameworks read and write."""

    api_key: Secret | None = None
    https: bool = False
    layout: str | None = None


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
        sparse_metrics=frozenset({Metric.DOT}),
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
        self._framework = parse_layout(self.config.layout, "qdrant", WITH_HAYSTACK)
        # layout=: what ``create`` was given (with how points are addressed) and the
        # metric the collection searches with.
        self._written: dict[str, tuple[CollectionSchema, Metric]] = {}
        if self._framework:
            named = [
                p
                for p in ("id_field", "document_field", "vector_field", "metadata_field")
                if getattr(self.config, p) is not None
            ]
            if named:
                raise ConfigError(
                    f"qdrant:// layout={self._framework} says where everything is; "
                    f"{', '.join(named)} cannot be given with it",
                    hint=f"drop {', '.join(f'?{p}=' for p in named)} or ?layout=",
                )

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
        if self._framework:
            return self._describe_framework(name, info, stored is not None)
        if stored:
            schema = served_metrics(CollectionSchema.from_json(stored).replace(name=name), info)
        else:
            points, _ = self.client.scroll(name, limit=SAMPLE_ROWS, with_payload=True)
            schema = infer_schema(name, info, points, self.config)
        schema = indexed_payload(schema, set(info.payload_schema or {}))
        settings = {k: v for k, v in schema.engine_settings.items() if k != ALIASES_KEY}
        aliases = self._aliases()
        named = sorted(a for a, collection in aliases.items() if collection == name)
        schema = schema.replace(
            engine_settings={**settings, **({ALIASES_KEY: named} if named else {})}
        )
        self._schemas[name] = schema
        return schema

    def _aliases(self) -> dict[str, str]:
        """Every alias on the server and the collection it names."""
        got = self._call(f"Qdrant at {self.uri}: list aliases", self.client.get_aliases)
        return {a.alias_name: a.collection_name for a in got.aliases}

    def finalize(self, name: str) -> None:
        """The source's aliases (``ALIASES_KEY``) on the copy, where this server has none
        of that name: one that names another collection is left as it is (switching it is
        the cutover's step, never a copy's), and said."""
        wanted = self._schema(name).engine_settings.get(ALIASES_KEY) or []
        have = self._aliases() if wanted else {}
        for alias in wanted:
            if alias not in have:
                create = models.CreateAlias(collection_name=name, alias_name=alias)
                change = [models.CreateAliasOperation(create_alias=create)]
                self._call(
                    f"Qdrant at {self.uri}: create alias {alias!r}",
                    self.client.update_collection_aliases,
                    change_aliases_operations=change,
                )
            elif have[alias] != name:
                log.warning(
                    "%s: the source's alias %r names %r here: left as it is (the copy is %r; "
                    "switching the alias is the cutover)", self.uri, alias, have[alias], name,
                )  # fmt: skip

    def _describe_framework(self, name: str, info: Any, ours: bool) -> CollectionSchema:
        assert self._framework
        if ours:
            raise ConfigError(
                f"Qdrant collection {name!r} was laid out by vecmigrate itself, not by "
                f"{_frameworks.WHAT[self._framework]}: layout={self._framework} does not read it",
                hint="read it without ?layout=",
            )
        points, _ = self.client.scroll(name, limit=SAMPLE_ROWS, with_payload=True)
        if name in self._written:
            if not points:
                return self._written[name][0]  # created here, nothing written yet
            return _frameworks.describe(name, info, points, self._framework)
        schema = _frameworks.describe(name, info, points, self._framework)
        self._schemas[name] = schema
        return schema

    def _layout(self, name: str) -> PayloadLayout | None:
        """How a collection another tool wrote lays out its payload (None: ours)."""
        schema = self._schema(name)
        if self._framework:
            return _frameworks.FrameworkPayload(self._framework, [m.name for m in schema.metadata])
        return Payload.of(schema.engine_settings)

    def _query_filter(self, name: str, filter: Filter | None) -> models.Filter | None:
        layout = self._layout(name)
        keys = layout.keys() if layout is not None else None
        return query_filter(self._filter(self._schema(name), filter), keys)

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        if self._framework:
            self._create_framework(schema, if_exists, self._framework)
            return
        exists = self.client.collection_exists(schema.name)
        what = f"Qdrant collection {schema.name!r}"
        if self._keep_existing(schema.name, exists, if_exists, what, describe=False):
            self._schemas[schema.name] = reuse_schema(schema, self.describe(schema.name))
            return
        if exists:
            self.client.delete_collection(schema.name)
        # What this collection is made with, not what a source collection had: vectors are
        # always named here, UUID ids are the point ids, and the payload is laid out ours.
        settings = {
            k: v
            for k, v in schema.engine_settings.items()
            if k not in ("unnamed_vector", POINT_IDS_SETTING, LAYOUT_KEY)
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
                size=v.dim, distance=DISTANCE[v.metric], hnsw_config=hnsw
            )
        self._call(
            f"creating {schema.name!r}",
            self.client.create_collection,
            schema.name,
            vectors_config=vectors,
            sparse_vectors_config={
                s.name: models.SparseVectorParams(
                    modifier=models.Modifier.IDF if s.modifier == "idf" else None
                )
                for s in schema.sparse
            }
            or None,
            metadata={SCHEMA_KEY: schema.to_json()},
        )
        self._index_payload(schema)
        self._schemas[schema.name] = schema

    def _index_payload(self, schema: CollectionSchema) -> None:
        """A payload index on each metadata field the source indexed, before any point is
        written (as Qdrant advises: its HNSW graph then links filtered neighbours too).
        Local mode keeps no payload indexes: nothing to make there."""
        if self.uri.scheme != "qdrant":
            return
        for m in schema.metadata:
            if m.indexed and m.type in PAYLOAD_INDEX:
                self._call(
                    f"indexing {schema.name!r}.{m.name}",
                    self.client.create_payload_index,
                    schema.name,
                    field_name=m.name,
                    field_schema=models.PayloadSchemaType(PAYLOAD_INDEX[m.type]),
                )

    def _create_framework(self, schema: CollectionSchema, if_exists: IfExists, layout: str) -> None:
        """Create (or reuse) a collection as the framework of ``layout`` makes it."""
        name = schema.name
        _frameworks.check_schema(schema, layout)
        exists = self.client.collection_exists(name)
        what = f"Qdrant collection {name!r}"
        self._written.pop(name, None)
        if self._keep_existing(name, exists, if_exists, what, describe=False):
            have = self.describe(name)
            info = self.client.get_collection(name)
            unnamed = bool(have.engine_settings.get("unnamed_vector"))
            if not unnamed or have.vector.dim != schema.vector.dim:
                raise ConfigError(
                    f"{what} holds {have.vector.dim}-d vectors in {have.vector.name!r}; "
                    f"the records' {schema.vector.dim}-d vectors go into a vector named '' "
                    "(unnamed): nothing was written",
                    hint="copy into a new collection (--if-exists replace, or another name)",
                )
            served = _frameworks.served_metric(name, info, layout)
        else:
            if exists:
                self.client.delete_collection(name)
            self._call(
                f"creating {name!r}",
                self.client.create_collection,
                name,
                vectors_config=_frameworks.vectors_config(layout, schema.vector.dim),
                metadata=_frameworks.note(schema),
            )
            if layout == LLAMAINDEX and self.uri.scheme == "qdrant":
                # As LlamaIndex does on a server (index_doc_id=True); local mode has none.
                self._call(
                    f"indexing {name!r}",
                    self.client.create_payload_index,
                    name,
                    field_name=_frameworks.DOC_ID,
                    field_schema=models.PayloadSchemaType.KEYWORD,
                )
            served = Metric.COSINE
        written = schema.replace(
            engine="qdrant", engine_settings=_frameworks.settings(layout, unnamed=True)
        )
        self._written[name] = (written, served)
        self._schemas[name] = written

    def count(self, name: str, filter: Filter | None = None) -> int:
        flt = self._query_filter(name, filter)
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
        haystack = self._framework == HAYSTACK
        points = self._call(
            f"retrieving from {name!r}",
            self.client.retrieve,
            name,
            ids=[_frameworks.haystack_point_id(i) for i in ids]
            if haystack
            else point_candidates(name, schema, ids),
            with_payload=True if data or haystack else [ID_KEY],
            with_vectors=data,
        )
        if haystack:
            points = _frameworks.haystack_lift(name, points)
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
            if self._framework == HAYSTACK:
                points = _frameworks.haystack_lift(name, points)
            yield (
                points_to_batch(points, schema, self._layout(name)),
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
        return points_to_batch(list(found.values()), schema, self._layout(name))

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        if self._framework:
            written = self._written.get(name)
            if written is not None:
                served = written[1]
            else:
                served = _frameworks.served_metric(
                    name, self.client.get_collection(name), self._framework
                )
            v = schema.vector
            _frameworks.check_units(
                name,
                batch.column("id").to_pylist(),
                vectors_to_numpy(batch.column(v.name)),
                v.metric,
                served,
                v.name,
            )
        points = batch_to_points(name, batch, schema, self._layout(name))
        if self._framework == HAYSTACK:
            points = _frameworks.haystack_ids(points, batch.column("id").to_pylist())
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
        self._written.pop(name, None)

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
        flt = self._query_filter(name, filter)
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
