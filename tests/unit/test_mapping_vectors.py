"""Named and sparse vectors meeting a target that cannot store them: refused until the
mapping drops them explicitly; kept vectors and sparse fields survive mapped copies."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from vecmigrate.connectors import connect, connector_class
from vecmigrate.errors import SchemaMismatchError
from vecmigrate.mapping import MappingSpec, build_mapping
from vecmigrate.mapping.spec import FieldSpec, VectorSpec
from vecmigrate.model import IdType
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.testing.data import rich_batch, rich_schema


def _source(tmp_path: Path) -> pa.RecordBatch:
    schema = rich_schema("docs", id_type=IdType.STRING, named=True, sparse=True)
    src = connect(f"dump://{tmp_path / 'src'}")
    src.create(schema)
    batch = rich_batch(schema)
    src.upsert("docs", batch)
    src.finalize("docs")
    return batch


def test_a_target_without_named_or_sparse_vectors_needs_an_explicit_drop(
    tmp_path: Path,
) -> None:
    _source(tmp_path)
    src = connect(f"dump://{tmp_path / 'src'}")
    caps = connector_class("sqlite-vec").capabilities  # one vector per record, no sparse
    schema = src.describe("docs")
    with pytest.raises(SchemaMismatchError, match="2 vector fields") as err:
        build_mapping(schema, caps)
    assert "drop: true" in str(err.value)
    spec = MappingSpec(vectors={"title": VectorSpec(drop=True)})
    with pytest.raises(SchemaMismatchError, match="sparse vectors of 'docs' \\(keywords\\)"):
        build_mapping(schema, caps, spec)
    spec = MappingSpec(vectors={"title": VectorSpec(drop=True), "keywords": VectorSpec(drop=True)})
    mapping = build_mapping(schema, caps, spec)
    assert [v.name for v in mapping.target.vectors] == ["vector"] and not mapping.target.sparse
    assert "title: dropped (mapping)" in mapping.decisions
    assert "keywords: sparse field dropped (mapping)" in mapping.decisions


def test_sparse_vectors_survive_a_mapped_copy(tmp_path: Path) -> None:
    batch = _source(tmp_path)
    src, dst = connect(f"dump://{tmp_path / 'src'}"), connect(f"dump://{tmp_path / 'dst'}")
    spec = MappingSpec(fields={"genre": FieldSpec(rename="category")})
    result = copy_collection(
        src, dst, "docs", options=CopyOptions(job_path=tmp_path / "j", mapping=spec)
    )
    assert result.rows_written == batch.num_rows
    got = pa.Table.from_batches(
        [b for p in dst.partitions("docs", 1) for b, _ in dst.scan("docs", p)]
    ).sort_by("id")
    want = pa.Table.from_batches([batch]).sort_by("id")
    assert got.column("keywords").to_pylist() == want.column("keywords").to_pylist()
    assert got.column("title").to_pylist() == want.column("title").to_pylist()
