"""LanceDB bulk loads append (merge_insert grows with the table) and still end as
idempotent upserts would: a batch sent twice leaves one row per id after finalize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_module
from vecmigrate.connectors import connect
from vecmigrate.testing.data import ROWS, sample_batch, sample_schema
from vecmigrate.verify.digest import collection_digest


def test_batches_re_sent_during_a_bulk_load_leave_one_row_per_id(tmp_path: Path) -> None:
    require_module("lancedb")
    schema = sample_schema("docs")
    batch = sample_batch(schema)
    ref = connect(f"dump://{tmp_path / 'ref'}")
    ref.create(schema)
    ref.upsert("docs", batch)
    ref.finalize("docs")

    conn = connect(f"lancedb://{tmp_path / 'lance'}")
    conn.create(schema)
    conn.begin_bulk_load("docs")
    conn.upsert("docs", batch.slice(0, 100))
    conn.upsert("docs", batch.slice(50, 50))  # rows 50-99 sent twice, as after a timeout
    conn.upsert("docs", batch.slice(100))
    assert conn.count("docs") == ROWS + 50  # appended: duplicates until finalize
    conn.finalize("docs")
    assert conn.count("docs") == ROWS
    assert collection_digest(ref, "docs").compare(collection_digest(conn, "docs")).equal

    # Once finalized, or on a table that holds rows, writes are upserts again.
    conn.upsert("docs", batch.slice(0, 10))
    conn.begin_bulk_load("docs")
    conn.upsert("docs", batch.slice(0, 10))
    assert conn.count("docs") == ROWS


def test_ids_sharing_a_key_are_checked_on_the_table_not_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Equal 64-bit id keys (a hash collision, forced here) send finalize to the exact
    check on the table, which keeps every distinct id."""
    import vecmigrate.connectors.lancedb as lance_connector

    require_module("lancedb")
    monkeypatch.setattr(lance_connector, "id_keys", lambda ids: np.zeros(len(ids), np.uint64))
    schema = sample_schema("docs")
    conn = connect(f"lancedb://{tmp_path / 'lance'}")
    conn.create(schema)
    conn.begin_bulk_load("docs")
    conn.upsert("docs", sample_batch(schema))
    conn.finalize("docs")
    assert conn.count("docs") == ROWS
