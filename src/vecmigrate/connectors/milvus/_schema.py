"""Physical layout of Milvus collections for the Milvus connector (used only by it).

Indexes are mapped deliberately both ways (portable kind + parameters <-> Milvus index
type + parameters) and new collections get the ``json`` layout. Collections made by other
tools are described in ``_infer``; rows <-> Arrow batches: ``_records``.
"""

from __future__ import annotations

import json
from typing import Any

from pymilvus import DataType, Function, FunctionType, MilvusClient

from vecmigrate.connectors.milvus import _sparse as milvus_sparse
from vecmigrate.connectors.milvus._filters import LAYOUT_KEY
from vecmigrate.errors import ConfigError
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    IndexKind,
    IndexSpec,
    Metric,
    VectorField,
)

SCHEMA_MARK = "vecmigrate.schema:"
DOC_KEY = "milvus.document_field"
MAX_VARCHAR = 65535
METRIC_OF: dict[Metric, str] = {Metric.COSINE: "COSINE", Metric.DOT: "IP", Metric.L2: "L2"}
PORTABLE_METRIC = {v: k for k, v in METRIC_OF.items()}
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
    # Metadata is one JSON field here, which no index serves.
    metadata = tuple(m.model_copy(update={"indexed": False}) for m in schema.metadata)
    stored = schema.replace(
        engine=engine, engine_settings=settings, vectors=tuple(vectors), metadata=metadata
    )
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
    add_document(ms, index, schema)
    ms.add_field("metadata", DataType.JSON)
    ms.add_field("metadata_extra", DataType.VARCHAR, max_length=MAX_VARCHAR)
    ms.add_field("metadata_present", DataType.JSON)
    return ms, index, stored


_ANALYZER_KEYS = {"type", "tokenizer", "filter", "stop_words"}  # Milvus analyzer_params
# A BM25 index's parameters (another engine's full-text settings are not Milvus's).
BM25_PARAMS = ("bm25_k1", "bm25_b", "inverted_index_algo", "drop_ratio_build")


def add_document(ms: Any, index: Any, schema: CollectionSchema, field: str = "document") -> None:
    """The document field, and the BM25 function of each full-text field over it (the
    source's analyzer and scoring parameters): Milvus computes those fields itself."""
    # Milvus's own analyzer settings; another engine's (LanceDB's tokenizer options) are
    # not Milvus's to read: its standard analyzer then.
    analyzers = [
        f.analyzer for f in schema.full_text if f.analyzer and set(f.analyzer) <= _ANALYZER_KEYS
    ]
    analyzed: dict[str, Any] = {"enable_analyzer": True} if schema.full_text else {}
    if analyzers:
        analyzed["analyzer_params"] = analyzers[0]
    ms.add_field(field, DataType.VARCHAR, max_length=MAX_VARCHAR, **analyzed)
    for f in schema.full_text:
        ms.add_field(f.name, DataType.SPARSE_FLOAT_VECTOR)
        ms.add_function(
            Function(
                name=f.function or f"{f.name}_bm25",
                function_type=FunctionType.BM25,
                input_field_names=[field],
                output_field_names=[f.name],
            )
        )
        params = {k: v for k, v in f.params.items() if k in BM25_PARAMS}
        index.add_index(
            f.name, index_type=milvus_sparse.INDEX_TYPE, metric_type="BM25", params=params
        )


def check_creatable(schema: CollectionSchema, caps: Capabilities, uri: str) -> None:
    """Milvus's own words for what a server with ``caps`` cannot store."""
    if schema.full_text and not caps.full_text:
        raise ConfigError(
            f"{uri} has no full-text search (Milvus 2.5 added BM25 functions); "
            f"{schema.name!r} has {', '.join(f.name for f in schema.full_text)}",
            hint="leave it behind in a mapping file (vectors: {NAME: {drop: true}})",
        )
    if len({str(f.analyzer) for f in schema.full_text}) > 1:
        raise ConfigError(
            f"{schema.name!r}: its full-text fields analyse the document in different ways; "
            "Milvus analyses a text field one way",
            hint="keep one of them (vectors: {NAME: {drop: true}} for the others)",
        )
    if schema.sparse and not caps.sparse_vectors:
        raise ConfigError(
            f"{uri} has no sparse vectors (Milvus 2.4 added them); {schema.name!r} "
            f"has {', '.join(s.name for s in schema.sparse)}",
            hint="drop them in a mapping file (vectors: {NAME: {drop: true}})",
        )
    if schema.namespaces is not None:
        raise ConfigError("the Milvus connector does not map namespaces yet")
    if not schema.vectors:
        raise ConfigError(f"Milvus collections need a vector field; {schema.name!r} has none")
    if len(schema.vectors) > 1 and not caps.named_vectors:
        raise ConfigError(
            f"{uri} keeps one vector field per collection; {schema.name!r} has "
            f"{len(schema.vectors)}",
            hint="Milvus 2.4 added several; or map one vector field only",
        )


def stored_schema(
    desc: str, indexes: dict[str, dict[str, Any]], name: str, engine: str
) -> CollectionSchema:
    """The schema vecmigrate stored as the description of a collection it made, with the
    index each vector field really has."""
    stored = CollectionSchema.from_json(desc[len(SCHEMA_MARK) :])
    vectors = tuple(
        v.model_copy(update={"index": portable_index(indexes[v.name])}) if v.name in indexes else v
        for v in stored.vectors
    )
    return stored.replace(name=name, engine=engine, vectors=vectors)


def search_params(field: VectorField, params: dict[str, Any] | None, k: int) -> dict[str, Any]:
    """``search_params`` of a search of ``field`` (portable names mapped to Milvus')."""
    out = dict(params or {})
    if "ef_search" in out:
        out["ef"] = out.pop("ef_search")
    if field.index is not None and field.index.kind == "hnsw":
        out["ef"] = max(int(out.get("ef", 64)), k)  # HNSW needs ef >= k
    return {"metric_type": METRIC_OF[field.metric], "params": out}
