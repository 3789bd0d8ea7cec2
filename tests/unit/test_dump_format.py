"""The dump is an open format: pandas, Polars and DuckDB read it as-is; damage is named."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest

from vecmigrate.connectors import connect
from vecmigrate.dump import Dump
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.testing.data import ROWS, sample_batch, sample_schema
from vecmigrate.verify.digest import CollectionDigest, collection_digest


@pytest.fixture
def dump_dir(tmp_path: Path) -> Path:
    conn = connect(f"dump://{tmp_path / 'd'}")
    schema = sample_schema("docs")
    conn.create(schema)
    batch = sample_batch(schema)
    conn.upsert("docs", batch.slice(0, 100))
    conn.upsert("docs", batch.slice(100))
    conn.finalize("docs")
    return tmp_path / "d"


def test_manifest_lists_files_rows_checksums_and_digest(dump_dir: Path) -> None:
    manifest = json.loads((dump_dir / "manifest.json").read_text())
    entry = manifest["collections"]["docs"]
    assert entry["rows"] == ROWS and len(entry["files"]) == 2
    assert all(len(f["sha256"]) == 64 for f in entry["files"])
    stored = CollectionDigest.from_json(entry["digest"])
    assert stored.compare(collection_digest(connect(f"dump://{dump_dir}"), "docs")).equal
    assert entry["ids_unique"] is True  # finalize proved it: readers skip their id pass


def test_a_dump_not_proven_unique_is_checked_for_repeated_ids(tmp_path: Path) -> None:
    """A manifest without ``ids_unique`` (written by hand or another tool) gets the id pass."""
    schema = sample_schema("docs")
    batch = sample_batch(schema)
    dump = Dump(tmp_path / "d")
    dump.write_schema(schema)
    stored = [dump.store_part("docs", batch.slice(0, 10)), dump.store_part("docs", batch.slice(5))]
    dump.record_collection("docs", [p.info for p in stored], {}, schema)
    with pytest.raises(DataError, match="more than once"):
        connect(f"dump://{tmp_path / 'd'}").partitions("docs", 2)


def test_pandas_polars_duckdb_read_it(dump_dir: Path) -> None:
    glob = str(dump_dir / "docs" / "*.parquet")
    df = pd.read_parquet(dump_dir / "docs")
    assert len(df) == ROWS and len(df["vector"].iloc[0]) == 16
    pdf = pl.read_parquet(glob)
    assert pdf.height == ROWS and pdf.schema["vector"] == pl.Array(pl.Float32, 16)
    con = duckdb.connect()
    n, genre = con.execute(
        f"SELECT count(*), min(metadata.genre) FROM read_parquet('{glob}')"
    ).fetchone()  # type: ignore[misc]
    assert n == ROWS and genre == "art"
    dims = con.execute(f"SELECT DISTINCT len(vector) FROM read_parquet('{glob}')").fetchall()
    assert dims == [(16,)]


def test_vectors_are_float32_fixed_size(dump_dir: Path) -> None:
    import pyarrow.parquet as pq

    part = next((dump_dir / "docs").glob("part-*.parquet"))
    t = pq.read_table(part)
    # Elements declared non-null (none is): Parquet then decodes the column ~40 % faster.
    assert str(t.schema.field("vector").type) == "fixed_size_list<element: float not null>[16]"
    assert np.asarray(t.column("vector").combine_chunks().flatten()).dtype == np.float32


def test_tampered_part_is_refused_with_its_name(dump_dir: Path) -> None:
    part = next((dump_dir / "docs").glob("part-*.parquet"))
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    conn = connect(f"dump://{dump_dir}")
    with pytest.raises(DataError, match=f"checksum mismatch for {part.name}"):
        for p in conn.partitions("docs", 1):
            list(conn.scan("docs", p))


def test_unknown_versions_are_refused(dump_dir: Path) -> None:
    schema_file = dump_dir / "docs" / "_schema.json"
    data = json.loads(schema_file.read_text())
    data["format_version"] = 42
    schema_file.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="version 42"):
        connect(f"dump://{dump_dir}").describe("docs")
    manifest = json.loads((dump_dir / "manifest.json").read_text())
    manifest["format_version"] = 7
    (dump_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="version 7"):
        connect(f"dump://{dump_dir}").count("docs")


def test_unfinished_dump_is_refused(tmp_path: Path) -> None:
    conn = connect(f"dump://{tmp_path / 'd'}")
    schema = sample_schema("docs")
    conn.create(schema)
    conn.upsert("docs", sample_batch(schema))
    with pytest.raises(DataError, match="incomplete"):
        conn.partitions("docs", 1)


def test_collection_names_cannot_escape(tmp_path: Path) -> None:
    conn = connect(f"dump://{tmp_path / 'd'}")
    with pytest.raises(ConfigError):
        conn.create(sample_schema("../evil"))
