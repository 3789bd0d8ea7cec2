"""Where a Qdrant collection another tool wrote keeps each part of a record in its payload.

LangChain writes ``{"page_content": text, "metadata": {...}}``, LlamaIndex and hand-made
collections keep the text under ``text`` / ``document`` and metadata as top-level keys.
``Payload`` records the layout described (``engine_settings[LAYOUT_KEY]``): the key of the
text, the key of a nested metadata object, and where each metadata field lives; reads
lift them into the batch layout, writes put them back where the application reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vecmigrate.connectors.qdrant._records import DOC_KEY, ID_KEY, NS_KEY, RESERVED_KEYS

LAYOUT_KEY = "qdrant.layout"


@dataclass(frozen=True)
class Payload:
    """A foreign collection's payload layout. ``document``: the key of the text (None: the
    collection keeps none, and vecmigrate's own key is used). ``metadata``: the key of a
    nested object whose keys are metadata fields. ``fields``: (field, container, key),
    the container None for a top-level key or ``metadata``."""

    document: str | None = None
    metadata: str | None = None
    fields: tuple[tuple[str, str | None, str], ...] = ()

    def settings(self) -> dict[str, Any]:
        """The layout as recorded in ``engine_settings[LAYOUT_KEY]``."""
        return {
            "document": self.document,
            "metadata": self.metadata,
            "fields": {f: [c, k] for f, c, k in self.fields},
        }

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> Payload | None:
        """The layout recorded in ``settings``; None for a collection vecmigrate laid out."""
        raw = settings.get(LAYOUT_KEY)
        if not isinstance(raw, Mapping):
            return None
        return cls(
            document=raw.get("document"),
            metadata=raw.get("metadata"),
            fields=tuple((f, c, k) for f, (c, k) in (raw.get("fields") or {}).items()),
        )

    def keys(self) -> dict[str, str]:
        """field -> payload key path as Qdrant filters spell it (``metadata.source``)."""
        return {f: k if c is None else f"{c}.{k}" for f, c, k in self.fields}

    def read(self, payload: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """(text, metadata) of one point; keys no field names are kept (the batch files
        them in ``metadata_extra``), a nested key found at the top too as ``<metadata>.<key>``."""
        by_key = {(c, k): f for f, c, k in self.fields}
        doc_key = self.document or DOC_KEY
        skip = {doc_key, self.metadata, *RESERVED_KEYS}
        meta: dict[str, Any] = {}
        for key, value in payload.items():
            if key not in skip:
                meta[by_key.get((None, key), key)] = value
        if self.metadata is not None and self.metadata in payload:
            nested = payload[self.metadata]
            if isinstance(nested, dict):
                for key, value in nested.items():
                    name = by_key.get((self.metadata, key))
                    if name is None:
                        name = f"{self.metadata}.{key}" if key in meta else key
                    meta[name] = value
            else:
                meta[self.metadata] = nested  # not an object: kept as it is
        return payload.get(doc_key), meta

    def write(
        self,
        rid: Any,
        doc: Any,
        meta: Mapping[str, Any],
        namespace: Any,
        string_id: bool,
        point_id: Any = None,
    ) -> dict[str, Any]:
        """The payload of one record: text and metadata where the application reads them
        (a field the layout does not name goes into the nested object when there is one;
        ``point_id`` plays no part)."""
        where = {f: (c, k) for f, c, k in self.fields}
        payload: dict[str, Any] = {}
        nested: dict[str, Any] = {}
        prefix = f"{self.metadata}."
        for field, value in meta.items():
            container, key = where.get(field, (None, field))
            if field not in where and self.metadata is not None:
                container, key = self.metadata, field.removeprefix(prefix)
            if container is None:
                payload[key] = value
            else:
                nested[key] = value
        if self.metadata is not None:
            payload[self.metadata] = nested
        if doc is not None:
            payload[self.document or DOC_KEY] = doc
        if string_id:
            payload[ID_KEY] = rid
        if namespace is not None:
            payload[NS_KEY] = namespace
        return payload
