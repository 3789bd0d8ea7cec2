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


def build_full_text(table: Any, schema: CollectionSchema, document: str) -> None:
    """Build the FTS index of ``schema``'s full-text search on ``document`` unless one is
    there: with the source's tokenizer settings where they are LanceDB's, else LanceDB's
    defaults (another engine's analyzer; the mapping's decision says so)."""
    from lancedb.index import FTS

    if not schema.full_text or any(list(c.columns) == [document] for c in _fts_indexes(table)):
        return
    f = schema.full_text[0]  # LanceDB keeps one FTS index per column
    accepted = set(inspect.signature(FTS).parameters)
    given = {_RENAMED.get(k, k): v for k, v in (f.analyzer or {}).items()}
    options = {k: v for k, v in given.items() if k in accepted}
    table.create_index(document, config=FTS(**options), name=f.name, replace=True)


# Keys LanceDB reports in an FTS index's details under other names than its FTS() takes.
_RENAMED = {"min_ngram_length": "ngram_min_length", "max_ngram_length": "ngram_max_length"}
