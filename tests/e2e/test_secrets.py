"""A planted secret never reaches a file vecmigrate writes, a log line or the CLI output."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.e2e.helpers import make_dump, run_cli

SECRET = "s3cr3t-Planted-9f81c2"


def test_secret_values_never_leak(tmp_path: Path, postgres: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("VM_PLANTED_PASSWORD", SECRET)
    make_dump(tmp_path / "src", 300)
    # The test server trusts local connections, so the password is accepted and ignored.
    target = f"{postgres.uri()}?password=env:VM_PLANTED_PASSWORD"
    outputs = [
        run_cli(
            "copy",
            f"dump://{tmp_path / 'src'}",
            target,
            "-c",
            "docs",
            "-v",
            "--job",
            "job.sqlite",
            "--if-exists",
            "replace",
            "--yes",
            cwd=tmp_path,
        ),
        run_cli(
            "verify",
            target,
            f"dump://{tmp_path / 'src'}",
            "-c",
            "docs",
            "-v",
            "--queries",
            "20",
            "--report-dir",
            "report",
            cwd=tmp_path,
        ),
        run_cli("export", target, "-c", "docs", "-o", "dump2", "-v", "--json", cwd=tmp_path),
        run_cli("inspect", target, "-v", "--json", cwd=tmp_path),
        run_cli(
            "copy",
            f"dump://{tmp_path / 'src'}",
            "pgvector://u@127.0.0.1:1/x?password=env:VM_PLANTED_PASSWORD",
            "-c",
            "docs",
            "-v",
            cwd=tmp_path,
        ),  # a failing connection: its error message too
    ]
    assert all(p.returncode in (0, 1, 2) for p in outputs)
    assert outputs[0].returncode == 0, outputs[0].stderr
    for p in outputs:
        assert SECRET not in p.stdout and SECRET not in p.stderr
    written = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert any(f.name == "manifest.json" for f in written) and any(
        f.suffix == ".html" for f in written
    )
    for f in written:
        assert SECRET.encode() not in f.read_bytes(), f"secret found in {f}"
    assert os.environ["VM_PLANTED_PASSWORD"] == SECRET
