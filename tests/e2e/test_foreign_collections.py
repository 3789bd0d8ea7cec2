"""Collections other tools wrote with the engines' own clients (Milvus, Qdrant, Chroma,
Redis), read as they are laid out (issue #14), through the CLI like a user: ``inspect``
shows the fields and every metric with where it was read, ``copy`` to a dump and
``verify`` pass, a metric nothing records is refused until the mapping states it, and a
Qdrant collection with one unnamed vector takes records written into it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import cli
from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError
from vecmigrate.records import metadata_rows

ROWS, DIM = 300, 8


def _vectors(n: int = ROWS, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """Unnormalised, as word vectors are: l2, dot and cosine rank them differently."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, dim)) * np.linspace(0.2, 5, n)[:, None]).astype(np.float32)


def _unit(n: int = ROWS, dim: int = DIM, seed: int = 1) -> np.ndarray:
    v = _vectors(n, dim, seed)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _ok(*args: str) -> Any:
    ran = cli(*args, "--json")
    assert ran.returncode == 0, ran.stderr + ran.stdout[-3000:]
    return ran.json()


def _inspect(uri: str, name: str) -> dict[str, Any]:
    (info,) = _ok("inspect", uri, "-c", name)["collections"]
    return dict(info)


def _vector_info(info: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {v["name"]: (v["metric"], v["metric_source"]) for v in info["vectors"]}


def _types(info: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["type"] for m in info["metadata"]}


def _copy_and_verify(src: str, name: str, tmp_path: Path) -> str:
    """Copy ``name`` to a dump (verified by digests) and verify it against the source."""
    dump = f"dump://{tmp_path / 'dump'}"
    assert _ok("copy", src, dump, "-c", name)["verified"]
    report = _ok(
        "verify", src, dump, "-c", name, "--queries", "30", "--report-dir", str(tmp_path / "r")
    )
    assert report["passed"] and report["parity"]["equal"], report
    assert any(g.startswith("filter: ") for g in report["queries"]["groups"])
    return dump


def _refused_until_mapped(
    src: str, target: str, name: str, tmp_path: Path, mapping: str, *said: str
) -> Any:
    """Copy ``name``: refused (exit 2) with each of ``said`` in the error and nothing
    written to ``target``; then again with ``mapping`` (YAML) as ``--map``: its JSON."""
    refused = cli("copy", src, target, "-c", name, "--json")
    assert refused.returncode == 2, refused.stderr
    for text in said:
        assert text in refused.stderr, refused.stderr
    with connect(target) as conn:
        assert name not in conn.list_collections()
    (tmp_path / "map.yaml").write_text(mapping)
    return _ok("copy", src, target, "-c", name, "--map", str(tmp_path / "map.yaml"))


def _records(uri: str, name: str, ids: list[Any]) -> dict[Any, dict[str, Any]]:
    """id -> {document, metadata} as the store reads them."""
    with connect(uri) as conn:
        schema = conn.describe(name)
        batch = conn.fetch(name, ids)
        metas = metadata_rows(batch, schema)
        docs = batch.column("document").to_pylist() if schema.has_document else [None] * len(ids)
    return {
        i: {"document": d, "metadata": m}
        for i, d, m in zip(batch.column("id").to_pylist(), docs, metas, strict=True)
    }


# -- Milvus (milvus-lite), as pymilvus' MilvusClient writes it -------------------------------
def _milvus(path: Path) -> Any:
    require_module("milvus_lite")
    from pymilvus import MilvusClient

    return MilvusClient(str(path))


@pytest.mark.parametrize("key", ["auto_int", "varchar"])
def test_milvus_collection_with_json_metadata_dynamic_fields_and_two_vectors(
    tmp_path: Path, key: str
) -> None:
    from pymilvus import DataType

    client = _milvus(tmp_path / "m.db")
    ms = client.create_schema(auto_id=key == "auto_int", enable_dynamic_field=True)
    if key == "auto_int":
        ms.add_field("pk", DataType.INT64, is_primary=True)
    else:
        ms.add_field("doc_id", DataType.VARCHAR, is_primary=True, max_length=32)
    ms.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    ms.add_field("title_vec", DataType.FLOAT_VECTOR, dim=4)
    ms.add_field("page_content", DataType.VARCHAR, max_length=200)
    ms.add_field("metadata", DataType.JSON)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="L2")
    index.add_index("title_vec", index_type="IVF_FLAT", metric_type="IP", params={"nlist": 4})
    client.create_collection("lc", schema=ms, index_params=index)
    vectors, titles = _vectors(), _vectors(dim=4, seed=3)
    rows = []
    for i in range(ROWS):
        row: dict[str, Any] = {
            "vector": vectors[i].tolist(),
            "title_vec": titles[i].tolist(),
            "page_content": f"passage number {i}",
            "metadata": {"source": f"doc-{i % 7}.md", "page": i % 13, "tags": ["a", "b"][: i % 3]},
            "lang": ["en", "de"][i % 2],  # dynamic fields ($meta)
        }
        if i % 4:
            row["score"] = i / 4
        if key == "varchar":
            row["doc_id"] = f"chunk-{i:04d}"
        rows.append(row)
    client.insert("lc", rows)
    client.close()

    src = f"milvus-lite://{tmp_path / 'm.db'}"
    info = _inspect(src, "lc")
    assert info["count"] == ROWS and info["has_document"]
    assert info["id_type"] == ("int" if key == "auto_int" else "string")
    assert _types(info) == {
        "source": "string",
        "page": "int64",
        "tags": "list<string>",
        "lang": "string",
        "score": "float64",
    }
    assert _vector_info(info) == {
        "vector": ("l2", "the FLAT index on 'vector' (L2)"),
        "title_vec": ("dot", "the IVF_FLAT index on 'title_vec' (IP)"),
    }
    shown = cli("inspect", src, "-c", "lc")
    assert "metric=l2 (the FLAT index on 'vector' (L2))" in shown.stdout

    dump = _copy_and_verify(src, "lc", tmp_path)
    with connect(src) as conn:
        assert conn.count("lc", {"source": "doc-3.md"}) == len(range(3, ROWS, 7))
        assert conn.count("lc", {"score": {"$gt": 70}}) == sum(
            1 for i in range(ROWS) if i % 4 and i / 4 > 70
        )
        assert conn.count("lc", {"tags": "b"}) == len([i for i in range(ROWS) if i % 3 == 2])
        [part] = conn.partitions("lc", 1)
        first = next(iter(conn.scan("lc", part)))[0]
    some = first.column("id").to_pylist()[:5]
    got = _records(dump, "lc", some)
    want = _records(src, "lc", some)
    assert got == want
    for rec in got.values():
        i = int(rec["document"].split()[-1])
        assert rec["metadata"]["source"] == f"doc-{i % 7}.md"
        assert rec["metadata"]["lang"] == ["en", "de"][i % 2]
        assert ("score" in rec["metadata"]) == bool(i % 4)


def _bm25_collection(path: Path, over: str = "text") -> Any:
    """A Milvus Lite collection with full-text search as pymilvus sets it up (LangChain's
    and LlamaIndex's BM25 built-in functions do the same): a sparse field a BM25 function
    computes from the text field ``over`` (an English analyzer, tuned scoring)."""
    from pymilvus import DataType, Function, FunctionType

    client = _milvus(path)
    ms = client.create_schema(auto_id=False, enable_dynamic_field=True)
    ms.add_field("id", DataType.INT64, is_primary=True)
    english = {"enable_analyzer": True, "analyzer_params": {"type": "english"}}
    ms.add_field("text", DataType.VARCHAR, max_length=200, **(english if over == "text" else {}))
    ms.add_field("title", DataType.VARCHAR, max_length=50, **(english if over == "title" else {}))
    ms.add_field("sparse_bm25", DataType.SPARSE_FLOAT_VECTOR)
    ms.add_field("dense", DataType.FLOAT_VECTOR, dim=DIM)
    ms.add_function(
        Function(
            name="bm25",
            function_type=FunctionType.BM25,
            input_field_names=[over],
            output_field_names=["sparse_bm25"],
        )
    )
    index = client.prepare_index_params()
    index.add_index("dense", index_type="FLAT", metric_type="L2")
    index.add_index(
        "sparse_bm25",
        index_type="SPARSE_INVERTED_INDEX",
        metric_type="BM25",
        params={"bm25_k1": 1.5, "bm25_b": 0.7},
    )
    client.create_collection("fts", schema=ms, index_params=index)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    dense = _vectors(seed=7)
    rows = [
        {
            "id": i,
            "text": " ".join(words[(i + k) % 8] for k in range(i % 5 + 1)),
            "title": f"title {words[i % 8]}",
            "dense": dense[i].tolist(),
            "genre": ["news", "art"][i % 2],
        }
        for i in range(ROWS)
    ]
    client.insert("fts", rows)
    return client


def _keyword_search(client: Any, anns_field: str = "sparse_bm25") -> list[tuple[int, float]]:
    hits = client.search("fts", data=["gamma delta"], anns_field=anns_field, limit=10)[0]
    return [(h["id"], round(h["distance"], 4)) for h in hits]


def test_milvus_full_text_search_is_recreated_on_a_milvus_target_and_refused_elsewhere(
    tmp_path: Path,
) -> None:
    """Milvus returns no vectors of a BM25 field: it is not data. Copied as a sparse field,
    every record arrived with an empty one and the check passed on both sides' Nones. It
    is described as full-text search over the document and set up again on a Milvus
    target (the same analyzer and scoring: the same keyword hits and scores); a target
    that cannot compute it refuses until the mapping leaves it behind."""
    client = _bm25_collection(tmp_path / "f.db")
    want = _keyword_search(client)
    client.close()
    src = f"milvus-lite://{tmp_path / 'f.db'}"
    info = _inspect(src, "fts")
    assert info["sparse"] == [] and info["uncarried"] == {}
    (ft,) = info["full_text"]
    assert ft["name"] == "sparse_bm25" and ft["over"] == "document"
    assert ft["analyzer"] == {"type": "english"}
    assert ft["params"] == {"bm25_k1": 1.5, "bm25_b": 0.7}
    assert "full-text" in cli("inspect", src, "-c", "fts").stdout

    dump = f"dump://{tmp_path / 'dump'}"  # keeps it in the schema, for the next target
    assert _ok("copy", src, dump, "-c", "fts")["verified"]
    target = tmp_path / "t.db"
    copied = _ok("copy", dump, f"milvus-lite://{target}", "-c", "fts")
    assert copied["verified"] and copied["rows_written"] == ROWS
    assert any("sparse_bm25: full-text search" in d for d in copied["decisions"]), copied
    moved = _milvus(target)
    try:
        assert _keyword_search(moved) == want and len(want) == 10
    finally:
        moved.close()

    # LanceDB keeps full-text search as an FTS index (BM25) over the document: the same
    # records match (scores differ a little: another engine's BM25).
    assert _ok("copy", dump, f"lancedb://{tmp_path / 'lance'}", "-c", "fts")["verified"]
    table = require_module("lancedb").connect(str(tmp_path / "lance")).open_table("fts")
    hits = table.search("gamma delta", query_type="fts").limit(ROWS).to_arrow()["id"]
    assert set(hits.to_pylist()) == {i for i, _ in _keyword_search_all(tmp_path / "f.db")}

    chroma = f"chroma://{tmp_path / 'chroma'}"  # no full-text search to set up
    copied = _refused_until_mapped(
        dump,
        chroma,
        "fts",
        tmp_path,
        "vectors:\n  sparse_bm25: {drop: true}\n",
        "field 'sparse_bm25' is full-text search the engine",
        "vectors: {sparse_bm25: {drop: true}}",
    )
    assert copied["rows_written"] == ROWS and copied["verified"], copied["checks"]
    with connect(chroma) as conn:
        schema = conn.describe("fts")
        assert schema.full_text == () and schema.sparse == () and schema.has_document


def _keyword_search_all(path: Path) -> list[tuple[int, float]]:
    """Every record Milvus's keyword search matches in ``path``'s ``fts``."""
    client = _milvus(path)
    try:
        hits = client.search("fts", data=["gamma delta"], anns_field="sparse_bm25", limit=ROWS)
        return [(h["id"], h["distance"]) for h in hits[0]]
    finally:
        client.close()


def _llamaindex_bm25_store(path: Path, overwrite: bool) -> Any:
    require_module("llama_index.vector_stores.milvus")
    from llama_index.vector_stores.milvus import MilvusVectorStore
    from llama_index.vector_stores.milvus.utils import BM25BuiltInFunction

    return MilvusVectorStore(
        uri=str(path),
        collection_name="li_bm25",
        dim=DIM,
        overwrite=overwrite,
        enable_sparse=True,
        sparse_embedding_function=BM25BuiltInFunction(),
    )


def _keyword_scores(store: Any) -> dict[str, float]:
    from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

    query = VectorStoreQuery(
        query_str="gamma delta", mode=VectorStoreQueryMode.TEXT_SEARCH, similarity_top_k=ROWS
    )
    got = store.query(query)
    return {i: round(s, 4) for i, s in zip(got.ids, got.similarities, strict=True)}


def test_a_llamaindex_milvus_store_keeps_its_keyword_search_in_its_own_layout(
    tmp_path: Path,
) -> None:
    """LlamaIndex's MilvusVectorStore with its BM25 built-in function (hybrid search): its
    layout was read without the sparse field, silently. It is full-text search over the
    text, set up again in the target's LlamaIndex layout: the application's keyword
    search on the target scores every node as on the source."""
    from llama_index.core.schema import TextNode

    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    vectors = _vectors(seed=3)
    nodes = [
        TextNode(
            id_=f"n{i}",
            text=" ".join(words[(i * k) % 6] for k in range(1, 5)),
            embedding=vectors[i].tolist(),
            metadata={"k": i % 3},
        )
        for i in range(ROWS)
    ]
    _llamaindex_bm25_store(tmp_path / "s.db", overwrite=True).add(nodes)
    want = _keyword_scores(_llamaindex_bm25_store(tmp_path / "s.db", overwrite=False))
    src = f"milvus-lite://{tmp_path / 's.db'}?layout=llamaindex"
    (ft,) = _inspect(src, "li_bm25")["full_text"]
    assert ft["name"] == "sparse_embedding" and ft["over"] == "document"
    target = f"milvus-lite://{tmp_path / 't.db'}?layout=llamaindex"
    assert _ok("copy", src, target, "-c", "li_bm25")["verified"]
    got = _keyword_scores(_llamaindex_bm25_store(tmp_path / "t.db", overwrite=False))
    assert got == want and len(want) > 10


def test_milvus_full_text_over_another_field_than_the_document_is_not_carried(
    tmp_path: Path,
) -> None:
    """BM25 over the title, not the document: the target's function would read the
    document instead, so the field is refused until dropped, not recreated wrongly."""
    _bm25_collection(tmp_path / "f.db", over="title").close()
    src = f"milvus-lite://{tmp_path / 'f.db'}"
    info = _inspect(src, "fts")
    assert info["full_text"] == []
    assert "BM25 function over 'title'" in info["uncarried"]["sparse_bm25"]
    dump = f"dump://{tmp_path / 'dump'}"
    copied = _refused_until_mapped(
        src,
        dump,
        "fts",
        tmp_path,
        "vectors:\n  sparse_bm25: {drop: true}\n",
        "vector field 'sparse_bm25' cannot be carried: computed by Milvus's",
        "vectors: {sparse_bm25: {drop: true}}",
    )
    assert copied["rows_written"] == ROWS and copied["verified"], copied["checks"]
    with connect(dump) as conn:
        schema = conn.describe("fts")
        assert schema.sparse == () and schema.uncarried == {} and schema.full_text == ()


def test_milvus_fields_without_a_portable_form_are_refused_and_a_partition_key_is_indexed(
    tmp_path: Path,
) -> None:
    """A BINARY_VECTOR field was dropped unsaid (a note in engine settings) and an ARRAY of
    BOOL too: the first is refused until the mapping leaves it behind, the second travels
    as JSON; a partition key (what multi-tenant apps filter by) reads as a filter index,
    so a target that builds them indexes the field (it was dropped unsaid as well)."""
    from pymilvus import DataType

    client = _milvus(tmp_path / "b.db")
    ms = client.create_schema(auto_id=False, partition_key_field="tenant", num_partitions=8)
    ms.add_field("id", DataType.INT64, is_primary=True)
    ms.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    ms.add_field("codes", DataType.BINARY_VECTOR, dim=16)
    ms.add_field("flags", DataType.ARRAY, element_type=DataType.BOOL, max_capacity=4)
    ms.add_field("tenant", DataType.VARCHAR, max_length=16)
    ms.add_field("text", DataType.VARCHAR, max_length=100)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="L2")
    index.add_index("codes", index_type="BIN_FLAT", metric_type="HAMMING")
    client.create_collection("mixed", schema=ms, index_params=index)
    vectors = _vectors()
    client.insert(
        "mixed",
        [
            {
                "id": i,
                "vector": vectors[i].tolist(),
                "codes": bytes([i % 256, (7 * i) % 256]),
                "flags": [i % 2 == 0, i % 3 == 0],
                "tenant": f"t{i % 4}",
                "text": f"x{i}",
            }
            for i in range(ROWS)
        ],
    )
    client.close()
    src = f"milvus-lite://{tmp_path / 'b.db'}"
    info = _inspect(src, "mixed")
    assert "BINARY_VECTOR" in info["uncarried"]["codes"]
    assert _types(info) == {"flags": "json", "tenant": "string"}
    assert {m["name"]: m["indexed"] for m in info["metadata"]} == {"flags": False, "tenant": True}
    assert "partition key" in info["engine_settings"]["tenant.index"]

    target = f"lancedb://{tmp_path / 'lance'}"
    refused = cli("copy", src, target, "-c", "mixed")
    assert refused.returncode == 2, refused.stderr
    assert "vectors: {codes: {drop: true}}" in refused.stderr.replace("\n", " ")
    (tmp_path / "map.yaml").write_text("vectors:\n  codes: {drop: true}\n")
    copied = _ok("copy", src, target, "-c", "mixed", "--map", str(tmp_path / "map.yaml"))
    assert copied["verified"] and copied["rows_written"] == ROWS
    with connect(target) as conn:
        schema = conn.describe("mixed")
        got = conn.fetch("mixed", [3])
    assert {m.name: m.indexed for m in schema.metadata} == {"flags": False, "tenant": True}
    assert metadata_rows(got, schema) == [{"flags": [False, True], "tenant": "t3"}]


def test_milvus_rows_repeating_a_primary_key_copy_as_the_latest_of_each(tmp_path: Path) -> None:
    """Milvus keeps every row an insert wrote, a key inserted again included (an ingestion
    run twice), and ``count(*)`` counts them all, while its queries return the latest row
    of each key. The copy read the 100 records and its row count check failed against the
    300 rows; now the records are the keys, said in a warning, and the check passes."""
    client = _milvus(tmp_path / "d.db")
    client.create_collection("twice", dimension=DIM, metric_type="L2", consistency_level="Strong")
    vectors = _vectors()
    for run in range(3):
        client.insert(
            "twice",
            [{"id": i, "vector": vectors[i].tolist(), "run": run} for i in range(100)],
        )
    client.close()
    src, dump = f"milvus-lite://{tmp_path / 'd.db'}", f"dump://{tmp_path / 'dump'}"
    copied = cli("copy", src, dump, "-c", "twice", "--json")
    assert copied.returncode == 0, copied.stderr
    assert copied.json()["rows_written"] == 100 and copied.json()["verified"]
    assert "300 rows but 100 primary keys" in copied.stderr.replace("\n", " ")
    got = _records(dump, "twice", [7])[7]["metadata"]
    assert got == {"run": 2}  # the latest insert of key 7


def test_milvus_fields_without_an_index_are_sampled_and_an_unknown_metric_is_refused(
    tmp_path: Path,
) -> None:
    from pymilvus import DataType

    client = _milvus(tmp_path / "n.db")
    ms = client.create_schema(auto_id=False, enable_dynamic_field=False)
    ms.add_field("id", DataType.VARCHAR, is_primary=True, max_length=16)
    ms.add_field("emb", DataType.FLOAT_VECTOR, dim=DIM)
    ms.add_field("unit", DataType.FLOAT_VECTOR, dim=DIM)
    ms.add_field("raw", DataType.FLOAT_VECTOR, dim=DIM)
    ms.add_field("body", DataType.VARCHAR, max_length=100)
    ms.add_field("year", DataType.INT64)
    index = client.prepare_index_params()
    index.add_index("emb", index_type="FLAT", metric_type="COSINE")
    client.create_collection("raw", schema=ms, index_params=index)
    emb, unit, raw = _vectors(seed=5), _unit(), _vectors(seed=6)
    client.insert(
        "raw",
        [
            {
                "id": f"r{i}",
                "emb": emb[i].tolist(),
                "unit": unit[i].tolist(),
                "raw": raw[i].tolist(),
                "body": f"b{i}",
                "year": 2000 + i % 20,
            }
            for i in range(ROWS)
        ],
    )
    client.close()

    src = f"milvus-lite://{tmp_path / 'n.db'}?document_field=body"
    info = _inspect(src, "raw")
    metrics = _vector_info(info)
    assert metrics["emb"] == ("cosine", "the FLAT index on 'emb' (COSINE)")
    assert metrics["unit"][0] == "cosine" and "unit length" in metrics["unit"][1]
    assert metrics["raw"][1] == "unknown"
    assert info["has_document"] and _types(info) == {"year": "int64"}
    shown = cli("inspect", src, "-c", "raw")
    assert "vectors.raw.metric" in shown.stdout

    dump = f"dump://{tmp_path / 'dump'}"
    copied = _refused_until_mapped(
        src,
        dump,
        "raw",
        tmp_path,
        "vectors:\n  raw: {metric: l2}\n",
        "vector field 'raw'",
        "vectors: {raw: {metric: l2}}",
    )
    assert copied["rows_written"] == ROWS and copied["verified"], copied["checks"]
    with connect(dump) as conn:
        schema = conn.describe("raw")
        got = {v.name: (v.metric.value, v.metric_source) for v in schema.vectors}
        assert got["raw"] == ("l2", "the mapping") and got["unit"][0] == "cosine"
        batch = conn.fetch("raw", ["r7"])
        assert batch.column("document").to_pylist() == ["b7"]
        assert batch.column("raw").to_pylist() == [raw[7].tolist()]


# -- Qdrant (qdrant-client's local mode) ----------------------------------------------------
def _qdrant(path: Path) -> Any:
    require_module("qdrant_client")
    from qdrant_client import QdrantClient

    return QdrantClient(path=str(path))


def _langchain_payload(i: int) -> dict[str, Any]:
    return {
        "page_content": f"passage number {i}",
        "metadata": {"source": f"doc-{i % 7}.md", "page": i % 13, "tags": ["a", "b"][: i % 3]},
    }


def test_qdrant_langchain_hybrid_store_sparse_vectors_are_not_dropped_unsaid(
    tmp_path: Path,
) -> None:
    """LangChain's QdrantVectorStore in hybrid mode keeps a sparse vector per point beside
    the dense one; its layout was read without it, silently. Now NOT CARRIED in the layout,
    refused until the mapping leaves it behind by name."""
    require_module("langchain_qdrant")
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_qdrant import QdrantVectorStore, RetrievalMode, SparseEmbeddings, SparseVector

    class Words(SparseEmbeddings):  # type: ignore[misc]
        """A bag of words (hashed), as a BM25-style sparse embedding would be."""

        def embed_documents(self, texts: list[str]) -> list[SparseVector]:
            return [self.embed_query(t) for t in texts]

        def embed_query(self, text: str) -> SparseVector:
            idx = sorted({sum(map(ord, w)) % 1000 for w in text.split()})
            return SparseVector(indices=idx, values=[1.0] * len(idx))

    store = QdrantVectorStore.from_texts(
        [f"passage number {i}" for i in range(ROWS)],
        DeterministicFakeEmbedding(size=DIM),
        metadatas=[{"page": i % 13} for i in range(ROWS)],
        path=str(tmp_path / "q"),
        collection_name="hybrid",
        retrieval_mode=RetrievalMode.HYBRID,
        sparse_embedding=Words(),
    )
    store.client.close()
    src = f"qdrant+local://{tmp_path / 'q'}?layout=langchain"
    info = _inspect(src, "hybrid")
    assert "sparse vectors (hybrid search)" in info["uncarried"]["langchain-sparse"]
    copied = _refused_until_mapped(
        src,
        f"dump://{tmp_path / 'dump'}",
        "hybrid",
        tmp_path,
        "vectors:\n  langchain-sparse: {drop: true}\n",
        "vector field 'langchain-sparse' cannot be carried",
    )
    assert copied["rows_written"] == ROWS and copied["verified"], copied["checks"]
    # Without the layout both vectors travel. Reading either way crashed before: with a
    # sparse vector beside it, Qdrant returns the unnamed dense vector inside a dict.
    whole = f"dump://{tmp_path / 'whole'}"
    assert _ok("copy", f"qdrant+local://{tmp_path / 'q'}", whole, "-c", "hybrid")["verified"]
    with connect(whole) as conn:
        schema = conn.describe("hybrid")
        assert [s.name for s in schema.sparse] == ["langchain-sparse"]
        assert [v.dim for v in schema.vectors] == [DIM]


def test_qdrant_langchain_collection_with_one_unnamed_vector_reads_and_takes_records(
    tmp_path: Path,
) -> None:
    from qdrant_client import models

    client = _qdrant(tmp_path / "q")
    params = models.VectorParams(size=DIM, distance=models.Distance.EUCLID)
    client.create_collection("lc", vectors_config=params)
    vectors = _vectors()
    client.upsert(
        "lc",
        points=models.Batch(
            ids=list(range(ROWS)),
            vectors=vectors.tolist(),
            payloads=[_langchain_payload(i) for i in range(ROWS)],
        ),
    )
    client.close()
    app_client = _qdrant(tmp_path / "app")  # the application's new, empty collection
    app_client.create_collection("lc", vectors_config=params)
    app_client.close()

    src = f"qdrant+local://{tmp_path / 'q'}"
    info = _inspect(src, "lc")
    assert info["id_type"] == "int" and info["has_document"] and info["count"] == ROWS
    assert _types(info) == {"source": "string", "page": "int64", "tags": "list<string>"}
    assert _vector_info(info) == {
        "vector": ("l2", "the collection's vector params (the unnamed vector: distance Euclid)")
    }
    layout = info["engine_settings"]["qdrant.layout"]
    assert (layout["document"], layout["metadata"]) == ("page_content", "metadata")
    dump = _copy_and_verify(src, "lc", tmp_path)
    assert _records(dump, "lc", [3])[3] == {
        "document": "passage number 3",
        "metadata": {"source": "doc-3.md", "page": 3, "tags": []},
    }

    app = f"qdrant+local://{tmp_path / 'app'}?document_field=page_content&metadata_field=metadata"
    copied = _ok("copy", dump, app, "-c", "lc", "--if-exists", "reuse")
    assert copied["rows_written"] == ROWS and copied["verified"], copied["checks"]
    client = _qdrant(tmp_path / "app")
    try:
        points = client.retrieve("lc", ids=[0, 5, 299], with_vectors=True)
        assert client.get_collection("lc").config.params.vectors == params
    finally:
        client.close()
    assert {p.id for p in points} == {0, 5, 299}
    for p in points:
        assert p.payload == _langchain_payload(int(p.id))
        assert p.vector == pytest.approx(vectors[int(p.id)].tolist())
    report = _ok("verify", src, app, "-c", "lc", "--queries", "20", "--report-dir", str(tmp_path))
    assert report["passed"]

    # A collection whose vector cannot take the records is refused before the first write.
    other = _qdrant(tmp_path / "other")
    other.create_collection(
        "lc", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    )
    other.close()
    other_uri = f"qdrant+local://{tmp_path / 'other'}"
    refused = cli("copy", dump, other_uri, "-c", "lc", "--if-exists", "reuse")
    assert refused.returncode == 2 and "searched with cosine" in refused.stderr.replace("\n", " ")


def test_a_qdrant_multivector_is_refused_until_left_behind_not_read_as_one_vector(
    tmp_path: Path,
) -> None:
    """A ColBERT-style named multivector (several vectors per point, MAX_SIM) beside a
    dense one, as qdrant-client creates it: it was described as one 3-d vector and the
    copy died on a numpy error telling the user to fix the source."""
    from qdrant_client import models

    client = _qdrant(tmp_path / "q")
    client.create_collection(
        "mv",
        vectors_config={
            "dense": models.VectorParams(size=DIM, distance=models.Distance.EUCLID),
            "colbert": models.VectorParams(
                size=3,
                distance=models.Distance.COSINE,
                multivector_config=models.MultiVectorConfig(
                    comparator=models.MultiVectorComparator.MAX_SIM
                ),
            ),
        },
    )
    dense, tokens = _vectors(), _vectors(ROWS * 3, 3, seed=4)
    client.upsert(
        "mv",
        [
            models.PointStruct(
                id=i,
                vector={"dense": dense[i].tolist(), "colbert": tokens[i : i + 1 + i % 3].tolist()},
                payload={"title": f"t{i}"},
            )
            for i in range(ROWS)
        ],
    )
    client.close()

    src = f"qdrant+local://{tmp_path / 'q'}"
    info = _inspect(src, "mv")
    assert [v["name"] for v in info["vectors"]] == ["dense"]
    assert "several per point, scored by max_sim" in info["uncarried"]["colbert"]
    dump = f"dump://{tmp_path / 'dump'}"
    copied = _refused_until_mapped(
        src,
        dump,
        "mv",
        tmp_path,
        "vectors:\n  colbert: {drop: true}\n",
        "vector field 'colbert' cannot be carried: a Qdrant multivector",
        "vectors: {colbert: {drop: true}}",
    )
    assert copied["rows_written"] == ROWS and copied["verified"], copied["checks"]
    assert any("colbert: left behind (mapping)" in d for d in copied["decisions"])
    got = _records(dump, "mv", [7])
    assert got[7]["metadata"] == {"title": "t7"}


def test_qdrant_sparse_vectors_weighted_by_idf_keep_it_or_are_refused(tmp_path: Path) -> None:
    """Qdrant's BM25 setup: sparse term counts with ``modifier=IDF`` (the engine weights
    each term by its rarity when scoring). Into Qdrant the modifier is recreated; Milvus
    and pgvector would score the raw counts, so a copy there is refused unless forced."""
    from qdrant_client import models

    client = _qdrant(tmp_path / "q")
    client.create_collection(
        "bm25",
        vectors_config={"dense": models.VectorParams(size=DIM, distance=models.Distance.DOT)},
        sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
    )
    dense = _vectors()
    client.upsert(
        "bm25",
        [
            models.PointStruct(
                id=i,
                vector={
                    "dense": dense[i].tolist(),
                    "bm25": models.SparseVector(indices=[i % 7, 10 + i % 5], values=[1.0, 2.0]),
                },
                payload={"title": f"t{i}"},
            )
            for i in range(ROWS)
        ],
    )
    client.close()

    src = f"qdrant+local://{tmp_path / 'q'}"
    (sparse,) = _inspect(src, "bm25")["sparse"]
    assert (sparse["name"], sparse["modifier"]) == ("bm25", "idf")
    copied = _ok("copy", src, f"qdrant+local://{tmp_path / 'q2'}", "-c", "bm25")
    assert copied["verified"], copied["checks"]
    again = _qdrant(tmp_path / "q2")
    params = again.get_collection("bm25").config.params.sparse_vectors
    again.close()
    assert params is not None and params["bm25"].modifier == models.Modifier.IDF

    require_module("milvus_lite")
    milvus = f"milvus-lite://{tmp_path / 'm.db'}"
    forced = _refused_until_mapped(
        src,
        milvus,
        "bm25",
        tmp_path,
        "vectors:\n  bm25: {force_metric: true}\n",
        "sparse field 'bm25' is weighted by IDF when scored",
    )
    assert forced["verified"], forced["checks"]
    assert any("IDF weighting dropped (FORCED)" in d for d in forced["decisions"])


def test_qdrant_uuid_points_with_named_vectors_and_top_level_payload(tmp_path: Path) -> None:
    from qdrant_client import models

    client = _qdrant(tmp_path / "q")
    client.create_collection(
        "docs",
        vectors_config={
            "dense": models.VectorParams(size=DIM, distance=models.Distance.DOT),
            "title": models.VectorParams(size=4, distance=models.Distance.COSINE),
        },
    )
    ids = [str(uuid.UUID(int=(i + 1) * 7919)) for i in range(ROWS)]
    dense, title = _vectors(), _vectors(dim=4, seed=2)
    client.upsert(
        "docs",
        points=[
            models.PointStruct(
                id=ids[i],
                vector={"dense": dense[i].tolist(), "title": title[i].tolist()},
                payload={
                    "text": f"t{i}",
                    "document": f"d{i}",
                    "year": 2000 + i % 25,
                    "lang": ["en", "de", "fr"][i % 3],
                },
            )
            for i in range(ROWS)
        ],
    )
    client.close()

    src = f"qdrant+local://{tmp_path / 'q'}"
    refused = cli("inspect", src, "-c", "docs")
    assert refused.returncode == 2 and "document_field" in refused.stderr.replace("\n", " ")
    chosen = f"{src}?document_field=text"
    info = _inspect(chosen, "docs")
    assert info["id_type"] == "uuid" and info["has_document"]
    assert _types(info) == {"document": "string", "year": "int64", "lang": "string"}
    assert _vector_info(info) == {
        "dense": ("dot", "the collection's vector params (vector 'dense': distance Dot)"),
        "title": ("cosine", "the collection's vector params (vector 'title': distance Cosine)"),
    }
    dump = _copy_and_verify(chosen, "docs", tmp_path)
    assert _records(dump, "docs", [ids[4]])[ids[4]] == {
        "document": "t4",
        "metadata": {"document": "d4", "year": 2004, "lang": "de"},
    }


def test_qdrant_aliases_are_read_and_taken_by_a_qdrant_target_that_has_none_of_them(
    tmp_path: Path,
) -> None:
    """An application queries its collection by alias (how Qdrant apps switch collections
    without a redeploy). The alias was left behind, silently: now inspect lists it, and a
    Qdrant target gets it after the copy unless an alias of that name already names
    another collection there, which a copy never switches (said)."""
    from qdrant_client import models

    client = _qdrant(tmp_path / "q")
    params = models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    client.create_collection("docs_v1", vectors_config=params)
    client.upsert(
        "docs_v1",
        points=[models.PointStruct(id=i, vector=v.tolist()) for i, v in enumerate(_unit())],
    )
    alias = models.CreateAlias(collection_name="docs_v1", alias_name="prod")
    client.update_collection_aliases(
        change_aliases_operations=[models.CreateAliasOperation(create_alias=alias)]
    )
    client.close()
    src, dump = f"qdrant+local://{tmp_path / 'q'}", f"dump://{tmp_path / 'dump'}"
    assert _inspect(src, "docs_v1")["engine_settings"]["qdrant.aliases"] == ["prod"]
    assert _ok("copy", src, dump, "-c", "docs_v1")["verified"]

    taken = _ok("copy", dump, f"qdrant+local://{tmp_path / 'new'}", "-c", "docs_v1")
    assert taken["verified"]
    new = _qdrant(tmp_path / "new")
    assert {a.alias_name: a.collection_name for a in new.get_aliases().aliases} == {
        "prod": "docs_v1"
    }
    assert new.count("prod").count == ROWS  # the application's name reaches the copy
    new.close()

    busy = _qdrant(tmp_path / "busy")
    busy.create_collection("live", vectors_config=params)
    alias = models.CreateAlias(collection_name="live", alias_name="prod")
    busy.update_collection_aliases(
        change_aliases_operations=[models.CreateAliasOperation(create_alias=alias)]
    )
    busy.close()
    copied = cli("copy", dump, f"qdrant+local://{tmp_path / 'busy'}", "-c", "docs_v1", "--json")
    assert copied.returncode == 0, copied.stderr
    assert "alias 'prod' names 'live' here: left as it is" in copied.stderr.replace("\n", " ")
    busy = _qdrant(tmp_path / "busy")
    assert {a.alias_name: a.collection_name for a in busy.get_aliases().aliases} == {"prod": "live"}
    busy.close()


# -- Chroma (chromadb PersistentClient) ------------------------------------------------------
@pytest.mark.parametrize(
    ("how", "metric", "source"),
    [
        ("nothing", "l2", "the collection's configuration (space l2, Chroma's default)"),
        ("metadata", "dot", "the collection's metadata (hnsw:space ip)"),
        ("configuration", "cosine", "the collection's configuration (space cosine)"),
    ],
)
def test_chroma_collection_metric_from_its_space(
    tmp_path: Path, how: str, metric: str, source: str
) -> None:
    chromadb = require_module("chromadb")
    client = chromadb.PersistentClient(path=str(tmp_path / "c"))
    kwargs: dict[str, Any] = {
        "nothing": {},
        "metadata": {"metadata": {"hnsw:space": "ip"}},
        "configuration": {"configuration": {"hnsw": {"space": "cosine"}}},
    }[how]
    col = client.create_collection("notes", embedding_function=None, **kwargs)
    vectors = _vectors()
    col.add(
        ids=[f"n-{i}" for i in range(ROWS)],
        embeddings=vectors,
        documents=[f"note {i}" for i in range(ROWS)],
        metadatas=[
            {"source": f"s{i % 5}", "page": i % 9, "draft": i % 2 == 0} for i in range(ROWS)
        ],
    )
    del col, client

    src = f"chroma://{tmp_path / 'c'}"
    info = _inspect(src, "notes")
    assert info["id_type"] == "string" and info["has_document"]
    assert _types(info) == {"source": "string", "page": "int64", "draft": "bool"}
    assert _vector_info(info) == {"vector": (metric, source)}
    dump = _copy_and_verify(src, "notes", tmp_path)
    assert _records(dump, "notes", ["n-8"])["n-8"] == {
        "document": "note 8",
        "metadata": {"source": "s3", "page": 8, "draft": True},
    }
    with connect(dump) as conn:
        assert conn.describe("notes").vector.metric.value == metric


def _chroma_images(path: Path, metas: list[dict[str, Any]] | None = None) -> None:
    """A multimodal collection as chromadb's client makes it: each record's image is a URI
    (what the collection's data loader reads), no document."""
    chromadb = require_module("chromadb")
    col = chromadb.PersistentClient(path=str(path)).create_collection(
        "images", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    col.add(
        ids=[f"img-{i}" for i in range(ROWS)],
        embeddings=_unit(),
        uris=[f"s3://photos/{i}.jpg" if i % 10 else None for i in range(ROWS)],
        metadatas=metas or [{"album": f"a{i % 3}"} for i in range(ROWS)],
    )


def test_chroma_record_uris_travel_as_a_field_and_come_back_as_uris(tmp_path: Path) -> None:
    """A Chroma record's URI (a multimodal collection's image) was left behind, silently,
    and the copy verified: it travels as the metadata field ``uri``, is written back as
    the record's URI by a Chroma target, and no filter is asked of it there."""
    _chroma_images(tmp_path / "c")
    src = f"chroma://{tmp_path / 'c'}"
    info = _inspect(src, "images")
    assert _types(info) == {"album": "string", "uri": "string"}
    assert info["engine_settings"]["chroma.uris"] == "uri"
    dump = _copy_and_verify(src, "images", tmp_path)
    got = _records(dump, "images", ["img-7", "img-10"])
    assert got["img-7"]["metadata"] == {"album": "a1", "uri": "s3://photos/7.jpg"}
    assert got["img-10"]["metadata"] == {"album": "a1"}  # a record without a URI

    back = f"chroma://{tmp_path / 'back'}"
    assert _ok("copy", dump, back, "-c", "images")["verified"]
    chromadb = require_module("chromadb")
    col = chromadb.PersistentClient(path=str(tmp_path / "back")).get_collection("images")
    stored = col.get(ids=["img-7"], include=["uris", "metadatas"])
    assert stored["uris"] == ["s3://photos/7.jpg"] and stored["metadatas"] == [{"album": "a1"}]
    report = _ok("verify", src, back, "-c", "images", "--queries", "20",
                 "--report-dir", str(tmp_path / "r"))  # fmt: skip
    assert report["passed"] and report["parity"]["equal"]
    assert not any("uri" in g for g in report["queries"]["groups"])
    with connect(back) as conn, pytest.raises(ConfigError, match="not searchable"):
        conn.count("images", {"uri": "s3://photos/7.jpg"})


def test_chroma_uris_beside_a_uri_metadata_key_need_a_field_of_their_own(tmp_path: Path) -> None:
    _chroma_images(tmp_path / "c", [{"uri": f"page-{i}"} for i in range(ROWS)])
    src = f"chroma://{tmp_path / 'c'}"
    refused = cli("inspect", src, "-c", "images")
    assert refused.returncode == 2 and "?uri_field=NAME" in refused.stderr.replace("\n", " ")
    named = f"{src}?uri_field=image"
    assert _types(_inspect(named, "images")) == {"uri": "string", "image": "string"}
    dump = _copy_and_verify(named, "images", tmp_path)
    got = _records(dump, "images", ["img-3"])["img-3"]["metadata"]
    assert got == {"uri": "page-3", "image": "s3://photos/3.jpg"}


def test_a_chroma_collection_with_an_openai_embedding_function_copies_without_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chromadb 1.x stores the collection's embedding function (here OpenAI's, naming the
    environment variable of its key). Reading the configuration through chromadb built
    that function, so without the application's OpenAI key inspect and copy failed, with
    a hint to fix the records. Stored embeddings need no embedding function."""
    chromadb = require_module("chromadb")
    from chromadb.utils.embedding_functions import OpenAIEmbeddingFunction

    monkeypatch.setenv("CHROMA_OPENAI_API_KEY", "sk-only-the-application-has-it")
    client = chromadb.PersistentClient(path=str(tmp_path / "c"))
    ef = OpenAIEmbeddingFunction(model_name="text-embedding-3-small", dimensions=DIM)
    col = client.create_collection(
        "notes", embedding_function=ef, configuration={"hnsw": {"space": "cosine"}}
    )
    col.add(
        ids=[f"n-{i}" for i in range(ROWS)],
        embeddings=_vectors(),
        documents=[f"note {i}" for i in range(ROWS)],
        metadatas=[{"source": f"s{i % 5}"} for i in range(ROWS)],
    )
    del col, client
    monkeypatch.delenv("CHROMA_OPENAI_API_KEY")

    src = f"chroma://{tmp_path / 'c'}"
    info = _inspect(src, "notes")
    assert info["engine_settings"]["embedding_function"] == "openai (text-embedding-3-small)"
    assert _vector_info(info)["vector"][0] == "cosine"
    dump = _copy_and_verify(src, "notes", tmp_path)

    # Into Chroma again (through the dump, in this process): the target's configuration
    # names the same function, so the application embeds its query texts as before.
    from chromadb.utils.embedding_functions import known_embedding_functions

    from vecmigrate.api import copy

    report = copy(dump, f"chroma://{tmp_path / 'c2'}", "notes")
    assert all(c.passed for c in report.checks), report.checks
    assert known_embedding_functions["openai"] is OpenAIEmbeddingFunction  # put back
    stored = chromadb.PersistentClient(path=str(tmp_path / "c2")).get_collection("notes")
    function = stored.configuration_json["embedding_function"]
    assert function["name"] == "openai" and function["type"] == "known"
    assert function["config"]["model_name"] == "text-embedding-3-small"
    assert function["config"]["api_key_env_var"] == "CHROMA_OPENAI_API_KEY"
    monkeypatch.setenv("CHROMA_OPENAI_API_KEY", "sk-only-the-application-has-it")
    app = chromadb.PersistentClient(path=str(tmp_path / "c2")).get_collection("notes")
    assert isinstance(app.configuration.get("embedding_function"), OpenAIEmbeddingFunction)
    assert app.count() == ROWS


def test_an_empty_chroma_collection_does_not_stop_ls_or_inspect_of_the_others(
    tmp_path: Path,
) -> None:
    """An application creates its collection at start-up, before any record: Chroma then
    knows no dimension. ``ls`` and ``inspect`` of the whole store failed on it; now ``ls``
    counts it and ``inspect`` describes the others and lists it with why (exit 1)."""
    chromadb = require_module("chromadb")
    client = chromadb.PersistentClient(path=str(tmp_path / "c"))
    client.create_collection("fresh")
    client.create_collection("notes", embedding_function=None).add(
        ids=[f"n{i}" for i in range(ROWS)], embeddings=_vectors(), documents=["t"] * ROWS
    )
    del client
    src = f"chroma://{tmp_path / 'c'}"
    listed = _ok("ls", src)
    assert {c["name"]: c["count"] for c in listed["collections"]} == {"fresh": 0, "notes": ROWS}
    ran = cli("inspect", src, "--json")
    assert ran.returncode == 1, ran.stderr
    found = {c["name"]: c for c in ran.json()["collections"]}
    assert found["notes"]["count"] == ROWS and "problem" not in found["notes"]
    assert "is empty; its dimension is unknown" in found["fresh"]["problem"]
    assert "nothing to copy" in found["fresh"]["hint"] and found["fresh"]["count"] == 0
    shown = cli("inspect", src)
    assert "fresh  (0 records): cannot be described" in shown.stdout and shown.returncode == 1
    one = cli("inspect", src, "-c", "fresh")  # asked for by name: the error itself
    assert one.returncode == 2 and "is empty" in one.stderr
    # Every collection exported: refused before anything is written, naming the option.
    whole = cli("export", src, "-o", str(tmp_path / "out"))
    assert whole.returncode == 2 and "--exclude fresh" in whole.stderr, whole.stderr
    assert not (tmp_path / "out").exists()
    assert _ok("export", src, "-o", str(tmp_path / "out"), "--exclude", "fresh")["ok"]


# -- Redis Stack (FT.CREATE with redis-py) ---------------------------------------------------
def _raw_redis(redis_server: Any) -> Any:
    return require_module("redis").Redis(host=redis_server.host, port=redis_server.port)


def test_redis_hashes_with_the_id_in_the_key(redis_server: Any, tmp_path: Path) -> None:
    raw = _raw_redis(redis_server)
    tag = uuid.uuid4().hex[:6]
    name, prefix = f"lc_{tag}", f"doc:lc_{tag}"  # keys "<prefix>:<id>", as RedisVL writes them
    raw.execute_command(
        "FT.CREATE", name, "ON", "HASH", "PREFIX", 1, prefix, "SCHEMA",
        "content", "TEXT", "source", "TAG", "CASESENSITIVE", "page", "NUMERIC",
        "content_vector", "VECTOR", "FLAT", 6, "TYPE", "FLOAT32", "DIM", DIM,
        "DISTANCE_METRIC", "L2",
    )  # fmt: skip
    vectors = _vectors()
    for i in range(ROWS):
        raw.hset(
            f"{prefix}:{uuid.UUID(int=i + 1).hex}",
            mapping={"content": f"passage {i}", "source": f"doc-{i % 7}.md", "page": i % 13,
                     "content_vector": vectors[i].tobytes()},
        )  # fmt: skip
    src = redis_server.uri
    try:
        info = _inspect(src, name)
        assert info["count"] == ROWS and info["has_document"] and info["id_type"] == "string"
        assert _vector_info(info) == {
            "content_vector": ("l2", "the index's FLAT VECTOR field (DISTANCE_METRIC L2)")
        }
        assert _types(info) == {"source": "string", "page": "float64"}
        dump = _copy_and_verify(src, name, tmp_path)
        rid = uuid.UUID(int=6).hex
        assert _records(dump, name, [rid])[rid] == {
            "document": "passage 5",
            "metadata": {"source": "doc-5.md", "page": 5.0},
        }
    finally:
        raw.execute_command("FT.DROPINDEX", name, "DD")


def test_redis_json_documents_with_an_id_field_and_named_text_and_vector(
    redis_server: Any, tmp_path: Path
) -> None:
    raw = _raw_redis(redis_server)
    tag = uuid.uuid4().hex[:6]
    name, prefix = f"items_{tag}", f"item_{tag}:"
    raw.execute_command(
        "FT.CREATE", name, "ON", "JSON", "PREFIX", 1, prefix, "SCHEMA",
        "$.doc_id", "AS", "doc_id", "TAG", "CASESENSITIVE",
        "$.passage", "AS", "passage", "TEXT", "$.category", "AS", "category", "TAG",
        "CASESENSITIVE", "$.rank", "AS", "rank", "NUMERIC",
        "$.emb", "AS", "emb", "VECTOR", "HNSW", 6, "TYPE", "FLOAT32", "DIM", DIM,
        "DISTANCE_METRIC", "IP",
        "$.title_emb", "AS", "title_emb", "VECTOR", "FLAT", 6, "TYPE", "FLOAT32", "DIM", 4,
        "DISTANCE_METRIC", "COSINE",
    )  # fmt: skip
    vectors, titles = _vectors(), _vectors(dim=4, seed=9)
    for i in range(ROWS):
        doc = {
            "doc_id": f"d-{i}", "passage": f"text {i}", "category": "abc"[i % 3], "rank": i,
            "emb": vectors[i].tolist(), "title_emb": titles[i].tolist(),
        }  # fmt: skip
        raw.execute_command("JSON.SET", f"{prefix}{uuid.uuid4().hex}", "$", json.dumps(doc))
    src = f"{redis_server.uri}?id_field=doc_id&document_field=passage&vector_field=emb"
    try:
        info = _inspect(src, name)
        assert info["count"] == ROWS and info["has_document"] and info["id_type"] == "string"
        assert _vector_info(info) == {
            "emb": ("dot", "the index's HNSW VECTOR field (DISTANCE_METRIC IP)")
        }
        assert _types(info) == {"category": "string", "rank": "int64"}
        assert info["engine_settings"]["title_emb.skipped"]
        dump = _copy_and_verify(src, name, tmp_path)
        assert _records(dump, name, ["d-7"])["d-7"] == {
            "document": "text 7",
            "metadata": {"category": "b", "rank": 7},
        }
        with connect(src) as conn:
            assert conn.fetch(name, ["d-9", "nope"]).column("id").to_pylist() == ["d-9"]
            got, _ = conn.search(name, vectors[11:12], 1, filter={"category": "c"})
            assert got[0][0].startswith("d-")
    finally:
        raw.execute_command("FT.DROPINDEX", name, "DD")


def test_milvus_application_collection_as_a_target(tmp_path: Path) -> None:
    """An application's own Milvus collection (its key, vector and text field names, INT32
    and FLOAT fields) taken with --if-exists reuse: refused before the first write, naming
    the field and the mapping that fits it; with that mapping the records land in its
    fields, typed as it declares them."""
    from pymilvus import DataType

    from tests.e2e.helpers import make_dump

    make_dump(tmp_path / "dump", 40, dim=DIM)  # ids, vector, document, genre/year/score/...
    client = _milvus(tmp_path / "app.db")
    ms = client.create_schema(auto_id=False)
    ms.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
    ms.add_field("emb", DataType.FLOAT_VECTOR, dim=DIM)
    ms.add_field("text", DataType.VARCHAR, max_length=512)
    ms.add_field("year", DataType.INT32)
    ms.add_field("score", DataType.FLOAT)
    index = client.prepare_index_params()
    index.add_index("emb", index_type="FLAT", metric_type="COSINE")
    client.create_collection("docs", schema=ms, index_params=index)
    target = f"milvus-lite://{tmp_path / 'app.db'}"
    source = f"dump://{tmp_path / 'dump'}"
    refused = cli("copy", source, target, "-c", "docs", "--if-exists", "reuse")
    assert refused.returncode == 2, refused.stderr
    assert "no vector field 'vector'; it has 'emb'" in refused.stderr
    assert "vectors: {vector: {rename: emb}}" in refused.stderr
    assert (
        "no field for metadata 'genre'" in refused.stderr
        and "nothing was written" in refused.stderr
    )
    assert client.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 0
    (tmp_path / "map.yaml").write_text(
        "vectors:\n  vector:\n    rename: emb\n"
        "fields:\n  genre: {drop: true}\n  flag: {drop: true}\n  tags: {drop: true}\n"
    )
    ran = cli(
        "copy", source, target, "-c", "docs", "--if-exists", "reuse", "--map",
        str(tmp_path / "map.yaml"),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    rows = client.query("docs", filter="", output_fields=["pk", "text", "year", "score"], limit=100)
    assert len(rows) == 40
    assert all(isinstance(r["year"], int) and isinstance(r["score"], float) for r in rows)
    assert all(r["text"] for r in rows)
