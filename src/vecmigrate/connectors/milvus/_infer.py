"""Describing a Milvus collection another tool made (layout ``columns``), as it is laid out.

* the primary key is the id, whatever its name, INT64 or VARCHAR, ``auto_id`` or not;
* the text is a VARCHAR field named by ``?document_field=`` or by a common name
  (``document``, ``text``, ``page_content`` ...: ``connectors/foreign``);
* every FLOAT_VECTOR field is carried (``?vector_field=a,b`` chooses), each with the metric
  of its index; a field without an index has its vectors sampled (``sampled_metric``);
* scalar and ARRAY fields become metadata fields of their type; a JSON field named
  ``metadata`` (or ``?metadata_field=``) and the dynamic fields (``$meta``) have their keys
  become typed metadata fields, typed from a sample of up to 1000 rows.

Where each metadata field lives is recorded in ``engine_settings[FIELDS_KEY]`` as
``{field: [container, key]}``: container None for a field of its own, the JSON field's
name, or ``$meta``; reads, writes and filters follow it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from pymilvus import DataType

from vecmigrate.connectors.foreign import (
    DOCUMENT_NAMES,
    METADATA_NAMES,
    FieldsConfig,
    pick_column,
    sampled_metric,
)
from vecmigrate.connectors.milvus._filters import (
    DYNAMIC,
    DYNAMIC_KEY,
    FIELDS_KEY,
    JSON_KEY,
    LAYOUT_KEY,
    PK_KEY,
)
from vecmigrate.connectors.milvus._schema import (
    BM25_PARAMS,
    DOC_KEY,
    PORTABLE_METRIC,
    portable_index,
)
from vecmigrate.errors import ConfigError
from vecmigrate.model import (
    METRIC_UNKNOWN,
    CollectionSchema,
    FullTextField,
    IdType,
    IndexSpec,
    MetadataField,
    MetadataType,
    Metric,
    SparseField,
    VectorField,
)
from vecmigrate.records import infer_metadata_fields

# Reads up to SAMPLE_ROWS rows of these fields (a vector field, the JSON field, "$meta").
Sampler = Callable[[list[str]], list[dict[str, Any]]]

PARTITION_KEY_NOTE = (
    "Milvus partition key (records hashed to partitions by it): read as a filter index"
)
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


def _vector(
    name: str, field: dict[str, Any], idx: dict[str, Any], sample: Sampler, notes: dict[str, Any]
) -> VectorField:
    """A FLOAT_VECTOR field with the metric its index searches with, else sampled."""
    fname, dim = field["name"], int(field.get("params", {})["dim"])
    metric_type = str(idx.get("metric_type", "")).upper()
    metric = PORTABLE_METRIC.get(metric_type)
    if idx and metric is None:
        raise ConfigError(
            f"the index on {name}.{fname} searches with {metric_type or 'no'} metric, "
            "which vecmigrate has no metric for"
        )
    if metric is not None:
        index_type = str(idx.get("index_type", "")).upper() or "?"
        source = f"the {index_type} index on {fname!r} ({metric_type})"
        index = portable_index(idx)
    else:
        rows = sample([fname])
        vectors = np.asarray([r[fname] for r in rows], dtype=np.float32).reshape(len(rows), dim)
        metric, source = sampled_metric(vectors)
        notes[f"{fname}.metric"] = (
            f"the field has no index; {source}"
            if source != METRIC_UNKNOWN
            else "the field has no index and its sampled vectors are not unit length"
        )
        index = IndexSpec(kind="flat")
    return VectorField(name=fname, dim=dim, metric=metric, index=index, metric_source=source)


def _pick_fields(
    name: str, fields: list[dict[str, Any]], config: FieldsConfig
) -> tuple[str, str | None, str | None]:
    """(primary key, document field, JSON metadata field) of a foreign collection."""
    key = next((f["name"] for f in fields if f.get("is_primary")), None)
    if key is None:
        raise ConfigError(f"Milvus collection {name!r} has no primary key")
    if config.id_field is not None and config.id_field != key:
        raise ConfigError(
            f"Milvus collection {name!r} is keyed by its primary key {key!r}, "
            f"not {config.id_field!r} (id_field={config.id_field})",
            hint=f"drop id_field, or write id_field={key}",
        )
    names = [f["name"] for f in fields]
    texts = [f["name"] for f in fields if f["type"] == DataType.VARCHAR and not f.get("is_primary")]
    doc = pick_column(
        name,
        "text",
        "document_field",
        config.document_field,
        DOCUMENT_NAMES,
        texts if config.document_field is None else names,
        required=False,
    )
    if doc is not None and doc not in texts:
        raise ConfigError(
            f"Milvus collection {name!r} field {doc!r} (document_field={doc}) is not VARCHAR"
        )
    jsons = [f["name"] for f in fields if f["type"] == DataType.JSON]
    meta = pick_column(
        name,
        "metadata",
        "metadata_field",
        config.metadata_field,
        METADATA_NAMES,
        jsons if config.metadata_field is None else names,
        required=False,
    )
    if meta is not None and meta not in jsons:
        raise ConfigError(
            f"Milvus collection {name!r} field {meta!r} (metadata_field={meta}) is not JSON"
        )
    return key, doc, meta


def _chosen_vectors(name: str, fields: list[dict[str, Any]], config: FieldsConfig) -> list[str]:
    have = [f["name"] for f in fields if f["type"] == DataType.FLOAT_VECTOR]
    for v in config.vector_fields:
        if v not in have:
            raise ConfigError(
                f"Milvus collection {name!r} has no FLOAT_VECTOR field {v!r} (vector_field={v})",
                hint=f"its vector fields: {', '.join(have) or 'none'}",
            )
    return list(config.vector_fields) or have


def infer_schema(
    name: str,
    info: dict[str, Any],
    indexes: dict[str, dict[str, Any]],
    engine: str,
    config: FieldsConfig,
    sample: Sampler,
) -> CollectionSchema:
    """Describe a collection vecmigrate did not create, as it is laid out (module doc)."""
    fields = list(info.get("fields", []))
    key, doc, meta = _pick_fields(name, fields, config)
    chosen = _chosen_vectors(name, fields, config)
    dynamic = bool(info.get("enable_dynamic_field"))
    notes: dict[str, Any] = {LAYOUT_KEY: "columns"}
    vectors: list[VectorField] = []
    sparse: list[SparseField] = []
    uncarried: dict[str, str] = {}
    full_text: list[FullTextField] = []
    metadata: list[MetadataField] = []
    where: dict[str, list[str | None]] = {}
    nullable: list[str] = []
    id_type = IdType.STRING
    for f in fields:
        ftype, fname = f["type"], f["name"]
        if fname == key:
            id_type = IdType.INT if ftype == DataType.INT64 else IdType.STRING
            if f.get("auto_id"):
                notes["milvus.auto_id"] = True
            continue
        if fname in (doc, meta):
            continue
        if ftype == DataType.FLOAT_VECTOR:
            if fname in chosen:
                vectors.append(_vector(name, f, indexes.get(fname, {}), sample, notes))
            else:
                notes[f"{fname}.skipped"] = "vector field not carried (not named by vector_field)"
            continue
        if ftype == DataType.SPARSE_FLOAT_VECTOR:
            computed = computed_sparse(f, info, fields, indexes.get(fname, {}), doc)
            if isinstance(computed, FullTextField):
                full_text.append(computed)
                continue
            if computed is not None:
                uncarried[fname] = computed
                continue
            metric_type = str(indexes.get(fname, {}).get("metric_type", "")).upper()
            if metric_type != "IP":
                notes[f"{fname}.metric"] = f"dot, although its index says {metric_type!r}"
            sparse.append(SparseField(name=fname, metric=Metric.DOT))
            continue
        if ftype in _SCALAR:
            mtype = _SCALAR[ftype]
        elif ftype == DataType.ARRAY and f.get("element_type") in _ARRAY_OF:
            mtype = _ARRAY_OF[f["element_type"]]
        elif ftype == DataType.ARRAY and f.get("element_type") == DataType.BOOL:
            mtype = "json"  # a list of booleans, exact as JSON (no portable list<bool>)
            notes[f"{fname}.type"] = "ARRAY of BOOL read as JSON"
        else:  # refused until the mapping leaves it behind, never dropped unsaid
            uncarried[fname] = _uncarried_type(f)
            continue
        # A scalar index on the field (INVERTED, STL_SORT, Trie, BITMAP...) serves filters;
        # so does a partition key (a filter on it searches its partitions only).
        indexed = fname in indexes or bool(f.get("is_partition_key"))
        if f.get("is_partition_key"):
            notes[f"{fname}.index"] = PARTITION_KEY_NOTE
        metadata.append(MetadataField(name=fname, type=mtype, indexed=indexed))
        where[fname] = [None, fname]
        if f.get("nullable"):
            nullable.append(fname)
    if meta is not None or dynamic:
        metadata += _keyed_fields(key, meta, dynamic, sample, where)
    if meta is not None:
        notes[JSON_KEY] = meta
    if dynamic:
        notes[DYNAMIC_KEY] = True
    notes.update({PK_KEY: key, DOC_KEY: doc, "milvus.nullable": nullable, FIELDS_KEY: where})
    return CollectionSchema(
        name=name,
        id_type=id_type,
        vectors=tuple(vectors),
        sparse=tuple(sparse),
        metadata=tuple(metadata),
        has_document=doc is not None,
        engine=engine,
        engine_settings=notes,
        uncarried=uncarried,
        full_text=tuple(full_text),
    )


def _uncarried_type(field: dict[str, Any]) -> str:
    """Why a field of a type the portable model has no form for is not carried."""
    ftype = field["type"]
    name = getattr(ftype, "name", str(ftype))
    if name.endswith("_VECTOR"):
        return (
            f"a Milvus {name} field ({name.split('_')[0].lower()} values); the portable "
            "model carries float32 dense vectors and sparse vectors"
        )
    element = field.get("element_type")
    of = f" of {getattr(element, 'name', element)}" if element is not None else ""
    return f"a Milvus {name}{of} field, which has no portable type"


def computed_sparse(
    field: dict[str, Any],
    info: dict[str, Any],
    fields: list[dict[str, Any]],
    index: dict[str, Any],
    doc: str | None,
) -> FullTextField | str | None:
    """A sparse field Milvus computes (a BM25 index, a function's output): its full-text
    search over the document, or why it cannot be carried; None for one holding data."""
    metric_type = str(index.get("metric_type", "")).upper()
    if metric_type != "BM25" and not field.get("is_function_output"):
        return None
    found = _full_text_field(field, info, fields, index, doc)
    if found is not None:
        return found
    return (
        f"computed by {_generated_by(field, info, fields)} (full-text search): Milvus "
        "returns no vectors of it; set full-text search up again on the target"
    )


def _full_text_field(
    field: dict[str, Any],
    info: dict[str, Any],
    fields: list[dict[str, Any]],
    index: dict[str, Any],
    doc: str | None,
) -> FullTextField | None:
    """The BM25 function that fills ``field`` from the document field, as a portable
    full-text field; None when it is another function or computed from another field
    (then it is not carried: the target's document is what such a function reads)."""
    functions = info.get("functions") or []
    listed = [fn for fn in functions if field["name"] in (fn.get("output_field_names") or [])]
    if listed:  # a server names the function; Milvus Lite lists none
        fn = listed[0]
        if str(getattr(fn.get("type"), "name", fn.get("type"))).upper() != "BM25":
            return None
        inputs, function = list(fn.get("input_field_names") or []), fn.get("name")
    else:
        inputs, function = [f["name"] for f in fields if _analyzed(f)], None
    if doc is None or inputs != [doc]:
        return None
    source = next(f for f in fields if f["name"] == doc)
    analyzer = (source.get("params") or {}).get("analyzer_params")
    if isinstance(analyzer, str):
        analyzer = json.loads(analyzer)
    params = {k: _number(index[k]) for k in BM25_PARAMS if k in index}
    return FullTextField(
        name=field["name"], analyzer=analyzer or None, params=params, function=function
    )


def _analyzed(field: dict[str, Any]) -> bool:
    return str((field.get("params") or {}).get("enable_analyzer", "")).lower() == "true"


def _number(value: Any) -> Any:
    """An index parameter as Milvus describes it (text) as the number it is, if one."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


def _generated_by(field: dict[str, Any], info: dict[str, Any], fields: list[dict[str, Any]]) -> str:
    """What computes a function's output field (Milvus 2.5 full-text search: a BM25
    function over a text field): the collection's function when it lists one, else (Milvus
    Lite lists none) the text field with an analyzer."""
    for fn in info.get("functions") or []:
        if field["name"] in (fn.get("output_field_names") or []):
            kind = getattr(fn.get("type"), "name", fn.get("type"))
            inputs = ", ".join(map(repr, fn.get("input_field_names") or []))
            return f"Milvus's {kind} function {fn.get('name')!r} over {inputs or 'text'}"
    analyzed = [f["name"] for f in fields if _analyzed(f)]
    over = ", ".join(map(repr, analyzed)) or "a text field"
    return f"Milvus's BM25 function over {over}"


def _keyed_fields(
    key: str,
    meta: str | None,
    dynamic: bool,
    sample: Sampler,
    where: dict[str, list[str | None]],
) -> list[MetadataField]:
    """Typed metadata fields for the keys of the JSON metadata field and of ``$meta``
    (a key also found elsewhere is named ``<container>.<key>``); ``where`` is extended."""
    wanted = [key, *([meta] if meta else []), *([DYNAMIC] if dynamic else [])]
    rows = sample(wanted)
    declared = {key, *where, *([meta] if meta else [])}
    dyn_rows = [{k: v for k, v in r.items() if k not in declared} for r in rows] if dynamic else []
    json_rows = [r.get(meta) for r in rows] if meta else []
    json_rows = [r if isinstance(r, dict) else {} for r in json_rows]
    out: list[MetadataField] = []
    dyn_typed = infer_metadata_fields(dyn_rows)
    for m in dyn_typed:
        out.append(m)
        where[m.name] = [DYNAMIC, m.name]
    taken = set(where)
    for m in infer_metadata_fields(json_rows):
        fname = f"{meta}.{m.name}" if m.name in taken else m.name
        out.append(m.model_copy(update={"name": fname}))
        where[fname] = [meta, m.name]
    return out


def foreign_reuse_problems(schema: CollectionSchema, have: CollectionSchema) -> list[str]:
    """Why a collection another tool made, described as ``have``, cannot take ``schema``'s
    records as they are (checked before the first write of ``--if-exists reuse``): each
    misfit named with the field, and with the mapping that fits it where one exists."""
    key = have.engine_settings.get(PK_KEY, "id")
    problems = []
    if schema.id_type is not have.id_type:
        problems.append(
            f"its key {key!r} holds {have.id_type.value} ids, the records {schema.id_type.value}"
        )
    theirs = {v.name: v for v in have.vectors}
    for v in schema.vectors:
        got = theirs.get(v.name)
        if got is None:
            only = next(iter(theirs)) if len(theirs) == 1 else None
            fix = f" (map it: vectors: {{{v.name}: {{rename: {only}}}}})" if only else ""
            problems.append(
                f"no vector field {v.name!r}; it has {', '.join(map(repr, theirs)) or 'none'}{fix}"
            )
        elif got.dim != v.dim:
            problems.append(f"its vector field {v.name!r} holds {got.dim} dimensions, not {v.dim}")
        elif got.metric is not v.metric:
            problems.append(
                f"its index on {v.name!r} searches with {got.metric.value}, "
                f"the records with {v.metric.value}"
            )
    if schema.has_document and not have.has_document:
        problems.append("no field for documents")
    if not (have.engine_settings.get(DYNAMIC_KEY) or have.engine_settings.get(JSON_KEY)):
        fields = {m.name: m for m in have.metadata}
        for m in schema.metadata:
            field = fields.get(m.name)
            if field is None:
                problems.append(f"no field for metadata {m.name!r}")
            elif field.type != m.type:
                problems.append(f"its field {m.name!r} holds {field.type}, the records {m.type}")
    return problems
