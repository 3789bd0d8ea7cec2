"""Framework layouts on pgvector (issue #14, items 4-6), accepted through the frameworks
themselves: stores written by LangChain and LlamaIndex (``tests/frameworks/kit.py``) are
migrated with ``vecmigrate copy ... ?layout=`` and then queried through the same
framework's own retriever on the target, which must return the documents and metadata
the source's retriever returns, for 50 queries with one metadata equality filter each.
``vecmigrate verify`` between source and target passes in every run.

* (a) LangChain Chroma -> LangChain PGVector (``layout=langchain``);
* (b) LlamaIndex PGVectorStore -> LlamaIndex PGVectorStore in another database;
* (c) LangChain PGVector -> LlamaIndex PGVectorStore in the same database.

Plus the record rules of ``connectors/frameworks.py`` against LlamaIndex's own
``node_to_metadata_dict`` and the refusals. LangChain's PGVector here is
langchain-community's; ``langchain_postgres`` (its own tables, which vecmigrate creates in
an empty target) is tested through the side venv in test_layouts_langchain_postgres.py.
"""

from __future__ import annotations

import json
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


def _require(*kinds: str) -> None:
    require_module("psycopg")
    compare.require_kinds(*kinds)


@pytest.fixture
def database(postgres: Any) -> Iterator[Callable[[], str]]:
    """Fresh databases (with the vector extension) on the session's PostgreSQL."""
    yield from compare.fresh_databases(postgres.dsn, "fw_")


def _queries(store: kit.Store) -> list[compare.Query]:
    """50 texts of the parquet file (half of them in the store, half not: rows 150, 152, ...
    248), each with one metadata equality filter on a value some stored record has."""
    return compare.filtered_queries(store, N, QUERIES, K, first=N - QUERIES, step=2)


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    return compare.text_vectors()


def _assert_retrievers_agree(
    source: kit.Store, target: kit.Store, vectors: dict[str, np.ndarray]
) -> None:
    queries = _queries(source)
    before = kit.search_many(source, queries)
    after = kit.search_many(target, queries)
    compare.assert_hits_agree(queries, before, after, vectors, QUERIES * 3)


def _copy_and_verify(source: str, target: str, collection: str, *extra: str) -> dict[str, Any]:
    return compare.copy_and_verify(source, target, ["-c", collection, *extra])


def _chroma_source(store: kit.Store) -> tuple[str, str]:
    """The source URI in LangChain's layout if the Chroma connector takes ``layout=``
    (LangChain's Chroma layout is Chroma's own), else the plain URI; and which it was."""
    try:
        connect(store.uri()).close()
    except ConfigError as exc:
        if "layout" not in str(exc):
            raise
        return store.uri(layout=False), "plain"
    return store.uri(), "layout"


def _rows(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


# --------------------------------------------------------------------------- acceptance


def test_a_langchain_chroma_to_langchain_pgvector(
    tmp_path: Path,
    database: Callable[[], str],
    vectors: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _require("langchain-chroma", "langchain-pgvector")
    monkeypatch.chdir(tmp_path)
    source = kit.build_langchain_chroma(tmp_path / "chroma", n=N)
    target = source.retarget(database(), kind="langchain-pgvector")
    source_uri, _ = _chroma_source(source)
    # An application on langchain-community opens its store first: the class creates its
    # tables and the empty collection (vecmigrate creates langchain-postgres' variant,
    # which this class cannot read: tests/frameworks/test_layouts_langchain_postgres.py).
    with kit.open_store(target):
        pass

    _copy_and_verify(source_uri, target.uri(), "langchain")

    # LangChain's tables, as langchain-community's PGVector reads them.
    (coll,) = _rows(
        target.location, "SELECT uuid FROM langchain_pg_collection WHERE name = 'langchain'"
    )
    ids = _rows(
        target.location,
        "SELECT custom_id, document, cmetadata FROM langchain_pg_embedding "
        "WHERE collection_id = %s ORDER BY custom_id",
        (coll[0],),
    )
    assert [r[0] for r in ids] == sorted(source.ids)
    by_id = {r.id: r for r in source.rows}
    assert all(doc == by_id[i].document for i, doc, _ in ids)
    assert all(md == source.metadata(by_id[i]) for i, _, md in ids)

    # Chroma searched l2 (its default space): the copy says so, and LangChain's cosine
    # ranks these unit vectors alike.
    with connect(target.uri()) as conn:
        v = conn.describe("langchain").vector
    assert (v.name, v.metric) == ("vector", Metric.L2)
    assert "cosine" in (v.metric_source or "")

    _assert_retrievers_agree(source, target, vectors)


def test_b_llamaindex_pgvector_to_another_database(
    tmp_path: Path,
    database: Callable[[], str],
    vectors: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _require("llamaindex-pgvector")
    monkeypatch.chdir(tmp_path)
    source = kit.build_llamaindex_pgvector(database(), n=N)
    target = source.retarget(database())

    with connect(source.uri()) as conn:
        schema = conn.describe("llamaindex")
        assert conn.list_collections() == ["llamaindex"]
    v = schema.vector
    assert (v.metric, v.metric_source) == fw.search_metric("llamaindex", "pgvector")
    names = {m.name for m in schema.metadata}
    assert names == {*kit.texts()[0].metadata, fw.REF_DOC_ID, fw.NODE_KEY}

    _copy_and_verify(source.uri(), target.uri(), "llamaindex")

    # The rows LlamaIndex reads: the same node ids, text and metadata_, _node_content
    # included, byte for byte.
    query = "SELECT node_id, text, metadata_::text FROM data_llamaindex ORDER BY node_id"
    before, after = _rows(source.location, query), _rows(target.location, query)
    assert len(after) == N
    assert [(i, t, json.loads(m)) for i, t, m in after] == [
        (i, t, json.loads(m)) for i, t, m in before
    ]
    assert [json.loads(m)["_node_content"] for *_, m in after] == [
        json.loads(m)["_node_content"] for *_, m in before
    ]

    _assert_retrievers_agree(source, target, vectors)


def test_c_langchain_pgvector_to_llamaindex_on_the_same_database(
    tmp_path: Path,
    database: Callable[[], str],
    vectors: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _require("langchain-pgvector", "llamaindex-pgvector")
    monkeypatch.chdir(tmp_path)
    source = kit.build_langchain_pgvector(database(), n=N)
    target = source.retarget(source.location, "docs", kind="llamaindex-pgvector")

    with connect(source.uri()) as conn:
        v = conn.describe("langchain").vector
    assert (v.metric, v.metric_source) == fw.search_metric("langchain", "pgvector")

    _copy_and_verify(source.uri(), target.uri(), "langchain", "--target-collection", "docs")

    rows = _rows(target.location, "SELECT node_id, metadata_ FROM data_docs ORDER BY node_id")
    assert [r[0] for r in rows] == sorted(source.ids)
    node = json.loads(rows[0][1]["_node_content"])
    assert (node["id_"], node["text"], node["relationships"]) == (rows[0][0], "", {})
    assert rows[0][1]["ref_doc_id"] == "None"  # a LangChain document has no source node

    _assert_retrievers_agree(source, target, vectors)


# --------------------------------------------------------------------------- the rules


def test_llamaindex_records_round_trip_exactly() -> None:
    """Read then write gives what LlamaIndex itself wrote, for nodes with and without a
    source, with non-default fields and of another node class, text in the node or not."""
    require_module("llama_index.core")
    from llama_index.core.schema import IndexNode, NodeRelationship, RelatedNodeInfo, TextNode
    from llama_index.core.vector_stores.utils import node_to_metadata_dict

    source = RelatedNodeInfo(node_id="doc-7", node_type="4", metadata={"page": 2}, hash="h")
    nodes = [
        TextNode(id_="a", text="plain", metadata={"k": 1, "tags": ["x", "y"]}),
        TextNode(
            id_="b",
            text="sourced",
            metadata={"k": "v"},
            excluded_llm_metadata_keys=["k"],
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc-1")},
        ),
        TextNode(
            id_="c",
            text="chunk",
            metadata={},
            start_char_idx=10,
            end_char_idx=15,
            relationships={
                NodeRelationship.SOURCE: source,
                NodeRelationship.NEXT: RelatedNodeInfo(node_id="d"),
            },
        ),
        IndexNode(id_="i", text="index node", index_id="other", metadata={"k": 2.5}),  # type: ignore[call-arg]
    ]
    for node in nodes:
        for text_in_node in (False, True):
            stored = node_to_metadata_dict(node, remove_text=not text_in_node)
            document, metadata = fw.llamaindex_read(stored, None if text_in_node else node.text)
            assert document == node.text
            assert {k: metadata[k] for k in node.metadata} == node.metadata
            assert not set(metadata) & {"_node_content", "_node_type", "doc_id", "document_id"}
            assert metadata.get(fw.REF_DOC_ID) == node.ref_doc_id
            text, written = fw.llamaindex_write(
                node.node_id, document, metadata, text_in_node=text_in_node
            )
            assert text == node.text
            assert written == stored, node.node_id
    # LangChain keeps metadata as it is (a mapping drops what the application should not see).
    assert fw.langchain_write("t", {"a": 1}) == ("t", {"a": 1})
    assert fw.flat_problem({"a": 1, "b": None, "c": True}) is None
    assert "tags" in (fw.flat_problem({"tags": ["a"]}) or "")


def test_layout_parameter_is_checked(postgres: Any) -> None:
    with pytest.raises(ConfigError, match="layout= takes langchain, llamaindex"):
        connect(postgres.uri() + "?layout=nosuch")
    with pytest.raises(ConfigError, match="id_field"):
        connect(postgres.uri() + "?layout=langchain&id_field=pk")


def test_non_unit_vectors_under_another_metric_are_refused(database: Callable[[], str]) -> None:
    """An l2 collection written into a layout the framework searches with cosine: unit
    vectors go in (same ranking), others are refused record by record."""
    url = database()
    uri = "pgvector://" + url.split("://", 1)[1] + "?layout=llamaindex"
    schema = CollectionSchema(
        name="Vectors", vectors=(VectorField(name="emb", dim=3, metric=Metric.L2),)
    )
    with connect(uri) as conn:
        conn.create(schema)
        unit = build_batch(schema, ["a"], {"emb": np.array([[0.6, 0.8, 0.0]], np.float32)})
        conn.upsert("Vectors", unit)
        long = build_batch(schema, ["b"], {"emb": np.array([[3.0, 4.0, 0.0]], np.float32)})
        with pytest.raises(DataError, match="not unit length"):
            conn.upsert("Vectors", long)
    with connect(uri) as conn:  # described again from the tables and vecmigrate's note
        assert conn.list_collections() == ["vectors"]
        got = conn.describe("vectors")
        assert (got.vector.name, got.vector.metric, got.has_document) == ("emb", Metric.L2, False)
        assert conn.fetch("vectors", ["a"]).column("id").to_pylist() == ["a"]
        with pytest.raises(ConfigError, match="already exists"):
            conn.create(schema.replace(name="vectors"))
        # LlamaIndex keeps a text per node: one record without a document is refused.
        texts = schema.replace(name="texts", has_document=True)
        conn.create(texts)
        vec = np.array([[0.6, 0.8, 0.0]] * 2, np.float32)
        with pytest.raises(DataError, match="no document"):
            conn.upsert(
                "texts", build_batch(texts, ["a", "b"], {"emb": vec}, documents=["x", None])
            )
