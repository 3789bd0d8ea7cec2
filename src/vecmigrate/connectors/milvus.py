"""Milvus: ``milvus://host:19530?token=env:MILVUS_TOKEN`` or ``milvus-lite:///path/x.db``.

A collection made by vecmigrate (layout ``json``) has a primary key ``id`` (INT64 or
VARCHAR), one FLOAT_VECTOR field per vector field, ``document`` VARCHAR, ``metadata`` JSON
(typed values, nulls omitted), ``metadata_extra`` VARCHAR (canonical JSON text, ``""`` for
none) and ``metadata_present`` JSON (``{"fields": {name: bool}, "document": bool}``).

Why JSON and not one typed scalar field per metadata field: milvus-lite refuses nullable
fields ("MilvusLite doesn't support nullable"), and a non-nullable typed field cannot tell
a missing value from a default. JSON keeps int vs float, bools, lists and absence exactly.
milvus-lite also has no ``not`` and no ``exists`` in expressions, and ``!=`` / ``not in``
on a missing JSON key is true; so filters are compiled to negation normal form with an
explicit presence test from ``metadata_present`` on every comparison.

The vecmigrate schema is the collection description (milvus-lite silently drops collection
properties). Collections made by other tools (layout ``columns``) are described from their
fields and index parameters; their scalar fields become metadata fields.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import (
    DataNotMatchException,
    DataTypeNotMatchException,
    MilvusException,
    MilvusUnavailableException,
    ParamError,
)

from vecmigrate.connectors.base import Connector, Filter, IfExists, key_range_partitions
from vecmigrate.errors import (
    ConfigError,
    ConnectorError,
    DataError,
    TerminalError,
    TransientError,
    VecmigrateError,
)
from vecmigrate.filters import ALL_OPS, Bool, Cond, Node
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    IndexKind,
    IndexSpec,
    MetadataField,
    MetadataType,
    Metric,
    Partition,
    ResumeToken,
    VectorField,
)
from vecmigrate.records import build_batch, conform, vectors_to_numpy

SCHEMA_MARK = "vecmigrate.schema:"
LAYOUT_KEY = "milvus.layout"
PK_KEY = "milvus.primary_key"
DOC_KEY = "milvus.document_field"
_METRIC_OF: dict[Metric, str] = {Metric.COSINE: "COSINE", Metric.DOT: "IP", Metric.L2: "L2"}
_PORTABLE_METRIC = {v: k for k, v in _METRIC_OF.items()}
_SCALAR: dict[DataType, MetadataType] = {
    DataType.VARCHAR: "string",
    DataType.INT8: "int64",
    DataType.INT16: "int64",
    DataType.INT32: "int64",
    DataType.INT64: "int64",
    DataType.FLOAT: "float64",
    DataType.DOUBLE: "float64",
    DataType.BOOL: "bool",
    DataType.JSON: "json",
}
_ARRAY_OF: dict[DataType, MetadataType] = {
    DataType.VARCHAR: "list<string>",
    DataType.INT8: "list<int64>",
    DataType.INT16: "list<int64>",
    DataType.INT32: "list<int64>",
    DataType.INT64: "list<int64>",
    DataType.FLOAT: "list<float64>",
    DataType.DOUBLE: "list<float64>",
}
_INDEX_KIND: dict[str, IndexKind] = {
    "FLAT": "flat",
    "IVF_FLAT": "ivf_flat",
    "IVF_PQ": "ivf_pq",
    "HNSW": "hnsw",
}
_DOC_FIELDS = ("document", "text", "content")
_MAX_VARCHAR = 65535
_PAGE = 16384  # Milvus caps offset + limit of one query at 16384
_TRANSIENT_HINTS = ("unavailable", "timeout", "timed out", "rate limit", "deny to", "connect")


def _errors(exc: Exception, what: str) -> ConnectorError:
    """Map pymilvus and gRPC failures to vecmigrate's transient / terminal / data errors."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, MilvusUnavailableException | ConnectionError | TimeoutError):
        return TransientError(f"{what}: {msg}")
    if isinstance(exc, DataNotMatchException | DataTypeNotMatchException | ParamError):
        return DataError(f"{what}: {msg}")
    if isinstance(exc, MilvusException):
        low = msg.lower()
        if any(h in low for h in _TRANSIENT_HINTS):
            return TransientError(f"{what}: {msg}")
        return TerminalError(f"{what}: {msg}")
    if type(exc).__module__.startswith("grpc"):
        return TransientError(f"{what}: {msg}")
    return TerminalError(f"{what}: {msg}")


def _literal(value: Any) -> str:
    """A Milvus expression literal. Strings use JSON escapes, which the parser unquotes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        if f != f or f in (float("inf"), float("-inf")):
            raise ConfigError(f"Milvus expressions cannot hold the number {f!r}")
        return repr(f)
    return json.dumps(str(value), ensure_ascii=False)


def _key(name: str) -> str:
    return "[" + json.dumps(name, ensure_ascii=False) + "]"


class _Compiler:
    """Portable filter -> Milvus boolean expression, in negation normal form (no ``not``)."""

    def __init__(self, schema: CollectionSchema, *, lite: bool) -> None:
        self.layout = schema.engine_settings.get(LAYOUT_KEY, "json")
        self.nullable: set[str] = set(schema.engine_settings.get("milvus.nullable", []))
        self.lite = lite
        self._pk = _pk(schema)

    def ref(self, f: MetadataField) -> str:
        return "metadata" + _key(f.name) if self.layout == "json" else f.name

    def presence(self, f: MetadataField, present: bool) -> str | None:
        """Expression testing presence (or absence); None means "always true"."""
        if self.layout == "json":
            return f'metadata_present["fields"]{_key(f.name)} == {_literal(present)}'
        if f.name in self.nullable:
            return f"{f.name} is {'not ' if present else ''}null"
        if present:
            return None
        return f"{self._pk} < {self._pk}"  # never true: a non-nullable field is always present

    def compile(self, node: Node, negate: bool = False) -> str:
        if isinstance(node, Bool):
            if node.op == "$not":
                return self.compile(node.children[0], not negate)
            is_and = (node.op == "$and") != negate
            parts = [f"({self.compile(c, negate)})" for c in node.children]
            return (" and " if is_and else " or ").join(parts)
        return self._cond(node, negate)

    def _cond(self, c: Cond, negate: bool) -> str:
        f = c.field
        if c.op == "$exists":
            want = bool(c.value) != negate
            expr = self.presence(f, want)
            return expr if expr is not None else f"{self._pk} == {self._pk}"
        col = self.ref(f)
        if f.type.startswith("list<"):
            wanted = c.value if c.op == "$in" else [c.value]
            fn = "json_contains_any" if self.layout == "json" else "array_contains_any"
            test = f"{fn}({col}, [{', '.join(map(_literal, wanted))}])"
            if negate:
                if self.lite:
                    raise ConfigError(
                        "milvus-lite cannot express the negation of a list containment",
                        hint="milvus-lite expressions have no 'not'",
                    )
                absent = self.presence(f, False)
                return f"({absent}) or (not ({test}))"
            return self._with_presence(f, test)
        if c.op in ("$in", "$nin"):
            positive = c.op == "$in"
            op = "in" if positive != negate else "not in"
            test = f"{col} {op} [{', '.join(map(_literal, c.value))}]"
        else:
            ops = {"$eq": "==", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
            neg = {"$eq": "!=", "$ne": "==", "$gt": "<=", "$gte": "<", "$lt": ">=", "$lte": ">"}
            test = f"{col} {(neg if negate else ops)[c.op]} {_literal(c.value)}"
        if negate:
            # not (present and x op v)  ==  absent or (present and x (complement op) v)
            absent = self.presence(f, False)
            return f"({absent}) or ({self._with_presence(f, test)})"
        return self._with_presence(f, test)

    def _with_presence(self, f: MetadataField, test: str) -> str:
        present = self.presence(f, True)
        return test if present is None else f"({present}) and ({test})"


class MilvusConnector(Connector):
    """Milvus collections over pymilvus' ``MilvusClient`` (server or embedded milvus-lite)."""

    schemes = ("milvus", "milvus-lite")
    capabilities = Capabilities(
        filter_ops=ALL_OPS,
        id_types=frozenset(IdType),
        metrics=frozenset(Metric),
        named_vectors=True,
        max_batch_rows=2000,
        max_batch_bytes=32 * 1024 * 1024,
        max_metadata_bytes=65536,
        index_kinds=frozenset({"flat", "ivf_flat", "hnsw", "auto"}),
    )
    MIN_PARTITION_ROWS = 1000

    def __init__(self, uri: Any) -> None:
        super().__init__(uri)
        self.lite = uri.scheme == "milvus-lite"
        try:
            if self.lite:
                path = uri.local_path
                if path.suffix != ".db":
                    raise ConfigError(
                        f"milvus-lite needs a file ending in .db, got {str(path)!r}",
                        hint="use milvus-lite:///path/to/store.db",
                    )
                path.parent.mkdir(parents=True, exist_ok=True)
                self.client = MilvusClient(str(path))
            else:
                scheme = "https" if uri.params.get("secure") in ("1", "true") else "http"
                kwargs: dict[str, Any] = {
                    "uri": f"{scheme}://{uri.host or '127.0.0.1'}:{uri.port or 19530}"
                }
                token = uri.secret("token")
                if token:
                    kwargs["token"] = token
                db = uri.path.strip("/")
                if db:
                    kwargs["db_name"] = db
                self.client = MilvusClient(**kwargs)
        except VecmigrateError:
            raise
        except Exception as exc:
            raise _errors(exc, f"cannot connect to {self.uri}") from None
        self._schemas: dict[str, CollectionSchema] = {}
        self._loaded: set[str] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing must not fail a job
            self.client.close()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VecmigrateError:
            raise
        except Exception as exc:
            raise _errors(exc, f"{self.uri}: {what}") from None

    def _exists(self, name: str) -> bool:
        return bool(self._call("has_collection", self.client.has_collection, name))

    def _ensure_loaded(self, name: str) -> None:
        """Collections reopen released; search and query need them loaded."""
        if name in self._loaded:
            return
        if not self._exists(name):
            raise ConfigError(f"Milvus at {self.uri} has no collection {name!r}")
        with self._lock:
            self._call(f"load {name!r}", self.client.load_collection, name)
            self._loaded.add(name)

    # -- discovery -------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        return sorted(self._call("list_collections", self.client.list_collections))

    def describe(self, name: str) -> CollectionSchema:
        if not self._exists(name):
            raise ConfigError(f"Milvus at {self.uri} has no collection {name!r}")
        info = self._call(f"describe {name!r}", self.client.describe_collection, name)
        desc = str(info.get("description") or "")
        if desc.startswith(SCHEMA_MARK):
            schema = CollectionSchema.from_json(desc[len(SCHEMA_MARK) :]).replace(
                name=name, engine=self.engine
            )
        else:
            schema = self._infer(name, info)
        self._schemas[name] = schema
        return schema

    def _schema(self, name: str) -> CollectionSchema:
        return self._schemas.get(name) or self.describe(name)

    def _index_info(self, name: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for idx in self._call("list_indexes", self.client.list_indexes, name):
            d = self._call("describe_index", self.client.describe_index, name, idx)
            if d:
                out[str(d.get("field_name", idx))] = dict(d)
        return out

    def _infer(self, name: str, info: dict[str, Any]) -> CollectionSchema:
        """Describe a collection vecmigrate did not create, and say what was assumed."""
        indexes = self._index_info(name)
        vectors: list[VectorField] = []
        metadata: list[MetadataField] = []
        notes: dict[str, Any] = {LAYOUT_KEY: "columns"}
        nullable: list[str] = []
        pk: str | None = None
        id_type = IdType.STRING
        fields = info.get("fields", [])
        doc = next(
            (
                f["name"]
                for f in fields
                if f["name"] in _DOC_FIELDS
                and f["type"] == DataType.VARCHAR
                and not f.get("is_primary")
            ),
            None,
        )
        for f in fields:
            ftype, fname, params = f["type"], f["name"], f.get("params", {})
            if f.get("is_primary"):
                pk = fname
                id_type = IdType.INT if ftype == DataType.INT64 else IdType.STRING
            elif ftype == DataType.FLOAT_VECTOR:
                idx = indexes.get(fname, {})
                metric_name = str(idx.get("metric_type", "")).upper()
                metric = _PORTABLE_METRIC.get(metric_name)
                if metric is None:
                    notes[f"{fname}.metric"] = "assumed cosine: the field has no index"
                    metric = Metric.COSINE
                kind = _INDEX_KIND.get(str(idx.get("index_type", "")), "auto")
                vectors.append(
                    VectorField(
                        name=fname,
                        dim=int(params["dim"]),
                        metric=metric,
                        index=IndexSpec(kind=kind),
                    )
                )
            elif fname == doc:
                continue
            elif ftype in _SCALAR:
                metadata.append(MetadataField(name=fname, type=_SCALAR[ftype]))
            elif ftype == DataType.ARRAY and f.get("element_type") in _ARRAY_OF:
                metadata.append(MetadataField(name=fname, type=_ARRAY_OF[f["element_type"]]))
            else:
                notes[f"{fname}.skipped"] = f"field type {ftype!r} is not migrated"
                continue
            if f.get("nullable"):
                nullable.append(fname)
        if pk is None:
            raise ConfigError(f"Milvus collection {name!r} has no primary key")
        if info.get("enable_dynamic_field"):
            notes["dynamic_fields"] = "dynamic ($meta) fields are not migrated"
        notes[PK_KEY] = pk
        notes[DOC_KEY] = doc
        notes["milvus.nullable"] = nullable
        return CollectionSchema(
            name=name,
            id_type=id_type,
            vectors=tuple(vectors),
            metadata=tuple(metadata),
            has_document=doc is not None,
            engine=self.engine,
            engine_settings=notes,
        )

    def count(self, name: str, filter: Filter | None = None) -> int:
        schema = self._schema(name)
        expr = self._expr(schema, filter)
        self._ensure_loaded(name)
        res = self._call(
            f"count {name!r}",
            self.client.query,
            name,
            filter=expr,
            output_fields=["count(*)"],
            consistency_level="Strong",
        )
        return int(res[0]["count(*)"]) if res else 0

    def _expr(self, schema: CollectionSchema, filter: Filter | None) -> str:
        node = self._filter(schema, filter)
        if node is None:
            return ""
        return _Compiler(schema, lite=self.lite).compile(node)

    # -- writing schema --------------------------------------------------------------------
    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        if self._exists(schema.name):
            if if_exists == "fail":
                raise ConfigError(
                    f"Milvus collection {schema.name!r} already exists",
                    hint="pass --if-exists replace or reuse",
                )
            if if_exists == "reuse":
                self.describe(schema.name)
                return
            self.drop(schema.name)
        if schema.sparse:
            raise ConfigError("the Milvus connector does not migrate sparse vectors yet")
        if schema.namespaces is not None:
            raise ConfigError("the Milvus connector does not map namespaces yet")
        if not schema.vectors:
            raise ConfigError(f"Milvus collections need a vector field; {schema.name!r} has none")
        settings = {k: v for k, v in schema.engine_settings.items() if not k.startswith("milvus.")}
        settings[LAYOUT_KEY] = "json"
        fields: list[tuple[str, DataType, dict[str, Any]]] = []
        if schema.id_type is IdType.INT:
            fields.append(("id", DataType.INT64, {"is_primary": True}))
        else:
            max_len = int(schema.engine_settings.get("milvus.id_max_length", 512))
            settings["milvus.id_max_length"] = max_len
            fields.append(("id", DataType.VARCHAR, {"is_primary": True, "max_length": max_len}))
        index = self.client.prepare_index_params()
        for v in schema.vectors:
            fields.append((v.name, DataType.FLOAT_VECTOR, {"dim": v.dim}))
            index_type, params = self._index_for(v, settings)
            index.add_index(
                v.name, index_type=index_type, metric_type=_METRIC_OF[v.metric], params=params
            )
        fields += [
            ("document", DataType.VARCHAR, {"max_length": _MAX_VARCHAR}),
            ("metadata", DataType.JSON, {}),
            ("metadata_extra", DataType.VARCHAR, {"max_length": _MAX_VARCHAR}),
            ("metadata_present", DataType.JSON, {}),
        ]
        stored = schema.replace(engine=self.engine, engine_settings=settings)
        text = json.dumps(json.loads(stored.to_json()), separators=(",", ":"))
        ms = self.client.create_schema(
            auto_id=False, enable_dynamic_field=False, description=SCHEMA_MARK + text
        )
        for fname, ftype, kwargs in fields:
            ms.add_field(fname, ftype, **kwargs)
        self._call(
            f"create {schema.name!r}",
            self.client.create_collection,
            schema.name,
            schema=ms,
            index_params=index,
            consistency_level="Strong",
        )
        self._schemas[schema.name] = stored
        self._loaded.discard(schema.name)

    def _index_for(self, v: VectorField, settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        spec = v.index or IndexSpec(kind="flat")
        params = dict(spec.params)
        kind = spec.kind
        if kind == "ivf_pq" and self.lite:
            settings[f"milvus.{v.name}.index"] = "IVF_FLAT (milvus-lite has no IVF_PQ)"
            kind = "ivf_flat"
        if kind == "ivf_flat":
            return "IVF_FLAT", {"nlist": int(params.get("nlist", 128))}
        if kind == "ivf_pq":
            return "IVF_PQ", {
                "nlist": int(params.get("nlist", 128)),
                "m": int(params.get("m", 8)),
                "nbits": int(params.get("nbits", 8)),
            }
        if kind == "hnsw":
            if self.lite:
                settings[f"milvus.{v.name}.index"] = "AUTOINDEX (milvus-lite has no HNSW)"
                return "AUTOINDEX", {}
            return "HNSW", {
                "M": int(params.get("M", params.get("m", 16))),
                "efConstruction": int(params.get("ef_construction", 200)),
            }
        if kind == "auto":
            return "AUTOINDEX", {}
        return "FLAT", {}

    # -- reading ---------------------------------------------------------------------------
    def _output_fields(self, schema: CollectionSchema) -> list[str]:
        pk = _pk(schema)
        fields = [pk, *(v.name for v in schema.vectors)]
        if _layout(schema) == "json":
            return [*fields, "document", "metadata", "metadata_extra", "metadata_present"]
        doc = schema.engine_settings.get(DOC_KEY)
        return [*fields, *([doc] if doc else []), *(m.name for m in schema.metadata)]

    def _to_batch(self, rows: list[dict[str, Any]], schema: CollectionSchema) -> pa.RecordBatch:
        pk = _pk(schema)
        ids = [r[pk] for r in rows]
        vectors = {
            v.name: np.asarray([r[v.name] for r in rows], dtype=np.float32).reshape(
                len(rows), v.dim
            )
            for v in schema.vectors
        }
        meta: list[dict[str, Any]] = []
        docs: list[str | None] = []
        if _layout(schema) == "json":
            for r in rows:
                present = r.get("metadata_present") or {}
                docs.append(r.get("document") if present.get("document", True) else None)
                m = dict(r.get("metadata") or {})
                if r.get("metadata_extra"):
                    m.update(json.loads(r["metadata_extra"]))
                meta.append(m)
        else:
            doc = schema.engine_settings.get(DOC_KEY)
            for r in rows:
                docs.append(r.get(doc) if doc else None)
                meta.append({m.name: _plain(r.get(m.name)) for m in schema.metadata})
        batch = build_batch(
            schema,
            ids,
            vectors,
            documents=docs if schema.has_document else None,
            metadata=meta,
        )
        return batch

    def partitions(self, name: str, n: int) -> list[Partition]:
        """Disjoint primary-key ranges ``(after, upto]`` with open outer ends.

        Bounds come from one primary-key-only pass in key order, so ranges are exact.
        """
        total = self.count(name)
        n = max(1, min(n, total // self.MIN_PARTITION_ROWS + 1))
        if n == 1:
            return [Partition(id="ids-0", spec={"after": None, "upto": None}, estimated_rows=total)]
        schema = self._schema(name)
        pk = _pk(schema)
        cuts = {total * i // n for i in range(1, n)}
        uppers: list[Any] = []
        seen = 0
        for page in self._pages(name, schema, None, None, _PAGE, [pk]):
            for r in page:
                seen += 1
                if seen in cuts:
                    uppers.append(r[pk])
        return key_range_partitions(uppers, total)

    def _pages(
        self,
        name: str,
        schema: CollectionSchema,
        after: Any,
        upto: Any,
        batch_rows: int,
        fields: list[str],
    ) -> Iterator[list[dict[str, Any]]]:
        """Rows in primary-key order, ``after < pk <= upto``, ``batch_rows`` at a time."""
        self._ensure_loaded(name)
        pk = _pk(schema)
        limit = max(1, min(batch_rows, _PAGE))
        while True:
            conds = []
            if after is not None:
                conds.append(f"{pk} > {_literal(after)}")
            elif schema.id_type is IdType.INT:
                conds.append(f"{pk} >= {-(2**63)}")
            else:
                conds.append(f'{pk} >= ""')
            if upto is not None:
                conds.append(f"{pk} <= {_literal(upto)}")
            rows = self._call(
                f"query {name!r}",
                self.client.query,
                name,
                filter=" and ".join(conds),
                output_fields=fields,
                limit=limit,
                consistency_level="Strong",
            )
            if not rows:
                return
            page = sorted((dict(r) for r in rows), key=lambda r: r[pk])
            after = page[-1][pk]
            yield page
            if len(page) < limit:
                return

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
        stored = self._schema(name)  # physical layout comes from the engine's own schema
        read = schema.replace(engine_settings={**schema.engine_settings, **_physical(stored)})
        after = json.loads(resume)["after"] if resume else partition.spec.get("after")
        upto = partition.spec.get("upto")
        fields = self._output_fields(read)
        pk = _pk(read)
        for page in self._pages(name, read, after, upto, batch_rows, fields):
            yield self._to_batch(page, read), json.dumps({"after": page[-1][pk]})

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        read = schema.replace(
            engine_settings={**schema.engine_settings, **_physical(self._schema(name))}
        )
        self._ensure_loaded(name)
        typed = _typed_ids(read, ids)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(typed), 1000):
            chunk = typed[start : start + 1000]
            got = self._call(
                f"get from {name!r}",
                self.client.get,
                name,
                ids=chunk,
                output_fields=self._output_fields(read),
            )
            rows += [dict(r) for r in got]
        return self._to_batch(rows, read)

    # -- writing ---------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        data = conform(batch, schema)
        n = data.num_rows
        if n == 0:
            return
        ids = data.column("id").to_pylist()
        if any(i is None for i in ids):
            raise DataError("a record has no id", collection=name, field="id")
        if self.lite and schema.id_type is not IdType.INT:
            bad = next((i for i in ids if "'" in i), None)
            if bad is not None:
                raise DataError(
                    "milvus-lite cannot store ids containing a single quote "
                    "(its upsert fails with 'internal error')",
                    collection=name,
                    record_id=bad,
                    field="id",
                )
        vectors = {v.name: vectors_to_numpy(data.column(v.name)) for v in schema.vectors}
        docs = data.column("document").to_pylist() if schema.has_document else [None] * n
        typed = _typed_metadata(data, schema)
        extra = data.column("metadata_extra").to_pylist()
        rows: list[dict[str, Any]] = []
        layout = _layout(schema)
        pk = _pk(schema)
        for i in range(n):
            row: dict[str, Any] = {pk: ids[i]}
            for vname, matrix in vectors.items():
                row[vname] = matrix[i]
            if layout == "json":
                row["document"] = docs[i] or ""
                row["metadata"] = typed[i]
                row["metadata_extra"] = extra[i] or ""
                row["metadata_present"] = {
                    "fields": {m.name: m.name in typed[i] for m in schema.metadata},
                    "document": docs[i] is not None,
                }
                if len(row["metadata_extra"].encode()) > _MAX_VARCHAR:
                    raise DataError(
                        "metadata_extra is longer than Milvus' 65535-byte VARCHAR",
                        collection=name,
                        record_id=ids[i],
                        field="metadata_extra",
                    )
            else:
                doc = schema.engine_settings.get(DOC_KEY)
                if doc:
                    row[doc] = docs[i] if docs[i] is not None else ""
                for m in schema.metadata:
                    row[m.name] = typed[i].get(m.name)
            rows.append(row)
        self._call(f"upsert into {name!r}", self.client.upsert, name, rows)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        schema = self._schema(name)
        typed = _typed_ids(schema, ids)
        for start in range(0, len(typed), 1000):
            chunk = typed[start : start + 1000]
            self._call(f"delete from {name!r}", self.client.delete, name, ids=chunk)

    def drop(self, name: str) -> None:
        if self._exists(name):
            self._call(f"drop {name!r}", self.client.drop_collection, name)
        self._schemas.pop(name, None)
        self._loaded.discard(name)

    def finalize(self, name: str) -> None:
        if not self.lite and self._exists(name):
            self._call(f"flush {name!r}", self.client.flush, name)

    # -- querying --------------------------------------------------------------------------
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
        expr = self._expr(schema, filter)
        field = schema.vector_field(vector_field)
        self._ensure_loaded(name)
        pk = _pk(schema)
        queries = np.asarray(vectors, dtype=np.float32)
        res = self._call(
            f"search {name!r}",
            self.client.search,
            name,
            data=[q for q in queries],
            limit=k,
            filter=expr,
            anns_field=field.name,
            search_params={"metric_type": _METRIC_OF[field.metric], "params": params or {}},
            output_fields=[pk],
            consistency_level="Strong",
        )
        ids = [[hit["entity"].get(pk, hit.get("id")) for hit in hits] for hits in res]
        scores = [[float(hit["distance"]) for hit in hits] for hits in res]
        return ids, scores


def _plain(value: Any) -> Any:
    """ARRAY values arrive as protobuf repeated containers; make them Python lists."""
    if value is None or isinstance(value, str | bytes | int | float | bool | dict | list):
        return value
    return list(value)


def _layout(schema: CollectionSchema) -> str:
    return str(schema.engine_settings.get(LAYOUT_KEY, "json"))


def _pk(schema: CollectionSchema) -> str:
    return str(schema.engine_settings.get(PK_KEY) or "id")


def _physical(stored: CollectionSchema) -> dict[str, Any]:
    """The engine_settings that describe storage (layout, key and document field names)."""
    return {k: v for k, v in stored.engine_settings.items() if k.startswith("milvus.")}


def _typed_ids(schema: CollectionSchema, ids: Sequence[Any]) -> list[Any]:
    if schema.id_type is IdType.INT:
        out: list[Any] = []
        for i in ids:
            try:
                out.append(int(i))
            except (TypeError, ValueError):
                continue  # cannot exist in an INT64 key
        return out
    return [str(i) for i in ids]


def _typed_metadata(batch: pa.RecordBatch, schema: CollectionSchema) -> list[dict[str, Any]]:
    """Typed metadata per record (nulls omitted); json-typed values decoded to objects."""
    n = batch.num_rows
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    if "metadata" not in batch.schema.names:
        return out
    json_fields = {f.name for f in schema.metadata if f.type == "json"}
    struct = batch.column(batch.schema.names.index("metadata"))
    for child_field, child in zip(struct.type, struct.flatten(), strict=True):
        is_json = child_field.name in json_fields
        for i, v in enumerate(child.to_pylist()):
            if v is not None:
                out[i][child_field.name] = json.loads(v) if is_json else v
    return out


__all__ = ["MilvusConnector"]
