"""turbopuffer's data mapping, without the client: namespace names, ids, the attribute
schema, filters and rows <-> batches. ``connectors.turbopuffer`` documents what each keeps;
the limits are turbopuffer's documentation's ("Limits", "Write", "Query")."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.jsonvalues import json_size, storable, typed_number, with_extra
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import Bool, Cond, Node
from vecmigrate.model import (
    METRIC_UNKNOWN,
    CollectionSchema,
    IdType,
    IndexSpec,
    MetadataField,
    Metric,
    VectorField,
)
from vecmigrate.records import build_batch, vectors_to_numpy

# -- limits (turbopuffer docs, "Limits"; top_k from "Query") -----------------------------------
MAX_DIM = 10_752
MAX_TOP_K = 1_200
MAX_ID_BYTES = 64
MAX_ATTRIBUTE_NAME_BYTES = 128
MAX_ATTRIBUTES = 256
MAX_NAMESPACE_BYTES = 128
MAX_ATTRIBUTE_VALUE_BYTES = 8 * 1024 * 1024
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
# The documented upsert request limit is 512 MB today (256 MB before): writes are split
# well under the older one, so a batch is never refused for its size.
MAX_WRITE_BYTES = 256 * 1024 * 1024
WRITE_CHUNK_BYTES = 64 * 1024 * 1024
# Rows per id-ordered page; ids per ``In`` lookup / per delete request.
MAX_PAGE_ROWS = MAX_TOP_K
MAX_IDS_PER_REQUEST = 1_000
MAX_UINT = 2**64 - 1

DOC_KEY = "_vecmigrate_document"
EXTRA_KEY = "_vecmigrate_extra"
VECTOR = "vector"
METRIC = {Metric.COSINE: "cosine_distance", Metric.L2: "euclidean_squared"}
FROM_METRIC = {v: k for k, v in METRIC.items()}
METRIC_SOURCE = "turbopuffer schema vector.ann.distance_metric"
ID_TYPE = {IdType.STRING: "string", IdType.INT: "uint", IdType.UUID: "uuid"}
FROM_ID_TYPE = {v: k for k, v in ID_TYPE.items()}
TYPE = {
    "string": "string",
    "int64": "int",
    "float64": "float",
    "bool": "bool",
    "list<string>": "[]string",
    "list<int64>": "[]int",
    "list<float64>": "[]float",
}
# How attribute types of namespaces other tools wrote are read (uuid / datetime as text).
FROM_TYPE: dict[str, str] = {
    **{v: k for k, v in TYPE.items()},
    "uint": "int64",
    "[]uint": "list<int64>",
    "uuid": "string",
    "datetime": "string",
    "[]uuid": "list<string>",
    "[]datetime": "list<string>",
}
_VALID_NAMESPACE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_VECTOR_TYPE = re.compile(r"^\[(\d+)\]f(16|32)$")
_NEGATE = {
    "$eq": "$ne", "$ne": "$eq", "$in": "$nin", "$nin": "$in",
    "$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt",
}  # fmt: skip
_OP = {"$eq": "Eq", "$ne": "NotEq", "$in": "In", "$nin": "NotIn"} | {
    "$gt": "Gt",
    "$gte": "Gte",
    "$lt": "Lt",
    "$lte": "Lte",
}


# -- names and ids ---------------------------------------------------------------------------
def check_namespace(name: str) -> str:
    """``name`` as a turbopuffer namespace; ConfigError when turbopuffer refuses it."""
    if not _VALID_NAMESPACE.match(name):
        raise ConfigError(
            f"{name!r} is not a valid turbopuffer namespace name",
            hint=f"1-{MAX_NAMESPACE_BYTES} characters of A-Z a-z 0-9 '-' '_' '.'; rename the "
            "collection (vecmigrate copy ... --target-collection NAME)",
        )
    return name


def to_tpuf_id(value: Any, id_type: IdType, name: str) -> Any:
    """A record id as turbopuffer takes it; DataError names an id it cannot hold."""
    if id_type is IdType.INT:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UINT:
            raise DataError(
                "turbopuffer int ids are unsigned 64-bit integers",
                collection=name, record_id=value, field="id",
                hint="map the ids (id strategy) to strings or non-negative ints",
            )  # fmt: skip
        return value
    text = str(value)
    if id_type is IdType.UUID:
        return text.lower()
    size = len(text.encode())
    if not 1 <= size <= MAX_ID_BYTES:
        raise DataError(
            f"a turbopuffer string id is 1-{MAX_ID_BYTES} bytes, this one is {size}",
            collection=name, record_id=value, field="id",
            hint="map the ids with an id strategy (hash) that keeps the original in metadata",
        )  # fmt: skip
    return text


def from_tpuf_id(value: Any, id_type: IdType) -> Any:
    """A turbopuffer id back to the schema's id type."""
    return int(value) if id_type is IdType.INT else str(value)


# -- vectors ---------------------------------------------------------------------------------
def encode_vector(row: np.ndarray) -> str:
    """A float32 vector as turbopuffer's base64 encoding (little-endian float32): exact,
    and a third of the JSON size of decimal floats."""
    return base64.b64encode(np.ascontiguousarray(row, dtype="<f4").tobytes()).decode()


def decode_vector(value: Any, dim: int) -> np.ndarray:
    """A vector as turbopuffer returns it (base64 or a list of floats)."""
    if isinstance(value, str):
        out = np.frombuffer(base64.b64decode(value), dtype="<f4")
    else:
        out = np.asarray(value, dtype=np.float32)
    if out.shape != (dim,):
        raise ConfigError(f"turbopuffer returned a vector of {out.size} values, expected {dim}")
    return out.astype(np.float32)


def check_vectors(name: str, ids: Sequence[Any], matrix: np.ndarray, field: str) -> None:
    """Refuse non-finite values (turbopuffer's JSON has no NaN / infinity)."""
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if len(bad):
        raise DataError(
            "turbopuffer stores finite float32 values only (NaN or infinity found)",
            collection=name, record_id=ids[bad[0]], field=field,
        )  # fmt: skip


# -- the attribute schema ---------------------------------------------------------------------
def check_creatable(schema: CollectionSchema, doc_key: str) -> None:
    """ConfigError, by name, for what a turbopuffer namespace cannot hold (before any call)."""
    where = f"turbopuffer namespace {schema.name!r}"
    check_namespace(schema.name)
    if len(schema.vectors) != 1 or schema.sparse:
        raise ConfigError(f"{where}: vecmigrate writes one dense vector per document")
    v = schema.vector
    if not 1 <= v.dim <= MAX_DIM:
        raise ConfigError(
            f"{where}: dimension {v.dim} of {v.name!r} is outside turbopuffer's 1-{MAX_DIM}",
            hint="reduce the dimension (another embedding model) or choose another target",
        )
    reserved = {"id", VECTOR, doc_key, EXTRA_KEY}
    for m in schema.metadata:
        if m.name in reserved or m.name.startswith("$"):
            raise ConfigError(
                f"metadata field {m.name!r} of {schema.name!r} is an attribute name "
                "turbopuffer or vecmigrate reserves",
                hint="rename the field with a mapping (fields: {NAME: {rename: ...}})",
            )
        if len(m.name.encode()) > MAX_ATTRIBUTE_NAME_BYTES:
            raise ConfigError(
                f"metadata field {m.name[:40]!r}... of {schema.name!r} is longer than "
                f"turbopuffer's {MAX_ATTRIBUTE_NAME_BYTES}-byte attribute names",
                hint="rename the field with a mapping",
            )
    if len(schema.metadata) + 4 > MAX_ATTRIBUTES:
        raise ConfigError(
            f"{where}: {len(schema.metadata)} metadata fields plus id, vector, document and "
            f"metadata_extra exceed turbopuffer's {MAX_ATTRIBUTES} attributes",
            hint="drop fields with a mapping",
        )


def attribute_schema(schema: CollectionSchema, doc_key: str) -> dict[str, Any]:
    """The ``schema`` of the namespace's creating write: every attribute typed, the vector
    with its ANN metric; the document and ``metadata_extra`` are not filterable."""
    v = schema.vector
    out: dict[str, Any] = {
        "id": ID_TYPE[schema.id_type],
        VECTOR: {"type": f"[{v.dim}]f32", "ann": {"distance_metric": METRIC[v.metric]}},
        EXTRA_KEY: {"type": "string", "filterable": False},
    }
    if schema.has_document:
        out[doc_key] = {"type": "string", "filterable": False}
    for m in schema.metadata:
        out[m.name] = {"type": TYPE[m.type]}
    return out


def _attr_type(config: Any) -> str:
    return str(config.get("type") if isinstance(config, dict) else config)


def described(name: str, attrs: dict[str, Any], doc_key: str) -> CollectionSchema:
    """The schema of namespace ``name`` from its attribute schema (``metadata().schema``):
    the vector's dimension and ANN metric, id type, document and metadata types."""
    vectors = {k: c for k, c in attrs.items() if _VECTOR_TYPE.match(_attr_type(c))}
    if not vectors:
        raise ConfigError(
            f"turbopuffer namespace {name!r} has no vector attribute",
            hint="vecmigrate migrates namespaces with a [N]f32 / [N]f16 vector",
        )
    key = VECTOR if VECTOR in vectors else sorted(vectors)[0]
    config = vectors[key]
    match = _VECTOR_TYPE.match(_attr_type(config))
    assert match is not None  # filtered above
    ann = config.get("ann") if isinstance(config, dict) else None
    metric_name = ann.get("distance_metric") if isinstance(ann, dict) else None
    metric = FROM_METRIC.get(str(metric_name))
    vector = VectorField(
        name=VECTOR,
        dim=int(match.group(1)),
        metric=metric or Metric.COSINE,
        index=IndexSpec(kind="auto"),
        metric_source=METRIC_SOURCE if metric else METRIC_UNKNOWN,
    )
    id_type = FROM_ID_TYPE.get(_attr_type(attrs.get("id", "string")), IdType.STRING)
    skip = {"id", key, doc_key, EXTRA_KEY}
    metadata = tuple(
        MetadataField(name=k, type=FROM_TYPE.get(_attr_type(c), "json"))  # type: ignore[arg-type]
        for k, c in sorted(attrs.items())
        if k not in skip and k not in vectors
    )
    return CollectionSchema(
        name=name,
        id_type=id_type,
        vectors=(vector,),
        has_document=doc_key in attrs,
        metadata=metadata,
        engine="turbopuffer",
        engine_settings={
            "namespace": name,
            "document_key": doc_key,
            "vector_attribute": key,
            "other_vector_attributes": sorted(set(vectors) - {key}),
        },
    )


# -- filters ---------------------------------------------------------------------------------
def compile_filter(node: Node, negate: bool = False) -> list[Any]:
    """A portable filter as a turbopuffer filter, with the portable semantics.

    Every comparison requires the attribute to be present (``NotEq null``) where
    turbopuffer's own operator would also match documents lacking it, and ``$not`` is
    pushed down to the leaves, so the result does not depend on how turbopuffer treats
    missing attributes under ``Not``.
    """
    if isinstance(node, Bool):
        if node.op == "$not":
            return compile_filter(node.children[0], not negate)
        op = node.op if not negate else ("$or" if node.op == "$and" else "$and")
        parts = [compile_filter(c, negate) for c in node.children]
        return parts[0] if len(parts) == 1 else ["And" if op == "$and" else "Or", parts]
    return _leaf(node, negate)


def _leaf(c: Cond, negate: bool) -> list[Any]:
    key = c.field.name
    if c.op == "$exists":
        return [key, "NotEq" if bool(c.value) != negate else "Eq", None]
    present = [key, "NotEq", None]
    if c.field.type.startswith("list<"):
        values = c.value if c.op == "$in" else [c.value]
        if negate:  # missing, or contains none of them
            return ["Or", [[key, "Eq", None], [key, "NotContainsAny", values]]]
        return [key, "ContainsAny", values]
    op = _NEGATE[c.op] if negate else c.op
    cond = [key, _OP[op], c.value]
    if negate:
        return ["Or", [[key, "Eq", None], cond]]
    if op in ("$ne", "$nin"):
        return ["And", [present, cond]]
    return cond


# -- rows <-> batches -------------------------------------------------------------------------


def batch_columns(
    batch: pa.RecordBatch, schema: CollectionSchema, doc_key: str, name: str
) -> tuple[list[Any], dict[str, list[Any]], list[int]]:
    """Ids, the attribute columns of an ``upsert_columns`` write (vectors base64) and each
    document's approximate JSON size. DataError names the id and field of a value over
    turbopuffer's 8 MiB attribute or 64 MiB document limit."""
    raw_ids = batch.column("id").to_pylist()
    ids = [to_tpuf_id(i, schema.id_type, name) for i in raw_ids]
    matrix = vectors_to_numpy(batch.column(schema.vector.name))
    if matrix.shape[1] != schema.vector.dim:
        raise DataError(
            f"vectors have {matrix.shape[1]} dimensions, the namespace {schema.vector.dim}",
            collection=name, field=schema.vector.name,
        )  # fmt: skip
    check_vectors(name, raw_ids, matrix, schema.vector.name)
    n = batch.num_rows
    columns: dict[str, list[Any]] = {VECTOR: [encode_vector(row) for row in matrix]}
    extras: list[dict[str, Any]] = [{} for _ in range(n)]
    names = batch.schema.names
    if "metadata" in names:
        struct = batch.column(names.index("metadata"))
        by_name = {f.name: f for f in schema.metadata}
        for child_field, child in zip(struct.type, struct.flatten(), strict=True):
            f = by_name[child_field.name]
            values = child.to_pylist()
            col: list[Any] = []
            for i, v in enumerate(values):
                kept = (
                    None
                    if v is None
                    else storable(f, v, name, raw_ids[i], "turbopuffer stores finite floats only")
                )
                if v is not None and kept is None:
                    extras[i][f.name] = v
                col.append(kept)
            columns[f.name] = col
    if "metadata_extra" in names:
        for i, raw in enumerate(batch.column(names.index("metadata_extra")).to_pylist()):
            if raw:
                extras[i].update(json.loads(raw))
    columns[EXTRA_KEY] = [
        json.dumps(e, ensure_ascii=False, sort_keys=True) if e else None for e in extras
    ]
    if schema.has_document and "document" in names:
        columns[doc_key] = batch.column(names.index("document")).to_pylist()
    sizes = [len(columns[VECTOR][i]) + json_size(ids[i]) + 16 for i in range(n)]
    for key, col in columns.items():
        if key == VECTOR:
            continue
        field = {doc_key: "document", EXTRA_KEY: "metadata_extra"}.get(key, key)
        for i, value in enumerate(col):
            if value is None:
                continue
            size = json_size(value)
            if size > MAX_ATTRIBUTE_VALUE_BYTES:
                raise DataError(
                    f"attribute value is {size:,} bytes; turbopuffer stores at most "
                    f"{MAX_ATTRIBUTE_VALUE_BYTES:,} per attribute",
                    collection=name, record_id=raw_ids[i], field=field,
                    hint="shorten or drop that field with a mapping",
                )  # fmt: skip
            sizes[i] += size + len(key) + 4
    for i, size in enumerate(sizes):
        if size > MAX_DOCUMENT_BYTES:
            raise DataError(
                f"document is {size:,} bytes; turbopuffer stores at most "
                f"{MAX_DOCUMENT_BYTES:,} per document",
                collection=name, record_id=raw_ids[i], field="metadata",
            )  # fmt: skip
    return ids, columns, sizes


def rows_to_batch(
    schema: CollectionSchema, rows: Sequence[dict[str, Any]], doc_key: str
) -> pa.RecordBatch:
    """Rows as turbopuffer's query returns them (``id``, ``vector``, attributes) in the
    batch layout; ``metadata_extra`` comes back from its JSON attribute."""
    by_name = {f.name: f for f in schema.metadata}
    vector_key = str(schema.engine_settings.get("vector_attribute") or VECTOR)
    dim = schema.vector.dim
    ids, docs, metas = [], [], []
    matrix = np.zeros((len(rows), dim), dtype=np.float32)
    skip = {"id", vector_key, doc_key, EXTRA_KEY, "$dist"}
    for i, r in enumerate(rows):
        ids.append(from_tpuf_id(r["id"], schema.id_type))
        docs.append(r.get(doc_key))
        if r.get(vector_key) is not None:
            matrix[i] = decode_vector(r[vector_key], dim)
        meta = {
            k: typed_number(by_name.get(k), v)
            for k, v in r.items()
            if k not in skip and v is not None
        }
        metas.append(with_extra(meta, r.get(EXTRA_KEY)))
    return build_batch(
        schema,
        ids,
        {schema.vector.name: matrix},
        documents=docs if schema.has_document else None,
        metadata=metas,
    )
