"""Amazon S3 Vectors' data mapping, without the client: index names, keys, metadata,
filters, the stored schema and records <-> batches. ``connectors.s3vectors`` documents
what each keeps; the limits are the S3 Vectors user guide's ("Limitations and
restrictions") and the service model's."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import Bool, Cond, Node
from vecmigrate.model import (
    CollectionSchema,
    IdType,
    IndexSpec,
    MetadataField,
    Metric,
    VectorField,
)
from vecmigrate.records import build_batch
from vecmigrate.values import infer_metadata_fields

# -- limits (user guide "Limitations and restrictions", and the service model) ---------------
MAX_DIM = 4096
MAX_PUT_VECTORS = 500
MAX_DELETE_KEYS = 500
MAX_GET_KEYS = 100
MAX_LIST_PAGE = 1000
MAX_SEGMENTS = 16
MAX_TOP_K = 100
MAX_REQUEST_BYTES = 20 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_FILTERABLE_BYTES = 2 * 1024
MAX_METADATA_KEYS = 50
MAX_NON_FILTERABLE_KEYS = 10
MAX_METADATA_KEY_LENGTH = 63  # MetadataKey in the model (the non-filterable key list)
MAX_KEY_LENGTH = 1024
MAX_SCHEMA_TAGS = 40  # of the 50 tags a resource takes
TAG_VALUE_LENGTH = 256
MAX_SAFE_INT = 2**53

DOC_KEY = "_vecmigrate_document"
EXTRA_KEY = "_vecmigrate_extra"
SCHEMA_TAG = "vecmigrate-schema"
METRIC = {Metric.COSINE: "cosine", Metric.L2: "euclidean"}
FROM_METRIC = {v: k for k, v in METRIC.items()}
METRIC_SOURCE = "S3 Vectors index distanceMetric"
_VALID_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_VALID_INDEX = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HASHED_INDEX = re.compile(r"-[0-9a-f]{8}$")
_NEGATE = {
    "$eq": "$ne", "$ne": "$eq", "$in": "$nin", "$nin": "$in",
    "$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt",
}  # fmt: skip


# -- names ----------------------------------------------------------------------------------
def check_bucket(name: str | None) -> str:
    """The vector bucket of an ``s3vectors://BUCKET`` URI; ConfigError when it is no valid
    bucket name (3-63 lowercase letters, digits and hyphens, alphanumeric at both ends)."""
    if not name:
        raise ConfigError(
            "s3vectors:// needs a vector bucket", hint="write s3vectors://BUCKET?region=REGION"
        )
    if not _VALID_BUCKET.match(name):
        raise ConfigError(
            f"{name!r} is not a valid S3 vector bucket name",
            hint="3-63 lowercase letters, digits and hyphens, starting and ending with a "
            "letter or digit",
        )
    return name


def index_name(collection: str) -> str:
    """The S3 Vectors index that holds ``collection`` (valid index names are kept)."""
    if _VALID_INDEX.match(collection) and not _HASHED_INDEX.search(collection):
        return collection
    base = re.sub(r"[^a-z0-9.-]+", "-", collection.lower()).strip("-.")[:54].strip("-.")
    return f"{base or 'c'}-{hashlib.sha256(collection.encode()).hexdigest()[:8]}"


def may_be_renamed(index: str) -> bool:
    """Whether ``index`` may hold a collection whose name is not a valid index name (its
    stored schema then names the collection)."""
    return bool(_HASHED_INDEX.search(index))


# -- keys -----------------------------------------------------------------------------------
def to_key(value: Any) -> str:
    """A record id as a vector key (S3 Vectors keys are any UTF-8 text)."""
    return str(value)


def from_key(key: str, id_type: IdType) -> Any:
    return int(key) if id_type is IdType.INT else key


def check_keys(name: str, ids: Sequence[Any], keys: Sequence[str]) -> None:
    """Refuse keys S3 Vectors cannot hold: empty or longer than 1,024 characters."""
    for rid, key in zip(ids, keys, strict=True):
        if not 1 <= len(key) <= MAX_KEY_LENGTH:
            raise DataError(
                f"an S3 Vectors key is 1-{MAX_KEY_LENGTH} characters, this id is {len(key)}",
                collection=name, record_id=rid, field="id",
            )  # fmt: skip


def check_vectors(
    name: str, ids: Sequence[Any], matrix: np.ndarray, field: str, metric: Metric
) -> None:
    """Refuse vectors S3 Vectors does not take: non-finite values, and all-zero vectors in
    a cosine index (their cosine distance is undefined)."""
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if len(bad):
        raise DataError(
            "S3 Vectors stores finite float32 values only (NaN or infinity found)",
            collection=name, record_id=ids[bad[0]], field=field,
        )  # fmt: skip
    if metric is Metric.COSINE:
        zero = np.flatnonzero(~matrix.any(axis=1))
        if len(zero):
            raise DataError(
                "an all-zero vector has no cosine distance; S3 Vectors cosine indexes "
                "cannot rank it", collection=name, record_id=ids[zero[0]], field=field,
            )  # fmt: skip


# -- filters --------------------------------------------------------------------------------
def compile_filter(node: Node, negate: bool = False) -> dict[str, Any]:
    """A portable filter as S3 Vectors' metadata filter, keeping the portable semantics.

    ``$not`` is pushed down to the leaves (S3 Vectors has none); a negated comparison is
    "missing OR the opposite comparison", and ``$ne``/``$nin`` require the key to exist,
    because the user guide leaves open whether they match vectors lacking it.
    """
    if isinstance(node, Bool):
        if node.op == "$not":
            return compile_filter(node.children[0], not negate)
        op = node.op if not negate else ("$or" if node.op == "$and" else "$and")
        parts = [compile_filter(c, negate) for c in node.children]
        return parts[0] if len(parts) == 1 else {op: parts}
    return _leaf(node, negate)


def _leaf(c: Cond, negate: bool) -> dict[str, Any]:
    key = c.field.name
    if c.op == "$exists":
        return {key: {"$exists": bool(c.value) != negate}}
    op = _NEGATE[c.op] if negate else c.op
    value = c.value
    if c.field.type.startswith("list<") and op == "$ne":  # "contains none of"
        op, value = "$nin", [value]
    cond = {key: {op: value}}
    if negate:
        return {"$or": [{key: {"$exists": False}}, cond]}
    if op in ("$ne", "$nin"):
        return {"$and": [{key: {"$exists": True}}, cond]}
    return cond


# -- the schema, kept in the index's tags -----------------------------------------------------
def schema_tags(schema: CollectionSchema) -> dict[str, str]:
    """The schema as tags of 256 characters (zlib + base64: every base64 character is a
    valid tag character); ConfigError when it needs more than 40 tags."""
    blob = base64.b64encode(zlib.compress(schema.to_json().encode(), 9)).decode()
    chunks = [blob[i : i + TAG_VALUE_LENGTH] for i in range(0, len(blob), TAG_VALUE_LENGTH)]
    if len(chunks) > MAX_SCHEMA_TAGS:
        raise ConfigError(
            f"the schema of {schema.name!r} needs {len(chunks)} index tags to be stored, "
            f"more than the {MAX_SCHEMA_TAGS} vecmigrate uses (S3 Vectors takes 50)",
            hint="drop metadata fields with a mapping",
        )
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
def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _encode_value(f: MetadataField, value: Any, name: str, rid: Any) -> Any:
    """A typed value as S3 Vectors metadata, or DataError when it would not round-trip."""
    if f.type == "int64" and abs(value) > MAX_SAFE_INT:
        raise DataError(
            "S3 Vectors metadata numbers are JSON numbers (float64): this int would not "
            "round-trip", collection=name, record_id=rid, field=f.name,
        )  # fmt: skip
    if f.type == "float64" and not math.isfinite(value):
        raise DataError(
            "S3 Vectors metadata numbers must be finite", collection=name, record_id=rid,
            field=f.name,
        )  # fmt: skip
    if f.type == "list<int64>" and any(abs(x) > MAX_SAFE_INT for x in value if x is not None):
        raise DataError(
            "S3 Vectors metadata numbers are float64: an element of this list would not "
            "round-trip", collection=name, record_id=rid, field=f.name,
        )  # fmt: skip
    if f.type == "list<float64>" and not all(x is not None and math.isfinite(x) for x in value):
        raise DataError(
            "S3 Vectors metadata numbers must be finite", collection=name, record_id=rid,
            field=f.name,
        )  # fmt: skip
    return value  # str, bool, numbers, lists of one primitive type; json is JSON text


def encode_metadata(
    batch: pa.RecordBatch,
    schema: CollectionSchema,
    doc_key: str,
    non_filterable: Iterable[str],
    name: str,
    ids: Sequence[Any],
) -> list[tuple[dict[str, Any], int]]:
    """Per record: its S3 Vectors metadata and that metadata's JSON size.

    Null values are left out (S3 Vectors documents no null); lists that are empty or hold
    nulls travel in the JSON text under ``_vecmigrate_extra``. DataError, naming the
    largest field, when a record has more than 50 keys, more than 40 KB of metadata, or
    more than 2 KB of filterable metadata (the user guide's limits)."""
    n = batch.num_rows
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    extras: list[dict[str, Any]] = [{} for _ in range(n)]
    names = batch.schema.names
    if "metadata" in names:
        struct = batch.column(names.index("metadata"))
        by_name = {f.name: f for f in schema.metadata}
        for child_field, child in zip(struct.type, struct.flatten(), strict=True):
            f = by_name[child_field.name]
            for i, v in enumerate(child.to_pylist()):
                if v is None:
                    continue
                if isinstance(v, list) and (not v or any(x is None for x in v)):
                    extras[i][f.name] = v
                    continue
                rows[i][f.name] = _encode_value(f, v, name, ids[i])
    if "metadata_extra" in names:
        for i, raw in enumerate(batch.column(names.index("metadata_extra")).to_pylist()):
            if raw:
                extras[i].update(json.loads(raw))
    for i, extra in enumerate(extras):
        if extra:
            rows[i][EXTRA_KEY] = json.dumps(extra, ensure_ascii=False, sort_keys=True)
    if schema.has_document and "document" in names:
        for i, doc in enumerate(batch.column(names.index("document")).to_pylist()):
            if doc is not None:
                rows[i][doc_key] = doc
    hidden = set(non_filterable)
    where = {doc_key: "document", EXTRA_KEY: "metadata_extra"}
    out = []
    for i, md in enumerate(rows):
        if len(md) > MAX_METADATA_KEYS:
            raise DataError(
                f"{len(md)} metadata keys; S3 Vectors stores at most {MAX_METADATA_KEYS} "
                "per vector", collection=name, record_id=ids[i], field="metadata",
                hint="drop fields with a mapping",
            )  # fmt: skip
        size = _json_bytes(md)
        filterable = {k: v for k, v in md.items() if k not in hidden}
        fsize = _json_bytes(filterable)
        if size > MAX_METADATA_BYTES or fsize > MAX_FILTERABLE_BYTES:
            part = md if size > MAX_METADATA_BYTES else filterable
            big = max(part, key=lambda k: _json_bytes(part[k]))
            kind, got, limit = (
                ("metadata", size, MAX_METADATA_BYTES)
                if size > MAX_METADATA_BYTES
                else ("filterable metadata", fsize, MAX_FILTERABLE_BYTES)
            )
            raise DataError(
                f"{kind} is {got:,} bytes; S3 Vectors stores at most {limit:,} bytes of "
                f"{kind} per vector ({where.get(big, big)!r} is the largest part)",
                collection=name, record_id=ids[i], field=where.get(big, big),
                hint="shorten or drop that field with a mapping"
                + ("" if size > MAX_METADATA_BYTES else
                   ", or declare it non-filterable (?non_filterable=FIELD) when the index "
                   "is created"),
            )  # fmt: skip
        out.append((md, size))
    return out


def decode_value(f: MetadataField | None, value: Any) -> Any:
    """A stored value back to its portable type (left as it is when it does not parse)."""
    if f is None:
        return value
    try:
        if f.type == "int64" and isinstance(value, float) and value.is_integer():
            return int(value)
        if f.type == "float64" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if f.type == "list<int64>" and isinstance(value, list):
            return [int(x) if isinstance(x, float) and x.is_integer() else x for x in value]
        if f.type == "list<float64>" and isinstance(value, list):
            return [
                float(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in value
            ]
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


def records_to_batch(
    schema: CollectionSchema, items: list[dict[str, Any]], doc_key: str, *, data: bool = True
) -> pa.RecordBatch:
    """Vectors as ListVectors / GetVectors return them (``key``, ``data``, ``metadata``),
    in the batch layout; ``data=False``: metadata only, vectors left zero (for counting)."""
    ids = [from_key(r["key"], schema.id_type) for r in items]
    docs, metas = [], []
    by_name = {f.name: f for f in schema.metadata}
    for r in items:
        md = dict(r.get("metadata") or {})
        docs.append(md.pop(doc_key, None))
        extra = pop_extra(md)
        metas.append({**{k: decode_value(by_name.get(k), v) for k, v in md.items()}, **extra})
    dim = schema.vector.dim
    if data:
        matrix = np.asarray([r["data"]["float32"] for r in items], dtype=np.float32)
    else:
        matrix = np.zeros((len(items), dim), dtype=np.float32)
    return build_batch(
        schema,
        ids,
        {schema.vector.name: matrix.reshape(len(items), dim)},
        documents=docs if schema.has_document else None,
        metadata=metas,
    )


# -- schemas --------------------------------------------------------------------------------
def non_filterable_keys(
    schema: CollectionSchema, doc_key: str, requested: Sequence[str]
) -> list[str]:
    """The index's non-filterable keys: the document, ``_vecmigrate_extra``, json fields
    (JSON text, never filtered) and the ones the URI names. ConfigError past 10 (the
    limit per index) or for a key longer than 63 characters."""
    keys = list(
        dict.fromkeys(
            [
                *([doc_key] if schema.has_document else []),
                EXTRA_KEY,
                *(m.name for m in schema.metadata if m.type == "json"),
                *requested,
            ]
        )
    )
    if len(keys) > MAX_NON_FILTERABLE_KEYS:
        raise ConfigError(
            f"S3 Vectors index for {schema.name!r} would need {len(keys)} non-filterable "
            f"metadata keys ({', '.join(keys)}); an index takes at most "
            f"{MAX_NON_FILTERABLE_KEYS}",
            hint="name fewer fields in ?non_filterable=, or map json fields to other types",
        )
    long = [k for k in keys if not 1 <= len(k) <= MAX_METADATA_KEY_LENGTH]
    if long:
        raise ConfigError(
            f"non-filterable metadata key {long[0]!r} is {len(long[0])} characters; "
            f"S3 Vectors takes 1-{MAX_METADATA_KEY_LENGTH}",
            hint="rename the field with a mapping",
        )
    return keys


def check_creatable(schema: CollectionSchema, doc_key: str) -> None:
    """Refuse, by name, what an S3 Vectors index cannot hold (before any call)."""
    where = f"S3 Vectors index for {schema.name!r}"
    if len(schema.vectors) != 1 or schema.sparse:
        raise ConfigError(f"{where}: an index holds one dense vector per key")
    v = schema.vector
    if not 1 <= v.dim <= MAX_DIM:
        raise ConfigError(
            f"{where}: dimension {v.dim} of {v.name!r} is outside S3 Vectors' 1-{MAX_DIM}",
            hint="reduce the dimension (a different embedding model) or choose another target",
        )
    clash = {doc_key, EXTRA_KEY} & {m.name for m in schema.metadata}
    if clash:
        raise ConfigError(
            f"metadata field {sorted(clash)[0]!r} of {schema.name!r} is a key vecmigrate "
            "reserves in S3 Vectors metadata",
            hint="rename the field with a mapping (fields: {NAME: {rename: ...}})",
        )
    if len(schema.metadata) + 2 > MAX_METADATA_KEYS:
        raise ConfigError(
            f"{where}: {len(schema.metadata)} metadata fields plus the document and "
            f"metadata_extra keys exceed the {MAX_METADATA_KEYS} keys a vector can hold",
            hint="drop fields with a mapping",
        )


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


def index_metric(index: dict[str, Any]) -> Metric:
    metric = FROM_METRIC.get(str(index.get("distanceMetric")))
    if metric is None:
        raise ConfigError(
            f"S3 Vectors index {index.get('indexName')!r} has distance metric "
            f"{index.get('distanceMetric')!r}, which vecmigrate does not know"
        )
    return metric


def described(
    name: str, bucket: str, index: dict[str, Any], stored: CollectionSchema
) -> CollectionSchema:
    """The schema of ``name``: the stored (or inferred) one, with what the index says
    (dimension, metric, non-filterable keys, mode) winning."""
    v = stored.vector.model_copy(
        update={
            "dim": int(index["dimension"]),
            "metric": index_metric(index),
            "metric_source": METRIC_SOURCE,
        }
    )
    hidden = (index.get("metadataConfiguration") or {}).get("nonFilterableMetadataKeys") or []
    return stored.replace(
        name=name,
        vectors=(v,),
        namespaces=None,
        engine="s3vectors",
        engine_settings={
            **stored.engine_settings,
            "bucket": bucket,
            "index": index["indexName"],
            "non_filterable": sorted(hidden),
            "index_mode": index.get("indexMode", "CLASSIC"),
        },
    )
