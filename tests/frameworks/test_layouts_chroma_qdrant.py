"""Framework layouts on Chroma and Qdrant (issue #14, items 4-5), accepted through the
frameworks themselves: stores written by LangChain and LlamaIndex (``tests/frameworks/kit.py``)
are migrated with ``vecmigrate copy ... ?layout=`` and then queried through the same
framework's own retriever on the target, which must return the documents and metadata the
source's retriever returns (top 5, ties within 1e-5 as sets), for 30 queries with one
metadata equality filter each. ``vecmigrate verify`` passes between source and target.

* (a) LangChain Chroma -> LangChain Chroma at another path;
* (b) LangChain Chroma -> LangChain Qdrant;
* (c) LlamaIndex Chroma -> LlamaIndex Qdrant;
* (d) LangChain Qdrant -> LangChain Chroma.

Plus what each target physically holds (the layout the framework itself writes) and the
refusals (a layout parameter that is not one, non-unit vectors into a Cosine layout).
"""

from __future__ import annotations

import json
import uuid
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

N = 150  # texts in each store
QUERIES = 30
K = 5


#: Keys LangChain's Qdrant store adds to every document it returns (not the application's).
LANGCHAIN_QDRANT_KEYS = ("_id", "_collection_name")


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    return compare.text_vectors()


def _queries(store: kit.Store) -> list[compare.Query]:
    """30 texts of the parquet file (15 in the store, 15 not: rows 135 ... 164), each with
    one metadata equality filter on a value some stored record has."""
    return compare.filtered_queries(store, N, QUERIES, K, first=N - QUERIES // 2, step=1)


def _assert_retrievers_agree(
    source: kit.Store, target: kit.Store, vectors: dict[str, np.ndarray]
) -> None:
    queries = _queries(source)

    def hits(store: kit.Store) -> list[list[compare.Hit]]:
        return [
            [(t, _application_metadata(store, md), s) for t, md, s in found]
            for found in kit.search_many(store, queries)
        ]

    before, after = hits(source), hits(target)
    compare.assert_hits_agree(queries, before, after, vectors, QUERIES * 3)


def _copy_and_verify(source: str, target: str, collection: str) -> None:
    compare.copy_and_verify(source, target, ["-c", collection], report_dir="report")


def _application_metadata(store: kit.Store, metadata: dict[str, Any]) -> dict[str, Any]:
    if store.kind == "langchain-qdrant":
        return {k: v for k, v in metadata.items() if k not in LANGCHAIN_QDRANT_KEYS}
    return metadata


def _chroma(path: str, name: str) -> Any:
    import chromadb

    return chromadb.PersistentClient(path=path).get_collection(name, embedding_function=None)


def _qdrant_points(path: str, name: str) -> tuple[Any, list[Any]]:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=path)
    try:
        info = client.get_collection(name)
        points, _ = client.scroll(name, limit=10_000, with_payload=True, with_vectors=True)
    finally:
        client.close()
    return info, points


# --------------------------------------------------------------------------- acceptance


def test_a_langchain_chroma_to_another_path(
    tmp_path: Path, vectors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    compare.require_kinds("langchain-chroma")
    monkeypatch.chdir(tmp_path)
    source = kit.build_langchain_chroma(tmp_path / "src", n=N)
    target = source.retarget(tmp_path / "dst")

    _copy_and_verify(source.uri(), target.uri(), "langchain")

    # What LangChain itself writes: no collection metadata, no embedding function, l2;
    # the same ids, documents and metadata.
    col = _chroma(target.location, "langchain")
    assert col.metadata is None
    assert col.configuration["hnsw"]["space"] == "l2"
    assert col.configuration["embedding_function"] is None
    got = col.get(include=["documents", "metadatas"])
    by_id = {r.id: r for r in source.rows}
    assert sorted(got["ids"]) == sorted(source.ids)
    for rid, doc, md in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
        assert (doc, md) == (by_id[rid].document, source.metadata(by_id[rid]))

    _assert_retrievers_agree(source, target, vectors)


def test_b_langchain_chroma_to_langchain_qdrant(
    tmp_path: Path, vectors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    compare.require_kinds("langchain-chroma", "langchain-qdrant")
    monkeypatch.chdir(tmp_path)
    source = kit.build_langchain_chroma(tmp_path / "chroma", n=N)
    target = source.retarget(tmp_path / "qdrant", kind="langchain-qdrant")

    _copy_and_verify(source.uri(), target.uri(), "langchain")

    # One vector named "" searched with Cosine (what LangChain checks at every open); the
    # payload LangChain reads, and the Chroma id (not a UUID) beside it.
    info, points = _qdrant_points(target.location, "langchain")
    params = info.config.params.vectors
    assert isinstance(params, dict) and list(params) == [""]
    assert params[""].distance.value == "Cosine"
    assert len(points) == N
    by_id = {r.id: r for r in source.rows}
    for p in points:
        rid = p.payload["_vecmigrate_id"]
        assert p.id == str(uuid.uuid5(uuid.NAMESPACE_URL, f"langchain/{rid}"))
        assert p.payload == {
            "page_content": by_id[rid].document,
            "metadata": source.metadata(by_id[rid]),
            "_vecmigrate_id": rid,
        }

    # Chroma searched l2 (its default space): the copy says so, and Cosine ranks these
    # unit vectors alike.
    with connect(target.uri()) as conn:
        v = conn.describe("langchain").vector
    assert v.metric is Metric.L2
    assert "Cosine" in (v.metric_source or "")

    _assert_retrievers_agree(source, target, vectors)


def test_c_llamaindex_chroma_to_llamaindex_qdrant(
    tmp_path: Path, vectors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    compare.require_kinds("llamaindex-chroma", "llamaindex-qdrant")
    monkeypatch.chdir(tmp_path)
    source = kit.build_llamaindex_chroma(tmp_path / "chroma", n=N)
    target = source.retarget(tmp_path / "qdrant", kind="llamaindex-qdrant")

    with connect(source.uri()) as conn:
        schema = conn.describe("llamaindex")
    assert {m.name for m in schema.metadata} == {
        *kit.texts()[0].metadata,
        fw.REF_DOC_ID,
        fw.NODE_KEY,
    }
    assert (schema.vector.name, schema.vector.metric) == ("vector", Metric.L2)

    _copy_and_verify(source.uri(), target.uri(), "llamaindex")

    # One unnamed vector; the node ids as point ids; the payload LlamaIndex writes for
    # Qdrant: the node in _node_content with its text (Chroma keeps it in the document),
    # the same node otherwise, and the top-level keys equal to the node metadata.
    info, points = _qdrant_points(target.location, "llamaindex")
    assert not isinstance(info.config.params.vectors, dict)
    col = _chroma(source.location, "llamaindex")
    got = col.get(include=["documents", "metadatas"])
    before = dict(
        zip(got["ids"], zip(got["documents"], got["metadatas"], strict=True), strict=True)
    )
    assert sorted(p.id for p in points) == sorted(source.ids)
    for p in points:
        doc, stored = before[p.id]
        node = json.loads(stored["_node_content"])
        assert node["text"] == ""
        node["text"] = doc
        assert json.loads(p.payload["_node_content"]) == node
        assert {k: v for k, v in p.payload.items() if k != "_node_content"} == {
            k: v for k, v in stored.items() if k != "_node_content"
        }
        assert "_vecmigrate_id" not in p.payload  # UUID node ids are the point ids

    _assert_retrievers_agree(source, target, vectors)


def test_d_langchain_qdrant_to_langchain_chroma(
    tmp_path: Path, vectors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    compare.require_kinds("langchain-qdrant", "langchain-chroma")
    monkeypatch.chdir(tmp_path)
    source = kit.build_langchain_qdrant(tmp_path / "qdrant", n=N)
    target = source.retarget(tmp_path / "chroma", kind="langchain-chroma")

    with connect(source.uri()) as conn:
        v = conn.describe("langchain").vector
    assert (v.name, v.metric) == ("vector", Metric.COSINE)

    _copy_and_verify(source.uri(), target.uri(), "langchain")

    # Chroma keeps the space: Cosine stays cosine. Ids, texts and metadata as LangChain
    # writes them to Chroma.
    col = _chroma(target.location, "langchain")
    assert col.metadata is None
    assert col.configuration["hnsw"]["space"] == "cosine"
    got = col.get(include=["documents", "metadatas"])
    by_id = {r.uuid: r for r in source.rows}
    assert sorted(got["ids"]) == sorted(source.ids)
    for rid, doc, md in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
        assert (doc, md) == (by_id[rid].document, source.metadata(by_id[rid]))

    _assert_retrievers_agree(source, target, vectors)


# --------------------------------------------------------------------------- refusals


def test_layout_parameter_is_checked(tmp_path: Path) -> None:
    require_module("chromadb")
    require_module("qdrant_client")
    for scheme in ("chroma", "qdrant+local"):
        with pytest.raises(ConfigError, match="layout= takes langchain, llamaindex"):
            connect(f"{scheme}://{tmp_path}/s?layout=nosuch")
    with pytest.raises(ConfigError, match="document_field"):
        connect(f"qdrant+local://{tmp_path}/q?layout=langchain&document_field=text")


@pytest.mark.parametrize("layout", ["langchain", "llamaindex"])
def test_non_unit_vectors_copied_for_l2_are_refused_by_qdrant_layouts(
    tmp_path: Path, layout: str
) -> None:
    """The frameworks search Qdrant with Cosine: l2 vectors go in when unit length (same
    ranking), others are refused record by record; the l2 metric is noted and read back."""
    require_module("qdrant_client")
    uri = f"qdrant+local://{tmp_path}/q?layout={layout}"
    schema = CollectionSchema(
        name="notes",
        vectors=(VectorField(name="emb", dim=3, metric=Metric.L2),),
        has_document=True,
    )
    unit_id = str(uuid.uuid4())
    with connect(uri) as conn:
        conn.create(schema)
        unit = build_batch(
            schema,
            [unit_id],
            {"emb": np.array([[0.6, 0.8, 0.0]], np.float32)},
            documents=["unit"],
            metadata=[{"k": 1}],
        )
        conn.upsert("notes", unit)
        long = build_batch(
            schema,
            ["b"],
            {"emb": np.array([[3.0, 4.0, 0.0]], np.float32)},
            documents=["long"],
            metadata=[{"k": 2}],
        )
        with pytest.raises(DataError, match="not unit length"):
            conn.upsert("notes", long)
    with connect(uri) as conn:  # described again from the collection and the note
        got = conn.describe("notes")
        assert (got.vector.name, got.vector.metric) == ("emb", Metric.L2)
        assert conn.fetch("notes", [unit_id]).column("document").to_pylist() == ["unit"]
        assert conn.count("notes", filter={"k": 1}) == 1
