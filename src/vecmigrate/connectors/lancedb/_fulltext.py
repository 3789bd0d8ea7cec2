"""Full-text search in LanceDB: an FTS index (BM25 over a text column, what LangChain's and
LlamaIndex's hybrid search query) is read as the portable ``FullTextField`` when it is on
the document column, and built again on a target table at ``finalize``. An FTS index on
another column cannot follow the records (the target's document is the only text a
``FullTextField`` is over): it is listed as not carried."""

from __future__ import annotations

import inspect
from typing import Any

from vecmigrate.model import CollectionSchema, FullTextField

_FTS = "FTS"


def _fts_indexes(table: Any) -> list[Any]:
    return [c for c in table.list_indices() if str(c.index_type).upper() == _FTS]


def served_full_text(
    table: Any, schema: CollectionSchema, document: str | None
) -> CollectionSchema:
    """``schema`` with the table's FTS indexes: over the ``document`` column, its
    full-text search (replacing what was recorded: the index that serves is the truth);
    over another column, not carried (refused until the mapping leaves it behind)."""
    full_text, uncarried = [], dict(schema.uncarried)
    for index in _fts_indexes(table):
        details = dict(getattr(index, "index_details", None) or {})
        if list(index.columns) == [document]:
            full_text.append(FullTextField(name=index.name, analyzer=details or None))
        else:
            uncarried[index.name] = (
                f"a LanceDB full-text (FTS) index on column {', '.join(index.columns)!r}, "
                "not the document; only full-text search over the document can be set up "
                "again on a target"
            )
    return schema.replace(full_text=tuple(full_text), uncarried=uncarried)


def build_full_text(table: Any, schema: CollectionSchema, document: str) -> dict[str, str]:
    """Build the FTS index of each of ``schema``'s full-text fields on ``document`` (none
    exists yet); its tokenizer settings where the source was LanceDB, else LanceDB's
    defaults. Returns notes of the settings not carried (another engine's analyzer)."""
    from lancedb.index import FTS

    if any(list(c.columns) == [document] for c in _fts_indexes(table)):
        return {}
    notes = {}
    accepted = set(inspect.signature(FTS).parameters)
    for f in schema.full_text[:1]:  # LanceDB keeps one FTS index per column
        given = {_RENAMED.get(k, k): v for k, v in (f.analyzer or {}).items()}
        options = {k: v for k, v in given.items() if k in accepted}
        left = sorted(set(given) - set(options) - _LANCE_ONLY)
        if left:
            notes[f"{f.name}.analyzer"] = (
                f"{', '.join(left)} of the source's analyzer not carried (another engine's); "
                "LanceDB's default tokenizer used"
            )
        table.create_index(document, config=FTS(**options), name=f.name, replace=True)
    return notes


# Keys LanceDB reports in an FTS index's details: named otherwise by its FTS(), or not
# taken by it.
_RENAMED = {"min_ngram_length": "ngram_min_length", "max_ngram_length": "ngram_max_length"}
_LANCE_ONLY = {"lance_tokenizer", "split_identifiers", "split_on_numerics", "preserve_original",
               "index_operators"}  # fmt: skip
