"""Chroma's record URIs (``uris``: where a multimodal collection's images or files live,
read back by its data loader), carried as a metadata field.

The portable model has no URI column, and a URI is data the application cannot do without,
so it travels as the string metadata field ``?uri_field=`` names (``uri`` by default) and
the described schema notes which (``engine_settings[URIS_KEY]``): another engine keeps it
as metadata, and a Chroma target writes it back as the record's URI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vecmigrate.errors import ConfigError, DataError

URIS_KEY = "chroma.uris"
DEFAULT_FIELD = "uri"


def check_uri_field(collection: str, field: str, metas: Sequence[dict[str, Any]]) -> None:
    """ConfigError when the sampled records' metadata already use ``field``."""
    if any(field in m for m in metas):
        raise ConfigError(
            f"Chroma collection {collection!r} has record URIs and a metadata key {field!r}: "
            "the URIs need a metadata field of their own",
            hint=f"name one with ?uri_field=NAME (not {field!r})",
        )


def with_uris(
    collection: str,
    ids: Sequence[Any],
    metas: list[dict[str, Any]],
    uris: Sequence[str | None] | None,
    field: str,
) -> list[dict[str, Any]]:
    """``metas`` with each record's URI under ``field``; DataError naming the record
    whose metadata already has that key (neither value may be lost)."""
    if not uris or all(u is None for u in uris):
        return metas
    out = []
    for rid, meta, uri in zip(ids, metas, uris, strict=True):
        if uri is None:
            out.append(meta)
            continue
        if field in meta:
            raise DataError(
                f"Chroma collection {collection!r} record id={rid!r} has a URI and a "
                f"metadata key {field!r}",
                hint=f"carry the URIs in another field: ?uri_field=NAME (not {field!r})",
            )
        out.append({**meta, field: uri})
    return out


def split_uris(rows: list[dict[str, Any]], field: str | None) -> list[str | None] | None:
    """The URIs to write (taken out of the rows' metadata), None when no record has one."""
    if field is None:
        return None
    uris = [row.pop(field, None) for row in rows]
    return uris if any(u is not None for u in uris) else None
