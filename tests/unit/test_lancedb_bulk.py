"""LanceDB bulk loads append (merge_insert grows with the table) and still end as
idempotent upserts would: a batch sent twice leaves one row per id after finalize."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vecmigrate
from tests.conftest import require_module
from vecmigrate.connectors import connect
from vecmigrate.errors import DataError
from vecmigrate.pipeline import CopyOptions
from vecmigrate.pipeline.streams import STREAM_BATCH_BYTES
from vecmigrate.pipeline.writer import RecordWriter
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
    assert not conn.streams_into("docs")
    conn.begin_bulk_load("docs")
    assert conn.streams_into("docs")
    conn.upsert("docs", batch.slice(0, 100))
    conn.upsert("docs", batch.slice(50, 50))  # rows 50-99 sent twice, as after a timeout
    conn.upsert("docs", batch.slice(100))
    assert conn.count("docs") == ROWS + 50  # appended: duplicates until finalize
    conn.finalize("docs")
    assert conn.count("docs") == ROWS
    assert collection_digest(ref, "docs").compare(collection_digest(conn, "docs")).equal

    # Once finalized, or on a table that holds rows, writes are upserts again, and a
    # stream is not one append (a copy writes bounded pieces instead).
    conn.upsert("docs", batch.slice(0, 10))
    conn.begin_bulk_load("docs")
    assert not conn.streams_into("docs")
    conn.upsert("docs", batch.slice(0, 10))
    conn.upsert_stream("docs", iter([batch.slice(0, 10), batch.slice(0, 10)]))
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


def _dump_of(path: Path, batch: Any, pieces: int) -> str:
    schema = sample_schema("docs")
    dump = connect(f"dump://{path}")
    dump.create(schema)
    step = batch.num_rows // pieces
    for start in range(0, batch.num_rows, step):
        dump.upsert("docs", batch.slice(start, step))
    dump.finalize("docs")
    return f"dump://{path}"


def test_a_streamed_write_that_fails_is_read_again_and_written_in_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy streams into LanceDB (``upsert_stream``), one append per
    ``bulk_stream_bytes``; when an append fails after taking some batches (its commit
    never happened, or did), the partition goes on from the last acknowledged token by
    bounded pieces: every record once, the copy verified."""
    require_module("lancedb")
    from vecmigrate.connectors.lancedb import LanceDBConnector, _BulkLoad

    batch = sample_batch(sample_schema("docs"))
    source = _dump_of(tmp_path / "src", batch, pieces=4)
    monkeypatch.setattr(LanceDBConnector, "bulk_stream_bytes", batch.nbytes // 3)
    appended = _BulkLoad.append_stream
    calls: list[int] = []

    def second_fails(self: Any, reader: Any, keys: Any) -> None:
        calls.append(len(calls))
        if len(calls) == 2:  # after the first piece was acknowledged
            appended(self, reader, keys)  # committed, and yet reported as failed
            raise OSError("injected: connection reset while committing")
        appended(self, reader, keys)

    monkeypatch.setattr(_BulkLoad, "append_stream", second_fails)
    options = CopyOptions(batch_rows=50, workers=1, partitions=1)
    result = vecmigrate.copy(source, f"lancedb://{tmp_path / 'lance'}", "docs", options=options)
    assert len(calls) == 2  # then the rest went in bounded pieces
    assert result.verified and result.result.rows_written >= ROWS
    with connect(f"lancedb://{tmp_path / 'lance'}") as target, connect(source) as src:
        assert target.count("docs") == ROWS
        assert collection_digest(src, "docs").compare(collection_digest(target, "docs")).equal


def test_an_error_preparing_a_streamed_batch_fails_the_copy_with_that_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error raised while a batch is prepared (a refusal under ``on_invalid: fail``)
    happens inside the engine's read of the stream: the copy fails with that error, the
    stream is not retried in pieces, and the piece is not acknowledged."""
    require_module("lancedb")
    batch = sample_batch(sample_schema("docs"))
    source = _dump_of(tmp_path / "src", batch, pieces=2)
    prepare = RecordWriter.prepare
    seen: list[int] = []

    def second_refused(self: RecordWriter, b: Any, done: Any, dead: Any) -> Any:
        seen.append(b.num_rows)
        if len(seen) == 2:  # the second part's batch (streamed writes read batches by bytes)
            raise DataError("refused by the mapping", collection="docs", record_id="x")
        return prepare(self, b, done, dead)

    monkeypatch.setattr(RecordWriter, "prepare", second_refused)
    options = CopyOptions(batch_rows=50, workers=1, partitions=1)
    with pytest.raises(DataError, match="refused by the mapping"):
        vecmigrate.copy(source, f"lancedb://{tmp_path / 'lance'}", "docs", options=options)
    assert len(seen) == 2
    with connect(f"lancedb://{tmp_path / 'lance'}") as target:
        assert "docs" not in target.list_collections() or target.count("docs") == 0


@pytest.mark.parametrize("document_bytes", [0, 100_000])
def test_a_streamed_copy_reads_source_batches_sized_by_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, document_bytes: int
) -> None:
    """Batches into a streamed write are sized by bytes (``STREAM_BATCH_BYTES`` at the
    size of the first rows read), not ``batch_rows``: small rows come many to a batch, and
    rows of 100 kB documents stay at ``batch_rows`` (never fewer) instead of a batch
    estimated from the vectors alone."""
    require_module("lancedb")
    import pyarrow as pa

    batch = sample_batch(sample_schema("docs"))
    if document_bytes:
        docs = pa.array(
            ["d" * document_bytes] * batch.num_rows, batch.schema.field("document").type
        )
        batch = batch.set_column(batch.schema.get_field_index("document"), "document", docs)
    source = _dump_of(tmp_path / "src", batch, pieces=1)
    prepare = RecordWriter.prepare
    seen: list[int] = []

    def recorded(self: RecordWriter, b: Any, done: Any, dead: Any) -> Any:
        seen.append(b.num_rows)
        return prepare(self, b, done, dead)

    monkeypatch.setattr(RecordWriter, "prepare", recorded)
    options = CopyOptions(batch_rows=10, workers=1, partitions=1)
    result = vecmigrate.copy(source, f"lancedb://{tmp_path / 'lance'}", "docs", options=options)
    assert result.verified and result.result.rows_written == ROWS
    if document_bytes:  # 2 MiB / ~100 kB: 20 rows a batch, at least the options' 10
        assert max(seen) <= STREAM_BATCH_BYTES // document_bytes and min(seen[:-1]) >= 10
    else:
        assert seen == [ROWS]  # all 240 small rows in one batch
