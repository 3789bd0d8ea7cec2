"""Haystack layouts (``?layout=haystack``, issue #14) on Chroma, Qdrant and pgvector,
accepted through Haystack itself: stores written by Haystack's own document stores
(``kit.build_haystack_*``) are migrated with ``vecmigrate copy ... ?layout=haystack`` and
then queried through the target's Haystack embedding retriever, which must return the
documents and metadata the source's retriever returns (top 10, ties within 1e-5 as sets)
for 50 queries with one Haystack metadata filter each (``{"field": "meta.package",
"operator": "==", "value": ...}``). ``vecmigrate verify`` passes between source and target.

* (a) Haystack ChromaDocumentStore -> pgvector (PgvectorDocumentStore's table);
* (b) Haystack QdrantDocumentStore (local mode) -> Chroma (ChromaDocumentStore's collection).

Plus what each target physically holds and the refusals (a blob, an id longer than
Haystack's id column, a meta value Chroma cannot hold).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require_module
from tests.frameworks import compare, kit
from vecmigrate.connectors import connect
from vecmigrate.connectors import frameworks as fw
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import CollectionSchema, Metric, VectorField
from vecmigrate.records import build_batch

N = 200  # texts in each store
QUERIES = 50
K = 10


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    return compare.text_vectors()


@pytest.fixture
def database(postgres: Any) -> Iterator[Callable[[], str]]:
    """Fresh databases (with the vector extension) on the session's PostgreSQL."""
    yield from compare.fresh_databases(postgres.dsn, "hs_")


def _queries(store: kit.Store) -> list[compare.Query]:
    """50 texts of the parquet file (half of them in the store, half not: rows 150, 152, ...
    248), each with one metadata equality filter on a value some stored record has."""
    return compare.filtered_queries(store, N, QUERIES, K, first=N - QUERIES, step=2)


def _assert_retrievers_agree(
    source: kit.Store, target: kit.Store, vectors: dict[str, np.ndarray]
) -> None:
    queries = _queries(source)
    before = kit.haystack_search_many(source, queries)
    after = kit.haystack_search_many(target, queries)
    compare.assert_hits_agree(queries, before, after, vectors, QUERIES * 3)


def _copy_and_verify(source: str, target: str, collection: str) -> None:
    compare.copy_and_verify(source, target, ["-c", collection], report_dir="report")


# --------------------------------------------------------------------------- acceptance


def test_a_haystack_chroma_to_haystack_pgvector(
    tmp_path: Path,
    vectors: dict[str, np.ndarray],
    database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compare.require_kinds("haystack-chroma", "haystack-pgvector")
    monkeypatch.chdir(tmp_path)
    source = kit.build_haystack_chroma(tmp_path / "chroma", n=N)
    target = source.retarget(database(), kind="haystack-pgvector")

    _copy_and_verify(source.uri(), target.uri(), source.collection)

    # What PgvectorDocumentStore itself keeps: its columns, the Haystack ids, content and
    # meta as they were, no blob; Chroma's l2 noted (the vectors are unit length).
    import psycopg

    with psycopg.connect(target.location) as conn:
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "ORDER BY ordinal_position",
                (target.collection,),
            )
        ]
        rows = conn.execute(
            f'SELECT id, content, meta, blob_data FROM "{target.collection}" ORDER BY id'
        ).fetchall()
    assert cols == [
        "id",
        "embedding",
        "content",
        "blob_data",
        "blob_meta",
        "blob_mime_type",
        "meta",
    ]
    by_id = {r.id: r for r in source.rows}
    assert [r[0] for r in rows] == sorted(source.ids)
    for rid, content, meta, blob in rows:
        assert (content, meta, blob) == (by_id[rid].document, source.metadata(by_id[rid]), None)
    described = connect(target.uri()).describe(target.collection)
    assert described.vector.metric is Metric.L2  # the source's, as noted

    # Haystack reads the table as its own: by id, and through its retriever.
    with kit.open_haystack(target) as ds:
        assert ds.count_documents() == N
        (doc,) = ds.filter_documents({"field": "id", "operator": "==", "value": source.ids[7]})
        assert doc.content == source.rows[7].document
        assert doc.meta == source.metadata(source.rows[7])

    _assert_retrievers_agree(source, target, vectors)


def test_b_haystack_qdrant_to_haystack_chroma(
    tmp_path: Path, vectors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    compare.require_kinds("haystack-qdrant", "haystack-chroma")
    monkeypatch.chdir(tmp_path)
    source = kit.build_haystack_qdrant(tmp_path / "qdrant", n=N)
    target = source.retarget(tmp_path / "chroma", kind="haystack-chroma")

    _copy_and_verify(source.uri(), target.uri(), source.collection)

    # What ChromaDocumentStore itself keeps: the Haystack id, content as the document,
    # meta as the metadata; Qdrant's cosine kept as the collection's space.
    import chromadb

    client = chromadb.PersistentClient(path=target.location)
    col = client.get_collection(target.collection, embedding_function=None)
    assert col.configuration["hnsw"]["space"] == "cosine"
    assert col.metadata == {"hnsw:space": "cosine"}  # as ChromaDocumentStore writes it
    got = col.get(include=["documents", "metadatas"])
    by_id = {r.id: r for r in source.rows}
    assert sorted(got["ids"]) == sorted(source.ids)
    for rid, doc, md in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
        assert (doc, md) == (by_id[rid].document, source.metadata(by_id[rid]))
    del col, client

    with kit.open_haystack(target) as ds:
        assert ds.count_documents() == N
        (doc,) = ds.filter_documents({"field": "id", "operator": "==", "value": source.ids[3]})
        assert (doc.content, doc.meta) == (source.rows[3].document, source.metadata(source.rows[3]))

    _assert_retrievers_agree(source, target, vectors)


def test_qdrant_haystack_write_is_read_by_haystack(tmp_path: Path) -> None:
    """Written into Qdrant with layout=haystack: the point id qdrant-haystack derives from
    the Document id, so its get_by_id finds the documents; payload as Haystack writes it."""
    compare.require_kinds("haystack-qdrant")
    rows = kit.texts()[:20]
    schema = CollectionSchema(
        name="docs",
        vectors=(VectorField(name=fw.VECTOR, dim=kit.DIM, metric=Metric.COSINE),),
        has_document=True,
    )
    batch = build_batch(
        schema,
        [r.id for r in rows],
        {fw.VECTOR: np.asarray([r.vector for r in rows], dtype=np.float32)},
        documents=[r.document for r in rows],
        metadata=[{"package": r.metadata["package"]} for r in rows],
    )
    conn = connect(f"qdrant+local://{tmp_path / 'q'}?layout=haystack")
    conn.create(schema)
    conn.upsert("docs", batch)
    got = conn.fetch("docs", [rows[4].id, rows[9].id])
    assert sorted(got.column("id").to_pylist()) == sorted([rows[4].id, rows[9].id])
    conn.close()

    store = kit.Store(
        "haystack-qdrant", "haystack", "qdrant", str(tmp_path / "q"), "docs", "docs", [], [], False
    )
    with kit.open_haystack(store) as ds:
        (doc,) = ds.get_documents_by_id([rows[4].id])
        assert (doc.id, doc.content, doc.meta) == (
            rows[4].id,
            rows[4].document,
            {"package": rows[4].metadata["package"]},
        )


# --------------------------------------------------------------------------- refusals


def test_blobs_are_refused_by_record(tmp_path: Path, database: Callable[[], str]) -> None:
    """A Haystack Document's blob (bytes) has no place in the portable model: reading one
    fails naming the collection, the Document and the field, on Qdrant and pgvector."""
    compare.require_kinds("haystack-qdrant", "haystack-pgvector")
    from haystack import Document
    from haystack.dataclasses import ByteStream

    row = kit.texts()[0]
    doc = Document(
        id="with-blob",
        content=row.document,
        blob=ByteStream(data=b"\x00\x01", mime_type="application/octet-stream"),
        embedding=list(row.vector),
    )
    qdrant = kit.Store(
        "haystack-qdrant", "haystack", "qdrant", str(tmp_path / "q"), "docs", "docs", [], [], False
    )
    pg = kit.Store(
        "haystack-pgvector", "haystack", "pgvector", database(), "docs", "docs", [], [], False
    )
    for store in (qdrant, pg):
        with kit.open_haystack(store) as ds:
            ds.write_documents([doc])
        conn = connect(store.uri())
        try:
            with pytest.raises(DataError, match="blob") as err:
                schema = conn.describe("docs")
                for _ in conn.scan("docs", conn.partitions("docs", 1)[0], schema=schema):
                    pass
        finally:
            conn.close()
        assert err.value.record_id == "with-blob"
        assert err.value.collection == "docs"


def test_sparse_embeddings_are_refused_by_record(tmp_path: Path) -> None:
    """A QdrantDocumentStore with sparse embeddings keeps them as the point's
    ``text-sparse`` vector: the portable model has no Haystack sparse field, so reading one
    fails naming the Document."""
    compare.require_kinds("haystack-qdrant")
    from haystack import Document
    from haystack.dataclasses import SparseEmbedding
    from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

    rows = kit.texts()[:3]
    ds = QdrantDocumentStore(
        path=str(tmp_path / "q"),
        index="docs",
        embedding_dim=kit.DIM,
        use_sparse_embeddings=True,
        progress_bar=False,
    )
    ds.write_documents(
        [
            Document(
                id=r.id,
                content=r.document,
                embedding=list(r.vector),
                sparse_embedding=SparseEmbedding(indices=[1, 5], values=[0.5, 0.25])
                if i == 1
                else None,
            )
            for i, r in enumerate(rows)
        ]
    )
    ds._client.close()
    with connect(f"qdrant+local://{tmp_path / 'q'}?layout=haystack") as conn:
        schema = conn.describe("docs")
        assert schema.vector.name == "text-dense"
        with pytest.raises(DataError, match="sparse_embedding") as err:
            for _ in conn.scan("docs", conn.partitions("docs", 1)[0], schema=schema):
                pass
    assert (err.value.record_id, err.value.field) == (rows[1].id, "sparse_embedding")


def test_ids_too_long_for_pgvector_and_unstorable_chroma_meta_are_refused(
    tmp_path: Path, database: Callable[[], str]
) -> None:
    compare.require_kinds("haystack-pgvector", "haystack-chroma")
    schema = CollectionSchema(
        name="docs",
        vectors=(VectorField(name=fw.VECTOR, dim=3, metric=Metric.COSINE),),
        has_document=True,
    )
    long_id = "x" * 129
    batch = build_batch(
        schema,
        ["ok", long_id],
        {fw.VECTOR: np.asarray([[1, 0, 0], [0, 1, 0]], dtype=np.float32)},
        documents=["a", "b"],
        metadata=[{"n": 1}, {"n": 2}],
    )
    pg = connect("pgvector://" + database().split("://", 1)[1] + "?layout=haystack")
    pg.create(schema)
    with pytest.raises(DataError, match=r"varchar\(128\)") as err:
        pg.upsert("docs", batch)
    assert err.value.record_id == long_id
    pg.close()

    batch = build_batch(
        schema,
        ["a"],
        {fw.VECTOR: np.asarray([[1, 0, 0]], dtype=np.float32)},
        documents=["a"],
        metadata=[{"obj": {"k": 1}}],
    )
    with connect(f"chroma://{tmp_path / 'c'}?layout=haystack") as chroma:
        chroma.create(schema)
        with pytest.raises(DataError, match="Chroma cannot store") as err:
            chroma.upsert("docs", batch)
    assert (err.value.record_id, err.value.field) == ("a", "obj")


def test_layout_parameter_takes_haystack_where_the_engine_has_a_haystack_store(
    tmp_path: Path, postgres: Any
) -> None:
    """layout=haystack opens Chroma, Qdrant and pgvector; an unknown layout names it among
    the choices there; LanceDB (no Haystack store here) still refuses it."""
    require_module("chromadb")
    require_module("qdrant_client")
    for uri in (
        f"chroma://{tmp_path}/c?layout=haystack",
        f"qdrant+local://{tmp_path}/q?layout=haystack",
        postgres.uri() + "?layout=haystack",
    ):
        with connect(uri) as conn:
            assert conn.list_collections() == []
        with pytest.raises(ConfigError, match="langchain, llamaindex, haystack"):
            connect(uri.replace("layout=haystack", "layout=nosuch"))
    require_module("lancedb")
    with pytest.raises(ConfigError, match=r"layout= takes langchain, llamaindex\)"):
        connect(f"lancedb://{tmp_path / 'l'}?layout=haystack")
