from __future__ import annotations

import numpy as np

from vecmigrate.model import CollectionSchema, IdType, Metric, VectorField
from vecmigrate.records import build_batch, metadata_rows, vectors_to_numpy
from vecmigrate.testing.data import sample_batch, sample_schema
from vecmigrate.verify.digest import DigestBuilder, id_bucket


def _digest(batches, schema, tolerance=None):  # type: ignore[no-untyped-def]
    b = DigestBuilder(schema, tolerance=tolerance)
    for batch in batches:
        b.add(batch)
    return b.digest


def test_order_and_batching_do_not_matter() -> None:
    schema = sample_schema("c")
    batch = sample_batch(schema)
    a = _digest([batch], schema)
    shuffled = batch.take(np.random.default_rng(1).permutation(batch.num_rows))
    b = _digest([shuffled.slice(0, 100), shuffled.slice(100)], schema)
    assert a.compare(b).equal and a.content_hash == b.content_hash and a.count == batch.num_rows


def _rebuild(schema, batch, *, vectors=None, docs=None, meta=None):  # type: ignore[no-untyped-def]
    return build_batch(
        schema,
        batch.column("id"),
        {"vector": vectors if vectors is not None else vectors_to_numpy(batch.column("vector"))},
        documents=docs if docs is not None else batch.column("document").to_pylist(),
        metadata=meta if meta is not None else metadata_rows(batch, schema),
    )


def test_detects_changed_document_metadata_type_and_vector() -> None:
    schema = sample_schema("c")
    batch = sample_batch(schema)
    base = _digest([batch], schema)
    docs = batch.column("document").to_pylist()
    docs[5] = "changed"
    assert not base.compare(_digest([_rebuild(schema, batch, docs=docs)], schema)).equal
    meta = metadata_rows(batch, schema)
    meta[7]["year"] = float(meta[7]["year"])  # same value, other type
    cmp = base.compare(_digest([_rebuild(schema, batch, meta=meta)], schema))
    assert not cmp.equal and len(cmp.differing_buckets) == 1
    vec = vectors_to_numpy(batch.column("vector")).copy()
    vec[3, 0] += 0.01
    assert not base.compare(_digest([_rebuild(schema, batch, vectors=vec)], schema)).equal


def test_vector_noise_within_tolerance_and_cosine_normalisation() -> None:
    schema = sample_schema("c")
    batch = sample_batch(schema)
    vec = vectors_to_numpy(batch.column("vector"))
    base = _digest([batch], schema)
    noisy = vec + np.float32(5e-7)
    other = _digest([_rebuild(schema, batch, vectors=noisy)], schema)
    assert not base.compare(other, tolerance=0.0).equal
    assert base.compare(other, tolerance=1e-6).equal
    normalised = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    assert base.compare(
        _digest([_rebuild(schema, batch, vectors=normalised)], schema), tolerance=1e-6
    ).equal
    l2 = sample_schema("c", metric=Metric.L2)
    assert (
        not _digest([batch], l2)
        .compare(_digest([_rebuild(l2, batch, vectors=normalised)], l2), tolerance=1e-6)
        .equal
    )


def test_int_and_string_ids_digest_alike() -> None:
    s_int, s_str = sample_schema("c", id_type=IdType.INT), sample_schema("c")
    b_int = sample_batch(s_int)
    b_str = _rebuild(s_str, b_int.set_column(0, "id", b_int.column("id").cast("string")))
    assert _digest([b_int], s_int).compare(_digest([b_str], s_str)).equal


def test_json_round_trip() -> None:
    schema = sample_schema("c")
    d = _digest([sample_batch(schema)], schema)
    from vecmigrate.verify.digest import CollectionDigest

    assert CollectionDigest.from_json(d.to_json()).compare(d).equal


def test_float_metadata_one_ulp_off_still_matches_but_real_changes_do_not() -> None:
    schema = sample_schema("c")
    batch = sample_batch(schema)
    base = _digest([batch], schema)
    meta = metadata_rows(batch, schema)
    for m in meta:
        m["score"] = float(np.nextafter(m["score"], np.inf))  # what Chroma sometimes returns
    assert base.compare(_digest([_rebuild(schema, batch, meta=meta)], schema)).equal
    meta[0]["score"] += 1e-3
    assert not base.compare(_digest([_rebuild(schema, batch, meta=meta)], schema)).equal


def _same_bucket_pair(ids: list[str]) -> tuple[int, int]:
    buckets = id_bucket(ids).tolist()
    first: dict[int, int] = {}
    for row, b in enumerate(buckets):
        if b in first:
            return first[b], row
        first[b] = row
    raise AssertionError("no two ids share a bucket")


def test_swapping_two_vectors_within_a_bucket_changes_the_digest() -> None:
    schema = sample_schema("c")
    batch = sample_batch(schema)
    ids = [str(v) for v in batch.column("id").to_pylist()]
    i, j = _same_bucket_pair(ids)
    vec = vectors_to_numpy(batch.column("vector")).copy()
    vec[[i, j]] = vec[[j, i]]
    swapped = _rebuild(schema, batch, vectors=vec)
    for tolerance in (None, 0.0, 1e-6):  # id-weighted projections; grid hashes bound to ids
        a = _digest([batch], schema, tolerance)
        cmp = a.compare(_digest([swapped], schema, tolerance), tolerance=tolerance or 0.0)
        assert not cmp.equal, tolerance
        assert cmp.differing_buckets + cmp.unsettled_buckets == [int(id_bucket(ids)[i])]


def _big(rows: int, dim: int):  # type: ignore[no-untyped-def]
    schema = CollectionSchema(name="big", vectors=(VectorField(dim=dim, metric=Metric.L2),))
    vec = np.random.default_rng(3).normal(size=(rows, dim)).astype(np.float32)
    return schema, [f"r{i}" for i in range(rows)], vec


def test_grid_finds_a_change_just_above_the_tolerance_among_many_records() -> None:
    schema, ids, vec = _big(60_000, 64)
    base = {t: _digest([build_batch(schema, ids, {"vector": vec})], schema, t) for t in (0.0, 1e-6)}
    changed = vec.copy()
    changed[12_345, 7] += np.float32(2e-6)  # above 1e-6, far inside the old allowance
    after = {t: _digest([build_batch(schema, ids, {"vector": changed})], schema, t) for t in base}
    bucket = int(id_bucket([ids[12_345]])[0])
    for t in base:
        cmp = base[t].compare(after[t], tolerance=t)
        assert not cmp.equal and bucket in cmp.differing_buckets + cmp.unsettled_buckets, t


def test_noise_below_the_tolerance_only_unsettles_buckets() -> None:
    schema, ids, vec = _big(2000, 32)
    noisy = vec + np.random.default_rng(4).uniform(-5e-7, 5e-7, vec.shape).astype(np.float32)
    a = _digest([build_batch(schema, ids, {"vector": vec})], schema, 1e-6)
    cmp = a.compare(
        _digest([build_batch(schema, ids, {"vector": noisy})], schema, 1e-6), tolerance=1e-6
    )
    # The noise crosses grid cells (so diff must look at records) but never the allowance.
    assert cmp.differing_buckets == [] and len(cmp.unsettled_buckets) > 0 and not cmp.equal
    same = _digest([build_batch(schema, ids, {"vector": vec})], schema, 1e-6)
    assert a.compare(same, tolerance=1e-6).equal


def test_nan_and_inf_vectors_are_digested_exactly() -> None:
    schema, ids, vec = _big(300, 8)
    vec[5, 1], vec[6, 0] = np.nan, np.inf
    base = _digest([build_batch(schema, ids, {"vector": vec})], schema)
    assert base.compare(_digest([build_batch(schema, ids, {"vector": vec.copy()})], schema)).equal
    for row, value in ((5, 0.0), (6, -np.inf), (7, np.nan)):
        other = vec.copy()
        other[row, 1 if row == 5 else 0] = value
        assert not base.compare(
            _digest([build_batch(schema, ids, {"vector": other})], schema)
        ).equal, row


def test_grid_json_round_trip_and_steps_must_match() -> None:
    schema = sample_schema("c")
    d = _digest([sample_batch(schema)], schema, 1e-6)
    from vecmigrate.verify.digest import CollectionDigest

    back = CollectionDigest.from_json(d.to_json())
    assert back.grid_step == 1e-6 and back.compare(d).equal
    assert back.buckets[3].grid == d.buckets[3].grid and d.buckets[3].grid
