"""Pinecone: ``pinecone://[INDEX]?api_key=env:NAME[&namespace=NS][&host=URL]``.

Collections are indexes, and Pinecone's namespaces are the model's namespaces: every
namespace is scanned and each row is written to its ``namespace`` (``""`` is the default
namespace, which the API reports as ``__default__``). ``?namespace=NS`` narrows the
connector to one namespace, seen as a collection without namespaces. ``?host=`` points at
another control plane (Pinecone Local, the tests' protocol server); ``?cloud=&region=``
choose where new serverless indexes go (default aws / us-east-1).

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
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
from pinecone import Pinecone

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.pinecone_codec import (
    DOC_KEY,
    EXTRA_KEY,
    MAX_METADATA_BYTES,
    SCHEMA_TAG,
    compile_filter,
    decode_value,
    encode_metadata,
    from_pinecone_id,
    index_name,
    index_url,
    pop_extra,
    schema_from_tags,
    schema_tags,
    to_pinecone_id,
)
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError
from vecmigrate.filters import ALL_OPS, NAMESPACE_KEY, evaluate, namespace_scope
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
    infer_metadata_fields,
    table_to_batch,
    vectors_to_numpy,
)
from vecmigrate.uri import ConnectionURI

SCHEMA_NAMESPACE = "__vecmigrate_schema__"
DEFAULT_NAMESPACE = "__default__"
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_ID_LENGTH = 512
MAX_TOP_K = 10_000
_FLOAT_JSON_BYTES = 25  # longest JSON text of one float64 plus its comma
_METRIC = {Metric.COSINE: "cosine", Metric.DOT: "dotproduct", Metric.L2: "euclidean"}
_FROM_METRIC = {v: k for k, v in _METRIC.items()}


class PineconeConnector(Connector):
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
        key = uri.secret("api_key") or os.environ.get("PINECONE_API_KEY")
        if not key:
            raise ConfigError(
                "Pinecone needs an API key",
                hint="add ?api_key=env:NAME to the URI, or set PINECONE_API_KEY",
            )
        self.scope = uri.host or (uri.path.strip("/") or None)
        self.namespace = uri.params.get("namespace")
        self.document_field = uri.params.get("document_field")
        self.ids_file = uri.params.get("ids_file")
        self.cloud = uri.params.get("cloud", "aws")
        self.region = uri.params.get("region", "us-east-1")
        self.control_plane = uri.params.get("host") or None
        self.pc = Pinecone(api_key=key, host=self.control_plane, source_tag="vecmigrate")
        self._handles: dict[str, Any] = {}
        self._schemas: dict[str, CollectionSchema] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        self.pc.close()

    # -- calls and errors ----------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a client call: 408/429/5xx and connection failures are transient."""
        from pinecone.errors.exceptions import (
            ApiError,
            PineconeConnectionError,
            PineconeError,
            PineconeTimeoutError,
        )

        try:
            return fn(*args, **kwargs)
        except (PineconeConnectionError, PineconeTimeoutError) as exc:
            raise TransientError(f"{what}: {exc.message}") from None
        except ApiError as exc:
            status = exc.status_code
            msg = f"{what}: HTTP {status}: {exc.message}"
            if status in (408, 429) or (status or 0) >= 500:
                raise TransientError(msg) from None
            raise TerminalError(msg) from None
        except PineconeError as exc:  # client-side validation
            raise TerminalError(f"{what}: {exc.message}") from None

    def _index(self, name: str) -> Any:
        iname = index_name(name)
        with self._lock:
            if iname not in self._handles:
                model = self._model(name)
                if model is None or not model.host:
                    raise ConfigError(f"{self.uri} has no ready index {iname!r}")
                self._handles[iname] = self._call(
                    f"opening index {iname!r}",
                    self.pc.index,
                    host=index_url(str(model.host), self.control_plane),
                )
            return self._handles[iname]

    def _model(self, name: str) -> Any | None:
        from pinecone.errors.exceptions import NotFoundError

        def describe() -> Any | None:
            try:
                return self.pc.indexes.describe(index_name(name))
            except NotFoundError:
                return None

        return self._call(f"describing {index_name(name)!r}", describe)

    # -- discovery ---------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        models = self._call("listing indexes", lambda: list(self.pc.indexes.list()))
        names = []
        for m in models:
            try:
                stored = schema_from_tags(m.tags or {})
            except ConfigError:  # listed under its index name; describe says what is wrong
                stored = None
            name = stored.name if stored and index_name(stored.name) == m.name else m.name
            if self.scope is None or m.name == index_name(self.scope):
                names.append(name)
        return sorted(names)

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
        field = model.schema.fields.get("_values")
        dim = getattr(field, "dimension", None)
        if dim is None:
            raise ConfigError(
                f"Pinecone index {model.name!r} is not a dense vector index",
                hint="document, sparse and integrated-embedding indexes are not supported",
            )
        metric = _FROM_METRIC[str(field.metric).lower()]
        stored = schema_from_tags(model.tags or {}) or self._schema_from_namespace(name, model)
        namespaces = self._namespaces(name)
        serverless = not _is_pod(model)
        if stored is None:
            stored = self._infer(name, dim, metric, namespaces, serverless)
        v = stored.vector.model_copy(update={"dim": dim, "metric": metric})
        ns: tuple[str, ...] | None = None
        if self.namespace is None and (stored.namespaces is not None or set(namespaces) - {""}):
            ns = tuple(sorted(set(stored.namespaces or ()) | set(namespaces)))
        schema = stored.replace(
            name=name,
            vectors=(v,),
            namespaces=ns,
            engine="pinecone",
            engine_settings={
                **stored.engine_settings,
                "index": model.name,
                "deployment": "serverless" if serverless else "pod",
            },
        )
        self._schemas[name] = schema
        return schema

    def _infer(
        self, name: str, dim: int, metric: Metric, namespaces: dict[str, int], serverless: bool
    ) -> CollectionSchema:
        """Schema of an index written by another tool, from up to 1,000 sampled records."""
        rows: list[dict[str, Any]] = []
        index = self._index(name)
        for ns in sorted(namespaces)[:10]:
            if serverless:
                page = self._call(
                    f"listing {name!r}", index.list_paginated, namespace=ns, limit=100
                )
                ids = [v.id for v in page.vectors]
                recs = self._fetch_raw(name, ns, ids).values() if ids else []
            else:  # sampling for types only; never used to enumerate records
                probe = [1.0] + [0.0] * (dim - 1)
                recs = self._call(
                    f"sampling {name!r}", index.query, vector=probe, top_k=100,
                    namespace=ns, include_metadata=True,
                ).matches  # fmt: skip
            rows += [dict(r.metadata or {}) for r in recs]
        doc = self.document_field
        fields = infer_metadata_fields([{k: v for k, v in r.items() if k != doc} for r in rows])
        return CollectionSchema(
            name=name,
            vectors=(VectorField(dim=dim, metric=metric, index=IndexSpec(kind="auto")),),
            metadata=fields,
            has_document=bool(doc and any(doc in r for r in rows)),
            engine_settings={"document_key": doc, "metadata_types": "inferred (numbers: float64)"},
        )

    def _schema(self, name: str) -> CollectionSchema:
        return self._schemas.get(name) or self.describe(name)

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
            got = self._call(
                f"counting in {name!r}", self._index(name).query, vector=probe, top_k=MAX_TOP_K,
                namespace=ns, filter=compile_filter(node),
            ).matches  # fmt: skip
            if len(got) < MAX_TOP_K:
                total += len(got)
                continue
            part = Partition(id="count", spec={"namespaces": [ns]})
            for batch, _ in self.scan(name, part, schema=schema):
                total += int(evaluate(node, batch).sum())
        return total

    # -- reading -----------------------------------------------------------------------------
    def _require_serverless(self, name: str) -> None:
        model = self._model(name)
        if model is not None and _is_pod(model):
            raise ConfigError(
                f"Pinecone index {model.name!r} is pod-based: Pinecone lists record ids only "
                "on serverless indexes, so vecmigrate cannot enumerate its records (and will "
                "not guess them with random queries)",
                hint="write the ids your application knows to a file, one per line or "
                "NAMESPACE<TAB>ID, and add ?ids_file=/path to the URI; or restore the index "
                "as serverless (from a collection or backup) first",
            )

    def partitions(self, name: str, n: int) -> list[Partition]:
        if self.ids_file:
            return [Partition(id="ids-file", spec={"ids_file": self.ids_file})]
        self._require_serverless(name)
        counts = self._namespaces(name)
        groups: list[list[str]] = [[] for _ in range(max(1, min(n, len(counts))))]
        sizes = [0] * len(groups)
        for ns in sorted(counts, key=lambda s: -counts[s]):  # largest first, to the lightest
            i = sizes.index(min(sizes))
            groups[i].append(ns)
            sizes[i] += counts[ns]
        return [
            Partition(id=f"namespaces-{i}", spec={"namespaces": sorted(g)}, estimated_rows=s)
            for i, (g, s) in enumerate(zip(groups, sizes, strict=True))
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
            ns, ids = spaces[i], list[str]()
            while len(ids) < batch_rows:
                page = self._call(
                    f"listing ids of {name!r}", index.list_paginated, namespace=ns,
                    limit=min(100, batch_rows - len(ids)), pagination_token=token,
                )  # fmt: skip
                ids += [v.id for v in page.vectors]
                token = page.pagination.next if page.pagination else None
                if token is None:
                    break
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
        line = json.loads(resume)["line"] if resume else 0
        try:
            handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ConfigError(f"cannot read ids_file {path!r}: {exc.strerror}") from None
        with handle:
            lines = itertools.islice(handle, line, None)
            while chunk := list(itertools.islice(lines, rows)):
                line += len(chunk)
                by_ns: dict[str, list[str]] = {}
                for text in (c.rstrip("\r\n") for c in chunk):
                    ns, tab, rid = text.partition("\t")
                    ns, rid = (ns, rid) if tab else ("", text)
                    if rid:
                        by_ns.setdefault(self.namespace or ns, []).append(to_pinecone_id(rid))
                parts = []
                for ns, pids in by_ns.items():
                    recs = self._fetch_raw(name, ns, pids)
                    parts.append(self._to_batch(schema, ns, [recs[p] for p in pids if p in recs]))
                table = pa.Table.from_batches(parts, schema=schema.arrow_schema())
                yield table_to_batch(table), json.dumps({"line": line})

    def _fetch_raw(self, name: str, ns: str, pids: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        index, start = self._index(name), 0
        while start < len(pids):
            # GET with ids in the query string: bounded by count and URL length.
            end, chars = start, 0
            while end < len(pids) and end - start < 100 and chars < 6000:
                chars += len(quote(pids[end])) + 5
                end += 1
            res = self._call(
                f"fetching from {name!r}", index.fetch, ids=list(pids[start:end]), namespace=ns
            )
            out.update(res.vectors)
            start = end
        return out

    def _to_batch(self, schema: CollectionSchema, ns: str, recs: list[Any]) -> pa.RecordBatch:
        doc_key = self._doc_key(schema)
        ids: list[Any] = [from_pinecone_id(r.id) for r in recs]
        if schema.id_type is IdType.INT:
            ids = [int(i) for i in ids]
        docs, metas = [], []
        by_name = {f.name: f for f in schema.metadata}
        for r in recs:
            md = dict(r.metadata or {})
            docs.append(md.pop(doc_key, None))
            extra = pop_extra(md)
            metas.append({**{k: decode_value(by_name.get(k), v) for k, v in md.items()}, **extra})
        matrix = np.asarray([r.values for r in recs], dtype=np.float32)
        return build_batch(
            schema,
            ids,
            {schema.vector.name: matrix.reshape(len(recs), schema.vector.dim)},
            documents=docs if schema.has_document else None,
            metadata=metas,
            namespaces=[ns] * len(recs),
        )

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
        if self.scope is not None and index_name(schema.name) != index_name(self.scope):
            raise ConfigError(
                f"this URI is scoped to index {self.scope!r}, not {schema.name!r}",
                hint=f"pass --target-collection {self.scope} or drop the index from the URI",
            )
        if len(schema.vectors) != 1 or schema.sparse:
            raise ConfigError(f"a Pinecone index holds one dense vector; {schema.name!r} has more")
        clash = {self._doc_key(schema), EXTRA_KEY} & {m.name for m in schema.metadata}
        if clash:
            raise ConfigError(
                f"metadata field {sorted(clash)[0]!r} of {schema.name!r} is a key vecmigrate "
                "reserves in Pinecone metadata",
                hint="rename the field with a mapping (fields: {NAME: {rename: ...}})",
            )
        if schema.namespaces is not None and self.namespace is not None:
            raise ConfigError(
                f"{schema.name!r} has namespaces but this URI is scoped to namespace "
                f"{self.namespace!r}",
                hint="drop ?namespace= from the target URI to keep the source's namespaces",
            )
        if self._model(schema.name) is not None:
            if if_exists == "fail":
                raise ConfigError(
                    f"Pinecone index {index_name(schema.name)!r} already exists",
                    hint="pass --if-exists replace or reuse",
                )
            if if_exists == "reuse":
                self.describe(schema.name)
                return
            self.drop(schema.name)
        stored = schema.replace(
            engine_settings={**schema.engine_settings, "document_key": self._doc_key(schema)}
        )
        tags = schema_tags(stored)
        iname, v = index_name(schema.name), schema.vector
        self._call(
            f"creating index {iname!r}",
            self.pc.indexes.create,
            name=iname,
            schema={"fields": {"_values": {
                "type": "dense_vector", "dimension": v.dim, "metric": _METRIC[v.metric]}}},
            deployment={"deployment_type": "managed", "cloud": self.cloud, "region": self.region},
            tags=tags or {SCHEMA_TAG: f"namespace:{SCHEMA_NAMESPACE}"},
            deletion_protection="disabled",
            timeout=300,
        )  # fmt: skip
        with self._lock:
            self._handles.pop(iname, None)
        if tags is None:
            self._write_schema_records(stored)
        self.describe(schema.name)

    def _write_schema_records(self, schema: CollectionSchema) -> None:
        text = schema.to_json()
        parts = [text[i : i + 8000] for i in range(0, len(text), 8000)]
        probe = [1.0] + [0.0] * (schema.vector.dim - 1)
        vectors = [
            {"id": f"schema-{i:04d}", "values": probe, "metadata": {"json": p, "parts": len(parts)}}
            for i, p in enumerate(parts)
        ]
        for start in range(0, len(vectors), 100):
            self._call(
                "storing the schema", self._index(schema.name).upsert,
                vectors=vectors[start : start + 100], namespace=SCHEMA_NAMESPACE,
            )  # fmt: skip

    def _schema_from_namespace(self, name: str, model: Any) -> CollectionSchema | None:
        if (model.tags or {}).get(SCHEMA_TAG) != f"namespace:{SCHEMA_NAMESPACE}":
            return None
        first = self._fetch_raw(name, SCHEMA_NAMESPACE, ["schema-0000"]).get("schema-0000")
        if first is None:
            raise ConfigError(f"the stored schema of {name!r} is missing from its index")
        n = int(first.metadata["parts"])
        recs = self._fetch_raw(name, SCHEMA_NAMESPACE, [f"schema-{i:04d}" for i in range(n)])
        text = "".join(recs[f"schema-{i:04d}"].metadata["json"] for i in range(n))
        return CollectionSchema.from_json(text)

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        ids = batch.column("id").to_pylist()
        pids = [to_pinecone_id(i) for i in ids]
        for rid, pid in zip(ids, pids, strict=True):
            if len(pid) > MAX_ID_LENGTH:
                raise DataError(
                    f"id is {len(pid)} characters as a Pinecone id (at most {MAX_ID_LENGTH})",
                    collection=name, record_id=rid, field="id",
                )  # fmt: skip
        matrix = vectors_to_numpy(batch.column(schema.vector.name))
        zero = np.flatnonzero(~matrix.any(axis=1))
        if len(zero):
            raise DataError(
                "Pinecone refuses all-zero dense vectors",
                collection=name, record_id=ids[zero[0]], field=schema.vector.name,
            )  # fmt: skip
        metas = encode_metadata(batch, schema, self._doc_key(schema), name, ids)
        if self.namespace is not None:
            spaces = [self.namespace] * len(ids)
        elif "namespace" in batch.schema.names:
            spaces = [s or "" for s in batch.column("namespace").to_pylist()]
        else:
            spaces = [""] * len(ids)
        groups: dict[str, list[int]] = {}
        for i, ns in enumerate(spaces):
            if not ns.isascii() or len(ns) > 512 or ns == SCHEMA_NAMESPACE:
                raise DataError(
                    "Pinecone namespaces are 1-512 ASCII characters (and not the reserved "
                    f"{SCHEMA_NAMESPACE!r})", collection=name, record_id=ids[i], field="namespace",
                )  # fmt: skip
            groups.setdefault(ns, []).append(i)
        per_vector = schema.vector.dim * _FLOAT_JSON_BYTES + 64
        index = self._index(name)
        for ns, rows in groups.items():
            chunk: list[dict[str, Any]] = []
            size = 0
            for i in rows:
                rec = {"id": pids[i], "values": matrix[i].tolist()}
                md_bytes = 0
                if metas[i][0]:
                    rec["metadata"] = metas[i][0]
                    md_bytes = metas[i][1]
                need = per_vector + len(pids[i]) + md_bytes
                if chunk and (len(chunk) == 1000 or size + need > MAX_REQUEST_BYTES - 4096):
                    self._call(f"upsert into {name!r}", index.upsert, vectors=chunk, namespace=ns)
                    chunk, size = [], 0
                chunk.append(rec)
                size += need
            if chunk:
                self._call(f"upsert into {name!r}", index.upsert, vectors=chunk, namespace=ns)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        pids = list(dict.fromkeys(to_pinecone_id(i) for i in ids))
        index = self._index(name)
        for ns in self._namespaces(name):
            for start in range(0, len(pids), 1000):
                self._call(
                    f"delete from {name!r}", index.delete,
                    ids=pids[start : start + 1000], namespace=ns,
                )  # fmt: skip

    def drop(self, name: str) -> None:
        iname = index_name(name)
        with self._lock:
            handle = self._handles.pop(iname, None)
        if handle is not None:
            handle.close()
        self._schemas.pop(name, None)
        if self._model(name) is not None:
            self._call(f"deleting index {iname!r}", self.pc.indexes.delete, iname, timeout=300)

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
                res = self._call(
                    f"search in {name!r}", index.query, vector=q.tolist(), top_k=k,
                    namespace=ns, filter=flt,
                )  # fmt: skip
                hits += [(float(m.score), m.id) for m in res.matches]
            hits.sort(key=lambda h: h[0] if lower_first else -h[0])
            row: list[Any] = [from_pinecone_id(h[1]) for h in hits[:k]]
            ids.append([int(i) for i in row] if schema.id_type is IdType.INT else row)
            scores.append([h[0] for h in hits[:k]])
        return ids, scores


def _is_pod(model: Any) -> bool:
    from pinecone.models.indexes.deployment import PodDeployment

    return isinstance(model.deployment, PodDeployment)
