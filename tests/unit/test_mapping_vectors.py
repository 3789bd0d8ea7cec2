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
from vecmigrate.model import IdType, Metric, SparseField
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


@pytest.mark.parametrize("engine", ["milvus-lite", "qdrant"])
def test_a_sparse_metric_the_target_cannot_search_with_is_refused_until_forced(
    engine: str,
) -> None:
    """Milvus and Qdrant score sparse vectors by dot product only: an l2 sparse field
    (a pgvector sparsevec_l2_ops index) would be searched differently without a word."""
    caps = connector_class(engine).capabilities
    l2 = rich_schema("docs", id_type=IdType.STRING, sparse=True)
    l2 = l2.replace(sparse=(SparseField(name="keywords", metric=Metric.L2),))
    with pytest.raises(SchemaMismatchError, match="by dot only, not l2") as err:
        build_mapping(l2, caps)
    assert "force_metric: true" in (err.value.hint or "")
    with pytest.raises(SchemaMismatchError, match="l2 -> dot changes"):
        build_mapping(l2, caps, MappingSpec(vectors={"keywords": VectorSpec(metric=Metric.DOT)}))
    forced = VectorSpec(metric=Metric.DOT, force_metric=True)
    mapping = build_mapping(l2, caps, MappingSpec(vectors={"keywords": forced}))
    assert mapping.target.sparse[0].metric is Metric.DOT
    assert any("l2 -> dot FORCED" in d for d in mapping.decisions)
    dot = l2.replace(sparse=(SparseField(name="keywords"),))
    assert build_mapping(dot, caps).target.sparse == dot.sparse  # kept as it is


def test_a_sparse_field_takes_no_rename_or_index_in_a_mapping() -> None:
    schema = rich_schema("docs", id_type=IdType.STRING, sparse=True)
    caps = connector_class("pgvector").capabilities
    spec = MappingSpec(vectors={"keywords": VectorSpec(rename="kw")})
    with pytest.raises(SchemaMismatchError, match="not rename"):
        build_mapping(schema, caps, spec)
