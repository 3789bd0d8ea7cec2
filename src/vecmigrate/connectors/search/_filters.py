"""What Elasticsearch and OpenSearch share: the document layout, query DSL filters, bulk
indexing with per-item errors, and point-in-time scans with ``search_after``.

Used only by ``_searchbase.py`` (the connector both engines derive from); nothing here
calls a client.

Layout of a document vecmigrate writes (``_id`` is the record id as a string):
``vecmigrate_id`` (keyword copy of the id: the deterministic sort key of scans),
``vecmigrate_slot`` (long, a stable hash of the id: partitions are disjoint slot ranges),
``document`` (text), one vector field per vector, one typed field per metadata field
(lists are multi-valued fields, so the list type lives in the stored schema) and
``vecmigrate_extra`` (JSON of values that did not fit their field's type). The vecmigrate
schema is kept in the mapping's ``_meta`` so ``describe`` round-trips.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError
from vecmigrate.filters import ALL_OPS, Bool, Cond, Node
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    Metric,
)
from vecmigrate.records import build_batch, encode_json, metadata_rows, value_fits, vectors_to_numpy

ID_FIELD = "vecmigrate_id"
SLOT_FIELD = "vecmigrate_slot"
EXTRA_FIELD = "vecmigrate_extra"
DOC_FIELD = "document"
META_KEY = "vecmigrate"
SLOTS = 2**32
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
MAX_ID_BYTES = 512  # both engines refuse longer _id values
_RANGE = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
_FIELD_TYPE = {
    "string": "keyword",
    "int64": "long",
    "float64": "double",
    "bool": "boolean",
    "list<string>": "keyword",
    "list<int64>": "long",
    "list<float64>": "double",
}
_PORTABLE = {
    "keyword": "string",
    "text": "string",
    "match_only_text": "string",
    "constant_keyword": "string",
    "long": "int64",
    "integer": "int64",
    "short": "int64",
    "byte": "int64",
    "unsigned_long": "int64",
    "double": "float64",
    "float": "float64",
    "half_float": "float64",
    "scaled_float": "float64",
    "boolean": "bool",
}
_BAD_INDEX = re.compile(r'[\\/*?"<>| ,#:A-Z]')
_METADATA_FIELDS = frozenset(
    {"_id", "_index", "_source", "_routing", "_field_names", "_ignored", "_seq_no", "_version"}
    | {"_primary_term", "_doc_count", "_tier", "_data_stream_timestamp", "_size"}
)
# Where the engines name the field in an item error: "failed to parse field [year] ...",
# "The [dense_vector] field [vector] ...", "immense term in field=\"genre\" ...".
_PARSE_FIELD = re.compile(
    r"failed to parse field \[([^\]]+)\]|field \[([^\]]+)\]|in field=\"([^\"]+)\""
)


def slot(record_id: Any) -> int:
    """Stable 32-bit hash of an id: which partition (slot range) holds the record."""
    digest = hashlib.blake2b(str(record_id).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def query(node: Node | None) -> dict[str, Any]:
    """A portable filter as a query DSL ``bool`` with vecmigrate's fixed semantics."""
    if node is None:
        return {"match_all": {}}
    if isinstance(node, Bool):
        parts = [query(c) for c in node.children]
        if node.op == "$and":
            return {"bool": {"filter": parts}}
        if node.op == "$or":
            return {"bool": {"should": parts, "minimum_should_match": 1}}
        return {"bool": {"must_not": parts}}
    return _leaf(node)


def _leaf(node: Cond) -> dict[str, Any]:
    key = node.field.name
    exists = {"exists": {"field": key}}
    if node.op == "$exists":
        if node.field.type.startswith("list<"):  # an empty list is indexed as no value
            raise ConfigError(f"Elasticsearch/OpenSearch cannot tell [] from a missing {key!r}")
        return exists if node.value else {"bool": {"must_not": [exists]}}
    if node.op == "$eq":  # on a multi-valued (list) field a term query means "contains"
        return {"term": {key: node.value}}
    if node.op == "$in":
        return {"terms": {key: node.value}}
    if node.op in _RANGE:
        return {"range": {key: {_RANGE[node.op]: node.value}}}
    # $ne / $nin: must_not alone would also match records lacking the field.
    neg = {"term": {key: node.value}} if node.op == "$ne" else {"terms": {key: node.value}}
    return {"bool": {"filter": [exists], "must_not": [neg]}}


def tls_refused(engine: str) -> TerminalError:
    """A TLS failure is not transient: retrying will not make a certificate trusted."""
    return TerminalError(
        f"the TLS handshake with {engine} failed (certificate not trusted or not TLS)",
        hint="pass ?ca=/path/to/ca.pem, or ?verify=0 to skip certificate checks",
    )


def search_capabilities(**overrides: Any) -> Capabilities:
    """Capabilities both engines share; each module overrides what differs."""
    shared: dict[str, Any] = {
        "id_types": frozenset(IdType),
        "metrics": frozenset(Metric),
        "named_vectors": True,
        "stores_null_metadata": False,
        "filter_ops": ALL_OPS,
        "max_batch_rows": 1000,
        # Vectors travel as JSON text (~3x their float32 size): ~15 MB bulk requests.
        "max_batch_bytes": 5 * 1024 * 1024,
        "index_kinds": frozenset({"hnsw", "flat"}),
    }
    return Capabilities(**{**shared, **overrides})


def index_properties(schema: CollectionSchema, engine: str) -> dict[str, Any]:
    """Mapping properties of everything but the vectors; refuses names the engines refuse
    (index names: lowercase, no ``\\/*?"<>| ,#:``, not starting with ``-_+``) or that
    collide with vecmigrate's own fields or the engines' metadata fields."""
    if _BAD_INDEX.search(schema.name) or schema.name.startswith(("-", "_", "+", ".")):
        raise ConfigError(
            f"{schema.name!r} is not a valid {engine} index name",
            hint='index names are lowercase, without \\/*?"<>| ,#: (use --target-collection)',
        )
    reserved = {ID_FIELD, SLOT_FIELD, EXTRA_FIELD, DOC_FIELD} | {v.name for v in schema.vectors}
    reserved |= _METADATA_FIELDS
    props: dict[str, Any] = {
        ID_FIELD: {"type": "keyword"},
        SLOT_FIELD: {"type": "long"},
        EXTRA_FIELD: {"type": "keyword", "index": False, "doc_values": False},
    }
    if schema.has_document:
        props[DOC_FIELD] = {"type": "text"}
    for m in schema.metadata:
        if m.name in reserved or "." in m.name:
            raise ConfigError(
                f"metadata field {m.name!r} of {schema.name!r} collides with a field "
                f"vecmigrate uses in {engine} (or contains '.')",
                hint="rename it with a mapping (--map)",
            )
        props[m.name] = (
            {"type": _FIELD_TYPE[m.type]}
            if m.type in _FIELD_TYPE
            else {"type": "keyword", "index": False, "doc_values": False}
        )
    return props


def portable_types(
    props: dict[str, Any], hits: list[dict[str, Any]], doc_field: str = DOC_FIELD
) -> dict[str, str]:
    """Portable metadata types of a foreign mapping's non-vector properties (objects,
    dates and other types become ``json``); a mapping cannot say whether a field holds
    arrays, so sampled documents decide list-ness."""
    meta = {
        key: _PORTABLE.get(spec.get("type", "object"), "json")
        for key, spec in props.items()
        if spec.get("type") not in ("dense_vector", "knn_vector")
        and key not in (ID_FIELD, SLOT_FIELD, EXTRA_FIELD, doc_field)
    }
    for key, kind in list(meta.items()):
        if kind != "json" and any(isinstance(h["_source"].get(key), list) for h in hits):
            meta[key] = f"list<{kind}>"
    return meta


def hits_to_batch(hits: list[dict[str, Any]], schema: CollectionSchema) -> pa.RecordBatch:
    """Search hits (``_id`` + ``_source``) as a batch in the schema's layout."""
    n = len(hits)
    sources = [h.get("_source") or {} for h in hits]
    ids: list[Any] = [h["_id"] for h in hits]
    if schema.id_type is IdType.INT:
        ids = [int(i) for i in ids]
    vectors: dict[str, np.ndarray] = {}
    for v in schema.vectors:
        try:
            rows = [s[v.name] for s in sources]
            vectors[v.name] = np.asarray(rows, dtype=np.float32).reshape(n, v.dim)
        except (KeyError, ValueError):
            bad = next(
                (h["_id"] for h, s in zip(hits, sources, strict=True) if v.name not in s), None
            )
            raise DataError(
                "record has no vector (or one of the wrong size)",
                collection=schema.name,
                record_id=bad,
                field=v.name,
            ) from None
    json_fields = {m.name for m in schema.metadata if m.type == "json"}
    foreign = bool(schema.engine_settings.get("foreign"))
    doc_field = str(schema.engine_settings.get("document_field", DOC_FIELD))
    metas: list[dict[str, Any]] = []
    for s in sources:
        row = {}
        for m in schema.metadata:
            value = s.get(m.name)
            if value is not None:
                # vecmigrate stores json values as text; other tools' objects are objects.
                is_text = m.name in json_fields and isinstance(value, str) and not foreign
                row[m.name] = json.loads(value) if is_text else value
        if s.get(EXTRA_FIELD):
            row.update(json.loads(s[EXTRA_FIELD]))
        metas.append(row)
    docs = [s.get(doc_field) for s in sources] if schema.has_document else None
    return build_batch(schema, ids, vectors, documents=docs, metadata=metas)


def _vector_texts(batch: pa.RecordBatch, name: str, ids: list[Any], collection: str) -> list[str]:
    """Each row's vector as JSON array text, formatted by Arrow (shortest float32 text,
    exact once parsed as float32) rather than per element in Python."""
    matrix = vectors_to_numpy(batch.column(name))
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        raise DataError(
            "NaN or infinite vector values cannot be indexed",
            collection=collection,
            record_id=ids[int(np.argmin(finite))],
            field=name,
        )
    n, dim = matrix.shape
    texts = pc.cast(pa.array(matrix.reshape(-1)), pa.string()).to_pylist()
    return ["[" + ",".join(texts[i * dim : (i + 1) * dim]) + "]" for i in range(n)]


def _id_text(rid: Any, collection: str) -> str:
    key = str(rid)
    if not key or len(key.encode()) > MAX_ID_BYTES:
        raise DataError(
            f"an _id must be 1 to {MAX_ID_BYTES} bytes long",
            collection=collection,
            record_id=rid,
            field="id",
        )
    return key


def bulk_index_lines(batch: pa.RecordBatch, schema: CollectionSchema) -> list[str]:
    """NDJSON ``index`` actions and sources of a batch (see the module docstring)."""
    name = schema.name
    ids = batch.column("id").to_pylist()
    keys = [_id_text(rid, name) for rid in ids]
    rows = metadata_rows(batch, schema)
    docs = batch.column("document").to_pylist() if "document" in batch.schema.names else None
    vecs = {json.dumps(v.name): _vector_texts(batch, v.name, ids, name) for v in schema.vectors}
    fields = {m.name: m for m in schema.metadata}
    lines: list[str] = []
    for i, (rid, key) in enumerate(zip(ids, keys, strict=True)):
        src: dict[str, Any] = {ID_FIELD: key, SLOT_FIELD: slot(key)}
        if docs is not None and docs[i] is not None:
            src[DOC_FIELD] = docs[i]
        extra = {}
        for k, value in rows[i].items():
            f = fields.get(k)
            if f is not None and value_fits(value, f):
                src[k] = encode_json(value) if f.type == "json" else value
            else:
                extra[k] = value
        if extra:
            src[EXTRA_FIELD] = encode_json(extra)
        try:
            doc = json.dumps(src, ensure_ascii=False, allow_nan=False)
        except ValueError:
            raise DataError(
                "NaN or infinite metadata values cannot be indexed", collection=name, record_id=rid
            ) from None
        # Splice the pre-formatted vectors in before the closing brace.
        doc = doc[:-1] + "".join(f",{k}:{texts[i]}" for k, texts in vecs.items()) + "}"
        lines += [json.dumps({"index": {"_id": key}}), doc]
    return lines


def check_bulk(
    got: dict[str, Any], ids: Sequence[Any], name: str, engine: str, vectors: Sequence[str] = ()
) -> None:
    """Inspect a ``_bulk`` response item by item: a rejected (429) item makes the whole
    batch transient; any other refused item is a DataError naming its id and field (a
    vector error that names no field, e.g. ES's unit-length check, blames the only vector
    field when there is one)."""
    if not got.get("errors"):
        return
    refused: tuple[Any, dict[str, Any]] | None = None
    for rid, item in zip(ids, got["items"], strict=True):
        action, result = next(iter(item.items()))
        status = int(result.get("status", 200))
        if status < 300 or (action == "delete" and status == 404):
            continue
        error = result.get("error") or {}
        if status in TRANSIENT_STATUS:  # e.g. a full write queue: resend the batch
            raise TransientError(f"bulk request to {name!r}: {error.get('type', status)}")
        refused = refused or (rid, error)
    if refused is not None:
        rid, error = refused
        reason = str(error.get("reason", ""))
        cause = error.get("caused_by") or {}
        if cause.get("reason"):
            reason += f" (caused by {cause.get('type')}: {cause['reason']})"
        m = _PARSE_FIELD.search(reason)
        field = next((g for g in m.groups() if g), None) if m else None
        if field is None and len(vectors) == 1 and "vector" in reason:
            field = vectors[0]
        raise DataError(
            f"{engine} refused the record: {error.get('type')}: {reason}",
            collection=name,
            record_id=rid,
            field=field,
        )
