"""verify and diff through the CLI on real MiniLM embeddings, Chroma -> pgvector."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from tests.conftest import REQUIRE_ENGINES, require_module
from tests.e2e.helpers import json_of, run_cli

DATA = Path(__file__).resolve().parent.parent / "data" / "minilm-600.parquet"


def _chroma_source(path: Path) -> str:
    chromadb = require_module("chromadb")
    table = pq.read_table(DATA)
    col = chromadb.PersistentClient(path=str(path)).create_collection(
        "docs", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    vectors = (
        table.column("vector").combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
    )
    col.add(
        ids=table.column("id").to_pylist(),
        embeddings=vectors,
        documents=table.column("document").to_pylist(),
        metadatas=table.column("metadata").to_pylist(),
    )
    return f"chroma://{path}"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_verify_passes_then_diff_and_verify_catch_planted_damage(
    tmp_path: Path, postgres: Any
) -> None:
    source = _chroma_source(tmp_path / "chroma")
    target = postgres.uri()
    run_cli(
        "copy",
        source,
        target,
        "-c",
        "docs",
        "--if-exists",
        "replace",
        "--yes",
        "--json",
        cwd=tmp_path,
        check=True,
    )

    ok = run_cli(
        "verify",
        source,
        target,
        "-c",
        "docs",
        "--queries",
        "100",
        "--report-dir",
        "ok",
        "--json",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    report = json_of(ok)
    assert report["passed"] and report["parity"]["equal"]
    for side in ("source", "target"):
        assert report["systems"][side]["all"]["recall@10"] >= 0.95
        assert report["systems"][side]["all"]["latency"]["p99_ms"] > 0
    assert report["overlap"]["overlap@10"] >= 0.9
    assert report["queries"]["groups"]["sampled"] == 100
    assert any(g.startswith("filter: ") for g in report["queries"]["groups"])
    assert report["systems"]["target"]["all"]["filter_violations"] == 0

    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute("DELETE FROM docs WHERE id IN ('doc-0003', 'doc-0100', 'doc-0599')")
        db.execute("UPDATE docs SET words = words + 1 WHERE id = 'doc-0042'")

    diff = run_cli(
        "diff", source, target, "-c", "docs", "--json", "--output", "ids.parquet", cwd=tmp_path
    )
    assert diff.returncode == 1
    found = json_of(diff)
    assert found["missing"] == ["doc-0003", "doc-0100", "doc-0599"]
    assert found["extra"] == []
    assert found["changed"] == [{"id": "doc-0042", "fields": ["metadata.words"]}]
    assert pq.read_table(tmp_path / "ids.parquet").num_rows == 4

    bad = run_cli(
        "verify",
        source,
        target,
        "-c",
        "docs",
        "--queries",
        "100",
        "--report-dir",
        "bad",
        cwd=tmp_path,
    )
    assert bad.returncode == 1
    assert "FAILED" in bad.stdout and "**FAIL**" in bad.stdout  # the report is the result
    failed = {
        g["gate"]
        for g in json_of(
            run_cli(
                "verify",
                source,
                target,
                "-c",
                "docs",
                "--queries",
                "50",
                "--report-dir",
                "bad2",
                "--json",
                cwd=tmp_path,
            )
        )["gates"]
        if not g["passed"]
    }
    assert failed == {"missing ids", "changed ids"}

    html = (tmp_path / "bad" / "report.html").read_text()
    assert "<script" not in html and "http" not in html.split("</style>")[1]
    browser = _chromium()
    if browser is None:
        if REQUIRE_ENGINES:
            raise AssertionError("chromium is needed to check the HTML report renders")
        pytest.skip("chromium not installed")
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chrome'}",
            "--dump-dom",
            f"file://{tmp_path / 'bad' / 'report.html'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for chart in ("chart recall-curve", "chart group-recall", "chart latency"):
        assert f'class="{chart}"' in dom
    assert "polyline" in dom and "doc-0042" in dom and "FAILED" in dom
