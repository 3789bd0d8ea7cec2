"""diff names exactly the records that differ, on real engines (dump and LanceDB)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from tests.conformance.data import ROWS, sample_batch, sample_ids, sample_schema
from vecmigrate.connectors import connect
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.verify.diff import diff_collections


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
