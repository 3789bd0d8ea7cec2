"""Redis Stack / RediSearch: ``redis://[user@]host:6379?password=env:NAME[&tls=true]`` (db 0).

Layout of a collection ``docs`` that vecmigrate creates:

* one HASH per record at key ``docs:<id>`` (int ids as decimal text); collection names
  containing ``:`` are refused, so no collection's key prefix covers another's;
* hash fields: ``document``; one field per vector holding its FLOAT32 bytes (little
  endian, as RediSearch reads them); one field per metadata value (nulls are absent);
  ``__vm_extra`` with the JSON of values that did not fit their field's type;
* the index ``docs`` (``FT.CREATE docs ON HASH PREFIX 1 docs: ...``): VECTOR HNSW/FLAT
  (TYPE FLOAT32, DIM, DISTANCE_METRIC COSINE/IP/L2, M, EF_CONSTRUCTION) per vector;
  strings, bools and lists as TAG (separator U+001F, CASESENSITIVE, INDEXMISSING, plus
  INDEXEMPTY for strings), int/float as NUMERIC INDEXMISSING; json values not indexed;
* the vecmigrate CollectionSchema as JSON at ``vecmigrate:schema:docs``, so ``describe``
  round-trips exactly.

Indexes made by other tools are described from ``FT.INFO``: over HASH documents (NUMERIC
read as float64, TAG/TEXT as string, fields the index does not name kept in
``metadata_extra``) or over JSON documents (top-level members; types inferred from a
sample; written back whole with ``JSON.SET``). Filters on their TAG fields need
CASESENSITIVE, and ``$ne``/``$nin``/``$exists`` on TAG need INDEXMISSING, or are refused.

RediSearch trims whitespace around TAG values and splits them at the separator, so a
string (or list element) with surrounding whitespace, the separator, or an empty list
element could not be matched exactly by a filter: such records are refused by name.
Filters compile to RediSearch query syntax (DIALECT 2) with every value passed as a query
parameter, so quotes and operators in values never change a query's meaning.
Scans walk ``SCAN MATCH <prefix>* TYPE hash`` and partition keys by crc32 buckets; a
resume token is the SCAN cursor plus the last key emitted from that cursor's reply.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import redis

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError
from vecmigrate.filters import ALL_OPS, Bool, Node
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    IndexSpec,
    MetadataField,
    MetadataType,
    Metric,
    Partition,
    ResumeToken,
    VectorField,
)
from vecmigrate.records import (
    build_batch,
    conform,
    encode_json,
    infer_metadata_fields,
    metadata_rows,
    vectors_to_numpy,
)

SEP = "\x1f"
EXTRA = "__vm_extra"
SCORE = "__vm_score"
SCHEMA_KEY = "vecmigrate:schema:"
SCAN_COUNT = 1000  # fixed: a resumed SCAN must see the same reply for the same cursor
_METRIC = {Metric.COSINE: "COSINE", Metric.DOT: "IP", Metric.L2: "L2"}
_PORTABLE_METRIC = {v: k for k, v in _METRIC.items()}
_SAFE_ATTR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TRIMMED = " \t\n\v\f\r"  # what RediSearch strips around TAG values
_DOC_FIELDS = ("document", "content", "text")
_JSON_TOP = re.compile(r"\$\.([A-Za-z_][A-Za-z0-9_]*)(\[\*\])?")  # $.name or $.name[*]


def attribute(name: str) -> str:
    """Query attribute for a hash field: its name, or a hex alias when it needs escaping."""
    return name if _SAFE_ATTR.fullmatch(name) else "__f_" + name.encode().hex()


@dataclass
class Layout:
    """Where a collection's pieces live in Redis (own collections: derived from the schema)."""

    prefixes: list[str]
    id_prefix: str
    doc_field: str | None
    fields: dict[str, str]  # metadata name -> hash field
    attrs: dict[str, tuple[str, str]]  # metadata name -> (query attribute, TAG/NUMERIC/TEXT)
    missing: set[str] = field(default_factory=set)  # attributes with INDEXMISSING
    nocase: set[str] = field(default_factory=set)  # TAG attributes without CASESENSITIVE
    vector_attrs: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (attr, algo)
    json: bool = False  # JSON documents (other tools' indexes) instead of hashes

    @property
    def key_type(self) -> str:
        """The SCAN TYPE of this collection's records."""
        return "ReJSON-RL" if self.json else "hash"


class _Query:
    """Collects query parameters while a filter compiles."""

    def __init__(self) -> None:
        self.params: dict[str, str] = {}

    def param(self, value: str) -> str:
        key = f"p{len(self.params)}"
        self.params[key] = value
        return "$" + key


def _tags(f: MetadataField, value: Any) -> list[str]:
    """Stored TAG text(s) a filter value must match on field ``f``."""
    if f.type == "bool":
        return ["true" if value else "false"]
    if f.type == "list<int64>":
        return [str(int(value)) if float(value).is_integer() else repr(float(value))]
    if f.type == "list<float64>":
        return ["0.0", "-0.0"] if value == 0 else [repr(float(value))]
    if value == "" and f.type == "list<string>":
        raise ConfigError(f"redis cannot express a filter for an empty string in list {f.name!r}")
    return [str(value)]


def _number(q: _Query, f: MetadataField, value: Any) -> str:
    if f.type == "int64" and abs(value) > 2**53:
        raise ConfigError(
            f"redis cannot express {value!r} on {f.name!r} exactly: NUMERIC fields are doubles"
        )
    return q.param(repr(float(value)))


def compile_filter(node: Node, layout: Layout, q: _Query) -> str:
    """A portable filter as a RediSearch query (DIALECT 2); values become parameters."""
    if isinstance(node, Bool):
        parts = [compile_filter(c, layout, q) for c in node.children]
        if node.op == "$not":
            return f"-({parts[0]})"
        return "(" + (" " if node.op == "$and" else " | ").join(parts) + ")"
    f = node.field
    attr, kind = layout.attrs.get(f.name, ("", ""))
    if kind not in ("TAG", "NUMERIC"):
        raise ConfigError(
            f"redis cannot express filters on {f.name!r}: it is not a TAG or NUMERIC field"
        )
    if attr in layout.nocase and node.op != "$exists":
        raise ConfigError(
            f"redis cannot express exact matches on {f.name!r}: its TAG field was created "
            "without CASESENSITIVE, so 'News' would match 'news'"
        )
    if attr in layout.missing:
        present, absent = f"-ismissing(@{attr})", f"ismissing(@{attr})"
    elif kind == "NUMERIC":
        present, absent = f"@{attr}:[-inf +inf]", f"-@{attr}:[-inf +inf]"
    elif node.op in ("$exists", "$ne", "$nin"):
        raise ConfigError(
            f"redis cannot express {node.op} on {f.name!r}: the index lacks INDEXMISSING"
        )
    if node.op == "$exists":
        return present if node.value else absent
    values = node.value if node.op in ("$in", "$nin") else [node.value]
    if kind == "TAG":
        tags = [q.param(t) for v in values for t in _tags(f, v)]
        match = f"@{attr}:{{{' | '.join(tags)}}}"
    else:
        ranges = {
            "$gt": "[({} +inf]", "$gte": "[{} +inf]", "$lt": "[-inf ({}]", "$lte": "[-inf {}]",
        }  # fmt: skip
        if node.op in ranges:
            return f"@{attr}:" + ranges[node.op].format(_number(q, f, node.value))
        terms = []
        for v in values:
            p = _number(q, f, v)
            terms.append(f"@{attr}:[{p} {p}]")
        match = terms[0] if len(terms) == 1 else "(" + " | ".join(terms) + ")"
    if node.op in ("$ne", "$nin"):
        return f"({present} -{match})"
    return match


def _wrap(exc: Exception, what: str) -> Exception:
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        return ConfigError(f"{what}: {exc}", hint="check the user and ?password=env:NAME")
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | redis.BusyLoadingError):
        return TransientError(f"{what}: {exc}")
    if isinstance(exc, redis.ResponseError) and str(exc).startswith(
        ("BUSY", "LOADING", "TRYAGAIN")
    ):
        return TransientError(f"{what}: {exc}")
    return TerminalError(f"{what}: {exc}")


def _pairs(items: list[Any]) -> dict[str, Any]:
    """An FT.INFO-style flat [key, value, ...] list as a dict with str keys."""
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): v
        for k, v in zip(items[::2], items[1::2], strict=False)
    }


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisConnector(Connector):
    """RediSearch vector indexes over HASH documents in one Redis database."""

    schemes = ("redis",)
    capabilities = Capabilities(
        filter_ops=ALL_OPS,
        id_types=frozenset(IdType),
        metrics=frozenset(Metric),
        named_vectors=True,
        stores_null_metadata=False,
        max_batch_rows=2000,
        max_batch_bytes=64 * 1024 * 1024,
        index_kinds=frozenset({"flat", "hnsw"}),
    )

    def __init__(self, uri: Any) -> None:
        super().__init__(uri)
        db = uri.path.strip("/") or uri.params.get("db", "0")
        if db != "0":
            raise ConfigError(
                f"{uri}: RediSearch keeps indexes in database 0 only", hint="drop the /db part"
            )
        self.client = redis.Redis(
            host=uri.host or "127.0.0.1",
            port=uri.port or 6379,
            username=uri.user,
            password=uri.secret("password"),
            ssl=uri.params.get("tls", "").lower() in ("1", "true", "yes"),
            protocol=2,
            socket_timeout=float(uri.params.get("timeout", 120)),
        )
        self._schemas: dict[str, CollectionSchema] = {}
        self._layouts: dict[str, Layout] = {}

    def close(self) -> None:
        self.client.close()

    def _call(self, what: str, *args: Any) -> Any:
        try:
            return _exec(self.client, *args)
        except redis.RedisError as exc:
            raise _wrap(exc, what) from None

    # -- discovery ---------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        """RediSearch indexes over HASH or JSON documents with a VECTOR field."""
        names = []
        for n in self._call("FT._LIST", "FT._LIST"):
            info = self._info(_text(n)) or {"index_definition": [], "attributes": []}
            kind = _text(_pairs(info["index_definition"]).get("key_type", b""))
            if kind in ("HASH", "JSON") and any(
                _attribute_info(a)[0].get("type") == b"VECTOR" for a in info["attributes"]
            ):
                names.append(_text(n))
        return sorted(names)

    def _info(self, name: str) -> dict[str, Any] | None:
        try:
            return _pairs(_exec(self.client, "FT.INFO", name))
        except redis.ResponseError as exc:
            if "unknown index" in str(exc).lower() or "no such index" in str(exc).lower():
                return None
            raise _wrap(exc, f"FT.INFO {name!r}") from None
        except redis.RedisError as exc:
            raise _wrap(exc, f"FT.INFO {name!r}") from None

    def describe(self, name: str) -> CollectionSchema:
        info = self._info(name)
        if info is None:
            raise ConfigError(f"{self.uri} has no RediSearch index {name!r}")
        stored = self._call("GET", "GET", SCHEMA_KEY + name)
        if stored:
            schema = CollectionSchema.from_json(stored.decode()).replace(name=name, engine="redis")
            layout = self._own_layout(schema)
        else:
            schema, layout = self._infer(name, info)
        self._schemas[name], self._layouts[name] = schema, layout
        return schema

    def _own_layout(self, schema: CollectionSchema) -> Layout:
        kinds = {"int64": "NUMERIC", "float64": "NUMERIC", "json": ""}
        attrs = {m.name: (attribute(m.name), kinds.get(m.type, "TAG")) for m in schema.metadata}
        algo = {
            v.name: "FLAT" if v.index and v.index.kind in ("flat", "none") else "HNSW"
            for v in schema.vectors
        }
        return Layout(
            prefixes=[f"{schema.name}:"],
            id_prefix=f"{schema.name}:",
            doc_field="document" if schema.has_document else None,
            fields={m.name: m.name for m in schema.metadata},
            attrs=attrs,
            missing={a for a, k in attrs.values() if k},
            vector_attrs={v.name: (attribute(v.name), algo[v.name]) for v in schema.vectors},
        )

    def _infer(self, name: str, info: dict[str, Any]) -> tuple[CollectionSchema, Layout]:
        definition = _pairs(info["index_definition"])
        is_json = _text(definition.get("key_type", b"HASH")) == "JSON"
        prefixes = [_text(p) for p in definition.get("prefixes", [])] or [""]
        vectors, metadata = [], []
        notes: dict[str, Any] = {"prefixes": prefixes}
        layout = Layout(prefixes, prefixes[0] if len(prefixes) == 1 else "", None, {}, {})
        layout.json = is_json
        for raw in info["attributes"]:
            a, flags = _attribute_info(raw)
            ident, attr, kind = _text(a["identifier"]), _text(a["attribute"]), _text(a["type"])
            if is_json:  # JSON paths: only top-level members ($.x, $.x[*]) map to fields
                top = _JSON_TOP.fullmatch(ident)
                if top is None:
                    if kind == "VECTOR":
                        raise ConfigError(f"vector path {ident!r} of {name!r} is not top-level")
                    notes[f"{ident}.filter"] = "nested JSON path: not filterable here"
                    continue
                ident = top.group(1)
            if kind == "VECTOR":
                dtype = _text(a.get("data_type", b"FLOAT32"))
                if dtype != "FLOAT32":
                    raise ConfigError(
                        f"vector field {ident!r} of {name!r} is {dtype}; vecmigrate moves FLOAT32"
                    )
                algo = _text(a.get("algorithm", b"FLAT"))
                params: dict[str, int | float | str] = (
                    {"M": int(a["M"]), "ef_construction": int(a["ef_construction"])}
                    if algo == "HNSW"
                    else {}
                )
                metric = _PORTABLE_METRIC[_text(a["distance_metric"])]
                index = IndexSpec(kind="hnsw" if algo == "HNSW" else "flat", params=params)
                vectors.append(
                    VectorField(name=ident, dim=int(a["dim"]), metric=metric, index=index)
                )
                layout.vector_attrs[ident] = (attr, algo)
            elif ident in _DOC_FIELDS and layout.doc_field is None and kind == "TEXT":
                layout.doc_field = ident
            else:
                mtype: MetadataType = "float64" if kind == "NUMERIC" else "string"
                metadata.append(MetadataField(name=ident, type=mtype, indexed=True))
                layout.fields[ident], layout.attrs[ident] = ident, (attr, kind)
                if "INDEXMISSING" in flags:
                    layout.missing.add(attr)
                if kind == "TAG" and "CASESENSITIVE" not in flags:
                    layout.nocase.add(attr)
                if kind == "TAG" and not is_json:  # 'a,b' is two tags: {f: 'a'} matches it
                    notes[f"{ident}.separator"] = _text(a.get("SEPARATOR", b","))
        if not vectors:
            raise ConfigError(f"index {name!r} has no VECTOR field")
        if is_json:  # JSON keeps types: infer them from a sample, as the other engines do
            skip = {*(v.name for v in vectors), layout.doc_field}
            rows = [{k: v for k, v in d.items() if k not in skip} for d in self._sample(layout)]
            metadata = list(infer_metadata_fields(rows))
            layout.fields = {m.name: m.name for m in metadata}
            notes["types"] = "inferred from up to 200 JSON documents"
        if int(info.get("hash_indexing_failures", 0)):
            notes["hash_indexing_failures"] = int(info["hash_indexing_failures"])
        notes.setdefault(
            "types",
            "NUMERIC read as float64, TAG/TEXT as string; unindexed fields in metadata_extra",
        )
        schema = CollectionSchema(
            name=name, vectors=tuple(vectors), metadata=tuple(metadata),
            has_document=layout.doc_field is not None, engine="redis", engine_settings=notes,
        )  # fmt: skip
        return schema, layout

    def _sample(self, layout: Layout, n: int = 200) -> list[dict[str, Any]]:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", layout.prefixes[0]) + "*"
        keys: list[bytes] = []
        cursor = 0
        while len(keys) < n:
            cursor, got = self._call("sampling", "SCAN", cursor, "MATCH", pattern, "COUNT",
                                     SCAN_COUNT, "TYPE", layout.key_type)  # fmt: skip
            keys += got
            if int(cursor) == 0:
                break
        docs = (
            [json.loads(d) for d in self._call("sampling", "JSON.MGET", *keys[:n], "$")]
            if keys
            else []
        )
        return [d[0] for d in docs if d and isinstance(d[0], dict)]

    def _schema(self, name: str) -> CollectionSchema:
        return self._schemas.get(name) or self.describe(name)

    def _layout(self, name: str) -> Layout:
        if name not in self._layouts:
            self.describe(name)
        return self._layouts[name]

    def _search(self, name: str, query: str, params: dict[str, Any], *extra: Any) -> list[Any]:
        flat = [x for kv in params.items() for x in kv]
        args = ["FT.SEARCH", name, query, *(["PARAMS", len(flat), *flat] if flat else []), *extra]
        # TIMEOUT 0: the module default (500 ms, ON_TIMEOUT RETURN) silently returns partial
        # results.
        result: list[Any] = self._call(f"search in {name!r}", *args, "TIMEOUT", 0, "DIALECT", 2)
        return result

    def count(self, name: str, filter: Filter | None = None) -> int:
        node = self._filter(self._schema(name), filter)
        q = _Query()
        query = compile_filter(node, self._layout(name), q) if node else "*"
        return int(self._search(name, query, q.params, "LIMIT", 0, 0)[0])

    # -- create ------------------------------------------------------------------------------
    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        name = schema.name
        if ":" in name or not name:
            raise ConfigError(f"redis collection name {name!r} must be non-empty and without ':'")
        if schema.sparse or schema.namespaces is not None:
            raise ConfigError(
                f"redis collections here have no sparse vectors or namespaces ({name!r})"
            )
        reserved = {"document", EXTRA} | {v.name for v in schema.vectors}
        clash = [m.name for m in schema.metadata if m.name in reserved]
        if clash:
            raise ConfigError(
                f"metadata fields {clash} clash with hash fields of {name!r}",
                hint="rename them in a mapping file",
            )
        if self._info(name) is not None:
            if if_exists == "fail":
                raise ConfigError(
                    f"redis index {name!r} already exists", hint="pass --if-exists replace or reuse"
                )
            if if_exists == "reuse":
                self.describe(name)
                return
            self.drop(name)
        args: list[Any] = ["FT.CREATE", name, "ON", "HASH", "PREFIX", 1, f"{name}:", "SCHEMA"]
        for v in schema.vectors:
            p = dict(v.index.params) if v.index else {}
            vec = ["TYPE", "FLOAT32", "DIM", v.dim, "DISTANCE_METRIC", _METRIC[v.metric]]
            if v.index and v.index.kind in ("flat", "none"):
                algo = "FLAT"
            else:
                algo = "HNSW"
                vec += [
                    "M",
                    int(p.get("M", p.get("m", 16))),
                    "EF_CONSTRUCTION",
                    int(p.get("ef_construction", 200)),
                ]
                if "ef_search" in p:
                    vec += ["EF_RUNTIME", int(p["ef_search"])]
            args += [v.name, "AS", attribute(v.name), "VECTOR", algo, len(vec), *vec]
        for m in schema.metadata:
            if m.type in ("int64", "float64"):
                args += [m.name, "AS", attribute(m.name), "NUMERIC", "INDEXMISSING"]
            elif m.type != "json":
                empty = ["INDEXEMPTY"] if m.type == "string" else []
                args += [
                    m.name,
                    "AS",
                    attribute(m.name),
                    "TAG",
                    "SEPARATOR",
                    SEP,
                    "CASESENSITIVE",
                    "INDEXMISSING",
                    *empty,
                ]
        self._call(f"creating {name!r}", *args)
        self._call(f"creating {name!r}", "SET", SCHEMA_KEY + name, schema.to_json())
        self._schemas[name], self._layouts[name] = schema, self._own_layout(schema)

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        # Each partition walks every key name (cheap) and reads only its crc32 bucket's records,
        # so few partitions for small collections.
        total = self.count(name)
        n = max(1, min(n, total // 100))
        return [
            Partition(
                id=f"bucket-{i}-of-{n}", spec={"bucket": i, "buckets": n}, estimated_rows=total // n
            )
            for i in range(n)
        ]

    def _key(self, layout: Layout, schema: CollectionSchema, rid: Any) -> bytes:
        return (layout.id_prefix + str(int(rid) if schema.id_type is IdType.INT else rid)).encode()

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
        layout = self._layout(name)
        bucket, buckets = partition.spec["bucket"], partition.spec["buckets"]
        pos: dict[str, Any] = json.loads(resume) if resume else {"p": 0, "cursor": 0, "after": None}
        p, cursor = pos["p"], pos["cursor"]
        after = bytes.fromhex(pos["after"]) if pos.get("after") else None
        buf: list[bytes] = []
        while p < len(layout.prefixes):
            pattern = re.sub(r"([*?\[\]\\])", r"\\\1", layout.prefixes[p]) + "*"
            nxt, keys = self._call(
                f"scanning {name!r}",
                "SCAN",
                cursor,
                "MATCH",
                pattern,
                "COUNT",
                SCAN_COUNT,
                "TYPE",
                layout.key_type,
            )
            mine = sorted(k for k in keys if buckets == 1 or zlib.crc32(k) % buckets == bucket)
            for key in mine:
                if after is not None and key <= after:
                    continue
                buf.append(key)
                if len(buf) == batch_rows:
                    token = {"p": p, "cursor": cursor, "after": key.hex()}
                    yield self._read(name, schema, layout, buf), json.dumps(token)
                    buf = []
            after, cursor = None, int(nxt)
            if cursor == 0:
                p += 1
        if buf:
            yield (
                self._read(name, schema, layout, buf),
                json.dumps({"p": p, "cursor": 0, "after": None}),
            )

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        layout = self._layout(name)
        return self._read(name, schema, layout, [self._key(layout, schema, i) for i in ids])

    def _read(
        self,
        name: str,
        schema: CollectionSchema,
        layout: Layout,
        keys: list[bytes],
    ) -> pa.RecordBatch:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            _exec(pipe, *(("JSON.GET", key) if layout.json else ("HGETALL", key)))
        try:
            hashes = pipe.execute()
        except redis.RedisError as exc:
            raise _wrap(exc, f"reading {name!r}") from None
        ids: list[Any] = []
        docs: list[str | None] = []
        metas: list[dict[str, Any]] = []
        vecs: dict[str, list[bytes]] = {v.name: [] for v in schema.vectors}
        cut = len(layout.id_prefix.encode())
        types = {m.name: m.type for m in schema.metadata}
        for key, raw in zip(keys, hashes, strict=True):
            if not raw:
                continue  # missing (fetch) or deleted since SCAN listed it
            h = json.loads(raw) if layout.json else {_text(k): v for k, v in _pairs_list(raw)}
            if not isinstance(h, dict):
                raise DataError("not a JSON object", collection=name, record_id=key.decode())
            rid: Any = key[cut:].decode()
            if schema.id_type is IdType.INT:
                try:
                    rid = int(rid)
                except ValueError:
                    raise DataError(
                        "key does not end in an int id", collection=name, record_id=rid
                    ) from None
            for v in schema.vectors:
                blob = h.pop(v.name, None)
                if layout.json and isinstance(blob, list) and len(blob) == v.dim:
                    blob = np.asarray(blob, dtype="<f4").tobytes()
                if not isinstance(blob, bytes) or len(blob) != 4 * v.dim:
                    got = "no vector" if blob is None else f"{str(blob)[:40]}"
                    raise DataError(
                        f"{got}: expected {v.dim} FLOAT32 values",
                        collection=name,
                        record_id=rid,
                        field=v.name,
                    )
                vecs[v.name].append(blob)
            doc = h.pop(layout.doc_field, None) if layout.doc_field else None
            if layout.json:  # typed already; build_batch files what does not fit as extra
                ids.append(rid)
                docs.append(doc if isinstance(doc, str) or doc is None else encode_json(doc))
                metas.append(h)
                continue
            meta: dict[str, Any] = json.loads(h.pop(EXTRA)) if EXTRA in h else {}
            for mname, hfield in layout.fields.items():
                if hfield in h:
                    meta[mname] = _decode(h.pop(hfield), types[mname], name, rid, mname)
            for leftover, value in h.items():  # fields no schema names: kept, never dropped
                meta[leftover] = _decode(value, "string", name, rid, leftover)
            ids.append(rid)
            docs.append(None if doc is None else _decode(doc, "string", name, rid, "document"))
            metas.append(meta)
        arrays = {
            v.name: np.frombuffer(b"".join(vecs[v.name]), dtype="<f4").reshape(len(ids), v.dim)
            for v in schema.vectors
        }
        return build_batch(
            schema, ids, arrays, documents=docs if schema.has_document else None, metadata=metas
        )

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        schema = self._schema(name)
        layout = self._layout(name)
        batch = conform(batch, schema)
        if layout.json:
            self._upsert_json(name, schema, layout, batch)
            return
        ids = batch.column("id").to_pylist()
        rows: list[list[Any]] = [[] for _ in ids]
        if schema.has_document and layout.doc_field:
            for row, doc in zip(rows, batch.column("document").to_pylist(), strict=True):
                if doc is not None:
                    row += [layout.doc_field, doc.encode()]
        for v in schema.vectors:
            m = np.ascontiguousarray(vectors_to_numpy(batch.column(v.name)), dtype="<f4")
            blob, width = m.tobytes(), 4 * v.dim
            for i, row in enumerate(rows):
                row += [v.name, blob[i * width : (i + 1) * width]]
        typed = {m.name: m for m in schema.metadata}
        for i, meta in enumerate(metadata_rows(batch, schema)):
            extra: dict[str, Any] = {}
            for key, value in meta.items():
                f = typed.get(key)
                if f is None or key not in layout.fields:
                    extra[key] = value
                    continue
                rows[i] += [layout.fields[key], _encode(value, f, name, ids[i])]
            if extra:
                rows[i] += [EXTRA, encode_json(extra)]
        known = [layout.doc_field or "", *(v.name for v in schema.vectors), *layout.fields.values()]
        known = [f for f in dict.fromkeys([*known, EXTRA]) if f]
        pipe = self.client.pipeline(transaction=False)
        owners = []
        for rid, row in zip(ids, rows, strict=True):
            rkey = self._key(layout, schema, rid)
            _exec(pipe, "HSET", rkey, *row)
            owners.append(rid)
            # HSET then HDEL (not DEL + HSET): the record never vanishes from searches, and an
            # HDEL that removes nothing does not re-index it.
            absent = set(known) - {_text(f) for f in row[::2]}
            if absent:
                _exec(pipe, "HDEL", rkey, *sorted(absent))
                owners.append(rid)
        try:
            results = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            raise _wrap(exc, f"upsert into {name!r}") from None
        for rid, res in zip(owners, results, strict=True):
            if isinstance(res, Exception):
                raise DataError(f"redis refused the record: {res}", collection=name, record_id=rid)

    def _upsert_json(
        self, name: str, schema: CollectionSchema, layout: Layout, batch: pa.RecordBatch
    ) -> None:
        """Whole JSON documents (JSON.SET replaces them): vectors as arrays of numbers."""
        ids = batch.column("id").to_pylist()
        docs = batch.column("document").to_pylist() if schema.has_document else [None] * len(ids)
        vectors = {v.name: vectors_to_numpy(batch.column(v.name)).tolist() for v in schema.vectors}
        pipe = self.client.pipeline(transaction=False)
        for i, meta in enumerate(metadata_rows(batch, schema)):
            body = {**meta, **{n: vs[i] for n, vs in vectors.items()}}
            if docs[i] is not None and layout.doc_field:
                body[layout.doc_field] = docs[i]
            try:
                text = json.dumps(body, allow_nan=False)
            except ValueError:
                raise DataError(
                    "NaN or infinity in JSON", collection=name, record_id=ids[i]
                ) from None
            _exec(pipe, "JSON.SET", self._key(layout, schema, ids[i]), "$", text)
        try:
            results = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            raise _wrap(exc, f"upsert into {name!r}") from None
        for rid, res in zip(ids, results, strict=True):
            if isinstance(res, Exception):
                raise DataError(f"redis refused the record: {res}", collection=name, record_id=rid)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        schema, layout = self._schema(name), self._layout(name)
        keys = [self._key(layout, schema, i) for i in ids]
        for start in range(0, len(keys), 1000):
            self._call(f"deleting from {name!r}", "UNLINK", *keys[start : start + 1000])

    def drop(self, name: str) -> None:
        own = bool(self._call("drop", "EXISTS", SCHEMA_KEY + name))
        if self._info(name) is not None:
            # Other tools' collections: DD deletes exactly the documents the index holds.
            self._call(f"dropping {name!r}", "FT.DROPINDEX", name, *([] if own else ["DD"]))
        if own:  # every key under the prefix, indexed or not
            cursor = 0
            pattern = re.sub(r"([*?\[\]\\])", r"\\\1", name) + ":*"
            while True:
                cursor, keys = self._call(
                    "drop", "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT
                )
                if keys:
                    self._call(f"dropping {name!r}", "UNLINK", *keys)
                if int(cursor) == 0:
                    break
            self._call("drop", "DEL", SCHEMA_KEY + name)
        self._schemas.pop(name, None)
        self._layouts.pop(name, None)

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
        schema, layout = self._schema(name), self._layout(name)
        node = self._filter(schema, filter)
        q = _Query()
        where = compile_filter(node, layout, q) if node else "*"
        vf = schema.vector_field(vector_field)
        attr, algo = layout.vector_attrs[vf.name]
        ef = ""
        if algo == "HNSW":
            ef = f" EF_RUNTIME {int((params or {}).get('ef_search', max(40, 2 * k)))}"
        where = f"({where})" if node else "*"
        query = f"{where}=>[KNN {int(k)} @{attr} $__vec{ef} AS {SCORE}]"
        pipe = self.client.pipeline(transaction=False)
        flat = [x for kv in q.params.items() for x in kv]
        for vec in np.ascontiguousarray(vectors, dtype="<f4"):
            _exec(pipe,
                "FT.SEARCH", name, query, "PARAMS", len(flat) + 2, *flat, "__vec", vec.tobytes(),
                "SORTBY", SCORE, "RETURN", 1, SCORE, "LIMIT", 0, int(k), "TIMEOUT", 0, "DIALECT", 2,
            )  # fmt: skip
        try:
            replies = pipe.execute()
        except redis.RedisError as exc:
            raise _wrap(exc, f"search in {name!r}") from None
        cut = len(layout.id_prefix.encode())
        ids: list[list[Any]] = []
        scores: list[list[float]] = []
        for reply in replies:
            keys, fields = reply[1::2], reply[2::2]
            row = [k[cut:].decode() for k in keys]
            ids.append([int(r) for r in row] if schema.id_type is IdType.INT else row)
            scores.append([float(_pairs(f)[SCORE]) for f in fields])
        return ids, scores


_ATTR_KEYS = frozenset(
    {"identifier", "attribute", "type", "algorithm", "data_type", "dim", "distance_metric",
     "M", "ef_construction", "ef_runtime", "epsilon", "SEPARATOR", "WEIGHT", "initial_cap"}
)  # fmt: skip


def _attribute_info(raw: list[Any]) -> tuple[dict[str, Any], set[str]]:
    """One FT.INFO attribute: key/value pairs mixed with bare flags (SORTABLE, INDEXMISSING)."""
    values: dict[str, Any] = {}
    flags: set[str] = set()
    i = 0
    while i < len(raw):
        token = _text(raw[i])
        if token in _ATTR_KEYS and i + 1 < len(raw):
            values[token] = raw[i + 1]
            i += 2
        else:
            flags.add(token)
            i += 1
    return values, flags


def _exec(target: Any, *args: Any) -> Any:
    """``execute_command`` on a client or pipeline (redis-py leaves it untyped)."""
    return target.execute_command(*args)


def _pairs_list(raw: Any) -> list[tuple[Any, Any]]:
    """HGETALL replies: a dict (RESP3 / parsed) or a flat list (RESP2, raw)."""
    if isinstance(raw, dict):
        return list(raw.items())
    return list(zip(raw[::2], raw[1::2], strict=True))


def _encode(value: Any, f: MetadataField, name: str, rid: Any) -> bytes:
    """A typed metadata value as hash field text; refuses what TAG indexing would alter."""
    if f.type == "json":
        return encode_json(value).encode()
    if f.type == "bool":
        return b"true" if value else b"false"
    if f.type == "int64":
        return str(int(value)).encode()
    if f.type == "float64":
        if value != value:  # RediSearch leaves a document with a NaN NUMERIC out of the index
            raise DataError(
                "NaN cannot be indexed as NUMERIC", collection=name, record_id=rid, field=f.name
            )
        return repr(float(value)).encode()
    items = value if f.type.startswith("list<") else [value]
    if f.type == "list<int64>":
        items = [str(int(x)) for x in items]
    elif f.type == "list<float64>":
        items = [repr(float(x)) for x in items]
    for x in items:
        if SEP in x or x != x.strip(_TRIMMED) or (x == "" and f.type.startswith("list<")):
            raise DataError(
                "RediSearch TAG values cannot start or end with whitespace, contain U+001F, "
                "or be empty list elements (filters could not match them exactly)",
                collection=name,
                record_id=rid,
                field=f.name,
                hint="strip the value with a mapping, or map the field to json",
            )
    return SEP.join(items).encode()


def _decode(raw: bytes, mtype: str, name: str, rid: Any, fname: str) -> Any:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise DataError(
            "hash field is not UTF-8 text", collection=name, record_id=rid, field=fname
        ) from None
    if mtype == "string":
        return text
    if mtype == "json":
        return json.loads(text)
    if mtype == "bool":
        return text == "true"
    if mtype == "int64":
        return int(text)
    if mtype == "float64":
        return float(text)
    parts = text.split(SEP) if text else []
    if mtype == "list<int64>":
        return [int(x) for x in parts]
    if mtype == "list<float64>":
        return [float(x) for x in parts]
    return parts
