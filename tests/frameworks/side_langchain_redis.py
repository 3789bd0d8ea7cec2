"""Side script: LangChain's ``langchain-redis`` (0.2.6, over redisvl), run only in
``.venv-fw2`` through ``side.run_side("side_langchain_redis.py", request)`` (see
tests/frameworks/side.py).

Every request has ``"op"``, ``"url"`` (``redis://host:port``), ``"index_name"``, ``"dim"``
and ``"vectors"`` (``{text: vector}`` for every text the op embeds; the side venv has no
model). The store is ``RedisVectorStore(embeddings, index_name=..., redis_url=...,
metadata_schema=..., embedding_dimensions=dim)``, or with ``"from_existing": true``
``RedisVectorStore.from_existing_index(index_name, ...)`` (the schema read from the index).
Ops:

* ``build`` (``metadata_schema``, ``texts``, ``metadatas``, ``ids``) -> ``{"ids"}``: the
  texts written with ``add_texts``;
* ``search`` (``metadata_schema``, ``queries``: ``[[text, k, where], ...]``) ->
  ``{"hits": [[[text, metadata, score], ...], ...]}`` from ``similarity_search_with_score``
  with a redisvl filter for a one-key ``where`` (``Tag`` / ``Num`` / ``Text`` by the
  field's type in ``metadata_schema``), and ``{"fields"}``: the store's index fields as
  redisvl sees them (``{name: type}``).
"""

from __future__ import annotations

from typing import Any

from side import GivenEmbeddings, Reply, Request, serve

Hit = list[Any]


def _store(request: Request) -> Any:
    from langchain_redis import RedisVectorStore

    embeddings = GivenEmbeddings(request["vectors"])
    if request.get("from_existing"):
        return RedisVectorStore.from_existing_index(
            request["index_name"],
            embeddings,
            redis_url=request["url"],
            embedding_dimensions=request["dim"],
        )
    return RedisVectorStore(
        embeddings,
        index_name=request["index_name"],
        redis_url=request["url"],
        metadata_schema=request.get("metadata_schema") or [],
        embedding_dimensions=request["dim"],
    )


def _filter(types: dict[str, str], where: dict[str, Any] | None) -> Any:
    if not where:
        return None
    from redisvl.query.filter import Num, Tag, Text

    ((key, value),) = where.items()
    kind = types.get(key)
    if kind == "tag":
        return Tag(key) == str(value)
    if kind == "numeric":
        return Num(key) == value
    if kind == "text":
        return Text(key) == str(value)
    raise KeyError(f"no field {key!r} in the store's schema: {sorted(types)}")


def build(request: Request) -> Reply:
    """Write the texts as an application does with ``RedisVectorStore.add_texts``."""
    vs = _store(request)
    ids = vs.add_texts(request["texts"], metadatas=request["metadatas"], ids=request["ids"])
    return {"ids": list(ids)}


def search(request: Request) -> Reply:
    """``similarity_search_with_score`` for each query."""
    vs = _store(request)
    types = {f.name: str(f.type.value) for f in vs.index.schema.fields.values()}
    hits: list[list[Hit]] = []
    for text, k, where in request["queries"]:
        pairs = vs.similarity_search_with_score(text, k=k, filter=_filter(types, where))
        hits.append([[doc.page_content, dict(doc.metadata), float(score)] for doc, score in pairs])
    return {"hits": hits, "fields": types}


if __name__ == "__main__":
    serve({"build": build, "search": search})
