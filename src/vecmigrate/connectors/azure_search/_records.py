"""Azure AI Search's data mapping, without the client: index and field names, document
keys, the index definition, OData filters and documents <-> batches.
``connectors.azure_search`` documents what each keeps; the limits are Azure AI Search's
documentation's ("Naming rules", "Service limits", "Supported data types")."""

from __future__ import annotations

import base64
import hashlib
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

# -- limits (Azure AI Search "Service limits" and "Naming rules") -------------------------------
MAX_DIM = 4_096  # vector field dimensions (Collection(Edm.Single))
MAX_FIELDS = 1_000  # fields per index
MAX_FIELD_NAME = 128
MAX_KEY_CHARS = 1_024
MAX_BATCH_DOCS = 1_000  # documents per indexing request
MAX_BATCH_BYTES = 16 * 1024 * 1024  # payload per indexing request
# Batches are cut under the 16 MB payload limit with room for the JSON envelope.
BATCH_CHUNK_BYTES = 15 * 1024 * 1024
MAX_TOP = 1_000  # documents per search response page
MAX_K = 1_000
MAX_SEARCH_IN_VALUES = 1_000  # keys per search.in lookup, kept to one page

KEY = "id"
VECTOR = "vector"
DOC_FIELD = "vecmigrate_document"
EXTRA_FIELD = "vecmigrate_extra"
PROFILE = "vecmigrate-profile"
ALGORITHM = "vecmigrate-hnsw"
EXHAUSTIVE = "vecmigrate-exhaustive-knn"
# The index description carries what the index definition cannot: the collection's name
# (when it is not a valid index name) and the id type (keys are always strings).
DESCRIPTION_PREFIX = "vecmigrate "
METRIC = {Metric.COSINE: "cosine", Metric.L2: "euclidean", Metric.DOT: "dotProduct"}
FROM_METRIC = {v: k for k, v in METRIC.items()}
METRIC_SOURCE = "Azure AI Search vector search algorithm parameters.metric"
# HNSW parameters: Azure's defaults (m=4, efConstruction=400, efSearch=500) stated
# explicitly so an index's recall does not depend on the service's defaults changing.
HNSW_DEFAULTS = {"m": 4, "efConstruction": 400, "efSearch": 500}
VECTOR_TYPE = "Collection(Edm.Single)"
TYPE = {
    "string": "Edm.String",
    "int64": "Edm.Int64",
    "float64": "Edm.Double",
    "bool": "Edm.Boolean",
    "list<string>": "Collection(Edm.String)",
    "list<int64>": "Collection(Edm.Int64)",
    "list<float64>": "Collection(Edm.Double)",
}
FROM_TYPE: dict[str, str] = {
    **{v: k for k, v in TYPE.items()},
    "Edm.Int32": "int64",
    "Edm.Int16": "int64",
    "Edm.SByte": "int64",
    "Edm.Byte": "int64",
    "Edm.DateTimeOffset": "string",
    "Collection(Edm.Int32)": "list<int64>",
    "Collection(Edm.DateTimeOffset)": "list<string>",
}
_INDEX_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){1,127}$")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_HASHED_INDEX = re.compile(r"-[0-9a-f]{8}$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9-][A-Za-z0-9_=-]*$")
_HNSW_PARAMS = (("m", "m"), ("efConstruction", "ef_construction"), ("efSearch", "ef"))
_NEGATE = {
    "$eq": "$ne", "$ne": "$eq", "$in": "$nin", "$nin": "$in",
    "$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt",
}  # fmt: skip
_OP = {"$eq": "eq", "$ne": "ne", "$gt": "gt", "$gte": "ge", "$lt": "lt", "$lte": "le"}


# -- names and keys --------------------------------------------------------------------------
def index_name(collection: str) -> str:
    """The index that holds ``collection``: a valid index name is kept; another becomes its
    lowercase letters and digits joined by dashes plus 8 hex digits of its SHA-256 (the
    index description keeps the collection's name)."""
    if _INDEX_NAME.match(collection) and not _HASHED_INDEX.search(collection):
        return collection
    base = re.sub(r"[^a-z0-9]+", "-", collection.lower()).strip("-")[:110].strip("-")
    return f"{base or 'c'}-{hashlib.sha256(collection.encode()).hexdigest()[:8]}"


def may_be_renamed(index: str) -> bool:
    """Whether ``index`` may hold a collection whose name is not a valid index name."""
    return bool(_HASHED_INDEX.search(index))


def description(schema: CollectionSchema) -> str:
    """The index description: the collection's name and id type."""
    return DESCRIPTION_PREFIX + json.dumps(
        {"collection": schema.name, "id_type": schema.id_type.value}, ensure_ascii=False
    )


def stored_facts(index: dict[str, Any]) -> dict[str, Any]:
    """What ``description`` stored ({} for an index vecmigrate did not make)."""
    text = index.get("description")
    if not isinstance(text, str) or not text.startswith(DESCRIPTION_PREFIX):
        return {}
    try:
        facts = json.loads(text[len(DESCRIPTION_PREFIX) :])
    except ValueError:
        return {}
    return facts if isinstance(facts, dict) else {}


def to_key(value: Any, id_type: IdType, name: str) -> str:
    """A record id as a document key. Keys hold letters, digits, ``_ - =`` and do not start
    with ``_``: other ids are stored as ``=`` + URL-safe base64 of their UTF-8 (which no
    plain key starts with), so every id round-trips."""
    if id_type is IdType.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(
                "int ids must be integers", collection=name, record_id=value, field="id"
            )
        return str(value)
    text = str(value)
    if _PLAIN_KEY.match(text) and len(text) <= MAX_KEY_CHARS:
        return text
    key = "=" + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    if not text or len(key) > MAX_KEY_CHARS:
        raise DataError(
            f"id does not fit Azure AI Search's {MAX_KEY_CHARS}-character document keys "
            f"(encoded: {len(key)} characters)",
            collection=name, record_id=value, field="id",
            hint="map the ids with an id strategy (hash) that keeps the original in metadata",
        )  # fmt: skip
    return key


def from_key(key: str, id_type: IdType) -> Any:
    """A document key back to the record id."""
    if id_type is IdType.INT:
        return int(key)
    if key.startswith("="):
        return base64.urlsafe_b64decode(key[1:] + "=" * (-len(key[1:]) % 4)).decode()
    return key


def odata_string(text: str) -> str:
    """An OData string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


# -- the index definition --------------------------------------------------------------------
def check_creatable(schema: CollectionSchema) -> None:
    """ConfigError, by name, for what an index cannot hold (before any call)."""
    where = f"Azure AI Search index {index_name(schema.name)!r}"
    if len(schema.vectors) != 1 or schema.sparse:
        raise ConfigError(f"{where}: vecmigrate writes one dense vector per document")
    v = schema.vector
    if not 2 <= v.dim <= MAX_DIM:
        raise ConfigError(
            f"{where}: dimension {v.dim} of {v.name!r} is outside Azure AI Search's 2-{MAX_DIM}",
            hint="reduce the dimension (another embedding model) or choose another target",
        )
    reserved = {KEY, VECTOR, DOC_FIELD, EXTRA_FIELD}
    for m in schema.metadata:
        if m.name in reserved:
            raise ConfigError(
                f"metadata field {m.name!r} of {schema.name!r} is a field name vecmigrate "
                "reserves in Azure AI Search indexes",
                hint="rename the field with a mapping (fields: {NAME: {rename: ...}})",
            )
        if (
            not _FIELD_NAME.match(m.name)
            or len(m.name) > MAX_FIELD_NAME
            or m.name.lower().startswith("azuresearch")
        ):
            raise ConfigError(
                f"metadata field {m.name[:40]!r} of {schema.name!r} is not a valid Azure AI "
                f"Search field name (a letter, then letters, digits or '_', at most "
                f"{MAX_FIELD_NAME} characters, not starting with 'azureSearch')",
                hint="rename the field with a mapping (fields: {NAME: {rename: ...}})",
            )
    if len(schema.metadata) + 4 > MAX_FIELDS:
        raise ConfigError(
            f"{where}: {len(schema.metadata)} metadata fields plus id, vector, document and "
            f"metadata_extra exceed Azure AI Search's {MAX_FIELDS} fields",
            hint="drop fields with a mapping",
        )


def index_definition(schema: CollectionSchema) -> dict[str, Any]:
    """The index's REST definition: the string key (filterable, sortable: scans page in key
    order), the vector with an HNSW profile carrying the metric, every metadata field
    filterable; the document and ``metadata_extra`` neither searchable nor filterable."""
    v = schema.vector
    fields: list[dict[str, Any]] = [
        {"name": KEY, "type": "Edm.String", "key": True, "filterable": True, "sortable": True},
        {
            "name": VECTOR, "type": VECTOR_TYPE, "searchable": True, "retrievable": True,
            "dimensions": v.dim, "vectorSearchProfile": PROFILE,
        },
        {"name": EXTRA_FIELD, "type": "Edm.String", "filterable": False, "searchable": False},
    ]  # fmt: skip
    if schema.has_document:
        fields.append(
            {"name": DOC_FIELD, "type": "Edm.String", "filterable": False, "searchable": False}
        )
    for m in schema.metadata:
        fields.append({"name": m.name, "type": TYPE[m.type], "filterable": True})
    kind = v.index.kind if v.index is not None else "auto"
    if kind == "flat":  # brute force: Azure's exhaustive KNN algorithm
        algorithm = {
            "name": EXHAUSTIVE,
            "kind": "exhaustiveKnn",
            "exhaustiveKnnParameters": {"metric": METRIC[v.metric]},
        }
    else:
        params: dict[str, Any] = dict(HNSW_DEFAULTS)
        given = v.index.params if v.index is not None and kind == "hnsw" else {}
        for key, attr in _HNSW_PARAMS:
            value = given.get(attr)
            if isinstance(value, int) and not isinstance(value, bool):
                params[key] = value
        params["metric"] = METRIC[v.metric]
        algorithm = {"name": ALGORITHM, "kind": "hnsw", "hnswParameters": params}
    return {
        "name": index_name(schema.name),
        "description": description(schema),
        "fields": fields,
        "vectorSearch": {
            "algorithms": [algorithm],
            "profiles": [{"name": PROFILE, "algorithm": algorithm["name"]}],
        },
    }


def _algorithm_of(index: dict[str, Any], field: dict[str, Any]) -> dict[str, Any] | None:
    search = index.get("vectorSearch") or {}
    wanted = field.get("vectorSearchProfile")
    profile = next((p for p in search.get("profiles") or [] if p.get("name") == wanted), None)
    if profile is None:
        return None
    algo = next(
        (a for a in search.get("algorithms") or [] if a.get("name") == profile.get("algorithm")),
        None,
    )
    return algo


def _index_spec(algo: dict[str, Any] | None) -> IndexSpec:
    """The vector field's algorithm as a portable index spec."""
    if algo is None:
        return IndexSpec(kind="auto")
    if algo.get("kind") == "exhaustiveKnn":
        return IndexSpec(kind="flat")
    given = algo.get("hnswParameters") or {}
    params: dict[str, int | float | str] = {
        attr: given[key] for key, attr in _HNSW_PARAMS if isinstance(given.get(key), int)
    }
    return IndexSpec(kind="hnsw", params=params)


def described(index: dict[str, Any]) -> CollectionSchema:
    """The schema of an index from its REST definition: the key, the vector field's
    dimension and its profile's algorithm metric, the metadata types."""
    facts = stored_facts(index)
    collection = facts.get("collection")
    name = str(index["name"])
    if isinstance(collection, str) and index_name(collection) == name:
        name = collection
    fields = index.get("fields") or []
    key = next((f for f in fields if f.get("key")), None)
    vectors = [f for f in fields if f.get("type") == VECTOR_TYPE and f.get("dimensions")]
    if key is None or not vectors:
        raise ConfigError(
            f"Azure AI Search index {name!r} has no key or no Collection(Edm.Single) vector field",
            hint="vecmigrate migrates indexes with a key and a float32 vector field",
        )
    vec = next((f for f in vectors if f["name"] == VECTOR), vectors[0])
    algo = _algorithm_of(index, vec)
    algo_params = (
        (algo.get("hnswParameters") or algo.get("exhaustiveKnnParameters") or {}) if algo else {}
    )
    # Azure's default metric is cosine when the algorithm names none.
    metric_name = None if algo is None else str(algo_params.get("metric") or "cosine")
    metric = FROM_METRIC.get(str(metric_name))
    if metric_name is not None and metric is None:
        raise ConfigError(
            f"Azure AI Search index {name!r}: vector field {vec['name']!r} uses metric "
            f"{metric_name!r}, which vecmigrate does not map",
            hint="vecmigrate maps cosine, euclidean and dotProduct",
        )
    vector = VectorField(
        name=VECTOR,
        dim=int(vec["dimensions"]),
        metric=metric or Metric.COSINE,
        index=_index_spec(algo),
        metric_source=METRIC_SOURCE if metric else METRIC_UNKNOWN,
    )
    skip = {key["name"], DOC_FIELD, EXTRA_FIELD} | {f["name"] for f in vectors}
    metadata = tuple(
        MetadataField(name=f["name"], type=FROM_TYPE.get(f["type"], "json"))  # type: ignore[arg-type]
        for f in fields
        if f["name"] not in skip and f.get("type") in FROM_TYPE
    )
    return CollectionSchema(
        name=name,
        id_type=IdType.INT if facts.get("id_type") == IdType.INT.value else IdType.STRING,
        vectors=(vector,),
        has_document=any(f["name"] == DOC_FIELD for f in fields),
        metadata=metadata,
        engine="azure-search",
        engine_settings={
            "index": str(index["name"]),
            "key_field": key["name"],
            "key_filterable": key.get("filterable") is not False,
            "key_sortable": key.get("sortable") is not False,
            "vector_field": vec["name"],
            "fields": sorted(f["name"] for f in fields),
            "other_vector_fields": sorted(f["name"] for f in vectors if f is not vec),
        },
    )


# -- filters ---------------------------------------------------------------------------------
def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return odata_string(str(value))


def compile_filter(node: Node, negate: bool = False) -> str:
    """A portable filter as an OData ``$filter``, with the portable semantics: ``$not`` is
    pushed down to the leaves, and a negated comparison also matches a missing (null) value
    while a positive one never does, whatever OData's null comparisons say."""
    if isinstance(node, Bool):
        if node.op == "$not":
            return compile_filter(node.children[0], not negate)
        op = node.op if not negate else ("$or" if node.op == "$and" else "$and")
        parts = [compile_filter(c, negate) for c in node.children]
        joined = (" and " if op == "$and" else " or ").join(f"({p})" for p in parts)
        return parts[0] if len(parts) == 1 else joined
    return _leaf(node, negate)


def _leaf(c: Cond, negate: bool) -> str:
    key = c.field.name
    if c.op == "$exists":
        return f"{key} ne null" if bool(c.value) != negate else f"{key} eq null"
    if c.field.type.startswith("list<"):
        values = c.value if c.op in ("$in", "$nin") else [c.value]
        any_of = " or ".join(f"x eq {_literal(v)}" for v in values) or "false"
        if negate != (c.op in ("$ne", "$nin")):  # missing, or contains none of them
            return f"{key} eq null or not {key}/any(x: {any_of})"
        return f"{key}/any(x: {any_of})"
    op = _NEGATE[c.op] if negate else c.op
    if op in ("$in", "$nin"):
        cond = " or ".join(f"{key} eq {_literal(v)}" for v in c.value) or "false"
        cond = f"({cond})" if op == "$in" else f"not ({cond})"
    else:
        cond = f"{key} {_OP[op]} {_literal(c.value)}"
    if negate:
        return f"{key} eq null or {cond}"
    if op in ("$ne", "$nin"):
        return f"{key} ne null and {cond}"
    return cond


# -- documents <-> batches --------------------------------------------------------------------


def batch_documents(
    batch: pa.RecordBatch, schema: CollectionSchema, name: str
) -> tuple[list[dict[str, Any]], list[int]]:
    """The documents of an indexing batch (every field present, so a merge replaces the
    whole document) and each one's JSON size; DataError names the id and field of a value
    Azure AI Search cannot take."""
    raw_ids = batch.column("id").to_pylist()
    keys = [to_key(i, schema.id_type, name) for i in raw_ids]
    matrix = vectors_to_numpy(batch.column(schema.vector.name))
    if matrix.shape[1] != schema.vector.dim:
        raise DataError(
            f"vectors have {matrix.shape[1]} dimensions, the index {schema.vector.dim}",
            collection=name, field=schema.vector.name,
        )  # fmt: skip
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if len(bad):
        raise DataError(
            "Azure AI Search stores finite float32 values only (NaN or infinity found)",
            collection=name, record_id=raw_ids[bad[0]], field=schema.vector.name,
        )  # fmt: skip
    n = batch.num_rows
    vector_key = str(schema.engine_settings.get("vector_field") or VECTOR)
    key_field = str(schema.engine_settings.get("key_field") or KEY)
    docs: list[dict[str, Any]] = [
        {key_field: keys[i], vector_key: matrix[i].tolist()} for i in range(n)
    ]
    extras: list[dict[str, Any]] = [{} for _ in range(n)]
    names = batch.schema.names
    if "metadata" in names:
        struct = batch.column(names.index("metadata"))
        by_name = {f.name: f for f in schema.metadata}
        for child_field, child in zip(struct.type, struct.flatten(), strict=True):
            f = by_name[child_field.name]
            for i, v in enumerate(child.to_pylist()):
                kept = (
                    None
                    if v is None
                    else storable(
                        f, v, name, raw_ids[i], "Azure AI Search JSON holds finite doubles only"
                    )
                )
                if v is not None and kept is None:
                    extras[i][f.name] = v
                docs[i][f.name] = kept
    if "metadata_extra" in names:
        for i, raw in enumerate(batch.column(names.index("metadata_extra")).to_pylist()):
            if raw:
                extras[i].update(json.loads(raw))
    for i in range(n):
        docs[i][EXTRA_FIELD] = (
            json.dumps(extras[i], ensure_ascii=False, sort_keys=True) if extras[i] else None
        )
    if schema.has_document and "document" in names:
        for i, d in enumerate(batch.column(names.index("document")).to_pylist()):
            docs[i][DOC_FIELD] = d
    sizes = [json_size(d) + 32 for d in docs]
    for i, size in enumerate(sizes):
        if size > BATCH_CHUNK_BYTES:
            raise DataError(
                f"document is {size:,} bytes; an Azure AI Search indexing request holds at "
                f"most {MAX_BATCH_BYTES:,}",
                collection=name, record_id=raw_ids[i], field="metadata",
                hint="shorten or drop large fields with a mapping",
            )  # fmt: skip
    return docs, sizes


def chunks(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous ``(start, end)`` runs of at most 1,000 documents and 15 MiB of JSON."""
    out, start = [], 0
    while start < len(sizes):
        end, total = start, 0
        while (
            end < len(sizes)
            and end - start < MAX_BATCH_DOCS
            and (end == start or total + sizes[end] <= BATCH_CHUNK_BYTES)
        ):
            total += sizes[end]
            end += 1
        out.append((start, end))
        start = end
    return out


def documents_to_batch(schema: CollectionSchema, docs: Sequence[dict[str, Any]]) -> pa.RecordBatch:
    """Documents as a search returns them in the batch layout; ``metadata_extra`` comes back
    from its JSON field, nulls are left out (Azure AI Search returns absent fields as null)."""
    by_name = {f.name: f for f in schema.metadata}
    key_field = str(schema.engine_settings.get("key_field") or KEY)
    vector_key = str(schema.engine_settings.get("vector_field") or VECTOR)
    dim = schema.vector.dim
    ids, texts, metas = [], [], []
    matrix = np.zeros((len(docs), dim), dtype=np.float32)
    for i, d in enumerate(docs):
        ids.append(from_key(str(d[key_field]), schema.id_type))
        texts.append(d.get(DOC_FIELD))
        vec = d.get(vector_key)
        if vec is not None:
            if len(vec) != dim:
                raise ConfigError(
                    f"Azure AI Search returned a vector of {len(vec)} values, expected {dim}"
                )
            matrix[i] = np.asarray(vec, dtype=np.float32)
        meta = {
            k: typed_number(by_name[k], d[k])
            for k in by_name
            if d.get(k) is not None and d.get(k) != []
        }
        metas.append(with_extra(meta, d.get(EXTRA_FIELD)))
    return build_batch(
        schema,
        ids,
        {schema.vector.name: matrix},
        documents=texts if schema.has_document else None,
        metadata=metas,
    )
