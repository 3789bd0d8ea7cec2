"""describe() of a LanceDB table made by another tool infers its schema and says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from tests.conftest import require_module
from vecmigrate.connectors import connect
from vecmigrate.model import IdType, Metric


def test_describe_foreign_table(tmp_path: Path) -> None:
    lancedb = require_module("lancedb")
    db = lancedb.connect(str(tmp_path / "l"))
    vec = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(3 * 8, dtype=np.float32)), 8)
    db.create_table(
        "items",
        pa.table(
            {
                "id": pa.array([1, 2, 3], pa.int64()),
                "document": ["a", "b", "c"],
                "vector": vec,
                "year": pa.array([1, 2, 3], pa.int32()),
                "tags": [["x"], [], ["y"]],
            }
        ),
    )
    conn = connect(f"lancedb://{tmp_path / 'l'}")
    schema = conn.describe("items")
    assert schema.id_type is IdType.INT and schema.has_document
    assert (schema.vector.name, schema.vector.dim, schema.vector.metric) == (
        "vector",
        8,
        Metric.COSINE,
    )
    assert "assumed" in schema.engine_settings["vector.metric"]
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
