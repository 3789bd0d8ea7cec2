"""Milvus through milvus-lite (embedded, the real Milvus C++ core, trimmed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import SPARSE_TYPE, IdType, IndexSpec, SparseField
from vecmigrate.testing.data import (
    ROWS,
    rich_batch,
    rich_schema,
    sample_batch,
    sample_ids,
    sample_schema,
)
from vecmigrate.testing.suite import ConnectorConformance


class TestMilvusLiteStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[Connector]:
        require_module("milvus_lite")
        conn = connect(f"milvus-lite://{tmp_path / 'milvus.db'}")
        yield conn
        conn.close()

    def test_partitions_are_exact_pk_ranges(self, connector: Connector, name: str) -> None:
        schema = sample_schema(name, id_type=self.id_type)
        connector.create(schema)
        connector.upsert(name, sample_batch(schema))
        connector.MIN_PARTITION_ROWS = 50  # type: ignore[attr-defined]
        parts = connector.partitions(name, 4)
        assert len(parts) == 4
        seen = []
        for p in parts:
            for batch, _ in connector.scan(name, p, schema=schema, batch_rows=23):
                seen += batch.column("id").to_pylist()
        assert len(seen) == ROWS
        assert sorted(map(str, seen)) == sorted(map(str, sample_ids(self.id_type)))

    def test_a_load_from_empty_inserts_first_copies_and_upserts_repeats(
        self, connector: Connector, name: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Into an empty collection a copy inserts (Milvus Lite's upsert slows as the
        collection grows); a re-sent batch and an id repeated in a later batch are upserted:
        one row per id, the last copy, exactly as with upserts alone."""
        schema = sample_schema(name, id_type=self.id_type)
        connector.create(schema)
        connector.begin_bulk_load(name)
        client: Any = connector.client  # type: ignore[attr-defined]
        calls: list[tuple[str, int]] = []
        for verb in ("insert", "upsert"):
            real = getattr(client, verb)
            monkeypatch.setattr(
                client,
                verb,
                lambda n, rows, *a, _v=verb, _real=real, **k: (
                    calls.append((_v, len(rows))) or _real(n, rows, *a, **k)
                ),
            )
        batch = sample_batch(schema)
        connector.upsert(name, batch.slice(0, 100))
        connector.upsert(name, batch.slice(0, 100))  # re-sent after a timeout
        later = batch.slice(100)
        docs = later.column("document").to_pylist()
        docs[0] = "a later copy of an id sent already"
        repeat = pa.RecordBatch.from_arrays(
            [batch.column(i).slice(0, 1) for i in range(batch.num_columns)],
            schema=batch.schema,
        )
        repeat = repeat.set_column(
            repeat.schema.get_field_index("document"), "document", pa.array([docs[0]])
        )
        connector.upsert(
            name, pa.Table.from_batches([later, repeat]).combine_chunks().to_batches()[0]
        )
        connector.finalize(name)
        assert calls == [("insert", 100), ("upsert", 100), ("insert", ROWS - 100), ("upsert", 1)]
        assert connector.count(name) == ROWS
        first = batch.column("id")[0].as_py()
        got = connector.fetch(name, [first], schema=schema)
        assert got.column("document").to_pylist() == [docs[0]]

    def test_reopened_store_is_loaded_and_described(self, tmp_path: Path, name: str) -> None:
        path = tmp_path / "reopen.db"
        schema = sample_schema(name, id_type=self.id_type)
        with connect(f"milvus-lite://{path}") as a:
            a.create(schema)
            a.upsert(name, sample_batch(schema))
        with connect(f"milvus-lite://{path}") as b:
            assert b.count(name) == ROWS
            assert b.describe(name).metadata == schema.metadata
            b.drop(name)

    def test_hnsw_becomes_autoindex_on_lite(self, connector: Connector, name: str) -> None:
        schema = sample_schema(name, id_type=self.id_type)
        v = schema.vector.model_copy(update={"index": IndexSpec(kind="hnsw")})
        connector.create(schema.replace(vectors=(v,)))
        settings = connector.describe(name).engine_settings
        assert "AUTOINDEX" in settings["milvus.vector.index"]

    def test_ivf_flat_index_searches(self, connector: Connector, name: str) -> None:
        schema = sample_schema(name, id_type=self.id_type)
        v = schema.vector.model_copy(
            update={"index": IndexSpec(kind="ivf_flat", params={"nlist": 4})}
        )
        schema = schema.replace(vectors=(v,))
        connector.create(schema)
        batch = sample_batch(schema)
        connector.upsert(name, batch)
        from vecmigrate.records import vectors_to_numpy

        q = vectors_to_numpy(batch.column("vector"))[:2]
        ids, _ = connector.search(name, q, 3, params={"nprobe": 4})
        assert ids[0][0] == batch.column("id")[0].as_py()

    def test_negated_list_containment_is_refused_on_lite(
        self, connector: Connector, name: str
    ) -> None:
        connector.create(sample_schema(name, id_type=self.id_type))
        with pytest.raises(ConfigError, match="negation"):
            connector.count(name, {"$not": {"tags": "t1"}})


class TestMilvusLiteIntIds(TestMilvusLiteStringIds):
    id_type = IdType.INT


def test_quote_in_string_id_is_a_data_error(tmp_path: Path) -> None:
    require_module("milvus_lite")
    schema = sample_schema("quotes")
    with connect(f"milvus-lite://{tmp_path / 'q.db'}") as conn:
        conn.create(schema)
        batch = sample_batch(schema).slice(0, 1)
        import pyarrow as pa

        batch = batch.set_column(0, "id", pa.array(["it's"]))
        with pytest.raises(DataError, match="single quote"):
            conn.upsert("quotes", batch)


def test_describe_and_scan_a_collection_made_by_another_tool(tmp_path: Path) -> None:
    require_module("milvus_lite")
    from pymilvus import DataType, MilvusClient

    path = tmp_path / "foreign.db"
    client = MilvusClient(str(path))
    ms = client.create_schema(auto_id=False, enable_dynamic_field=False)
    ms.add_field("pk", DataType.INT64, is_primary=True)
    ms.add_field("emb", DataType.FLOAT_VECTOR, dim=3)
    ms.add_field("text", DataType.VARCHAR, max_length=100)
    ms.add_field("year", DataType.INT64)
    ms.add_field(
        "tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=8, max_length=20
    )
    index = client.prepare_index_params()
    index.add_index("emb", index_type="FLAT", metric_type="IP")
    client.create_collection("foreign", schema=ms, index_params=index)
    client.insert(
        "foreign",
        [
            {"pk": i, "emb": [float(i), 1.0, 0.5], "text": f"t{i}", "year": 2000 + i, "tags": ["a"]}
            for i in range(5)
        ],
    )
    client.close()
    with connect(f"milvus-lite://{path}") as conn:
        schema = conn.describe("foreign")
        assert schema.id_type is IdType.INT and schema.has_document
        assert schema.vector.name == "emb" and schema.vector.metric.value == "dot"
        assert {(m.name, m.type) for m in schema.metadata} == {
            ("year", "int64"),
            ("tags", "list<string>"),
        }
        [part] = conn.partitions("foreign", 1)
        rows = [r for b, _ in conn.scan("foreign", part, batch_rows=2) for r in b.to_pylist()]
        assert [r["id"] for r in rows] == [0, 1, 2, 3, 4]
        assert rows[2]["document"] == "t2" and rows[2]["metadata"]["year"] == 2002
        assert conn.count("foreign", {"year": {"$gte": 2003}}) == 2
        assert conn.count("foreign", {"tags": "a"}) == 5
        got = conn.fetch("foreign", [1, 3])
        assert sorted(got.column("id").to_pylist()) == [1, 3]


def _with_keywords(batch: pa.RecordBatch, kw: list[Any]) -> pa.RecordBatch:
    i = batch.schema.get_field_index("keywords")
    return batch.set_column(i, "keywords", pa.array(kw, SPARSE_TYPE))


def test_sparse_missing_empty_and_odd_values_round_trip(tmp_path: Path) -> None:
    require_module("milvus_lite")
    schema = rich_schema("sp", id_type=IdType.INT, sparse=True)
    kw: list[Any] = [
        None,
        {"indices": [], "values": []},
        {"indices": [0, 4_294_967_294], "values": [0.0, -2.5]},  # both ends; zero kept
        {"indices": [7], "values": [float("inf")]},
    ]
    batch = _with_keywords(rich_batch(schema, n=4), kw)
    with connect(f"milvus-lite://{tmp_path / 's.db'}") as conn:
        conn.create(schema)
        conn.upsert("sp", batch)
        got = conn.fetch("sp", batch.column("id").to_pylist())
        assert got.column("keywords").to_pylist() == kw
        assert conn.describe("sp").sparse == schema.sparse


@pytest.mark.parametrize(
    ("vector", "why"),
    [
        ({"indices": [3, 1], "values": [1.0, 2.0]}, "not strictly ascending"),
        ({"indices": [1, 1], "values": [1.0, 2.0]}, "not strictly ascending"),
        ({"indices": [2**32 - 1], "values": [1.0]}, "exceeds Milvus' maximum"),
        ({"indices": [1], "values": [float("nan")]}, "NaN"),
    ],
)
def test_sparse_vectors_milvus_would_alter_or_refuse_are_data_errors(
    tmp_path: Path, vector: Any, why: str
) -> None:
    require_module("milvus_lite")
    schema = rich_schema("spbad", id_type=IdType.STRING, sparse=True)
    batch = rich_batch(schema, n=2)
    batch = _with_keywords(batch, [{"indices": [1], "values": [1.0]}, vector])
    with connect(f"milvus-lite://{tmp_path / 'b.db'}") as conn:
        conn.create(schema)
        with pytest.raises(DataError, match=why) as err:
            conn.upsert("spbad", batch)
        assert (err.value.record_id, err.value.field) == (batch.column("id")[1].as_py(), "keywords")
        assert conn.count("spbad") == 0


def test_foreign_collection_with_a_sparse_field(tmp_path: Path) -> None:
    require_module("milvus_lite")
    from pymilvus import DataType, MilvusClient

    path = tmp_path / "fsparse.db"
    client = MilvusClient(str(path))
    ms = client.create_schema(auto_id=False, enable_dynamic_field=False)
    ms.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=20)
    ms.add_field("emb", DataType.FLOAT_VECTOR, dim=2)
    ms.add_field("bag", DataType.SPARSE_FLOAT_VECTOR)
    index = client.prepare_index_params()
    index.add_index("emb", index_type="FLAT", metric_type="L2")
    index.add_index("bag", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection("fs", schema=ms, index_params=index)
    client.insert("fs", [{"pk": "a", "emb": [1.0, 2.0], "bag": {9: 0.5, 2: 1.0}}])
    client.close()
    with connect(f"milvus-lite://{path}") as conn:
        schema = conn.describe("fs")
        assert schema.sparse == (SparseField(name="bag"),)
        row = conn.fetch("fs", ["a"]).to_pylist()[0]
        assert row["bag"] == {"indices": [2, 9], "values": [1.0, 0.5]}
        batch = conn.fetch("fs", ["a"])
        kw = batch.column("bag").to_pylist()
        kw[0] = None  # this layout has no way to say "none" rather than "empty"
        i = batch.schema.get_field_index("bag")
        with pytest.raises(DataError, match="not nullable") as err:
            conn.upsert("fs", batch.set_column(i, "bag", pa.array(kw, SPARSE_TYPE)))
        assert err.value.record_id == "a"


def test_replace_with_a_schema_milvus_refuses_keeps_the_old_collection(tmp_path: Path) -> None:
    require_module("milvus_lite")
    schema = sample_schema("kept")
    with connect(f"milvus-lite://{tmp_path / 'k.db'}") as conn:
        conn.create(schema)
        conn.upsert("kept", sample_batch(schema))
        namespaced = rich_schema("kept", id_type=IdType.STRING, namespaces=True)
        with pytest.raises(ConfigError, match="namespaces"):
            conn.create(namespaced, if_exists="replace")
        assert conn.count("kept") == ROWS
