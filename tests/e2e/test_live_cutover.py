"""Zero-downtime cutover pgvector -> Chroma under steady load, through every phase.

Two instances of the app (``live_app.py``) run as processes routing through ``MigrationRouter``;
this test is the operator: it backfills with ``copy_collection``, moves the phase in the
shared Redis state store (gated ``advance``, two ``rollback``s), SIGKILLs the target's
server during dual write and again at canary 50 % (each time restarted on the same port
and data a few seconds later; after the second, the canary is lowered to 10 % and raised
again), SIGKILLs an app instance in the middle of a write in target-primary and rolls
back to canary 50 % (then forward again with the instance restarted), and finally checks
that no request failed and no acknowledged write was lost or stale on either side.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from tests.conftest import require_module
from tests.e2e.helpers import cli, json_of, run_cli
from tests.e2e.live_harness import (
    DIM,
    ROWS,
    admin,
    await_phase,
    await_shadow_reads,
    check_ledger,
    metric,
    publish,
    seed,
    start_app,
    up,
    warm,
)
from tests.e2e.live_load import Load
from tests.engines.chroma import start_chroma_server
from tests.engines.common import stop_group, wait_until
from vecmigrate.connectors import connect
from vecmigrate.live import GateConfig, advance, canary_bucket, open_state, rollback
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.verify.digest import collection_digest


def test_live_cutover_under_load(postgres: Any, redis_server: Any, tmp_path: Path) -> None:
    require_module("fastapi")
    require_module("prometheus_client")
    name = f"live_{uuid.uuid4().hex[:8]}"
    # a server of its own: this test kills it
    (tmp_path / "chroma").mkdir()
    chroma = start_chroma_server(tmp_path / "chroma")
    src_uri, tgt_uri = postgres.uri(), chroma.uri
    state_uri = redis_server.uri
    src, tgt = connect(src_uri), connect(tgt_uri)
    state = open_state(state_uri)
    seed(src, name)
    # two instances of the app share the state store, as two hosts behind a balancer would
    apps = [
        start_app(src_uri, tgt_uri, state_uri, name, tmp_path / f"app{i}.log") for i in range(2)
    ]
    bases = [base for base, _ in apps]
    base = bases[0]
    load: Load | None = None
    timeline: list[tuple[str, float]] = []
    gates = GateConfig(
        max_diff=100, max_outbox=100, max_outbox_age=5, min_overlap=0.8, min_shadow_reads=20
    )
    started = time.monotonic()

    def step(what: str, **kw: Any) -> None:
        # fresh connections per step, closed after, as an operator's command would have
        with connect(src_uri) as s, connect(tgt_uri) as t:
            event, results = advance(state, name, source=s, target=t, config=gates, **kw)
        timeline.append(
            (f"{event.before.label} -> {event.after.label}", time.monotonic() - started)
        )
        assert all(r.passed for r in results), results
        await_phase(bases, event.after.label)

    try:
        for i, b in enumerate(bases):
            wait_until(lambda b=b: up(b), 60, "live app", tmp_path / f"app{i}.log")
        writer_ids = [
            [f"doc-{i:05d}" for i in range(w, 400, 2)] + [f"new-{w}-{j}" for j in range(100)]
            for w in range(2)
        ]
        warm(bases)  # first connections per worker thread are not what a phase costs
        load = Load(bases, writer_ids, [f"doc-{i:05d}" for i in range(400, ROWS)], dim=DIM).start()
        time.sleep(1.0)

        # 1. backfill while the app serves from the source alone
        copied = copy_collection(
            src, tgt, name, options=CopyOptions(job_path=tmp_path / "copy.job")
        )
        assert copied.ok
        step("dual-write")  # returns once every instance routes by it: a write that
        # read source-only before and lands later is fenced by the router (queued as a sync)
        # 2. repair what changed between the backfill's scan and the start of dual write
        # through the outbox, from the operator's side, while both instances keep writing
        ran = cli(
            "cutover", "reconcile", "--state", state_uri, "-c", name, src_uri, tgt_uri, "--json"
        )
        assert ran.returncode == 0, ran.stderr
        repaired = ran.json()["queued"]
        assert repaired > 0  # the writes made during the backfill
        assert admin(base, "drain")["drained"]

        # 3. the target's server dies during dual write: the outbox absorbs and replays
        chroma.kill()
        time.sleep(2.0)
        backlog = state.outbox.depth(name)["target"].pending
        assert backlog > 0
        chroma.restart()
        assert all(admin(b, "drain")["drained"] for b in bases)
        replayed = sum(
            metric(
                httpx.get(f"{b}/metrics").text,
                "vecmigrate_live_outbox_replayed_total",
                'side="target"',
            )
            for b in bases
        )
        assert replayed >= backlog

        step("shadow-read")
        time.sleep(3.0)
        await_shadow_reads(state, name, bases)
        step("canary", percent=10)
        time.sleep(2.0)
        await_shadow_reads(state, name, bases)
        step("canary", percent=50)
        time.sleep(1.5)

        # 4. the target's server dies mid-canary: reads of its users fall back to the
        # source, its writes wait in the outbox; the operator lowers the canary after
        chroma.kill()
        time.sleep(3.0)
        killed_backlog = state.outbox.depth(name)["target"].pending
        assert killed_backlog > 0  # the target really was gone while the app wrote
        chroma.restart()
        assert all(admin(b, "drain")["drained"] for b in bases)
        ev = rollback(state, name, percent=10, note="test: target crashed at canary 50%")
        timeline.append(
            (f"{ev.before.label} -> {ev.after.label} (rollback)", time.monotonic() - started)
        )
        assert ev.after.label == "canary:10"
        await_phase(bases, ev.after.label)
        time.sleep(2.0)
        await_shadow_reads(state, name, bases)
        step("canary", percent=50)
        time.sleep(2.5)
        await_shadow_reads(state, name, bases)
        step("target-primary")
        time.sleep(2.0)

        # 5. an app instance is SIGKILLed in the middle of a write in target-primary (its
        # outbox entry stays held, its writer gone) and the operator rolls back a second
        # later: no write of the live instance fails or waits on the dead one's entry past
        # its heartbeat, and the entry is resolved from the primary
        admin(bases[1], "hang_writes")
        wait_until(lambda: bool(state.outbox.held(name, 0.5)), 15, "a write held by app 1")
        load.bases = [base]  # the balancer's view once app 1 stops answering
        os.killpg(apps[1][1].pid, signal.SIGKILL)
        apps[1][1].wait()
        killed = time.monotonic()
        time.sleep(1.0)
        ev = rollback(state, name, percent=50, note="test: app instance killed mid-write")
        timeline.append(
            (f"{ev.before.label} -> {ev.after.label} (rollback)", time.monotonic() - started)
        )
        assert ev.after.label == "canary:50"
        await_phase([base], ev.after.label)
        wait_until(lambda: not state.outbox.held(name, 0), 30, "app 1's held write resolved")
        held_resolved_after = time.monotonic() - killed
        apps[1] = start_app(src_uri, tgt_uri, state_uri, name, tmp_path / "app1-again.log")
        bases[1] = apps[1][0]
        wait_until(lambda: up(bases[1]), 60, "live app 1 again", tmp_path / "app1-again.log")
        load.bases = list(bases)
        await_phase(bases, ev.after.label)
        time.sleep(2.5)
        await_shadow_reads(state, name, bases)
        step("target-primary")
        time.sleep(2.0)
        await_shadow_reads(state, name, bases)  # for the CLI's advance to target-only below
        load.stop()
        assert admin(base, "drain")["drained"]

        # 6. both sides hold exactly the same data, and every acknowledged write
        a, b = collection_digest(src, name), collection_digest(tgt, name)
        tol = max(src.capabilities.vector_tolerance, tgt.capabilities.vector_tolerance)
        assert a.compare(b, tolerance=tol).equal, (a.content_hash, b.content_hash)
        for conn in (src, tgt):
            ups, dels = check_ledger(conn, name, load)
        assert ups > 50 and dels > 10

        # 7. the last step through the CLI: gates checked with no slack at all
        publish(bases)
        proc = run_cli(
            "cutover",
            "advance",
            "--state",
            state_uri,
            "-c",
            name,
            src_uri,
            tgt_uri,
            "--min-overlap",
            "0.8",
            "--json",
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        assert json_of(proc)["event"]["to"] == "target-only"
        timeline.append(("target-primary -> target-only (CLI)", time.monotonic() - started))
        burst = Load(
            bases,
            writer_ids,
            [f"doc-{i:05d}" for i in range(400, ROWS)],
            dim=DIM,
            max_seconds=2.5,
            seed=1,
        )
        burst.ledger = dict(load.ledger)
        burst.start()
        time.sleep(2.5)
        burst.stop()
        check_ledger(tgt, name, burst)
        samples = load.samples + burst.samples
    finally:
        if load is not None:
            load.stop()
        for _, proc in apps:
            stop_group(proc)  # type: ignore[arg-type]
        state.close()
        src.close()
        tgt.close()
        chroma.stop()

    # 8. no failed request; canary reads sticky per user; numbers for the README
    failed = [s for s in samples if not s.ok]
    assert not failed, failed[:5]
    canary = [s for s in samples if s.phase.startswith("canary") and s.side]
    assert canary
    for s in canary:
        pct = float(s.phase.split(":")[1])
        expected = "target" if canary_bucket(s.user or "") < pct * 100 else "source"
        assert s.side == expected, s
    for s in samples:
        if s.side and s.phase in ("target-primary", "target-only"):
            assert s.side == "target"
        if s.side and s.phase in ("source-only", "dual-write", "shadow-read"):
            assert s.side == "source"
    latency = {**load.latency_by_phase()}
    latency.update({k: v for k, v in burst.latency_by_phase().items() if k == "target-only"})
    status = cli("cutover", "status", "--state", state_uri, "-c", name, "--json").json()
    result = {
        "machine": f"{os.cpu_count()} cores shared with the engines and the load generator; "
        f"load average {os.getloadavg()[0]:.1f} at the end",
        "requests": len(samples),
        "failed": len(failed),
        "outage": {
            "outbox_backlog_while_target_killed_in_dual_write": backlog,
            "replayed": replayed,
            "outbox_backlog_while_target_killed_at_canary_50": killed_backlog,
        },
        "repaired_after_backfill": repaired,
        "app_killed_mid_write": {
            "held_entry_resolved_after_s": round(held_resolved_after, 1),
            "requests_resent_by_balancer": sum(s.retried for s in samples),
        },
        "phases_ms": latency,
        "timeline_s": [(t, round(s, 1)) for t, s in timeline],
        "events": [f"{e['action']} {e['from']} -> {e['to']}" for e in status["events"]],
    }
    out = Path(os.environ.get("VECMIGRATE_BENCH_OUT", tmp_path)) / "live_cutover.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    assert [e["action"] for e in status["events"]].count("rollback") == 2
    for phase in (
        "source-only",
        "dual-write",
        "shadow-read",
        "canary:10",
        "canary:50",
        "target-primary",
        "target-only",
    ):
        assert "read" in latency.get(phase, {}), f"no reads measured in {phase}"


def test_cutover_advance_refuses_failing_gate(
    postgres: Any, chroma_server: Any, tmp_path: Path
) -> None:
    """The CLI refuses to advance when the target is missing data, says why, exits 1."""
    name = f"gate_{uuid.uuid4().hex[:8]}"
    src_uri, tgt_uri = postgres.uri(), chroma_server.uri
    state_uri = f"sqlite://{tmp_path}/state.db"
    with connect(src_uri) as src, connect(tgt_uri) as tgt:
        seed(src, name)
        copy_collection(src, tgt, name, options=CopyOptions(job_path=tmp_path / "copy.job"))
        proc = cli("cutover", "advance", "--state", state_uri, "-c", name, src_uri, tgt_uri)
        assert proc.returncode == 0, proc.stderr  # source-only -> dual-write: target exists
        tgt.delete(name, ["doc-00001", "doc-00002", "doc-00003"])  # target now lacks 3 records
        edited = tgt.fetch(name, ["doc-00004"])
        docs = edited.schema.get_field_index("document")
        tgt.upsert(name, edited.set_column(docs, "document", pa.array(["edited"])))
    proc = cli("cutover", "advance", "--state", state_uri, "-c", name, src_uri, tgt_uri)
    assert proc.returncode == 1
    assert "refused" in proc.stderr and "3 missing" in proc.stderr, proc.stderr
    assert "1 changed" in proc.stderr and "doc-00004 (document)" in proc.stderr, proc.stderr
    proc = cli(
        "cutover",
        "advance",
        "--state",
        state_uri,
        "-c",
        name,
        src_uri,
        tgt_uri,
        "--max-diff",
        "4",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    status = cli("cutover", "status", "--state", state_uri, "-c", name, "--json").json()
    assert status["phase"] == "shadow-read"
    gate = next(g for g in status["events"][-1]["gates"] if g["gate"] == "data")
    assert gate["actual"]["missing"] == 3 and gate["passed"]
    # no shadow reads were recorded in shadow-read: the next advance is refused too
    proc = cli(
        "cutover",
        "advance",
        "--state",
        state_uri,
        "-c",
        name,
        src_uri,
        tgt_uri,
        "--max-diff",
        "4",
        "--json",
    )
    assert proc.returncode == 1
    refused = proc.json()
    assert not refused["ok"] and "shadow" in refused["reason"]
