"""Target-limit checks: the vectorised metadata size bound never under-estimates, and the
rows refused are exactly those over the limit (sliced batches included)."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from vecmigrate.model import CollectionSchema, MetadataField, VectorField
from vecmigrate.pipeline.validate import (
    invalid_vector_rows,
    metadata_upper_bound,
    oversized_metadata,
)
from vecmigrate.records import build_batch, encode_json, metadata_rows

SCHEMA = CollectionSchema(
    name="d",
    vectors=(VectorField(dim=2),),
    metadata=(
        MetadataField(name="g", type="string"),
        MetadataField(name="t", type="list<string>"),
        MetadataField(name="n", type="int64"),
        MetadataField(name="j", type="json"),
        MetadataField(name="f", type="list<float64>"),
    ),
)


def _batch(seed: int, n: int = 300) -> pa.RecordBatch:
    rng = random.Random(seed)

    def text() -> str:  # quotes, backslashes, non-ASCII and control characters escape
        return "".join(rng.choice('ab"\\é\n\x01') for _ in range(rng.randint(0, 50)))

    meta = []
    for i in range(n):
        m: dict[str, object] = {}
        if rng.random() < 0.8:
            m["g"] = text()
        if rng.random() < 0.8:
            m["t"] = [text() for _ in range(rng.randint(0, 5))]
        if rng.random() < 0.8:
            m["n"] = rng.randint(-(2**63), 2**63 - 1)
        if rng.random() < 0.5:
            m["j"] = {"a": [text(), 1.5e300]}
        if rng.random() < 0.5:
            m["f"] = [rng.random() * 1e300 for _ in range(3)]
        if rng.random() < 0.2:  # ints in a float field travel twice: as floats and as ints
            m["f"] = [rng.randint(-(2**53), 2**53), 0.5]
        if rng.random() < 0.3:
            m[f"undeclared_{i % 3}"] = text()
        for key in ("g", "n", "j"):  # keys set to null are metadata too
            if key not in m and rng.random() < 0.3:
                m[key] = None
        meta.append(m)
    ids = [f"i{i}" for i in range(n)]
    vectors = {"vector": np.zeros((n, 2), np.float32)}
    return build_batch(SCHEMA, ids, vectors, metadata=meta, explicit_nulls=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_metadata_bound_and_refusals_are_exact(seed: int) -> None:
    batch = _batch(seed)
    for part in (batch, batch.slice(37, 150)):
        exact = np.array([len(encode_json(m).encode()) for m in metadata_rows(part, SCHEMA)])
        assert (metadata_upper_bound(part) >= exact).all()
        limit = int(np.median(exact))
        refused = oversized_metadata(part, SCHEMA, limit)
        assert set(refused) == set(np.flatnonzero(exact > limit).tolist())
        assert all(f == "metadata" and f"allows {limit:,}" in r for r, f in refused.values())
        assert oversized_metadata(part, SCHEMA, None) == {}


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_invalid_vectors_found_exactly_despite_overflow_and_cancellation(metric: str) -> None:
    """The one-pass screen (each row's sum) flags exactly the NaN/Inf rows and, under
    cosine, the all-zero rows: not rows whose finite sum overflows or cancels to 0."""
    big = np.finfo(np.float32).max
    rows = {
        "ok": [0.5, -0.25, 1.0, 2.0],
        "nan": [0.1, np.nan, 0.2, 0.3],
        "inf": [np.inf, 1.0, 1.0, 1.0],
        "ninf": [1.0, -np.inf, 1.0, 1.0],
        "both_inf": [np.inf, -np.inf, 1.0, 1.0],  # sums to NaN
        "overflow": [big, big, big, big],  # finite values, sum overflows float32
        "cancel": [1.0, -1.0, 2.5, -2.5],  # sums to exactly 0, not a zero vector
        "zero": [0.0, 0.0, 0.0, 0.0],
        "negzero": [-0.0, 0.0, -0.0, 0.0],
        "tiny": [1e-45, 0.0, 0.0, 0.0],
    }
    schema = CollectionSchema(name="d", vectors=(VectorField(dim=4, metric=metric),))
    ids = list(rows)
    batch = build_batch(schema, ids, {"vector": np.array(list(rows.values()), np.float32)})
    found = {(ids[row], why) for row, _, why in invalid_vector_rows(batch, schema)}
    bad = {(i, "vector contains NaN or Inf") for i in ("nan", "inf", "ninf", "both_inf")}
    if metric == "cosine":
        bad |= {(i, "zero vector: undefined under cosine") for i in ("zero", "negzero")}
    assert found == bad
