"""The live-cutover playbook of docs/live-cutover.md, run as written.

The ``bash`` blocks of the doc's "The playbook" section are executed line by line by
bash, with the test's engines in ``S`` (pgvector), ``T`` (Chroma's HTTP server), ``STATE``
(the PostgreSQL state store) and ``C``, while two application instances (``live_app.py``)
serve a steady load of searches, fetches, upserts and deletes. The operator's part that
the doc states in prose is the test's: wait until every instance routes by the new phase,
and let shadow reads accumulate before a shadow-gated step. The forward block is run to
target-primary, the rollback block from there, then the forward block again from
shadow-read to target-only. Every command must exit 0 with the doc's default gates, the
load must see no failed request, and the target must hold every acknowledged write.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_module
from tests.doc_blocks import bash_blocks
from tests.e2e.helpers import cli
from tests.e2e.live_harness import (
    DIM,
    ROWS,
    await_phase,
    check_ledger,
    publish,
    seed,
    start_app,
    up,
    warm,
)
from tests.e2e.live_load import Load
from tests.engines.common import stop_group, wait_until
from vecmigrate.connectors import connect

DOC = Path(__file__).resolve().parents[2] / "docs" / "live-cutover.md"
SHADOW_GATED = re.compile(r"-> (canary|target-primary|target-only)")
SHORT_OF_SHADOW_READS = re.compile(r"(\d+) shadow reads in \S+ \(min (\d+)\)")


def worth_another_try(stderr: str) -> bool:
    """A refusal the doc tells the operator to meet by running ``advance`` again a few
    seconds later: a data gate refused on ids being written, or too few shadow reads yet
    (a loaded machine serves fewer requests in the test's pause than an idle one)."""
    if "FAIL data" in stderr:
        return True
    short = SHORT_OF_SHADOW_READS.search(stderr)
    return "FAIL shadow" in stderr and short is not None and int(short[1]) < int(short[2])


def playbook_blocks() -> list[list[str]]:
    """The command lines of each ``bash`` block under "## The playbook" (variable
    assignments and comment-only lines left out: the test supplies the variables)."""
    return bash_blocks(DOC, "## The playbook")


def test_the_doc_has_the_blocks_this_test_runs() -> None:
    forward, back = playbook_blocks()
    assert [line.split()[0] for line in forward + back] == ["vecmigrate"] * len(forward + back)
    assert "target-only" in forward[-1] and any("-> shadow-read" in line for line in forward)
    assert all("rollback" in line for line in back)


@pytest.mark.timeout(900)  # about 2 minutes alone; more on a loaded machine
def test_the_playbook_as_written_under_load(
    postgres: Any, chroma_server: Any, tmp_path: Path
) -> None:
    require_module("fastapi")
    require_module("prometheus_client")
    forward, back = playbook_blocks()
    name = f"playbook_{uuid.uuid4().hex[:8]}"
    src_uri, tgt_uri = postgres.uri(), chroma_server.uri
    state_uri = src_uri.replace("pgvector://", "postgresql://", 1)
    env = {
        **os.environ,
        "S": src_uri,
        "T": tgt_uri,
        "STATE": state_uri,
        "C": name,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "COLUMNS": "200",
        "VECMIGRATE_CONFIG": str(tmp_path / "migration.yaml"),
    }
    # The operator's accepted loss: exact pgvector against Chroma's HNSW (its default
    # ef_search) on random 32-d vectors loses about 0.02 of recall@10, over the 0.01 default.
    (tmp_path / "migration.yaml").write_text(
        "verify:\n  queries: 60\n  self_queries: 30\n  gates:\n    max_recall_drop: 0.05\n"
    )
    with connect(src_uri) as src:
        seed(src, name)
    apps = [
        start_app(src_uri, tgt_uri, state_uri, name, tmp_path / f"app{i}.log") for i in range(2)
    ]
    bases = [base for base, _ in apps]
    load: Load | None = None
    ran: list[str] = []

    def run(line: str) -> None:
        if SHADOW_GATED.search(line):
            time.sleep(2.0)  # the operator lets shadow reads accumulate
            publish(bases)
        for attempt in range(5):
            proc = subprocess.run(
                ["bash", "-c", line],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=600,
            )
            # As the doc says an operator does: a data gate refused on ids still being
            # written passes when asked again; ids that stay different fail every time.
            if proc.returncode != 1 or not worth_another_try(proc.stderr) or attempt == 4:
                break
            time.sleep(2.0)
        assert proc.returncode == 0, (
            f"{line}\nexited {proc.returncode}:\n{proc.stderr}\n{proc.stdout[-3000:]}"
        )
        ran.append(line)
        if " advance " in line or " rollback " in line:
            await_phase(bases, status_phase(state_uri, name))

    try:
        for i, b in enumerate(bases):
            wait_until(lambda b=b: up(b), 60, "live app", tmp_path / f"app{i}.log")
        warm(bases)
        writer_ids = [
            [f"doc-{i:05d}" for i in range(w, 400, 2)] + [f"new-{w}-{j}" for j in range(100)]
            for w in range(2)
        ]
        reads = [f"doc-{i:05d}" for i in range(400, ROWS)]
        load = Load(bases, writer_ids, reads, dim=DIM, max_seconds=900, max_requests=10**6).start()
        time.sleep(1.0)
        primary = next(i for i, line in enumerate(forward) if "-> target-primary" in line)
        for line in forward[: primary + 1]:
            run(line)
        for line in back:
            run(line)
        assert status_phase(state_uri, name) == "dual-write"
        again = next(i for i, line in enumerate(forward) if "-> shadow-read" in line)
        for line in forward[again:]:
            run(line)
        assert status_phase(state_uri, name) == "target-only"
        time.sleep(1.0)  # a little load on target-only
        load.stop()
        with connect(tgt_uri) as tgt:
            ups, dels = check_ledger(tgt, name, load)
        assert ups > 50 and dels > 10
    finally:
        if load is not None:
            load.stop()
        for _, proc in apps:
            stop_group(proc)  # type: ignore[arg-type]
    failed = [s for s in load.samples if not s.ok]
    assert not failed, failed[:5]
    phases = {s.phase for s in load.samples}
    assert {"dual-write", "canary:50", "target-primary", "target-only"} <= phases, phases
    print(json.dumps({"commands": len(ran), "requests": len(load.samples)}))


def status_phase(state_uri: str, name: str) -> str:
    """The phase (with its canary percentage) ``vecmigrate cutover status`` reports."""
    status = cli("cutover", "status", "--state", state_uri, "-c", name, "--json")
    assert status.returncode == 0, status.stderr
    return str(status.json()["label"])
