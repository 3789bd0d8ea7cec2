"""Amazon S3 Vectors: ``s3vectors://BUCKET?region=REGION`` over boto3's ``s3vectors`` client.

Collections are the vector indexes of one vector bucket. Credentials come from
``?access_key_id=env:NAME&secret_access_key=env:NAME[&session_token=env:NAME]``, a
``?profile=``, or boto3's chain (environment, config files, instance role); a literal key
in the URI is refused. ``?endpoint_url=`` points the client elsewhere (the tests'
protocol double); ``?max_attempts=`` and ``?timeout=`` tune botocore's retries.

What the mapping keeps, and what it cannot (limits from the S3 Vectors user guide,
"Limitations and restrictions", and the service model; each is refused by name before
any call):

* One float32 vector per key, dimension 1-4,096, metric ``cosine`` or ``euclidean``
  (no dot product); NaN / infinity, and all-zero vectors in a cosine index, are refused.
* Index names are 3-63 lowercase letters, digits, ``-`` and ``.``: other collection
  names get a sanitised name plus an 8-hex hash; the stored schema keeps the original.
* The vecmigrate schema lives in the index's tags (zlib + base64, at most 40 tags of 256
  characters), read with ListTagsForResource; an index without it (written by another
  tool) is described from a sample of 100 vectors (numbers read as float64).
* Keys are any UTF-8 text of 1-1,024 characters, so string ids are kept as they are;
  int ids are decimal text.
* Metadata: at most 50 keys, 40 KB per vector, of which 2 KB filterable. The document
  (under ``_vecmigrate_document``, or ``?document_field=``), ``_vecmigrate_extra`` (values
  that did not fit their field, as JSON text) and json fields are declared
  non-filterable when vecmigrate creates the index; ``?non_filterable=a,b`` adds more
  (at most 10 per index; they cannot be changed later). Values are strings, numbers
  (float64: ints beyond 2**53 and non-finite floats are refused), booleans and
  non-empty lists; nulls are left out, empty lists travel in ``_vecmigrate_extra``.
* Filters: ``$eq $ne $gt $gte $lt $lte $in $nin $exists $and $or`` on filterable keys;
  ``$not`` is pushed down to the leaves, ``$ne``/``$nin`` guarded with ``$exists``.
  Searching with a filter on a non-filterable key is refused; ``count`` with a filter
  evaluates it exactly on the listed metadata (S3 Vectors has no count).
* Requests: 500 vectors per PutVectors / DeleteVectors and under 20 MiB, 100 keys per
  GetVectors, 1,000 per ListVectors page, ``topK`` at most 100, up to 16 ListVectors
  segments (the scan partitions).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.config import ConnectorConfig, Secret, reveal
from vecmigrate.connectors.s3vectors._client import (
    delete_vectors,
    get_index,
    get_vectors,
    index_tags,
    iter_keys,
    list_index_names,
    list_page,
    open_client,
    put_vectors,
    translate_error,
)
from vecmigrate.connectors.s3vectors._records import (
    DOC_KEY,
    MAX_LIST_PAGE,
    MAX_METADATA_BYTES,
    MAX_PUT_VECTORS,
    MAX_REQUEST_BYTES,
    MAX_SEGMENTS,
    MAX_TOP_K,
    METRIC,
    check_bucket,
    check_creatable,
    check_keys,
    check_vectors,
    compile_filter,
    described,
    encode_metadata,
    from_key,
    index_metric,
    index_name,
    infer_schema,
    may_be_renamed,
    non_filterable_keys,
    records_to_batch,
    schema_from_tags,
    schema_tags,
    to_key,
)
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import ALL_OPS, evaluate, fields
from vecmigrate.model import Capabilities, CollectionSchema, IdType, Partition, ResumeToken
from vecmigrate.records import table_to_batch, vectors_to_numpy
from vecmigrate.uri import ConnectionURI

__all__ = ["S3VectorsConfig", "S3VectorsConnector"]


@dataclass(frozen=True)
class S3VectorsConfig(ConnectorConfig):
    """Region, credentials (references only) or a profile, the endpoint, the metadata key
    holding documents, extra non-filterable keys for new indexes, retries and timeout."""

    region: str | None = None
    profile: str | None = None
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    endpoint_url: str | None = None
    document_field: str | None = None
    non_filterable: str | None = None
    max_attempts: int = 3
    timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in ("access_key_id", "secret_access_key", "session_token"):
            secret = getattr(self, name)
            if secret is not None and not secret.ref.startswith(("env:", "file:")):
                raise ConfigError(
                    f"parameter {name!r} must reference a secret, not contain one",
                    hint=f"use ?{name}=env:NAME or ?{name}=file:/path",
                )
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ConfigError(
                "s3vectors:// takes access_key_id and secret_access_key together",
                hint="or neither, to use ?profile= or boto3's credential chain",
            )
        if not 1 <= self.max_attempts <= 20:
            raise ConfigError("s3vectors:// parameter max_attempts must be 1-20")
        if not self.timeout > 0:
            raise ConfigError("s3vectors:// parameter timeout must be positive")


class S3VectorsConnector(Connector):
    """The vector indexes of one S3 vector bucket, over boto3's ``s3vectors`` client."""

    Config = S3VectorsConfig
    config: S3VectorsConfig
    schemes = ("s3vectors",)
    storage = "service"
    capabilities = Capabilities(
        id_types=frozenset(IdType),
        metrics=frozenset(METRIC),
        documents=True,
        stores_null_metadata=False,
        filter_ops=ALL_OPS,
        max_batch_rows=MAX_PUT_VECTORS,
        max_batch_bytes=MAX_REQUEST_BYTES,
        max_metadata_bytes=MAX_METADATA_BYTES,
        index_kinds=frozenset({"auto"}),
    )

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        if uri.path.strip("/"):
            raise ConfigError(
                f"s3vectors:// names a vector bucket, not a path ({uri.path!r})",
                hint="write s3vectors://BUCKET?region=REGION; collections are its indexes",
            )
        self.bucket = check_bucket(uri.host)
        self.document_field = self.config.document_field
        requested = self.config.non_filterable or ""
        self.non_filterable = [k.strip() for k in requested.split(",") if k.strip()]
        self._client: Any = None
        self._client_lock = threading.Lock()

    translate_error = staticmethod(translate_error)

    @property
    def client(self) -> Any:
        """The boto3 client, made on first use (making one sends no request)."""
        with self._client_lock:
            if self._client is None:
                c = self.config
                self._client = self._call(
                    "opening the s3vectors client",
                    open_client,
                    region=c.region,
                    profile=c.profile,
                    access_key_id=reveal(c.access_key_id),
                    secret_access_key=reveal(c.secret_access_key),
                    session_token=reveal(c.session_token),
                    endpoint_url=c.endpoint_url,
                    max_attempts=c.max_attempts,
                    timeout=c.timeout,
                )
            return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _index(self, name: str) -> dict[str, Any] | None:
        iname = index_name(name)
        return self._call(f"describing index {iname!r}", get_index, self.client, self.bucket, iname)

    def _stored_schema(self, index: dict[str, Any]) -> CollectionSchema | None:
        tags = self._call(
            f"reading the tags of index {index['indexName']!r}",
            index_tags,
            self.client,
            index["indexArn"],
        )
        return schema_from_tags(tags or {})

    # -- discovery ---------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        names = list_index_names(self.client, self.bucket)
        out = []
        for iname in names:
            name = iname
            if may_be_renamed(iname):
                index = get_index(self.client, self.bucket, iname)
                try:
                    stored = self._stored_schema(index) if index else None
                except ConfigError:
                    stored = None
                if stored is not None and index_name(stored.name) == iname:
                    name = stored.name
            out.append(name)
        return sorted(out)

    def describe(self, name: str) -> CollectionSchema:
        index = self._index(name)
        if index is None:
            raise ConfigError(f"{self.uri} has no index {index_name(name)!r} (collection {name!r})")
        stored = self._stored_schema(index)
        if stored is None:
            dim, metric = int(index["dimension"]), index_metric(index)
            items, _ = list_page(
                self.client, self.bucket, index["indexName"], segment=None, token=None,
                limit=100, data=False, metadata=True,
            )  # fmt: skip
            rows = [dict(i.get("metadata") or {}) for i in items]
            doc = self.document_field or (DOC_KEY if any(DOC_KEY in r for r in rows) else None)
            stored = infer_schema(name, dim, metric, rows, doc)
        schema = described(name, self.bucket, index, stored)
        self._schemas[name] = schema
        return schema

    def _doc_key(self, schema: CollectionSchema) -> str:
        return str(schema.engine_settings.get("document_key") or self.document_field or DOC_KEY)

    def _hidden(self, schema: CollectionSchema) -> list[str]:
        return list(schema.engine_settings.get("non_filterable") or [])

    def count(self, name: str, filter: Filter | None = None) -> int:
        schema = self._schema(name)
        node = self._filter(schema, filter)
        iname = index_name(name)
        if node is None:
            return sum(len(page) for page in iter_keys(self.client, self.bucket, iname))
        # S3 Vectors counts nothing and returns at most 100 query results: list the
        # metadata and evaluate the filter exactly.
        total, token = 0, None
        while True:
            items, token = list_page(
                self.client, self.bucket, iname, segment=None, token=token,
                limit=MAX_LIST_PAGE, data=False, metadata=True,
            )  # fmt: skip
            if items:
                batch = records_to_batch(schema, items, self._doc_key(schema), data=False)
                total += int(evaluate(node, batch).sum())
            if token is None:
                return total

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        if self._index(name) is None:
            raise ConfigError(f"{self.uri} has no index {index_name(name)!r} (collection {name!r})")
        count = max(1, min(n, MAX_SEGMENTS))
        return [
            Partition(id=f"segment-{i}-of-{count}", spec={"segment": i, "segments": count})
            for i in range(count)
        ]

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
        state = json.loads(resume) if resume else {}
        if state.get("done"):
            return
        segment = (int(partition.spec["segment"]), int(partition.spec["segments"]))
        token: str | None = state.get("token")
        iname, doc_key = index_name(name), self._doc_key(schema)
        while True:
            items, token = list_page(
                self.client, self.bucket, iname, segment=segment, token=token,
                limit=batch_rows, data=True, metadata=True,
            )  # fmt: skip
            nxt = json.dumps({"token": token} if token else {"done": True})
            if items:
                yield records_to_batch(schema, items, doc_key), nxt
            if token is None:
                return

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        keys = list(dict.fromkeys(to_key(i) for i in ids))
        items = get_vectors(self.client, self.bucket, index_name(name), keys) if keys else []
        batch = records_to_batch(schema, items, self._doc_key(schema))
        return table_to_batch(pa.Table.from_batches([batch], schema=schema.arrow_schema()))

    # -- writing -----------------------------------------------------------------------------
    def check_schema(self, schema: CollectionSchema) -> None:
        super().check_schema(schema)
        check_creatable(schema, self._doc_key(schema))
        non_filterable_keys(schema, self._doc_key(schema), self.non_filterable)
        schema_tags(schema)

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        doc_key = self._doc_key(schema)
        hidden = non_filterable_keys(schema, doc_key, self.non_filterable)
        iname = index_name(schema.name)
        exists = self._index(schema.name) is not None
        what = f"S3 Vectors index {iname!r} in bucket {self.bucket!r}"
        if self._keep_existing(schema.name, exists, if_exists, what):
            return
        if exists:
            self.drop(schema.name)
        stored = schema.replace(
            engine_settings={
                **schema.engine_settings,
                "document_key": doc_key,
                "non_filterable": sorted(hidden),
            }
        )
        v = schema.vector
        self._call(
            f"creating index {iname!r}",
            self.client.create_index,
            vectorBucketName=self.bucket,
            indexName=iname,
            dataType="float32",
            dimension=v.dim,
            distanceMetric=METRIC[v.metric],
            metadataConfiguration={"nonFilterableMetadataKeys": hidden},
            tags=schema_tags(stored),
        )
        self.describe(schema.name)

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        ids = batch.column("id").to_pylist()
        keys = [to_key(i) for i in ids]
        check_keys(name, ids, keys)
        matrix = vectors_to_numpy(batch.column(schema.vector.name))
        if matrix.shape[1] != schema.vector.dim:
            raise DataError(
                f"vectors have {matrix.shape[1]} dimensions, the index {schema.vector.dim}",
                collection=name, field=schema.vector.name,
            )  # fmt: skip
        check_vectors(name, ids, matrix, schema.vector.name, schema.vector.metric)
        metas = encode_metadata(
            batch, schema, self._doc_key(schema), self._hidden(schema), name, ids
        )
        put_vectors(self.client, self.bucket, index_name(name), keys, matrix, metas)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        keys = list(dict.fromkeys(to_key(i) for i in ids))
        delete_vectors(self.client, self.bucket, index_name(name), keys)

    def drop(self, name: str) -> None:
        self._schemas.pop(name, None)
        iname = index_name(name)
        if self._index(name) is not None:
            self._call(
                f"deleting index {iname!r}",
                self.client.delete_index,
                vectorBucketName=self.bucket,
                indexName=iname,
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
        if not 1 <= k <= MAX_TOP_K:
            raise ConfigError(f"S3 Vectors returns 1-{MAX_TOP_K} results per query, not {k}")
        schema = self._schema(name)
        v = schema.vector_field(vector_field)
        node = self._filter(schema, filter)
        flt = None
        if node is not None:
            hidden = sorted(fields(node) & set(self._hidden(schema)))
            if hidden:
                raise ConfigError(
                    f"S3 Vectors index {index_name(name)!r} cannot filter on non-filterable "
                    f"metadata key(s) {hidden}",
                    hint="non-filterable keys are fixed when the index is created "
                    "(?non_filterable=); count() can still evaluate such a filter",
                )
            flt = compile_filter(node)
        queries = np.asarray(vectors, dtype=np.float32).reshape(-1, v.dim)
        if not np.isfinite(queries).all():
            raise DataError("query vectors must be finite", collection=name, field=v.name)
        iname = index_name(name)
        ids: list[list[Any]] = []
        scores: list[list[float]] = []
        for q in queries:
            kwargs: dict[str, Any] = {
                "vectorBucketName": self.bucket,
                "indexName": iname,
                "topK": k,
                "queryVector": {"float32": q.tolist()},
                "returnDistance": True,
            }
            if flt is not None:
                kwargs["filter"] = flt
            hits = self.client.query_vectors(**kwargs)["vectors"]
            ids.append([from_key(h["key"], schema.id_type) for h in hits])
            scores.append([float(h.get("distance", np.nan)) for h in hits])
        return ids, scores
