"""Every mapping either round-trips exactly or is refused naming record and field."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vecmigrate.connectors import connect
from vecmigrate.errors import DataError, SchemaMismatchError
from vecmigrate.mapping import FieldSpec, IdSpec, MappingSpec, VectorSpec, build_mapping
from vecmigrate.mapping.casts import CastRefused, cast_value
from vecmigrate.model import Capabilities, EmbeddingProvenance, IdType, Metric
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.records import metadata_rows, vectors_to_numpy
from vecmigrate.testing.data import ROWS, sample_batch, sample_ids, sample_schema

TYPES = ["string", "int64", "float64", "bool"]
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["1", "007", "-3", "1.5", "1e3", "true", "False", "nan", " 4"]),
)


def _kind(v: Any) -> str:
    return {bool: "bool", int: "int64", float: "float64", str: "string"}[type(v)]


@settings(max_examples=400, deadline=None)
@given(value=values, to=st.sampled_from(TYPES))
def test_cast_round_trips_exactly_or_is_refused(value: Any, to: str) -> None:
    try:
        out = cast_value(value, to)  # type: ignore[arg-type]
    except CastRefused:
        return
    if value is None:
        assert out is None
        return
    assert _kind(out) == to
    back = cast_value(out, _kind(value))  # type: ignore[arg-type]
    assert back == value and type(back) is type(value), (value, to, out, back)


@settings(max_examples=100, deadline=None)
@given(ints=st.lists(st.integers(min_value=-(2**40), max_value=2**40), min_size=1, max_size=30))
def test_float_field_cast_to_int_keeps_exact_values(ints: list[int]) -> None:
    assert [cast_value(float(i), "int64") for i in ints] == ints


def _dump(tmp_path: Path, id_type: IdType = IdType.STRING, metric: Metric = Metric.COSINE) -> Any:
    conn = connect(f"dump://{tmp_path / 'src'}")
    schema = sample_schema("docs", id_type=id_type, metric=metric)
    conn.create(schema)
    conn.upsert("docs", sample_batch(schema))
    conn.finalize("docs")
    return conn


def test_uuid5_ids_keep_the_original_and_round_trip(tmp_path: Path) -> None:
    src = _dump(tmp_path)
    dst = connect(f"lancedb://{tmp_path / 'lance'}")
    spec = MappingSpec(
        id=IdSpec(strategy="uuid5", original_field="source_id"),
        fields={
            "year": FieldSpec(rename="pub_year", cast="float64"),
            "note": FieldSpec(drop=True),
        },
    )
    result = copy_collection(
        src, dst, "docs", options=CopyOptions(job_path=tmp_path / "j", mapping=spec)
    )
    assert result.rows_written == ROWS and result.ok
    assert any("uuid5" in d for d in result.decisions)
    batch = dst.fetch(
        "docs",
        [
            str(uuid.uuid5(uuid.UUID(spec.id.namespace), f"docs/{i}"))
            for i in sample_ids(IdType.STRING)[:5]
        ],
    )
    metas = metadata_rows(batch, dst.describe("docs"))
    assert sorted(m["source_id"] for m in metas) == sorted(sample_ids(IdType.STRING)[:5])
    assert all(
        isinstance(m["pub_year"], float) and "year" not in m and "note" not in m for m in metas
    )


def test_hash64_ids_and_casts_that_lose_information_are_dead_lettered(tmp_path: Path) -> None:
    src = _dump(tmp_path)
    dst = connect(f"dump://{tmp_path / 'dst'}")
    spec = MappingSpec(
        id=IdSpec(strategy="hash64", original_field="orig"),
        fields={"score": FieldSpec(cast="int64")},
    )
    result = copy_collection(
        src, dst, "docs", options=CopyOptions(job_path=tmp_path / "j", mapping=spec)
    )
    dead = pq.read_table(result.dead_letter_dir)
    # score = round(i * 0.37, 3) + 0.5 has a fraction in most rows: refused, named, counted.
    assert result.dead_letters == dead.num_rows > 0
    assert set(dead.column("_field").to_pylist()) == {"score"}
    assert result.rows_written + result.dead_letters == ROWS
    assert dst.describe("docs").id_type is IdType.INT


def test_fail_policy_names_record_and_field(tmp_path: Path) -> None:
    src = _dump(tmp_path)
    spec = MappingSpec(fields={"genre": FieldSpec(cast="int64")}, on_invalid="fail")
    with pytest.raises(DataError, match="genre") as err:
        copy_collection(
            src,
            connect(f"dump://{tmp_path / 'dst'}"),
            "docs",
            options=CopyOptions(job_path=tmp_path / "j", mapping=spec),
        )
    assert err.value.record_id is not None and err.value.field == "genre"


def test_metric_translation_needs_unit_vectors_or_force(tmp_path: Path) -> None:
    schema = sample_schema("docs")
    caps = Capabilities(id_types=frozenset(IdType), metrics=frozenset(Metric))
    with pytest.raises(SchemaMismatchError, match="force_metric"):
        build_mapping(schema, caps, MappingSpec(vectors={"vector": VectorSpec(metric=Metric.L2)}))
    forced = build_mapping(
        schema,
        caps,
        MappingSpec(vectors={"vector": VectorSpec(metric=Metric.L2, force_metric=True)}),
    )
    assert any("FORCED" in d for d in forced.decisions)
    to_dot = build_mapping(
        schema, caps, MappingSpec(vectors={"vector": VectorSpec(metric=Metric.DOT)})
    )
    batch = sample_batch(schema)
    out, refused = to_dot.apply(batch)
    assert out.num_rows == 0 and len(refused) == ROWS  # sample vectors are not unit length
    normalising = build_mapping(
        schema, caps, MappingSpec(vectors={"vector": VectorSpec(metric=Metric.DOT, normalize=True)})
    )
    out, refused = normalising.apply(batch)
    assert not refused and np.allclose(
        np.linalg.norm(vectors_to_numpy(out.column("vector")), axis=1), 1
    )


def test_rename_onto_an_existing_field_is_refused() -> None:
    caps = Capabilities(id_types=frozenset(IdType), metrics=frozenset(Metric))
    with pytest.raises(SchemaMismatchError, match="published"):
        build_mapping(
            sample_schema("docs"), caps, MappingSpec(fields={"year": FieldSpec(rename="published")})
        )


def test_index_without_equivalent_is_warned_not_dropped() -> None:
    from vecmigrate.model import IndexSpec

    schema = sample_schema("docs")
    spec = MappingSpec(
        vectors={"vector": VectorSpec(index=IndexSpec(kind="ivf_pq", params={"nlist": 64}))}
    )
    caps = Capabilities(
        id_types=frozenset(IdType), metrics=frozenset(Metric), index_kinds=frozenset({"hnsw"})
    )
    mapping = build_mapping(schema, caps, spec)
    assert mapping.target.vector.index is not None and mapping.target.vector.index.kind == "hnsw"
    assert mapping.warnings and "ivf_pq" in mapping.warnings[0]


def test_published_json_schema_is_current() -> None:
    import json

    published = Path(__file__).resolve().parents[2] / "docs" / "mapping.schema.json"
    assert json.loads(published.read_text()) == MappingSpec.model_json_schema(), (
        "regenerate docs/mapping.schema.json (see README, Mapping)"
    )


field_types = st.sampled_from(["string", "int64", "float64", "bool"])


def _value_for(kind: str) -> st.SearchStrategy[Any]:
    return {
        "string": st.text(max_size=6) | st.sampled_from(["12", "true", "1.5"]),
        "int64": st.integers(-(2**60), 2**60),
        "float64": st.floats(allow_nan=False, allow_infinity=False),
        "bool": st.booleans(),
    }[kind]


@st.composite
def schemas_rows_and_casts(draw: Any) -> tuple[Any, list[dict[str, Any]], dict[str, str]]:
    from vecmigrate.model import CollectionSchema, MetadataField, VectorField

    kinds = draw(st.lists(field_types, min_size=1, max_size=4))
    fields = tuple(MetadataField(name=f"f{i}", type=k) for i, k in enumerate(kinds))  # type: ignore[arg-type]
    schema = CollectionSchema(name="c", vectors=(VectorField(dim=2),), metadata=fields)
    rows = [
        {f.name: draw(st.none() | _value_for(f.type)) for f in fields}
        for _ in range(draw(st.integers(1, 6)))
    ]
    casts = {f.name: draw(field_types) for f in fields}
    return schema, rows, casts


@settings(max_examples=150, deadline=None)
@given(case=schemas_rows_and_casts())
def test_random_schema_mappings_round_trip_or_refuse(case: Any) -> None:
    """Forward (cast) then backward (cast back): every kept record comes back identical."""
    from vecmigrate.records import build_batch

    schema, rows, casts = case
    caps = Capabilities(id_types=frozenset(IdType), metrics=frozenset(Metric))
    batch = build_batch(
        schema,
        [str(i) for i in range(len(rows))],
        {"vector": np.ones((len(rows), 2))},
        metadata=rows,
    )
    forward = build_mapping(
        schema, caps, MappingSpec(fields={k: FieldSpec(cast=v) for k, v in casts.items()})
    )
    mapped, refused = forward.apply(batch)
    back_spec = MappingSpec(fields={f.name: FieldSpec(cast=f.type) for f in schema.metadata})
    back = build_mapping(forward.target, caps, back_spec)
    restored, refused_back = back.apply(mapped)
    assert not refused_back, refused_back
    kept = [i for i in range(len(rows)) if i not in {r.row for r in refused}]
    got = metadata_rows(restored, back.target)
    want = [{k: v for k, v in rows[i].items() if v is not None} for i in kept]
    assert got == want
    for g, w in zip(got, want, strict=True):
        assert all(type(g[k]) is type(w[k]) for k in w)


@settings(max_examples=150, deadline=None)
@given(case=schemas_rows_and_casts(), rename=st.booleans(), original=st.booleans())
def test_column_path_equals_the_per_record_path(case: Any, rename: bool, original: bool) -> None:
    """Mapping whole columns gives the batch and refusals the per-record path gives."""
    from unittest import mock

    from vecmigrate.mapping import columns
    from vecmigrate.mapping.spec import IdSpec
    from vecmigrate.records import build_batch

    schema, rows, casts = case
    caps = Capabilities(id_types=frozenset(IdType), metrics=frozenset(Metric))
    batch = build_batch(
        schema,
        [str(i) for i in range(len(rows))],
        {"vector": np.ones((len(rows), 2))},
        metadata=rows,
    )
    spec = MappingSpec(
        fields={
            k: FieldSpec(cast=v, rename=f"r_{k}" if rename else None) for k, v in casts.items()
        },
        id=IdSpec(
            strategy="uuid5" if original else "keep", original_field="orig" if original else None
        ),
    )
    by_columns, refused_c = build_mapping(schema, caps, spec).apply(batch)
    with (
        mock.patch.object(columns, "needs_rows", return_value=True),
        mock.patch("vecmigrate.mapping.transform.needs_rows", return_value=True),
    ):
        by_rows, refused_r = build_mapping(schema, caps, spec).apply(batch)
    assert [(r.row, r.field) for r in refused_c] == [(r.row, r.field) for r in refused_r]
    assert by_columns.equals(by_rows), (by_columns.to_pylist(), by_rows.to_pylist())


def test_a_mapping_naming_a_vector_the_source_lacks_is_refused() -> None:
    from vecmigrate.errors import SchemaMismatchError
    from vecmigrate.model import CollectionSchema, VectorField

    schema = CollectionSchema(name="docs", vectors=(VectorField(dim=2),))
    caps = Capabilities(id_types=frozenset(IdType), metrics=frozenset(Metric))
    with pytest.raises(
        SchemaMismatchError, match=r"vector fields \['nosuch'\].*its vector fields: vector"
    ):
        build_mapping(schema, caps, MappingSpec(vectors={"nosuch": VectorSpec(drop=True)}))


def test_embedding_provenance_follows_a_renamed_vector_and_leaves_with_a_dropped_one() -> None:
    """What made the vectors travels under the target's field name and is named in the
    decisions (the application's queries must be embedded alike); a dropped field's goes."""
    made = EmbeddingProvenance(vector_field="vector", model="openai/text-embedding-3-small")
    other = EmbeddingProvenance(vector_field="extra", model="minilm")
    schema = sample_schema("docs").replace(embedding=(made, other))
    caps = Capabilities(id_types=frozenset(IdType), metrics=frozenset(Metric), named_vectors=True)
    spec = MappingSpec(vectors={"vector": VectorSpec(rename="emb"), "extra": VectorSpec(drop=True)})
    mapping = build_mapping(schema.replace(vectors=(*schema.vectors, _extra(schema))), caps, spec)
    (kept,) = mapping.target.embedding
    assert kept.vector_field == "emb" and kept.model == made.model
    assert any(d.startswith("emb: vectors made by openai/") for d in mapping.decisions)
    assert not any("minilm" in d for d in mapping.decisions)


def _extra(schema: Any) -> Any:
    return schema.vector.model_copy(update={"name": "extra"})
