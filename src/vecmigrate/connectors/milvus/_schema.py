"""Physical layout of Milvus collections for the Milvus connector (used only by it).

Indexes are mapped deliberately both ways (portable kind + parameters <-> Milvus index
type + parameters), collections made by other tools are described from their fields, and
new collections get the ``json`` layout. Rows <-> Arrow batches: ``_records``.
"""

from __future__ import annotations

import json
from typing import Any

from pymilvus import DataType, MilvusClient

from vecmigrate.connectors.milvus import _sparse as milvus_sparse
from vecmigrate.connectors.milvus._filters import LAYOUT_KEY, PK_KEY
from vecmigrate.errors import ConfigError
from vecmigrate.model import (
    CollectionSchema,
    IdType,
    IndexKind,
    IndexSpec,
    MetadataField,
    MetadataType,
    Metric,
    SparseField,
    VectorField,
)

SCHEMA_MARK = "vecmigrate.schema:"
DOC_KEY = "milvus.document_field"
MAX_VARCHAR = 65535
METRIC_OF: dict[Metric, str] = {Metric.COSINE: "COSINE", Metric.DOT: "IP", Metric.L2: "L2"}
PORTABLE_METRIC = {v: k for k, v in METRIC_OF.items()}
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
_DOC_FIELDS = ("document", "text", "content")
# Milvus index type -> portable kind, and its parameters -> portable names.
_KIND: dict[str, IndexKind] = {
    "FLAT": "flat",
    "IVF_FLAT": "ivf_flat",
    "IVF_PQ": "ivf_pq",
    "HNSW": "hnsw",
    "AUTOINDEX": "auto",
}
_PARAM_NAMES = {
    "M": "M",
    "efConstruction": "ef_construction",
    "nlist": "nlist",
    "m": "m",
    "nbits": "nbits",
}
_DEFAULTS: dict[str, dict[str, int]] = {
    "IVF_FLAT": {"nlist": 128},
    "IVF_PQ": {"nlist": 128, "m": 8, "nbits": 8},
    "HNSW": {"M": 16, "efConstruction": 200},
}


def milvus_index(
    v: VectorField, kinds: frozenset[str], engine: str
) -> tuple[str, dict[str, int], str | None]:
    """Milvus index type and parameters for ``v``, and a note when ``engine`` cannot build
    the kind asked for (``kinds``: what it can build) so that a substitute is used."""
    spec = v.index or IndexSpec(kind="flat")
    kind, note = spec.kind, None
    if kind not in kinds and kind not in ("auto", "none"):
        kind = "ivf_flat" if kind == "ivf_pq" and "ivf_flat" in kinds else "auto"
        note = f"{'IVF_FLAT' if kind == 'ivf_flat' else 'AUTOINDEX'} ({engine} has no {spec.kind})"
    if kind == "auto":
        return "AUTOINDEX", {}, note
    if kind == "none":
        return "FLAT", {}, note  # Milvus loads nothing without an index: FLAT is exact search
    index_type = kind.upper()
    portable = dict(spec.params) if kind == spec.kind else {}
    if index_type == "HNSW" and "M" not in portable and "m" in portable:
        portable["M"] = portable["m"]  # "m" means HNSW's M when the index is HNSW
    params = {
        key: int(portable.get(_PARAM_NAMES[key], default))
        for key, default in _DEFAULTS.get(index_type, {}).items()
    }
    return index_type, params, note


def portable_index(desc: dict[str, Any]) -> IndexSpec:
    """The IndexSpec of a Milvus index description (``describe_index`` output)."""
    index_type = str(desc.get("index_type", "")).upper()
    kind = _KIND.get(index_type, "auto")
    params: dict[str, int | float | str] = {}
    for key, name in _PARAM_NAMES.items():
        if key in desc and index_type in _DEFAULTS and key in _DEFAULTS[index_type]:
            params[name] = int(desc[key])
    if index_type and index_type not in _KIND:
        params["milvus_index_type"] = index_type  # e.g. IVF_SQ8, DISKANN: kept visible
    return IndexSpec(kind=kind, params=params)


def infer_schema(
    name: str, info: dict[str, Any], indexes: dict[str, dict[str, Any]], engine: str
) -> CollectionSchema:
    """Describe a collection vecmigrate did not create, and say what was assumed."""
    vectors: list[VectorField] = []
    sparse: list[SparseField] = []
    metadata: list[MetadataField] = []
    notes: dict[str, Any] = {LAYOUT_KEY: "columns"}
    nullable: list[str] = []
    key: str | None = None
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
            key = fname
            id_type = IdType.INT if ftype == DataType.INT64 else IdType.STRING
        elif ftype == DataType.FLOAT_VECTOR:
            idx = indexes.get(fname, {})
            metric = PORTABLE_METRIC.get(str(idx.get("metric_type", "")).upper())
            if metric is None:
                notes[f"{fname}.metric"] = "assumed cosine: the field has no index"
                metric = Metric.COSINE
            index = portable_index(idx)
            vectors.append(
                VectorField(name=fname, dim=int(params["dim"]), metric=metric, index=index)
            )
        elif ftype == DataType.SPARSE_FLOAT_VECTOR:
            metric_type = str(indexes.get(fname, {}).get("metric_type", "")).upper()
            if metric_type != "IP":
                notes[f"{fname}.metric"] = (
                    f"assumed dot: the field's index metric is {metric_type!r}"
                )
            sparse.append(SparseField(name=fname, metric=Metric.DOT))
            continue
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
    if key is None:
        raise ConfigError(f"Milvus collection {name!r} has no primary key")
    if info.get("enable_dynamic_field"):
        notes["dynamic_fields"] = "dynamic ($meta) fields are not migrated"
    notes.update({PK_KEY: key, DOC_KEY: doc, "milvus.nullable": nullable})
    return CollectionSchema(
        name=name,
        id_type=id_type,
        vectors=tuple(vectors),
        sparse=tuple(sparse),
        metadata=tuple(metadata),
        has_document=doc is not None,
        engine=engine,
        engine_settings=notes,
    )


def new_collection(
    client: MilvusClient, schema: CollectionSchema, kinds: frozenset[str], engine: str
) -> tuple[Any, Any, CollectionSchema]:
    """Milvus schema, index parameters and the vecmigrate schema to store (as the
    collection's description) for a new collection in the ``json`` layout."""
    settings = {k: v for k, v in schema.engine_settings.items() if not k.startswith("milvus.")}
    settings[LAYOUT_KEY] = "json"
    index = client.prepare_index_params()
    vectors = []
    for v in schema.vectors:
        index_type, params, note = milvus_index(v, kinds, engine)
        if note:
            settings[f"milvus.{v.name}.index"] = note
        index.add_index(
            v.name, index_type=index_type, metric_type=METRIC_OF[v.metric], params=params
        )
        real = portable_index({"index_type": index_type, **params})
        vectors.append(v.model_copy(update={"index": real}))
    for sp in schema.sparse:
        index.add_index(sp.name, index_type=milvus_sparse.INDEX_TYPE, metric_type="IP")
        if note := milvus_sparse.index_note(sp):
            settings[f"milvus.{sp.name}.index"] = note
    max_len = int(schema.engine_settings.get("milvus.id_max_length", 512))
    if schema.id_type is not IdType.INT:
        settings["milvus.id_max_length"] = max_len
    stored = schema.replace(engine=engine, engine_settings=settings, vectors=tuple(vectors))
    text = json.dumps(json.loads(stored.to_json()), separators=(",", ":"))
    ms = client.create_schema(
        auto_id=False, enable_dynamic_field=False, description=SCHEMA_MARK + text
    )
    if schema.id_type is IdType.INT:
        ms.add_field("id", DataType.INT64, is_primary=True)
    else:
        ms.add_field("id", DataType.VARCHAR, is_primary=True, max_length=max_len)
    for v in schema.vectors:
        ms.add_field(v.name, DataType.FLOAT_VECTOR, dim=v.dim)
    for sp in schema.sparse:
        ms.add_field(sp.name, DataType.SPARSE_FLOAT_VECTOR)
    ms.add_field("document", DataType.VARCHAR, max_length=MAX_VARCHAR)
    ms.add_field("metadata", DataType.JSON)
    ms.add_field("metadata_extra", DataType.VARCHAR, max_length=MAX_VARCHAR)
    ms.add_field("metadata_present", DataType.JSON)
    return ms, index, stored
