"""Qdrant through qdrant-client's local mode (no Qdrant server can run on this machine)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import require_module
from vecmigrate.connectors import Connector, connect
from vecmigrate.model import IdType
from vecmigrate.testing.suite import ConnectorConformance


class TestQdrantLocalStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[Connector]:
        require_module("qdrant_client")
        conn = connect(f"qdrant+local://{tmp_path / 'qdrant'}")
        yield conn
        conn.close()


class TestQdrantLocalIntIds(TestQdrantLocalStringIds):
    id_type = IdType.INT


DIM = 4


def _uuids(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [str(uuid.UUID(int=int(rng.integers(2**62)) << 64 | i)) for i in range(n)]


def _point(pid: str, year: int) -> Any:
    from qdrant_client import models

    vector = np.random.default_rng(year).normal(size=DIM).tolist()
    return models.PointStruct(id=pid, vector={"emb": vector}, payload={"year": year})


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Connector]:
    require_module("qdrant_client")
    conn = connect(f"qdrant+local://{tmp_path / 'qdrant'}")
    yield conn
    conn.close()


def _foreign(conn: Connector, ids: list[str]) -> None:
    """A collection as qdrant-client's own API writes it: UUID point ids, plain payload,
    a named vector (collections with one unnamed vector: tests/e2e/test_foreign_collections)."""
    from qdrant_client import models

    client = conn.client  # type: ignore[attr-defined]
    params = models.VectorParams(size=DIM, distance=models.Distance.DOT)
    client.create_collection("foreign", vectors_config={"emb": params})
    client.upsert("foreign", points=[_point(pid, 2000 + n) for n, pid in enumerate(ids)])


def _years(conn: Connector, ids: list[str]) -> dict[str, int]:
    rows = conn.fetch("foreign", ids).to_pylist()
    return {r["id"]: r["metadata"]["year"] for r in rows}


def test_foreign_uuid_points_are_read_written_and_deleted_by_their_own_ids(
    local: Connector,
) -> None:
    ids = _uuids(20, seed=1)
    _foreign(local, ids)
    schema = local.describe("foreign")
    assert schema.id_type is IdType.UUID
    assert schema.engine_settings["point_ids"] == "native"
    assert _years(local, ids[:3]) == {ids[0]: 2000, ids[1]: 2001, ids[2]: 2002}

    # An update through vecmigrate lands on the same point: no second copy of the record.
    batch = local.fetch("foreign", [ids[5]])
    year = pa.array([{"year": 1}], batch.schema.field("metadata").type)
    local.upsert(
        "foreign", batch.set_column(batch.schema.get_field_index("metadata"), "metadata", year)
    )
    assert local.count("foreign") == 20 and _years(local, [ids[5]]) == {ids[5]: 1}
    client = local.client  # type: ignore[attr-defined]
    assert [str(p.id) for p in client.retrieve("foreign", ids=[ids[5]])] == [ids[5]]

    local.delete("foreign", ids[:2])
    assert local.count("foreign") == 18 and _years(local, ids[:3]) == {ids[2]: 2002}
    # A point vecmigrate wrote keeps the collection's id rule on the next describe.
    again = local.describe("foreign")
    assert again.id_type is IdType.UUID and again.engine_settings["point_ids"] == "native"


def test_records_are_found_wherever_either_id_rule_put_them(local: Connector) -> None:
    """A UUID-id collection made now stores points under their ids; one written by an older
    version (uuid5(name/id), original id in the payload) is still fetched and deleted."""
    from qdrant_client import models

    from vecmigrate.connectors.qdrant._records import ID_KEY, point_ids
    from vecmigrate.model import CollectionSchema, VectorField

    schema = CollectionSchema(name="foreign", id_type=IdType.UUID, vectors=(VectorField(dim=DIM),))
    local.create(schema)
    own, old, other = _uuids(3, seed=2)
    ids_col = pa.array([own], pa.string())
    vec = pa.array([[0.5] * DIM], pa.list_(pa.float32(), DIM))
    extra = pa.array([None], pa.string())
    local.upsert(
        "foreign", pa.RecordBatch.from_arrays([ids_col, vec, extra], schema=schema.arrow_schema())
    )
    client = local.client  # type: ignore[attr-defined]
    assert [str(p.id) for p in client.retrieve("foreign", ids=[own])] == [own]
    hashed = str(uuid.uuid5(uuid.NAMESPACE_URL, f"foreign/{old}"))
    stored = local.describe("foreign")
    assert point_ids("foreign", stored, [old]) == [old]  # where a write goes now
    client.upsert(
        "foreign",
        points=[
            models.PointStruct(id=hashed, vector={"vector": [1.0] * DIM}, payload={ID_KEY: old}),
            # Point ``other`` holds record "x": asking for id ``other`` must not return it.
            models.PointStruct(id=other, vector={"vector": [1.0] * DIM}, payload={ID_KEY: "x"}),
        ],
    )
    got = local.fetch("foreign", [own, old, other])
    assert sorted(got.column("id").to_pylist()) == sorted([own, old])
    local.delete("foreign", [own, old, other])
    assert local.count("foreign") == 1  # record "x" stays
    assert local.fetch("foreign", [own, old]).num_rows == 0


def test_describe_reads_the_distance_a_recreated_collection_searches_with(
    local: Connector,
) -> None:
    """The recorded schema says cosine; the collection was recreated (by hand, keeping
    vecmigrate's metadata) with Euclid distance: describe reports l2 and says why."""
    from qdrant_client import models

    from vecmigrate.connectors.qdrant import SCHEMA_KEY
    from vecmigrate.model import CollectionSchema, Metric, VectorField

    recorded = CollectionSchema(name="moved", vectors=(VectorField(dim=DIM),))
    local.client.create_collection(  # type: ignore[attr-defined]
        "moved",
        vectors_config={"vector": models.VectorParams(size=DIM, distance=models.Distance.EUCLID)},
        metadata={SCHEMA_KEY: recorded.to_json()},
    )
    schema = local.describe("moved")
    assert schema.vector.metric is Metric.L2
    assert "recorded cosine" in schema.engine_settings["vector.metric"]
