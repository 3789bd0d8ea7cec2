"""The dump connector maps file system errors in one place (``_client.translate_error``)
and touches no file before its first call: a path that cannot be a directory is a typed
error naming it, a full disk a TerminalError, a denied path a ConfigError."""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from vecmigrate.connectors import connect
from vecmigrate.connectors.dump import DumpConnector
from vecmigrate.connectors.dump._client import translate_error
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError
from vecmigrate.testing.data import sample_batch, sample_schema


def test_a_path_under_a_regular_file_connects_then_fails_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = blocker / "dump"
    conn = connect(f"dump://{store}")
    assert isinstance(conn, DumpConnector)
    with pytest.raises(TerminalError) as err:
        conn.list_collections()
    assert str(store) in str(err.value) and "Not a directory" in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    with pytest.raises(TerminalError, match=re.escape(str(blocker))):
        conn.create(sample_schema("docs"))
    conn.close()


def test_constructor_touches_nothing_and_reads_no_key(tmp_path: Path) -> None:
    store = tmp_path / "new"
    conn = connect(f"dump://{store}?key=env:VM_TEST_DUMP_KEY_UNSET")
    conn.close()
    assert not store.exists()
    with pytest.raises(ConfigError, match="VM_TEST_DUMP_KEY_UNSET"):
        conn.list_collections()


def test_read_only_connect_still_refuses_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        connect(f"dump://{tmp_path / 'missing'}", read_only=True)


def test_upsert_conforms_strictly(tmp_path: Path) -> None:
    schema = sample_schema("docs")
    conn = connect(f"dump://{tmp_path / 'd'}")
    conn.create(schema)
    batch = sample_batch(schema, 3)
    extra = batch.append_column("undeclared", pa.array([1, 2, 3]))
    with pytest.raises(DataError, match="undeclared"):
        conn.upsert("docs", extra)
    conn.upsert("docs", batch)  # the schema's own layout is written


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.ENOSPC, TerminalError),
        (errno.EACCES, ConfigError),
        (errno.EROFS, ConfigError),
        (errno.EAGAIN, TransientError),
        (errno.EIO, TerminalError),
    ],
)
def test_os_errors_are_classified_and_name_the_path(code: int, kind: Any) -> None:
    exc = OSError(code, "boom", "/data/d/docs/part-1.parquet")
    got = translate_error(exc, "dump upsert 'docs'")
    assert type(got) is kind
    assert got is not None and "dump upsert 'docs'" in str(got)
    assert "/data/d/docs/part-1.parquet" in str(got)


def test_full_disk_says_what_to_do() -> None:
    got = translate_error(OSError(errno.ENOSPC, "No space left on device", "/d"), "dump upsert")
    assert isinstance(got, TerminalError) and got.hint and "disk space" in got.hint


def test_arrow_refusal_is_a_data_error() -> None:
    assert isinstance(translate_error(pa.ArrowInvalid("bad"), "dump upsert 'docs'"), DataError)


def test_errors_that_are_not_the_file_systems_are_left_alone() -> None:
    assert translate_error(KeyError("x"), "dump describe") is None
    assert translate_error(ValueError("x"), "dump describe") is None
