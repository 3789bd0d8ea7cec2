"""diff names exactly the records that differ, on real engines (dump and LanceDB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from vecmigrate.connectors import Connector, connect
from vecmigrate.model import CollectionSchema, VectorField
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.records import build_batch
from vecmigrate.testing.data import ROWS, sample_batch, sample_ids, sample_schema
from vecmigrate.verify.diff import diff_collections
from vecmigrate.verify.digest import id_bucket


def test_diff_finds_deleted_changed_and_extra_records(tmp_path: Path) -> None:
    src = connect(f"dump://{tmp_path / 'src'}")
    schema = sample_schema("docs")
    src.create(schema)
    src.upsert("docs", sample_batch(schema))
    src.finalize("docs")
    dst = connect(f"lancedb://{tmp_path / 'lance'}")
    copy_collection(src, dst, "docs", options=CopyOptions(job_path=tmp_path / "j.sqlite"))
    assert diff_collections(src, dst, "docs").equal

    ids = sample_ids(schema.id_type)
    dst.delete("docs", [ids[1], ids[50], ids[99]])
    batch = dst.fetch("docs", [ids[7]])
    meta = batch.column("metadata").to_pylist()
    meta[0]["year"] = 1800
    changed = batch.set_column(
        batch.schema.get_field_index("metadata"),
        "metadata",
        pa.array(meta, type=batch.schema.field("metadata").type),
    )
    dst.upsert("docs", changed)
    extra = sample_batch(schema, seed=5).slice(0, 1)
    extra = extra.set_column(0, "id", pa.array(["brand-new"]))
    dst.upsert("docs", extra)

    result = diff_collections(src, dst, "docs")
    assert sorted(result.missing) == sorted([ids[1], ids[50], ids[99]])
    assert result.extra == ["brand-new"]
    assert [(c.id, c.fields) for c in result.changed] == [(ids[7], ["metadata.year"])]
    assert result.source_count == ROWS and result.target_count == ROWS - 3 + 1


def _dump(path: Path, schema: CollectionSchema, ids: list[str], vec: np.ndarray) -> Connector:
    conn = connect(f"dump://{path}")
    conn.create(schema)
    conn.upsert(schema.name, build_batch(schema, ids, {"vector": vec}))
    conn.finalize(schema.name)
    return conn


def _same_bucket(ids: list[str]) -> tuple[int, int]:
    buckets = id_bucket(ids).tolist()
    return next((i, j) for i in range(len(ids)) for j in range(i) if buckets[i] == buckets[j])


def test_diff_finds_two_vectors_swapped_within_a_bucket(tmp_path: Path) -> None:
    src = connect(f"dump://{tmp_path / 'src'}")
    schema = sample_schema("docs")
    src.create(schema)
    batch = sample_batch(schema)
    src.upsert("docs", batch)
    src.finalize("docs")
    dst = connect(f"lancedb://{tmp_path / 'lance'}")
    copy_collection(src, dst, "docs", options=CopyOptions(job_path=tmp_path / "j.sqlite"))
    ids = [str(i) for i in batch.column("id").to_pylist()]
    i, j = _same_bucket(ids)
    rows = dst.fetch("docs", [ids[i], ids[j]])
    order = [str(x) for x in rows.column("id").to_pylist()]
    vectors = rows.column("vector").take([1, 0])  # each record gets the other's vector
    dst.upsert("docs", rows.set_column(rows.schema.get_field_index("vector"), "vector", vectors))
    result = diff_collections(src, dst, "docs")
    assert not result.equal and not result.missing and not result.extra
    assert [(c.id, c.fields) for c in result.changed] == [(k, ["vector"]) for k in sorted(order)]


def test_nan_and_inf_records_are_labelled_missing_or_changed(tmp_path: Path) -> None:
    schema = CollectionSchema(name="docs", vectors=(VectorField(dim=8),))
    ids = [f"r{i}" for i in range(40)]
    vec = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    vec[3, 2], vec[4, 0], vec[5, 5] = np.nan, np.inf, np.nan
    src = _dump(tmp_path / "src", schema, ids, vec)
    assert diff_collections(src, _dump(tmp_path / "same", schema, ids, vec.copy()), "docs").equal
    other = vec.copy()
    other[3] = 1.0  # NaN replaced by a finite vector
    other[5, 5] = np.inf  # NaN became Inf
    other[6, 1] = np.nan  # a finite vector became NaN
    keep = [k for k in range(40) if k != 4]  # the Inf record dropped
    dst = _dump(tmp_path / "dst", schema, [ids[k] for k in keep], other[keep])
    result = diff_collections(src, dst, "docs")
    assert result.missing == ["r4"] and result.extra == [] and result.duplicates == []
    assert [(c.id, c.fields) for c in result.changed] == [
        (r, ["vector"]) for r in ("r3", "r5", "r6")
    ]


def test_duplicate_ids_make_the_diff_unequal_and_are_named(tmp_path: Path) -> None:
    schema = CollectionSchema(name="docs", vectors=(VectorField(dim=8),))
    ids = [f"r{i}" for i in range(11)]
    vec = np.random.default_rng(1).normal(size=(12, 8)).astype(np.float32)
    src = connect(f"lancedb://{tmp_path / 'lance'}")
    src.create(schema)
    src.begin_bulk_load("docs")  # appends without merging by id, as tables of other tools may
    src.upsert("docs", build_batch(schema, [*ids, "r5"], {"vector": vec}))
    src = connect(f"lancedb://{tmp_path / 'lance'}")  # the load is never finalized
    assert src.count("docs") == 12
    dst = _dump(tmp_path / "dst", schema, ids, vec[:11])
    result = diff_collections(src, dst, "docs")
    assert not result.equal and (result.source_count, result.target_count) == (12, 11)
    assert [(d.id, d.source, d.target) for d in result.duplicates] == [("r5", 2, 1)]
    assert result.to_json()["duplicates"] == [{"id": "r5", "source": 2, "target": 1}]
    assert result.to_table().column("kind").to_pylist() == ["duplicate"]
