"""Framework layouts on Chroma (``?layout=langchain`` / ``llamaindex`` / ``haystack``), used
only by ``connectors/chroma``: records as LangChain's ``Chroma``, LlamaIndex's
``ChromaVectorStore`` and Haystack's ``ChromaDocumentStore`` keep them
(docs/frameworks-layouts.md).

* **langchain**: the Chroma id, the Chroma document as the text (``""`` for a record
  without one: LangChain's search skips records whose document is None), the Chroma
  metadata as the application's metadata, exactly as given (values Chroma cannot hold
  natively are refused by record, as LangChain's own ``add_texts`` would fail on them).
* **llamaindex**: the node id, the Chroma document as the text, flat metadata keys plus
  ``_node_content`` (``text == ""``), ``_node_type`` and the three source-id keys
  (``connectors.frameworks``). LlamaIndex's retriever returns ``_node_content.metadata``;
  filters read the top-level keys, which are written equal to it but for the values
  Chroma cannot hold (nulls, objects, mixed lists: kept in ``_node_content`` only, where
  the retriever finds them).
* **haystack**: the Chroma id is the ``Document.id``, the Chroma document its ``content``,
  the Chroma metadata its ``meta``. Haystack drops (with a warning) meta values Chroma
  cannot hold; vecmigrate refuses them by record instead, so nothing is lost unseen.

Collections are created as the frameworks' ``get_or_create_collection(name)`` would find
them: no collection metadata but vecmigrate's note (below), no embedding function (so
Chroma never tries to embed), and the HNSW space of the source's metric. Chroma keeps
the space and both frameworks search with whatever space the collection has, so the
copy ranks as the source did for any vectors. Into an existing collection whose space is
another metric (``--if-exists reuse``) only unit-length vectors, which every metric ranks
alike, are written.

What the portable model holds beyond that (the vector field's name, int ids, records
without text) is noted in the collection metadata key ``vecmigrate:layout`` (a JSON
string), which neither framework reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vecmigrate.connectors import frameworks as fw
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import CollectionSchema, IdType, Metric

NOTE_KEY = "vecmigrate:layout"
SETTINGS_KEY = "chroma.framework"
_HNSW_SPACE = {Metric.L2: "l2", Metric.COSINE: "cosine", Metric.DOT: "ip"}
_WHAT = {
    fw.LANGCHAIN: "LangChain's Chroma",
    fw.LLAMAINDEX: "LlamaIndex's ChromaVectorStore",
    fw.HAYSTACK: "Haystack's ChromaDocumentStore",
}


def storable(value: Any) -> bool:
    """Whether Chroma keeps ``value`` as it is: str, int, float, bool, and non-empty lists
    of one of those types."""
    if isinstance(value, bool | int | float | str):
        return True
    return (
        isinstance(value, list)
        and bool(value)
        and all(type(x) is type(value[0]) for x in value)
        and isinstance(value[0], bool | int | float | str)
    )


class ChromaFramework:
    """Reading and writing one framework's records in a Chroma store."""

    def __init__(self, layout: str) -> None:
        self.layout = layout
        self.what = _WHAT[layout]

    # -- records -----------------------------------------------------------------------
    def read(
        self, document: str | None, metadata: Mapping[str, Any] | None
    ) -> tuple[str | None, dict[str, Any]]:
        """(document, metadata) of one stored record, as the framework's retriever sees it."""
        if self.layout == fw.LANGCHAIN:
            return fw.langchain_read(document, metadata)
        if self.layout == fw.HAYSTACK:
            return fw.haystack_read(document, metadata)
        return fw.llamaindex_read(metadata, document)

    def write(
        self, name: str, rid: str, document: str | None, metadata: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any] | None]:
        """(Chroma document, Chroma metadata) of one record; DataError for a LangChain or
        Haystack value Chroma cannot hold."""
        if self.layout == fw.LLAMAINDEX:
            node_text, stored = fw.llamaindex_write(rid, document, metadata, text_in_node=False)
            return node_text, {k: v for k, v in stored.items() if storable(v)}
        if self.layout == fw.HAYSTACK:
            text, meta = fw.haystack_write(document, metadata)
        else:
            text, meta = fw.langchain_write(document, metadata)
        for key, value in meta.items():
            if not storable(value):
                raise DataError(
                    f"Chroma cannot store {'a null' if value is None else repr(value)[:60]} as "
                    f"metadata, and {self.what} reads metadata as Chroma keeps it",
                    collection=name,
                    record_id=rid,
                    field=key,
                    hint="drop or cast the field with a mapping "
                    "(fields: {FIELD: {drop: true}}, or {cast: string})",
                )
        return ("" if text is None else text), (meta or None)

    # -- collections -------------------------------------------------------------------
    def note(self, schema: CollectionSchema) -> dict[str, Any] | None:
        """Collection metadata for a new collection: vecmigrate's note, when there is
        anything to say (None: no metadata, as LangChain and LlamaIndex create collections),
        and for Haystack the ``hnsw:space`` key its ChromaDocumentStore writes (it compares
        its ``distance_function`` with it when it opens the collection)."""
        out: dict[str, Any] = {}
        if self.layout == fw.HAYSTACK and schema.vector.metric in _HNSW_SPACE:
            out["hnsw:space"] = _HNSW_SPACE[schema.vector.metric]
        shape: dict[str, Any] = {}
        if schema.vector.name != fw.VECTOR:
            shape["vector"] = schema.vector.name
        if schema.id_type is IdType.INT:
            shape["id_type"] = "int"
        if not schema.has_document:
            shape["has_document"] = False
        if shape:
            out[NOTE_KEY] = json.dumps(shape, sort_keys=True)
        return out or None

    def refuse_ours(self, name: str) -> None:
        raise ConfigError(
            f"Chroma collection {name!r} was laid out by vecmigrate itself, not by "
            f"{self.what}: layout={self.layout} does not read it",
            hint="read it without ?layout=",
        )

    def shape(self, schema: CollectionSchema, collection_metadata: Any) -> CollectionSchema:
        """``schema`` (as sampled) with the vector name, id type and document flag
        vecmigrate noted when it wrote the collection, and the layout in its settings."""
        raw = (collection_metadata or {}).get(NOTE_KEY)
        try:
            note = json.loads(raw) if isinstance(raw, str) else {}
        except ValueError:
            note = {}
        note = note if isinstance(note, dict) else {}
        vector = schema.vector.model_copy(update={"name": str(note.get("vector", fw.VECTOR))})
        settings = dict(schema.engine_settings)
        settings[SETTINGS_KEY] = {"layout": self.layout}
        settings["metadata_types"] = f"inferred from the records as {self.what} reads them"
        return schema.replace(
            id_type=IdType.INT if note.get("id_type") == "int" else IdType.STRING,
            vectors=(vector,),
            has_document=bool(note.get("has_document", True)),
            engine_settings=settings,
        )

    def check_units(
        self,
        name: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        copied: Metric,
        served: Metric,
        field: str,
    ) -> None:
        """DataError for the first vector that is not unit length when the collection
        searches with ``served`` and the records were copied for ``copied``."""
        if copied is served:
            return
        unit = fw.unit_length(vectors)
        if unit.all():
            return
        i = int(np.flatnonzero(~unit)[0])
        raise DataError(
            f"vector is not unit length: the existing collection searches with "
            f"{served.value}, which ranks it differently than {copied.value} (the metric "
            "it was copied for)",
            collection=name,
            record_id=ids[i],
            field=field,
            hint="normalise the vectors (mapping: vectors: {NAME: {normalize: true}}) or "
            "copy into a new collection (--if-exists replace, or another name)",
        )
