"""Translation between vecmigrate's model and Weaviate's, for ``connectors/weaviate.py``:
class bodies, property types, index settings, filters, objects <-> batches, error statuses.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from weaviate.classes.query import Filter

from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import Bool, Cond, Node
from vecmigrate.model import (
    CollectionSchema,
    IdType,
    IndexSpec,
    MetadataField,
    Metric,
    Partition,
    VectorField,
)
from vecmigrate.records import build_batch

SCHEMA_PREFIX = "vecmigrate:schema:"
ID_PROP, DOC_PROP, EXTRA_PROP = "vecmigrate_id", "document", "metadata_extra"
SPECIAL = (ID_PROP, DOC_PROP, EXTRA_PROP)
DISTANCE = {Metric.COSINE: "cosine", Metric.DOT: "dot", Metric.L2: "l2-squared"}
METRIC = {v: k for k, v in DISTANCE.items()}
_DTYPE = {
    **{"string": "text", "int64": "int", "float64": "number", "bool": "boolean", "json": "text"},
    **{"list<string>": "text[]", "list<int64>": "int[]", "list<float64>": "number[]"},
}
# Weaviate types without a portable twin (boolean[], object, geo, ...) are read as json.
PORTABLE_TYPES = {
    **{v: k for k, v in _DTYPE.items() if k != "json"},
    **{"date": "string", "uuid": "string", "date[]": "list<string>", "uuid[]": "list<string>"},
}
CLASS_RE = re.compile(r"^[A-Z][_0-9A-Za-z]*$")
NAME_RE = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,230}$")
TENANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_RESULTS = 10_000  # Weaviate's QUERY_MAXIMUM_RESULTS default: per fetch and batch delete
_INDEX_PARAMS = (("M", "maxConnections"), ("ef_construction", "efConstruction"), ("ef", "ef"))


def class_name(name: str) -> str:
    """The Weaviate class of a collection (Weaviate capitalises the first letter)."""
    cls = name[:1].upper() + name[1:]
    if not CLASS_RE.match(cls):
        raise ConfigError(
            f"{name!r} cannot be a Weaviate class name (letters, digits, _; a letter first)",
            hint="pick another target collection name",
        )
    return cls


def prop_name(field: str) -> str:
    """The property of a metadata field: Weaviate lower-cases a property's first letter."""
    return field[:1].lower() + field[1:]


def class_body(schema: CollectionSchema) -> dict[str, Any]:
    """The class JSON that creates ``schema`` deliberately: types, index, null state."""
    if schema.sparse:
        raise ConfigError(f"Weaviate has no sparse vectors ({schema.sparse[0].name!r})")
    props: list[dict[str, Any]] = []
    taken: dict[str, str] = {}
    for m in schema.metadata:
        name = prop_name(m.name)
        if not NAME_RE.match(name) or name in (*SPECIAL, "id", "_id", "vector"):
            raise ConfigError(
                f"{m.name!r} cannot be a Weaviate property name", hint="rename it in the mapping"
            )
        if name in taken:
            raise ConfigError(
                f"fields {taken[name]!r} and {m.name!r} are one property in Weaviate ({name!r})",
                hint="rename one of them in the mapping",
            )
        taken[name] = m.name
        dtype = _DTYPE[m.type]
        p: dict[str, Any] = {
            "name": name,
            "dataType": [dtype],
            "indexFilterable": m.type != "json",
        }
        if dtype.startswith("text"):  # exact matching, no BM25 index on metadata
            p.update(tokenization="field", indexSearchable=False)
        if dtype in ("int", "number"):
            p["indexRangeFilters"] = True
        props.append(p)
    text = {"dataType": ["text"], "indexSearchable": False}
    if schema.id_type is not IdType.UUID:
        props.append({"name": ID_PROP, **text, "tokenization": "field"})
    if schema.has_document:
        props.append({"name": DOC_PROP, "dataType": ["text"], "indexFilterable": False})
    props.append({"name": EXTRA_PROP, **text, "indexFilterable": False})
    vectors = {}
    for v in schema.vectors:
        if not NAME_RE.match(v.name):
            raise ConfigError(f"{v.name!r} cannot be a Weaviate vector name")
        kind = "flat" if v.index and v.index.kind == "flat" else "hnsw"
        params = v.index.params if v.index else {}
        cfg: dict[str, Any] = {"distance": DISTANCE[v.metric]}
        if kind == "hnsw":
            cfg.update(
                {theirs: int(params[ours]) for ours, theirs in _INDEX_PARAMS if ours in params}
            )
        vectors[v.name] = {
            "vectorizer": {"none": {}},
            "vectorIndexType": kind,
            "vectorIndexConfig": cfg,
        }
    return {
        "class": class_name(schema.name),
        "description": SCHEMA_PREFIX + schema.to_json(),
        "properties": props,
        "vectorConfig": vectors,
        "invertedIndexConfig": {"indexNullState": True},
        "multiTenancyConfig": {"enabled": schema.namespaces is not None},
    }


def index_specs(cfg: Any) -> tuple[dict[str, tuple[Metric, IndexSpec]], dict[str, Any]]:
    """Metric and index per vector of a parsed class config, and the engine settings."""
    named = cfg.vector_config or {}
    indexes = {n: c.vector_index_config for n, c in named.items()}
    if not named and cfg.vector_index_config is not None:  # a legacy unnamed vector
        indexes = {"default": cfg.vector_index_config}
    settings: dict[str, Any] = {
        "class": cfg.name,
        "multi_tenancy": bool(cfg.multi_tenancy_config.enabled),
        "unnamed_vector": "default" in indexes,
        "vectors": {},
    }
    specs: dict[str, tuple[Metric, IndexSpec]] = {}
    for vname, idx in indexes.items():
        kind: Literal["hnsw", "flat"] = "hnsw" if hasattr(idx, "max_connections") else "flat"
        params: dict[str, int | float | str] = {}
        if kind == "hnsw":
            params = {"M": idx.max_connections, "ef_construction": idx.ef_construction}
            params["ef"] = idx.ef
        distance = str(getattr(idx.distance_metric, "value", idx.distance_metric))
        settings["vectors"][vname] = {"index": kind, "distance": distance, **params}
        specs[vname] = (METRIC[distance], IndexSpec(kind=kind, params=params))
    return specs, settings


def metadata_fields(cfg: Any) -> tuple[MetadataField, ...]:
    """Portable metadata fields of a class made by another tool."""
    return tuple(
        MetadataField(name=p.name, type=PORTABLE_TYPES.get(_dtype(p), "json"))  # type: ignore[arg-type]
        for p in cfg.properties
        if p.name not in SPECIAL
    )


def infer_schema(
    name: str,
    cfg: Any,
    specs: dict[str, tuple[Metric, IndexSpec]],
    tenants: tuple[str, ...] | None,
    sample: Any | None,
) -> CollectionSchema:
    """Schema of a class made by another tool: dims from one sampled object."""
    vectors = []
    for vname, (metric, index) in specs.items():
        if sample is None or vname not in sample.vector:
            raise ConfigError(f"cannot tell the dimension of {name!r}.{vname}: no object has it")
        dim = len(sample.vector[vname])
        vname = "vector" if vname == "default" else vname
        vectors.append(VectorField(name=vname, dim=dim, metric=metric, index=index))
    props = {p.name for p in cfg.properties}
    return CollectionSchema(
        name=name,
        id_type=IdType.STRING if ID_PROP in props else IdType.UUID,
        vectors=tuple(vectors),
        has_document=DOC_PROP in props,
        metadata=metadata_fields(cfg),
        namespaces=tenants,
    )


def uuid_partitions(total: int, n: int) -> list[Partition]:
    """At most ``n`` ``(after, upto]`` uuid ranges of a class without tenants."""
    k = max(1, min(n, total // 1000 + 1))
    # uuid5 ids spread evenly over the uuid space: even cuts give even partitions
    cuts = [None, *(str(uuid.UUID(int=i * (2**128 // k))) for i in range(1, k)), None]
    return [
        Partition(
            id=f"uuids-{i}",
            spec={"tenants": [None], "after": cuts[i], "upto": cuts[i + 1]},
            estimated_rows=total // k,
        )
        for i in range(k)
    ]


def _dtype(prop: Any) -> str:
    return str(getattr(prop.data_type, "value", prop.data_type))


# -- filters -----------------------------------------------------------------------------------
def compile_filter(node: Node) -> Any:
    """A parsed portable filter as a weaviate ``Filter``, with vecmigrate's semantics."""
    if isinstance(node, Bool):
        parts = [compile_filter(c) for c in node.children]
        if node.op == "$and":
            return Filter.all_of(parts)
        if node.op == "$or":
            return Filter.any_of(parts)
        return Filter.not_(parts[0])  # Weaviate 1.33+: the exact complement
    return _leaf(node)


def _leaf(node: Cond) -> Any:
    f = node.field
    prop = Filter.by_property(prop_name(f.name))
    is_list = f.type.startswith("list<")
    value = node.value
    if f.type in ("float64", "list<float64>"):  # number properties take valueNumber
        value = [float(v) for v in value] if isinstance(value, list) else float(value)
    if node.op == "$exists":
        if is_list:  # the null-state index counts an empty array as null
            raise ConfigError(f"Weaviate cannot tell an empty list from a missing {f.name!r}")
        return prop.is_none(not value)
    if node.op == "$eq":
        return prop.contains_any([value]) if is_list else prop.equal(value)
    if node.op == "$in":
        return prop.contains_any(value)
    if node.op == "$ne":  # NotEqual alone also matches objects lacking the property
        return Filter.all_of([prop.not_equal(value), prop.is_none(False)])
    if node.op == "$nin":
        return Filter.all_of([prop.contains_none(value), prop.is_none(False)])
    ranges = {"$gt": prop.greater_than, "$gte": prop.greater_or_equal}
    ranges.update({"$lt": prop.less_than, "$lte": prop.less_or_equal})
    return ranges[node.op](value)


# -- objects <-> batches -------------------------------------------------------------------------
def uuids_for(name: str, schema: CollectionSchema, ids: list[Any]) -> list[str]:
    """Object uuids: uuid ids as they are (canonical form), others uuid5(collection/id)."""
    if schema.id_type is not IdType.UUID:
        return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{i}")) for i in ids]
    out = []
    for i in ids:
        try:
            out.append(str(uuid.UUID(str(i))))
        except ValueError:
            raise DataError("not a UUID", collection=name, record_id=i, field="id") from None
    return out


def object_properties(
    name: str, schema: CollectionSchema, batch: pa.RecordBatch, ids: list[Any]
) -> list[dict[str, Any]]:
    """Per-object properties: typed metadata, document, original id, metadata_extra."""
    names = batch.schema.names
    props: list[dict[str, Any]] = [{} for _ in range(batch.num_rows)]
    if "metadata" in names:
        struct = batch.column(names.index("metadata"))
        for fld, child in zip(struct.type, struct.flatten(), strict=True):
            key = prop_name(fld.name)
            for i, v in enumerate(child.to_pylist()):
                if v is None:
                    continue
                # gRPC batches carry scalar properties as protobuf doubles
                if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53:
                    raise DataError(
                        "Weaviate carries int properties as doubles: beyond 2**53 they change",
                        collection=name,
                        record_id=ids[i],
                        field=f"metadata.{fld.name}",
                    )
                props[i][key] = v
    for col, prop in (("document", DOC_PROP), ("metadata_extra", EXTRA_PROP)):
        if col in names:
            for i, v in enumerate(batch.column(names.index(col)).to_pylist()):
                if v is not None:
                    props[i][prop] = v
    if schema.id_type is not IdType.UUID:
        for i, rid in enumerate(ids):
            props[i][ID_PROP] = str(rid)
    return props


def objects_to_batch(
    objs: list[Any], schema: CollectionSchema, tenant: str | None
) -> pa.RecordBatch:
    """Client result objects as a batch in the schema's layout."""
    json_fields = {m.name for m in schema.metadata if m.type == "json"}
    fields = {prop_name(m.name): m.name for m in schema.metadata}
    ids: list[Any] = []
    metas, docs = [], []
    for o in objs:
        p = o.properties
        rid = p.get(ID_PROP, str(o.uuid))
        ids.append(int(rid) if schema.id_type is IdType.INT else rid)
        docs.append(p.get(DOC_PROP))
        meta = {
            fields.get(k, k): plain(v) for k, v in p.items() if k not in SPECIAL and v is not None
        }
        for k in json_fields & meta.keys():
            meta[k] = json.loads(meta[k])
        if p.get(EXTRA_PROP):
            meta.update(json.loads(p[EXTRA_PROP]))
        metas.append(meta)
    vectors = {}
    unnamed = schema.engine_settings.get("unnamed_vector")
    for v in schema.vectors:
        rows = [o.vector["default" if unnamed else v.name] for o in objs]
        vectors[v.name] = np.asarray(rows, dtype=np.float32).reshape(len(objs), v.dim)
    docs_or_none = docs if schema.has_document else None
    return build_batch(
        schema,
        ids,
        vectors,
        documents=docs_or_none,
        metadata=metas,
        namespaces=[tenant] * len(objs),
    )


def plain(value: Any) -> Any:
    """Client values (datetime, UUID) as portable JSON-able values."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
