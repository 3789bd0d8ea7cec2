"""The dump writer digests and checksums each part from memory as it writes it: the
manifest it records must be the one a finalize reading every part back would record."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vecmigrate.connectors import connect
from vecmigrate.dump import Dump
from vecmigrate.errors import DataError
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.testing.data import ROWS, rich_batch, rich_schema, sample_batch, sample_schema
from vecmigrate.verify.digest import CollectionDigest, collection_digest


def _write(path: Path, schema: CollectionSchema, batch: pa.RecordBatch, cuts: list[int]) -> Any:
    """A connection that wrote ``batch`` as one part per slice between ``cuts``."""
    conn = connect(f"dump://{path}")
    conn.create(schema)
    bounds = [0, *cuts, batch.num_rows]
    for start, end in itertools.pairwise(bounds):
        conn.upsert(schema.name, batch.slice(start, end - start))
    return conn


def _entry(path: Path, name: str = "docs") -> dict[str, Any]:
    entry: dict[str, Any] = json.loads((path / "manifest.json").read_text())["collections"][name]
    return entry


def _assert_same_digest(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Counts and exact hashes equal; projection sums equal up to summation order."""
    assert a["count"] == b["count"] and a["content_hash"] == b["content_hash"]
    for x, y in zip(a["buckets"], b["buckets"], strict=True):
        assert (x["count"], x["hash"], x["grid"]) == (y["count"], y["hash"], y["grid"])
        assert x["vectors"].keys() == y["vectors"].keys()
        for name in x["vectors"]:
            np.testing.assert_allclose(x["vectors"][name], y["vectors"][name], rtol=1e-9)


@pytest.mark.parametrize(
    ("id_type", "rich", "rows", "cuts"),
    [
        (IdType.STRING, False, ROWS, [37, 100, 101]),
        (IdType.INT, False, ROWS, [37, 100, 101]),
        (IdType.STRING, True, ROWS, [37, 100, 101]),
        # More rows than one digest group (scan_rows: 2,000 at least): groups are
        # digested as parts are written, the rest at finalize.
        (IdType.STRING, False, 4500, [1000, 2100, 2101, 3999]),
    ],
)
def test_manifest_from_memory_equals_one_read_back_from_the_parts(
    tmp_path: Path, id_type: IdType, rich: bool, rows: int, cuts: list[int]
) -> None:
    """Sliced batches (offsets into shared buffers), every metadata type, int and string
    ids, named and sparse vectors and namespaces: the digest and checksums finalize takes
    from memory equal those of a finalize by a connection that wrote nothing."""
    if rich:
        schema = rich_schema("docs", id_type=id_type, named=True, namespaces=True, sparse=True)
        batch = rich_batch(schema, rows)
    else:
        schema = sample_schema("docs", id_type=id_type)
        batch = sample_batch(schema, rows)
    writer = _write(tmp_path / "d", schema, batch, cuts)
    writer.finalize("docs")
    from_memory = _entry(tmp_path / "d")

    connect(f"dump://{tmp_path / 'd'}").finalize("docs")  # reads every part back
    from_files = _entry(tmp_path / "d")
    assert from_memory["files"] == from_files["files"]
    assert len(from_files["files"]) == len(cuts) + 1 and from_memory["rows"] == rows
    _assert_same_digest(from_memory["digest"], from_files["digest"])
    for f in from_files["files"]:
        data = (tmp_path / "d" / "docs" / f["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
    stored = CollectionDigest.from_json(from_memory["digest"])
    assert stored.compare(collection_digest(connect(f"dump://{tmp_path / 'd'}"), "docs")).equal


def test_a_part_replaced_after_it_was_written_is_recorded_as_stored(tmp_path: Path) -> None:
    """Another process re-sends the same ids with other content (same part name): the
    manifest records the file on disk, not what this connection wrote."""
    schema = sample_schema("docs")
    batch = sample_batch(schema)
    writer = _write(tmp_path / "d", schema, batch, [120])
    changed = sample_batch(schema, seed=99).slice(0, 120)  # same ids, other vectors
    other = connect(f"dump://{tmp_path / 'd'}")
    other.describe("docs")
    other.upsert("docs", changed)
    writer.finalize("docs")

    entry = _entry(tmp_path / "d")
    assert len(entry["files"]) == 2
    for f in entry["files"]:
        data = (tmp_path / "d" / "docs" / f["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
    on_disk = collection_digest(connect(f"dump://{tmp_path / 'd'}"), "docs")
    stored = CollectionDigest.from_json(entry["digest"])
    assert stored.compare(on_disk).equal
    original = _write(tmp_path / "o", schema, batch, [120])
    original.finalize("docs")
    assert not stored.compare(collection_digest(original, "docs")).equal


def test_an_id_in_two_parts_is_refused_by_name(tmp_path: Path) -> None:
    schema = sample_schema("docs")
    batch = sample_batch(schema)
    writer = _write(tmp_path / "d", schema, batch, [100])
    writer.upsert("docs", batch.slice(99, 2))  # doc-0099 and doc-0100 a second time
    with pytest.raises(DataError, match="duplicate ids in dump parts") as err:
        writer.finalize("docs")
    assert "doc-0099" in str(err.value) and "doc-0100" in str(err.value)
    assert not (tmp_path / "d" / "manifest.json").exists()


def test_part_names_hash_the_ids_and_vectors_are_not_dictionary_encoded(
    tmp_path: Path,
) -> None:
    """The part name is sha256 of the ids joined by 0x1F and their count (what a resumed
    export re-sending a batch relies on); float vectors are stored plain, while metadata
    keeps dictionary encoding; the part reads back as written."""
    schema = rich_schema("docs", id_type=IdType.INT, named=True)
    batch = rich_batch(schema)
    writer = _write(tmp_path / "d", schema, batch, [])
    writer.finalize("docs")
    ids = batch.column("id").to_pylist()
    expected = hashlib.sha256(
        "\x1f".join(map(str, ids)).encode() + str(len(ids)).encode()
    ).hexdigest()[:20]
    part = tmp_path / "d" / "docs" / f"part-{expected}.parquet"
    assert [f["file"] for f in _entry(tmp_path / "d")["files"]] == [part.name]
    meta = pq.ParquetFile(part).metadata.row_group(0)
    encodings = {
        meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)
    }
    assert "PLAIN_DICTIONARY" not in encodings["vector.list.element"]
    assert "RLE_DICTIONARY" not in encodings["vector.list.element"]
    assert "RLE_DICTIONARY" not in encodings["title.list.element"]
    assert "RLE_DICTIONARY" in encodings["metadata.genre"]
    # Vector elements are stored non-null (none is); every value reads back as written.
    stored = pq.read_table(part)
    assert not stored.schema.field("vector").type.value_field.nullable
    assert stored.cast(batch.schema).equals(pa.Table.from_batches([batch]))
    scanned = connect(f"dump://{tmp_path / 'd'}")
    rows = [b for p in scanned.partitions("docs", 1) for b, _ in scanned.scan("docs", p)]
    assert pa.Table.from_batches(rows).equals(pa.Table.from_batches([batch]))


def test_a_vector_with_a_null_element_keeps_its_type_in_the_part(tmp_path: Path) -> None:
    """Only vectors without a null element are declared non-null: a part never loses
    the null (reading refuses it later, naming the record)."""
    dump = Dump(tmp_path)
    (tmp_path / "c").mkdir()
    values = pa.array([1.0, None, 3.0, 4.0], pa.float32())
    batch = pa.table({"id": [1, 2], "vector": pa.FixedSizeListArray.from_arrays(values, 2)})
    part = dump.write_part("c", batch)
    stored = pq.read_table(part)
    assert stored.schema.field("vector").type.value_field.nullable
    assert stored.column("vector").combine_chunks().flatten().to_pylist() == [1.0, None, 3.0, 4.0]


def test_a_batch_written_twice_by_one_connection_is_counted_once(tmp_path: Path) -> None:
    """A retried upsert re-sends a batch this connection already wrote (same part): the
    manifest counts its records once."""
    schema = sample_schema("docs")
    batch = sample_batch(schema)
    writer = _write(tmp_path / "d", schema, batch, [100])
    writer.upsert("docs", batch.slice(0, 100))
    writer.finalize("docs")
    entry = _entry(tmp_path / "d")
    assert entry["rows"] == ROWS and entry["digest"]["count"] == ROWS
    stored = CollectionDigest.from_json(entry["digest"])
    assert stored.compare(collection_digest(connect(f"dump://{tmp_path / 'd'}"), "docs")).equal
