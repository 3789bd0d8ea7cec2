"""Framework layouts on Qdrant (``?layout=langchain`` / ``llamaindex`` / ``haystack``), used
only by ``connectors.qdrant``: points as LangChain's and LlamaIndex's ``QdrantVectorStore``
and Haystack's ``QdrantDocumentStore`` keep them (docs/frameworks-layouts.md).

* **langchain**: payload ``{"page_content": text, "metadata": {...}}``, the metadata a
  nested object kept as given; one vector named ``""``. Other top-level payload keys are
  not read: LangChain never shows them.
* **llamaindex**: the node metadata as top-level payload keys plus ``_node_content``
  (holding the text: there is no text key), ``_node_type`` and the three source-id keys
  (``connectors.frameworks``); one unnamed vector. A point without ``_node_content`` is
  read as LlamaIndex's legacy read does (text under ``text``).
* **haystack**: payload ``Document.to_dict(flatten=False)`` without the embedding:
  ``{"id", "content", "blob", "meta", "score", "sparse_embedding"}``; the Haystack id is the
  record id, the point id ``uuid5(HAYSTACK_NAMESPACE, id)`` as qdrant-haystack's
  ``convert_id`` derives it (so its ``get_documents_by_id`` and overwrite find the point);
  one unnamed vector (``text-dense`` when the store was made with sparse embeddings).
  Documents with a blob or a sparse embedding are refused: neither can be carried.

LangChain and LlamaIndex point ids are the record ids where Qdrant takes them (unsigned
ints, UUIDs); any other id is written at uuid5(collection/id) with the record id in the
payload key ``_vecmigrate_id``, which neither framework shows. The point id is then the
node id LlamaIndex sees, so its ``delete_nodes`` finds the point.

The three frameworks create Cosine collections by default (Haystack's ``similarity``),
and LangChain refuses to open one with another distance, so collections are made Cosine
whatever the source's metric. Vectors copied for l2 or dot must be unit length (all
three metrics rank those alike): others are refused by record. The source's metric, the
vector field's name and a record set without text are noted in the collection metadata
(``vecmigrate:layout``), which no framework reads, and ``describe`` reports them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from qdrant_client import models

from vecmigrate.connectors import frameworks as fw
from vecmigrate.connectors.qdrant._infer import _id_type, _metric, vector_params
from vecmigrate.connectors.qdrant._records import ID_KEY, POINT_IDS_SETTING, RESERVED_KEYS
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import (
    CollectionSchema,
    IdType,
    IndexSpec,
    Metric,
    VectorField,
)
from vecmigrate.records import infer_metadata_fields

NOTE_KEY = "vecmigrate:layout"  # in the collection metadata
SETTINGS_KEY = "qdrant.framework"  # in engine_settings
CONTENT = "page_content"  # LangChain's content_payload_key
METADATA = "metadata"  # LangChain's metadata_payload_key
LEGACY_TEXT = "text"  # LlamaIndex's text_key (legacy read)
LLAMAINDEX_DENSE = "text-dense"  # LlamaIndex's name for its dense vector in hybrid stores
DOC_ID = "doc_id"  # LlamaIndex's payload index on a server
#: qdrant-haystack's ``UUID_NAMESPACE``: point id = uuid5(namespace, Document.id).
HAYSTACK_NAMESPACE = uuid.UUID("3896d314-1e95-4a3a-b45a-945f9f0b541d")
HAYSTACK_DENSE = "text-dense"  # qdrant-haystack's dense vector name with sparse embeddings
HAYSTACK_SPARSE = "text-sparse"  # ... and its sparse vector's
HAYSTACK_ID = "id"
HAYSTACK_CONTENT = "content"
HAYSTACK_META = "meta"
WHAT = {
    fw.LANGCHAIN: "LangChain's QdrantVectorStore",
    fw.LLAMAINDEX: "LlamaIndex's QdrantVectorStore",
    fw.HAYSTACK: "Haystack's QdrantDocumentStore",
}


def haystack_point_id(rid: Any) -> str:
    """The point id qdrant-haystack keeps the Document with id ``rid`` at."""
    return str(uuid.uuid5(HAYSTACK_NAMESPACE, str(rid)))


def haystack_ids(points: Any, ids: Sequence[Any]) -> Any:
    """``points`` (as ``batch_to_points`` made them) moved to Haystack's point ids."""
    pids = [haystack_point_id(i) for i in ids]
    if isinstance(points, models.Batch):
        return points.model_copy(update={"ids": pids})
    return [p.model_copy(update={"id": pid}) for p, pid in zip(points, pids, strict=True)]


def haystack_lift(name: str, points: list[Any]) -> list[Any]:
    """Haystack points with the Document id where ``points_to_batch`` reads record ids
    (``ID_KEY``, in a copy of the payload); DataError for what cannot be carried."""
    out = []
    for p in points:
        payload = dict(p.payload or {})
        rid = payload.get(HAYSTACK_ID)
        if not isinstance(rid, str):
            raise DataError(
                "point has no Haystack Document id (payload key 'id'): not written by "
                "Haystack's QdrantDocumentStore",
                collection=name,
                record_id=p.id,
                field=HAYSTACK_ID,
                hint="read the collection without ?layout=",
            )
        # With use_sparse_embeddings the store moves a Document's sparse embedding out of
        # the payload into the point's vectors: look there too.
        vectors = p.vector if isinstance(p.vector, Mapping) else {}
        checked = dict(payload)
        if vectors.get(HAYSTACK_SPARSE) is not None:
            checked["sparse_embedding"] = vectors[HAYSTACK_SPARSE]
        why = fw.haystack_refusal("QdrantDocumentStore", checked)
        if why is not None:
            raise DataError(
                why,
                collection=name,
                record_id=rid,
                field="blob" if payload.get("blob") is not None else "sparse_embedding",
                hint="copy without ?layout= to keep the payload and vectors as they are",
            )
        payload[ID_KEY] = rid
        out.append(p.model_copy(update={"payload": payload}))
    return out


class FrameworkPayload:
    """Where one framework keeps text and metadata in a point's payload."""

    def __init__(self, layout: str, fields: Sequence[str] = ()) -> None:
        self.layout = layout
        self.fields = tuple(fields)

    def keys(self) -> dict[str, str]:
        """field -> the payload key path its filters read."""
        if self.layout == fw.LANGCHAIN:
            return {f: f"{METADATA}.{f}" for f in self.fields}
        if self.layout == fw.HAYSTACK:
            return {f: f"{HAYSTACK_META}.{f}" for f in self.fields}
        return {f: fw.llamaindex_top_key(f) or f for f in self.fields}

    def read(self, payload: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """(text, metadata) of one point, as the framework's retriever sees it."""
        if self.layout == fw.LANGCHAIN:
            nested = payload.get(METADATA)
            return fw.langchain_read(
                payload.get(CONTENT), nested if isinstance(nested, Mapping) else None
            )
        if self.layout == fw.HAYSTACK:
            meta = payload.get(HAYSTACK_META)
            return fw.haystack_read(
                payload.get(HAYSTACK_CONTENT), meta if isinstance(meta, Mapping) else None
            )
        stored = {k: v for k, v in payload.items() if k not in RESERVED_KEYS}
        text = None
        if "_node_content" not in stored:  # LlamaIndex's legacy read: the text under "text"
            legacy = stored.pop(LEGACY_TEXT, None)
            text = legacy if isinstance(legacy, str) else None
        return fw.llamaindex_read(stored, text)

    def write(
        self,
        rid: Any,
        doc: Any,
        meta: Mapping[str, Any],
        namespace: Any,
        string_id: bool,
        point_id: Any = None,
    ) -> dict[str, Any]:
        """The payload of one record (``namespace`` is always None: refused at create)."""
        pid = rid if point_id is None else point_id
        payload: dict[str, Any]
        if self.layout == fw.LANGCHAIN:
            text, nested = fw.langchain_write(doc, meta)
            payload = {} if text is None else {CONTENT: text}
            payload[METADATA] = nested
        elif self.layout == fw.HAYSTACK:
            content, meta_out = fw.haystack_write(doc, meta)
            # Document.to_dict(flatten=False) without the embedding, in its order; the
            # point id is derived from the Haystack id (``haystack_ids``), never ID_KEY.
            return {
                HAYSTACK_ID: str(rid),
                HAYSTACK_CONTENT: content,
                "blob": None,
                HAYSTACK_META: meta_out,
                "score": None,
                "sparse_embedding": None,
            }
        else:
            _, payload = fw.llamaindex_write(str(pid), doc, meta, text_in_node=True)
        if string_id and str(pid) != str(rid):
            payload[ID_KEY] = rid
        return payload


def _note(info: Any) -> dict[str, Any]:
    raw = (getattr(info.config, "metadata", None) or {}).get(NOTE_KEY)
    return dict(raw) if isinstance(raw, Mapping) else {}


def _dense(name: str, info: Any, layout: str) -> tuple[str, Any]:
    """(vector name, params) of the dense vector the framework searches."""
    named = vector_params(info)
    if len(named) == 1:
        return next(iter(named.items()))
    dense = {fw.LLAMAINDEX: LLAMAINDEX_DENSE, fw.HAYSTACK: HAYSTACK_DENSE}.get(layout, "")
    for candidate in ("", dense):
        if candidate in named:
            return candidate, named[candidate]
    raise ConfigError(
        f"Qdrant collection {name!r} has vectors {', '.join(map(repr, named))}: "
        f"none is the one {WHAT[layout]} searches by default",
        hint="read it without ?layout= (?vector_field=NAME&document_field=... names them)",
    )


def served_metric(name: str, info: Any, layout: str) -> Metric:
    """The metric the collection searches its framework vector with."""
    vname, params = _dense(name, info, layout)
    return _metric(name, vname, params.distance)[0]


def settings(layout: str, unnamed: bool) -> dict[str, Any]:
    """engine_settings of a framework collection: how ``_records`` addresses its points."""
    return {
        "unnamed_vector": unnamed,
        POINT_IDS_SETTING: "native",
        SETTINGS_KEY: {"layout": layout},
    }


def describe(name: str, info: Any, points: list[Any], layout: str) -> CollectionSchema:
    """A framework collection described from its config, vecmigrate's note and sampled
    points read as the framework reads them."""
    vname, params = _dense(name, info, layout)
    metric, source = _metric(name, vname, params.distance)
    note = _note(info)
    copied = note.get("metric")
    if copied:
        default = fw.search_metric(layout, "qdrant")[1]
        metric = Metric(copied)
        source = (
            f"{metric.value}, as vecmigrate copied it (its note on the collection); "
            f"{default}, which ranks these unit-length vectors alike"
        )
    payloads = [dict(p.payload or {}) for p in points]
    reader = FrameworkPayload(layout)
    metas = [reader.read(pl)[1] for pl in payloads]
    if note.get("id_type") == "int":
        id_type = IdType.INT
    elif layout == fw.HAYSTACK:
        id_type = IdType.STRING  # Document ids are strings; point ids are derived
    else:
        id_type = _id_type(points, payloads)[0] if points else IdType.STRING
    field = VectorField(
        name=str(note.get("vector", fw.VECTOR)) if vname == "" else vname,
        dim=params.size,
        metric=metric,
        index=IndexSpec(kind="hnsw"),
        metric_source=source,
    )
    engine_settings = settings(layout, vname == "")
    engine_settings[f"{field.name}.metric"] = source
    return CollectionSchema(
        name=name,
        id_type=id_type,
        vectors=(field,),
        metadata=infer_metadata_fields(metas),
        has_document=bool(note.get("has_document", True)),
        engine="qdrant",
        engine_settings=engine_settings,
        uncarried=_sparse_uncarried(info, layout),
    )


def _sparse_uncarried(info: Any, layout: str) -> dict[str, str]:
    """The sparse vectors of a hybrid-search store (LangChain's ``retrieval_mode=HYBRID``,
    LlamaIndex's ``enable_hybrid``), never dropped unsaid: the layout holds one dense
    vector. (Haystack's are refused document by document, as the store reads them.)"""
    if layout == fw.HAYSTACK:
        return {}
    return {
        name: f"sparse vectors (hybrid search); the {layout} layout carries one dense vector "
        "(read the collection without ?layout= to keep them)"
        for name in (info.config.params.sparse_vectors or {})
    }


def check_schema(schema: CollectionSchema, layout: str) -> None:
    """ConfigError when the framework's collection cannot hold ``schema``'s records."""
    problems = []
    if len(schema.vectors) != 1:
        problems.append(f"{len(schema.vectors)} vector fields")
    if schema.sparse:
        problems.append(f"{len(schema.sparse)} sparse vector field(s)")
    if schema.namespaces is not None:
        problems.append("namespaces")
    if problems:
        raise ConfigError(
            f"{WHAT[layout]} keeps one dense vector per point and no namespaces; "
            f"{schema.name!r} has {', '.join(problems)}: nothing was changed",
            hint="in a mapping, keep one vector (vectors: {NAME: {drop: true}}) and carry "
            "namespaces as a field (namespaces: {to: field, field: NAME})",
        )


def vectors_config(layout: str, dim: int) -> Any:
    """The vectors config the framework creates: LangChain one vector named ``""``,
    LlamaIndex one unnamed vector; Cosine, Qdrant's default HNSW."""
    params = models.VectorParams(size=dim, distance=models.Distance.COSINE)
    return {"": params} if layout == fw.LANGCHAIN else params


def note(schema: CollectionSchema) -> dict[str, Any] | None:
    """Collection metadata for a new collection (None: nothing to note)."""
    v = schema.vector
    shape: dict[str, Any] = {}
    if v.metric is not Metric.COSINE:
        shape["metric"] = v.metric.value
    if v.name != fw.VECTOR:
        shape["vector"] = v.name
    if schema.id_type is IdType.INT:
        shape["id_type"] = "int"
    if not schema.has_document:
        shape["has_document"] = False
    return {NOTE_KEY: shape} if shape else None


def check_units(
    name: str,
    ids: Sequence[Any],
    vectors: np.ndarray,
    copied: Metric,
    served: Metric,
    field: str,
) -> None:
    """DataError for the first vector that is not unit length when the collection searches
    with ``served`` and the records were copied for ``copied``."""
    if copied is served:
        return
    unit = fw.unit_length(vectors)
    if unit.all():
        return
    i = int(np.flatnonzero(~unit)[0])
    raise DataError(
        f"vector is not unit length: the collection searches with {served.value} (what the "
        f"frameworks expect of Qdrant), which ranks it differently than {copied.value} "
        "(the metric it was copied for)",
        collection=name,
        record_id=ids[i],
        field=field,
        hint="normalise the vectors (mapping: vectors: {NAME: {normalize: true}}) or copy "
        "without ?layout=",
    )
