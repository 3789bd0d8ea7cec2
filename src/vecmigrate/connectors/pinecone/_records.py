"""Pinecone's data mapping, without the client: index names, ids, metadata, filters, the
stored schema and records <-> batches. ``connectors.pinecone`` documents what each keeps."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import zlib
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pyarrow as pa

from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import Bool, Cond, Node
from vecmigrate.model import CollectionSchema, IdType, IndexSpec, MetadataField, Metric, VectorField
from vecmigrate.records import build_batch, infer_metadata_fields

DOC_KEY = "_vecmigrate_document"
EXTRA_KEY = "_vecmigrate_extra"
SCHEMA_TAG = "vecmigrate-schema"
ID_ESCAPE = "~u:"
MAX_METADATA_BYTES = 40 * 1024
MAX_ID_LENGTH = 512
METRIC = {Metric.COSINE: "cosine", Metric.DOT: "dotproduct", Metric.L2: "euclidean"}
_FROM_METRIC = {v: k for k, v in METRIC.items()}
SCHEMA_NAMESPACE = "__vecmigrate_schema__"
_VALID_INDEX = re.compile(r"^[a-z0-9]([a-z0-9-]{0,43}[a-z0-9])?$")
_NEGATE = {
    "$eq": "$ne", "$ne": "$eq", "$in": "$nin", "$nin": "$in",
    "$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt",
}  # fmt: skip


def index_name(collection: str) -> str:
    """The Pinecone index that holds ``collection`` (valid names are kept as they are)."""
    if _VALID_INDEX.match(collection):
        return collection
    base = re.sub(r"[^a-z0-9]+", "-", collection.lower()).strip("-")[:36].strip("-") or "c"
    return f"{base}-{hashlib.sha256(collection.encode()).hexdigest()[:8]}"


def index_url(described_host: str, control_plane: str | None) -> str:
    """The URL to open an index at, with an explicit scheme: the control plane's.

    The API describes an index by a bare host, which the client reads as https (its
    index model even writes ``https://`` in). Against a plain-http control plane
    (Pinecone Local, a test double) the indexes are plain http too, so the scheme is
    always decided here, from the connection URI, never left to the client's default."""
    bare = described_host.strip()
    for prefix in ("https://", "http://"):
        if bare.lower().startswith(prefix):
            bare = bare[len(prefix) :]
            break
    plain = (control_plane or "").strip().lower().startswith("http://")
    return ("http://" if plain else "https://") + bare


def to_pinecone_id(value: Any) -> str:
    """Record id as a Pinecone id: ASCII kept, anything else escaped reversibly."""
    text = str(value)
    if text.isascii() and "\x00" not in text and not text.startswith(ID_ESCAPE):
        return text
    return ID_ESCAPE + quote(text, safe="")


def from_pinecone_id(pid: str) -> str:
    """Inverse of ``to_pinecone_id``."""
    return unquote(pid[len(ID_ESCAPE) :]) if pid.startswith(ID_ESCAPE) else pid


def _list_token(field: MetadataField, value: Any) -> str:
    """A list<int64>/list<float64> element as the decimal text it is stored as."""
    if field.type == "list<int64>" and float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def compile_filter(node: Node, negate: bool = False) -> dict[str, Any]:
    """A portable filter as Pinecone's, keeping the portable semantics (see filters.py).

    ``$not`` is pushed down to the leaves; a negated comparison is "missing OR the opposite
    comparison", and ``$ne``/``$nin`` require the field to exist, because Pinecone leaves
    undocumented whether they match records lacking it.
    """
    if isinstance(node, Bool):
        if node.op == "$not":
            return compile_filter(node.children[0], not negate)
        op = node.op if not negate else ("$or" if node.op == "$and" else "$and")
        parts = [compile_filter(c, negate) for c in node.children]
        return parts[0] if len(parts) == 1 else {op: parts}
    return _leaf(node, negate)


def _leaf(c: Cond, negate: bool) -> dict[str, Any]:
    key, f = c.field.name, c.field
    if c.op == "$exists":
        return {key: {"$exists": bool(c.value) != negate}}
    op = _NEGATE[c.op] if negate else c.op
    value = c.value
    if f.type in ("list<int64>", "list<float64>"):
        value = (
            [_list_token(f, v) for v in value] if isinstance(value, list) else _list_token(f, value)
        )
    if f.type.startswith("list<") and op == "$ne":  # "does not contain", as Pinecone spells it
        op, value = "$nin", [value]
    cond = {key: {op: value}}
    if negate:
        return {"$or": [{key: {"$exists": False}}, cond]}
    if op in ("$ne", "$nin"):
        return {"$and": [{key: {"$exists": True}}, cond]}
    return cond


# -- schema in tags -------------------------------------------------------------------------
def schema_tags(schema: CollectionSchema) -> dict[str, str] | None:
    """The schema as up to 18 tags of 120 characters, or None when it does not fit."""
    blob = base64.b64encode(zlib.compress(schema.to_json().encode(), 9)).decode()
    chunks = [blob[i : i + 120] for i in range(0, len(blob), 120)]
    if len(chunks) > 18:
        return None
    return {f"{SCHEMA_TAG}-{i:02d}": c for i, c in enumerate(chunks)}


def schema_from_tags(tags: dict[str, str]) -> CollectionSchema | None:
    keys = sorted(k for k in tags if k.startswith(f"{SCHEMA_TAG}-"))
    if not keys:
        return None
    blob = "".join(tags[k] for k in keys)
    try:
        text = zlib.decompress(base64.b64decode(blob)).decode()
    except (ValueError, zlib.error) as exc:  # binascii.Error and UnicodeError are ValueErrors
        raise ConfigError(f"the vecmigrate schema in the index tags is unreadable: {exc}") from None
    return CollectionSchema.from_json(text)


# -- metadata codec -------------------------------------------------------------------------
def decode_value(f: MetadataField | None, value: Any) -> Any:
    """A stored value back to its portable type (left as is when it does not parse)."""
    if f is None:
        return value
    try:
        if f.type == "int64" and isinstance(value, float) and value.is_integer():
            return int(value)
        if f.type == "list<int64>" and isinstance(value, list):
            return [int(x) for x in value]
        if f.type == "list<float64>" and isinstance(value, list):
            return [float(x) for x in value]
        if f.type == "json" and isinstance(value, str):
            return json.loads(value)
    except ValueError:
        return value
    return value


def pop_extra(md: dict[str, Any]) -> dict[str, Any]:
    """Pop the JSON object vecmigrate keeps under EXTRA_KEY (another writer's value under
    that key stays an ordinary key)."""
    raw = md.get(EXTRA_KEY)
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return {}
    del md[EXTRA_KEY]
    return value


def _encode_value(f: MetadataField, value: Any, name: str, rid: Any) -> Any:
    if f.type == "int64" and abs(value) > 2**53:
        raise DataError(
            "Pinecone stores numbers as float64: this int would not round-trip",
            collection=name, record_id=rid, field=f.name,
        )  # fmt: skip
    if f.type == "float64" and not math.isfinite(value):
        raise DataError(
            "Pinecone metadata numbers must be finite", collection=name, record_id=rid, field=f.name
        )
    if f.type in ("list<int64>", "list<float64>"):
        return [_list_token(f, x) for x in value]
    return value  # str, bool, list<string>, and json (already JSON text)


def encode_metadata(
    batch: pa.RecordBatch, schema: CollectionSchema, doc_key: str, name: str, ids: list[Any]
) -> list[tuple[dict[str, Any], int]]:
    """Per record: the Pinecone metadata and its JSON size; DataError over 40 KB."""
    n = batch.num_rows
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    names = batch.schema.names
    if "metadata" in names:
        struct = batch.column(names.index("metadata"))
        by_name = {f.name: f for f in schema.metadata}
        for child_field, child in zip(struct.type, struct.flatten(), strict=True):
            f = by_name[child_field.name]
            for i, v in enumerate(child.to_pylist()):
                if v is not None:
                    rows[i][f.name] = _encode_value(f, v, name, ids[i])
    if "metadata_extra" in names:
        for i, raw in enumerate(batch.column(names.index("metadata_extra")).to_pylist()):
            if raw:
                rows[i][EXTRA_KEY] = raw
    if schema.has_document and "document" in names:
        for i, doc in enumerate(batch.column(names.index("document")).to_pylist()):
            if doc is not None:
                rows[i][doc_key] = doc
    out = []
    for i, md in enumerate(rows):
        size = len(json.dumps(md, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_METADATA_BYTES:
            big = max(md, key=lambda k: len(json.dumps(md[k], ensure_ascii=False).encode()))
            where = {doc_key: "document", EXTRA_KEY: "metadata_extra"}.get(big, big)
            raise DataError(
                f"metadata is {size:,} bytes; Pinecone stores at most {MAX_METADATA_BYTES:,} "
                f"bytes per record ({where!r} is the largest part)",
                collection=name, record_id=ids[i], field=where,
                hint="shorten or drop that field with a mapping",
            )  # fmt: skip
        out.append((md, size))
    return out


def records_to_batch(
    schema: CollectionSchema, ns: str, recs: list[Any], doc_key: str
) -> pa.RecordBatch:
    """Fetched records of namespace ``ns`` in the batch layout."""
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


def check_ids(name: str, ids: list[Any], pids: list[str]) -> None:
    """Refuse ids longer than Pinecone's limit once encoded."""
    for rid, pid in zip(ids, pids, strict=True):
        if len(pid) > MAX_ID_LENGTH:
            raise DataError(
                f"id is {len(pid)} characters as a Pinecone id (at most {MAX_ID_LENGTH})",
                collection=name, record_id=rid, field="id",
            )  # fmt: skip


def check_vectors(name: str, ids: list[Any], matrix: np.ndarray, field: str) -> None:
    """Refuse all-zero dense vectors, which Pinecone rejects."""
    zero = np.flatnonzero(~matrix.any(axis=1))
    if len(zero):
        raise DataError(
            "Pinecone refuses all-zero dense vectors",
            collection=name, record_id=ids[zero[0]], field=field,
        )  # fmt: skip


def namespace_groups(name: str, ids: list[Any], spaces: list[str]) -> dict[str, list[int]]:
    """Row positions per namespace; DataError for a namespace Pinecone cannot hold."""
    groups: dict[str, list[int]] = {}
    for i, ns in enumerate(spaces):
        if not ns.isascii() or len(ns) > 512 or ns == SCHEMA_NAMESPACE:
            raise DataError(
                "Pinecone namespaces are 1-512 ASCII characters (and not the reserved "
                f"{SCHEMA_NAMESPACE!r})", collection=name, record_id=ids[i], field="namespace",
            )  # fmt: skip
        groups.setdefault(ns, []).append(i)
    return groups


# -- schemas --------------------------------------------------------------------------------
def infer_schema(
    name: str, dim: int, metric: Metric, rows: list[dict[str, Any]], doc: str | None
) -> CollectionSchema:
    """Schema of an index written by another tool, from sampled metadata ``rows``."""
    fields = infer_metadata_fields([{k: v for k, v in r.items() if k != doc} for r in rows])
    return CollectionSchema(
        name=name,
        vectors=(VectorField(dim=dim, metric=metric, index=IndexSpec(kind="auto")),),
        metadata=fields,
        has_document=bool(doc and any(doc in r for r in rows)),
        engine_settings={"document_key": doc, "metadata_types": "inferred (numbers: float64)"},
    )


def dense_field(model: Any) -> tuple[int, Metric]:
    """Dimension and metric of a dense index's model; ConfigError for other index kinds."""
    field = model.schema.fields.get("_values")
    dim = getattr(field, "dimension", None)
    if dim is None:
        raise ConfigError(
            f"Pinecone index {model.name!r} is not a dense vector index",
            hint="document, sparse and integrated-embedding indexes are not supported",
        )
    return int(dim), _FROM_METRIC[str(field.metric).lower()]


def described(
    name: str,
    model: Any,
    stored: CollectionSchema,
    namespaces: dict[str, int],
    serverless: bool,
    scoped_namespace: str | None,
) -> CollectionSchema:
    """The schema of ``name``: the stored (or inferred) one, with what the index says
    (dimension, metric, namespaces found, deployment) winning."""
    dim, metric = dense_field(model)
    v = stored.vector.model_copy(update={"dim": dim, "metric": metric})
    ns: tuple[str, ...] | None = None
    if scoped_namespace is None and (stored.namespaces is not None or set(namespaces) - {""}):
        ns = tuple(sorted(set(stored.namespaces or ()) | set(namespaces)))
    return stored.replace(
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


def collection_name(model: Any) -> str:
    """The collection an index holds: its stored schema's name when that maps to this
    index, else the index name (describe says what is wrong with unreadable tags)."""
    try:
        stored = schema_from_tags(model.tags or {})
    except ConfigError:
        stored = None
    return stored.name if stored and index_name(stored.name) == model.name else model.name


def check_creatable(
    schema: CollectionSchema, scope: str | None, namespace: str | None, doc_key: str
) -> None:
    """Refuse what an index (or a URI scoped to one index / namespace) cannot hold."""
    if scope is not None and index_name(schema.name) != index_name(scope):
        raise ConfigError(
            f"this URI is scoped to index {scope!r}, not {schema.name!r}",
            hint=f"pass --target-collection {scope} or drop the index from the URI",
        )
    if len(schema.vectors) != 1 or schema.sparse:
        raise ConfigError(f"a Pinecone index holds one dense vector; {schema.name!r} has more")
    clash = {doc_key, EXTRA_KEY} & {m.name for m in schema.metadata}
    if clash:
        raise ConfigError(
            f"metadata field {sorted(clash)[0]!r} of {schema.name!r} is a key vecmigrate "
            "reserves in Pinecone metadata",
            hint="rename the field with a mapping (fields: {NAME: {rename: ...}})",
        )
    if schema.namespaces is not None and namespace is not None:
        raise ConfigError(
            f"{schema.name!r} has namespaces but this URI is scoped to namespace {namespace!r}",
            hint="drop ?namespace= from the target URI to keep the source's namespaces",
        )
