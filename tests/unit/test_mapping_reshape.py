"""Namespaces through a mapping, nested objects flattened and back, ISO dates <-> epochs:
each round-trips exactly (same digest) or is refused naming record and field."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.conftest import require_module
from tests.e2e.helpers import json_of, run_cli
from vecmigrate.connectors import connect
from vecmigrate.errors import DataError, SchemaMismatchError
from vecmigrate.mapping import FieldSpec, MappingSpec, build_mapping
from vecmigrate.mapping.casts import CastRefused, epoch_to_iso, iso_to_epoch
from vecmigrate.mapping.reshape import FieldRefused, flatten_value, unflatten_row
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    MetadataField,
    Metric,
    VectorField,
)
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.records import build_batch, metadata_rows, vectors_to_numpy
from vecmigrate.testing.data import NAMESPACES, ROWS, rich_schema, sample_batch
from vecmigrate.verify.diff import diff_collections

ZONES = [None, timezone.utc, timezone(timedelta(hours=2))]
NO_NS = Capabilities(id_types=frozenset(IdType), metrics=frozenset(Metric))
WITH_NS = NO_NS.model_copy(update={"namespaces": True})


# -- property tests ----------------------------------------------------------------------------
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
leaves = scalars | st.none() | st.lists(scalars, max_size=3) | st.lists(st.none(), max_size=1)
keys = st.text(alphabet="ab.c_", max_size=3)
objects = st.recursive(
    st.dictionaries(keys, leaves, max_size=3),
    lambda inner: st.dictionaries(keys, inner | leaves | st.lists(inner, max_size=1), max_size=3),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(obj=objects | scalars)
def test_flatten_then_unflatten_round_trips_or_refuses(obj: Any) -> None:
    try:
        flat = flatten_value("m", obj, ".")
    except FieldRefused as exc:
        assert exc.field.startswith("m") and exc.reason
        return
    assert all(k.startswith("m.") for k in flat)
    assert all(v is not None and not isinstance(v, dict) for v in flat.values())
    assert unflatten_row({"other": 1, **flat}, ".") == {"other": 1, "m": obj}


def test_flatten_refusals_name_the_path() -> None:
    for obj, where in [
        ({"a.b": 1}, "m"),
        ({"a": {}}, "m.a"),
        ({"a": None}, "m.a"),
        ({"a": [{"x": 1}]}, "m.a"),
        ([1, 2], "m"),
    ]:
        with pytest.raises(FieldRefused) as exc:
            flatten_value("m", obj, ".")
        assert exc.value.field == where, obj
    with pytest.raises(FieldRefused, match="exists too"):
        unflatten_row({"m": 1, "m.a": 2}, ".")
    with pytest.raises(FieldRefused, match="both a value and an object"):
        unflatten_row({"m.a": 1, "m.a.b": 2}, ".")


@settings(max_examples=300, deadline=None)
@given(
    epoch=st.integers(-(2**40), 2**40) | st.integers(-62_135_596_800_000, 253_402_300_799_999),
    kind=st.sampled_from(["date", "timestamp"]),
    unit=st.sampled_from(["s", "ms"]),
)
def test_epochs_round_trip_through_iso_or_are_refused(epoch: int, kind: str, unit: str) -> None:
    try:
        text = epoch_to_iso(epoch, kind, unit)
    except CastRefused:
        return
    assert iso_to_epoch(text, kind, unit) == epoch


@settings(max_examples=300, deadline=None)
@given(
    text=st.datetimes(timezones=st.sampled_from(ZONES)).map(lambda d: d.isoformat())
    | st.datetimes(timezones=st.just(timezone.utc)).map(lambda d: d.isoformat()[:-6] + "Z")
    | st.dates().map(str)
    | st.text(max_size=12)
    | st.sampled_from(["2024-01-31T10:00:00Z", "2024-01-31T10:00:00.250Z", "2024-02-30"]),
    kind=st.sampled_from(["date", "timestamp"]),
    unit=st.sampled_from(["s", "ms"]),
)
def test_iso_text_round_trips_through_epochs_or_is_refused(text: str, kind: str, unit: str) -> None:
    try:
        epoch = iso_to_epoch(text, kind, unit)
    except CastRefused:
        return
    assert epoch_to_iso(epoch, kind, unit) == text


def test_date_examples() -> None:
    assert iso_to_epoch("1970-01-02", "date", "s") == 86_400
    assert iso_to_epoch("2024-01-31T10:00:00.250Z", "timestamp", "ms") == 1_706_695_200_250
    for bad in ["2024-01-31T10:00:00+00:00", "2024-01-31T10:00:00", "2024-01-31T10:00:00.250Z"]:
        with pytest.raises(CastRefused):
            iso_to_epoch(bad, "timestamp", "s")
    with pytest.raises(CastRefused, match="not midnight"):
        epoch_to_iso(5, "date", "s")


# -- namespaces --------------------------------------------------------------------------------
def _namespaced_dump(tmp_path: Path) -> Any:
    conn = connect(f"dump://{tmp_path / 'src'}")
    schema = rich_schema("docs", id_type=IdType.STRING, namespaces=True)
    plain = sample_batch(schema.replace(namespaces=None))
    ns = [NAMESPACES[i % 2] if i % 10 else None for i in range(ROWS)]
    rows = metadata_rows(plain, schema.replace(namespaces=None))
    batch = build_batch(
        schema,
        plain.column("id"),
        {"vector": plain.column("vector")},
        documents=plain.column("document"),
        metadata=rows,
        namespaces=ns,
    )
    conn.create(schema)
    conn.upsert("docs", batch)
    conn.finalize("docs")
    return conn


def test_namespaces_the_target_cannot_store_are_an_error_naming_the_options() -> None:
    schema = rich_schema("docs", id_type=IdType.STRING, namespaces=True)
    with pytest.raises(SchemaMismatchError) as exc:
        build_mapping(schema, NO_NS)
    assert "cannot store namespaces" in exc.value.message
    assert "to: field" in str(exc.value.hint) and "to: drop" in str(exc.value.hint)
    dropped = build_mapping(
        schema, NO_NS, MappingSpec.model_validate({"namespaces": {"to": "drop"}})
    )
    assert dropped.target.namespaces is None and "DROPPED" in " ".join(dropped.decisions)
    with pytest.raises(SchemaMismatchError, match="collections"):
        build_mapping(
            schema, NO_NS, MappingSpec.model_validate({"namespaces": {"to": "collections"}})
        )
    with pytest.raises(ValidationError, match="needs field: NAME"):
        MappingSpec.model_validate({"namespaces": {"to": "field"}})


def test_namespaces_to_a_field_and_back_keep_the_digest(tmp_path: Path) -> None:
    require_module("chromadb")
    src = _namespaced_dump(tmp_path)
    chroma = connect(f"chroma://{tmp_path / 'chroma'}")
    lance = connect(f"lancedb://{tmp_path / 'lance'}")
    to_field = MappingSpec.model_validate({"namespaces": {"to": "field", "field": "tenant"}})
    r1 = copy_collection(
        src, chroma, "docs", options=CopyOptions(job_path=tmp_path / "j1", mapping=to_field)
    )
    assert r1.rows_written == ROWS and r1.ok
    assert "namespaces: to metadata.tenant (string)" in r1.decisions
    tenants = [
        m.get("tenant")
        for m in metadata_rows(
            chroma.fetch("docs", ["doc-0001", "doc-0010"]), chroma.describe("docs")
        )
    ]
    assert sorted(map(str, tenants)) == ["None", "tenant-b"]
    from_field = MappingSpec.model_validate({"namespaces": {"from": "field", "field": "tenant"}})
    r2 = copy_collection(
        chroma, lance, "docs", options=CopyOptions(job_path=tmp_path / "j2", mapping=from_field)
    )
    assert r2.rows_written == ROWS and r2.ok
    assert lance.describe("docs").namespaces is not None
    diff = diff_collections(src, lance, "docs")
    # Same content digest (ids, namespaces, documents, metadata); Chroma stores cosine
    # vectors normalised, so vectors are compared by direction.
    assert diff.source_digest == diff.target_digest and not diff.missing and not diff.extra
    assert all(c.fields == ["vector"] for c in diff.changed)
    ids = ["doc-0000/é", "doc-0001", "doc-0239"]
    a, b = (vectors_to_numpy(c.fetch("docs", ids).column("vector")) for c in (src, lance))
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    np.testing.assert_allclose(a, b / np.linalg.norm(b, axis=1, keepdims=True), atol=1e-6)


def test_plan_shows_the_namespace_decision_or_fails(tmp_path: Path) -> None:
    require_module("chromadb")
    _namespaced_dump(tmp_path)
    src, dst = f"dump://{tmp_path / 'src'}", f"chroma://{tmp_path / 'chroma'}"
    refused = run_cli("plan", src, dst, "-c", "docs", cwd=tmp_path)
    assert refused.returncode != 0
    assert "cannot store namespaces" in refused.stdout + refused.stderr
    (tmp_path / "map.yaml").write_text("namespaces: {to: field, field: tenant}\n")
    ok = run_cli(
        "plan",
        src,
        dst,
        "-c",
        "docs",
        "--map",
        "map.yaml",
        "--json",
        "--write-map",
        "out.yaml",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    plan = json_of(ok)
    assert "namespaces: to metadata.tenant (string)" in plan["decisions"]
    assert "tenant" in {m["name"] for m in plan["target"]["schema"]["metadata"]}
    assert MappingSpec.load(tmp_path / "out.yaml").namespaces == to_field_spec()


def to_field_spec() -> Any:
    return MappingSpec.model_validate({"namespaces": {"to": "field", "field": "tenant"}}).namespaces


# -- flatten / dates through a copy -------------------------------------------------------------
def _nested_dump(tmp_path: Path, bad_row: int | None = None) -> Any:
    schema = CollectionSchema(
        name="n",
        vectors=(VectorField(dim=4),),
        metadata=(
            MetadataField(name="author", type="json"),
            MetadataField(name="published", type="string"),
        ),
    )
    rows: list[dict[str, Any]] = [
        {
            "author": {
                "name": f"a{i}",
                "born": 1900 + i,
                "tags": ["x", "y"][: i % 3],
                "home": {"city": "Oslo", "zip": i * 1.5},
            },
            "published": f"2024-01-{1 + i % 28:02d}T10:00:0{i % 10}Z",
        }
        for i in range(50)
    ]
    if bad_row is not None:
        rows[bad_row]["author"] = {"name": [{"deep": 1}]}
    conn = connect(f"dump://{tmp_path / 'nsrc'}")
    conn.create(schema)
    vectors = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    conn.upsert(
        "n", build_batch(schema, [f"r{i}" for i in range(50)], {"vector": vectors}, metadata=rows)
    )
    conn.finalize("n")
    return conn


def test_flatten_and_date_cast_round_trip_through_lancedb(tmp_path: Path) -> None:
    src = _nested_dump(tmp_path)
    lance = connect(f"lancedb://{tmp_path / 'lance'}")
    forward = MappingSpec(
        flatten={"sep": "."},  # type: ignore[arg-type]
        fields={"published": FieldSpec(cast="timestamp", unit="s")},
    )
    r1 = copy_collection(
        src, lance, "n", options=CopyOptions(job_path=tmp_path / "j1", mapping=forward)
    )
    assert r1.ok and r1.rows_written == 50
    types = {m.name: m.type for m in lance.describe("n").metadata}
    assert types == {
        "author.name": "string",
        "author.born": "int64",
        "author.tags": "list<string>",
        "author.home.city": "string",
        "author.home.zip": "float64",
        "published": "int64",
    }
    rec = metadata_rows(lance.fetch("n", ["r3"]), lance.describe("n"))[0]
    assert rec["author.home.city"] == "Oslo" and rec["published"] == 1_704_362_403
    back_dump = connect(f"dump://{tmp_path / 'back'}")
    backward = MappingSpec(
        unflatten={"sep": "."},  # type: ignore[arg-type]
        fields={"published": FieldSpec(cast="timestamp", unit="s")},
    )
    r2 = copy_collection(
        lance, back_dump, "n", options=CopyOptions(job_path=tmp_path / "j2", mapping=backward)
    )
    assert r2.ok and r2.rows_written == 50
    assert {m.name: m.type for m in back_dump.describe("n").metadata} == {
        "author": "json",
        "published": "string",
    }
    diff = diff_collections(src, back_dump, "n")
    assert diff.equal, (diff.missing[:3], diff.extra[:3], diff.changed[:3])


def test_a_record_that_cannot_flatten_is_refused_by_id_and_field(tmp_path: Path) -> None:
    src = _nested_dump(tmp_path, bad_row=7)
    lance = connect(f"lancedb://{tmp_path / 'lance'}")
    spec = MappingSpec(flatten={"sep": "."}, on_invalid="fail")  # type: ignore[arg-type]
    with pytest.raises(DataError) as exc:
        copy_collection(src, lance, "n", options=CopyOptions(job_path=tmp_path / "j", mapping=spec))
    assert exc.value.record_id == "r7" and exc.value.field == "author.name"
    assert "list holding objects" in exc.value.reason
    json.dumps(exc.value.message)  # printable
