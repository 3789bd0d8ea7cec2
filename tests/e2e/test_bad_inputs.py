"""The bad-input corpus (tests/data/bad, made by scripts/make_bad_inputs.py) through the CLI.

The commands run in-process (``helpers.cli``: same arguments, error handling and output
as the console script, without paying interpreter start-up 26 times); test_copy_cli.py
covers the console script itself.

For every case, ``check`` and ``import`` into a real embedded engine end in one of two
ways: a one-line error naming the part / record / field (exit 1 for data, 2 for a
configuration problem), or counted dead letters whose Parquet rows carry ``_reason`` and
``_field``, with rows_written + refused == rows in. Never a traceback, never a silent drop.
"""

from __future__ import annotations

import filecmp
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.e2e.helpers import cli
from vecmigrate.connectors import connect
from vecmigrate.records import metadata_rows

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "bad"


@dataclass(frozen=True)
class Case:
    """What check and import must say about one corpus dump."""

    check_exit: int
    check_code: str | None  # finding code, or None when check passes / errors out
    check_ids: tuple[Any, ...] = ()
    target: str = "lancedb"
    import_exit: int = 1
    error: tuple[str, ...] = ()  # substrings of the one "error:" line; empty: no error
    dead: dict[Any, tuple[str, str]] = field(default_factory=dict)  # id -> (reason, field)


CASES: dict[str, Case] = {
    "nan_inf": Case(
        1, "non_finite", ("r2", "r4"), dead={"r2": ("NaN", "vector"), "r4": ("NaN", "vector")}
    ),
    "wrong_dimension": Case(
        1,
        "wrong_dimension",
        ("r3",),
        error=("row 3", "vector has 3 values", "4-d", "id='r3'", "field='vector'", "part-"),
    ),
    "zero_vector_cosine": Case(1, "zero_vector", ("r1",), dead={"r1": ("zero vector", "vector")}),
    "duplicate_ids": Case(
        1, "duplicate_id", ("r5",), error=("more than once", "r5", "collection='docs'")
    ),
    "empty_id": Case(1, "missing_id", ("row 2",), dead={"": ("id is empty", "id")}),
    "non_utf8": Case(
        1,
        "invalid_value",
        ("r4",),
        error=("row 4", "document", "UTF-8", "id='r4'", "field='document'", "part-"),
    ),
    # Values of another type travel unchanged in metadata_extra: reported, not coerced.
    "mixed_types": Case(1, "type_drift", ("r1", "r3"), import_exit=0),
    "metadata_too_large": Case(
        0, None, target="milvus-lite", dead={"r2": ("metadata is", "metadata")}
    ),
    "quote_in_id": Case(0, None, target="milvus-lite", dead={"r3's": ("single quote", "id")}),
    "id_type_mismatch": Case(
        1, "id_type", ("four",), error=("row 4", "'four'", "field='id'", "part-")
    ),
    "truncated_part": Case(1, "unreadable", error=("part-", "not readable Parquet")),
    "checksum_mismatch": Case(1, "unreadable", error=("checksum mismatch for part-",)),
    "schema_version": Case(
        2, None, import_exit=2, error=("_schema.json", "format version 99", "not supported")
    ),
    # A part whose columns are not the schema's: never filled with nulls or dropped.
    "missing_metadata_column": Case(
        1, "missing_column", error=("part-", "has no 'metadata' column", "field='metadata'")
    ),
    "renamed_metadata_field": Case(
        1,
        "metadata_fields",
        error=("part-", "missing 'year'", "not in the schema: 'yaer'", "field='metadata.year'"),
    ),
    "extra_column": Case(
        1, "unknown_column", error=("part-", "'rating'", "does not declare", "field='rating'")
    ),
    # Text in an int64 field is never parsed: it travels as text in metadata_extra.
    "numeric_strings": Case(1, "type_drift", ("r0", "r1", "r2", "r3", "r5"), import_exit=0),
    "id_leading_zeros": Case(
        1,
        "id_type",
        ("007",),
        error=("row 2", "id '007'", "read back as '7'", "field='id'", "part-"),
    ),
    "float64_vectors": Case(
        1,
        "vector_precision",
        ("r3",),
        error=("row 3", "float64", "float32", "id='r3'", "field='vector'", "part-"),
    ),
    "null_vector": Case(
        1,
        "null_vector",
        ("r2",),
        error=("row 2", "vector is null", "id='r2'", "field='vector'", "part-"),
    ),
}


def _target(kind: str, tmp_path: Path) -> str:
    if kind == "milvus-lite":
        return f"milvus-lite://{tmp_path / 'milvus.db'}"
    return f"lancedb://{tmp_path / 'lance'}"


def _one_error_line(stderr: str, expected: tuple[str, ...]) -> None:
    assert "Traceback" not in stderr, stderr
    assert stderr.count("error:") == 1, stderr
    # One logical line (Rich wraps it at the terminal width) up to the hint.
    message = stderr[stderr.index("error:") :].split("\nhint:")[0].replace("\n", " ")
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"


def test_corpus_covers_every_case_and_regenerates_identically(tmp_path: Path) -> None:
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) == sorted(CASES)
    spec = importlib.util.spec_from_file_location("make_bad", ROOT / "scripts/make_bad_inputs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_bad"] = module
    spec.loader.exec_module(module)
    for name, make in module.CASES.items():
        make(tmp_path / name)
        for f in (CORPUS / name).rglob("*"):
            if f.is_file() and f.name != "CASE.txt":
                twin = tmp_path / name / f.relative_to(CORPUS / name)
                assert filecmp.cmp(f, twin, shallow=False), f"{f} is stale: rerun the script"


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # job files and dead letters land here
    case = CASES[name]
    dump = CORPUS / name

    checked = cli("check", str(dump), "--json")
    assert checked.returncode == case.check_exit, checked.stderr
    assert "Traceback" not in checked.stderr
    if case.check_exit == 2:
        _one_error_line(checked.stderr, case.error)
    else:
        report = checked.json()["collections"][0]
        codes = {f["code"]: f for f in report["findings"] if f["severity"] == "error"}
        if case.check_code is None:
            assert report["ok"] and not codes, report
        else:
            assert case.check_code in codes, report
            assert tuple(codes[case.check_code]["ids"]) == case.check_ids

    target = _target(case.target, tmp_path)
    imported = cli("import", str(dump), target, "--json")
    assert imported.returncode == case.import_exit, imported.stderr
    if case.error:
        _one_error_line(imported.stderr, case.error)
        return
    assert "Traceback" not in imported.stderr
    out = imported.json()
    rows_in = pq.ParquetDataset(dump / "docs").read().num_rows
    assert out["rows_read"] == rows_in
    assert out["rows_written"] + out["dead_letters"] == rows_in
    assert out["dead_letters"] == len(case.dead)
    with connect(target) as conn:
        assert conn.count("docs") == out["rows_written"]
    if case.dead:
        dead = pq.read_table(tmp_path / out["collections"][0]["dead_letter_dir"]).to_pylist()
        got = {r["id"]: (r["_reason"], r["_field"]) for r in dead}
        assert set(got) == set(case.dead)
        for rid, (reason, fld) in case.dead.items():
            assert reason in got[rid][0] and got[rid][1] == fld, got[rid]
        # Verification passes: the target is the source minus exactly the refused records.
        assert not out["ok"] and all(c["passed"] for c in out["checks"]), out["checks"]
        assert "identical but for the" in out["checks"][-1]["detail"]
    else:
        assert out["verified"], out["checks"]


def test_mixed_types_travel_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The string "1999" in an int64 field is neither coerced nor dropped."""
    monkeypatch.chdir(tmp_path)
    target = _target("lancedb", tmp_path)
    assert cli("import", str(CORPUS / "mixed_types"), target, "--json").returncode == 0
    with connect(target) as conn:
        got = conn.fetch("docs", ["r1", "r3"])
    extra = dict(
        zip(got.column("id").to_pylist(), got.column("metadata_extra").to_pylist(), strict=True)
    )
    assert '"1999"' in extra["r1"] and "2001.5" in extra["r3"]


def test_numeric_strings_stay_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ "007", "-0", "0000000001" and "+5" in an int64 field arrive as those strings, not as
    7, 0, 1 and 5; a record without a year still has none."""
    monkeypatch.chdir(tmp_path)
    target = _target("lancedb", tmp_path)
    assert cli("import", str(CORPUS / "numeric_strings"), target, "--json").returncode == 0
    with connect(target) as conn:
        schema = conn.describe("docs")
        got = conn.fetch("docs", [f"r{i}" for i in range(6)])
    years = {
        rid: meta.get("year", "<absent>")
        for rid, meta in zip(got.column("id").to_pylist(), metadata_rows(got, schema), strict=True)
    }
    assert years == {
        "r0": "007",
        "r1": "-0",
        "r2": "0000000001",
        "r3": "2003",
        "r4": "<absent>",
        "r5": "+5",
    }
