"""LangChain's Redis layout (``redis://...?layout=langchain``) against ``langchain-redis``
(0.2.6, over redisvl; issue #14), driven in the side venv ``.venv-fw2``
(tests/frameworks/side.py, side_langchain_redis.py): it pins its own redis client and
redisvl, so it cannot live in the main venv. Stores are built and queried by the package
itself; vecmigrate runs in the main venv; the MiniLM vectors are computed here and sent.

* (a) a ``RedisVectorStore`` (an application's ``metadata_schema``: tags and numbers) ->
  LangChain Chroma: 50 filtered queries through langchain-chroma give the documents and
  metadata the source's own retriever gives;
* (b) LangChain Chroma -> ``redis://...?layout=langchain``: read back through
  ``RedisVectorStore`` opened by name with the documented ``metadata_schema`` (and with
  ``from_existing_index``), same results as Chroma's;
* what the layout holds (FT.INFO, hashes), what each type becomes, and the refusals.

langchain-redis refuses bools (and objects) as metadata, so the stores it builds here
leave ``has_example`` out; vecmigrate writes it (``true``/``false`` TAG, the bool in
``_metadata_json``).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.frameworks import compare, kit
from tests.frameworks.side import run_side, side_python, vectors_for
from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import CollectionSchema, MetadataField, Metric, VectorField
from vecmigrate.records import build_batch, metadata_rows

SCRIPT = "side_langchain_redis.py"
N = 200  # texts in each store
QUERIES = 50
K = 10
FILTER_KEYS = ("package", "module", "words")

#: What an application declares to RedisVectorStore: LangChain's defaults (TAG separator
#: ``|``, not case sensitive).
APP_SCHEMA: list[dict[str, Any]] = [
    {"name": "package", "type": "tag"},
    {"name": "module", "type": "tag"},
    {"name": "words", "type": "numeric"},
    {"name": "score", "type": "numeric"},
    {"name": "tags", "type": "tag"},
]
_TAG = {"separator": "|", "case_sensitive": True, "index_missing": True}
#: The metadata_schema vecmigrate documents for an index it writes from the kit's metadata
#: (docs/frameworks-layouts.md): str, bool and lists as tag, numbers as numeric.
WRITTEN_SCHEMA: list[dict[str, Any]] = [
    {"name": "has_example", "type": "tag", "attrs": _TAG},
    {"name": "module", "type": "tag", "attrs": _TAG},
    {"name": "package", "type": "tag", "attrs": _TAG},
    {"name": "score", "type": "numeric", "attrs": {"index_missing": True}},
    {"name": "tags", "type": "tag", "attrs": _TAG},
    {"name": "words", "type": "numeric", "attrs": {"index_missing": True}},
]

Hit = kit.Hit
Query = tuple[str, int, kit.Where]


# --------------------------------------------------------------------------- helpers


def _require(*kinds: str) -> None:
    side_python()
    compare.require_kinds(*kinds)


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    return compare.text_vectors()


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def _app_metadata(row: kit.Text) -> dict[str, Any]:
    """A row's metadata as langchain-redis takes it (no bool)."""
    return {k: v for k, v in row.meta().items() if k != "has_example"}


def _queries(rows: list[kit.Text]) -> list[Query]:
    """50 texts of the parquet file (half in the store, half not), each with one metadata
    equality filter on a value some stored record has."""
    texts = kit.texts()
    out: list[Query] = []
    for j in range(QUERIES):
        text = texts[N - QUERIES + 2 * j].document  # rows 150, 152, ... 248
        key = FILTER_KEYS[j % len(FILTER_KEYS)]
        out.append((text, K, {key: rows[(j * 13) % N].metadata[key]}))
    return out


def _side(url: str, op: str, index: str, **request: Any) -> dict[str, Any]:
    return run_side(SCRIPT, {"op": op, "url": url, "index_name": index, "dim": kit.DIM, **request})


def _build(url: str, index: str, rows: list[kit.Text]) -> None:
    texts = [r.document for r in rows]
    reply = _side(
        url,
        "build",
        index,
        metadata_schema=APP_SCHEMA,
        texts=texts,
        metadatas=[_app_metadata(r) for r in rows],
        ids=[r.id for r in rows],
        vectors=vectors_for(texts),
    )
    assert reply["ids"] == [r.id for r in rows]


def _search(
    url: str, index: str, queries: list[Query], schema: list[dict[str, Any]] | None
) -> tuple[list[list[Hit]], dict[str, str]]:
    """The queries through ``RedisVectorStore.similarity_search_with_score``, opened with
    ``schema`` as its metadata_schema (None: ``from_existing_index``); and its fields."""
    extra: dict[str, Any] = {"from_existing": True} if schema is None else {}
    reply = _side(
        url,
        "search",
        index,
        metadata_schema=schema,
        queries=[list(q) for q in queries],
        vectors=vectors_for(q for q, _, _ in queries),
        **extra,
    )
    hits = [[(t, md, float(s)) for t, md, s in found] for found in reply["hits"]]
    return hits, reply["fields"]


def _assert_hits_agree(
    queries: list[Query],
    before: list[list[Hit]],
    after: list[list[Hit]],
    vectors: dict[str, np.ndarray],
) -> None:
    """Same documents and metadata (ties aside), every hit passing the query's filter,
    and the filters letting enough through to mean something."""
    assert len(before) == len(after) == len(queries)
    compare.assert_hits_agree(queries, before, after, vectors, len(queries) * 3)


def _redis(server: Any) -> Any:
    import redis

    return redis.Redis(host=server.host, port=server.port, protocol=2)


def _ft_info(server: Any, index: str) -> tuple[dict[str, Any], list[tuple[str, ...]]]:
    """(index definition, attributes as (identifier, type, options...)) of ``index``."""
    raw = _redis(server).execute_command("FT.INFO", index)
    info = dict(zip(raw[::2], raw[1::2], strict=True))
    raw_def = info[b"index_definition"]
    definition = dict(zip(raw_def[::2], raw_def[1::2], strict=True))
    attrs = []
    for a in info[b"attributes"]:
        parts = [x.decode() if isinstance(x, bytes) else str(x) for x in a]
        pairs = dict(zip(parts[::2], parts[1::2], strict=False))
        extra = [p for p in parts if p in ("CASESENSITIVE", "INDEXMISSING")]
        keep = ("algorithm", "data_type", "dim", "distance_metric", "SEPARATOR")
        attrs.append(
            (pairs["identifier"], pairs["type"], *(pairs[k] for k in keep if k in pairs), *extra)
        )
    return definition, attrs


# --------------------------------------------------------------------------- acceptance


def test_a_langchain_redis_to_langchain_chroma(
    tmp_path: Path,
    redis_server: Any,
    vectors: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _require("langchain-chroma")
    monkeypatch.chdir(tmp_path)
    url, index = redis_server.uri, _name("lcr")
    rows = list(kit.texts()[:N])
    _build(url, index, rows)

    # What langchain-redis wrote: its index and one hash per record at <index>:<id>.
    definition, attrs = _ft_info(redis_server, index)
    assert definition[b"key_type"] == b"HASH"
    assert definition[b"prefixes"] == [f"{index}:".encode()]
    assert attrs[:4] == [
        ("text", "TEXT"),
        ("embedding", "VECTOR", "FLAT", "FLOAT32", str(kit.DIM), "COSINE"),
        ("_index_name", "TEXT"),
        ("_metadata_json", "TEXT"),
    ]
    assert attrs[4:] == [
        (
            f["name"],
            "TAG" if f["type"] == "tag" else "NUMERIC",
            *(["|"] if f["type"] == "tag" else []),
        )
        for f in APP_SCHEMA
    ]
    h = _redis(redis_server).hgetall(f"{index}:{rows[0].id}")
    assert h[b"text"] == rows[0].document.encode()
    assert h[b"tags"] == "|".join(rows[0].metadata["tags"]).encode()
    assert np.allclose(np.frombuffer(h[b"embedding"], "<f4"), rows[0].vector)

    # vecmigrate reads it: the key after the prefix, the text, _metadata_json typed.
    with connect(f"{url}?layout=langchain") as conn:
        schema = conn.describe(index)
        batch = conn.fetch(index, [rows[3].id, rows[150].id])
    assert (schema.vector.name, schema.vector.metric, schema.vector.dim) == (
        "vector",
        Metric.COSINE,
        kit.DIM,
    )
    types = {m.name: (m.type, m.indexed) for m in schema.metadata}
    assert types == {
        "module": ("string", True),
        "package": ("string", True),
        "score": ("float64", True),
        "tags": ("list<string>", True),
        "words": ("int64", True),
    }
    assert batch.column("id").to_pylist() == [rows[3].id, rows[150].id]
    assert batch.column("document").to_pylist() == [rows[3].document, rows[150].document]
    got = batch.column("metadata").to_pylist()
    assert got == [_app_metadata(rows[3]), _app_metadata(rows[150])]

    target = kit.Store(
        "langchain-chroma", "langchain", "chroma", str(tmp_path / "chroma"), index, index,
        [r.id for r in rows], rows, flat_tags=False,
    )  # fmt: skip
    compare.copy_and_verify(f"{url}?layout=langchain", target.uri(), ["-c", index], "report")

    queries = _queries(rows)
    before, fields = _search(url, index, queries, APP_SCHEMA)
    assert fields["package"] == "tag" and fields["words"] == "numeric"
    after = kit.search_many(target, queries)
    _assert_hits_agree(queries, before, after, vectors)

    # Written into the index langchain-redis made (--if-exists reuse), a record is where
    # its retriever finds it, by its own filter.
    extra = kit.texts()[N]
    with connect(f"{url}?layout=langchain") as conn:
        conn.create(schema, if_exists="reuse")
        conn.upsert(
            index,
            build_batch(
                schema,
                [extra.id],
                {"vector": np.asarray([extra.vector], "f4")},
                documents=[extra.document],
                metadata=[_app_metadata(extra)],
            ),
        )
    h = _redis(redis_server).hgetall(f"{index}:{extra.id}")
    assert h[b"tags"] == "|".join(extra.metadata["tags"]).encode()
    assert h[b"_index_name"] == index.encode()
    where = {"package": extra.metadata["package"]}
    ((hit, *_),), _ = _search(url, index, [(extra.document, 3, where)], APP_SCHEMA)
    assert hit[:2] == (extra.document, _app_metadata(extra))


def test_b_langchain_chroma_to_langchain_redis(
    tmp_path: Path,
    redis_server: Any,
    vectors: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _require("langchain-chroma")
    monkeypatch.chdir(tmp_path)
    collection = _name("lcc")
    source = kit.build_langchain_chroma(tmp_path / "chroma", n=N, collection=collection)
    url = redis_server.uri
    compare.copy_and_verify(source.uri(), f"{url}?layout=langchain", ["-c", collection], "report")

    # The layout RedisVectorStore creates, with the source's metric (Chroma's l2) and the
    # documented metadata_schema.
    definition, attrs = _ft_info(redis_server, collection)
    assert definition[b"prefixes"] == [f"{collection}:".encode()]
    assert attrs == [
        ("text", "TEXT"),
        ("embedding", "VECTOR", "FLAT", "FLOAT32", str(kit.DIM), "L2"),
        ("_index_name", "TEXT"),
        ("_metadata_json", "TEXT"),
        *(
            (f["name"], "TAG", "|", "CASESENSITIVE", "INDEXMISSING")
            if f["type"] == "tag"
            else (f["name"], "NUMERIC", "INDEXMISSING")
            for f in WRITTEN_SCHEMA
        ),
    ]
    first = source.rows[0]
    h = _redis(redis_server).hgetall(f"{collection}:{first.id}")
    assert h[b"_index_name"] == collection.encode()
    assert h[b"has_example"] == (b"true" if first.metadata["has_example"] else b"false")
    assert h[b"words"] == str(first.metadata["words"]).encode()

    queries = _queries(source.rows)
    before = kit.search_many(source, queries)
    after, fields = _search(url, collection, queries, WRITTEN_SCHEMA)
    assert fields["has_example"] == "tag"
    _assert_hits_agree(queries, before, after, vectors)
    # Opened from the index itself (redisvl reads FT.INFO): the same hits.
    again, fields = _search(url, collection, queries[:6], None)
    assert {f["name"] for f in WRITTEN_SCHEMA} <= set(fields)
    _assert_hits_agree(queries[:6], before[:6], again, vectors)


# --------------------------------------------------------------------------- the layout


def _schema(name: str, *metadata: MetadataField, dim: int = 3) -> CollectionSchema:
    return CollectionSchema(
        name=name,
        vectors=(VectorField(name="vector", dim=dim, metric=Metric.DOT),),
        metadata=metadata,
        has_document=True,
    )


META = (
    MetadataField(name="s", type="string"),
    MetadataField(name="i", type="int64"),
    MetadataField(name="f", type="float64"),
    MetadataField(name="b", type="bool"),
    MetadataField(name="ls", type="list<string>"),
    MetadataField(name="obj", type="json"),
)


def _batch(
    schema: CollectionSchema, rows: list[tuple[str, str | None, dict[str, Any]]]
) -> pa.RecordBatch:
    vecs = np.asarray([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]][: len(rows)], "f4")
    return build_batch(
        schema,
        [r[0] for r in rows],
        {"vector": vecs},
        documents=[r[1] for r in rows],
        metadata=[r[2] for r in rows],
    )


def test_types_round_trip_and_filter(redis_server: Any) -> None:
    """Every portable type is written where LangChain finds it (``_metadata_json``) and
    read back the same; str/bool/list TAGs and numbers are filterable exactly."""
    name = _name("lct")
    schema = _schema(name, *META)
    rows = [
        (
            "a",
            "alpha",
            {"s": "News", "i": 3, "f": 0.5, "b": True, "ls": ["x", "y"], "obj": {"k": [1]}},
        ),
        ("b", "beta", {"s": "news", "i": -7, "f": 2.0, "b": False, "ls": [], "obj": None}),
        ("c", "", {"s": None, "i": None, "f": None, "b": None, "ls": None, "obj": None}),
    ]
    uri = f"{redis_server.uri}?layout=langchain"
    with connect(uri) as conn:
        conn.create(schema)
        conn.upsert(name, _batch(schema, rows))
        got = conn.fetch(name, ["a", "b", "c"])
        assert got.column("document").to_pylist() == ["alpha", "beta", ""]
        # A null is no value in the portable model: absent from _metadata_json too.
        given = [{k: v for k, v in r[2].items() if v is not None} for r in rows]
        assert metadata_rows(got, schema) == given
        assert conn.count(name, {"s": "News"}) == 1  # CASESENSITIVE
        assert conn.count(name, {"b": True}) == 1
        assert conn.count(name, {"ls": "y"}) == 1
        assert conn.count(name, {"i": {"$lt": 0}}) == 1
        assert conn.count(name, {"s": {"$exists": False}}) == 1  # INDEXMISSING
        ids, _ = conn.search(name, np.asarray([[0.6, 0.8, 0.0]], "f4"), 2)
        assert ids == [["b", "a"]]
    # What langchain-redis returns for them: the metadata as written, by its own filter.
    reply = run_side(
        SCRIPT,
        {
            "op": "search",
            "url": redis_server.uri,
            "index_name": name,
            "dim": 3,
            "from_existing": True,
            "queries": [["q", 3, None], ["q", 3, {"s": "News"}]],
            "vectors": {"q": [1.0, 0.0, 0.0]},
        },
    )
    everything, filtered = reply["hits"]
    assert {t: md for t, md, _ in everything} == {
        r[1]: md for r, md in zip(rows, given, strict=True)
    }
    assert [(t, md) for t, md, _ in filtered] == [("alpha", given[0])]
    # A fresh connector describes what was written as LangChain's layout.
    with connect(uri) as conn:
        described = conn.describe(name)
        assert described.vector.metric is Metric.DOT
        assert {m.name: m.type for m in described.metadata} == {m.name: m.type for m in META}
        assert metadata_rows(conn.fetch(name, ["a"]), described) == [given[0]]
        conn.drop(name)


def test_an_index_without_metadata_json_reads_as_langchain_does(redis_server: Any) -> None:
    """An index from a custom redisvl schema (no ``_metadata_json``): the metadata is what
    RedisVectorStore then returns, its indexed fields with digit strings as numbers."""
    name = _name("lcs")
    raw = _redis(redis_server)
    raw.execute_command(
        "FT.CREATE", name, "ON", "HASH", "PREFIX", 1, name, "SCHEMA",
        "text", "TEXT", "embedding", "VECTOR", "FLAT", 6, "TYPE", "FLOAT32", "DIM", 3,
        "DISTANCE_METRIC", "COSINE", "genre", "TAG", "year", "NUMERIC", "rating", "NUMERIC",
    )  # fmt: skip
    for i, vec in enumerate([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]):
        raw.hset(
            f"{name}:{i}",
            mapping={"text": f"t{i}", "embedding": np.asarray(vec, "<f4").tobytes(),
                     "genre": "ab"[i], "year": 2000 + i, "rating": 0.5 + i, "note": "x"},
        )  # fmt: skip
    try:
        with connect(f"{redis_server.uri}?layout=langchain") as conn:
            schema = conn.describe(name)
            got = conn.fetch(name, ["0", "1"])
        want = [
            {"genre": "a", "year": 2000, "rating": 0.5},
            {"genre": "b", "year": 2001, "rating": 1.5},
        ]
        assert metadata_rows(got, schema) == want
        reply = run_side(
            SCRIPT,
            {"op": "search", "url": redis_server.uri, "index_name": name, "dim": 3,
             "from_existing": True, "queries": [["q", 2, None]],
             "vectors": {"q": [1.0, 0.0, 0.0]}},
        )  # fmt: skip
        # Its fallback also returns the search's own "id" (the key) and "vector_distance".
        hits = [(t, md) for t, md, _ in reply["hits"][0]]
        assert [md.pop("id") for _, md in hits] == [f"{name}:0", f"{name}:1"]
        assert all(isinstance(md.pop("vector_distance"), int | float) for _, md in hits)
        assert hits == [("t0", want[0]), ("t1", want[1])]
    finally:
        raw.execute_command("FT.DROPINDEX", name, "DD")


def test_refusals(redis_server: Any) -> None:
    """What LangChain's layout cannot hold is refused before anything is written."""
    uri = f"{redis_server.uri}?layout=langchain"
    with pytest.raises(ConfigError, match="layout="):
        connect(f"{redis_server.uri}?layout=llamaindex")
    with connect(uri) as conn:
        two = CollectionSchema(
            name=_name("lcx"),
            vectors=(VectorField(name="a", dim=3), VectorField(name="b", dim=3)),
        )
        with pytest.raises(ConfigError, match="one vector"):
            conn.create(two)
        with pytest.raises(ConfigError, match="'text'"):
            conn.create(_schema(_name("lcx"), MetadataField(name="text", type="string")))
        with pytest.raises(ConfigError, match="no documents"):
            conn.create(_schema(_name("lcx")).replace(has_document=False))
        assert all(not n.startswith("lcx") for n in conn.list_collections())
        name = _name("lcx")
        schema = _schema(
            name, MetadataField(name="s", type="string"), MetadataField(name="i", type="int64")
        )
        conn.create(schema)
        with pytest.raises(DataError, match="no text") as err:
            conn.upsert(name, _batch(schema, [("r1", None, {"s": "x"})]))
        assert err.value.record_id == "r1"
        # A value the NUMERIC field cannot index (kept as it is, in metadata_extra).
        with pytest.raises(DataError, match="NUMERIC") as err:
            conn.upsert(name, _batch(schema, [("r2", "two", {"i": "many"})]))
        assert (err.value.record_id, err.value.field) == ("r2", "i")
        assert conn.count(name) == 0
        conn.drop(name)
    # vecmigrate's own layout is not LangChain's.
    own = _name("own")
    with connect(redis_server.uri) as conn:
        conn.create(_schema(own))
    try:
        with connect(uri) as conn, pytest.raises(ConfigError, match="own layout"):
            conn.describe(own)
    finally:
        with connect(redis_server.uri) as conn:
            conn.drop(own)
