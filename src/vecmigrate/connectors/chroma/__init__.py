"""Chroma: ``chroma:///path`` (embedded PersistentClient) and ``chroma+http://host:port``.

Chroma metadata takes str, int, float, bool and non-empty homogeneous lists. In a
collection vecmigrate created (its schema is kept in the collection's metadata) anything
else (explicit nulls, empty lists, objects, mixed lists) is stored as ``vecmigrate:json:``
+ JSON and decoded on read, and so is a string that itself starts with that marker, so
every value round-trips and no string is ever mistaken for an encoded one. Collections
made by other tools are described by sampling and read verbatim: a string there is a
string, whatever it starts with; values they cannot hold natively are refused by record.
Their metric is the space they search with (``_space``), with where it was read.

``?layout=langchain`` / ``llamaindex`` / ``haystack`` read and write collections as
LangChain's ``Chroma``, LlamaIndex's ``ChromaVectorStore`` and Haystack's
``ChromaDocumentStore`` keep them (``_frameworks``).

``upsert`` is Chroma's own, one atomic call: it merges metadata keys (a key the new
record lacks is kept) and keeps the old document when the new one is None. Replacing by
delete-then-add would open a window in which live cutover reads a record as deleted, so
the merge is the known gap (a strict xfail in tests/conformance/test_chroma.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import chromadb
import numpy as np
import pyarrow as pa
from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT
from chromadb.errors import NotFoundError

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.chroma._client import open_client, translate_error
from vecmigrate.connectors.chroma._embedding import carried, described, registry_kept
from vecmigrate.connectors.chroma._frameworks import ChromaFramework
from vecmigrate.connectors.chroma._native import ChromaHTTP
from vecmigrate.connectors.chroma._uris import (
    DEFAULT_FIELD,
    URIS_KEY,
    check_uri_field,
    split_uris,
    with_uris,
)
from vecmigrate.connectors.config import ConnectorConfig, Secret
from vecmigrate.connectors.frameworks import WITH_HAYSTACK, parse_layout
from vecmigrate.connectors.partitions import offset_partitions, scan_offsets
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import Bool, Node
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
from vecmigrate.records import build_batch, infer_metadata_fields, metadata_rows, vectors_to_numpy
from vecmigrate.uri import ConnectionURI

SCHEMA_KEY = "vecmigrate:schema"
ENCODED = "vecmigrate:json:"
_SPACE = {Metric.COSINE: "cosine", Metric.DOT: "ip", Metric.L2: "l2"}
_METRIC = {v: k for k, v in _SPACE.items()}
_INCLUDE = ["embeddings", "documents", "metadatas", "uris"]
# HNSW parameter names: portable -> Chroma.
_HNSW_PARAMS = {
    "M": "max_neighbors",
    "ef_construction": "ef_construction",
    "ef_search": "ef_search",
}
T = TypeVar("T")


def _native(value: Any) -> bool:
    """Whether Chroma stores ``value`` as it is (scalars, non-empty homogeneous lists)."""
    if isinstance(value, bool | int | float | str):
        return not (isinstance(value, str) and value.startswith(ENCODED))
    return (
        isinstance(value, list)
        and bool(value)
        and all(type(x) is type(value[0]) for x in value)
        and isinstance(value[0], bool | int | float | str)
    )


def _encode_value(value: Any) -> Any:
    """A metadata value as a vecmigrate-made collection stores it (see the module doc)."""
    if _native(value):
        return value
    return ENCODED + json.dumps(value, sort_keys=True, separators=(",", ":"))


def _decode_value(value: Any, encoded: bool) -> Any:
    """A stored value back; ``encoded``: the collection is vecmigrate's (markers are ours)."""
    if encoded and isinstance(value, str) and value.startswith(ENCODED):
        return json.loads(value[len(ENCODED) :])
    return value


def _decode_metadatas(metadatas: Any, encoded: bool) -> list[dict[str, Any]]:
    return [{k: _decode_value(v, encoded) for k, v in (m or {}).items()} for m in metadatas]


def _configuration(col: Any) -> dict[str, Any]:
    """The collection's stored configuration as JSON. Not ``col.configuration``: that
    builds the collection's embedding function (an OpenAI one wants its API key in the
    environment), which a copy of stored embeddings never calls."""
    raw = getattr(col, "configuration_json", None)
    return dict(raw) if isinstance(raw, dict) else {}


def _space(col: Any) -> tuple[Metric, str]:
    """The metric a collection searches with and where it was read: the legacy
    ``hnsw:space`` metadata key (chromadb 1.x still honours it), else the configuration's
    HNSW (or SPANN) space, which chromadb 1.x fills with its default ``l2`` when a
    collection is created without one."""
    config = _configuration(col)
    legacy = (col.metadata or {}).get("hnsw:space")
    configured = ((config.get("hnsw") or {}) or (config.get("spann") or {})).get("space")
    space = legacy or configured or "l2"
    metric = _METRIC.get(str(space))
    if metric is None:
        raise ConfigError(
            f"Chroma collection {col.name!r} searches with space {space!r}, "
            "which vecmigrate has no metric for"
        )
    if legacy:
        return metric, f"the collection's metadata (hnsw:space {legacy})"
    if configured is None:
        return metric, "Chroma's default space (l2)"
    source = f"the collection's configuration (space {configured}"
    return metric, source + (", Chroma's default)" if configured == "l2" else ")")


def _is_ours(col: Any) -> bool:
    """Whether vecmigrate created the collection (and so encoded its values)."""
    return SCHEMA_KEY in (col.metadata or {})


def where_filter(node: Node, encoded: bool = False) -> dict[str, Any]:
    """A portable filter as a Chroma ``where`` (only operators in capabilities.filter_ops);
    ``encoded``: the collection is vecmigrate's, so marker-like strings are stored escaped."""
    if isinstance(node, Bool):
        return {node.op: [where_filter(c, encoded) for c in node.children]}
    name = node.field.name
    if node.field.type.startswith("list<"):
        wanted = node.value if node.op == "$in" else [node.value]
        terms = [{name: {"$contains": v}} for v in wanted]
        return terms[0] if len(terms) == 1 else {"$or": terms}
    value = node.value
    if encoded:
        value = [_encode_value(v) for v in value] if node.op == "$in" else _encode_value(value)
    return {name: {node.op: value}}


@dataclass(frozen=True)
class ChromaConfig(ConnectorConfig):
    """Tenant and database (Chroma's defaults), the HTTP server's token, and ``layout``:
    ``langchain``, ``llamaindex`` or ``haystack`` for collections those frameworks read and
    write; ``uri_field``: the metadata field the records' URIs travel in."""

    tenant: str = DEFAULT_TENANT
    database: str = DEFAULT_DATABASE
    token: Secret | None = None
    layout: str | None = None
    # The metadata field that carries the records' URIs (``_uris``).
    uri_field: str = DEFAULT_FIELD


class ChromaConnector(Connector):
    """Chroma collections, embedded or over HTTP."""

    Config = ChromaConfig
    config: ChromaConfig

    schemes = ("chroma", "chroma+http")
    capabilities = Capabilities(
        # Chroma's $ne/$nin also match records without the field and it has no $exists or
        # $not, so those portable operators cannot be expressed exactly.
        filter_ops=frozenset({"$eq", "$in", "$gt", "$gte", "$lt", "$lte", "$and", "$or"}),
        id_types=frozenset(IdType),
        metrics=frozenset(Metric),
        stores_null_metadata=False,
        max_batch_rows=5000,
        max_batch_bytes=64 * 1024 * 1024,
        # Chroma keeps float32 and has been seen to return values ~5e-7 off.
        vector_tolerance=1e-6,
        index_kinds=frozenset({"hnsw"}),
    )

    translate_error = staticmethod(translate_error)

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self._lock = threading.Lock()
        # Writes into an embedded store are serialised in this process. A server orders
        # concurrent writes itself: one lock here queued every write of a router instance
        # behind its slowest (target-primary write p99 5.2 s in bench/live_load.py).
        self._write_lock: AbstractContextManager[Any] = (
            nullcontext() if uri.scheme == "chroma+http" else threading.Lock()
        )
        layout = parse_layout(self.config.layout, "chroma", WITH_HAYSTACK)
        self._framework = ChromaFramework(layout) if layout else None
        # layout=: what ``create`` was given (the layout batches arrive in) and the metric
        # the collection searches with.
        self._written: dict[str, tuple[CollectionSchema, Metric]] = {}
        # Collection handles by name (see ``_collection``).
        self._handles: dict[str, Any] = {}
        self._native: ChromaHTTP | None = None

    def native_http(self) -> ChromaHTTP | None:
        """Raw HTTP access to the server's record routes (``vecmigrate proxy``'s
        pass-through), made on first use; None for an embedded store, and for a framework
        layout, whose stored records are not the ones the proxy serves."""
        if self.uri.scheme != "chroma+http" or self._framework is not None:
            return None
        with self._lock:
            if self._native is None:
                c = self.config
                self._native = ChromaHTTP(self.uri, c.tenant, c.database, c.token)
            return self._native

    def close(self) -> None:
        """Close the pass-through's connections, if it was used."""
        native, self._native = self._native, None
        if native is not None:
            native.close()

    @cached_property
    def client(self) -> chromadb.api.ClientAPI:
        """Opened on first use: an HTTP client asks the server who it is, and an embedded
        one creates its directory (read-only verbs refuse a missing one before that)."""
        c = self.config
        return self._call(
            f"Chroma at {self.uri}", open_client, self.uri, c.tenant, c.database, c.token
        )

    def _collection(self, name: str, *, fresh: bool = False) -> Any:
        """The handle of collection ``name`` (its id, metadata and configuration), kept
        once fetched: over HTTP fetching it is a round trip of its own, which doubled the
        cost of every fetch, search and upsert. ``fresh`` fetches it again; ``create`` and
        ``drop`` replace or forget it, and ``_on`` refetches a handle whose collection
        another client dropped."""
        if not fresh:
            col = self._handles.get(name)
            if col is not None:
                return col
        client = self.client
        try:
            col = client.get_collection(name, embedding_function=None)
        except (NotFoundError, ValueError) as exc:
            self._handles.pop(name, None)
            raise ConfigError(f"Chroma at {self.uri} has no collection {name!r}") from exc
        self._handles[name] = col
        return col

    def _on(self, name: str, call: Callable[[Any], T]) -> T:
        """``call(handle of name)``; once more with a fresh handle when Chroma no longer
        knows the cached one's collection id (another client dropped the collection and
        perhaps made it again): Chroma refuses such a call whole, so nothing was applied
        and calling again is safe. A collection that is gone for good is a ConfigError."""
        col = self._collection(name)
        try:
            return call(col)
        except NotFoundError:
            if self._handles.get(name) is not col:
                raise  # not the cached handle: nothing stale to replace
            self._handles.pop(name, None)
            return call(self._collection(name, fresh=True))

    def list_collections(self) -> list[str]:
        return sorted(c.name for c in self.client.list_collections())

    # -- schema ------------------------------------------------------------------------------
    def describe(self, name: str) -> CollectionSchema:
        col = self._collection(name, fresh=True)  # describing reads the collection anew
        stored = (col.metadata or {}).get(SCHEMA_KEY)
        if self._framework is not None:
            if stored:
                self._framework.refuse_ours(name)
            if name in self._written and not col.count():
                return self._written[name][0]  # created here, nothing written yet
            schema = self._framework.shape(self._infer(col), col.metadata)
            if name not in self._written:  # a copy's batches keep the layout create took
                self._schemas[name] = schema
            return schema
        if stored:
            schema = CollectionSchema.from_json(stored).replace(name=name, engine="chroma")
        else:
            schema = self._infer(col)
        self._schemas[name] = schema
        return schema

    def _infer(self, col: Any) -> CollectionSchema:
        sample = col.get(limit=1000, include=_INCLUDE)
        config = _configuration(col)
        hnsw = config.get("hnsw") or {}
        metric, source = _space(col)
        emb = sample["embeddings"]
        # An emptied collection still knows its dimension (chromadb keeps it in its model).
        known = getattr(getattr(col, "_model", None), "dimension", None)
        dim = len(emb[0]) if emb is not None and len(emb) else known
        if not dim:
            raise ConfigError(
                f"Chroma collection {col.name!r} is empty; its dimension is unknown",
                hint="it holds no records yet, so there is nothing to copy: Chroma fixes a "
                "collection's dimension with its first record",
            )
        params = {portable: hnsw[own] for portable, own in _HNSW_PARAMS.items() if own in hnsw}
        vector = VectorField(
            dim=dim,
            metric=metric,
            index=IndexSpec(kind="hnsw", params=params),
            metric_source=source,
        )
        metas = _decode_metadatas(sample["metadatas"], encoded=False)
        if self._framework is not None:
            read = self._framework.read
            metas = [read(d, m)[1] for d, m in zip(sample["documents"], metas, strict=True)]
        uris, settings = sample.get("uris"), {}
        if uris and any(u is not None for u in uris):
            check_uri_field(col.name, self.config.uri_field, metas)
            metas = with_uris(col.name, sample["ids"], metas, uris, self.config.uri_field)
            settings[URIS_KEY] = self.config.uri_field
        function = described(config, vector.name, dim)
        return CollectionSchema(
            name=col.name,
            vectors=(vector,),
            metadata=infer_metadata_fields(metas),
            has_document=any(d is not None for d in sample["documents"]),
            embedding=function["embedding"],
            engine="chroma",
            engine_settings={
                "configuration": {"hnsw": hnsw},
                "metadata_types": "inferred from 1000 records",
                **settings,
                **function["settings"],
            },
        )

    def unfilterable(self, schema: CollectionSchema) -> frozenset[str]:
        # Chroma filters metadata only; the URIs are the records' own (``_uris``).
        field = schema.engine_settings.get(URIS_KEY)
        return frozenset({field}) if field else frozenset()

    def count(self, name: str, filter: Filter | None = None) -> int:
        # Without a filter no schema is needed (an empty collection has none to read).
        node = None if filter is None else self._filter(self._schema(name), filter)
        if node is None:
            return int(self._on(name, lambda col: col.count()))
        return len(
            self._on(
                name, lambda col: col.get(where=where_filter(node, _is_ours(col)), include=[])
            )["ids"]
        )

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        if len(schema.vectors) != 1:
            raise ConfigError(
                f"Chroma stores one vector per record; {schema.name!r} has {len(schema.vectors)}"
            )
        exists = schema.name in self.list_collections()
        what = f"Chroma collection {schema.name!r}"
        if self._keep_existing(schema.name, exists, if_exists, what, describe=False):
            if self._framework is not None:
                col = self._collection(schema.name, fresh=True)
                if _is_ours(col):
                    self._framework.refuse_ours(schema.name)
                self._written[schema.name] = (schema, _space(col)[0])
            self._schemas[schema.name] = schema
            return
        if exists:
            self._delete_collection(schema.name)
        v = schema.vector
        hnsw: dict[str, Any] = {"space": _SPACE[v.metric]}
        for key, value in (v.index.params if v.index else {}).items():
            if key in _HNSW_PARAMS:
                hnsw[_HNSW_PARAMS[key]] = value
        if self._framework is not None:
            # As the framework's get_or_create_collection finds it: no metadata but the
            # note, no embedding function; the source's space (see _frameworks).
            metadata = self._framework.note(schema)
            self._written[schema.name] = (schema, v.metric)
        else:
            metadata = {SCHEMA_KEY: schema.to_json()}
        # The source's embedding function, for the application's query texts (not under a
        # framework's layout: the framework passes its own when it opens the collection).
        function = carried(schema) if self._framework is None else None
        configuration = {"hnsw": hnsw, **({"embedding_function": function} if function else {})}
        self._handles.pop(schema.name, None)
        with registry_kept(function):
            self._handles[schema.name] = self.client.create_collection(
                schema.name,
                embedding_function=None,
                configuration=configuration,  # type: ignore[arg-type]
                metadata=metadata,
            )
        self._schemas[schema.name] = schema

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        # Chroma has no id-range scan; offsets walk a stable internal order.
        return offset_partitions(self.count(name), n)

    def _to_batch(self, got: dict[str, Any], schema: CollectionSchema, col: Any) -> pa.RecordBatch:
        ids: list[Any] = got["ids"]
        if schema.id_type is IdType.INT:
            ids = [int(i) for i in ids]
        dim = schema.vector.dim
        emb = np.asarray(got["embeddings"], dtype=np.float32).reshape(len(ids), dim)
        metas = _decode_metadatas(got["metadatas"], _is_ours(col))
        docs = got.get("documents")
        if self._framework is not None:
            texts = docs or [None] * len(ids)
            read = [self._framework.read(d, m) for d, m in zip(texts, metas, strict=True)]
            docs, metas = [d for d, _ in read], [m for _, m in read]
        docs = docs if schema.has_document else None
        field = schema.engine_settings.get(URIS_KEY, self.config.uri_field)
        metas = with_uris(col.name, ids, metas, got.get("uris"), field)
        # Chroma never returns a null it was not given: a None is a decoded explicit null.
        return build_batch(
            schema,
            ids,
            {schema.vector.name: emb},
            documents=docs,
            metadata=metas,
            explicit_nulls=True,
        )

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
        pinned: list[Any] = []  # the handle the first batch was read with

        def read(offset: int, limit: int) -> pa.RecordBatch:
            def get(col: Any) -> pa.RecordBatch:
                got = col.get(limit=limit, offset=offset, include=_INCLUDE)
                pinned[:] = [col]
                return self._to_batch(got, schema, col)

            # A scan stays on the collection it began on: if another client drops and
            # re-makes it meanwhile, the scan fails instead of reading on into new records.
            return get(pinned[0]) if pinned else self._on(name, get)

        yield from scan_offsets("Chroma", name, partition, resume, batch_rows, read)

    def _ids(self, ids: Sequence[Any]) -> list[str]:
        return [str(i) for i in ids]

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        wanted = self._ids(ids)
        return self._on(
            name,
            lambda col: self._to_batch(col.get(ids=wanted, include=_INCLUDE), schema, col),
        )

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        vectors = vectors_to_numpy(batch.column(schema.vector.name))
        ids = self._ids(batch.column("id").to_pylist())
        rows = metadata_rows(batch, schema)
        given = batch.column("document").to_pylist() if "document" in batch.schema.names else None
        self._on(name, lambda col: self._upsert(col, name, schema, ids, vectors, given, rows))

    def _upsert(
        self,
        col: Any,
        name: str,
        schema: CollectionSchema,
        ids: list[str],
        vectors: np.ndarray,
        docs: list[Any] | None,
        rows: list[dict[str, Any]],
    ) -> None:
        """``upsert`` into one handle (how values are stored depends on the collection)."""
        metas: list[dict[str, Any] | None]
        uris = split_uris(rows, schema.engine_settings.get(URIS_KEY))
        if self._framework is not None:
            written = self._written.get(name)
            served = written[1] if written else _space(col)[0]
            v = schema.vector
            self._framework.check_units(name, ids, vectors, v.metric, served, v.name)
            docs = docs or [None] * len(ids)
            out = [
                self._framework.write(name, rid, doc, meta)
                for rid, doc, meta in zip(ids, docs, rows, strict=True)
            ]
            docs, metas = [d for d, _ in out], [m for _, m in out]
        elif _is_ours(col):
            metas = [{k: _encode_value(v) for k, v in m.items()} or None for m in rows]
        else:
            metas = [self._foreign_metadata(name, rid, m) for rid, m in zip(ids, rows, strict=True)]
        with self._write_lock:
            # One atomic upsert: replacing by delete-then-add leaves a window in which the
            # record is absent to readers, which live cutover's reconcile and held-entry
            # resolution would read as a delete. Known gap: Chroma merges metadata keys on
            # upsert, so a key the new record lacks stays (docs/engines.md).
            col.upsert(ids=ids, embeddings=vectors, documents=docs, metadatas=metas, uris=uris)

    @staticmethod
    def _foreign_metadata(name: str, rid: str, meta: dict[str, Any]) -> dict[str, Any] | None:
        """Metadata for a collection another tool made: stored verbatim (it is read back
        verbatim), so a value Chroma cannot hold natively is refused, never encoded."""
        for key, value in meta.items():
            if not _native(value) and not isinstance(value, str):
                raise DataError(
                    f"Chroma cannot store {'a null' if value is None else repr(value)[:60]} "
                    "natively, and this collection was not made by vecmigrate, so an encoded "
                    "form would read back as text",
                    collection=name,
                    record_id=rid,
                    field=key,
                    hint="copy into a new collection (vecmigrate creates it and encodes such "
                    "values), or drop or cast the field with a mapping",
                )
        return meta or None

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        wanted = self._ids(ids)
        with self._write_lock:
            self._on(name, lambda col: col.delete(ids=wanted))

    def drop(self, name: str) -> None:
        if name in self.list_collections():
            self._delete_collection(name)
        self._handles.pop(name, None)
        self._schemas.pop(name, None)
        self._written.pop(name, None)

    def _delete_collection(self, name: str) -> None:
        """Delete the records, then the collection. Chroma (1.5.9) leaves the list-valued
        metadata of a deleted collection's records behind, and records of a collection
        made later that reuse their internal ids come back with those lists attached
        (another collection's ``tags`` on new records). Deleting records removes their
        list metadata properly."""
        col = self._collection(name, fresh=True)
        while ids := col.get(limit=5000, include=[])["ids"]:
            with self._write_lock:
                col.delete(ids=ids)
        self._handles.pop(name, None)
        self.client.delete_collection(name)

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
        queries = np.asarray(vectors, dtype=np.float32)
        got = self._on(
            name,
            lambda col: col.query(
                query_embeddings=queries,
                n_results=k,
                include=["distances"],
                where=where_filter(node, _is_ours(col)) if node else None,
            ),
        )
        ids = got["ids"]
        if schema.id_type is IdType.INT:
            ids = [[int(i) for i in row] for row in ids]
        return ids, [list(map(float, d)) for d in got["distances"] or []]

    def search_records(
        self,
        name: str,
        vectors: np.ndarray,
        k: int,
        *,
        filter: Filter | None = None,
        schema: CollectionSchema | None = None,
    ) -> tuple[list[list[Any]], list[list[float]], pa.RecordBatch]:
        # One query that includes the records: Chroma returns them with the hits.
        stored = self._schema(name)
        layout = schema or stored
        node = self._filter(stored, filter)
        queries = np.asarray(vectors, dtype=np.float32)

        def run(col: Any) -> tuple[dict[str, Any], pa.RecordBatch]:
            got = col.query(
                query_embeddings=queries,
                n_results=k,
                include=["distances", *_INCLUDE],
                where=where_filter(node, _is_ours(col)) if node else None,
            )
            flat: dict[str, list[Any]] = {key: [] for key in ("ids", *_INCLUDE)}
            seen: set[str] = set()
            for q, row in enumerate(got["ids"]):
                for j, rid in enumerate(row):
                    if rid not in seen:
                        seen.add(rid)
                        flat["ids"].append(rid)
                        for key in _INCLUDE:
                            flat[key].append(got[key][q][j] if got.get(key) is not None else None)
            return got, self._to_batch(flat, layout, col)

        got, batch = self._on(name, run)
        ids = got["ids"]
        if stored.id_type is IdType.INT:
            ids = [[int(i) for i in row] for row in ids]
        return ids, [list(map(float, d)) for d in got["distances"] or []], batch
