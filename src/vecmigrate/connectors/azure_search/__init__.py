"""Azure AI Search: ``azure-search://<service>.search.windows.net?api_key=env:AZURE_SEARCH_KEY``
over the official ``azure-search-documents`` client (12.x).

Collections are the service's indexes. The API key (an admin key: vecmigrate creates and
deletes indexes) is a reference (``env:NAME`` / ``file:PATH``; without one, the
``AZURE_SEARCH_KEY`` environment variable) and is never shown. ``?base_url=`` points the
clients elsewhere (the tests' protocol double) instead of ``https://<host>``;
``?api_version=``, ``?timeout=`` and ``?max_retries=`` tune the clients.

What the mapping keeps, and what it cannot (limits from Azure AI Search's "Service
limits", "Naming rules" and "Supported data types"; each is refused by name before any
call):

* One float32 vector per document, in the ``Collection(Edm.Single)`` field ``vector`` with
  2-4,096 dimensions and the vector search profile ``vecmigrate-profile`` -> an HNSW
  algorithm whose ``metric`` is ``cosine``, ``euclidean`` or ``dotProduct`` (HNSW ``m``,
  ``efConstruction``, ``efSearch`` from an ``hnsw`` index spec, else Azure's defaults
  4 / 400 / 500, written explicitly; a ``flat`` index spec makes an exhaustive-KNN
  algorithm instead). ``describe`` reads the metric and index spec from the vector field's
  profile and its HNSW or exhaustive-KNN algorithm. NaN / infinity are refused. Scores are
  Azure's ``@search.score`` (higher is closer).
* Ids: the key field ``id`` (``Edm.String``, filterable and sortable). Keys hold letters,
  digits, ``_ - =`` and do not start with ``_``: other string ids are stored as ``=`` +
  URL-safe base64 of their UTF-8 and decoded on reading. Int ids are stored as decimal
  keys; the index description records the id type.
* Metadata: string, int64, float64, bool and their collections, every field filterable;
  ``json`` fields are refused (map them to strings). Azure returns absent values as null,
  so nulls are not stored as values; collections holding nulls travel in
  ``vecmigrate_extra`` (JSON text, neither searchable nor filterable), as do values that did
  not fit their field. The document is the non-filterable ``vecmigrate_document``. Field
  names: a letter then letters, digits or ``_``, at most 128, not ``azureSearch...``; at
  most 1,000 fields. Index names are 2-128 lowercase letters, digits and single dashes: a
  collection named otherwise lives in the index of its name's lowercase letters and digits
  joined by dashes plus 8 hex digits of its SHA-256, and the index description
  (``vecmigrate {"collection": ..., "id_type": ...}``) keeps its name.
* ``create``: the whole index (fields, vector profile, HNSW algorithm) in one request.
  ``if_exists="fail"`` refuses an existing index, ``"reuse"`` keeps it, ``"replace"`` deletes
  and recreates it — after the schema was checked, and the copy pipeline asks for
  confirmation (``--yes``) before replacing a non-empty one.
* Writes: ``merge_or_upload`` batches of at most 1,000 documents and 15 MiB of JSON (the
  documented limits are 1,000 documents and 16 MB per request); every field is sent
  (null when absent), so a merge replaces the whole document. A document the service
  refuses is a DataError naming its id. Deletes: 1,000 keys a request.
* Reading: pages of at most 1,000 documents ordered by the key, each page filtered to keys
  after the last one seen (``$filter=id gt 'last'``), which is the resume token: ``$skip``
  is not used, since it stops at 100,000. One partition per index. ``count`` is the
  service's ``$count`` (with a filter: the ``@odata.count`` of a filtered search).
* Filters: ``$eq $ne $in $nin $gt $gte $lt $lte $exists $and $or $not`` as OData ``$filter``
  (``eq ne gt ge lt le``, ``any()`` on collections, ``null`` tests); ``$ne`` / ``$nin`` also
  require the field to be present and ``$not`` is pushed down to the leaves. Filtered
  vector queries use ``preFilter``. ``k`` is at most 1,000 (a larger ``k`` is refused
  before any call); ``?exhaustive=true`` makes queries exhaustive KNN.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.azure_search._client import (
    client_options,
    count_documents,
    create_index,
    delete_keys,
    get_documents,
    index_batch,
    index_definition_of,
    open_index_client,
    open_search_client,
    page,
    translate_error,
    vector_search,
)
from vecmigrate.connectors.azure_search._records import (
    DOC_FIELD,
    EXTRA_FIELD,
    KEY,
    MAX_BATCH_DOCS,
    MAX_K,
    MAX_SEARCH_IN_VALUES,
    MAX_TOP,
    METRIC,
    VECTOR,
    batch_documents,
    check_creatable,
    chunks,
    compile_filter,
    described,
    documents_to_batch,
    from_key,
    index_definition,
    index_name,
    may_be_renamed,
    odata_string,
    to_key,
)
from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.config import ConnectorConfig, Secret, reveal
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import ALL_OPS
from vecmigrate.model import (
    METADATA_TYPES,
    Capabilities,
    CollectionSchema,
    IdType,
    Partition,
    ResumeToken,
)
from vecmigrate.records import table_to_batch
from vecmigrate.uri import ConnectionURI

__all__ = ["AzureSearchConfig", "AzureSearchConnector"]


@dataclass(frozen=True)
class AzureSearchConfig(ConnectorConfig):
    """API key (a reference), another endpoint, the API version, exhaustive queries,
    timeout and the clients' retries."""

    api_key: Secret | None = None
    base_url: str | None = None
    api_version: str | None = None
    exhaustive: bool = False
    timeout: float = 60.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"azure-search:// parameter base_url must be an http(s) URL, not {self.base_url!r}"
            )
        if not 0 <= self.max_retries <= 20:
            raise ConfigError("azure-search:// parameter max_retries must be 0-20")
        if not self.timeout > 0:
            raise ConfigError("azure-search:// parameter timeout must be positive")


class AzureSearchConnector(Connector):
    """The indexes of one Azure AI Search service, over the official client."""

    Config = AzureSearchConfig
    config: AzureSearchConfig
    schemes = ("azure-search",)
    storage = "service"
    capabilities = Capabilities(
        id_types=frozenset({IdType.STRING, IdType.INT}),
        metrics=frozenset(METRIC),
        documents=True,
        metadata_types=frozenset(METADATA_TYPES) - {"json"},
        stores_null_metadata=False,
        filter_ops=ALL_OPS,
        max_batch_rows=MAX_BATCH_DOCS,
        max_batch_bytes=15 * 1024 * 1024,
        index_kinds=frozenset({"hnsw", "flat"}),
    )

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        if uri.path.strip("/"):
            raise ConfigError(
                f"azure-search:// names a service, not a path ({uri.path})",
                hint="write azure-search://SERVICE.search.windows.net; collections are indexes",
            )
        if not uri.host and self.config.base_url is None:
            raise ConfigError(
                "azure-search:// needs the service host (SERVICE.search.windows.net)",
                hint="write azure-search://SERVICE.search.windows.net?api_key=env:NAME",
            )
        self.endpoint = (self.config.base_url or f"https://{uri.host}").rstrip("/")
        self._index_client: Any = None
        self._search_clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    translate_error = staticmethod(translate_error)

    def _key(self) -> str:
        key = reveal(self.config.api_key) or os.environ.get("AZURE_SEARCH_KEY")
        if not key:
            raise ConfigError(
                "Azure AI Search needs an API key",
                hint="add ?api_key=env:NAME to the URI, or set AZURE_SEARCH_KEY",
            )
        return key

    def _options(self) -> dict[str, Any]:
        c = self.config
        return client_options(
            timeout=c.timeout, max_retries=c.max_retries, api_version=c.api_version
        )

    @property
    def index_client(self) -> Any:
        """The index-management client, made on first use (making one sends no request)."""
        with self._lock:
            if self._index_client is None:
                self._index_client = open_index_client(
                    self.endpoint, self._key(), **self._options()
                )
            return self._index_client

    def docs(self, name: str) -> Any:
        """The documents client of index ``name``, made on first use."""
        with self._lock:
            client = self._search_clients.get(name)
            if client is None:
                client = open_search_client(
                    self.endpoint, self._key(), index_name(name), **self._options()
                )
                self._search_clients[name] = client
            return client

    def close(self) -> None:
        with self._lock:
            clients = [self._index_client, *self._search_clients.values()]
            self._index_client, self._search_clients = None, {}
        for client in clients:
            if client is not None:
                client.close()

    def _definition(self, name: str) -> dict[str, Any] | None:
        iname = index_name(name)
        return self._call(
            f"reading the definition of index {iname!r}",
            index_definition_of,
            self.index_client,
            iname,
        )

    def _missing(self, name: str) -> ConfigError:
        return ConfigError(
            f"Azure AI Search has no index {index_name(name)!r} for collection {name!r} "
            f"({self.uri})",
            hint="list them with vecmigrate inspect; check the service host",
        )

    # -- discovery ---------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        out = []
        for iname in self.index_client.list_index_names():
            name = iname
            if may_be_renamed(iname):
                definition = index_definition_of(self.index_client, iname)
                if definition is not None:
                    name = described(definition).name
            out.append(name)
        return sorted(out)

    def describe(self, name: str) -> CollectionSchema:
        definition = self._definition(name)
        if definition is None:
            raise self._missing(name)
        schema = described(definition)
        self._schemas[name] = schema
        return schema

    def _filters(self, schema: CollectionSchema, filter: Filter | None) -> str | None:
        node = self._filter(schema, filter)
        return None if node is None else compile_filter(node)

    def count(self, name: str, filter: Filter | None = None) -> int:
        schema = self._schema(name)
        return count_documents(self.docs(name), self._filters(schema, filter))

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        # One id-ordered pass: cutting key ranges needs $skip, which stops at 100,000.
        return [Partition(id="all", spec={"after": None}, estimated_rows=self.count(name))]

    def _select(self, schema: CollectionSchema) -> list[str]:
        present = set(schema.engine_settings.get("fields") or ())
        key = str(schema.engine_settings.get("key_field") or KEY)
        vector_key = str(schema.engine_settings.get("vector_field") or VECTOR)
        wanted = [key, vector_key, DOC_FIELD, EXTRA_FIELD, *(m.name for m in schema.metadata)]
        return [f for f in dict.fromkeys(wanted) if f in present]

    def _described(self, name: str, schema: CollectionSchema | None) -> CollectionSchema:
        schema = schema or self._schema(name)
        return schema if "fields" in schema.engine_settings else self._schema(name)

    def scan(
        self,
        name: str,
        partition: Partition,
        resume: ResumeToken | None = None,
        *,
        schema: CollectionSchema | None = None,
        batch_rows: int = 1000,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        schema = self._described(name, schema)
        state = json.loads(resume) if resume else {}
        if state.get("done"):
            return
        after: str | None = state.get("after", partition.spec.get("after"))
        limit = max(1, min(batch_rows, MAX_TOP))
        key = str(schema.engine_settings.get("key_field") or KEY)
        settings = schema.engine_settings
        if not (settings.get("key_filterable", True) and settings.get("key_sortable", True)):
            raise ConfigError(
                f"Azure AI Search index {settings.get('index', name)!r}: its key field {key!r} "
                "is not filterable and sortable, so it cannot be read in key order",
                hint="vecmigrate pages by key ($skip stops at 100,000); rebuild the index with "
                "a filterable, sortable key, or export it with another tool",
            )
        select = self._select(schema)
        client = self.docs(name)
        while True:
            flt = None if after is None else f"{key} gt {odata_string(after)}"
            docs = page(client, filter=flt, limit=limit, select=select, key=key)
            if not docs:
                return
            after = str(docs[-1][key])
            done = len(docs) < limit
            token = json.dumps({"done": True} if done else {"after": after})
            yield documents_to_batch(schema, docs), token
            if done:
                return

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = self._described(name, schema)
        keys = list(dict.fromkeys(self._keys(schema, name, ids)))
        key = str(schema.engine_settings.get("key_field") or KEY)
        select = self._select(schema)
        docs: list[dict[str, Any]] = []
        if not schema.engine_settings.get("key_filterable", True):
            docs = get_documents(self.docs(name), keys, select)
            keys = []
        for start in range(0, len(keys), MAX_SEARCH_IN_VALUES):
            chunk = keys[start : start + MAX_SEARCH_IN_VALUES]
            # Keys hold no comma, so ',' delimits search.in's list unambiguously.
            flt = f"search.in({key}, {odata_string(','.join(chunk))}, ',')"
            docs += page(self.docs(name), filter=flt, limit=len(chunk), select=select, key=key)
        batch = documents_to_batch(schema, docs)
        return table_to_batch(pa.Table.from_batches([batch], schema=schema.arrow_schema()))

    @staticmethod
    def _keys(schema: CollectionSchema, name: str, ids: Sequence[Any]) -> list[str]:
        """Ids as document keys; one that cannot be a key cannot be there (skipped)."""
        out = []
        for rid in ids:
            try:
                out.append(to_key(rid, schema.id_type, name))
            except DataError:
                continue
        return out

    # -- writing -----------------------------------------------------------------------------
    def check_schema(self, schema: CollectionSchema) -> None:
        super().check_schema(schema)
        check_creatable(schema)

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        name = schema.name
        exists = self._definition(name) is not None
        what = f"Azure AI Search index {index_name(name)!r}"
        if self._keep_existing(name, exists, if_exists, what):
            return
        if exists:
            self.drop(name)
        self._call(
            f"creating index {name!r}", create_index, self.index_client, index_definition(schema)
        )
        self.describe(name)

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        docs, sizes = batch_documents(batch, schema, name)
        present = set(schema.engine_settings.get("fields") or ())
        raw_ids = batch.column("id").to_pylist()
        if EXTRA_FIELD not in present:  # an index vecmigrate did not make
            for i, d in enumerate(docs):
                if d.pop(EXTRA_FIELD, None) is not None:
                    raise DataError(
                        f"Azure AI Search index {schema.engine_settings.get('index', name)!r} "
                        f"has no {EXTRA_FIELD!r} field for the values that fit no field "
                        "(undeclared metadata, collections holding nulls)",
                        collection=name, record_id=raw_ids[i], field="metadata",
                        hint="map those fields away, or copy into an index vecmigrate creates",
                    )  # fmt: skip
        unknown = sorted({f for d in docs[:1] for f in d} - present)
        if unknown:
            raise ConfigError(
                f"Azure AI Search index {name!r} has no field(s) {unknown}",
                hint="create the index with this schema (--if-exists replace), or map the "
                "fields away",
            )
        key = str(schema.engine_settings.get("key_field") or KEY)
        by_key = {d[key]: raw_ids[i] for i, d in enumerate(docs)}
        client = self.docs(name)
        for start, end in chunks(sizes):
            failed = self._call(
                f"azure-search upsert {name!r} (indexing documents {start}-{end - 1})",
                index_batch,
                client,
                docs[start:end],
            )
            if failed:
                key, error = failed[0]
                raise DataError(
                    f"Azure AI Search refused the document ({error}); "
                    f"{len(failed)} of {end - start} in the batch were refused",
                    collection=name, record_id=by_key.get(key, key), field="id",
                )  # fmt: skip

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        schema = self._schema(name)
        keys = list(dict.fromkeys(self._keys(schema, name, ids)))
        key = str(schema.engine_settings.get("key_field") or KEY)
        delete_keys(self.docs(name), keys, MAX_BATCH_DOCS, key)

    def drop(self, name: str) -> None:
        self._schemas.pop(name, None)
        if self._definition(name) is not None:
            iname = index_name(name)
            self._call(f"deleting index {iname!r}", self.index_client.delete_index, iname)

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
        if not 1 <= k <= MAX_K:
            raise ConfigError(f"Azure AI Search returns 1-{MAX_K} results per query, not {k}")
        schema = self._schema(name)
        v = schema.vector_field(vector_field)
        flt = self._filters(schema, filter)
        queries = np.asarray(vectors, dtype=np.float32).reshape(-1, v.dim)
        if not np.isfinite(queries).all():
            raise DataError("query vectors must be finite", collection=name, field=v.name)
        key = str(schema.engine_settings.get("key_field") or KEY)
        field = str(schema.engine_settings.get("vector_field") or VECTOR)
        exhaustive = bool((params or {}).get("exhaustive", self.config.exhaustive))
        client = self.docs(name)
        ids: list[list[Any]] = []
        scores: list[list[float]] = []
        for q in queries:
            hits = vector_search(
                client, q.tolist(), k, field=field, filter=flt, exhaustive=exhaustive, key=key
            )
            ids.append([from_key(h, schema.id_type) for h, _ in hits])
            scores.append([s for _, s in hits])
        return ids, scores
