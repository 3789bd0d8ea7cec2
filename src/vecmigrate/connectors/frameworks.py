"""What LangChain and LlamaIndex put in a record, engine by engine the same: the rules a
connector's ``?layout=langchain`` / ``?layout=llamaindex`` applies on top of where its
engine keeps the text, the metadata and the vector (docs/frameworks-layouts.md).

* **LangChain**: the text is the document; the metadata is the application's, as it is.
* **LlamaIndex**: the text is the document (the engine's text field, else the node's own
  text); the metadata is the *node* metadata (``_node_content.metadata``, which is what
  the retriever returns), without the keys LlamaIndex adds (``_node_content``,
  ``_node_type``, ``doc_id``, ``document_id``, ``ref_doc_id``). Two keys carry what the
  node holds beyond that, so a LlamaIndex to LlamaIndex copy rebuilds the same node:

  * ``ref_doc_id`` (:data:`REF_DOC_ID`): the source document's id, when there is one;
  * ``_llamaindex_node`` (:data:`NODE_KEY`, a JSON object): the node's fields that are not
    LlamaIndex's defaults (``excluded_llm_metadata_keys``, ``relationships`` other than a
    plain SOURCE, ``start_char_idx`` ..., ``class_name`` when not ``TextNode``), and the
    order of its metadata keys (``_metadata_order``) when it is not sorted: LlamaIndex
    renders the metadata in that order into the text it embeds and shows the LLM, while
    engines and the portable model may reorder keys.

  On write, :func:`llamaindex_write` rebuilds ``_node_content`` (the node as JSON, exactly
  as ``llama_index.core.vector_stores.utils.node_to_metadata_dict`` makes it, with
  ``"embedding": null``), ``_node_type`` and the three source-id keys, and puts the node
  metadata at the top level too: the retriever returns the same node metadata and
  filters on the same top-level keys.

* **Haystack**: a ``Document``'s ``content`` is the document, its ``meta`` the metadata
  as it is, its ``id`` the record id (Haystack's own, whatever the engine keys points by);
  ``blob`` and ``sparse_embedding`` are not carried (:func:`haystack_refusal`); writers
  store them empty, as for a ``Document`` without them.

Connectors use these on dicts; nothing here imports a framework or an engine client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vecmigrate.errors import ConfigError
from vecmigrate.model import Metric

LANGCHAIN = "langchain"
LLAMAINDEX = "llamaindex"
HAYSTACK = "haystack"
LAYOUTS = (LANGCHAIN, LLAMAINDEX)
#: The layouts of the connectors that also read and write Haystack's document stores
#: (Chroma, Qdrant, pgvector: the engines with a Haystack integration).
WITH_HAYSTACK = (*LAYOUTS, HAYSTACK)

#: The name every framework layout gives its one embedding in the portable model.
VECTOR = "vector"

#: Metadata key of a LlamaIndex node's source document id (provenance, see module doc).
REF_DOC_ID = "ref_doc_id"
#: Metadata key (a JSON object) of a LlamaIndex node's non-default fields.
NODE_KEY = "_llamaindex_node"
#: Top-level keys LlamaIndex adds to every record's metadata.
LLAMAINDEX_RESERVED = ("_node_content", "_node_type", "document_id", "doc_id", "ref_doc_id")

# TextNode fields in ``model_dump`` order and their defaults (llama-index-core 0.14):
# ``_node_content`` is written in exactly this order.
_NODE_FIELDS: tuple[tuple[str, Any], ...] = (
    ("excluded_embed_metadata_keys", []),
    ("excluded_llm_metadata_keys", []),
    ("relationships", {}),
    ("metadata_template", "{key}: {value}"),
    ("metadata_separator", "\n"),
    ("text", ""),
    ("mimetype", "text/plain"),
    ("start_char_idx", None),
    ("end_char_idx", None),
    ("text_template", "{metadata_str}\n\n{content}"),
)
_NODE_DEFAULTS = dict(_NODE_FIELDS)
_NODE_OWN = frozenset({"id_", "embedding", "metadata", "text", "class_name"})
TEXT_NODE = "TextNode"
ORDER_KEY = "_metadata_order"  # in NODE_KEY: no node field starts with "_"
SOURCE = "1"  # NodeRelationship.SOURCE
NO_SOURCE = "None"  # what LlamaIndex writes for a node without a source document

#: (framework, engine) -> (the metric the framework searches with by default, why). Where
#: the engine records the metric (Chroma, Qdrant, Milvus) readers read it there; this is
#: what a writer creates, and what readers say where the engine keeps none.
SEARCH_METRIC: dict[tuple[str, str], tuple[Metric, str]] = {
    (LANGCHAIN, "chroma"): (Metric.L2, "Chroma's default space (l2), which LangChain keeps"),
    (LANGCHAIN, "pgvector"): (
        Metric.COSINE,
        "LangChain PGVector's default distance strategy (cosine, <=>); its tables keep none",
    ),
    (LANGCHAIN, "qdrant"): (Metric.COSINE, "LangChain Qdrant's default distance (Cosine)"),
    (LANGCHAIN, "lancedb"): (
        Metric.L2,
        "LanceDB's default (l2): LangChain's LanceDB search sets no metric",
    ),
    (LANGCHAIN, "milvus"): (Metric.L2, "LangChain Milvus' default index metric (L2)"),
    (LLAMAINDEX, "chroma"): (Metric.L2, "Chroma's default space (l2), which LlamaIndex keeps"),
    (LLAMAINDEX, "pgvector"): (
        Metric.COSINE,
        "LlamaIndex PGVectorStore always searches with cosine_distance; its table keeps no metric",
    ),
    (LLAMAINDEX, "qdrant"): (Metric.COSINE, "LlamaIndex Qdrant's default distance (Cosine)"),
    (LLAMAINDEX, "lancedb"): (
        Metric.L2,
        "LanceDB's default (l2): LlamaIndex's LanceDB search sets no metric",
    ),
    (LLAMAINDEX, "milvus"): (Metric.DOT, "LlamaIndex Milvus' default similarity_metric (IP)"),
    (HAYSTACK, "chroma"): (
        Metric.L2,
        "Haystack ChromaDocumentStore's default distance_function (l2)",
    ),
    (HAYSTACK, "pgvector"): (
        Metric.COSINE,
        "Haystack PgvectorDocumentStore's default vector_function (cosine_similarity); "
        "its table keeps none",
    ),
    (HAYSTACK, "qdrant"): (
        Metric.COSINE,
        "Haystack QdrantDocumentStore's default similarity (cosine)",
    ),
}

UNIT_TOLERANCE = 1e-3


def parse_layout(value: str | None, engine: str, supported: Sequence[str] = LAYOUTS) -> str | None:
    """``?layout=`` checked: None (vecmigrate's own layout or a table read as it is), or
    one of ``supported``; ConfigError naming the choices otherwise."""
    if value is None or value == "":
        return None
    layout = value.strip().lower()
    if layout not in supported:
        raise ConfigError(
            f"{engine}:// layout={value!r} is not a layout vecmigrate reads or writes there",
            hint=f"layout= takes {', '.join(supported)}",
        )
    return layout


def search_metric(framework: str, engine: str) -> tuple[Metric, str]:
    """(metric, where it comes from) the framework searches ``engine`` with by default."""
    return SEARCH_METRIC[(framework, engine)]


def unit_length(vectors: np.ndarray) -> np.ndarray:
    """Per row, whether the vector has length 1 (within ``UNIT_TOLERANCE``): the vectors
    every metric ranks alike, so a layout that searches with cosine serves them as the
    source's l2 or dot did."""
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)
    return np.asarray(np.abs(norms - 1.0) <= UNIT_TOLERANCE)


# --------------------------------------------------------------------------- LangChain


def langchain_read(
    text: str | None, metadata: Mapping[str, Any] | None
) -> tuple[str | None, dict[str, Any]]:
    """(document, metadata) of a LangChain record: its text and its metadata as they are."""
    return text, dict(metadata or {})


def langchain_write(
    document: str | None, metadata: Mapping[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    """(text, metadata) a LangChain store keeps for a record: the document and the metadata
    as they are. From a LlamaIndex store that includes ``ref_doc_id`` and the
    ``_llamaindex_node`` carrier: a mapping drops them when the LangChain application
    should not see them (``fields: {_llamaindex_node: {drop: true}}``), so the copy's check
    compares with what was meant to arrive."""
    return document, dict(metadata)


# --------------------------------------------------------------------------- Haystack


def haystack_read(
    content: str | None, meta: Mapping[str, Any] | None
) -> tuple[str | None, dict[str, Any]]:
    """(document, metadata) of a Haystack ``Document``: its content and its meta as they are."""
    return content, dict(meta or {})


def haystack_write(
    document: str | None, metadata: Mapping[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    """(content, meta) a Haystack store keeps for a record: the document and the metadata
    as they are (a ``Document`` holds any JSON value in ``meta``)."""
    return document, dict(metadata)


def haystack_refusal(document_store: str, record: Mapping[str, Any]) -> str | None:
    """Why a stored Haystack document cannot be carried (None when it can): a ``blob``
    (bytes, which the portable model has no field for) or a sparse embedding."""
    for key in ("blob", "blob_data", "sparse_embedding"):
        if record.get(key) is not None:
            return (
                f"the {document_store} document has a {key}: vecmigrate's layout=haystack "
                "carries id, content, meta and the dense embedding only"
            )
    return None


# --------------------------------------------------------------------------- LlamaIndex


def _node(stored: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = stored.get("_node_content")
    if isinstance(raw, Mapping):
        return dict(raw)
    if not isinstance(raw, str):
        return None
    try:
        node = json.loads(raw)
    except ValueError:
        return None
    return node if isinstance(node, dict) else None


def _plain_source(ref: str) -> dict[str, Any]:
    """A SOURCE relationship as LlamaIndex writes one for ``RelatedNodeInfo(node_id=ref)``."""
    return {
        "node_id": ref,
        "node_type": None,
        "metadata": {},
        "hash": None,
        "class_name": "RelatedNodeInfo",
    }


def llamaindex_read(
    stored: Mapping[str, Any] | None, text: str | None = None
) -> tuple[str | None, dict[str, Any]]:
    """(document, metadata) of a LlamaIndex record: ``stored`` is the metadata the engine
    keeps (top-level keys, ``_node_content`` among them), ``text`` its text field (None
    where the engine has none: the node's own text is the document then)."""
    stored = stored or {}
    node = _node(stored)
    if node is None:  # written without _node_content: LlamaIndex's "legacy" read
        meta = {k: v for k, v in stored.items() if k not in LLAMAINDEX_RESERVED}
        ref = stored.get("ref_doc_id")
        if isinstance(ref, str) and ref != NO_SOURCE and REF_DOC_ID not in meta:
            meta[REF_DOC_ID] = ref
        return text, meta
    raw_meta = node.get("metadata")
    meta = dict(raw_meta) if isinstance(raw_meta, Mapping) else {}
    own_text = node.get("text")
    document = text if text else (own_text if isinstance(own_text, str) and own_text else text)
    rels = node.get("relationships")
    rels = dict(rels) if isinstance(rels, Mapping) else {}
    source = rels.get(SOURCE)
    ref = source.get("node_id") if isinstance(source, Mapping) else None
    if ref is None and isinstance(stored.get("ref_doc_id"), str):
        ref = stored["ref_doc_id"]
    if isinstance(ref, str) and ref != NO_SOURCE and REF_DOC_ID not in meta:
        meta[REF_DOC_ID] = ref
    if isinstance(source, Mapping) and dict(source) == _plain_source(str(ref)):
        del rels[SOURCE]  # rebuilt from ref_doc_id on write
    extra: dict[str, Any] = {}
    for key, value in node.items():
        if key in _NODE_OWN or key == "relationships":
            continue
        if key not in _NODE_DEFAULTS or value != _NODE_DEFAULTS[key]:
            extra[key] = value
    if rels:
        extra["relationships"] = rels
    if node.get("class_name", TEXT_NODE) != TEXT_NODE:
        extra["class_name"] = node["class_name"]
    if stored.get("_node_type") not in (None, TEXT_NODE, extra.get("class_name")):
        extra["_node_type"] = stored["_node_type"]
    keys = [k for k in meta if k not in (REF_DOC_ID, NODE_KEY)]
    if keys != sorted(keys):
        extra[ORDER_KEY] = keys
    if extra and NODE_KEY not in meta:
        meta[NODE_KEY] = extra
    return document, meta


def llamaindex_write(
    node_id: Any,
    document: str | None,
    metadata: Mapping[str, Any],
    *,
    text_in_node: bool,
) -> tuple[str, dict[str, Any]]:
    """(text, metadata) a LlamaIndex store keeps for a record: the text, and the top-level
    metadata (the node metadata, ``_node_content``, ``_node_type``, ``document_id``,
    ``doc_id``, ``ref_doc_id``) as ``node_to_metadata_dict`` writes them. ``text_in_node``:
    the engine keeps the text only in ``_node_content`` (Qdrant, LanceDB); else (Chroma,
    pgvector, Milvus) ``_node_content.text`` is ``""``. A missing document is ``""``."""
    meta = dict(metadata)
    ref = meta.pop(REF_DOC_ID, None)
    ref = None if ref is None or str(ref) == NO_SOURCE else str(ref)
    extra = meta.pop(NODE_KEY, None)
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            extra = None
    extra = dict(extra) if isinstance(extra, Mapping) else {}
    order = extra.pop(ORDER_KEY, None)
    if isinstance(order, list):
        meta = {k: meta[k] for k in order if k in meta} | meta
    node_type = extra.pop("_node_type", None)
    class_name = str(extra.pop("class_name", TEXT_NODE))
    text = "" if document is None else str(document)
    rels = dict(extra.pop("relationships", None) or {})
    if ref is not None:
        source = rels.get(SOURCE)
        if isinstance(source, Mapping) and source.get("node_id") == ref:
            rels = {SOURCE: dict(source), **{k: v for k, v in rels.items() if k != SOURCE}}
        else:
            rels = {SOURCE: _plain_source(ref), **{k: v for k, v in rels.items() if k != SOURCE}}
    else:
        rels.pop(SOURCE, None)
    node: dict[str, Any] = {"id_": str(node_id), "embedding": None, "metadata": meta}
    for key, default in _NODE_FIELDS:
        if key == "relationships":
            node[key] = rels
        elif key == "text":
            node[key] = text if text_in_node else ""
        else:
            node[key] = extra.pop(key, default)
    node.update(extra)  # fields of other node classes (IndexNode's index_id ...)
    node["class_name"] = class_name
    out = dict(meta)
    out["_node_content"] = json.dumps(node, ensure_ascii=False)
    out["_node_type"] = str(node_type or class_name)
    source_id = ref if ref is not None else NO_SOURCE
    out["document_id"] = source_id
    out["doc_id"] = source_id
    out["ref_doc_id"] = source_id
    return text, out


def llamaindex_top_key(field: str) -> str | None:
    """The top-level metadata key a LlamaIndex filter on ``field`` reads (None: no key
    holds it, as for :data:`NODE_KEY`). ``ref_doc_id`` is the top-level key, which holds
    ``"None"`` for a node without a source."""
    return None if field == NODE_KEY else field


def flat_problem(metadata: Mapping[str, Any]) -> str | None:
    """Why LlamaIndex's flat-metadata stores (Chroma, LanceDB) would refuse ``metadata``
    ("Value for metadata tags must be one of (str, int, float, None)"), or None."""
    for key, value in metadata.items():
        # bool is an int to LlamaIndex's check too.
        if key == NODE_KEY or value is None or isinstance(value, str | int | float):
            continue
        return (
            f"metadata {key!r} is {type(value).__name__}: LlamaIndex keeps only str, int, "
            "float and None there"
        )
    return None
