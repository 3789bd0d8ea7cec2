"""Physical layout of Milvus collections for the Milvus connector (used only by it).

Indexes are mapped deliberately both ways (portable kind + parameters <-> Milvus index
type + parameters), collections made by other tools are described from their fields, and
rows are converted between Milvus dicts and Arrow batches.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
from pymilvus import DataType

from vecmigrate.connectors.milvus_expr import LAYOUT_KEY, PK_KEY, layout, pk
from vecmigrate.errors import ConfigError
from vecmigrate.model import (
    CollectionSchema,
    IdType,
    IndexKind,
    IndexSpec,
    MetadataField,
    MetadataType,
    Metric,
    VectorField,
)
from vecmigrate.records import build_batch

DOC_KEY = "milvus.document_field"
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
        metadata=tuple(metadata),
        has_document=doc is not None,
        engine=engine,
        engine_settings=notes,
    )


def output_fields(schema: CollectionSchema) -> list[str]:
    """The fields a scan or fetch reads."""
    fields = [pk(schema), *(v.name for v in schema.vectors)]
    if layout(schema) == "json":
        return [*fields, "document", "metadata", "metadata_extra", "metadata_present"]
    doc = schema.engine_settings.get(DOC_KEY)
    return [*fields, *([doc] if doc else []), *(m.name for m in schema.metadata)]


def rows_to_batch(rows: list[dict[str, Any]], schema: CollectionSchema) -> pa.RecordBatch:
    """Milvus query/get rows -> a batch in ``schema``'s layout."""
    vectors = {
        v.name: np.asarray([r[v.name] for r in rows], dtype=np.float32).reshape(len(rows), v.dim)
        for v in schema.vectors
    }
    meta: list[dict[str, Any]] = []
    docs: list[str | None] = []
    if layout(schema) == "json":
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
    key = pk(schema)
    return build_batch(
        schema,
        [r[key] for r in rows],
        vectors,
        documents=docs if schema.has_document else None,
        metadata=meta,
    )


def _plain(value: Any) -> Any:
    """ARRAY values arrive as protobuf repeated containers; make them Python lists."""
    if value is None or isinstance(value, str | bytes | int | float | bool | dict | list):
        return value
    return list(value)


def typed_metadata(batch: pa.RecordBatch, schema: CollectionSchema) -> list[dict[str, Any]]:
    """Typed metadata per record (nulls omitted); json-typed values decoded to objects."""
    out: list[dict[str, Any]] = [{} for _ in range(batch.num_rows)]
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
