"""Weaviate: ``weaviate://host:8080?grpc_port=50051&api_key=env:NAME[&secure=1]``.

weaviate-client v4 speaks REST for meta, schema and tenant creation and gRPC for reads,
batch writes, deletes, counts and tenant listing. A collection is a class (first letter
capitalised by Weaviate); the vecmigrate schema travels in the class description.

* Weaviate lower-cases the first letter of property names: field ``Title`` is property
  ``title`` (mapped back on read; fields that collide this way are refused).
* Ids are UUIDs: other ids become uuid5(collection/id) with the original in the text
  property ``vecmigrate_id``; documents are the text property ``document``; values that
  did not fit their field (``metadata_extra``) are one JSON text property.
* Every vector field is a named vector (``vectorizer: none``) with its own HNSW
  (maxConnections/efConstruction/ef) or flat index and distance: cosine (``1 - cos``),
  dot (``-a·b``) or l2-squared (search scores are *squared* euclidean distances).
* Namespaces are tenants of a multi-tenant class; each tenant is scanned with the cursor
  API (``after`` = last uuid, uuid order), which is also the resume token.
* Filters: the class indexes null state; ``$ne``/``$nin`` add ``is_none(False)`` because
  Weaviate's NotEqual/ContainsNone also match objects lacking the property. Inexact by
  design of the engine: text uses ``field`` tokenization, whose Equal ignores leading and
  trailing whitespace, and the null state counts ``""`` as null (so ``$exists``/``$ne``
  treat an empty string as missing). ``$exists`` on list fields is refused (an empty array
  counts as null); ``$not``/``$nin`` need Not/ContainsNone (Weaviate 1.33+): refused on
  older servers.
* Scalar ints travel as protobuf doubles in gRPC batches: |int| > 2**53 is refused.
* Search scores are Weaviate distances (lower is closer). Uuid ids come back canonical
  (lower-case, hyphenated).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.classes.tenants import Tenant

from vecmigrate.connectors.base import Connector, IfExists
from vecmigrate.connectors.base import Filter as PortableFilter
from vecmigrate.connectors.config import ConnectorConfig, Secret, reveal
from vecmigrate.connectors.weaviate._client import open_client, translate_error
from vecmigrate.connectors.weaviate._records import (
    ID_PROP,
    MAX_RESULTS,
    SCHEMA_PREFIX,
    TENANT_RE,
    class_body,
    class_name,
    compile_filter,
    index_specs,
    infer_schema,
    object_properties,
    objects_to_batch,
    uuid_partitions,
    uuids_for,
)
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import ALL_OPS, NAMESPACE_KEY, Node, namespace_scope, operators
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    Metric,
    Partition,
    ResumeToken,
)
from vecmigrate.records import table_to_batch, vectors_to_numpy
from vecmigrate.uri import ConnectionURI

Tenants = list[str | None]


QUERY_MAXIMUM_RESULTS = 10_000


@dataclass(frozen=True)
class WeaviateConfig(ConnectorConfig):
    """API key, TLS and the gRPC endpoint (default: the HTTP host, port 50051)."""

    api_key: Secret | None = None
    secure: bool = False
    grpc_host: str | None = None
    grpc_port: int = 50051


class WeaviateConnector(Connector):
    Config = WeaviateConfig
    config: WeaviateConfig

    """Weaviate classes: named vectors, typed properties, tenants as namespaces."""

    schemes = ("weaviate",)
    capabilities = Capabilities(
        id_types=frozenset(IdType),
        metrics=frozenset(Metric),
        named_vectors=True,
        namespaces=True,
        filter_ops=ALL_OPS | {NAMESPACE_KEY},
        max_batch_rows=1000,
        index_kinds=frozenset({"hnsw", "flat"}),
    )

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self._key = reveal(self.config.api_key)
        self._client: Any = None
        self._server_version = "0"
        self._open_lock = threading.Lock()
        self._tenants: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    translate_error = staticmethod(translate_error)

    @property
    def client(self) -> Any:
        """The connected client, opened (and checked ready) on first use."""
        with self._open_lock:
            if self._client is None:
                self._client, self._server_version = self._call(
                    f"connecting to {self.uri}",
                    open_client,
                    self.uri,
                    self._key,
                    secure=self.config.secure,
                    grpc_host=self.config.grpc_host,
                    grpc_port=self.config.grpc_port,
                )
            return self._client

    @property
    def server_version(self) -> str:
        """The server's version (``/v1/meta``), read when the client is opened."""
        self.client  # noqa: B018 - opens the client, which reads the version
        return self._server_version

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _filter(self, schema: CollectionSchema, filter: PortableFilter | None) -> Node | None:
        node = super()._filter(schema, filter)
        late = operators(node) & {"$not", "$nin"} if node else set()
        major_minor = tuple(int(x) for x in re.findall(r"\d+", self.server_version)[:2])
        if late and major_minor < (1, 33):
            raise ConfigError(
                f"Weaviate {self.server_version} cannot express filter operators {sorted(late)}",
                hint="Not and ContainsNone arrived in Weaviate 1.33",
            )
        return node

    def _col(self, name: str, tenant: str | None = None) -> Any:
        col = self.client.collections.get(class_name(name))
        return col.with_tenant(tenant) if tenant else col

    def list_collections(self) -> list[str]:
        configs = self._call("listing classes", self.client.collections.list_all, simple=True)
        names = []
        for cls, cfg in configs.items():
            desc = cfg.description or ""
            stored = desc.startswith(SCHEMA_PREFIX)
            names.append(json.loads(desc[len(SCHEMA_PREFIX) :])["name"] if stored else cls)
        return sorted(names)

    # -- schema ------------------------------------------------------------------------------
    def describe(self, name: str) -> CollectionSchema:
        exists = self._call(
            f"looking up {name!r}", self.client.collections.exists, class_name(name)
        )
        if not exists:
            raise ConfigError(f"{self.uri} has no collection {name!r}")
        cfg = self._call(f"reading the config of {name!r}", self._col(name).config.get)
        tenants = None
        if cfg.multi_tenancy_config.enabled:
            tenants = tuple(sorted(self._call(f"tenants of {name!r}", self._col(name).tenants.get)))
        self._tenants[name] = set(tenants or ())
        specs, settings = index_specs(cfg)
        desc = cfg.description or ""
        if desc.startswith(SCHEMA_PREFIX):
            stored = CollectionSchema.from_json(desc[len(SCHEMA_PREFIX) :])
            # what the engine actually built wins over what was asked for
            vectors = tuple(
                v.model_copy(update={"metric": specs[v.name][0], "index": specs[v.name][1]})
                if v.name in specs
                else v
                for v in stored.vectors
            )
            schema = stored.replace(name=name, vectors=vectors, namespaces=tenants)
        else:
            schema = infer_schema(name, cfg, specs, tenants, self._sample(name, tenants))
        schema = schema.replace(engine="weaviate", engine_settings=settings)
        self._schemas[name] = schema
        return schema

    def _sample(self, name: str, tenants: tuple[str, ...] | None) -> Any | None:
        """One object with its vectors (from the first tenant that has one), or None."""
        for t in tenants or [None]:
            col = self._col(name, t)
            got = self._call("sampling", col.query.fetch_objects, limit=1, include_vector=True)
            if got.objects:
                return got.objects[0]
        return None

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        body = class_body(schema)
        exists = self._call(
            f"looking up {schema.name!r}", self.client.collections.exists, body["class"]
        )
        if self._keep_existing(schema.name, exists, if_exists, f"Weaviate class {body['class']!r}"):
            return
        if exists:
            self.drop(schema.name)
        self._call(f"creating {schema.name!r}", self.client.collections.create_from_dict, body)
        self._schemas.pop(schema.name, None)
        self._tenants[schema.name] = set()
        self._ensure_tenants(schema.name, [n for n in schema.namespaces or () if n])
        self.describe(schema.name)

    def _ensure_tenants(self, name: str, wanted: Sequence[str]) -> None:
        with self._lock:  # pipeline workers upsert concurrently: create each tenant once
            self._create_tenants(name, wanted)

    def _create_tenants(self, name: str, wanted: Sequence[str]) -> None:
        new = sorted(set(wanted) - self._tenants.setdefault(name, set()))
        for t in new:
            if not TENANT_RE.match(t):
                raise DataError(
                    "not a valid Weaviate tenant name (A-Z a-z 0-9 _ -, at most 64)",
                    collection=name,
                    record_id=t,
                    field="namespace",
                )
        if new:
            tenants = [Tenant(name=t) for t in new]
            self._call(f"creating tenants of {name!r}", self._col(name).tenants.create, tenants)
            self._tenants[name].update(new)

    def _tenant_list(self, name: str) -> Tenants:
        if self._schema(name).namespaces is None:
            return [None]
        return [*sorted(self._tenants.get(name, ()))]

    # -- reading -----------------------------------------------------------------------------
    def count(self, name: str, filter: PortableFilter | None = None) -> int:
        tenants, node = namespace_scope(
            self._filter(self._schema(name), filter), self._tenant_list(name)
        )
        flt = compile_filter(node) if node else None
        total = 0
        for t in tenants:
            agg = self._col(name, t).aggregate
            got = self._call(f"counting {name!r}", agg.over_all, total_count=True, filters=flt)
            total += int(got.total_count or 0)
        return total

    def partitions(self, name: str, n: int) -> list[Partition]:
        if self._schema(name).namespaces is not None:  # tenants are natural partitions
            tenants = self._tenant_list(name)
            k = max(1, min(n, len(tenants)))
            return [Partition(id=f"tenants-{i}", spec={"tenants": tenants[i::k]}) for i in range(k)]
        return uuid_partitions(self.count(name), n)

    def scan(
        self,
        name: str,
        partition: Partition,
        resume: ResumeToken | None = None,
        *,
        schema: CollectionSchema | None = None,
        batch_rows: int = 1000,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        """Cursor pages (``after`` the last uuid) per tenant; ``(after, upto]`` bounds."""
        schema = schema or self._schema(name)
        # Weaviate refuses a page over QUERY_MAXIMUM_RESULTS (10,000 by default).
        batch_rows = min(batch_rows, QUERY_MAXIMUM_RESULTS)
        tenants: Tenants = partition.spec.get("tenants", [None])
        state = json.loads(resume) if resume else None
        upto = partition.spec.get("upto")
        for pos, t in enumerate(tenants):
            if state is not None and pos < tenants.index(state["tenant"]):
                continue
            same = state is not None and state["tenant"] == t
            after = state["after"] if same else partition.spec.get("after")  # type: ignore[index]
            query = self._col(name, t).query
            while True:
                objs = self._call(
                    f"scanning {name!r}",
                    query.fetch_objects,
                    limit=batch_rows,
                    after=after,
                    include_vector=True,
                ).objects
                full = len(objs) == batch_rows
                if upto is not None:
                    kept = [o for o in objs if str(o.uuid) <= upto]
                    full, objs = full and len(kept) == len(objs), kept
                if objs:
                    after = str(objs[-1].uuid)
                    token = json.dumps({"tenant": t, "after": after})
                    yield objects_to_batch(objs, schema, t), token
                if not full:
                    break

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        uuids = uuids_for(name, schema, list(ids))
        batches = []
        for t in self._tenant_list(name):
            query = self._col(name, t).query
            for i in range(0, len(uuids), MAX_RESULTS):
                chunk = uuids[i : i + MAX_RESULTS]
                got = self._call(
                    f"fetching from {name!r}",
                    query.fetch_objects_by_ids,
                    chunk,
                    limit=len(chunk),
                    include_vector=True,
                )
                batches.append(objects_to_batch(list(got.objects), schema, t))
        return table_to_batch(pa.Table.from_batches(batches, schema=schema.arrow_schema()))

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        ids = batch.column("id").to_pylist()
        uuids = uuids_for(name, schema, ids)
        props = object_properties(name, schema, batch, ids)
        vecs = {v.name: vectors_to_numpy(batch.column(v.name)) for v in schema.vectors}
        n = batch.num_rows
        names = batch.schema.names
        tenants = batch.column("namespace").to_pylist() if "namespace" in names else [None] * n
        if schema.namespaces is not None:
            for i, t in enumerate(tenants):
                if not t:
                    raise DataError(
                        "a multi-tenant class needs a namespace (tenant) on every record",
                        collection=name,
                        record_id=ids[i],
                        field="namespace",
                    )
            self._ensure_tenants(name, tenants)  # type: ignore[arg-type]
        groups: dict[str | None, list[int]] = {}
        for i, t in enumerate(tenants):
            groups.setdefault(t, []).append(i)
        for t, rows in groups.items():
            objects = [
                DataObject(
                    properties=props[i], uuid=uuids[i], vector={k: m[i] for k, m in vecs.items()}
                )
                for i in rows
            ]
            res = self._call(f"upsert into {name!r}", self._col(name, t).data.insert_many, objects)
            if res.errors:  # the others were written; upserts are idempotent, so that is fine
                pos, err = min(res.errors.items())
                raise DataError(
                    f"Weaviate refused the object: {err.message}",
                    collection=name,
                    record_id=ids[rows[pos]],
                )

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        uuids = uuids_for(name, self._schema(name), list(ids))
        for t in self._tenant_list(name):
            data = self._col(name, t).data
            for i in range(0, len(uuids), MAX_RESULTS):
                where = Filter.by_id().contains_any(uuids[i : i + MAX_RESULTS])
                self._call(f"delete from {name!r}", data.delete_many, where=where)

    def drop(self, name: str) -> None:
        self._call(f"dropping {name!r}", self.client.collections.delete, class_name(name))
        self._schemas.pop(name, None)
        self._tenants.pop(name, None)

    # -- querying ----------------------------------------------------------------------------
    def search(
        self,
        name: str,
        vectors: np.ndarray,
        k: int,
        *,
        filter: PortableFilter | None = None,
        params: dict[str, Any] | None = None,
        vector_field: str | None = None,
    ) -> tuple[list[list[Any]], list[list[float]]]:
        """Top-k per query; across tenants, merged by distance. Scores are distances."""
        schema = self._schema(name)
        tenants, node = namespace_scope(self._filter(schema, filter), self._tenant_list(name))
        flt = compile_filter(node) if node else None
        field = schema.vector_field(vector_field)
        target = None if schema.engine_settings.get("unnamed_vector") else field.name
        ret = [ID_PROP] if schema.id_type is not IdType.UUID else []
        as_int = schema.id_type is IdType.INT
        all_ids, all_scores = [], []
        for q in np.asarray(vectors, dtype=np.float32):
            hits: list[tuple[float, Any]] = []
            for t in tenants:
                res = self._call(
                    f"search in {name!r}",
                    self._col(name, t).query.near_vector,
                    near_vector=q.tolist(),
                    target_vector=target,
                    limit=k,
                    filters=flt,
                    return_metadata=MetadataQuery(distance=True),
                    return_properties=ret,
                )
                for o in res.objects:
                    rid = o.properties.get(ID_PROP, str(o.uuid))
                    hits.append((float(o.metadata.distance), int(rid) if as_int else rid))
            hits.sort(key=lambda h: h[0])
            all_ids.append([h[1] for h in hits[:k]])
            all_scores.append([h[0] for h in hits[:k]])
        return all_ids, all_scores
