"""Selecting records and collections on copy, export and import (issue #18), as a user
meets it: ``--limit``, ``--filter``, ``--ids-file`` alone and combined, ``-c`` repeated,
``--include/--exclude`` globs, the errors (exit 2 before anything is created), a refused
``--resume`` with another selection, ``--dry-run``, and the same through the Python API,
including a check after the copy that fails when a selected record is missing or differs."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import cli, make_dump
from vecmigrate import api
from vecmigrate.connectors import connect
from vecmigrate.model import CollectionSchema, IdType, MetadataField, VectorField
from vecmigrate.pipeline import CopyOptions
from vecmigrate.pipeline.selection import Selection
from vecmigrate.records import build_batch
from vecmigrate.verify.copycheck import check_copy

ROWS = 300  # docs: rec-0000000 .. rec-0000299, genre "abc"[i % 3], year 2000 + i % 20
OTHER = 60


def _rid(i: int) -> str:
    return f"rec-{i:07d}"


def _ids(uri: str, name: str) -> set[Any]:
    """Every id ``name`` holds on ``uri``."""
    with connect(uri) as conn:
        schema = conn.describe(name)
        return {
            v
            for part in conn.partitions(name, 1)
            for batch, _ in conn.scan(name, part, schema=schema)
            for v in batch.column("id").to_pylist()
        }


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dump with ``docs`` (300 records) and ``other`` (60); the cwd is ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    make_dump(tmp_path / "dump", ROWS, dim=8)
    make_dump(tmp_path / "dump", OTHER, dim=8, name="other", seed=1)
    return tmp_path


def _ids_file(path: Path, ids: list[Any]) -> str:
    path.write_text("".join(f"{i}\n" for i in ids))
    return str(path)


# -- each flag alone, then combined -------------------------------------------------------------
def test_limit_alone_takes_the_first_n_of_one_scan(store: Path) -> None:
    require_module("lancedb")
    out = cli("import", "dump", "lancedb:./t", "-c", "docs", "--limit", "25", "--json")
    assert out.returncode == 0, out.stderr
    got = out.json()
    assert got["rows_written"] == 25 and got["verified"] and got["partitions"] == 1
    assert got["collections"][0]["selection"]["limit"] == 25
    assert _ids("lancedb:./t", "docs") == {_rid(i) for i in range(25)}


def test_filter_alone_copies_exactly_the_matching_records(store: Path) -> None:
    require_module("lancedb")
    flt = '{"genre": "b", "year": {"$gte": 2010}}'
    out = cli("import", "dump", "lancedb:./t", "-c", "docs", "--filter", flt, "--json")
    assert out.returncode == 0, out.stderr
    want = {_rid(i) for i in range(ROWS) if i % 3 == 1 and i % 20 >= 10}
    assert out.json()["rows_written"] == len(want) and out.json()["verified"]
    assert _ids("lancedb:./t", "docs") == want
    assert "selected" in out.json()["checks"][0]["detail"]


def test_ids_file_alone_fetches_those_ids_and_reports_the_missing_ones(store: Path) -> None:
    require_module("lancedb")
    wanted = [_rid(7), _rid(250), "no-such-1", _rid(3), "no-such-2", _rid(7)]
    ids = _ids_file(store / "ids.txt", wanted)
    out = cli("import", "dump", "lancedb:./t", "-c", "docs", "--ids-file", ids, "--json")
    assert out.returncode == 0, out.stderr
    got = out.json()
    assert got["rows_written"] == 3 and got["verified"]
    one = got["collections"][0]
    assert one["ids_missing"] == 2 and one["ids_missing_examples"] == ["no-such-1", "no-such-2"]
    assert any("2 of the 5 ids" in w and "no-such-1" in w for w in got["warnings"])
    assert _ids("lancedb:./t", "docs") == {_rid(3), _rid(7), _rid(250)}
    # Without --json the missing ids are a warning line on stderr.
    out = cli("import", "dump", "lancedb:./t2", "-c", "docs", "--ids-file", ids)
    assert out.returncode == 0, out.stderr
    assert "warning: 2 ids of --ids-file are not in 'docs'" in out.stderr
    assert "no-such-2" in out.stderr


def test_filter_limit_and_ids_combined_take_the_first_matches_in_file_order(store: Path) -> None:
    require_module("lancedb")
    listed = [_rid(i) for i in range(39, -1, -1)]  # file order: 39 down to 0
    ids = _ids_file(store / "ids.txt", listed)
    out = cli(
        "import",
        "dump",
        "lancedb:./t",
        "-c",
        "docs",
        "--ids-file",
        ids,
        "--filter",
        '{"genre": "a"}',
        "--limit",
        "7",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert out.json()["rows_written"] == 7 and out.json()["verified"]
    assert _ids("lancedb:./t", "docs") == {_rid(i) for i in (39, 36, 33, 30, 27, 24, 21)}


def test_chroma_source_with_a_filter_it_cannot_express_and_a_limit(store: Path) -> None:
    require_module("chromadb")
    require_module("lancedb")
    assert cli("import", "dump", "chroma:./ch", "-c", "docs").returncode == 0
    # Chroma cannot express $ne: the filter is evaluated on the scanned batches instead.
    out = cli("copy", "chroma:./ch", "lancedb:./t", "--filter", '{"genre": {"$ne": "a"}}', "--json")
    assert out.returncode == 0, out.stderr
    want = {_rid(i) for i in range(ROWS) if i % 3 != 0}
    assert out.json()["rows_written"] == len(want) and out.json()["verified"]
    assert _ids("lancedb:./t", "docs") == want
    # One Chroma can count itself, with a limit, into a dump.
    out = cli(
        "export",
        "chroma:./ch",
        "-o",
        "out",
        "--filter",
        '{"year": {"$lt": 2005}}',
        "--limit",
        "30",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert out.json()["rows_written"] == 30 and out.json()["verified"]
    got = _ids("dump:./out", "docs")
    assert len(got) == 30 and all(int(str(r)[4:]) % 20 < 5 for r in got)


def test_ids_file_and_limit_into_chroma_for_two_collections(store: Path) -> None:
    require_module("chromadb")
    ids = _ids_file(store / "ids.txt", [_rid(i) for i in (250, 5, 40, 8, 1)])
    out = cli(
        "import", "dump", "chroma:./ch", "-c", "docs", "-c", "other", "--ids-file", ids,
        "--limit", "3", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = {c["collection"]: c for c in out.json()["collections"]}
    assert got["docs"]["rows_written"] == 3 and got["docs"]["ids_missing"] == 0
    # other holds rec-0000000..59: 250 is not there, the first three that are: 5, 40, 8.
    assert got["other"]["rows_written"] == 3 and got["other"]["ids_missing"] == 1
    assert out.json()["verified"]
    assert _ids("chroma:./ch", "docs") == {_rid(250), _rid(5), _rid(40)}
    assert _ids("chroma:./ch", "other") == {_rid(5), _rid(40), _rid(8)}


def test_int_ids_file(store: Path) -> None:
    require_module("lancedb")
    schema = CollectionSchema(
        name="nums",
        vectors=(VectorField(dim=4),),
        metadata=(MetadataField(name="k", type="int64"),),
        id_type=IdType.INT,
    )
    conn = connect("dump:./ints")
    conn.create(schema)
    vectors = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    ids = list(range(1000, 1050))
    conn.upsert("nums", build_batch(schema, ids, {"vector": vectors}, metadata=[{"k": 1}] * 50))
    conn.finalize("nums")
    good = _ids_file(store / "good.txt", [1003, 1049, 5, 1010])
    out = cli("import", "ints", "lancedb:./t", "--ids-file", good, "--json")
    assert out.returncode == 0, out.stderr
    assert out.json()["rows_written"] == 3 and out.json()["collections"][0]["ids_missing"] == 1
    assert _ids("lancedb:./t", "nums") == {1003, 1049, 1010}
    bad = _ids_file(store / "bad.txt", [1003, "x7"])
    out = cli("import", "ints", "lancedb:./t2", "--ids-file", bad)
    assert out.returncode == 2
    assert "'x7'" in out.stderr and "int ids" in out.stderr
    assert not (store / "t2").exists()


# -- several collections ------------------------------------------------------------------------
def test_repeated_collections_and_globs_on_export(store: Path) -> None:
    out = cli("export", "dump:./dump", "-o", "all", "--limit", "5", "--json")
    assert out.returncode == 0, out.stderr
    assert sorted(c["collection"] for c in out.json()["collections"]) == ["docs", "other"]
    assert out.json()["rows_written"] == 10
    out = cli("export", "dump:./dump", "-o", "inc", "--include", "o*", "--json")
    assert [c["collection"] for c in out.json()["collections"]] == ["other"]
    assert out.json()["rows_written"] == OTHER
    out = cli("export", "dump:./dump", "-o", "exc", "--exclude", "d*", "--limit", "3", "--json")
    assert [c["collection"] for c in out.json()["collections"]] == ["other"]
    out = cli("export", "dump:./dump", "-o", "two", "-c", "other", "-c", "docs", "--json")
    assert out.returncode == 0, out.stderr
    assert [c["collection"] for c in out.json()["collections"]] == ["other", "docs"]
    assert out.json()["rows_written"] == ROWS + OTHER


def test_collection_selection_errors(store: Path) -> None:
    out = cli("export", "dump:./dump", "-o", "x", "--include", "nothing*")
    assert out.returncode == 2
    assert "'nothing*' matches no collection" in out.stderr and "docs, other" in out.stderr
    out = cli("copy", "dump:./dump", "dump:./y", "--exclude", "zz?")
    assert out.returncode == 2 and "'zz?'" in out.stderr and "docs, other" in out.stderr
    out = cli("copy", "dump:./dump", "dump:./y", "-c", "docs", "-c", "nope")
    assert out.returncode == 2 and "'nope'" in out.stderr
    out = cli("import", "dump", "dump:./y", "--include", "*", "--target-collection", "z")
    assert out.returncode == 2 and "needs a single --collection" in out.stderr
    assert not (store / "x").exists() and not (store / "y").exists()


# -- record selection errors: exit 2, nothing created -------------------------------------------
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--filter", '{"colour": "red"}'], "'colour'"),
        (["--filter", '{"year": {"$near": 3}}'], "'$near'"),
        (["--filter", '{"$xor": []}'], "'$xor'"),
        (["--filter", '{"year": "old"}'], "'old' is not a int64 value"),
        (["--filter", "{genre: a}"], "not valid JSON"),
        (["--filter", "[]"], "non-empty JSON object"),
        (["--ids-file", "missing.txt"], "missing.txt does not exist"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_bad_selection_exits_2_before_anything_is_created(
    store: Path, args: list[str], said: str
) -> None:
    require_module("lancedb")
    out = cli("copy", "dump:./dump", "lancedb:./t", *args)
    assert out.returncode == 2, out.stdout
    assert said in out.stderr
    assert not (store / "t").exists() and not (store / ".vecmigrate").exists()


# -- resume -------------------------------------------------------------------------------------
def test_resume_with_another_selection_is_refused(store: Path) -> None:
    require_module("lancedb")
    base = ["copy", "dump:./dump", "lancedb:./t", "-c", "docs", "--job", "job.sqlite"]
    assert cli(*base, "--limit", "10").returncode == 0
    with sqlite3.connect(store / "job.sqlite") as db:  # as if the run had been killed
        db.execute("UPDATE job SET value='running' WHERE key='status'")
    for other in (["--limit", "20"], [], ["--filter", '{"genre": "a"}', "--limit", "10"]):
        out = cli(*base, "--resume", *other)
        assert out.returncode == 2, out.stdout
        assert "another selection" in out.stderr and "limit 10" in out.stderr
        assert "--restart" in out.stderr
    out = cli(*base, "--limit", "20")  # neither --resume nor --restart: still unfinished
    assert out.returncode == 2 and "unfinished run" in out.stderr
    assert _ids("lancedb:./t", "docs") == {_rid(i) for i in range(10)}
    out = cli(*base, "--resume", "--limit", "10", "--if-exists", "reuse", "--json")
    assert out.returncode == 0, out.stderr
    assert out.json()["resumed"] and out.json()["verified"]
    out = cli(*base, "--restart", "--limit", "20", "--if-exists", "replace", "--yes", "--json")
    assert out.returncode == 0, out.stderr
    assert _ids("lancedb:./t", "docs") == {_rid(i) for i in range(20)}


# -- dry run ------------------------------------------------------------------------------------
def test_dry_run_shows_the_selection_and_what_it_would_write(store: Path) -> None:
    require_module("lancedb")
    flt = '{"genre": "c"}'
    out = cli("copy", "dump:./dump", "lancedb:./t", "--filter", flt, "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    rows = {c["collection"]: c["rows"] for c in out.json()["collections"]}
    assert rows == {"docs": ROWS // 3, "other": OTHER // 3}
    assert out.json()["collections"][0]["selection"]["filter"] == {"genre": "c"}
    ids = _ids_file(store / "ids.txt", [_rid(1), _rid(2), "gone"])
    out = cli("copy", "dump:./dump", "lancedb:./t", "-c", "docs", "--ids-file", ids, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "2 records to write" in out.stdout and "selection: 3 ids from" in out.stdout
    assert not (store / "t").exists()


# -- the Python API -----------------------------------------------------------------------------
def test_python_api_selection_and_a_check_that_fails_on_a_missing_or_changed_record(
    store: Path,
) -> None:
    require_module("lancedb")
    sel = Selection(filter={"genre": "a"}, ids=(_rid(0), _rid(1), _rid(3), _rid(6), "gone"))
    report = api.import_(store / "dump", "lancedb:./t", "docs", options=CopyOptions(selection=sel))
    assert report.ok and report.verified
    assert report.result.rows_written == 3 and report.result.ids_missing == 1
    assert _ids("lancedb:./t", "docs") == {_rid(0), _rid(3), _rid(6)}
    assert api.selection_of() is None
    assert api.selection_of(limit=4, filter='{"genre": "a"}') == Selection(4, {"genre": "a"})
    assert api.select_collections("dump:./dump", include=["o*"]) == ["other"]

    with connect("dump:./dump") as src, connect("lancedb:./t") as dst:
        checks = check_copy(src, dst, "docs", report.result, None, selection=sel)
        assert all(c.passed for c in checks)
        # Without the selection the same target is judged against all 300 records: fails.
        assert not all(c.passed for c in check_copy(src, dst, "docs", report.result, None))
        schema = dst.describe("docs")
        changed = dst.fetch("docs", [_rid(3)], schema=schema)
        dst.delete("docs", [_rid(6)])
        checks = check_copy(src, dst, "docs", report.result, None, selection=sel)
        assert not checks[0].passed and "selected 3" in checks[0].detail
        assert not checks[1].passed and _rid(6) in checks[1].detail
        # Put it back, then change a vector of another selected record: still fails.
        dst.upsert("docs", src.fetch("docs", [_rid(6)], schema=src.describe("docs")))
        vec = np.asarray(changed.column("vector").to_pylist(), np.float32) + 0.5
        moved = build_batch(schema, [_rid(3)], {"vector": vec}, metadata=[{"genre": "a"}])
        dst.upsert("docs", moved)
        checks = check_copy(src, dst, "docs", report.result, None, selection=sel)
        assert checks[0].passed and not checks[1].passed and _rid(3) in checks[1].detail


def test_python_api_export_with_a_limit_and_a_bad_filter(store: Path) -> None:
    opts = CopyOptions(selection=Selection(limit=12))
    report = api.export("dump:./dump", store / "out", "other", options=opts)
    assert report.verified and report.result.rows_written == 12
    assert report.result.selection is not None and report.result.selection["limit"] == 12
    from vecmigrate.errors import ConfigError

    with pytest.raises(ConfigError, match="'colour'"):
        api.export(
            "dump:./dump",
            store / "out2",
            "other",
            options=CopyOptions(selection=Selection(filter={"colour": 1})),
        )
    assert not (store / "out2").exists()  # refused before the target was opened
    with pytest.raises(ConfigError, match="limit"):
        Selection(limit=0)
