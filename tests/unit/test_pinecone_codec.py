"""Pinecone's client-free mapping: names, ids, filters, metadata (no server needed)."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vecmigrate.connectors.pinecone._records import (
    EXTRA_KEY,
    compile_filter,
    decode_value,
    encode_metadata,
    from_pinecone_id,
    index_name,
    index_url,
    pop_extra,
    schema_from_tags,
    schema_tags,
    to_pinecone_id,
)
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import parse
from vecmigrate.model import CollectionSchema, MetadataField, VectorField
from vecmigrate.records import build_batch

SCHEMA = CollectionSchema(
    name="c",
    vectors=(VectorField(dim=2),),
    has_document=True,
    metadata=(
        MetadataField(name="g", type="string"),
        MetadataField(name="n", type="int64"),
        MetadataField(name="x", type="float64"),
        MetadataField(name="tags", type="list<string>"),
        MetadataField(name="ints", type="list<int64>"),
        MetadataField(name="obj", type="json"),
    ),
)


@given(st.text(max_size=60))
def test_ids_map_to_ascii_and_back(rid: str) -> None:
    pid = to_pinecone_id(rid)
    assert pid.isascii() and "\x00" not in pid
    assert from_pinecone_id(pid) == rid


@given(st.text(min_size=1, max_size=80))
def test_index_names_are_valid_and_distinct(name: str) -> None:
    got = index_name(name)
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,43}[a-z0-9])?", got)
    if got != name:
        assert index_name(name + "_") != got


@pytest.mark.parametrize(
    ("flt", "want"),
    [
        ({"g": "a"}, {"g": {"$eq": "a"}}),
        ({"g": {"$ne": "a"}}, {"$and": [{"g": {"$exists": True}}, {"g": {"$ne": "a"}}]}),
        ({"$not": {"g": "a"}}, {"$or": [{"g": {"$exists": False}}, {"g": {"$ne": "a"}}]}),
        ({"$not": {"tags": "t"}},
         {"$or": [{"tags": {"$exists": False}}, {"tags": {"$nin": ["t"]}}]}),
        ({"$not": {"n": {"$gt": 3}}}, {"$or": [{"n": {"$exists": False}}, {"n": {"$lte": 3}}]}),
        ({"ints": 3}, {"ints": {"$eq": "3"}}),
        ({"$not": {"$and": [{"g": "a"}, {"n": {"$exists": True}}]}},
         {"$or": [{"$or": [{"g": {"$exists": False}}, {"g": {"$ne": "a"}}]},
                  {"n": {"$exists": False}}]}),
    ],
)  # fmt: skip
def test_filters_keep_portable_semantics(flt: dict, want: dict) -> None:  # type: ignore[type-arg]
    assert compile_filter(parse(flt, SCHEMA)) == want


def test_metadata_round_trips_through_pinecone_types() -> None:
    rows = [
        {"g": "a", "n": 7, "x": 1.5, "tags": [], "ints": [1, -2], "obj": {"k": [1]}},
        {"n": "not an int", "unknown": {"deep": True}},
    ]
    batch = build_batch(SCHEMA, ["a", "b"], {"vector": [[1.0, 0.0], [0.0, 1.0]]}, metadata=rows)
    (md0, size0), (md1, _) = encode_metadata(batch, SCHEMA, "_doc", "c", ["a", "b"])
    assert md0 == {"g": "a", "n": 7, "x": 1.5, "tags": [], "ints": ["1", "-2"], "obj": '{"k":[1]}'}
    assert size0 > 0 and set(md1) == {EXTRA_KEY}  # drifted and unknown values stay apart
    by_name = {f.name: f for f in SCHEMA.metadata}
    back = {k: decode_value(by_name.get(k), float(v) if k == "n" else v) for k, v in md0.items()}
    assert back == rows[0] and type(back["n"]) is int
    assert pop_extra(dict(md1)) == rows[1]


def test_metadata_limits_are_data_errors_naming_the_field() -> None:
    too_big = build_batch(SCHEMA, ["a"], {"vector": [[1.0, 0.0]]}, documents=["d" * 41_000])
    with pytest.raises(DataError) as err:
        encode_metadata(too_big, SCHEMA, "_doc", "c", ["a"])
    assert (err.value.record_id, err.value.field) == ("a", "document")
    huge_int = build_batch(SCHEMA, ["a"], {"vector": [[1.0, 0.0]]}, metadata=[{"n": 2**60}])
    with pytest.raises(DataError, match="float64"):
        encode_metadata(huge_int, SCHEMA, "_doc", "c", ["a"])


def test_schema_tags_round_trip_or_refuse_when_too_large() -> None:
    tags = schema_tags(SCHEMA)
    assert tags and all(len(v) <= 120 and v.isascii() for v in tags.values())
    assert schema_from_tags(tags) == SCHEMA
    names = [hashlib.sha256(str(i).encode()).hexdigest()[:24] for i in range(400)]
    wide = SCHEMA.replace(metadata=tuple(MetadataField(name=n, type="string") for n in names))
    assert schema_tags(wide) is None
    with pytest.raises(ConfigError, match="unreadable"):
        schema_from_tags({"vecmigrate-schema-00": "not base64!"})


@pytest.mark.parametrize(
    ("described", "control_plane", "want"),
    [
        ("my-idx-abc.svc.pinecone.io", None, "https://my-idx-abc.svc.pinecone.io"),
        ("https://my-idx-abc.svc.pinecone.io", None, "https://my-idx-abc.svc.pinecone.io"),
        # Pinecone Local / the test double: bare hosts, or https:// added by the client's
        # index model, on a plain-http control plane are plain http.
        ("127.0.0.1:5081", "http://127.0.0.1:5080", "http://127.0.0.1:5081"),
        ("https://127.0.0.1:5081", "HTTP://127.0.0.1:5080", "http://127.0.0.1:5081"),
        ("http://localhost:5081", "https://localhost:5080", "https://localhost:5081"),
        ("localhost:5081", "localhost:5080", "https://localhost:5081"),
    ],
)  # fmt: skip
def test_index_urls_take_the_control_planes_scheme(
    described: str, control_plane: str | None, want: str
) -> None:
    assert index_url(described, control_plane) == want
