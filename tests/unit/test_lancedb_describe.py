"""describe() of a LanceDB table made by another tool reads its layout as it is (ids, text,
vectors and metadata wherever they are), says where the metric came from, and reads and
writes the table through its own column names."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import require_module
from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import IdType, Metric
from vecmigrate.records import metadata_rows

DEFAULT = "LanceDB default for an un-indexed table (l2)"
UNIT = "the 3 vectors sampled are unit length, so cosine, dot and l2 rank alike"


def _vectors(n: int, dim: int = 8, seed: int = 0) -> pa.FixedSizeListArray:
    values = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), dim)


def _table(path: Path, name: str, columns: dict[str, Any]) -> None:
    lancedb = require_module("lancedb")
    lancedb.connect(str(path)).create_table(name, pa.table(columns))


def _rows(uri: str, name: str, ids: list[Any]) -> dict[Any, tuple[Any, dict[str, Any]]]:
    """id -> (document, metadata) as vecmigrate reads the table."""
    with connect(uri) as conn:
        schema = conn.describe(name)
        batch = conn.fetch(name, ids)
    docs = batch.column("document").to_pylist() if schema.has_document else [None] * len(ids)
    meta = metadata_rows(batch, schema)
    return dict(zip(batch.column("id").to_pylist(), zip(docs, meta, strict=True), strict=True))


def test_describe_foreign_table(tmp_path: Path) -> None:
    _table(
        tmp_path / "l",
        "items",
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "document": ["a", "b", "c"],
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(np.full(3 * 8, 8**-0.5, dtype=np.float32)), 8
            ),
            "year": pa.array([1, 2, 3], pa.int32()),
            "tags": [["x"], [], ["y"]],
        },
    )
    conn = connect(f"lancedb://{tmp_path / 'l'}")
    schema = conn.describe("items")
    assert schema.id_type is IdType.INT and schema.has_document
    v = schema.vector
    assert (v.name, v.dim, v.metric) == ("vector", 8, Metric.L2)
    assert v.metric_source == f"{DEFAULT}; {UNIT}"
    assert schema.engine_settings["vector.metric"] == v.metric_source
    assert {(m.name, m.type) for m in schema.metadata} == {
        ("year", "int64"),
        ("tags", "list<string>"),
    }
    part = conn.partitions("items", 4)
    batch = next(iter(conn.scan("items", part[0], schema=schema)))[0]
    assert batch.column("id").to_pylist() == [1, 2, 3]
    assert batch.column("metadata").to_pylist() == [
        {"year": 1, "tags": ["x"]},
        {"year": 2, "tags": []},
        {"year": 3, "tags": ["y"]},
    ]


def test_langchain_layout_is_read_as_it_is(tmp_path: Path) -> None:
    _table(
        tmp_path / "l",
        "lc",
        {
            "id": ["a", "b", "c"],
            "text": ["one", "two", "three"],
            "vector": _vectors(3),
            "metadata": pa.array(
                [{"source": "x.md", "page": 1}, {"source": "y.md", "page": 2}, None],
                # the field order LangChain writes (pyarrow < 24 sorts inferred struct fields)
                pa.struct([("source", pa.string()), ("page", pa.int64())]),
            ),
        },
    )
    uri = f"lancedb://{tmp_path / 'l'}"
    with connect(uri) as conn:
        schema = conn.describe("lc")
        assert schema.has_document and schema.id_type is IdType.STRING
        assert [(m.name, m.type) for m in schema.metadata] == [
            ("source", "string"),
            ("page", "int64"),
        ]
        layout = schema.engine_settings["lancedb.layout"]
        assert (layout["id"], layout["document"], layout["metadata"]) == ("id", "text", "metadata")
        assert conn.count("lc", {"page": {"$gte": 2}}) == 1
        q = np.asarray(_vectors(1).values).reshape(1, 8)
        ids, _ = conn.search("lc", q, 3, filter={"source": "x.md"})
        assert ids == [["a"]]
    assert _rows(uri, "lc", ["a", "c"]) == {
        "a": ("one", {"source": "x.md", "page": 1}),
        "c": ("three", {}),
    }


def test_json_text_metadata_becomes_typed_fields_and_filters(tmp_path: Path) -> None:
    meta = [{"source": "x", "page": 1, "n": None}, {"source": "y", "page": 2.5}, {}]
    _table(
        tmp_path / "l",
        "js",
        {
            "pk": pa.array([10, 20, 30], pa.int32()),
            "page_content": ["p", "q", "r"],
            "embedding": _vectors(3),
            "metadata": [json.dumps(m) for m in meta],
        },
    )
    uri = f"lancedb://{tmp_path / 'l'}"
    with connect(uri) as conn:
        schema = conn.describe("js")
        assert schema.id_type is IdType.INT and schema.vector.name == "embedding"
        assert {m.name: m.type for m in schema.metadata}["source"] == "string"
        assert conn.count("js", {"source": {"$in": ["x", "y"]}}) == 2
        q = np.asarray(_vectors(1).values).reshape(1, 8)
        assert conn.search("js", q, 3, filter={"source": "y"})[0] == [[20]]
    got = _rows(uri, "js", [10, 20, 30])
    assert got[10] == ("p", {"source": "x", "page": 1, "n": None})
    assert got[20] == ("q", {"source": "y", "page": 2.5})
    assert got[30] == ("r", {})


def test_uuid_ids_and_parameters(tmp_path: Path) -> None:
    keys = [uuid.UUID(int=i + 1) for i in range(3)]
    _table(
        tmp_path / "l",
        "u",
        {
            "uid": pa.array([k.bytes for k in keys], pa.binary(16)),
            "doc_id": ["d1", "d2", "d3"],
            "content": ["a", "b", "c"],
            "text": ["x", "y", "z"],
            "vector": _vectors(3),
            "other": _vectors(3, 4, seed=1),
        },
    )
    base = f"lancedb://{tmp_path / 'l'}"
    with connect(base) as conn, pytest.raises(ConfigError) as err:
        conn.describe("u")
    assert "'text'" in str(err.value) and "'content'" in str(err.value)
    assert "document_field" in str(err.value.hint)
    uri = f"{base}?id_field=uid&document_field=content&vector_field=vector"
    with connect(uri) as conn:
        schema = conn.describe("u")
        assert [v.name for v in schema.vectors] == ["vector"]
        assert {m.name for m in schema.metadata} == {"doc_id", "text"}
        assert "other.skipped" in schema.engine_settings
        batch = conn.fetch("u", [str(keys[1])])
    assert batch.column("id").to_pylist() == [str(keys[1])]
    assert batch.column("document").to_pylist() == ["b"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # create_index(metric=...): older API
def test_index_distance_type_wins(tmp_path: Path) -> None:
    lancedb = require_module("lancedb")
    n = 300
    db = lancedb.connect(str(tmp_path / "l"))
    table = db.create_table("idx", pa.table({"_id": list(range(n)), "vector": _vectors(n)}))
    table.create_index(
        metric="dot", vector_column_name="vector", index_type="IVF_FLAT", num_partitions=2
    )
    with connect(f"lancedb://{tmp_path / 'l'}") as conn:
        v = conn.describe("idx").vector
    assert v.metric is Metric.DOT and v.index is not None and v.index.kind == "ivf_flat"
    assert v.metric_source is not None and "index" in v.metric_source


def test_an_unindexed_tables_metric_is_unknown_unless_its_vectors_are_unit(
    tmp_path: Path,
) -> None:
    """Each query of an un-indexed table names its own metric: only unit vectors, which
    every metric ranks alike, take LanceDB's default l2 without the mapping stating one.
    Rows without a vector are not sampled; an empty table has nothing to rank."""
    raw = np.random.default_rng(3).normal(size=(40, 8)).astype(np.float32)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    lancedb = require_module("lancedb")
    for name, values in (("raw", raw), ("unit", unit)):
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), 8)
        mask = pa.array([i % 5 == 0 for i in range(40)])
        vectors = pa.FixedSizeListArray.from_arrays(vectors.values, 8, mask=mask)
        data = pa.table({"id": list(range(40)), "vector": vectors})
        lancedb.connect(str(tmp_path / "l")).create_table(name, data, on_bad_vectors="null")
    schema = pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), 8))])
    lancedb.connect(str(tmp_path / "l")).create_table("empty", schema=schema)
    with connect(f"lancedb://{tmp_path / 'l'}") as conn:
        raw_v, unit_v, empty_v = (conn.describe(n).vector for n in ("raw", "unit", "empty"))
    assert not raw_v.metric_known
    assert unit_v.metric is Metric.L2 and unit_v.metric_known
    assert "the 32 vectors sampled are unit length" in (unit_v.metric_source or "")
    assert (empty_v.metric, empty_v.metric_source) == (Metric.L2, DEFAULT)


def test_reuse_writes_the_tables_own_columns(tmp_path: Path) -> None:
    _table(
        tmp_path / "l",
        "app",
        {
            "pk": ["a"],
            "text": ["one"],
            "vector": _vectors(1),
            "metadata": pa.array(
                [{"page": 1, "source": "x"}],
                pa.struct([("page", pa.int32()), ("source", pa.string())]),
            ),
            "score": pa.array([0.5], pa.float32()),
        },
    )
    uri = f"lancedb://{tmp_path / 'l'}"
    with connect(uri) as conn:
        schema = conn.describe("app")
        conn.create(schema, if_exists="reuse")
        batch = conn.fetch("app", ["a"])
        rows = batch.to_pylist()
        rows[0]["id"] = "b"
        rows[0]["metadata"] = {"page": 7, "source": "y", "score": 0.25}
        conn.upsert("app", pa.RecordBatch.from_pylist(rows, schema=batch.schema))
        for page, score, why in ((2**40, 0.25, "does not fit"), (3, 0.1, "would change")):
            rows[0]["metadata"] = {"page": page, "source": "z", "score": score}
            with pytest.raises(DataError, match=why):
                conn.upsert("app", pa.RecordBatch.from_pylist(rows, schema=batch.schema))
        wrong = schema.replace(vectors=(schema.vector.model_copy(update={"dim": 9}),))
        with pytest.raises(ConfigError, match="holds 8 dimensions"):
            conn.create(wrong, if_exists="reuse")
    lancedb = require_module("lancedb")
    raw = lancedb.connect(str(tmp_path / "l")).open_table("app").to_arrow()
    assert raw.column_names == ["pk", "text", "vector", "metadata", "score"]
    assert raw.schema.field("metadata").type.field("page").type == pa.int32()
    got = {r["pk"]: r for r in raw.to_pylist()}
    assert got["b"]["metadata"] == {"page": 7, "source": "y"} and got["b"]["score"] == 0.25
