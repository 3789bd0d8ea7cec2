"""Digests: same records give the same digest, whatever the order, batching, id type
or metadata layout; any changed record changes it. Every property holds for both digest
versions (1: per-record JSON + blake2b, read from older manifests; 2: column hashing)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError
from vecmigrate.model import CollectionSchema, IdType, MetadataField, Metric, VectorField
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.records import build_batch, metadata_rows, vectors_to_numpy
from vecmigrate.testing.data import (
    ROWS,
    rich_batch,
    rich_schema,
    sample_batch,
    sample_ids,
    sample_schema,
)
from vecmigrate.verify import digest as D
from vecmigrate.verify.acknowledged import acknowledging
from vecmigrate.verify.copycheck import check_copy
from vecmigrate.verify.digest import (
    DIGEST_VERSION,
    CollectionDigest,
    DigestBuilder,
    collection_digest,
    id_bucket,
    id_text,
    value_hash,
)

VERSIONS = pytest.mark.parametrize("version", [1, 2])


def _digest(batches, schema, tolerance=None, version=DIGEST_VERSION):  # type: ignore[no-untyped-def]
    b = DigestBuilder(schema, tolerance=tolerance, version=version)
    for batch in batches:
        b.add(batch)
    return b.digest


def _versioned(version: int) -> Any:
    def digest(batches, schema, tolerance=None):  # type: ignore[no-untyped-def]
        return _digest(batches, schema, tolerance, version)

    return digest


@VERSIONS
def test_order_and_batching_do_not_matter(version: int) -> None:
    digest = _versioned(version)
    schema = sample_schema("c")
    batch = sample_batch(schema)
    a = digest([batch], schema)
    shuffled = batch.take(np.random.default_rng(1).permutation(batch.num_rows))
    b = digest([shuffled.slice(0, 100), shuffled.slice(100)], schema)
    assert a.compare(b).equal and a.content_hash == b.content_hash and a.count == batch.num_rows


def _rebuild(schema, batch, *, vectors=None, docs=None, meta=None):  # type: ignore[no-untyped-def]
    return build_batch(
        schema,
        batch.column("id"),
        {"vector": vectors if vectors is not None else vectors_to_numpy(batch.column("vector"))},
        documents=docs if docs is not None else batch.column("document").to_pylist(),
        metadata=meta if meta is not None else metadata_rows(batch, schema),
    )


@VERSIONS
def test_detects_changed_document_metadata_type_and_vector(version: int) -> None:
    digest = _versioned(version)
    schema = sample_schema("c")
    batch = sample_batch(schema)
    base = digest([batch], schema)
    docs = batch.column("document").to_pylist()
    docs[5] = "changed"
    assert not base.compare(digest([_rebuild(schema, batch, docs=docs)], schema)).equal
    meta = metadata_rows(batch, schema)
    meta[7]["year"] = float(meta[7]["year"])  # same value, other type
    cmp = base.compare(digest([_rebuild(schema, batch, meta=meta)], schema))
    assert not cmp.equal and len(cmp.differing_buckets) == 1
    vec = vectors_to_numpy(batch.column("vector")).copy()
    vec[3, 0] += 0.01
    assert not base.compare(digest([_rebuild(schema, batch, vectors=vec)], schema)).equal


@VERSIONS
def test_vector_noise_within_tolerance_and_cosine_normalisation(version: int) -> None:
    digest = _versioned(version)
    schema = sample_schema("c")
    batch = sample_batch(schema)
    vec = vectors_to_numpy(batch.column("vector"))
    base = digest([batch], schema)
    noisy = vec + np.float32(5e-7)
    other = digest([_rebuild(schema, batch, vectors=noisy)], schema)
    assert not base.compare(other, tolerance=0.0).equal
    assert base.compare(other, tolerance=1e-6).equal
    normalised = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    assert base.compare(
        digest([_rebuild(schema, batch, vectors=normalised)], schema), tolerance=1e-6
    ).equal
    l2 = sample_schema("c", metric=Metric.L2)
    assert (
        not digest([batch], l2)
        .compare(digest([_rebuild(l2, batch, vectors=normalised)], l2), tolerance=1e-6)
        .equal
    )


@VERSIONS
def test_int_and_string_ids_digest_alike(version: int) -> None:
    digest = _versioned(version)
    s_int, s_str = sample_schema("c", id_type=IdType.INT), sample_schema("c")
    b_int = sample_batch(s_int)
    b_str = _rebuild(s_str, b_int.set_column(0, "id", b_int.column("id").cast("string")))
    assert digest([b_int], s_int).compare(digest([b_str], s_str)).equal


@VERSIONS
def test_json_round_trip(version: int) -> None:
    digest = _versioned(version)
    schema = sample_schema("c")
    d = digest([sample_batch(schema)], schema)
    from vecmigrate.verify.digest import CollectionDigest

    assert CollectionDigest.from_json(d.to_json()).compare(d).equal


@VERSIONS
def test_float_metadata_one_ulp_off_still_matches_but_real_changes_do_not(version: int) -> None:
    digest = _versioned(version)
    schema = sample_schema("c")
    batch = sample_batch(schema)
    base = digest([batch], schema)
    meta = metadata_rows(batch, schema)
    for m in meta:
        m["score"] = float(np.nextafter(m["score"], np.inf))  # what Chroma sometimes returns
    assert base.compare(digest([_rebuild(schema, batch, meta=meta)], schema)).equal
    meta[0]["score"] += 1e-3
    assert not base.compare(digest([_rebuild(schema, batch, meta=meta)], schema)).equal


def _same_bucket_pair(ids: list[str], version: int) -> tuple[int, int]:
    buckets = id_bucket(ids, version=version).tolist()
    first: dict[int, int] = {}
    for row, b in enumerate(buckets):
        if b in first:
            return first[b], row
        first[b] = row
    raise AssertionError("no two ids share a bucket")


@VERSIONS
def test_swapping_two_vectors_within_a_bucket_changes_the_digest(version: int) -> None:
    digest = _versioned(version)
    schema = sample_schema("c")
    batch = sample_batch(schema)
    ids = [str(v) for v in batch.column("id").to_pylist()]
    i, j = _same_bucket_pair(ids, version)
    vec = vectors_to_numpy(batch.column("vector")).copy()
    vec[[i, j]] = vec[[j, i]]
    swapped = _rebuild(schema, batch, vectors=vec)
    for tolerance in (None, 0.0, 1e-6):  # id-weighted projections; grid hashes bound to ids
        a = digest([batch], schema, tolerance)
        cmp = a.compare(digest([swapped], schema, tolerance), tolerance=tolerance or 0.0)
        assert not cmp.equal, tolerance
        assert cmp.differing_buckets + cmp.unsettled_buckets == [
            int(id_bucket(ids, version=version)[i])
        ]


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


@VERSIONS
def test_noise_below_the_tolerance_only_unsettles_buckets(version: int) -> None:
    digest = _versioned(version)
    schema, ids, vec = _big(2000, 32)
    noisy = vec + np.random.default_rng(4).uniform(-5e-7, 5e-7, vec.shape).astype(np.float32)
    a = digest([build_batch(schema, ids, {"vector": vec})], schema, 1e-6)
    cmp = a.compare(
        digest([build_batch(schema, ids, {"vector": noisy})], schema, 1e-6), tolerance=1e-6
    )
    # The noise crosses grid cells (so diff must look at records) but never the allowance.
    assert cmp.differing_buckets == [] and len(cmp.unsettled_buckets) > 0 and not cmp.equal
    same = digest([build_batch(schema, ids, {"vector": vec})], schema, 1e-6)
    assert a.compare(same, tolerance=1e-6).equal


@VERSIONS
def test_nan_and_inf_vectors_are_digested_exactly(version: int) -> None:
    digest = _versioned(version)
    schema, ids, vec = _big(300, 8)
    vec[5, 1], vec[6, 0] = np.nan, np.inf
    base = digest([build_batch(schema, ids, {"vector": vec})], schema)
    assert base.compare(digest([build_batch(schema, ids, {"vector": vec.copy()})], schema)).equal
    for row, value in ((5, 0.0), (6, -np.inf), (7, np.nan)):
        other = vec.copy()
        other[row, 1 if row == 5 else 0] = value
        assert not base.compare(
            digest([build_batch(schema, ids, {"vector": other})], schema)
        ).equal, row


@VERSIONS
def test_grid_json_round_trip_and_steps_must_match(version: int) -> None:
    digest = _versioned(version)
    schema = sample_schema("c")
    d = digest([sample_batch(schema)], schema, 1e-6)
    from vecmigrate.verify.digest import CollectionDigest

    back = CollectionDigest.from_json(d.to_json())
    assert back.grid_step == 1e-6 and back.compare(d).equal
    assert back.buckets[3].grid == d.buckets[3].grid and d.buckets[3].grid


# -- version 2: column hashing equals its per-value definition ------------------------------------
def _mix(x: int) -> int:
    return D._mix_int(x)


def _reference_v2(batch: pa.RecordBatch, schema: CollectionSchema) -> list[int]:
    """Version 2's record hash computed one record at a time from Python values: what the
    column-wise code must give (documented in the digest module)."""
    names = batch.schema.names
    n = batch.num_rows
    ids = [id_text(v) for v in batch.column("id").to_pylist()]
    docs = batch.column("document").to_pylist() if "document" in names else [None] * n
    nss = batch.column("namespace").to_pylist() if "namespace" in names else [None] * n
    sparse = {s.name: batch.column(s.name).to_pylist() for s in schema.sparse}
    metas = metadata_rows(batch, schema)
    t = D._T
    out = []
    for i in range(n):
        key = D._bytes_hash_int(ids[i].encode())
        body = _mix(value_hash(docs[i]) ^ t["document"]) + _mix(value_hash(nss[i]) ^ t["namespace"])
        body += _mix(value_hash(metas[i]) ^ t["metadata"])
        for name, values in sparse.items():
            body += _mix(value_hash(values[i]) ^ _mix(t["sparse"] ^ D._key_hash(name)))
        out.append(_mix(_mix(key ^ t["record"]) + (body & D._MASK)))
    return out


@pytest.mark.parametrize("id_type", [IdType.STRING, IdType.INT])
def test_v2_record_hashes_equal_their_per_record_definition(id_type: IdType) -> None:
    schema = rich_schema("c", id_type=id_type, named=True, namespaces=True, sparse=True)
    batch = rich_batch(schema)
    meta = metadata_rows(batch, schema)
    meta[3]["extra_key"] = {"nested": [1, 2.5, None, "x"]}  # lands in metadata_extra
    meta[4]["year"] = 2000.5  # a float for an int field: metadata_extra too
    meta[5]["explicit"] = None
    batch = _with_metadata(schema, batch, meta)
    for part in (batch, batch.slice(7, 100)):  # sliced columns have offsets
        ids, hashes = D.record_hashes(part, schema)
        assert hashes == _reference_v2(part, schema)
        assert ids == [id_text(v) for v in part.column("id").to_pylist()]


def _with_metadata(
    schema: CollectionSchema, batch: pa.RecordBatch, meta: list[dict[str, Any]]
) -> pa.RecordBatch:
    return build_batch(
        schema,
        batch.column("id"),
        {v.name: vectors_to_numpy(batch.column(v.name)) for v in schema.vectors},
        documents=batch.column("document").to_pylist(),
        metadata=meta,
        namespaces=batch.column("namespace").to_pylist() if schema.namespaces else None,
        sparse={s.name: batch.column(s.name).to_pylist() for s in schema.sparse},
    )


_FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([-0.0, 3.1e38, 1e-320])
_SCALARS: dict[str, tuple[pa.DataType, Any]] = {
    "string": (pa.string(), st.text(max_size=40)),
    "large_string": (pa.large_string(), st.text(max_size=20)),
    "int64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "float64": (pa.float64(), _FLOATS),
    "float32": (pa.float32(), st.floats(width=32, allow_nan=False)),
    "bool": (pa.bool_(), st.booleans()),
    "uint32": (pa.uint32(), st.integers(0, 2**32 - 1)),
}


@st.composite
def _column(draw: Any) -> pa.Array:
    kind = draw(st.sampled_from([*_SCALARS, "list"]))
    if kind == "list":
        inner_type, inner = _SCALARS[draw(st.sampled_from(["string", "int64", "float64"]))]
        values = draw(st.lists(st.none() | st.lists(st.none() | inner, max_size=6), max_size=30))
        arr = pa.array(values, pa.list_(inner_type))
    else:
        arrow_type, strategy = _SCALARS[kind]
        arr = pa.array(draw(st.lists(st.none() | strategy, max_size=40)), arrow_type)
    start = draw(st.integers(0, len(arr)))
    return arr.slice(start, draw(st.integers(0, len(arr) - start)))


@settings(max_examples=300, deadline=None)
@given(_column())
def test_column_value_hashes_equal_value_hash_of_each_python_value(arr: pa.Array) -> None:
    assert D._value_hashes(arr).tolist() == [value_hash(v) for v in arr.to_pylist()]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(st.binary(max_size=70), max_size=40),
    words=st.integers(1, 5),
    kind=st.sampled_from([pa.binary(), pa.large_binary(), pa.string()]),
)
def test_string_hash_is_the_word_sum_at_any_chunk_size(
    values: list[bytes], words: int, kind: pa.DataType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(D, "_WORDS", words)  # chunks smaller than one value, too
    if kind == pa.string():
        arr = pa.array([v.decode("latin-1") for v in values], kind)
        raw = [v.decode("latin-1").encode() for v in values]
    else:
        arr, raw = pa.array(values, kind), values
    assert D.string_hashes(arr).tolist() == [D._bytes_hash_int(b) for b in raw]


@given(
    data=st.data(),
    length=st.integers(1, 40),
    kind=st.sampled_from([pa.binary(), pa.large_binary()]),
)
def test_string_hash_of_values_of_one_length_is_the_word_sum(
    data: st.DataObject, length: int, kind: pa.DataType
) -> None:
    """The same-length fast path (a matrix of words), sliced arrays and small blocks too."""
    values = data.draw(st.lists(st.binary(min_size=length, max_size=length), min_size=1))
    skip = data.draw(st.integers(0, len(values) - 1))
    arr = pa.array(values, kind).slice(skip)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(D, "_WORDS", data.draw(st.integers(1, 9)))
        assert D._same_length_hashes(arr) is not None
        assert D.string_hashes(arr).tolist() == [D._bytes_hash_int(b) for b in values[skip:]]


def test_value_hash_keeps_json_types_apart() -> None:
    values = [None, 0, 1, 0.0, -0.0, 1.0, True, False, "1", "", [], {}, [1], ["1"], {"a": 1}, 2**70]
    assert len({value_hash(v) for v in values}) == len(values)
    assert value_hash(float("nan")) == value_hash(-float("nan"))  # one NaN
    assert value_hash(0.1) == value_hash(float(np.float32(0.1)))  # float32 precision
    assert value_hash({"a": 1, "b": 2}) == value_hash({"b": 2, "a": 1})
    assert value_hash({"a": 1, "b": 2}) != value_hash({"a": 2, "b": 1})
    assert value_hash([1, 2]) != value_hash([2, 1])


_META_VALUES = (
    st.text(max_size=12)
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.lists(st.text(max_size=5), max_size=3)
)
_RECORDS = st.lists(
    st.dictionaries(
        st.sampled_from(["genre", "year", "score", "tags", "flag", "other"]), _META_VALUES
    ),
    min_size=1,
    max_size=25,
)
_TYPED = (
    MetadataField(name="genre", type="string"),
    MetadataField(name="year", type="int64"),
    MetadataField(name="score", type="float64"),
    MetadataField(name="tags", type="list<string>"),
    MetadataField(name="flag", type="bool"),
)


def _records_batch(schema: CollectionSchema, metas: list[dict[str, Any]], docs: list[Any]) -> Any:
    n = len(metas)
    vec = np.random.default_rng(n).normal(size=(n, 4)).astype(np.float32)
    return build_batch(
        schema, [f"r{i}" for i in range(n)], {"vector": vec}, documents=docs, metadata=metas
    )


@settings(max_examples=120, deadline=None)
@given(_RECORDS)
def test_metadata_typed_or_in_metadata_extra_digests_alike(metas: list[dict[str, Any]]) -> None:
    """One engine keeps a value in a typed column, another in ``metadata_extra`` (or every
    value there, with no declared fields): the same records, the same digest."""
    typed = CollectionSchema(
        name="c", vectors=(VectorField(dim=4),), metadata=_TYPED, has_document=True
    )
    loose = typed.replace(metadata=())
    as_json = typed.replace(metadata=tuple(m.model_copy(update={"type": "json"}) for m in _TYPED))
    docs = [f"d{i}" if i % 3 else None for i in range(len(metas))]
    want = _digest([_records_batch(typed, metas, docs)], typed, 0.0)
    for other in (loose, as_json):
        got = _digest([_records_batch(other, metas, docs)], other, 0.0)
        assert want.compare(got).equal and want.content_hash == got.content_hash


_CHANGES = [
    "document",
    "metadata value",
    "metadata type",
    "drop key",
    "add null key",
    "id",
    "vector",
]


@settings(max_examples=150, deadline=None)
@given(_RECORDS, st.data())
def test_any_changed_record_changes_the_digest(metas: list[dict[str, Any]], data: Any) -> None:
    schema = CollectionSchema(
        name="c", vectors=(VectorField(dim=4),), metadata=_TYPED, has_document=True
    )
    n = len(metas)
    docs = [f"document {i}" for i in range(n)]
    batch = _records_batch(schema, metas, docs)
    row = data.draw(st.integers(0, n - 1))
    change = data.draw(st.sampled_from(_CHANGES))
    ids = [f"r{i}" for i in range(n)]
    vec = vectors_to_numpy(batch.column("vector")).copy()
    new = [dict(m) for m in metas]
    if change == "document":
        docs = [*docs]
        docs[row] = data.draw(st.sampled_from([None, "", docs[row] + " ", docs[row].upper()]))
    elif change in ("metadata value", "metadata type", "drop key") and new[row]:
        key = data.draw(st.sampled_from(sorted(new[row])))
        old = new[row][key]
        if change == "drop key":
            del new[row][key]
        elif change == "metadata type":
            new[row][key] = json.dumps(old) if not isinstance(old, str) else [old]
        else:
            new[row][key] = _other_value(old)
    elif change == "add null key" or not new[row]:
        new[row]["absent_before"] = None
    elif change == "id":
        ids[row] = ids[row] + "x"
    else:
        vec[row, data.draw(st.integers(0, 3))] += np.float32(1e-3)
    changed = build_batch(
        schema, ids, {"vector": vec}, documents=docs, metadata=new, explicit_nulls=True
    )
    for version in (1, 2):
        for tol in (None, 0.0):
            a = _digest([batch], schema, tol, version)
            b = _digest([changed], schema, tol, version)
            assert not a.compare(b, tolerance=tol or 0.0).equal, (version, tol, change)


def _other_value(old: Any) -> Any:
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):
        return old + 1
    if isinstance(old, float):
        return old + max(1.0, abs(old)) * 1e-3 if math.isfinite(old) else 0.0
    if isinstance(old, str):
        return old + "!"
    return [*old, "more"]


def test_swapping_documents_or_metadata_between_records_changes_the_digest() -> None:
    schema = sample_schema("c")
    batch = sample_batch(schema)
    base = _digest([batch], schema)
    docs = batch.column("document").to_pylist()
    docs[0], docs[1] = docs[1], docs[0]
    assert not base.compare(_digest([_rebuild(schema, batch, docs=docs)], schema)).equal
    meta = metadata_rows(batch, schema)
    meta[2]["genre"], meta[3]["genre"] = meta[3]["genre"], meta[2]["genre"]
    assert meta[2]["genre"] != meta[3]["genre"]
    assert not base.compare(_digest([_rebuild(schema, batch, meta=meta)], schema)).equal


# -- golden values: the definitions do not drift between releases, machines or processes ----------
GOLDEN = {  # content hash (v1, v2) and the v2 grid of step 0, summed
    "sample": ("60a76ac7725d9e47", "v2:527f9d1f844c869f", 0x7D3853DB1A4C67A4),
    "int": ("7407d4b5def5c62a", "v2:6d9f141124e2c9fa", 0xB65362645BBB3DEC),
    "rich": ("d339de0148f044da", "v2:d77c29502b9021db", 0xE4B22655D95CB9CD),
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden_digests(case: str) -> None:
    if case == "rich":
        schema = rich_schema("c", id_type=IdType.STRING, named=True, namespaces=True, sparse=True)
        batch = rich_batch(schema)
    else:
        schema = sample_schema("c", id_type=IdType.INT if case == "int" else IdType.STRING)
        batch = sample_batch(schema)
    v1, v2, grid = GOLDEN[case]
    assert _digest([batch], schema, 1e-6, 1).content_hash == v1  # what older releases wrote
    d2 = _digest([batch], schema, 0.0, 2)
    assert d2.content_hash == v2
    assert sum(sum(b.grid.values()) for b in d2.buckets) % 2**64 == grid


# -- versions -------------------------------------------------------------------------------------
def test_versions_are_recorded_read_back_and_never_compared_across() -> None:
    schema = sample_schema("c")
    batch = sample_batch(schema)
    v1, v2 = _digest([batch], schema, 1e-6, 1), _digest([batch], schema, 1e-6, 2)
    assert v2.to_json()["version"] == 2 and v2.content_hash.startswith("v2:")
    old = v1.to_json()
    del old["version"]  # as releases before versioned digests wrote it
    read = CollectionDigest.from_json(old)
    assert read.version == 1 and read.compare(v1).equal and read.content_hash == v1.content_hash
    assert CollectionDigest.from_json(v2.to_json()).compare(v2).equal
    with pytest.raises(ConfigError, match="versions 1 and 2"):
        read.compare(v2)
    with pytest.raises(ConfigError, match="not supported"):
        CollectionDigest.from_json({**v2.to_json(), "version": 9})


def test_a_dump_manifest_says_its_digest_version_and_old_ones_still_verify(
    tmp_path: Path,
) -> None:
    conn = connect(f"dump://{tmp_path / 'd'}")
    schema = sample_schema("docs")
    conn.create(schema)
    conn.upsert("docs", sample_batch(schema))
    conn.finalize("docs")
    entry = json.loads((tmp_path / "d" / "manifest.json").read_text())["collections"]["docs"]
    stored = CollectionDigest.from_json(entry["digest"])
    assert entry["digest"]["version"] == stored.version == DIGEST_VERSION
    assert stored.compare(collection_digest(conn, "docs")).equal
    # A manifest written before digests were versioned: compared at its own version.
    old = _digest([sample_batch(schema)], schema, None, 1).to_json()
    del old["version"]
    stored = CollectionDigest.from_json(old)
    again = collection_digest(conn, "docs", version=stored.version, batch_rows=37)
    assert again.version == 1 and stored.compare(again).equal


def test_a_digest_without_projections_tells_every_bit_of_a_vector_and_nothing_else() -> None:
    """``projections=False`` (the copy's sampled check between two pre-storage sides):
    order and batching do not matter, one NaN and one zero, any other bit changes it."""
    schema = sample_schema("c")
    batch = sample_batch(schema)

    def exact(*batches: pa.RecordBatch) -> CollectionDigest:
        b = DigestBuilder(schema, tolerance=1e-3, projections=False)  # tolerance unused
        for part in batches:
            b.add(part)
        return b.digest

    base = exact(batch)
    assert base.grid_step == 0.0 and not base.projected
    assert all(not b.vectors for b in base.buckets)
    shuffled = batch.take(np.random.default_rng(1).permutation(batch.num_rows))
    assert base.compare(exact(shuffled.slice(0, 70), shuffled.slice(70))).equal
    vec = vectors_to_numpy(batch.column("vector")).copy()
    vec[:, 1] = 0.0
    vec[2, 3] = np.float32("nan")
    zeros = exact(_rebuild(schema, batch, vectors=vec))
    other_zeros = vec.copy()
    other_zeros[:, 1] = -0.0
    other_zeros[2].view(np.uint32)[3] = 0x7FC00001  # another NaN payload
    assert zeros.compare(exact(_rebuild(schema, batch, vectors=other_zeros))).equal
    one_bit = vec.copy()
    one_bit[7].view(np.uint32)[0] ^= 1  # the last bit of one value: far below any tolerance
    cmp = zeros.compare(exact(_rebuild(schema, batch, vectors=one_bit)))
    assert not cmp.equal and len(cmp.unsettled_buckets) == 1
    docs = batch.column("document").to_pylist()
    docs[5] = "changed"
    assert not base.compare(exact(_rebuild(schema, batch, docs=docs))).equal
    with pytest.raises(ConfigError, match="projections"):
        base.compare(_digest([batch], schema, 0.0))
    again = CollectionDigest.from_json(json.loads(json.dumps(base.to_json())))
    assert not again.projected and again.compare(base).equal
    assert "projected" not in _digest([batch], schema, 0.0).to_json()  # manifests unchanged


# -- the copy's sampled check ---------------------------------------------------------------------
def _dump(tmp_path: Path, engine: str = "dump") -> Any:
    """A source (a dump unless ``engine`` says otherwise) holding the sample ``docs``."""
    src = connect(f"{engine}://{tmp_path / 'src'}")
    schema = sample_schema("docs")
    src.create(schema)
    src.upsert("docs", sample_batch(schema))
    src.finalize("docs")
    return src


def _copy(tmp_path: Path, src: Any, sample: int = 50) -> tuple[Any, Any, Any]:
    dst = connect(f"lancedb://{tmp_path / 'lance'}")
    opts = CopyOptions(job_path=tmp_path / "job.sqlite", batch_rows=40)
    with acknowledging(src, dst, sample=sample) as ack:
        result = copy_collection(src, dst, "docs", options=opts)
    assert "upsert" not in vars(dst)  # the recording wrapper is gone
    return dst, result, ack


def test_sampled_check_passes_a_good_copy_without_reading_the_target_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _dump(tmp_path)
    dst, result, ack = _copy(tmp_path, src)
    assert ack.digest("docs") is not None and ack.digest("docs").count == ROWS  # type: ignore[union-attr]
    sample, _ = ack.sample("docs")
    assert sample is not None and sample.num_rows == 50
    scanned: list[str] = []
    for side in (src, dst):
        original = type(side).scan
        monkeypatch.setattr(
            type(side),
            "scan",
            lambda self, *a, _scan=original, **k: (
                scanned.append(self.engine) or _scan(self, *a, **k)
            ),
        )
    checks = check_copy(src, dst, "docs", result, None, acknowledged=ack)
    assert all(c.passed for c in checks), checks
    assert "acknowledged" in checks[-1].detail and "50 sampled records" in checks[-1].detail
    # Neither side read in full: the target fetched from, the dump's manifest digest used.
    assert not scanned and "the dump manifest" in checks[-1].detail
    full = check_copy(src, dst, "docs", result, None, mode="full", acknowledged=ack)
    assert all(c.passed for c in full) and "acknowledged" not in full[-1].detail and scanned


def test_sampled_check_reads_a_dump_again_when_its_manifest_digest_is_not_exact(
    tmp_path: Path,
) -> None:
    """A manifest digest of another kind (an older dump's: no exact vector hashes) cannot
    be compared with what an exact target acknowledged: the dump is read again."""
    src = _dump(tmp_path)
    manifest = json.loads((tmp_path / "src" / "manifest.json").read_text())
    schema = src.describe("docs")
    manifest["collections"]["docs"]["digest"] = _digest(
        [sample_batch(schema)], schema, None, 2
    ).to_json()
    (tmp_path / "src" / "manifest.json").write_text(json.dumps(manifest))
    dst, result, ack = _copy(tmp_path, connect(f"dump://{tmp_path / 'src'}"))
    checks = check_copy(src, dst, "docs", result, None, acknowledged=ack)
    assert all(c.passed for c in checks) and "the source read again" in checks[-1].detail


def test_sampled_check_against_the_manifest_sees_records_the_copy_did_not_carry(
    tmp_path: Path,
) -> None:
    """The dump grew after the copy: its manifest digest no longer matches what the target
    acknowledged, and the full check names the records the target lacks."""
    src = _dump(tmp_path)
    dst, result, ack = _copy(tmp_path, src)
    schema = src.describe("docs")
    more = sample_batch(schema, seed=5).slice(0, 3)
    ids = pa.array([f"late-{i}" for i in range(3)])
    src.upsert("docs", more.set_column(more.schema.get_field_index("id"), "id", ids))
    src.finalize("docs")
    checks = check_copy(src, dst, "docs", result, None, acknowledged=ack)
    assert not checks[-1].passed and "late-0" in checks[-1].detail, checks


def test_sampled_check_falls_back_to_the_full_check_on_any_difference(tmp_path: Path) -> None:
    src = _dump(tmp_path)
    dst, result, ack = _copy(tmp_path, src, sample=ROWS)  # every record read back
    ids = sample_ids(IdType.STRING)
    batch = dst.fetch("docs", [ids[9]])
    docs = batch.column("document").to_pylist()
    changed = batch.set_column(
        batch.schema.get_field_index("document"), "document", pa.array([docs[0] + "!"])
    )
    dst.upsert("docs", changed)  # changed behind the copy's back
    checks = check_copy(src, dst, "docs", result, None, acknowledged=ack)
    assert not checks[-1].passed and ids[9] in checks[-1].detail
    assert "acknowledged" not in checks[-1].detail  # named by the full check
    dst.delete("docs", [ids[3]])
    checks = check_copy(src, dst, "docs", result, None, acknowledged=ack)
    assert not checks[0].passed and not checks[-1].passed and ids[3] in checks[-1].detail


def test_sampled_check_of_a_source_without_a_stored_digest_compares_exact_bits(
    tmp_path: Path,
) -> None:
    """A LanceDB source keeps no digest: the copy's acknowledgements are digested without
    projections, the source read again the same way, and a vector changed in its last bit
    after the copy is told apart (the full check then names it)."""
    src = _dump(tmp_path, "lancedb")
    schema = sample_schema("docs")
    dst = connect(f"lancedb://{tmp_path / 'dst'}")
    opts = CopyOptions(job_path=tmp_path / "job.sqlite", batch_rows=40)
    with acknowledging(src, dst, sample=20, projections=False) as ack:
        result = copy_collection(src, dst, "docs", options=opts)
    acked = ack.digest("docs")
    assert acked is not None and not acked.projected and acked.grid_step == 0.0
    checks = check_copy(src, dst, "docs", result, None, acknowledged=ack)
    assert all(c.passed for c in checks) and "the source read again" in checks[-1].detail
    rid = sample_ids(IdType.STRING)[11]
    batch = src.fetch("docs", [rid])
    vec = vectors_to_numpy(batch.column("vector")).copy()
    vec[0].view(np.uint32)[0] ^= 1
    src.upsert("docs", _rebuild(schema, batch, vectors=vec))
    checks = check_copy(src, dst, "docs", result, None, acknowledged=ack)
    assert not checks[-1].passed and rid in checks[-1].detail
    assert "acknowledged" not in checks[-1].detail  # named by the full check


def test_sampled_check_needs_everything_acknowledged_recorded(tmp_path: Path) -> None:
    src = _dump(tmp_path)
    dst, result, ack = _copy(tmp_path, src)
    ack.fresh = False  # e.g. --if-exists reuse into a non-empty collection
    checks = check_copy(src, dst, "docs", result, None, acknowledged=ack)
    assert checks[-1].passed and "acknowledged" not in checks[-1].detail
    ack.fresh = True
    resumed = type(result)(**{**result.__dict__, "resumed": True})
    checks = check_copy(src, dst, "docs", resumed, None, acknowledged=ack)
    assert checks[-1].passed and "acknowledged" not in checks[-1].detail


def test_live_check_judges_the_target_by_what_it_acknowledged(tmp_path: Path) -> None:
    """--verify live: the source moving on after the scan is reported, not failed; the
    target differing from what it acknowledged fails; an unrecorded copy is not judged."""
    src = connect(f"lancedb://{tmp_path / 'src'}")
    schema = sample_schema("docs")
    src.create(schema)
    src.upsert("docs", sample_batch(schema))
    dst, result, ack = _copy(tmp_path, src)
    ids = sample_ids(IdType.STRING)
    # the application writes to the source after the copy read it
    src.delete("docs", [ids[1], ids[2]])
    live = check_copy(src, dst, "docs", result, None, mode="live", acknowledged=ack)
    assert all(c.passed for c in live), live
    assert f"holds {ROWS - 2:,} records now" in live[-1].detail
    assert not check_copy(src, dst, "docs", result, None, mode="full")[-1].passed
    # the target changed behind the copy's back
    dst.delete("docs", [ids[5]])
    live = check_copy(src, dst, "docs", result, None, mode="live", acknowledged=ack)
    by_name = {c.name: c for c in live}
    assert not by_name["row count"].passed and not by_name["content digest"].passed
    ack.fresh = False
    live = check_copy(src, dst, "docs", result, None, mode="live", acknowledged=ack)
    assert not live[0].passed and "--if-exists reuse" in live[0].detail


@pytest.mark.parametrize(
    ("verify", "source", "recorded"),
    [
        (True, "lancedb", False),  # no stored digest: exact bits only
        (True, "dump", True),  # compared with the manifest's digest: projected
        ("live", "lancedb", True),  # compared with the target read back: projected
        ("full", "lancedb", None),  # both sides read back: nothing recorded
    ],
)
def test_copy_records_acknowledgements_as_its_check_compares_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verify: Any, source: str, recorded: Any
) -> None:
    import vecmigrate.api.verbs as verbs
    from vecmigrate.api import copy

    _dump(tmp_path, source).close()
    seen: list[bool] = []
    real = verbs.acknowledging

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["projections"])
        return real(*args, **kwargs)

    monkeypatch.setattr(verbs, "acknowledging", spy)
    opts = CopyOptions(job_path=tmp_path / "job.sqlite")
    report = copy(
        f"{source}://{tmp_path / 'src'}",
        f"lancedb://{tmp_path / 'dst'}",
        "docs",
        options=opts,
        verify=verify,
    )
    assert all(c.passed for c in report.checks), report.checks
    assert seen == ([] if recorded is None else [recorded])
