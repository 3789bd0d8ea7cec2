"""Data parity that cannot be fooled (issue #12), on real engines: changes that bucketed sums
of vector projections used to hide are found at any collection size, duplicate ids make a
diff unequal, and noise within an engine's declared tolerance is not reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import cli
from vecmigrate.connectors import Connector, connect
from vecmigrate.model import CollectionSchema, MetadataField, Metric, VectorField
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.records import build_batch, numpy_to_vectors, vectors_to_numpy
from vecmigrate.verify.diff import diff_collections
from vecmigrate.verify.digest import _projection, collection_digest, id_bucket

BIG = 50_000


def _unit(rows: int, dim: int, seed: int) -> np.ndarray:
    """Unit-length float32 vectors, as embedding models return them."""
    v = np.random.default_rng(seed).normal(size=(rows, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _ids(rows: int) -> list[str]:
    return [f"rec-{i:06d}" for i in range(rows)]


def _dump(path: Path, name: str, vectors: np.ndarray) -> str:
    """A finished dump of ``vectors`` (cosine) with a document and one metadata field."""
    schema = CollectionSchema(
        name=name,
        vectors=(VectorField(dim=vectors.shape[1], metric=Metric.COSINE),),
        has_document=True,
        metadata=(MetadataField(name="n", type="int64"),),
    )
    conn = connect(f"dump://{path}")
    conn.create(schema)
    ids = _ids(len(vectors))
    for start in range(0, len(ids), 10_000):
        rows = range(start, min(start + 10_000, len(ids)))
        conn.upsert(
            name,
            build_batch(
                schema,
                [ids[i] for i in rows],
                {"vector": vectors[rows.start : rows.stop]},
                documents=[f"text {i}" for i in rows],
                metadata=[{"n": i} for i in rows],
            ),
        )
    conn.finalize(name)
    return f"dump://{path}"


def _copy(source: str, target: str, name: str, tmp_path: Path) -> None:
    with connect(source) as src, connect(target) as dst:
        result = copy_collection(
            src,
            dst,
            name,
            options=CopyOptions(
                job_path=tmp_path / f"{name}.job", if_exists="replace", replace_confirmed=True
            ),
        )
    assert result.rows_written == result.rows_read and result.dead_letters == 0


def _rewrite(conn: Connector, name: str, new: dict[str, np.ndarray]) -> None:
    """Give the records ``new`` maps their ids to these vectors, everything else kept."""
    ids = sorted(new)
    rows = conn.fetch(name, ids)
    order = [str(i) for i in rows.column("id").to_pylist()]
    vectors = numpy_to_vectors(np.stack([new[i] for i in order]))
    conn.upsert(name, rows.set_column(rows.schema.get_field_index("vector"), "vector", vectors))


def _same_bucket(ids: list[str]) -> tuple[str, str]:
    seen: dict[int, str] = {}
    for rid, bucket in zip(ids, id_bucket(ids).tolist(), strict=True):
        if bucket in seen:
            return seen[bucket], rid
        seen[bucket] = rid
    raise AssertionError("no two ids share a bucket")


def _blind_rotation(b: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """``b`` (unit length) rotated to cosine ``cos`` so that every digest projection of it
    stays the same: the change summed projections cannot see at any collection size."""
    sin = np.sqrt(1 - cos**2)
    x = b.astype(np.float64)
    constraints = np.vstack([_projection(len(b)).T, x])  # P^T u = (1 - cos)/sin P^T b, b.u = 0
    target = np.concatenate([(1 - cos) / sin * (constraints[:-1] @ x), [0.0]])
    u = np.linalg.lstsq(constraints, target, rcond=None)[0]
    free = rng.normal(size=len(b))
    free -= constraints.T @ np.linalg.lstsq(constraints.T, free, rcond=None)[0]
    u += np.sqrt(1 - u @ u) * free / np.linalg.norm(free)
    return (cos * x + sin * u).astype(np.float32)


def _changed(result: Any) -> list[tuple[str, list[str]]]:
    return [(c.id, c.fields) for c in result.changed]


@pytest.mark.parametrize("kind", ["lancedb", "pgvector"])
def test_two_records_swapping_vectors_within_a_bucket_are_found(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    name = f"swap_{kind}"
    source = _dump(tmp_path / "src", name, _unit(2000, 32, seed=1))
    pg: Any = request.getfixturevalue("postgres") if kind == "pgvector" else None
    target = pg.uri() if pg else f"lancedb://{tmp_path / 'lance'}"
    _copy(source, target, name, tmp_path)
    a, b = _same_bucket(_ids(2000))
    if pg:  # behind the tool's back, as a buggy writer would
        with psycopg.connect(pg.dsn, autocommit=True) as db:
            db.execute(
                f"UPDATE {name} AS t SET vector = o.vector FROM {name} AS o "
                "WHERE (t.id, o.id) IN ((%s, %s), (%s, %s))",
                (a, b, b, a),
            )
    else:
        with connect(target) as dst:
            vec = vectors_to_numpy(dst.fetch(name, [a, b]).column("vector"))
            _rewrite(dst, name, {a: vec[1], b: vec[0]})  # fetch order is irrelevant: a swap

    with connect(source) as src, connect(target) as dst:
        result = diff_collections(src, dst, name)
    assert _changed(result) == [(a, ["vector"]), (b, ["vector"])]
    assert not result.missing and not result.extra and not result.equal

    ran = cli("diff", source, target, "-c", name, "--json")
    assert ran.returncode == 1
    assert ran.json()["changed"] == [
        {"id": a, "fields": ["vector"]},
        {"id": b, "fields": ["vector"]},
    ]
    if pg:
        report = cli("verify", source, target, "-c", name, "--queries", "20", "--json")
        assert report.returncode == 1
        failed = {g["gate"] for g in report.json()["gates"] if not g["passed"]}
        assert "changed ids" in failed


def test_one_value_moved_by_1e_5_among_50k_records_is_found(tmp_path: Path) -> None:
    name = "small_change"
    vectors = _unit(BIG, 128, seed=2)
    source = _dump(tmp_path / "src", name, vectors)
    target = f"lancedb://{tmp_path / 'lance'}"  # exact float32 storage: tolerance 0
    _copy(source, target, name, tmp_path)
    # The coordinate the summed projections see least: where the old digest was blind.
    coord = int(np.argmin(np.abs(_projection(128)).max(axis=1)))
    victim = _ids(BIG)[31_337]
    moved = vectors[31_337].copy()
    moved[coord] += np.float32(1e-5)
    with connect(target) as dst:
        _rewrite(dst, name, {victim: moved})
        dst.finalize(name)  # compacted: LanceDB reads by offset slowly past a merge's deletions
    with connect(source) as src, connect(target) as dst:
        result = diff_collections(src, dst, name)
    assert _changed(result) == [(victim, ["vector"])] and not result.equal
    ran = cli("diff", source, target, "-c", name, "--json")
    assert ran.returncode == 1 and ran.json()["changed"] == [{"id": victim, "fields": ["vector"]}]


def test_chroma_finds_changes_above_its_tolerance_and_ignores_noise_below(
    tmp_path: Path,
) -> None:
    require_module("chromadb")
    name = "noise"
    rows, dim = 4000, 384
    vectors = _unit(rows, dim, seed=3)
    source = _dump(tmp_path / "src", name, vectors)
    # The target holds every value of every record moved by up to half the tolerance.
    rng = np.random.default_rng(4)
    noisy = vectors + rng.uniform(-5e-7, 5e-7, vectors.shape).astype(np.float32)
    target = f"chroma://{tmp_path / 'chroma'}"
    _copy(_dump(tmp_path / "noisy", name, noisy), target, name, tmp_path)
    ids = _ids(rows)
    with connect(source) as src, connect(target) as dst:
        tol = dst.capabilities.vector_tolerance
        assert tol == 1e-6
        # The noise crosses grid cells, so the digests disagree; records say it is noise.
        cmp = collection_digest(src, name, tolerance=tol).compare(
            collection_digest(dst, name, tolerance=tol), tolerance=tol
        )
        assert cmp.unsettled_buckets and not cmp.differing_buckets
        result = diff_collections(src, dst, name)
        assert result.equal and not result.changed, _changed(result)[:5]

        bumped = noisy[100].copy()
        bumped[7] += np.float32(0.01)
        rotated = _blind_rotation(vectors[200], 0.98, rng)
        assert abs(float(rotated @ vectors[200]) - 0.98) < 1e-4
        _rewrite(dst, name, {ids[100]: bumped, ids[200]: rotated})
        result = diff_collections(src, dst, name)
    assert _changed(result) == [(ids[100], ["vector"]), (ids[200], ["vector"])]
    ran = cli("diff", source, target, "-c", name, "--json")
    assert ran.returncode == 1 and [c["id"] for c in ran.json()["changed"]] == [ids[100], ids[200]]


def test_a_duplicate_id_in_the_source_fails_copy_and_diff(postgres: Any, tmp_path: Path) -> None:
    name = "dup_src"
    schema = CollectionSchema(name=name, vectors=(VectorField(dim=8),), has_document=True)
    lance = f"lancedb://{tmp_path / 'lance'}"
    ids = [f"id{i}" for i in range(10)] + ["dup", "dup"]
    vectors = _unit(12, 8, seed=5)
    with connect(lance) as conn:
        conn.create(schema)
        conn.begin_bulk_load(name)  # appends without merging ids, as other tools' tables may
        conn.upsert(name, build_batch(schema, ids, {"vector": vectors}, documents=ids))
    # never finalized: the table keeps both records of "dup"
    target = postgres.uri()
    copied = cli("copy", lance, target, "-c", name, "--if-exists", "replace", "--yes", "--json")
    assert copied.returncode != 0
    checks = {c["name"]: c for c in copied.json()["checks"]}
    assert not checks["content digest"]["passed"] and "dup" in checks["content digest"]["detail"]
    assert not copied.json()["verified"]

    ran = cli("diff", lance, target, "-c", name, "--json")
    assert ran.returncode == 1
    out = ran.json()
    assert (out["equal"], out["source_count"], out["target_count"]) == (False, 12, 11)
    assert out["duplicates"] == [{"id": "dup", "source": 2, "target": 1}]
    assert out["missing"] == [] and out["extra"] == []

    ran = cli("verify", lance, target, "-c", name, "--queries", "5", "--json")
    assert ran.returncode == 1
    failed = {g["gate"]: g["actual"] for g in ran.json()["gates"] if not g["passed"]}
    assert failed.get("duplicate ids") == 1, ran.json()["gates"]
