"""Framework layouts on LanceDB and Milvus (issue #14, items 4-5), accepted through the
frameworks themselves: stores written by LangChain and LlamaIndex
(``tests/frameworks/kit.py``) are migrated with ``vecmigrate copy ... ?layout=`` and then
queried through the same framework's own retriever on the target, which must return the
documents and metadata the source's retriever returns (ties within 1e-5 compared as sets),
for 30 queries with one metadata equality filter each. ``vecmigrate verify`` between source
and target passes in every run.

* (a) LangChain LanceDB -> LangChain LanceDB at another path;
* (b) LlamaIndex LanceDB -> LlamaIndex Milvus (milvus-lite);
* (c) LangChain Milvus -> LangChain Milvus in another milvus-lite file;
* (d) LlamaIndex Milvus -> LlamaIndex LanceDB;
* (e) LangChain LanceDB -> LlamaIndex LanceDB in the same database.

Plus what the writers record and refuse: a metric the framework does not search with,
non-unit vectors under it, ids and documents the framework has no place for, a missing
value in LangChain's one-field-per-key Milvus collection, an unknown layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import require_module
from tests.frameworks import compare, kit
from vecmigrate.connectors import connect
from vecmigrate.connectors import frameworks as fw
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import CollectionSchema, IdType, MetadataField, Metric, VectorField
from vecmigrate.records import build_batch

N = 150  # texts in each store
QUERIES = 30
K = 5


# --------------------------------------------------------------------------- helpers


def _queries(store: kit.Store) -> list[compare.Query]:
    """30 texts of the parquet file (half of them in the store, half not: rows 120, 122, ...
    178), each with one metadata equality filter on a value some stored record has."""
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


def _copy_and_verify(source: kit.Store, target: kit.Store) -> dict[str, Any]:
    names = ["-c", source.collection]
    if target.collection != source.collection:
        names += ["--target-collection", target.collection]
    return compare.copy_and_verify(source.uri(), target.uri(), names)


def _lance_rows(store: kit.Store) -> list[dict[str, Any]]:
    import lancedb

    table = lancedb.connect(store.location).open_table(store.collection)
    rows: list[dict[str, Any]] = table.to_arrow().drop_columns(["vector"]).to_pylist()
    return sorted(rows, key=lambda r: str(r["id"]))


def _milvus(store: kit.Store) -> Any:
    from pymilvus import MilvusClient

    return MilvusClient(store.location)


def _milvus_rows(store: kit.Store) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(collection description, vector index description, rows without vectors)."""
    client = _milvus(store)
    try:
        info = client.describe_collection(store.collection)
        (index,) = client.list_indexes(store.collection)
        desc = client.describe_index(store.collection, index)
        rows = client.query(store.collection, filter="", output_fields=["*"], limit=10_000)
    finally:
        client.close()
    vector = next(f["name"] for f in info["fields"] if f["type"] == 101)  # FLOAT_VECTOR
    key = next(f["name"] for f in info["fields"] if f.get("is_primary"))
    out = [{k: v for k, v in dict(r).items() if k != vector} for r in rows]
    return info, desc, sorted(out, key=lambda r: str(r[key]))


def _fields(info: dict[str, Any]) -> list[tuple[str, int]]:
    return [(f["name"], int(f["type"])) for f in info["fields"]]


# --------------------------------------------------------------------------- acceptance


def test_a_langchain_lancedb_to_another_path(
    tmp_path: Path, vectors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    compare.require_kinds("langchain-lancedb")
    monkeypatch.chdir(tmp_path)
    source = kit.build_langchain_lancedb(tmp_path / "src", n=N)
    target = source.retarget(tmp_path / "dst")

    with connect(source.uri()) as conn:
        schema = conn.describe("vectorstore")
    assert (schema.vector.name, schema.vector.metric) == (fw.VECTOR, Metric.L2)
    assert schema.vector.metric_source == fw.search_metric("langchain", "lancedb")[1]
    assert {m.name: m.type for m in schema.metadata}["tags"] == "list<string>"

    _copy_and_verify(source, target)

    # The table LangChain reads: same columns and types, same rows; nothing noted.
    import lancedb

    before = lancedb.connect(source.location).open_table("vectorstore").schema
    after = lancedb.connect(target.location).open_table("vectorstore").schema
    assert after.remove_metadata() == before.remove_metadata()
    assert not (after.metadata or {})
    assert _lance_rows(target) == _lance_rows(source)

    _assert_retrievers_agree(source, target, vectors)


def test_b_llamaindex_lancedb_to_llamaindex_milvus(
    tmp_path: Path, vectors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    compare.require_kinds("llamaindex-lancedb", "llamaindex-milvus")
    monkeypatch.chdir(tmp_path)
    source = kit.build_llamaindex_lancedb(tmp_path / "lance", n=N)
    target = source.retarget(tmp_path / "milvus.db", "llamacollection", kind="llamaindex-milvus")

    with connect(source.uri()) as conn:
        schema = conn.describe("vectors")
    names = {m.name for m in schema.metadata}
    assert names == {*kit.texts()[0].metadata, fw.REF_DOC_ID, fw.NODE_KEY}

    _copy_and_verify(source, target)

    # LlamaIndex's collection: its fields, dynamic keys, and an index with the source's
    # metric (l2: both retrievers search with the index's metric).
    info, index, rows = _milvus_rows(target)
    assert _fields(info) == [("id", 21), ("doc_id", 21), ("text", 21), ("embedding", 101)]
    assert info["enable_dynamic_field"] and not info["auto_id"]
    assert (index["index_type"], index["metric_type"]) == ("FLAT", "L2")
    by_id = {r["id"]: r for r in _lance_rows(source)}
    assert [r["id"] for r in rows] == sorted(source.ids)
    for row in rows:
        lance = by_id[row["id"]]
        node = json.loads(lance["metadata"]["_node_content"])
        assert json.loads(row["_node_content"]) == {**node, "text": ""}
        assert (row["text"], row["doc_id"]) == (lance["text"], lance["doc_id"])
        top = {k: v for k, v in lance["metadata"].items() if k not in ("_node_content", "doc_id")}
        assert {k: row[k] for k in top} == top

    _assert_retrievers_agree(source, target, vectors)


def test_c_langchain_milvus_to_another_file(
    tmp_path: Path, vectors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    compare.require_kinds("langchain-milvus")
    monkeypatch.chdir(tmp_path)
    source = kit.build_langchain_milvus(tmp_path / "a.db", n=N)
    target = source.retarget(tmp_path / "b.db")

    _copy_and_verify(source, target)

    info_a, _, rows_a = _milvus_rows(source)
    info_b, index_b, rows_b = _milvus_rows(target)
    assert _fields(info_b) == _fields(info_a)
    assert (info_b["enable_dynamic_field"], info_b["auto_id"]) == (False, False)
    assert (index_b["index_type"], index_b["metric_type"]) == ("AUTOINDEX", "L2")
    assert rows_b == rows_a

    _assert_retrievers_agree(source, target, vectors)


def test_d_llamaindex_milvus_to_llamaindex_lancedb(
    tmp_path: Path, vectors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    compare.require_kinds("llamaindex-milvus", "llamaindex-lancedb")
    monkeypatch.chdir(tmp_path)
    source = kit.build_llamaindex_milvus(tmp_path / "milvus.db", n=N)
    target = source.retarget(tmp_path / "lance", "vectors", kind="llamaindex-lancedb")

    with connect(source.uri()) as conn:
        v = conn.describe("llamacollection").vector
    assert (v.name, v.metric) == (fw.VECTOR, Metric.DOT)

    _copy_and_verify(source, target)

    # LlamaIndex's table: the node (its text in it here), the keys beside it, lists kept
    # (LlamaIndex's own add refuses them on LanceDB; its retriever returns them); the
    # source's IP noted, LanceDB's l2 ranking these unit vectors alike.
    import lancedb

    table = lancedb.connect(target.location).open_table("vectors")
    assert table.schema.names == ["id", "doc_id", "vector", "text", "metadata"]
    struct = table.schema.field("metadata").type
    assert struct.field("tags").type.equals(pa.list_(pa.string()))
    assert json.loads(table.schema.metadata[b"vecmigrate.framework"]) == {"metric": "dot"}
    _, _, milvus_rows = _milvus_rows(source)
    by_id = {r["id"]: r for r in milvus_rows}
    rows = _lance_rows(target)
    assert [r["id"] for r in rows] == sorted(source.ids)
    for row in rows:
        src = by_id[row["id"]]
        node = json.loads(src["_node_content"])
        assert json.loads(row["metadata"]["_node_content"]) == {**node, "text": src["text"]}
        assert (row["text"], row["doc_id"]) == (src["text"], src["doc_id"])
    with connect(target.uri()) as conn:
        got = conn.describe("vectors").vector
    assert (got.name, got.metric) == (fw.VECTOR, Metric.DOT)
    assert "l2" in (got.metric_source or "")

    _assert_retrievers_agree(source, target, vectors)


def test_e_langchain_lancedb_to_llamaindex_in_the_same_database(
    tmp_path: Path, vectors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """LangChain -> LlamaIndex on one engine: the documents become nodes without a source
    (``ref_doc_id`` "None", doc_id null), whose metadata is the LangChain metadata."""
    compare.require_kinds("langchain-lancedb", "llamaindex-lancedb")
    monkeypatch.chdir(tmp_path)
    source = kit.build_langchain_lancedb(tmp_path / "lance", n=N)
    target = source.retarget(source.location, "nodes", kind="llamaindex-lancedb")

    _copy_and_verify(source, target)

    rows = _lance_rows(target)
    assert [r["id"] for r in rows] == sorted(source.ids)
    node = json.loads(rows[0]["metadata"]["_node_content"])
    assert (node["id_"], node["relationships"], node["text"]) == (
        rows[0]["id"],
        {},
        rows[0]["text"],
    )
    assert (rows[0]["doc_id"], rows[0]["metadata"]["ref_doc_id"]) == (None, "None")

    _assert_retrievers_agree(source, target, vectors)


# --------------------------------------------------------------------------- the rules


def test_layout_parameter_is_checked(tmp_path: Path) -> None:
    require_module("lancedb")
    with pytest.raises(ConfigError, match="layout= takes langchain, llamaindex"):
        connect(f"lancedb://{tmp_path / 'l'}?layout=haystack")
    require_module("milvus_lite")
    with pytest.raises(ConfigError, match="layout= takes langchain, llamaindex"):
        connect(f"milvus-lite://{tmp_path / 'm.db'}?layout=haystack")


def _schema(name: str, metric: Metric = Metric.COSINE, **kw: Any) -> CollectionSchema:
    return CollectionSchema(
        name=name,
        vectors=(VectorField(name="emb", dim=3, metric=metric),),
        metadata=(MetadataField(name="k", type="int64"),),
        **kw,
    )


@pytest.mark.parametrize("layout", ["langchain", "llamaindex"])
def test_lancedb_notes_what_the_framework_does_not_keep(tmp_path: Path, layout: str) -> None:
    """Cosine int-id records without documents into a framework's LanceDB table: unit
    vectors go in (l2 ranks them alike), others are refused record by record; a new
    connection describes the metric, the vector's name, int ids and no documents."""
    require_module("lancedb")
    uri = f"lancedb://{tmp_path / 'l'}?layout={layout}"
    schema = _schema("t", id_type=IdType.INT, has_document=False)
    unit = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], np.float32)
    with connect(uri) as conn:
        conn.create(schema)
        conn.upsert("t", build_batch(schema, [1, 2], {"emb": unit}, metadata=[{"k": 1}, {"k": 2}]))
        long = build_batch(schema, [3], {"emb": np.array([[3.0, 4.0, 0.0]], np.float32)})
        with pytest.raises(DataError, match="not unit length"):
            conn.upsert("t", long)
    with connect(uri) as conn:
        got = conn.describe("t")
        assert (got.vector.name, got.vector.metric) == ("emb", Metric.COSINE)
        assert (got.id_type, got.has_document) == (IdType.INT, False)
        batch = conn.fetch("t", [2, 1])
        assert sorted(batch.column("id").to_pylist()) == [1, 2]
        ids, _ = conn.search("t", unit[1:], 2, filter={"k": {"$gte": 2}})
        assert ids == [[2]]


def test_milvus_langchain_refuses_a_missing_value(tmp_path: Path) -> None:
    """LangChain's Milvus collection has a non-nullable field per key: a record without a
    value for one is refused by name, as LangChain's own insert fails on it."""
    require_module("milvus_lite")
    uri = f"milvus-lite://{tmp_path / 'm.db'}?layout=langchain"
    schema = _schema("c", metric=Metric.L2)
    vec = np.array([[0.6, 0.8, 0.0]], np.float32)
    with connect(uri) as conn:
        conn.create(schema)
        conn.upsert("c", build_batch(schema, ["a"], {"emb": vec}, metadata=[{"k": 1}]))
        with pytest.raises(DataError, match="not nullable") as err:
            conn.upsert("c", build_batch(schema, ["b"], {"emb": vec}, metadata=[{}]))
        assert err.value.record_id == "b"
    with connect(uri) as conn:
        got = conn.describe("c")
        assert (got.vector.name, got.vector.metric, got.has_document) == ("emb", Metric.L2, False)
        assert conn.fetch("c", ["a"]).column("id").to_pylist() == ["a"]
