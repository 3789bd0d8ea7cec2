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
from pymilvus import DataType, MilvusClient

from vecmigrate.connectors import milvus_sparse
from vecmigrate.connectors.milvus_expr import LAYOUT_KEY, PK_KEY, layout, pk
from vecmigrate.errors import ConfigError, DataError
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
from vecmigrate.records import build_batch, vectors_to_numpy

SCHEMA_MARK = "vecmigrate.schema:"
DOC_KEY = "milvus.document_field"
MAX_VARCHAR = 65535
_INT64_MAX = 2**63 - 1
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


def output_fields(schema: CollectionSchema) -> list[str]:
    """The fields a scan or fetch reads."""
    fields = [pk(schema), *(v.name for v in schema.vectors), *(s.name for s in schema.sparse)]
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
    json_layout = layout(schema) == "json"
    return build_batch(
        schema,
        [r[key] for r in rows],
        vectors,
        documents=docs if schema.has_document else None,
        metadata=meta,
        sparse={s.name: milvus_sparse.read_column(rows, s, json_layout) for s in schema.sparse},
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


def check_ids(
    name: str,
    schema: CollectionSchema,
    ids: list[Any],
    *,
    lite: bool,
    version: tuple[int, int] | None,
) -> None:
    """Refuse, naming the record, ids the engine would reject for the whole batch (or
    store but never return: Milvus 2.3.5 hides the key 2**63 - 1)."""
    if any(i is None for i in ids):
        raise DataError("a record has no id", collection=name, field="id")
    if schema.id_type is IdType.INT:
        if version is not None and version < (2, 5) and _INT64_MAX in ids:
            raise DataError(
                f"Milvus {'.'.join(map(str, version))} stores the id "
                f"{_INT64_MAX} but never returns it (seen on 2.3.5; milvus-lite 2.5 returns it)",
                collection=name,
                record_id=_INT64_MAX,
                field="id",
            )
        return
    max_len = int(schema.engine_settings.get("milvus.id_max_length", 512))
    for i in ids:
        if len(i.encode()) > max_len:
            raise DataError(
                f"id is longer than the key's {max_len} bytes",
                collection=name,
                record_id=i,
                field="id",
            )
        if lite and "'" in i:
            raise DataError(
                "milvus-lite cannot store ids containing a single quote "
                "(its upsert fails with 'internal error')",
                collection=name,
                record_id=i,
                field="id",
            )


def batch_to_rows(
    name: str, schema: CollectionSchema, data: pa.RecordBatch, ids: list[Any]
) -> list[dict[str, Any]]:
    """Milvus rows for one batch in the collection's physical layout."""
    n = data.num_rows
    vectors = {v.name: vectors_to_numpy(data.column(v.name)) for v in schema.vectors}
    docs = data.column("document").to_pylist() if schema.has_document else [None] * n
    typed = typed_metadata(data, schema)
    extra = data.column("metadata_extra").to_pylist()
    key, doc_field = pk(schema), schema.engine_settings.get(DOC_KEY)
    json_layout = layout(schema) == "json"
    sparse = {
        s.name: milvus_sparse.to_rows(name, s, data.column(s.name), ids) for s in schema.sparse
    }
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {key: ids[i]}
        for vname, matrix in vectors.items():
            row[vname] = matrix[i]
        for sname, values in sparse.items():
            if values[i] is None and not json_layout:
                raise DataError(
                    "the collection's sparse field cannot tell a missing vector from an "
                    "empty one (Milvus vector fields are not nullable)",
                    collection=name,
                    record_id=ids[i],
                    field=sname,
                )
            row[sname] = values[i] if values[i] is not None else {}
        if json_layout:
            row["document"] = docs[i] or ""
            row["metadata"] = typed[i]
            row["metadata_extra"] = extra[i] or ""
            row["metadata_present"] = {
                "fields": {m.name: m.name in typed[i] for m in schema.metadata},
                "document": docs[i] is not None,
                "sparse": {k: v[i] is not None for k, v in sparse.items()},
            }
            too_long = [
                f for f in ("document", "metadata_extra") if len(row[f].encode()) > MAX_VARCHAR
            ]
        else:
            if doc_field:
                row[doc_field] = docs[i] if docs[i] is not None else ""
            row.update({m.name: typed[i].get(m.name) for m in schema.metadata})
            too_long = []
        if too_long:
            raise DataError(
                f"{too_long[0]} is longer than Milvus' {MAX_VARCHAR}-byte VARCHAR",
                collection=name,
                record_id=ids[i],
                field=too_long[0],
            )
        rows.append(row)
    return rows
