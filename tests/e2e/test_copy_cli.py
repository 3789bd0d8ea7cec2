"""End to end through the CLI: export, import, copy, and SIGKILL mid-copy then --resume."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import VECMIGRATE, json_of, make_dump, run_cli
from vecmigrate.connectors import connect
from vecmigrate.verify.digest import collection_digest

KILL_ROWS = 20_000


def _target_uri(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "dump":
        return f"dump://{tmp_path / 'out'}"
    if kind == "lancedb":
        return f"lancedb://{tmp_path / 'lance'}"
    if kind == "chroma":
        return f"chroma://{tmp_path / 'chroma'}"
    import psycopg

    server: Any = request.getfixturevalue("postgres")
    # A schema of its own: other tests share the server's database and may leave a "docs".
    schema = f"kill_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(
        host=server.host, port=server.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{server.uri()}?schema={schema}"


def _rows_done(job: Path) -> int:
    try:
        with sqlite3.connect(f"file:{job}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT coalesce(sum(rows), 0) FROM partition").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("kind", ["dump", "lancedb", "pgvector", "chroma"])
def test_sigkill_mid_copy_then_resume_gives_identical_digests(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    src = tmp_path / "src"
    make_dump(src, KILL_ROWS)
    target = _target_uri(kind, tmp_path, request)
    job = tmp_path / "job.sqlite"
    args = [
        "copy",
        f"dump://{src}",
        target,
        "-c",
        "docs",
        "--job",
        str(job),
        "--batch-rows",
        "250",
        "--workers",
        "2",
        "--json",
    ]
    proc = subprocess.Popen(
        [VECMIGRATE, *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while _rows_done(job) < KILL_ROWS // 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, (
        f"the copy finished before it could be killed: {proc.communicate()[1][-800:]!r}"
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _rows_done(job)
    assert 0 < done < KILL_ROWS

    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr

    resumed = run_cli(*args, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    out = json_of(resumed)
    assert out["resumed"] and out["rows_total"] == KILL_ROWS and out["dead_letters"] == 0
    assert out["verified"], out["checks"]
    with connect(f"dump://{src}") as s, connect(target) as t:
        assert t.count("docs") == KILL_ROWS
        tol = t.capabilities.vector_tolerance
        assert (
            collection_digest(s, "docs").compare(collection_digest(t, "docs"), tolerance=tol).equal
        )


def test_export_check_import_round_trip(tmp_path: Path) -> None:
    make_dump(tmp_path / "src", 3000)
    lance = f"lancedb://{tmp_path / 'lance'}"
    imported = run_cli("import", str(tmp_path / "src"), lance, "--json", cwd=tmp_path, check=True)
    assert json_of(imported)["verified"]
    exported = run_cli(
        "export",
        lance,
        "-c",
        "docs",
        "-o",
        str(tmp_path / "dump2"),
        "--json",
        cwd=tmp_path,
        check=True,
    )
    assert json_of(exported)["rows_written"] == 3000 and json_of(exported)["verified"]
    checked = run_cli("check", str(tmp_path / "dump2"), "--json", cwd=tmp_path, check=True)
    assert json_of(checked)["ok"]
    inspected = json_of(run_cli("inspect", lance, "--json", cwd=tmp_path, check=True))
    docs = inspected["collections"][0]
    assert docs["count"] == 3000 and docs["vectors"][0]["dim"] == 64
    assert {m["name"] for m in docs["metadata"]} == {"genre", "year", "score", "flag", "tags"}


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    proc = run_cli("inspect", "nosuch:///x", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown engine scheme" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli(
        "copy", "pgvector://u:hunter2@127.0.0.1:1/db", "dump:///tmp/x", "-c", "a", cwd=tmp_path
    )
    assert proc.returncode == 2 and "hunter2" not in proc.stderr + proc.stdout
