"""Pinecone: ``pinecone://[INDEX]?api_key=env:NAME[&namespace=NS][&host=URL]``.

Collections are indexes, and Pinecone's namespaces are the model's namespaces: every
namespace is scanned and each row is written to its ``namespace`` (``""`` is the default
namespace, which the API reports as ``__default__``). ``?namespace=NS`` narrows the
connector to one namespace, seen as a collection without namespaces. ``?host=`` points at
another control plane (Pinecone Local, the tests' protocol server); ``?cloud=&region=``
choose where new serverless indexes go (default aws / us-east-1). The data mapping is in
``_records``, calls on one index handle in ``_client``.

What the mapping keeps, and what it cannot:

* Index names are 1-45 lowercase alphanumerics and ``-``: other collection names get a
  sanitised name plus an 8-hex hash; the schema (in the index tags) keeps the original.
* The vecmigrate schema lives in the index's tags (zlib + base64, up to 18 tags of 120
  characters); a schema too large for that is kept as records of a reserved namespace
  ``__vecmigrate_schema__`` (hidden from scans, counts and searches).
* Ids must be ASCII (1-512 characters): other ids are stored as ``~u:`` + percent-encoded
  UTF-8 (so are ids that start with ``~u:``), which is reversible; int ids are decimal text.
* Metadata is str / number / bool / list of str, without nulls, at most 40 KB per record.
  Numbers come back as floats: the stored schema turns int64 fields back into ints, ints
  beyond 2**53 and non-finite floats are refused (``DataError``). list<int64/float64>
  are stored as lists of decimal strings, json fields as JSON text; values that did not
  fit their field (``metadata_extra``) travel as one JSON string under
  ``_vecmigrate_extra``, documents under ``_vecmigrate_document`` (``?document_field=``
  names another key, e.g. ``text``, for indexes written by other tools).
* Indexes not written by vecmigrate have no stored types: numbers are read as float64.
* Listing ids needs a serverless index: a pod-based index is scanned only from a list of
  ids the user supplies (``?ids_file=/path``, one ``ID`` or ``NAMESPACE<TAB>ID`` a line).

Bulk import (``_import``): with ``?import_uri=s3://BUCKET/PREFIX`` (any ``pyarrow.fs`` URI)
and ``&integration_id=ID`` (the storage integration Pinecone reads it with; none for a
public bucket), a copy into an index it created stages its batches as Parquet in
Pinecone's import layout under ``<import_uri>/<index>/<namespace>/`` and, at the end,
imports them when at least ``import_min_rows`` (default 1,000,000) were staged —
polling every ``import_poll`` s for up to ``import_timeout`` s — or upserts them when
fewer were. The staged files stay after an import (the record of what was imported);
upserted ones are deleted. ``write_import_layout`` writes the same files for an import
you start yourself.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.config import ConnectorConfig, Secret, reveal
from vecmigrate.connectors.partitions import balanced_groups
from vecmigrate.connectors.pinecone._client import (
    MAX_REQUEST_BYTES,
    fetch_raw,
    index_model,
    is_pod,
    list_ids,
    open_client,
    read_ids_file,
    read_schema_records,
    require_serverless,
    sample_metadata,
    translate_error,
    upsert_rows,
    write_schema_records,
)
from vecmigrate.connectors.pinecone._import import (
    DEFAULT_MIN_ROWS,
    ImportStage,
    encode_batch,
    import_table,
    run_import,
    table_records,
)
from vecmigrate.connectors.pinecone._import import (  # public: stage files yourself
    ImportLayout as ImportLayout,
)
from vecmigrate.connectors.pinecone._import import (
    write_import_layout as write_import_layout,
)
from vecmigrate.connectors.pinecone._records import (
    DOC_KEY,
    MAX_METADATA_BYTES,
    METRIC,
    SCHEMA_NAMESPACE,
    SCHEMA_TAG,
    check_creatable,
    collection_name,
    compile_filter,
    dense_field,
    described,
    from_pinecone_id,
    index_name,
    index_url,
    infer_schema,
    records_to_batch,
    schema_from_tags,
    schema_tags,
    to_pinecone_id,
)
from vecmigrate.errors import ConfigError, TransientError
from vecmigrate.filters import ALL_OPS, NAMESPACE_KEY, evaluate, namespace_scope
from vecmigrate.model import Capabilities, CollectionSchema, IdType, Metric, Partition, ResumeToken
from vecmigrate.records import table_to_batch
from vecmigrate.uri import ConnectionURI

DEFAULT_NAMESPACE = "__default__"
MAX_TOP_K = 10_000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PineconeConfig(ConnectorConfig):
    """API key, one namespace, the metadata field holding documents, a file of ids to
    read (serverless lists no ids otherwise), where new indexes go, a control-plane URL;
    bulk import: where to stage it, the storage integration Pinecone reads it with, the
    fewest rows worth an import, how long to wait for it and how often to ask."""

    api_key: Secret | None = None
    namespace: str | None = None
    document_field: str | None = None
    ids_file: str | None = None
    cloud: str = "aws"
    region: str = "us-east-1"
    host: str | None = None
    import_uri: str | None = None
    integration_id: str | None = None
    import_min_rows: int = DEFAULT_MIN_ROWS
    import_timeout: float = 12 * 3600.0
    import_poll: float = 10.0


class PineconeConnector(Connector):
    Config = PineconeConfig
    config: PineconeConfig

    """Pinecone indexes (serverless; pod-based readable by id only) over the official client."""

    schemes = ("pinecone",)
    capabilities = Capabilities(
        id_types=frozenset(IdType),
        metrics=frozenset(Metric),
        documents=True,
        namespaces=True,
        stores_null_metadata=False,
        filter_ops=ALL_OPS | {NAMESPACE_KEY},
        max_batch_rows=1000,
        max_batch_bytes=MAX_REQUEST_BYTES,
        max_metadata_bytes=MAX_METADATA_BYTES,
        index_kinds=frozenset({"auto"}),
    )

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        key = reveal(self.config.api_key) or os.environ.get("PINECONE_API_KEY")
        if not key:
            raise ConfigError(
                "Pinecone needs an API key",
                hint="add ?api_key=env:NAME to the URI, or set PINECONE_API_KEY",
            )
        self.scope = uri.host or (uri.path.strip("/") or None)
        self.namespace = self.config.namespace
        self.document_field = self.config.document_field
        self.ids_file = self.config.ids_file
        self.cloud = self.config.cloud
        self.region = self.config.region
        self.control_plane = self.config.host or None
        self._key = key
        self._handles: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._client: Any = None
        self._client_lock = threading.Lock()
        # Per collection: the folder its writes are staged in for an import (None: they
        # are upserted); read from the staging marker on first use, so a resumed job or
        # another process of the same job stages too.
        self._stages: dict[str, ImportStage | None] = {}
        self._stage_lock = threading.Lock()

    translate_error = staticmethod(translate_error)

    @property
    def client(self) -> Any:
        """The control-plane client, made on first use (making one sends no request)."""
        with self._client_lock:
            if self._client is None:
                self._client = open_client(self._key, self.control_plane)
            return self._client

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _index(self, name: str) -> Any:
        iname = index_name(name)
        with self._lock:
            if iname not in self._handles:
                model = self._model(name)
                if model is None or not model.host:
                    raise ConfigError(f"{self.uri} has no ready index {iname!r}")
                self._handles[iname] = self._call(
                    f"opening index {iname!r}",
                    self.client.index,
                    host=index_url(str(model.host), self.control_plane),
                )
            return self._handles[iname]

    def _model(self, name: str) -> Any | None:
        return self._call(f"describing index {index_name(name)!r}", index_model, self.client, name)

    # -- discovery ---------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        models = self._call("listing indexes", lambda: list(self.client.indexes.list()))
        scope = None if self.scope is None else index_name(self.scope)
        return sorted(collection_name(m) for m in models if scope is None or m.name == scope)

    def _namespaces(self, name: str) -> dict[str, int]:
        """User namespaces of an index and their record counts (default namespace: "")."""
        stats = self._call(f"stats of {name!r}", self._index(name).describe_index_stats)
        found = {
            ("" if ns in (DEFAULT_NAMESPACE, "") else ns): int(s.vector_count)
            for ns, s in stats.namespaces.items()
            if ns != SCHEMA_NAMESPACE and s.vector_count
        }
        if self.namespace is not None:
            return {self.namespace: found.get(self.namespace, 0)}
        return found

    def describe(self, name: str) -> CollectionSchema:
        model = self._model(name)
        if model is None:
            raise ConfigError(f"{self.uri} has no index {index_name(name)!r} (collection {name!r})")
        dim, metric = dense_field(model)
        stored = schema_from_tags(model.tags or {})
        if stored is None and (model.tags or {}).get(SCHEMA_TAG) == f"namespace:{SCHEMA_NAMESPACE}":
            stored = read_schema_records(self._index(name), name)
        namespaces = self._namespaces(name)
        serverless = not is_pod(model)
        if stored is None:
            rows = sample_metadata(self._index(name), namespaces, serverless, dim)
            stored = infer_schema(name, dim, metric, rows, self.document_field)
        schema = described(name, model, stored, namespaces, serverless, self.namespace)
        self._schemas[name] = schema
        return schema

    def _doc_key(self, schema: CollectionSchema) -> str:
        return str(schema.engine_settings.get("document_key") or self.document_field or DOC_KEY)

    def count(self, name: str, filter: Filter | None = None) -> int:
        schema = self._schema(name)
        namespaces = self._namespaces(name)
        allowed, node = namespace_scope(self._filter(schema, filter), list(namespaces))
        if node is None:
            return sum(namespaces[ns] for ns in allowed if ns is not None)
        total = 0
        probe = [1.0] + [0.0] * (schema.vector.dim - 1)
        for ns in allowed:
            # A filtered query returns every match up to top_k (Pinecone documents this);
            # at the cap, count exactly by scanning the namespace instead.
            got = (
                self._index(name)
                .query(vector=probe, top_k=MAX_TOP_K, namespace=ns, filter=compile_filter(node))
                .matches
            )
            if len(got) < MAX_TOP_K:
                total += len(got)
                continue
            part = Partition(id="count", spec={"namespaces": [ns]})
            for batch, _ in self.scan(name, part, schema=schema):
                total += int(evaluate(node, batch).sum())
        return total

    # -- reading -----------------------------------------------------------------------------
    def _require_serverless(self, name: str) -> None:
        require_serverless(self._model(name))

    def partitions(self, name: str, n: int) -> list[Partition]:
        if self.ids_file:
            return [Partition(id="ids-file", spec={"ids_file": self.ids_file})]
        self._require_serverless(name)
        counts = self._namespaces(name)
        return [
            Partition(
                id=f"namespaces-{i}",
                spec={"namespaces": sorted(g)},
                estimated_rows=sum(counts[ns] for ns in g),
            )
            for i, g in enumerate(balanced_groups(list(counts), counts.__getitem__, n))
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
        if "ids_file" in partition.spec:
            yield from self._scan_ids_file(
                name, partition.spec["ids_file"], resume, schema, batch_rows
            )
            return
        self._require_serverless(name)
        spaces: list[str] = partition.spec["namespaces"]
        state = json.loads(resume) if resume else {"ns": spaces[0] if spaces else None}
        if state["ns"] is None:
            return
        i, token = spaces.index(state["ns"]), state.get("token")
        index = self._index(name)
        while i < len(spaces):
            ns = spaces[i]
            ids, token = list_ids(index, ns, token, batch_rows)
            if token is None:
                i += 1
            nxt = {"ns": spaces[i] if i < len(spaces) else None, "token": token}
            if ids:
                recs = self._fetch_raw(name, ns, ids)
                yield (
                    self._to_batch(schema, ns, [recs[p] for p in ids if p in recs]),
                    json.dumps(nxt),
                )

    def _scan_ids_file(
        self, name: str, path: str, resume: str | None, schema: CollectionSchema, rows: int
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        """Fetch the records a user-supplied id list names (ids it names that the index
        lacks are absent, as with ``fetch``); resumes after the last line done."""
        start = json.loads(resume)["line"] if resume else 0
        for by_ns, line in read_ids_file(path, start, rows, self.namespace):
            parts = []
            for ns, pids in by_ns.items():
                recs = self._fetch_raw(name, ns, pids)
                parts.append(self._to_batch(schema, ns, [recs[p] for p in pids if p in recs]))
            table = pa.Table.from_batches(parts, schema=schema.arrow_schema())
            yield table_to_batch(table), json.dumps({"line": line})

    def _fetch_raw(self, name: str, ns: str, pids: Sequence[str]) -> dict[str, Any]:
        return fetch_raw(self._index(name), ns, pids)

    def _to_batch(self, schema: CollectionSchema, ns: str, recs: list[Any]) -> pa.RecordBatch:
        return records_to_batch(schema, ns, recs, self._doc_key(schema))

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        pids = list(dict.fromkeys(to_pinecone_id(i) for i in ids))
        batches = []
        for ns in self._namespaces(name) or {"": 0}:
            recs = self._fetch_raw(name, ns, pids) if pids else {}
            batches.append(self._to_batch(schema, ns, [recs[p] for p in pids if p in recs]))
        return table_to_batch(pa.Table.from_batches(batches, schema=schema.arrow_schema()))

    # -- writing -----------------------------------------------------------------------------
    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        check_creatable(schema, self.scope, self.namespace, self._doc_key(schema))
        exists = self._model(schema.name) is not None
        what = f"Pinecone index {index_name(schema.name)!r}"
        if self._keep_existing(schema.name, exists, if_exists, what):
            return
        if exists:
            self.drop(schema.name)
        stored = schema.replace(
            engine_settings={**schema.engine_settings, "document_key": self._doc_key(schema)}
        )
        tags = schema_tags(stored)
        iname, v = index_name(schema.name), schema.vector
        self._call(
            f"creating index {iname!r}",
            self.client.indexes.create,
            name=iname,
            schema={"fields": {"_values": {
                "type": "dense_vector", "dimension": v.dim, "metric": METRIC[v.metric]}}},
            deployment={"deployment_type": "managed", "cloud": self.cloud, "region": self.region},
            tags=tags or {SCHEMA_TAG: f"namespace:{SCHEMA_NAMESPACE}"},
            deletion_protection="disabled",
            timeout=300,
        )  # fmt: skip
        with self._lock:
            self._handles.pop(iname, None)
        if tags is None:
            write_schema_records(self._index(schema.name), stored)
        self.describe(schema.name)

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        enc = encode_batch(name, batch, schema, self._doc_key(schema), self.namespace)
        stage = self._stage(name)
        if stage is not None:
            for ns, rows in enc.groups.items():
                self._staging(stage, stage.write, ns, import_table(enc, rows))
            return
        index = self._index(name)
        for ns, rows in enc.groups.items():
            upsert_rows(index, ns, enc.pids, enc.matrix, enc.metas, rows)

    # -- bulk import ---------------------------------------------------------------------------
    def _new_stage(self, name: str) -> ImportStage:
        assert self.config.import_uri is not None
        return ImportStage(f"{self.config.import_uri.rstrip('/')}/{index_name(name)}")

    def _stage(self, name: str) -> ImportStage | None:
        """Where writes to ``name`` are staged (None: no import in progress: upsert)."""
        if not self.config.import_uri:
            return None
        with self._stage_lock:
            if name not in self._stages:
                stage = self._new_stage(name)
                active = self._staging(stage, stage.marker) is not None
                self._stages[name] = stage if active else None
            return self._stages[name]

    @staticmethod
    def _staging(stage: ImportStage, fn: Any, *args: Any) -> Any:
        """Run a call on the staging folder; its storage failures are transient."""
        try:
            return fn(*args)
        except OSError as exc:  # pyarrow.fs raises OSError subclasses for storage errors
            raise TransientError(f"Pinecone import staging at {stage.uri!r}: {exc}") from None

    def begin_bulk_load(self, name: str) -> None:
        """With ``import_uri``: stage this load for a Pinecone import (see ``_import``)."""
        if not self.config.import_uri:
            return
        model = self._model(name)
        stage = self._new_stage(name)
        # Pinecone imports into serverless indexes only, and only into namespaces that do
        # not exist yet: a load into records already there is upserted (and what an
        # abandoned job staged for this index is removed, never imported).
        bulk = model is not None and not is_pod(model) and not any(self._namespaces(name).values())
        marker = {"index": index_name(name), "collection": name, "import_id": None}
        self._staging(stage, stage.reset, marker if bulk else None)
        if not bulk:
            log.info("Pinecone index %r is not empty or not serverless: upserting", name)
        with self._stage_lock:
            self._stages[name] = stage if bulk else None

    def finalize(self, name: str) -> None:
        """Import what was staged for ``name`` (or upsert it, under ``import_min_rows``)."""
        stage = self._stage(name)
        if stage is None:
            return
        self._call(f"bulk import into {index_name(name)!r}", self._finish_stage, name, stage)
        with self._stage_lock:
            self._stages[name] = None

    def _finish_stage(self, name: str, stage: ImportStage) -> None:
        layout = self._staging(stage, stage.layout)
        over = layout.over_limits()
        if layout.rows >= self.config.import_min_rows and over is None:
            run_import(
                self._index(name),
                stage,
                index_name(name),
                layout,
                integration_id=self.config.integration_id,
                timeout=self.config.import_timeout,
                poll=self.config.import_poll,
            )
            self._staging(stage, stage.clear_marker)
            log.info("Pinecone import of %s rows into %r completed", layout.rows, name)
            return
        if over is not None:
            log.warning("staged load of %r is over Pinecone's import limits (%s): upserting",
                        name, over)  # fmt: skip
        index = self._index(name)
        tables = stage.tables()  # one staged file in memory at a time
        while (item := self._staging(stage, next, tables, None)) is not None:
            pids, matrix, metas = table_records(item[1])
            upsert_rows(index, item[0], pids, matrix, metas, list(range(len(pids))))
        self._staging(stage, stage.reset, None)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        stage = self._stage(name)
        if stage is not None:  # the staged records would come back with the import
            raise ConfigError(
                f"a bulk import of {name!r} is staged at {stage.uri!r}: deleting from the "
                "index now would not delete those records",
                hint="finish the copy that staged it (--resume) first, or drop the index",
            )
        pids = list(dict.fromkeys(to_pinecone_id(i) for i in ids))
        index = self._index(name)
        for ns in self._namespaces(name):
            for start in range(0, len(pids), 1000):
                index.delete(ids=pids[start : start + 1000], namespace=ns)

    def drop(self, name: str) -> None:
        iname = index_name(name)
        with self._lock:
            handle = self._handles.pop(iname, None)
        if handle is not None:
            handle.close()
        self._schemas.pop(name, None)
        stage = self._stage(name)
        if stage is not None:  # a load staged for this index will never be imported
            self._staging(stage, stage.reset, None)
        with self._stage_lock:
            self._stages.pop(name, None)
        if self._model(name) is not None:
            self._call(f"deleting index {iname!r}", self.client.indexes.delete, iname, timeout=300)

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
        schema.vector_field(vector_field)
        if k > MAX_TOP_K:
            raise ConfigError(f"Pinecone returns at most {MAX_TOP_K} results per query, not {k}")
        index, every = self._index(name), list(self._namespaces(name)) or [""]
        spaces, node = namespace_scope(self._filter(schema, filter), [*every])
        flt = compile_filter(node) if node else None
        lower_first = schema.vector.metric is Metric.L2  # euclidean scores are distances
        ids: list[list[Any]] = []
        scores: list[list[float]] = []
        for q in np.asarray(vectors, dtype=np.float32):
            hits = []
            for ns in spaces:
                res = index.query(vector=q.tolist(), top_k=k, namespace=ns, filter=flt)
                hits += [(float(m.score), m.id) for m in res.matches]
            hits.sort(key=lambda h: h[0] if lower_first else -h[0])
            row: list[Any] = [from_pinecone_id(h[1]) for h in hits[:k]]
            ids.append([int(i) for i in row] if schema.id_type is IdType.INT else row)
            scores.append([h[0] for h in hits[:k]])
        return ids, scores
