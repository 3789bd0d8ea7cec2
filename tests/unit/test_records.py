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


# -- values survive exactly or are refused (issue #12) -----------------------------------------
def _raw_batch(**columns: pa.Array) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(columns)


VEC = pa.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], pa.list_(pa.float32(), 3))


def test_explicit_null_is_not_a_missing_key() -> None:
    schema = _schema(MetadataField(name="n", type="int64"))
    rows = [{"n": None}, {}, {"n": 1}]
    vecs = {"vector": np.zeros((3, 3))}
    kept = build_batch(schema, ["a", "b", "c"], vecs, metadata=rows, explicit_nulls=True)
    assert metadata_rows(kept, schema) == rows
    assert kept.column("metadata").field("n").to_pylist() == [None, None, 1]
    # Engines whose None means "absent" (the default) record no null.
    absent = build_batch(schema, ["a", "b", "c"], vecs, metadata=rows)
    assert metadata_rows(absent, schema) == [{}, {}, {"n": 1}]


def test_int_in_a_float_field_stays_an_int_and_filters_as_a_float() -> None:
    schema = _schema(
        MetadataField(name="s", type="float64"), MetadataField(name="l", type="list<float64>")
    )
    rows: list[dict[str, object]] = [{"s": 3, "l": [1, 2.5]}, {"s": 2.5, "l": [0.5]}]
    batch = build_batch(schema, ["a", "b"], {"vector": np.zeros((2, 3))}, metadata=rows)
    assert batch.column("metadata").field("s").to_pylist() == [3.0, 2.5]  # what filters see
    back = metadata_rows(batch, schema)
    assert back == rows and type(back[0]["s"]) is int and type(back[0]["l"][0]) is int  # type: ignore[index]


def test_conform_refuses_missing_columns_but_not_an_absent_extra() -> None:
    schema = _schema(MetadataField(name="year", type="int64")).replace(has_document=True)
    struct = pa.array([{"year": 1}, {"year": 2}], schema.metadata_struct_type())
    ok = conform(
        _raw_batch(
            id=pa.array(["a", "b"]), document=pa.array(["x", "y"]), vector=VEC, metadata=struct
        ),
        schema,
    )
    assert ok.column("metadata_extra").null_count == 2
    with pytest.raises(DataError, match="has no 'metadata' column") as exc:
        conform(
            _raw_batch(id=pa.array(["a", "b"]), document=pa.array(["x", "y"]), vector=VEC), schema
        )
    assert exc.value.field == "metadata"
    with pytest.raises(DataError, match="has no 'document' column"):
        conform(_raw_batch(id=pa.array(["a", "b"]), vector=VEC, metadata=struct), schema)


def test_conform_refuses_a_renamed_metadata_field() -> None:
    schema = _schema(MetadataField(name="label", type="string"))
    struct = pa.array([{"lable": "x"}, {"lable": "y"}])
    with pytest.raises(DataError, match="missing 'label'; not in the schema: 'lable'") as exc:
        conform(_raw_batch(id=pa.array(["a", "b"]), vector=VEC, metadata=struct), schema)
    assert exc.value.field == "metadata.label"


def test_conform_strict_refuses_an_undeclared_column() -> None:
    batch = _raw_batch(id=pa.array(["a", "b"]), vector=VEC, rating=pa.array([1, 2]))
    assert conform(batch, _schema()).schema.names == ["id", "vector", "metadata_extra"]
    with pytest.raises(DataError, match="'rating' the schema does not declare"):
        conform(batch, _schema(), strict=True)


def test_conform_never_parses_text_into_numbers() -> None:
    """A text column in an int64 field: every value moves to metadata_extra as it is."""
    schema = _schema(MetadataField(name="year", type="int64"))
    years = ["007", "-0", "0000000001", "2003", None, "12", "x"]
    ids = [f"r{i}" for i in range(len(years))]
    vec = pa.array([[0.0, 0.0, 1.0]] * len(years), pa.list_(pa.float32(), 3))
    struct = pa.StructArray.from_arrays([pa.array(years)], names=["year"])
    out = conform(_raw_batch(id=pa.array(ids), vector=vec, metadata=struct), schema)
    assert out.column("metadata").field("year").null_count == len(years)
    got = [m.get("year") for m in metadata_rows(out, schema)]
    assert got == years


def test_conform_widens_only_within_a_kind() -> None:
    schema = _schema(
        MetadataField(name="i", type="int64"),
        MetadataField(name="f", type="float64"),
        MetadataField(name="s", type="string"),
        MetadataField(name="l", type="list<int64>"),
    )
    struct = pa.StructArray.from_arrays(
        [
            pa.array([-5, None], pa.int8()),
            pa.array(np.array([0.5, 1.25], np.float16)),  # pyarrow < 21: not from floats
            pa.array(["a", "b"], pa.large_string()),
            pa.array([[1], []], pa.list_(pa.int32())),
        ],
        names=["i", "f", "s", "l"],
    )
    out = conform(_raw_batch(id=pa.array(["a", "b"]), vector=VEC, metadata=struct), schema)
    assert out.column("metadata_extra").null_count == 2  # nothing spilled
    assert metadata_rows(out, schema) == [
        {"i": -5, "f": 0.5, "s": "a", "l": [1]},
        {"f": 1.25, "s": "b", "l": []},
    ]


def test_conform_keeps_big_unsigned_ints_exact_and_ints_in_float_fields() -> None:
    schema = _schema(MetadataField(name="u", type="int64"), MetadataField(name="f", type="float64"))
    struct = pa.StructArray.from_arrays(
        [pa.array([1, 2**64 - 1], pa.uint64()), pa.array([3, 4], pa.int64())], names=["u", "f"]
    )
    out = conform(_raw_batch(id=pa.array(["a", "b"]), vector=VEC, metadata=struct), schema)
    rows = metadata_rows(out, schema)
    assert rows == [{"u": 1, "f": 3}, {"u": 2**64 - 1, "f": 4}]
    assert all(type(r["f"]) is int for r in rows)
    assert out.column("metadata").field("f").to_pylist() == [3.0, 4.0]


def test_conform_refuses_a_metadata_type_with_no_portable_form() -> None:
    schema = _schema(MetadataField(name="day", type="string"))
    struct = pa.StructArray.from_arrays([pa.array([1, 2], pa.date32())], names=["day"])
    with pytest.raises(DataError, match="'day' is date32") as exc:
        conform(_raw_batch(id=pa.array(["a", "b"]), vector=VEC, metadata=struct), schema)
    assert exc.value.field == "metadata.day"


def test_conform_refuses_int_ids_that_would_read_back_differently() -> None:
    schema = _schema(id_type=IdType.INT)
    assert conform(_raw_batch(id=pa.array(["7", "12"]), vector=VEC), schema).column(
        "id"
    ).to_pylist() == [7, 12]
    with pytest.raises(DataError, match="id '007' as int64 would read back as '7'") as exc:
        conform(_raw_batch(id=pa.array(["1", "007"]), vector=VEC), schema)
    assert (exc.value.record_id, exc.value.field) == ("007", "id")


def test_conform_copies_float64_vectors_only_when_float32_holds_them() -> None:
    nan = float("nan")
    exact = pa.array([[0.5, nan, 2.0], [1.0, 0.25, -4.0]], pa.list_(pa.float64(), 3))
    out = conform(_raw_batch(id=pa.array(["a", "b"]), vector=exact), _schema())
    assert out.column("vector").type == pa.list_(pa.float32(), 3)
    assert out.column("vector").to_pylist()[1] == [1.0, 0.25, -4.0]
    rounded = pa.array([[0.5, 1.0, 2.0], [1.0, 0.1, -4.0]], pa.list_(pa.float64(), 3))
    with pytest.raises(DataError, match="float64 and not exactly representable") as exc:
        conform(_raw_batch(id=pa.array(["a", "b"]), vector=rounded), _schema())
    assert (exc.value.record_id, exc.value.field) == ("b", "vector")
    assert exc.value.hint and "{vector: {round_to_float32: true}}" in exc.value.hint
    # Read as the mapping allows: rounded to the nearest float32 (NaN stays NaN).
    schema = _schema()
    lenient = schema.replace(vectors=(schema.vector.model_copy(update={"rounded": True}),))
    batch = _raw_batch(id=pa.array(["a", "b"]), vector=rounded)
    got = conform(batch, lenient).column("vector").to_pylist()
    assert got == np.asarray([[0.5, 1.0, 2.0], [1.0, 0.1, -4.0]], np.float32).tolist()


def test_null_vector_error_names_the_row() -> None:
    col = pa.array([[1.0, 2.0, 3.0], None], pa.list_(pa.float32(), 3))
    with pytest.raises(DataError, match=r"1 null vector.*row 1"):
        vectors_to_numpy(col)


def test_conform_refuses_metadata_the_schema_has_no_place_for() -> None:
    """A metadata struct with values, into a schema without metadata fields, is refused
    naming the fields (it used to be dropped as an undeclared column)."""
    import pyarrow as pa
    import pytest

    from vecmigrate.errors import DataError
    from vecmigrate.layout import conform
    from vecmigrate.model import CollectionSchema, VectorField

    schema = CollectionSchema(name="c", vectors=(VectorField(dim=2),))
    vec = pa.array([[1.0, 2.0]], pa.list_(pa.float32(), 2))
    meta = pa.array([{"genre": "a"}])
    batch = pa.RecordBatch.from_arrays([pa.array(["x"]), vec, meta], ["id", "vector", "metadata"])
    with pytest.raises(DataError, match=r"has metadata \('genre'\) but the schema declares no"):
        conform(batch, schema)
