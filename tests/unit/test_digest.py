from __future__ import annotations

import numpy as np

from tests.conformance.data import sample_batch, sample_schema
from vecmigrate.model import IdType, Metric
from vecmigrate.records import build_batch, metadata_rows, vectors_to_numpy
from vecmigrate.verify.digest import DigestBuilder


def _digest(batches, schema):  # type: ignore[no-untyped-def]
    b = DigestBuilder(schema)
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
