from __future__ import annotations

import pytest

from vecmigrate.errors import ConfigError
from vecmigrate.filters import evaluate, parse
from vecmigrate.testing.data import FILTER_MATRIX, sample_batch, sample_metadata, sample_schema

SCHEMA = sample_schema("c")
BATCH = sample_batch(SCHEMA)
META = sample_metadata()


def _python(f: dict, m: dict) -> bool:  # type: ignore[type-arg]
    """An independent, naive implementation of the documented semantics."""
    if "$and" in f:
        return all(_python(x, m) for x in f["$and"])
    if "$or" in f:
        return any(_python(x, m) for x in f["$or"])
    if "$not" in f:
        return not _python(f["$not"], m)
    ((field, cond),) = f.items()
    ops = cond if isinstance(cond, dict) else {"$eq": cond}
    if len(ops) > 1:
        return all(_python({field: {op: v}}, m) for op, v in ops.items())
    ((op, v),) = ops.items()
    x = m.get(field)
    if op == "$exists":
        return (x is not None) == v
    if x is None:
        return False
    if isinstance(x, list):
        return any(w in x for w in (v if op == "$in" else [v]))
    return {
        "$eq": x == v,
        "$ne": x != v,
        "$in": x in (v if op in ("$in", "$nin") else []),
        "$nin": x not in (v if op in ("$in", "$nin") else []),
        "$gt": op == "$gt" and x > v,
        "$gte": op == "$gte" and x >= v,
        "$lt": op == "$lt" and x < v,
        "$lte": op == "$lte" and x <= v,
    }[op]


FILTERS = [*FILTER_MATRIX, {"score": {"$lt": 20.5}}, {"score": {"$lte": 0.5}}]


@pytest.mark.parametrize("f", FILTERS, ids=[str(f) for f in FILTERS])
def test_evaluate_matches_the_documented_semantics(f: dict) -> None:  # type: ignore[type-arg]
    got = evaluate(parse(f, SCHEMA), BATCH).tolist()
    assert got == [_python(f, m) for m in META]
    assert 0 < sum(got) < len(got) or f in ({"score": {"$lte": 0.5}},)


@pytest.mark.parametrize(
    "bad",
    [
        {"nope": 1},
        {"genre": {"$regex": "x"}},
        {"$xor": []},
        {"tags": {"$gt": "a"}},
        {"genre": {"$gt": 3}},
        {"year": "1999"},
        {"genre": {"$in": []}},
        {},
    ],
)
def test_bad_filters_are_refused_clearly(bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError):
        parse(bad, SCHEMA)


def test_fractional_bound_on_an_int_field_is_not_truncated() -> None:
    import pyarrow as pa

    from vecmigrate.filters import evaluate, parse
    from vecmigrate.model import CollectionSchema, MetadataField, VectorField

    schema = CollectionSchema(
        name="c",
        vectors=(VectorField(dim=2),),
        metadata=(MetadataField(name="year", type="int64"),),
    )
    batch = pa.RecordBatch.from_pydict({"metadata": pa.array([{"year": 1995}, {"year": 1996}])})
    assert evaluate(parse({"year": {"$lt": 1995.5}}, schema), batch).tolist() == [True, False]
    assert evaluate(parse({"year": {"$gt": 1995.5}}, schema), batch).tolist() == [False, True]
    assert evaluate(parse({"year": {"$in": [1995.0, 1996.5]}}, schema), batch).tolist() == [
        True,
        False,
    ]
