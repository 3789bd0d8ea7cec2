"""Framework layouts on Milvus (``?layout=langchain`` / ``?layout=llamaindex``), used only by
``connectors/milvus``: the collections LangChain's ``Milvus`` and LlamaIndex's
``MilvusVectorStore`` keep (docs/frameworks-layouts.md), read and written as the framework
does.

* **langchain**: ``text`` VARCHAR, ``pk`` the primary key (VARCHAR; INT64 for int ids, as
  LangChain's ``auto_id`` makes it), ``vector`` FLOAT_VECTOR, then one field per metadata
  key (str VARCHAR(65535), int INT64, float DOUBLE, bool BOOL; LangChain refuses lists, its
  reader returns any field: lists and objects go to JSON fields). No dynamic fields; Milvus
  fields are not nullable, so a record missing a key is refused, as LangChain's own insert
  fails on it. Read as Milvus' other collections are (``_infer``): a field per key, a JSON
  ``metadata_field``, dynamic fields.
* **llamaindex**: ``id`` VARCHAR primary key (the node id), ``doc_id`` VARCHAR (the source
  document's id, ``"None"`` without one), ``text`` VARCHAR, ``embedding`` FLOAT_VECTOR, and
  dynamic fields: the node metadata keys plus ``_node_content`` (its text ``""``),
  ``_node_type``, ``document_id`` and ``ref_doc_id``.

The portable model names the one embedding ``vector`` (``frameworks.VECTOR``); the
collection's own field name is ``engine_settings[VECTOR_KEY]``.

Metric: both frameworks search with the metric of the collection's index (LangChain reads
it into its search parameters, LlamaIndex sends none), so the index is built with the
records' metric and a migration ranks as the source did, whatever the vectors. The
frameworks' defaults are L2 (LangChain, AUTOINDEX) and IP (LlamaIndex, FLAT); LlamaIndex
returns Milvus' raw distance as the node score, so with an l2 source (LlamaIndex's LanceDB
and Chroma stores) lower scores are better: map ``vectors: {vector: {metric: dot,
force_metric: true}}`` for unit vectors to get its default IP (l2 -> dot is refused
without ``force_metric``: it ranks otherwise unless the vectors are unit length).
``vecmigrate:``-noted in the collection's description: the vector field's portable name,
int ids written as text, records without documents.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from pymilvus import DataType, MilvusClient

from vecmigrate.connectors import frameworks as fw
from vecmigrate.connectors.foreign import FieldsConfig
from vecmigrate.connectors.milvus._filters import (
    DYNAMIC,
    DYNAMIC_KEY,
    FIELDS_KEY,
    JSON_KEY,
    LAYOUT_KEY,
    PK_KEY,
    field_places,
    pk,
)
from vecmigrate.connectors.milvus._infer import _vector, computed_sparse, infer_schema
from vecmigrate.connectors.milvus._schema import DOC_KEY, MAX_VARCHAR, METRIC_OF, add_document
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import CollectionSchema, FullTextField, IdType, MetadataField, VectorField
from vecmigrate.records import build_batch, metadata_rows, vectors_to_numpy
from vecmigrate.values import infer_metadata_fields

FRAMEWORK_KEY = "milvus.framework"  # engine_settings: the collection's layout
VECTOR_KEY = "milvus.vector_field"  # engine_settings: its vector field's own name
DOC_ID_KEY = "milvus.doc_id_field"  # engine_settings: LlamaIndex's doc_id field
INT_KEY = "milvus.int_key"  # engine_settings: LlamaIndex's primary key is INT64
NOTE = "vecmigrate.layout:"  # description prefix of what vecmigrate noted
# Rows of these fields (``"$meta"``: the dynamic ones), up to SAMPLE_ROWS.
Sampler = Callable[[list[str]], list[dict[str, Any]]]

_LC_TEXT, _LC_PK, _LC_VECTOR = "text", "pk", "vector"
_LI_ID, _LI_DOC_ID, _LI_TEXT, _LI_VECTOR = "id", "doc_id", "text", "embedding"
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCALAR_OF: dict[str, DataType] = {
    "string": DataType.VARCHAR,
    "int64": DataType.INT64,
    "float64": DataType.DOUBLE,
    "bool": DataType.BOOL,
}


def _name(layout: str) -> str:
    return "LangChain's Milvus" if layout == fw.LANGCHAIN else "LlamaIndex's MilvusVectorStore"


def framework(schema: CollectionSchema) -> str | None:
    """The framework layout ``schema`` was described or created in (None: another)."""
    got = schema.engine_settings.get(FRAMEWORK_KEY)
    return str(got) if got else None


def vector_field(schema: CollectionSchema, name: str) -> str:
    """The collection's own name of the portable vector field ``name``."""
    if framework(schema) is None:
        return name
    return str(schema.engine_settings.get(VECTOR_KEY) or name)


def _note(info: dict[str, Any]) -> dict[str, Any]:
    desc = str(info.get("description") or "")
    if not desc.startswith(NOTE):
        return {}
    try:
        note = json.loads(desc[len(NOTE) :])
    except ValueError:
        return {}
    return note if isinstance(note, dict) else {}


# --------------------------------------------------------------------------- describe


def describe(
    name: str,
    info: dict[str, Any],
    indexes: dict[str, dict[str, Any]],
    engine: str,
    config: FieldsConfig,
    layout: str,
    sample: Sampler,
) -> CollectionSchema:
    """A collection in ``layout``: its fields by the framework's names (or the URI's), the
    metric of its index, the metadata as the framework's retriever returns it."""
    fields = list(info.get("fields", []))
    by_name = {f["name"]: f for f in fields}
    vectors = [f["name"] for f in fields if f["type"] == DataType.FLOAT_VECTOR]
    chosen = list(config.vector_fields) or vectors
    if len(chosen) != 1 or chosen[0] not in vectors:
        raise ConfigError(
            f"{_name(layout)} keeps one vector field; Milvus collection {name!r} has "
            f"{', '.join(vectors) or 'none'}",
            hint="name the one to read with ?vector_field=NAME",
        )
    vname = chosen[0]
    doc = config.document_field or (_LC_TEXT if layout == fw.LANGCHAIN else _LI_TEXT)
    if by_name.get(doc, {}).get("type") != DataType.VARCHAR:
        raise ConfigError(
            f"Milvus collection {name!r} has no VARCHAR field {doc!r}, so it is not "
            f"{_name(layout)} collection (layout={layout})",
            hint=f"its fields: {', '.join(by_name)}; name the text field with "
            "?document_field=, or read the collection without ?layout=",
        )
    note = _note(info)
    portable = str(note.get("vector") or fw.VECTOR)
    if layout == fw.LANGCHAIN:
        config = dataclasses.replace(config, document_field=doc, vector_field=vname)
        schema = infer_schema(name, info, indexes, engine, config, sample)
        v = schema.vectors[0]
        settings = dict(schema.engine_settings)
        if f"{vname}.metric" in settings:
            settings[f"{portable}.metric"] = settings.pop(f"{vname}.metric")
    else:
        notes: dict[str, Any] = {}
        v = _vector(name, by_name[vname], indexes.get(vname, {}), sample, notes)
        schema, settings = _describe_llamaindex(name, info, doc, vname, sample, engine)
        settings.update({k.replace(vname, portable, 1): val for k, val in notes.items()})
    key = next(f for f in fields if f.get("is_primary"))
    settings.update(
        {
            FRAMEWORK_KEY: layout,
            VECTOR_KEY: vname,
            INT_KEY: key["type"] == DataType.INT64,
            "milvus.id_max_length": int(key.get("params", {}).get("max_length", MAX_VARCHAR)),
        }
    )
    id_type = schema.id_type
    if note.get("id_type") == "int":
        id_type = IdType.INT
    full_text, uncarried = _sparse_fields(fields, info, indexes, doc, layout)
    return schema.replace(
        id_type=id_type,
        vectors=(v.model_copy(update={"name": portable}),),
        sparse=(),
        has_document=bool(note.get("has_document", True)),
        engine_settings=settings,
        full_text=full_text,
        uncarried=uncarried,
    )


def _sparse_fields(
    fields: list[dict[str, Any]],
    info: dict[str, Any],
    indexes: dict[str, dict[str, Any]],
    doc: str,
    layout: str,
) -> tuple[tuple[FullTextField, ...], dict[str, str]]:
    """The sparse fields of a framework's collection, never dropped unsaid: full-text
    search over the text (both frameworks' BM25 built-in functions), else not carried
    (sparse vectors the application computed: the layout holds one dense vector)."""
    full_text, uncarried = [], {}
    for f in fields:
        if f["type"] != DataType.SPARSE_FLOAT_VECTOR:
            continue
        computed = computed_sparse(f, info, fields, indexes.get(f["name"], {}), doc)
        if isinstance(computed, FullTextField):
            full_text.append(computed)
        elif computed is not None:
            uncarried[f["name"]] = computed
        else:
            uncarried[f["name"]] = (
                f"sparse vectors; the {_name(layout)} layout carries one dense vector "
                "(read the collection without ?layout= to keep them)"
            )
    return tuple(full_text), uncarried


def _describe_llamaindex(
    name: str, info: dict[str, Any], doc: str, vname: str, sample: Sampler, engine: str
) -> tuple[CollectionSchema, dict[str, Any]]:
    """Node metadata typed from a sample of rows read as LlamaIndex reads them."""
    fields = list(info.get("fields", []))
    key = next((f["name"] for f in fields if f.get("is_primary")), None)
    if key is None:
        raise ConfigError(f"Milvus collection {name!r} has no primary key")
    key_type = next(f["type"] for f in fields if f["name"] == key)
    dynamic = bool(info.get("enable_dynamic_field"))
    own = [
        f["name"]
        for f in fields
        if f["name"] not in (key, doc, vname)
        and f["type"] not in (DataType.FLOAT_VECTOR, DataType.SPARSE_FLOAT_VECTOR)
    ]
    rows = sample([key, doc, *own, *([DYNAMIC] if dynamic else [])])
    metas = [_li_read(r, key, doc, vname)[1] for r in rows]
    metadata = infer_metadata_fields(metas)
    places: dict[str, list[str | None]] = {}
    for m in metadata:
        if m.name in own:
            places[m.name] = [None, m.name]
        else:  # a dynamic key (or none: matches no filter)
            places[m.name] = [DYNAMIC, m.name]
    settings: dict[str, Any] = {
        LAYOUT_KEY: "columns",
        PK_KEY: key,
        DOC_KEY: doc,
        FIELDS_KEY: places,
        DYNAMIC_KEY: dynamic,
        "milvus.nullable": [f["name"] for f in fields if f.get("nullable")],
        "milvus.own_fields": own,
    }
    if _LI_DOC_ID in own:
        settings[DOC_ID_KEY] = _LI_DOC_ID
    schema = CollectionSchema(
        name=name,
        id_type=IdType.INT if key_type == DataType.INT64 else IdType.STRING,
        metadata=metadata,
        has_document=True,
        engine=engine,
    )
    return schema, settings


def _li_read(
    row: dict[str, Any], key: str, doc: str, vname: str
) -> tuple[str | None, dict[str, Any]]:
    stored = {k: _plain(v) for k, v in row.items() if k not in (key, doc, vname, DYNAMIC)}
    text = row.get(doc)
    return fw.llamaindex_read(stored, text if isinstance(text, str) else None)


def _plain(value: Any) -> Any:
    """ARRAY values arrive as protobuf repeated containers; make them Python lists."""
    if value is None or isinstance(value, str | bytes | int | float | bool | dict | list):
        return value
    return list(value)


# --------------------------------------------------------------------------- reading


def output_fields(schema: CollectionSchema) -> list[str]:
    """The fields a scan or fetch of a framework collection reads."""
    settings = schema.engine_settings
    key, doc = pk(schema), settings.get(DOC_KEY)
    out = [key, *(vector_field(schema, v.name) for v in schema.vectors)]
    if doc:
        out.append(doc)
    if framework(schema) == fw.LLAMAINDEX:
        out += list(settings.get("milvus.own_fields") or ())
        if settings.get(DYNAMIC_KEY):
            out.append(DYNAMIC)
        return list(dict.fromkeys(out))
    containers = [c or k for c, k in field_places(schema).values()]
    if settings.get(DYNAMIC_KEY):
        containers.append(DYNAMIC)
    return list(dict.fromkeys([*out, *(c for c in containers if c)]))


def rows_to_batch(
    rows: list[dict[str, Any]],
    schema: CollectionSchema,
    generic: Callable[[list[dict[str, Any]], CollectionSchema], pa.RecordBatch],
) -> pa.RecordBatch:
    """Milvus rows of a framework collection -> a batch in ``schema``'s layout
    (``generic``: the reader of Milvus' other collections, which LangChain's layout is)."""
    renames = {vector_field(schema, v.name): v.name for v in schema.vectors}
    renames = {k: v for k, v in renames.items() if k != v}
    if renames:
        rows = [{renames.get(k, k): v for k, v in r.items()} for r in rows]
    if framework(schema) == fw.LANGCHAIN:
        key = pk(schema)
        return generic([{**r, key: _read_id(r[key], schema)} for r in rows], schema)
    key, doc = pk(schema), str(schema.engine_settings.get(DOC_KEY))
    vnames = {v.name for v in schema.vectors}
    docs: list[str | None] = []
    metas: list[dict[str, Any]] = []
    for r in rows:
        stored = {k: v for k, v in r.items() if k not in vnames}
        got, meta = _li_read(stored, key, doc, "")
        docs.append(got)
        metas.append(meta)
    ids = [_read_id(r[key], schema) for r in rows]
    vectors = {
        v.name: np.asarray([r[v.name] for r in rows], dtype=np.float32).reshape(len(rows), v.dim)
        for v in schema.vectors
    }
    return build_batch(
        schema,
        ids,
        vectors,
        documents=docs if schema.has_document else None,
        metadata=metas,
        explicit_nulls=True,
    )


def _read_id(value: Any, schema: CollectionSchema) -> Any:
    if schema.id_type is IdType.INT and not isinstance(value, int):
        try:
            return int(value)
        except ValueError:
            raise DataError(
                "id is not an integer (vecmigrate wrote the collection's ids as ones)",
                collection=schema.name,
                record_id=value,
                field=pk(schema),
            ) from None
    return value


# --------------------------------------------------------------------------- writing


def _too_long(name: str, rid: Any, field: str, text: str) -> None:
    if len(text.encode()) > MAX_VARCHAR:
        raise DataError(
            f"{field} is longer than Milvus' {MAX_VARCHAR}-byte VARCHAR",
            collection=name,
            record_id=rid,
            field=field,
        )


def batch_to_rows(
    name: str, schema: CollectionSchema, batch: pa.RecordBatch, ids: list[Any]
) -> list[dict[str, Any]]:
    """Milvus rows for one batch, as the framework writes them."""
    settings = schema.engine_settings
    layout = framework(schema)
    key, doc_field = pk(schema), str(settings.get(DOC_KEY))
    n = batch.num_rows
    names = batch.schema.names
    docs = batch.column(names.index("document")).to_pylist() if "document" in names else [None] * n
    metas = metadata_rows(batch, schema)
    vectors = {
        vector_field(schema, v.name): vectors_to_numpy(batch.column(names.index(v.name)))
        for v in schema.vectors
    }
    dynamic = bool(settings.get(DYNAMIC_KEY))
    raw_places = settings.get(FIELDS_KEY) or {}
    places = {f: (c, k) for f, (c, k) in raw_places.items()}
    own = set(settings.get("milvus.own_fields") or ())
    nullable = set(settings.get("milvus.nullable") or ())
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rid = ids[i]
        row: dict[str, Any] = {}
        for vname, matrix in vectors.items():
            row[vname] = matrix[i]
        if layout == fw.LLAMAINDEX:
            # Sorted: LlamaIndex's node keeps its keys' order, and a node read back without
            # its own (``_metadata_order``) has them sorted.
            meta = dict(sorted(metas[i].items()))
            text, top = fw.llamaindex_write(rid, docs[i], meta, text_in_node=False)
            row[key] = int(rid) if settings.get(INT_KEY) else str(rid)
            for k, value in top.items():
                if k in own or dynamic:
                    row[k] = value
                elif value is not None:
                    _homeless(name, rid, k)
        else:
            got, meta = fw.langchain_write(docs[i], metas[i])
            text = got or ""
            row[key] = int(rid) if settings.get(INT_KEY) else str(rid)
            obj: dict[str, Any] = {}
            json_field = settings.get(JSON_KEY)
            for field, value in meta.items():
                container, k = places.get(field, (None, ""))
                if not k:  # a key no field names
                    if dynamic:
                        row[field] = value
                    elif json_field:
                        obj[field] = value
                    elif value is not None:
                        _homeless(name, rid, field)
                elif container is None or container == DYNAMIC:
                    row[k] = value
                else:
                    obj[k] = value
            if json_field:
                row[json_field] = obj
            for m in schema.metadata:
                container, k = places.get(m.name, (None, m.name))
                if container is None and row.get(k) is None and k not in nullable:
                    raise DataError(
                        f"the record has no value for {k!r}: the collection keeps it in a "
                        "field of its own, and Milvus fields are not nullable (LangChain's "
                        "own insert fails on it too)",
                        collection=name,
                        record_id=rid,
                        field=m.name,
                        hint="give the records a value in a mapping (metadata: {NAME: "
                        "{default: ...}}), or drop the field",
                    )
        _too_long(name, rid, doc_field, text)
        row[doc_field] = text
        rows.append(row)
    return rows


def _homeless(name: str, rid: Any, field: str) -> None:
    raise DataError(
        f"the collection has no field for metadata {field!r} (and no dynamic fields)",
        collection=name,
        record_id=rid,
        field=field,
        hint="map or drop the field in a mapping file",
    )


# --------------------------------------------------------------------------- create


def new_collection(
    client: MilvusClient, schema: CollectionSchema, layout: str, engine: str
) -> tuple[Any, Any, CollectionSchema]:
    """Milvus schema, index parameters and the schema writes go through for a new
    collection in ``layout``."""
    name = schema.name
    if len(schema.vectors) != 1 or schema.sparse:
        raise ConfigError(
            f"{_name(layout)} keeps one dense embedding per record; {name!r} has "
            f"{len(schema.vectors)} vector and {len(schema.sparse)} sparse field(s)",
            hint="keep one vector field: drop the others in a mapping "
            "(vectors: {NAME: {drop: true}})",
        )
    v = schema.vectors[0]
    note: dict[str, Any] = {}
    if v.name != fw.VECTOR:
        note["vector"] = v.name
    if not schema.has_document:
        note["has_document"] = False
    int_ids = schema.id_type is IdType.INT
    places: dict[str, list[str | None]] = {}
    settings: dict[str, Any] = {
        LAYOUT_KEY: "columns",
        FRAMEWORK_KEY: layout,
        "milvus.nullable": [],
        "milvus.id_max_length": MAX_VARCHAR,
        INT_KEY: int_ids and layout == fw.LANGCHAIN,
    }
    if layout == fw.LANGCHAIN:
        key, doc, vname, dynamic = _LC_PK, _LC_TEXT, _LC_VECTOR, False
        own = [m for m in schema.metadata]
        for m in own:
            if m.name in (key, doc, vname) or not _FIELD_NAME.match(m.name):
                raise ConfigError(
                    f"metadata field {m.name!r} of {name!r} cannot be a field of "
                    f"{_name(layout)} collection (a field per key, named as Milvus allows, "
                    f"other than {key}, {doc} and {vname})",
                    hint="rename it in a mapping file (metadata: {NAME: {rename: OTHER}})",
                )
            places[m.name] = [None, m.name]
        index_type, own_names = "AUTOINDEX", [m.name for m in own]
    else:
        key, doc, vname, dynamic = _LI_ID, _LI_TEXT, _LI_VECTOR, True
        clash = [
            m.name
            for m in schema.metadata
            if m.name in (key, doc, vname) or m.name in fw.LLAMAINDEX_RESERVED[:-1]
        ]
        if clash:
            raise ConfigError(
                f"metadata field {clash[0]!r} of {name!r} is a key LlamaIndex keeps for itself",
                hint="rename it in a mapping file (metadata: {NAME: {rename: OTHER}})",
            )
        for m in schema.metadata:
            places[m.name] = [DYNAMIC, m.name]
        if int_ids:
            note["id_type"] = "int"
        own_names = [_LI_DOC_ID]
        settings[DOC_ID_KEY] = _LI_DOC_ID
        index_type = "FLAT"
    description = NOTE + json.dumps(note, sort_keys=True) if note else ""
    ms = client.create_schema(auto_id=False, enable_dynamic_field=dynamic, description=description)
    index = client.prepare_index_params()
    if layout == fw.LANGCHAIN:
        add_document(ms, index, schema, doc)  # with the source's full-text search, if any
        if int_ids:
            ms.add_field(key, DataType.INT64, is_primary=True)
        else:
            ms.add_field(key, DataType.VARCHAR, is_primary=True, max_length=MAX_VARCHAR)
        ms.add_field(vname, DataType.FLOAT_VECTOR, dim=v.dim)
        for m in schema.metadata:
            _add_metadata_field(ms, m)
    else:
        ms.add_field(key, DataType.VARCHAR, is_primary=True, max_length=MAX_VARCHAR)
        ms.add_field(_LI_DOC_ID, DataType.VARCHAR, max_length=MAX_VARCHAR)
        add_document(ms, index, schema, doc)
        ms.add_field(vname, DataType.FLOAT_VECTOR, dim=v.dim)
    index.add_index(
        field_name=vname, index_name=vname, index_type=index_type, metric_type=METRIC_OF[v.metric]
    )
    settings.update(
        {
            PK_KEY: key,
            DOC_KEY: doc,
            VECTOR_KEY: vname,
            FIELDS_KEY: places,
            DYNAMIC_KEY: dynamic,
            "milvus.own_fields": own_names,
        }
    )
    kept = {
        k: val
        for k, val in schema.engine_settings.items()
        if not k.startswith("milvus.") and not k.endswith((".metric", ".index"))
    }
    stored = schema.replace(engine=engine, engine_settings={**kept, **settings})
    return ms, index, stored


def _add_metadata_field(ms: Any, m: MetadataField) -> None:
    dtype = _SCALAR_OF.get(m.type)
    if dtype is None:  # lists and objects: LangChain's reader returns a JSON field as it is
        ms.add_field(m.name, DataType.JSON)
    elif dtype == DataType.VARCHAR:
        ms.add_field(m.name, dtype, max_length=MAX_VARCHAR)
    else:
        ms.add_field(m.name, dtype)


def reuse_problems(schema: CollectionSchema, have: CollectionSchema) -> list[str]:
    """Why a framework collection described as ``have`` cannot take ``schema``'s records."""
    problems = []
    if len(schema.vectors) != 1 or schema.sparse:
        problems.append(f"it keeps one vector; the records have {len(schema.vectors)}")
        return problems
    got: VectorField = have.vectors[0]
    want = schema.vectors[0]
    if got.dim != want.dim:
        problems.append(f"its vector field holds {got.dim} dimensions, not {want.dim}")
    if got.metric is not want.metric:
        problems.append(
            f"its index searches with {got.metric.value}, the records with {want.metric.value}"
        )
    if framework(have) == fw.LANGCHAIN and not have.engine_settings.get(DYNAMIC_KEY):
        known = {m.name for m in have.metadata}
        problems += [
            f"no field for metadata {m.name!r}" for m in schema.metadata if m.name not in known
        ]
    return problems
