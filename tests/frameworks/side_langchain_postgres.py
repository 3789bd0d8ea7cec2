"""Side script: LangChain's ``langchain-postgres`` (0.0.19), run only in ``.venv-fw2``
through ``side.run_side("side_langchain_postgres.py", request)`` (see tests/frameworks/side.py).

Every request has ``"op"``, ``"url"`` (libpq ``postgresql://user@host:port/db``) and
``"vectors"`` (``{text: vector}`` for every text the op embeds; the side venv has no model).
Ops:

* ``info`` -> ``{"version", "pgvectorstore"}``: whether the ``PGVectorStore``/``PGEngine``
  API (one table per store) exists in this release;
* ``build_pgvector`` (``collection``, ``texts``, ``metadatas``, ``ids``, ``dim``) - the
  tables ``langchain_pg_collection`` / ``langchain_pg_embedding`` through
  ``langchain_postgres.PGVector.add_texts`` (``use_jsonb=True``, ``embedding_length=dim``);
* ``search_pgvector`` (``collection``, ``queries``: ``[[text, k, where], ...]``) ->
  ``{"hits": [[[text, metadata, score], ...], ...]}`` from ``similarity_search_with_score``
  with ``filter={key: {"$eq": value}}`` for a one-key ``where``;
* ``build_pgvectorstore`` (``table``, ``texts``, ``metadatas``, ``ids``, ``dim``,
  ``metadata_columns``: ``[[name, sql type], ...]``) - ``PGEngine.init_vectorstore_table``
  then ``PGVectorStore.create_sync(...).add_texts``: the keys named there become columns,
  the others go to the ``langchain_metadata`` JSON column;
* ``search_pgvectorstore`` (``table``, ``metadata_columns``, ``queries``) -> ``{"hits"}``.
"""

from __future__ import annotations

import warnings
from typing import Any

from side import GivenEmbeddings, Reply, Request, serve

Hit = list[Any]


def _sqlalchemy_url(url: str) -> str:
    # psycopg 3 for both the sync and the async engine (PGEngine is async only).
    scheme, rest = url.split("://", 1)
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"expected a postgresql:// URL, not {scheme}://")
    return "postgresql+psycopg://" + rest


def _filter(where: dict[str, Any] | None) -> dict[str, Any] | None:
    if not where:
        return None
    ((key, value),) = where.items()
    return {key: {"$eq": value}}


def _hits(pairs: list[tuple[Any, float]]) -> list[Hit]:
    return [[doc.page_content, dict(doc.metadata), float(score)] for doc, score in pairs]


def info(request: Request) -> Reply:
    """The package's version and whether its one-table-per-store API exists."""
    import langchain_postgres

    return {
        "version": langchain_postgres.__version__,
        "pgvectorstore": hasattr(langchain_postgres, "PGVectorStore")
        and hasattr(langchain_postgres, "PGEngine"),
    }


def _pgvector(request: Request, dim: int | None = None) -> Any:
    from langchain_postgres import PGVector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PGVector(
            embeddings=GivenEmbeddings(request["vectors"]),
            connection=_sqlalchemy_url(request["url"]),
            collection_name=request["collection"],
            embedding_length=dim,
            use_jsonb=True,
        )


def build_pgvector(request: Request) -> Reply:
    """Write the texts as an application does with ``PGVector.add_texts``."""
    vs = _pgvector(request, request["dim"])
    try:
        ids = vs.add_texts(request["texts"], metadatas=request["metadatas"], ids=request["ids"])
    finally:
        vs._engine.dispose()
    return {"ids": list(ids)}


def search_pgvector(request: Request) -> Reply:
    """``similarity_search_with_score`` for each query, through ``PGVector``."""
    vs = _pgvector(request)
    try:
        hits = [
            _hits(vs.similarity_search_with_score(text, k=k, filter=_filter(where)))
            for text, k, where in request["queries"]
        ]
    finally:
        vs._engine.dispose()
    return {"hits": hits}


def _pgvectorstore(request: Request) -> tuple[Any, Any]:
    from langchain_postgres import PGEngine, PGVectorStore

    engine = PGEngine.from_connection_string(_sqlalchemy_url(request["url"]))
    vs = PGVectorStore.create_sync(
        engine,
        GivenEmbeddings(request["vectors"]),
        request["table"],
        metadata_columns=[name for name, _ in request["metadata_columns"]],
    )
    return engine, vs


def build_pgvectorstore(request: Request) -> Reply:
    """Create a PGVectorStore table and write the texts with ``add_texts``."""
    from langchain_postgres import Column, PGEngine

    engine = PGEngine.from_connection_string(_sqlalchemy_url(request["url"]))
    try:
        engine.init_vectorstore_table(
            request["table"],
            request["dim"],
            metadata_columns=[Column(name, kind) for name, kind in request["metadata_columns"]],
        )
    finally:
        engine._run_as_sync(engine.close())
    engine, vs = _pgvectorstore(request)
    try:
        ids = vs.add_texts(request["texts"], metadatas=request["metadatas"], ids=request["ids"])
    finally:
        engine._run_as_sync(engine.close())
    return {"ids": [str(i) for i in ids]}


def search_pgvectorstore(request: Request) -> Reply:
    """``similarity_search_with_score`` for each query, through ``PGVectorStore``."""
    engine, vs = _pgvectorstore(request)
    try:
        hits = [
            _hits(vs.similarity_search_with_score(text, k=k, filter=_filter(where)))
            for text, k, where in request["queries"]
        ]
    finally:
        engine._run_as_sync(engine.close())
    return {"hits": hits}


if __name__ == "__main__":
    serve(
        {
            "info": info,
            "build_pgvector": build_pgvector,
            "search_pgvector": search_pgvector,
            "build_pgvectorstore": build_pgvectorstore,
            "search_pgvectorstore": search_pgvectorstore,
        }
    )
