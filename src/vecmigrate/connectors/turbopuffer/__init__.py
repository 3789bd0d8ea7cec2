"""turbopuffer: ``turbopuffer://api?region=gcp-us-central1&api_key=env:TURBOPUFFER_API_KEY``
over the official ``turbopuffer`` client (3.x).

Collections are the namespaces of one organisation and region (``?prefix=`` lists only
the namespaces starting with it). The API key is a reference (``env:NAME`` /
``file:PATH``; without one, the client's ``TURBOPUFFER_API_KEY``) and is never shown.
``?base_url=`` points the client elsewhere (the tests' protocol double) instead of
``https://{region}.turbopuffer.com``; ``?timeout=`` and ``?max_retries=`` tune the client.

What the mapping keeps, and what it cannot (limits from turbopuffer's "Limits", "Write"
and "Query" documentation; each is refused by name before any call):

* One float32 vector per document, under the attribute ``vector`` (``[N]f32``, dimension
  1-10,752), metric ``cosine_distance`` or ``euclidean_squared`` (no dot product), read
  back from the namespace schema's ``vector.ann.distance_metric``; NaN / infinity are
  refused. Scores are turbopuffer's distances (lower is closer).
* Ids: strings of 1-64 bytes, unsigned 64-bit ints, or UUIDs (the namespace's ``id``
  type); an id turbopuffer cannot hold is a DataError naming it.
* Metadata attributes: string, int, float, bool and their arrays; ``json`` fields are
  refused (map them to strings). Nulls are not stored (turbopuffer has no null values),
  arrays holding nulls travel in ``_vecmigrate_extra`` (JSON text, not filterable), as do
  values that did not fit their field. The document is the non-filterable string
  attribute ``_vecmigrate_document`` (or ``?document_field=``). At most 256 attributes of
  names up to 128 bytes, 8 MiB per value and 64 MiB per document.
* ``create``: turbopuffer creates a namespace on its first write; vecmigrate sends a
  write with ``create_namespace: true`` and the full attribute schema (id type, vector
  type and ANN metric, every metadata type), so the namespace exists, empty and typed,
  before any record. ``if_exists="fail"`` refuses an existing namespace, ``"reuse"`` keeps
  it, ``"replace"`` deletes it and creates it again — after the schema was checked, and
  the copy pipeline asks for confirmation (``--yes``) before replacing a non-empty one.
  Upserts send ``create_namespace: false``, so writing to a dropped namespace fails
  instead of silently making an untyped one.
* Writes are ``upsert_columns`` (columnar, vectors base64-encoded float32) split under
  64 MiB per request (the documented request limit is 512 MB, 256 MB before); deletes
  1,000 ids a request.
* Reading: pages of at most 1,200 documents (``top_k``'s maximum) ordered by id, each page
  after the last id seen, which is the resume token; partitions are id ranges cut at
  offsets of that order. ``count`` is an exact ``Count`` aggregation.
* Filters: ``$eq $ne $in $nin $gt $gte $lt $lte $exists $and $or $not`` as turbopuffer
  filters (``Eq NotEq In NotIn Gt Gte Lt Lte ContainsAny NotContainsAny And Or``);
  ``$ne``/``$nin`` get a ``NotEq null`` guard and ``$not`` is pushed down to the leaves.
  ``top_k`` is at most 1,200 (a larger ``k`` is refused before any call).
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

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.config import ConnectorConfig, Secret, reveal
from vecmigrate.connectors.partitions import key_range_partitions
from vecmigrate.connectors.turbopuffer._client import (
    count_rows,
    delete_ids,
    list_namespaces,
    namespace_attributes,
    open_client,
    page,
    translate_error,
    write_columns,
)
from vecmigrate.connectors.turbopuffer._records import (
    DOC_KEY,
    EXTRA_KEY,
    MAX_IDS_PER_REQUEST,
    MAX_PAGE_ROWS,
    MAX_TOP_K,
    METRIC,
    VECTOR,
    WRITE_CHUNK_BYTES,
    attribute_schema,
    batch_columns,
    check_creatable,
    check_namespace,
    compile_filter,
    described,
    rows_to_batch,
    to_tpuf_id,
)
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

__all__ = ["TurbopufferConfig", "TurbopufferConnector"]

# A namespace is split into id ranges only when each gets at least this many documents:
# every cut costs a query.
MIN_PARTITION_ROWS = 10_000


@dataclass(frozen=True)
class TurbopufferConfig(ConnectorConfig):
    """Region, API key (a reference), another API address, the attribute holding
    documents, a namespace prefix, timeout and the client's retries."""

    region: str | None = None
    api_key: Secret | None = None
    base_url: str | None = None
    document_field: str | None = None
    prefix: str | None = None
    timeout: float = 60.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        if self.region is None and self.base_url is None:
            raise ConfigError(
                "turbopuffer:// needs ?region= (e.g. gcp-us-central1) or ?base_url=",
                hint="write turbopuffer://api?region=REGION&api_key=env:TURBOPUFFER_API_KEY",
            )
        if self.region is not None and self.base_url is not None:
            raise ConfigError(
                "turbopuffer:// takes ?region= or ?base_url=, not both",
                hint="base_url replaces https://{region}.turbopuffer.com",
            )
        if not 0 <= self.max_retries <= 20:
            raise ConfigError("turbopuffer:// parameter max_retries must be 0-20")
        if not self.timeout > 0:
            raise ConfigError("turbopuffer:// parameter timeout must be positive")


class TurbopufferConnector(Connector):
    """The namespaces of one turbopuffer organisation and region, over the official client."""

    Config = TurbopufferConfig
    config: TurbopufferConfig
    schemes = ("turbopuffer",)
    storage = "service"
    capabilities = Capabilities(
        id_types=frozenset({IdType.STRING, IdType.INT, IdType.UUID}),
        metrics=frozenset(METRIC),
        documents=True,
        metadata_types=frozenset(METADATA_TYPES) - {"json"},
        stores_null_metadata=False,
        filter_ops=ALL_OPS,
        max_batch_rows=10_000,
        max_batch_bytes=WRITE_CHUNK_BYTES,
        index_kinds=frozenset({"auto"}),
    )

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        if uri.host not in (None, "", "api") or uri.path.strip("/"):
            raise ConfigError(
                f"turbopuffer:// names no host or path ({uri.host or ''}{uri.path})",
                hint="write turbopuffer://api?region=REGION; collections are namespaces",
            )
        self.document_field = self.config.document_field or DOC_KEY
        self._client: Any = None
        self._client_lock = threading.Lock()

    translate_error = staticmethod(translate_error)

    @property
    def client(self) -> Any:
        """The official client, made on first use (making one sends no request)."""
        with self._client_lock:
            if self._client is None:
                key = reveal(self.config.api_key) or os.environ.get("TURBOPUFFER_API_KEY")
                if not key:
                    raise ConfigError(
                        "turbopuffer needs an API key",
                        hint="add ?api_key=env:NAME to the URI, or set TURBOPUFFER_API_KEY",
                    )
                self._client = self._call(
                    "opening the turbopuffer client",
                    open_client,
                    api_key=key,
                    region=self.config.region,
                    base_url=self.config.base_url,
                    timeout=self.config.timeout,
                    max_retries=self.config.max_retries,
                )
            return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _attributes(self, name: str) -> dict[str, Any] | None:
        check_namespace(name)
        return self._call(
            f"reading the metadata of namespace {name!r}", namespace_attributes, self.client, name
        )

    def _missing(self, name: str) -> ConfigError:
        return ConfigError(
            f"turbopuffer has no namespace {name!r} ({self.uri})",
            hint="list them with vecmigrate inspect; check ?region= and ?prefix=",
        )

    # -- discovery ---------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        return sorted(list_namespaces(self.client, self.config.prefix))

    def describe(self, name: str) -> CollectionSchema:
        attrs = self._attributes(name)
        if attrs is None:
            raise self._missing(name)
        schema = described(name, attrs, self.document_field)
        schema = schema.replace(
            engine_settings={**schema.engine_settings, "attributes": sorted(attrs)}
        )
        self._schemas[name] = schema
        return schema

    def _filters(self, schema: CollectionSchema, filter: Filter | None) -> list[Any] | None:
        node = self._filter(schema, filter)
        return None if node is None else compile_filter(node)

    def count(self, name: str, filter: Filter | None = None) -> int:
        schema = self._schema(name)
        return count_rows(self.client, name, self._filters(schema, filter))

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        total = self.count(name)
        parts = max(1, min(n, total // MIN_PARTITION_ROWS))
        if parts == 1:
            return [Partition(id="all", spec={"after": None, "upto": None}, estimated_rows=total)]
        cuts: list[Any] = []
        for i in range(1, parts):
            rows = page(
                self.client, name, filters=None, limit=1, attributes=False,
                offset=total * i // parts - 1,
            )  # fmt: skip
            if rows and (not cuts or rows[0]["id"] != cuts[-1]):
                cuts.append(rows[0]["id"])
        return key_range_partitions(cuts, total)

    def _read_attributes(self, schema: CollectionSchema) -> list[str]:
        present = set(schema.engine_settings.get("attributes") or ())
        vector_key = str(schema.engine_settings.get("vector_attribute") or VECTOR)
        wanted = [vector_key, self.document_field, EXTRA_KEY, *(m.name for m in schema.metadata)]
        return [a for a in dict.fromkeys(wanted) if a in present]

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
        if "attributes" not in schema.engine_settings:
            schema = self._schema(name)
        state = json.loads(resume) if resume else {}
        if state.get("done"):
            return
        after = state.get("after", partition.spec.get("after"))
        upto = partition.spec.get("upto")
        limit = max(1, min(batch_rows, MAX_PAGE_ROWS))
        attributes = self._read_attributes(schema)
        while True:
            bounds = ([["id", "Gt", after]] if after is not None else []) + (
                [["id", "Lte", upto]] if upto is not None else []
            )
            filters = None if not bounds else bounds[0] if len(bounds) == 1 else ["And", bounds]
            rows = page(self.client, name, filters=filters, limit=limit, attributes=attributes)
            if not rows:
                return
            after = rows[-1]["id"]
            done = len(rows) < limit
            token = json.dumps({"done": True} if done else {"after": after})
            yield rows_to_batch(schema, rows, self.document_field), token
            if done:
                return

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        if "attributes" not in schema.engine_settings:
            schema = self._schema(name)
        keys = list(dict.fromkeys(self._ids(schema, name, ids)))
        rows: list[dict[str, Any]] = []
        attributes = self._read_attributes(schema)
        for start in range(0, len(keys), MAX_IDS_PER_REQUEST):
            chunk = keys[start : start + MAX_IDS_PER_REQUEST]
            rows += page(
                self.client, name, filters=["id", "In", chunk], limit=len(chunk),
                attributes=attributes,
            )  # fmt: skip
        batch = rows_to_batch(schema, rows, self.document_field)
        return table_to_batch(pa.Table.from_batches([batch], schema=schema.arrow_schema()))

    @staticmethod
    def _ids(schema: CollectionSchema, name: str, ids: Sequence[Any]) -> list[Any]:
        """Ids as turbopuffer holds them; one it cannot hold cannot be there (skipped)."""
        out = []
        for rid in ids:
            try:
                out.append(to_tpuf_id(rid, schema.id_type, name))
            except DataError:
                continue
        return out

    # -- writing -----------------------------------------------------------------------------
    def check_schema(self, schema: CollectionSchema) -> None:
        super().check_schema(schema)
        check_creatable(schema, self.document_field)

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        name = schema.name
        exists = self._attributes(name) is not None
        what = f"turbopuffer namespace {name!r}"
        if self._keep_existing(name, exists, if_exists, what):
            return
        if exists:
            self.drop(name)
        self._call(
            f"creating namespace {name!r}",
            self.client.namespace(name).write,
            create_namespace=True,
            schema=attribute_schema(schema, self.document_field),
            distance_metric=METRIC[schema.vector.metric],
        )
        self.describe(name)

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        ids, columns, sizes = batch_columns(batch, schema, self.document_field, name)
        if not ids:
            return
        present = set(schema.engine_settings.get("attributes") or ())
        unknown = sorted(set(columns) - present - {VECTOR, EXTRA_KEY})
        if unknown:
            raise ConfigError(
                f"turbopuffer namespace {name!r} has no attribute(s) {unknown} in its schema",
                hint="create the namespace with this schema (--if-exists replace), or map "
                "the fields away",
            )
        vector = schema.vector
        metric = METRIC.get(vector.metric) if vector.metric_known else None
        write_columns(
            self.client, name, ids, columns, sizes,
            distance_metric=metric, chunk_bytes=WRITE_CHUNK_BYTES,
        )  # fmt: skip

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        schema = self._schema(name)
        keys = list(dict.fromkeys(self._ids(schema, name, ids)))
        delete_ids(self.client, name, keys, MAX_IDS_PER_REQUEST)

    def drop(self, name: str) -> None:
        self._schemas.pop(name, None)
        if self._attributes(name) is not None:
            self._call(f"deleting namespace {name!r}", self.client.namespace(name).delete_all)

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
        if not 1 <= k <= MAX_TOP_K:
            raise ConfigError(f"turbopuffer returns 1-{MAX_TOP_K} results per query, not {k}")
        schema = self._schema(name)
        v = schema.vector_field(vector_field)
        filters = self._filters(schema, filter)
        queries = np.asarray(vectors, dtype=np.float32).reshape(-1, v.dim)
        if not np.isfinite(queries).all():
            raise DataError("query vectors must be finite", collection=name, field=v.name)
        vector_key = str(schema.engine_settings.get("vector_attribute") or VECTOR)
        ids: list[list[Any]] = []
        scores: list[list[float]] = []
        ns = self.client.namespace(name)
        for q in queries:
            kwargs: dict[str, Any] = {
                "rank_by": [vector_key, "ANN", q.tolist()],
                "top_k": k,
                "include_attributes": False,
            }
            if filters is not None:
                kwargs["filters"] = filters
            rows = ns.query(**kwargs).rows or []
            ids.append([schema_id(schema, r.id) for r in rows])
            scores.append([float(r["$dist"]) for r in rows])
        return ids, scores


def schema_id(schema: CollectionSchema, value: Any) -> Any:
    """A returned id in the schema's id type."""
    return int(value) if schema.id_type is IdType.INT else str(value)
