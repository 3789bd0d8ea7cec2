from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from vecmigrate.errors import DataError
from vecmigrate.model import CollectionSchema, IdType, MetadataField, VectorField
from vecmigrate.records import (
    build_batch,
    conform,
    infer_metadata_fields,
    metadata_rows,
    metadata_to_arrow,
    vectors_to_numpy,
)


def _schema(*fields: MetadataField, id_type: IdType = IdType.STRING) -> CollectionSchema:
    return CollectionSchema(
        name="c", id_type=id_type, vectors=(VectorField(dim=3),), metadata=fields
    )


def test_infer_types_majority_and_widening() -> None:
    rows = [
        {"a": 1, "b": 1, "c": "x", "d": ["p"]},
        {"a": 2.5, "b": 2, "c": 3},
        {"a": None, "c": "y"},
    ]
    types = {f.name: f.type for f in infer_metadata_fields(rows)}
    assert types == {"a": "float64", "b": "int64", "c": "string", "d": "list<string>"}


def test_misfit_values_are_kept_in_extra_not_coerced() -> None:
    schema = _schema(MetadataField(name="year", type="int64"))
    struct, extra = metadata_to_arrow(
        [{"year": 2020}, {"year": "2021"}, {"other": {"x": 1}}], schema
    )
    assert struct is not None
    assert struct.field("year").to_pylist() == [2020, None, None]
    assert [json.loads(e) if e else None for e in extra.to_pylist()] == [
        None,
        {"year": "2021"},
        {"other": {"x": 1}},
    ]


def test_metadata_rows_merge_typed_and_extra() -> None:
    schema = _schema(MetadataField(name="year", type="int64"), MetadataField(name="j", type="json"))
    rows = [{"year": 1, "j": {"k": [1, 2]}}, {"year": "two"}]
    batch = build_batch(schema, ["a", "b"], {"vector": np.zeros((2, 3))}, metadata=rows)
    assert metadata_rows(batch, schema) == rows


def test_vectors_view_is_zero_copy() -> None:
    m = np.arange(12, dtype=np.float32).reshape(4, 3)
    batch = build_batch(_schema(), ["a", "b", "c", "d"], {"vector": m})
    col = batch.column("vector")
    view = vectors_to_numpy(col)
    assert np.array_equal(view, m)
    assert view.ctypes.data == col.values.buffers()[1].address
    sliced = vectors_to_numpy(col.slice(1, 2))
    assert np.array_equal(sliced, m[1:3])


def test_conform_int_ids_to_string_is_lossless() -> None:
    src = _schema(id_type=IdType.INT)
    batch = build_batch(src, [1, 2], {"vector": np.ones((2, 3))})
    out = conform(batch, _schema())
    assert out.column("id").to_pylist() == ["1", "2"]


def test_conform_refuses_lossy_cast() -> None:
    batch = build_batch(_schema(), ["1", "x"], {"vector": np.ones((2, 3))})
    with pytest.raises(DataError, match="id"):
        conform(batch, _schema(id_type=IdType.INT))


def test_reserved_vector_name_refused() -> None:
    with pytest.raises(ValueError, match="reserved"):
        VectorField(name="metadata", dim=3)


def test_schema_json_round_trip_and_version_check() -> None:
    s = _schema(MetadataField(name="year", type="int64"))
    assert CollectionSchema.from_json(s.to_json()) == s
    bad = json.loads(s.to_json())
    bad["format_version"] = 99
    with pytest.raises(Exception, match="version 99"):
        CollectionSchema.from_json(json.dumps(bad))


def test_arrow_layout() -> None:
    s = _schema(MetadataField(name="year", type="int64"))
    assert s.arrow_schema().names == ["id", "vector", "metadata", "metadata_extra"]
    assert s.arrow_schema().field("vector").type == pa.list_(pa.float32(), 3)
