"""Where output goes, through the console script in a pipe (as a data engineer scripts it).

A command's result (inspect's tables, check/diff/plan/verify reports, copy summaries) is
on stdout; progress, logs and errors on stderr. In a pipe nothing is wrapped at 80 columns
(COLUMNS unset) and nothing is coloured, so verify's Markdown is the report.md it writes.
``--json`` prints exactly one JSON document on stdout - an error as
``{"error": {"type", "message", "hint"}}`` - with the exit code of the run without it, and
copy has one JSON shape for one collection or many.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.core import TyperGroup

from tests.e2e.helpers import VECMIGRATE, make_dump
from vecmigrate import api
from vecmigrate.cli import app

ANSI = re.compile(r"\x1b\[")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``vecmigrate ARGS`` with stdout and stderr two pipes and COLUMNS unset."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
    return subprocess.run(
        [VECMIGRATE, *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("streams")
    make_dump(base / "src", 300, dim=16)
    make_dump(base / "src", 40, dim=16, name="other")
    lance = f"lancedb://{base / 'lance'}"
    api.copy(f"dump://{base / 'src'}", lance, "docs", verify=False)
    return {
        "base": base,
        "src": f"dump://{base / 'src'}",
        "dump": str(base / "src"),
        "lance": lance,
    }


def test_inspect_result_is_on_stdout(stores: dict[str, Any]) -> None:
    """`vecmigrate inspect SRC 2>/dev/null | wc -c` is not 0."""
    proc = run("inspect", stores["lance"], cwd=stores["base"])
    assert proc.returncode == 0, proc.stderr
    assert "docs" in proc.stdout and "vector[16] float32" in proc.stdout
    assert "genre" in proc.stdout and "300 records" in proc.stdout
    assert proc.stderr == ""
    assert not ANSI.search(proc.stdout)


def test_check_diff_plan_results_are_on_stdout(stores: dict[str, Any]) -> None:
    base, src, lance = stores["base"], stores["src"], stores["lance"]
    check = run("check", stores["dump"], cwd=base)
    assert check.returncode == 0, check.stderr
    assert "docs: 300 records, ok" in check.stdout and "other: 40 records" in check.stdout
    diff = run("diff", src, lance, "-c", "docs", cwd=base)
    assert diff.returncode == 0, diff.stderr
    assert "0 missing, 0 extra, 0 changed" in diff.stdout
    plan = run("plan", src, lance, "-c", "docs", "--target-collection", "docs2", cwd=base)
    assert plan.returncode == 0, plan.stderr
    assert "estimate: 300 rows" in plan.stdout
    for proc in (check, diff, plan):
        assert "error" not in proc.stderr and not ANSI.search(proc.stdout + proc.stderr)


def test_copy_summary_on_stdout_progress_never_in_a_pipe(stores: dict[str, Any]) -> None:
    base = stores["base"]
    target = f"lancedb://{base / 'copy_summary'}"
    proc = run("copy", stores["src"], target, "-c", "docs", cwd=base)
    assert proc.returncode == 0, proc.stderr
    assert "docs -> docs: 300 rows written" in proc.stdout
    assert "pass content digest" in proc.stdout
    assert "━" not in proc.stdout + proc.stderr  # no progress bar where nobody watches it
    assert proc.stderr == ""


def test_verify_markdown_is_valid_markdown_in_a_pipe(stores: dict[str, Any]) -> None:
    base = stores["base"]
    proc = run(
        "verify",
        stores["src"],
        stores["lance"],
        "-c",
        "docs",
        "--queries",
        "20",
        "--report-dir",
        "md-report",
        cwd=base,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("# vecmigrate verify: PASSED")
    assert not ANSI.search(text)
    # The report is the file verify wrote, byte for byte: nothing wrapped or restyled.
    assert text.strip() == (base / "md-report" / "report.md").read_text().strip()
    lines = text.splitlines()
    assert max(map(len, lines)) > 80  # wide rows exist and were kept whole
    tables = 0
    for i, line in enumerate(lines):
        if line.startswith("|---") or line.startswith("|:--"):
            tables += 1
            header = lines[i - 1]
            width = header.count("|")
            j = i + 1
            while j < len(lines) and lines[j].strip():
                row = lines[j]
                assert row.startswith("|") and row.endswith("|"), f"wrapped table row: {row!r}"
                assert row.count("|") == width, f"row does not match its header: {row!r}"
                j += 1
    assert tables >= 2
    assert "reports:" in proc.stderr and "reports:" not in proc.stdout


@pytest.mark.parametrize(
    ("args", "code", "kind"),
    [
        (("inspect", "lancedb://{base}/nope"), 2, "ConfigError"),
        (("verify", "{src}", "{lance}", "-c", "docs", "--k", "0"), 2, "UsageError"),
        (("copy", "{src}", "{lance}", "-c", "docs", "--workers", "0"), 2, "UsageError"),
        (("inspect", "nosuch:///x"), 2, "ConfigError"),
        (("inspect", "chroma+http://127.0.0.1:1"), 1, "TransientError"),
        (("copy", "{src}", "{lance}", "-c", "docs", "--if-exists", "replace"), 2, None),
    ],
)
def test_json_error_is_one_object_on_stdout_with_the_same_exit_code(
    stores: dict[str, Any], args: tuple[str, ...], code: int, kind: str | None
) -> None:
    argv = [a.format(**stores) for a in args]
    plain = run(*argv, cwd=stores["base"])
    as_json = run(*argv, "--json", cwd=stores["base"])
    assert plain.returncode == as_json.returncode == code, (plain.stderr, as_json.stderr)
    assert plain.stdout == ""
    doc = json.loads(as_json.stdout)  # one document, nothing else on stdout
    assert set(doc) == {"error"}
    err = doc["error"]
    assert set(err) == {"type", "message", "hint"} and err["hint"]
    assert kind is None or err["type"] == kind
    first = plain.stderr.splitlines()[0]
    assert first == f"error: {err['message']}"
    assert as_json.stderr == plain.stderr  # the person at the terminal still reads it


def test_failed_check_prints_its_report_not_an_error_object(stores: dict[str, Any]) -> None:
    """Exit 1 of a failed check/diff is a result: the report, not {"error": ...}."""
    base = stores["base"]
    shallow = f"lancedb://{base / 'shallow'}"
    api.copy(stores["src"], shallow, "other", verify=False)
    with api.opened(shallow, read_only=False) as conn:
        conn.delete("other", ["rec-0000003"])
    proc = run("diff", stores["src"], shallow, "-c", "other", "--json", cwd=base)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["missing"] == ["rec-0000003"] and "error" not in report


def test_copy_json_has_one_shape_for_one_or_many_collections(stores: dict[str, Any]) -> None:
    base = stores["base"]
    one = run("copy", stores["src"], f"lancedb://{base / 'one'}", "-c", "docs", "--json", cwd=base)
    many = run("copy", stores["src"], f"lancedb://{base / 'many'}", "--json", cwd=base)
    assert one.returncode == 0 and many.returncode == 0, one.stderr + many.stderr
    docs = [json.loads(one.stdout), json.loads(many.stdout)]
    assert set(docs[0]) == set(docs[1])
    for doc, names in zip(docs, (["docs"], ["docs", "other"]), strict=True):
        assert [c["collection"] for c in doc["collections"]] == names
        assert doc["ok"] and doc["verified"]
        assert doc["rows_written"] == sum(c["rows_written"] for c in doc["collections"])
        assert {c["collection"] for c in doc["checks"]} == set(names)
    assert docs[1]["rows_written"] == 340


def test_quiet_prints_the_result_and_nothing_else(stores: dict[str, Any]) -> None:
    base = stores["base"]
    verify = run(
        "verify", stores["src"], stores["lance"], "-c", "docs", "--queries", "10", "-q", cwd=base
    )
    assert verify.returncode == 0 and verify.stderr == ""
    assert verify.stdout.startswith("# vecmigrate verify: PASSED")
    failing = run("inspect", f"lancedb://{base / 'nope'}", "--quiet", cwd=base)
    assert failing.returncode == 2 and failing.stderr.startswith("error: ")


def test_every_verb_takes_quiet_json_and_verbose() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    verbs = dict(root.commands)
    cutover = verbs.pop("cutover")
    assert isinstance(cutover, TyperGroup)
    verbs.update({f"cutover {n}": c for n, c in cutover.commands.items()})
    reporting = {"inspect", "check", "copy", "export", "import", "plan", "verify", "diff", "sync"}
    reporting |= {n for n in verbs if n.startswith("cutover ")}
    assert reporting <= set(verbs)
    for name, verb in verbs.items():
        opts = {o for p in verb.params for o in getattr(p, "opts", [])}
        assert {"--quiet", "-q"} <= opts, name
        if name in reporting:
            assert {"--json", "--verbose", "-v"} <= opts, name
