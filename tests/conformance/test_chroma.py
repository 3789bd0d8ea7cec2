"""Chroma, embedded and over HTTP (``chroma run`` started by the session fixture)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType
from vecmigrate.testing.suite import ConnectorConformance


class TestChromaEmbedded(ConnectorConformance):
    @pytest.fixture
    def connector(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connector]:
        require_module("chromadb")
        # Chroma caches one client per path per process: one folder per test keeps them apart.
        path: Path = tmp_path_factory.mktemp(f"chroma-{uuid.uuid4().hex[:6]}")
        conn = connect(f"chroma://{path}")
        yield conn
        conn.close()


class TestChromaEmbeddedIntIds(TestChromaEmbedded):
    id_type = IdType.INT


class TestChromaHttp(ConnectorConformance):
    @pytest.fixture
    def connector(self, chroma_server: Any) -> Iterator[Connector]:
        conn = connect(chroma_server.uri)
        yield conn
        conn.close()


def test_a_dropped_collections_list_metadata_never_reappears(chroma_server: Any) -> None:
    """Chroma 1.5.9 keeps the list-valued metadata of a deleted collection's records and
    attaches it to later records that reuse their internal ids; ``drop`` (and ``create``
    with replace) delete the records first so nothing leaks into the next collection."""
    import numpy as np

    from vecmigrate.model import CollectionSchema, MetadataField, VectorField
    from vecmigrate.records import build_batch, metadata_rows

    conn = connect(chroma_server.uri)
    n, tag = 200, uuid.uuid4().hex[:6]
    names = [f"leak_{tag}_a", f"leak_{tag}_b"]
    fields = (MetadataField(name="tags", type="list<string>"),), ()
    for name, meta in zip(names, fields, strict=True):
        schema = CollectionSchema(name=name, vectors=(VectorField(dim=2),), metadata=meta)
        conn.create(schema)
        rows = [{"tags": [f"t{i}", "x"]} if meta else {} for i in range(n)]
        vecs = np.ones((n, 2), np.float32)
        conn.upsert(
            name, build_batch(schema, [f"r{i}" for i in range(n)], {"vector": vecs}, metadata=rows)
        )
        if meta:
            conn.drop(name)
    got = conn.fetch(names[1], [f"r{i}" for i in range(n)])
    assert [m for m in metadata_rows(got, conn.describe(names[1])) if m] == []
    conn.drop(names[1])
    conn.close()


@pytest.mark.xfail(
    reason="known gap: Chroma's upsert merges metadata keys; replacing by delete-then-add "
    "opens a window in which live cutover reads the record as deleted",
    strict=True,
)
@pytest.mark.parametrize("made_by", ["vecmigrate", "another tool", "langchain"])
def test_upsert_replaces_whole_records(tmp_path: Path, made_by: str) -> None:
    """Chroma's own upsert merges metadata keys and keeps the old document when the new
    one is None; the connector's upsert replaces the record, as every engine does: a key
    the new record lacks is gone, and so is a document it lacks."""
    require_module("chromadb")
    import chromadb
    import numpy as np

    from vecmigrate.model import CollectionSchema, MetadataField, VectorField
    from vecmigrate.records import build_batch, metadata_rows

    path = tmp_path / "store"
    vec = np.array([[1.0, 0.0]], np.float32)
    if made_by == "vecmigrate":
        uri = f"chroma://{path}"
        schema = CollectionSchema(
            name="docs",
            vectors=(VectorField(dim=2),),
            metadata=(MetadataField(name="a", type="int64"), MetadataField(name="b", type="int64")),
            has_document=True,
        )
        with connect(uri) as conn:
            conn.create(schema)
            conn.upsert(
                "docs",
                build_batch(
                    schema, ["r1"], {"vector": vec}, documents=["old"], metadata=[{"a": 1, "b": 2}]
                ),
            )
    else:
        uri = f"chroma://{path}" + ("?layout=langchain" if made_by == "langchain" else "")
        col = chromadb.PersistentClient(path=str(path)).create_collection(
            "docs", embedding_function=None
        )
        col.add(ids=["r1"], embeddings=vec, documents=["old"], metadatas=[{"a": 1, "b": 2}])
    with connect(uri) as conn:
        schema = conn.describe("docs")
        new = build_batch(schema, ["r1"], {"vector": vec}, documents=[None], metadata=[{"a": 3}])
        conn.upsert("docs", new)
        conn.upsert("docs", new)  # idempotent
        got = conn.fetch("docs", ["r1"])
        assert conn.count("docs") == 1
        assert metadata_rows(got, schema) == [{"a": 3}]
        expected_doc = "" if made_by == "langchain" else None  # LangChain skips None texts
        assert got.column("document").to_pylist() == [expected_doc]
        assert conn.count("docs", filter={"b": 2}) == 0
    raw = chromadb.PersistentClient(path=str(path)).get_collection("docs", embedding_function=None)
    stored = raw.get(ids=["r1"], include=["documents", "metadatas"])
    assert stored["documents"] == [expected_doc]
    assert stored["metadatas"] is not None
    assert dict(stored["metadatas"][0]) == {"a": 3}
