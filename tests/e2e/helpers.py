"""Drive the CLI as a user would: a subprocess running the installed console script."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from vecmigrate.cli import app
from vecmigrate.connectors import connect
from vecmigrate.model import CollectionSchema, MetadataField, VectorField
from vecmigrate.records import build_batch

VECMIGRATE = str(Path(sys.executable).parent / "vecmigrate")


def run_cli(*args: str, cwd: Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``vecmigrate ARGS`` and return the finished process."""
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [VECMIGRATE, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"vecmigrate {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
        )
    return proc


def json_of(proc: subprocess.CompletedProcess[str]) -> Any:
    """The JSON document a ``--json`` command printed."""
    return json.loads(proc.stdout)


def make_dump(
    path: Path, rows: int, dim: int = 64, name: str = "docs", seed: int = 0
) -> CollectionSchema:
    """A finished dump of ``rows`` random records with metadata of every type."""
    schema = CollectionSchema(
        name=name,
        vectors=(VectorField(dim=dim),),
        has_document=True,
        metadata=(
            MetadataField(name="genre", type="string"),
            MetadataField(name="year", type="int64"),
            MetadataField(name="score", type="float64"),
            MetadataField(name="flag", type="bool"),
            MetadataField(name="tags", type="list<string>"),
        ),
    )
    conn = connect(f"dump://{path}")
    conn.create(schema)
    rng = np.random.default_rng(seed)
    step = 5000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        ids = [f"rec-{i:07d}" for i in range(start, start + n)]
        meta = [
            {
                "genre": ["a", "b", "c"][i % 3],
                "year": 2000 + i % 20,
                "score": i / 7,
                "flag": i % 2 == 0,
                "tags": [f"t{i % 4}"],
            }
            for i in range(start, start + n)
        ]
        batch = build_batch(
            schema,
            ids,
            {"vector": rng.normal(size=(n, dim)).astype(np.float32)},
            documents=[f"text {i}" for i in range(start, start + n)],
            metadata=meta,
        )
        conn.upsert(name, batch)
    conn.finalize(name)
    return schema


@dataclass
class Ran:
    """A finished command: exit code and its two streams."""

    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The one JSON document it printed."""
        return json.loads(self.stdout)


def cli(*args: str) -> Ran:
    """Run ``vecmigrate ARGS`` in-process (Typer's runner: same parsing, error handling and
    output as the console script, without interpreter start-up); relative paths resolve
    against the current directory. An exception escaping the CLI fails the test."""
    logger = logging.getLogger("vecmigrate")
    handlers, level = logger.handlers[:], logger.level
    try:
        result = CliRunner(env={"COLUMNS": "200"}).invoke(app, list(args))
    finally:
        # The CLI's log handler writes to the runner's stream, closed after the call.
        logger.handlers[:] = handlers
        logger.setLevel(level)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"vecmigrate {' '.join(args)} raised") from result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def cli_ok(*args: str) -> Any:
    """Run ``vecmigrate ARGS --json``, which must succeed: its JSON."""
    out = cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return out.json()


def pgvector_uri(dsn: str, layout: str | None = None) -> str:
    """The vecmigrate URI of a libpq URL (``?layout=`` when given)."""
    uri = dsn.replace("postgresql://", "pgvector://", 1)
    return f"{uri}?layout={layout}" if layout else uri


def close_async_store(store: Any) -> None:
    """Close a framework store holding an async engine (LlamaIndex's PGVectorStore) on a
    loop of its own: asyncio.run would leave the main thread without an event loop,
    which grpc.aio needs afterwards (see tests/frameworks/kit.py)."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(store.close())
    finally:
        loop.close()
