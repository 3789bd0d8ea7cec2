"""LangChain's Redis layout (``redis://...?layout=langchain``), used only by
``connectors/redis``: the indexes ``langchain_redis.RedisVectorStore`` (0.2, over redisvl)
keeps, read and written as it does (docs/frameworks-layouts.md).

What RedisVectorStore writes (``storage_type="hash"``, its default):

* the index ``<index_name>`` ``ON HASH PREFIX 1 <key_prefix>:`` (``key_prefix`` defaults to
  the index name) with ``text`` TEXT, ``embedding`` VECTOR (FLAT, FLOAT32, COSINE by
  default), ``_index_name`` TEXT, ``_metadata_json`` TEXT, then the ``metadata_schema``
  fields (``tag`` with SEPARATOR ``|``, ``numeric``, ``text``);
* one HASH per record at ``<key_prefix>:<id>``: ``text``, ``embedding`` (FLOAT32 bytes),
  ``_index_name``, ``_metadata_json`` (``json.dumps`` of the whole metadata, which is what
  its search returns) and every metadata key with a value as a hash field of its own (lists
  joined with ``|``; it refuses bools and objects there).

Reading: ids are the keys after the prefix (and its ``:``), the document the ``text``
field (``?document_field=``), the one vector the VECTOR field (``?vector_field=``) with
the index's DISTANCE_METRIC, named ``vector`` (``frameworks.VECTOR``); the metadata is
``_metadata_json`` as LangChain returns it (without it, LangChain's own fallback: the
indexed fields, digit strings as numbers), typed from a sample; indexed TAG / NUMERIC
fields are filterable as the index allows.

Writing a new index: the same fields, FLAT with the records' metric (LangChain searches
with whatever metric the index has), TAG fields CASESENSITIVE and INDEXMISSING (so that
vecmigrate's exact filters work; LangChain's queries are unchanged by either), bools
written as ``true`` / ``false``. A record without a text is refused (LangChain's search
fails on it), as are metadata keys that would overwrite the layout's own fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors import frameworks as fw
from vecmigrate.connectors.foreign import FieldsConfig
from vecmigrate.connectors.redis._infer import _id_prefix, _vector_field
from vecmigrate.connectors.redis._schema import (
    _METRIC,
    Layout,
    attribute_info,
    pairs,
    text,
)
from vecmigrate.connectors.redis._schema import check_creatable as _check_name
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.records import build_batch, metadata_rows, vectors_to_numpy
from vecmigrate.values import infer_metadata_fields

FRAMEWORK_KEY = "redis.framework"  # engine_settings: the index's layout
VECTOR_KEY = "redis.vector_field"  # engine_settings: the hash field of the one vector
SCHEMA_KEY = "redis.metadata_schema"  # engine_settings: RedisVectorStore's metadata_schema

TEXT, EMBEDDING = "text", "embedding"
INDEX_NAME, METADATA_JSON = "_index_name", "_metadata_json"
TAG_SEPARATOR = "|"  # RedisConfig.default_tag_separator
_OWN = (INDEX_NAME, METADATA_JSON)
_WHAT = "LangChain's RedisVectorStore"
_SAFE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Portable types a TAG field holds as filters expect them (``_filters._tags``).
_TAGGED = ("string", "bool", "list<string>", "list<int64>", "list<float64>")

# Up to 200 (key, hash fields) pairs under the layout's first prefix.
Sampler = Callable[[Layout], list[tuple[bytes, dict[str, Any]]]]


# --------------------------------------------------------------------------- reading


def describe(
    name: str, info: dict[str, Any], sample: Sampler, config: FieldsConfig
) -> tuple[CollectionSchema, Layout]:
    """Schema and layout of a RedisVectorStore index from its ``FT.INFO`` (as ``pairs``)."""
    definition = pairs(info["index_definition"])
    if text(definition.get("key_type", b"HASH")) != "HASH":
        raise ConfigError(
            f"redis index {name!r} is over JSON documents; layout=langchain reads "
            f"{_WHAT}'s hash storage (its default, storage_type='hash')",
            hint="read the index without ?layout= (vecmigrate reads JSON indexes as they are)",
        )
    attrs = [attribute_info(raw) for raw in info["attributes"]]
    by_ident = {text(a["identifier"]): (a, flags) for a, flags in attrs}
    vectors = [i for i, (a, _) in by_ident.items() if text(a["type"]) == "VECTOR"]
    chosen = list(config.vector_fields) or vectors
    if len(chosen) != 1 or chosen[0] not in vectors:
        raise ConfigError(
            f"{_WHAT} keeps one vector field; redis index {name!r} has "
            f"{', '.join(vectors) or 'none'}",
            hint="name the one to read with ?vector_field=NAME",
        )
    vname = chosen[0]
    doc = config.document_field or TEXT
    if doc not in by_ident:
        raise ConfigError(
            f"redis index {name!r} has no field {doc!r}, so it is not {_WHAT} index "
            "(layout=langchain)",
            hint=f"its fields: {', '.join(by_ident)}; name the text field with "
            "?document_field=, or read the index without ?layout=",
        )
    prefixes = [text(p) for p in definition.get("prefixes", [])] or [""]
    if len(prefixes) != 1:
        raise ConfigError(
            f"redis index {name!r} covers {len(prefixes)} key prefixes; {_WHAT} writes one",
            hint="read the index without ?layout=",
        )
    layout = Layout(prefixes, prefixes[0], doc, {}, {}, framework=fw.LANGCHAIN)
    layout.vector_fields = {fw.VECTOR: vname}
    a_vec, _ = by_ident[vname]
    layout.vector_attrs = {fw.VECTOR: (text(a_vec["attribute"]), text(a_vec["algorithm"]))}
    layout.skip = set(vectors) - {vname}
    for ident, (a, flags) in by_ident.items():
        kind = text(a["type"])
        if kind == "VECTOR" or ident in (doc, INDEX_NAME, METADATA_JSON):
            continue
        attr = text(a["attribute"])
        layout.fields[ident] = ident
        layout.attrs[ident] = (attr, kind)
        if "INDEXMISSING" in flags:
            layout.missing.add(attr)
        if kind == "TAG":
            layout.separators[ident] = text(a.get("SEPARATOR", b","))
            if "CASESENSITIVE" not in flags:
                layout.nocase.add(attr)
        elif kind == "NUMERIC":
            layout.numeric.add(ident)
    docs = sample(layout)
    layout.id_prefix = _id_prefix(layout.id_prefix, [k for k, _ in docs])
    metadata = tuple(
        m.model_copy(update={"indexed": m.name in layout.attrs})
        for m in infer_metadata_fields([read_metadata(h, layout) for _, h in docs])
    )
    # Filters only on fields whose values the index holds as the portable type says.
    for m in metadata:
        _, kind = layout.attrs.get(m.name, ("", ""))
        fits = m.type in ("int64", "float64") if kind == "NUMERIC" else m.type in _TAGGED
        if not fits:
            layout.attrs.pop(m.name, None)
    vector = _vector_field(name, vname, a_vec).model_copy(update={"name": fw.VECTOR})
    settings: dict[str, Any] = {
        FRAMEWORK_KEY: fw.LANGCHAIN,
        VECTOR_KEY: vname,
        "prefixes": prefixes,
        "ids": f"keys after {layout.id_prefix!r}",
        "types": "from _metadata_json (as LangChain returns it), sampled",
    }
    if int(info.get("hash_indexing_failures", 0)):
        settings["hash_indexing_failures"] = int(info["hash_indexing_failures"])
    schema = CollectionSchema(
        name=name,
        id_type=IdType.STRING,
        vectors=(vector,),
        metadata=metadata,
        has_document=True,
        engine="redis",
        engine_settings=settings,
    )
    return schema, layout


def read_metadata(h: dict[str, Any], layout: Layout) -> dict[str, Any]:
    """A record's metadata as RedisVectorStore returns it: ``_metadata_json``; without it
    (an index made from a custom schema), the indexed fields, digit strings as numbers."""
    raw = h.get(METADATA_JSON)
    if raw is not None:
        try:
            meta = json.loads(raw)
        except ValueError:
            meta = None
        if isinstance(meta, dict):
            return meta
    out: dict[str, Any] = {}
    for name, hfield in layout.fields.items():
        value = h.get(hfield)
        if value is None or name.startswith("_"):
            continue
        s = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        # RedisVectorStore._extract_metadata_from_result's conversion, as it is.
        if s.isdigit():
            out[name] = int(s)
        elif s.replace(".", "", 1).isdigit():
            out[name] = float(s)
        else:
            out[name] = s
    return out


def records_to_batch(
    name: str, schema: CollectionSchema, layout: Layout, keys: list[bytes], raws: list[Any]
) -> pa.RecordBatch:
    """HGETALL replies of ``keys`` as one batch; empty replies (deleted keys) are skipped."""
    ids: list[Any] = []
    docs: list[str | None] = []
    metas: list[dict[str, Any]] = []
    vecs: dict[str, list[bytes]] = {v.name: [] for v in schema.vectors}
    cut = len(layout.id_prefix.encode())
    for key, raw in zip(keys, raws, strict=True):
        if not raw:
            continue
        h = pairs(raw)
        rid: Any = key[cut:].decode(errors="replace")
        if schema.id_type is IdType.INT:
            try:
                rid = int(rid)
            except ValueError:
                raise DataError(
                    "key does not end in an int id", collection=name, record_id=rid
                ) from None
        for v in schema.vectors:
            hfield = layout.vector_fields.get(v.name, v.name)
            blob = h.get(hfield)
            if not isinstance(blob, bytes) or len(blob) != 4 * v.dim:
                got = "no vector" if blob is None else f"{len(blob)} bytes"
                raise DataError(
                    f"{got}: expected {v.dim} FLOAT32 values",
                    collection=name,
                    record_id=rid,
                    field=hfield,
                )
            vecs[v.name].append(blob)
        doc = h.get(layout.doc_field or TEXT)
        try:
            docs.append(None if doc is None else doc.decode())
        except UnicodeDecodeError:
            raise DataError(
                "text is not UTF-8", collection=name, record_id=rid, field=layout.doc_field
            ) from None
        ids.append(rid)
        metas.append(read_metadata(h, layout))
    arrays = {
        v.name: np.frombuffer(b"".join(vecs[v.name]), dtype="<f4").reshape(len(ids), v.dim)
        for v in schema.vectors
    }
    return build_batch(
        schema,
        ids,
        arrays,
        documents=docs if schema.has_document else None,
        metadata=metas,
        explicit_nulls=True,  # _metadata_json keeps a null as null
    )


# --------------------------------------------------------------------------- creating


def metadata_schema(schema: CollectionSchema) -> list[dict[str, Any]]:
    """The ``metadata_schema`` of a new index (what RedisVectorStore is reopened with):
    str, bool and list fields as ``tag``, int and float as ``numeric``; objects, and keys
    that are not plain names, are kept in ``_metadata_json`` only."""
    out: list[dict[str, Any]] = []
    for m in schema.metadata:
        if not _SAFE.fullmatch(m.name) or m.type == "json":
            continue
        if m.type in ("int64", "float64"):
            out.append({"name": m.name, "type": "numeric", "attrs": {"index_missing": True}})
        else:
            attrs = {"separator": TAG_SEPARATOR, "case_sensitive": True, "index_missing": True}
            out.append({"name": m.name, "type": "tag", "attrs": attrs})
    return out


def check_creatable(schema: CollectionSchema) -> None:
    """Refuse (ConfigError naming the index) what RedisVectorStore's layout cannot hold."""
    name = schema.name
    _check_name(schema)
    if len(schema.vectors) != 1:
        raise ConfigError(
            f"{_WHAT} keeps one vector per record; {name!r} has {len(schema.vectors)}",
            hint="keep one vector field: drop the others in a mapping "
            "(vectors: {NAME: {drop: true}})",
        )
    if not schema.has_document:
        raise ConfigError(
            f"{_WHAT} needs a text per record (its search fails on a record without "
            f"'{TEXT}'); {name!r} has no documents",
            hint="give the records a document in a mapping, or write without ?layout=",
        )
    clash = [m.name for m in schema.metadata if m.name in (TEXT, EMBEDDING, *_OWN)]
    if clash:
        raise ConfigError(
            f"metadata field {clash[0]!r} of {name!r} would overwrite a field {_WHAT} "
            "keeps for itself",
            hint="rename it in a mapping file (metadata: {NAME: {rename: OTHER}})",
        )


def create_args(schema: CollectionSchema) -> list[Any]:
    """``FT.CREATE`` for a new index laid out as RedisVectorStore creates one."""
    name = schema.name
    v = schema.vectors[0]
    vec = ["TYPE", "FLOAT32", "DIM", v.dim, "DISTANCE_METRIC", _METRIC[v.metric]]
    args: list[Any] = ["FT.CREATE", name, "ON", "HASH", "PREFIX", 1, f"{name}:", "SCHEMA"]
    args += [TEXT, "TEXT", "WEIGHT", 1, EMBEDDING, "VECTOR", "FLAT", len(vec), *vec]
    args += [INDEX_NAME, "TEXT", "WEIGHT", 1, METADATA_JSON, "TEXT", "WEIGHT", 1]
    for field in metadata_schema(schema):
        if field["type"] == "numeric":
            args += [field["name"], "NUMERIC", "INDEXMISSING"]
        else:
            args += [field["name"], "TAG", "SEPARATOR", TAG_SEPARATOR, "CASESENSITIVE"]
            args += ["INDEXMISSING"]
    return args


def new_layout(schema: CollectionSchema) -> tuple[CollectionSchema, Layout]:
    """The schema writes go through and the layout of an index ``create_args`` made."""
    name = schema.name
    v = schema.vectors[0]
    layout = Layout([f"{name}:"], f"{name}:", TEXT, {}, {}, framework=fw.LANGCHAIN)
    layout.vector_fields = {v.name: EMBEDDING}
    layout.vector_attrs = {v.name: (EMBEDDING, "FLAT")}
    fields = metadata_schema(schema)
    for field in fields:
        fname = field["name"]
        kind = "NUMERIC" if field["type"] == "numeric" else "TAG"
        layout.fields[fname] = fname
        layout.attrs[fname] = (fname, kind)
        layout.missing.add(fname)
        if kind == "TAG":
            layout.separators[fname] = TAG_SEPARATOR
        else:
            layout.numeric.add(fname)
    settings = {
        **{k: val for k, val in schema.engine_settings.items() if not k.startswith("redis.")},
        FRAMEWORK_KEY: fw.LANGCHAIN,
        VECTOR_KEY: EMBEDDING,
        SCHEMA_KEY: fields,
    }
    return schema.replace(engine="redis", engine_settings=settings), layout


# --------------------------------------------------------------------------- writing


def hash_fields(schema: CollectionSchema, layout: Layout) -> list[str]:
    """Every hash field a record of this index may have (what an upsert may remove)."""
    own = [layout.doc_field or TEXT, *layout.vector_fields.values(), *_OWN]
    return list(dict.fromkeys([*own, *layout.fields.values(), *(m.name for m in schema.metadata)]))


def hash_rows(
    name: str, schema: CollectionSchema, layout: Layout, batch: pa.RecordBatch
) -> list[list[Any]]:
    """Each record of a conformed batch as flat ``[field, value, ...]`` HSET arguments,
    as RedisVectorStore.add_texts writes them."""
    ids = batch.column("id").to_pylist()
    docs = batch.column("document").to_pylist() if schema.has_document else [None] * len(ids)
    vectors = {
        layout.vector_fields.get(v.name, v.name): np.ascontiguousarray(
            vectors_to_numpy(batch.column(v.name)), dtype="<f4"
        )
        for v in schema.vectors
    }
    own = {layout.doc_field or TEXT, *vectors, *_OWN}
    rows: list[list[Any]] = []
    for i, meta in enumerate(metadata_rows(batch, schema)):
        rid, doc = ids[i], docs[i]
        if doc is None:
            raise DataError(
                f"no text: {_WHAT}'s search fails on a record without '{layout.doc_field}'",
                collection=name,
                record_id=rid,
                field="document",
                hint="give the records a document in a mapping",
            )
        # json.dumps as RedisVectorStore does (its search returns json.loads of it).
        row: list[Any] = [layout.doc_field or TEXT, doc.encode()]
        for hfield, matrix in vectors.items():
            row += [hfield, matrix[i].tobytes()]
        row += [INDEX_NAME, name.encode(), METADATA_JSON, json.dumps(meta).encode()]
        for key, value in meta.items():
            if value is None:
                continue  # as RedisVectorStore: no hash field, a null in _metadata_json
            hfield = layout.fields.get(key, key)
            if hfield in own:
                raise DataError(
                    f"metadata {key!r} would overwrite the field {hfield!r} {_WHAT} keeps "
                    "for itself",
                    collection=name,
                    record_id=rid,
                    field=key,
                    hint="rename it in a mapping file (metadata: {NAME: {rename: OTHER}})",
                )
            sep = layout.separators.get(hfield)
            encoded = _encode(value, hfield in layout.numeric, sep, name, rid, key)
            if encoded is not None:
                row += [hfield, encoded]
        rows.append(row)
    return rows


def _scalar(value: Any) -> str | None:
    """A str / bool / int / float as the hash field text redis-py would send (None: not one)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return None


def _encode(
    value: Any, numeric: bool, separator: str | None, name: str, rid: Any, key: str
) -> bytes | None:
    """A metadata value as its own hash field (``numeric``: one the index reads as a
    number); None when only ``_metadata_json`` holds it (objects, nested lists:
    RedisVectorStore refuses them as hash fields)."""
    if numeric:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or value != value:
            # RediSearch would leave the whole record out of the index, silently.
            raise DataError(
                f"{value!r} in a NUMERIC field of the index: RediSearch would not index the record",
                collection=name,
                record_id=rid,
                field=key,
                hint="map the field to a number, or drop it in a mapping file",
            )
        return (str(value) if isinstance(value, int) else repr(value)).encode()
    if isinstance(value, list):
        parts = [_scalar(x) for x in value]
        if any(p is None for p in parts):
            return None
        return (separator or TAG_SEPARATOR).join(p for p in parts if p is not None).encode()
    got = _scalar(value)
    return None if got is None else got.encode()
