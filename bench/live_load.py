"""Benchmark: what live cutover costs an application under load, with faults, next to the
same application without the router (issue #15 item 6).

PostgreSQL + pgvector (source) and a Chroma HTTP server (target) are started here
(``tests/engines``); the source is seeded with ``--rows`` records of 64-d Gaussian vectors,
a document and two metadata fields (genre, year). Two instances of ``tests/e2e/live_app.py``
serve the load of ``tests/e2e/live_load.py`` (two writers on ids they own, so every
acknowledged write is in a ledger; two readers: filtered searches and fetches), each request
sent to a random live instance:

1. **baseline**: the two instances in ``--no-router`` mode (the source connector answers
   directly, no state store) for one phase length;
2. **cutover**: two router instances (SQLite state store), the phases walked with the real
   CLI (``vecmigrate copy``, ``cutover advance``, ``cutover reconcile``, ``cutover
   rollback``) with the default gates. In dual-write the load alternates ``--rounds`` times
   between the no-router instances (still up) and the router's, half a phase each: the
   read p99 ratio is taken from these side-by-side windows, so that drift in the shared
   machine's load falls on both; the source-only writes of the no-router windows are then
   repaired by ``cutover reconcile``, as they would be for any app instance not yet on the
   router. Then the faults: the Chroma server SIGKILLed for a
   few seconds during dual-write and again at canary:50, then restarted on the same port
   and data; one app instance SIGKILLed mid-load in target-primary and restarted (the
   balancer stops sending to it while it is down, and sends a request whose connection
   broke once more to the other instance, as balancers do for idempotent requests; such
   requests are counted as ``retried_by_balancer``), then ``cutover rollback`` to
   canary:50 and forward again; finally target-only.

The run is cut into windows: a phase's steady part, a fault, or an operator command (the
phase that was current meanwhile is recorded too). Each request belongs to the window it
started in. Per window: requests, failed requests (with the first errors), read and write
p50/p99 in ms as the client saw them. At target-primary the load stops, the outbox is
drained, and both sides are checked against the ledger (every acknowledged upsert present
with its last document, every acknowledged delete absent) and compared by digest; after
target-only and a last load window the target is checked again.

Run: ``.venv/bin/python bench/live_load.py [--rows 20000] [--seconds-per-phase 10]``.
Writes ``results/live_load.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.e2e.live_load import Load, Sample  # noqa: E402
from tests.engines.chroma import start_chroma_server  # noqa: E402
from tests.engines.common import free_port, stop_group, wait_until  # noqa: E402
from tests.engines.postgres import start_postgres  # noqa: E402

from vecmigrate.connectors import Connector, connect  # noqa: E402
from vecmigrate.live import open_state  # noqa: E402
from vecmigrate.model import CollectionSchema, MetadataField, VectorField  # noqa: E402
from vecmigrate.records import build_batch  # noqa: E402
from vecmigrate.verify.digest import collection_digest  # noqa: E402

VECMIGRATE = str(Path(sys.executable).parent / "vecmigrate")
NAME = "docs"
DIM = 64
OWNED = 800  # seeded ids the writers own (half each); the readers fetch the others
NEW_PER_WRITER = 200  # ids each writer creates (and deletes, rewrites)
READS = ("search", "fetch")
BASELINE, DUAL_WRITE = "baseline (no router)", "dual-write"


# -- load ----------------------------------------------------------------------------------
@dataclass
class TimedSample(Sample):
    """A sample with the monotonic time its request started and the instance it hit."""

    at: float = 0.0
    base: str = ""


class TimedLoad(Load):
    """``tests/e2e/live_load.Load`` with a start time per request, so that requests (failed
    ones carry no phase) can be put in the window they started in; ``bases`` may be
    replaced while it runs (the balancer's view of the live instances)."""

    def _record(self, sample: Sample, at: float, base: str) -> None:
        self.samples.append(TimedSample(**vars(sample), at=at, base=base))


def writer_ids() -> list[list[str]]:
    """Disjoint ids per writer: half of the first OWNED seeded ids, and new ones."""
    return [
        [f"doc-{i:06d}" for i in range(w, OWNED, 2)]
        + [f"new-{w}-{j}" for j in range(NEW_PER_WRITER)]
        for w in range(2)
    ]


def new_load(bases: list[str], rows: int, seed: int) -> TimedLoad:
    """Two writers and two readers, bounded by time only by the caller's ``stop()``."""
    reads = [f"doc-{i:06d}" for i in range(OWNED, rows)]
    return TimedLoad(
        list(bases),
        writer_ids(),
        reads,
        dim=DIM,
        readers=2,
        max_requests=10**8,
        max_seconds=24 * 3600,
        seed=seed,
    )


# -- engines and apps ----------------------------------------------------------------------
def engine_dir(root: Path, name: str) -> Path:
    """A world-traversable folder: PostgreSQL runs as the postgres user."""
    path = root / name
    path.mkdir()
    path.chmod(0o755)
    return path


def seed(conn: Connector, rows: int) -> None:
    """``rows`` records in the source, in batches of 2,000 (not timed)."""
    schema = CollectionSchema(
        name=NAME,
        vectors=(VectorField(dim=DIM),),
        has_document=True,
        metadata=(
            MetadataField(name="genre", type="string"),
            MetadataField(name="year", type="int64"),
        ),
    )
    conn.create(schema)
    rng = np.random.default_rng(7)
    for start in range(0, rows, 2000):
        n = min(2000, rows - start)
        ids = [f"doc-{i:06d}" for i in range(start, start + n)]
        conn.upsert(
            NAME,
            build_batch(
                schema,
                ids,
                {"vector": rng.normal(size=(n, DIM)).astype(np.float32)},
                documents=[f"{i} seed" for i in ids],
                metadata=[
                    {"genre": "abc"[i % 3], "year": 2000 + i % 25} for i in range(start, start + n)
                ],
            ),
        )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process group (the process and its children) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def start_app(args: list[str], log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """One ``tests/e2e/live_app.py`` process on a free port; (base URL, process)."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.live_app", *args, "--port", str(port)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: app_up(base), 90, "live app", log)
    return base, proc


def app_up(base: str) -> bool:
    """The app instance answers /health."""
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def warm(bases: list[str]) -> None:
    """A few concurrent reads per instance: first connections are not what a phase costs."""
    body = {"vector": [0.1] * DIM, "k": 10, "filter": {"genre": "a"}}

    def hit(i: int) -> None:
        base = bases[i % len(bases)]
        httpx.post(f"{base}/search", json=body, timeout=30).raise_for_status()
        ids = {"ids": [f"doc-{OWNED + i:06d}"]}
        httpx.post(f"{base}/fetch", json=ids, timeout=30).raise_for_status()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(hit, range(40)))


def admin(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """POST to an app's test-only /admin endpoint."""
    r = httpx.post(f"{base}/admin/{path}", json=body or {}, timeout=120)
    r.raise_for_status()
    return r.json()


def await_phase(bases: list[str], label: str, timeout: float = 60.0) -> None:
    """Return once every instance routes by ``label``."""
    deadline = time.monotonic() + timeout
    for b in bases:
        while (seen := httpx.get(f"{b}/health", timeout=10).json()["phase"]) != label:
            if time.monotonic() > deadline:
                raise SystemExit(f"{b} still routes by {seen}, not {label}")
            time.sleep(0.05)


def replayed(bases: list[str]) -> float:
    """Outbox entries replayed to the target, summed over the instances' /metrics."""
    total = 0.0
    for b in bases:
        for line in httpx.get(f"{b}/metrics", timeout=10).text.splitlines():
            if line.startswith("vecmigrate_live_outbox_replayed_total") and 'side="target"' in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


# -- checks --------------------------------------------------------------------------------
def ledger_check(conn: Connector, load: Load) -> dict[str, Any]:
    """Every acknowledged upsert present with its last document, every acknowledged delete
    absent (ids whose last request failed are uncertain and left out)."""
    ids = sorted(i for i in load.ledger if i not in load.uncertain)
    docs: dict[str, Any] = {}
    for start in range(0, len(ids), 500):
        got = conn.fetch(NAME, ids[start : start + 500])
        docs.update(
            zip(got.column("id").to_pylist(), got.column("document").to_pylist(), strict=True)
        )
    lost, stale, resurrected = [], [], []
    upserts = 0
    for i in ids:
        op, doc = load.ledger[i]
        if op == "upsert":
            upserts += 1
            if i not in docs:
                lost.append(i)
            elif docs[i] != doc:
                stale.append(f"{i}: {docs[i]!r}, last acknowledged {doc!r}")
        elif i in docs:
            resurrected.append(i)
    return {
        "engine": conn.engine,
        "checked_upserts": upserts,
        "checked_deletes": len(ids) - upserts,
        "uncertain_ids": len(load.uncertain),
        "lost": len(lost),
        "stale": len(stale),
        "deleted_but_present": len(resurrected),
        "examples": (lost + stale + resurrected)[:5],
    }


# -- the run -------------------------------------------------------------------------------
CpuGroups = Callable[[], dict[str, list[int]]]


def cpu_seconds(groups: CpuGroups) -> dict[str, dict[int, float]]:
    """CPU seconds (user + system) so far of each process, by group."""
    out: dict[str, dict[int, float]] = {}
    for group, pids in groups().items():
        seen = out.setdefault(group, {})
        for pid in pids:
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.Error:  # gone since it was listed
                continue
            seen[pid] = t.user + t.system
    return out


def cpu_cores(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], seconds: float
) -> dict[str, float]:
    """Cores each group kept busy between two ``cpu_seconds`` (a process that ended in
    between is missing its share: fault windows undercount)."""
    return {
        group: round(
            sum(t - before.get(group, {}).get(pid, 0.0) for pid, t in pids.items()) / seconds, 2
        )
        for group, pids in after.items()
    }


class Run:
    """The operator's side: windows, CLI commands, faults; everything recorded, with the
    CPU each group of processes (``cpu_groups``: source, target, apps, load) used."""

    def __init__(self, tmp: Path, src_uri: str, tgt_uri: str, state_uri: str) -> None:
        self.tmp = tmp
        self.src_uri, self.tgt_uri, self.state_uri = src_uri, tgt_uri, state_uri
        self.windows: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.refusals: list[dict[str, Any]] = []
        self.phase = "source-only"
        self.max_recall_drop = 0.02
        self.cpu_groups: CpuGroups = dict
        self._cpu: dict[str, dict[int, float]] = {}

    def window(self, name: str, kind: str) -> None:
        """Close the current window and open ``name`` (steady | fault | operator)."""
        self.close()
        now = time.monotonic()
        self.windows.append({"name": name, "kind": kind, "phase": self.phase, "start": now})
        print(f"[{time.strftime('%H:%M:%S')}] {kind:<8} {name}", flush=True)

    def close(self) -> None:
        """Close the last window."""
        cpu = cpu_seconds(self.cpu_groups)
        if self.windows and "end" not in self.windows[-1]:
            last = self.windows[-1]
            last["end"] = time.monotonic()
            last["cpu_cores"] = cpu_cores(self._cpu, cpu, last["end"] - last["start"])
        self._cpu = cpu

    def cli(self, *args: str, ok: bool = True) -> tuple[int, dict[str, Any]]:
        """Run ``vecmigrate ARGS --json``; recorded with its duration."""
        started = time.monotonic()
        ran = subprocess.run(
            [VECMIGRATE, *args, "--json"], cwd=self.tmp, capture_output=True, text=True
        )
        took = time.monotonic() - started
        try:
            out: dict[str, Any] = json.loads(ran.stdout) if ran.stdout.strip() else {}
        except json.JSONDecodeError:
            out = {"stdout": ran.stdout[-2000:]}
        self.commands.append(
            {"command": "vecmigrate " + " ".join(_short(a, self) for a in args),
             "exit": ran.returncode, "seconds": round(took, 1)}
        )  # fmt: skip
        print(
            f"    {self.commands[-1]['command'][:90]}: exit {ran.returncode}, {took:.1f}s",
            flush=True,
        )
        if ok and ran.returncode != 0:
            raise SystemExit(f"vecmigrate {' '.join(args)} exited {ran.returncode}:\n"
                             f"{ran.stderr[-3000:]}\n{ran.stdout[-3000:]}")  # fmt: skip
        return ran.returncode, out

    def advance(self, bases: list[str], *extra: str, attempts: int = 4) -> str | None:
        """``cutover advance`` with the default gates; a refusal is recorded, and retried
        after more load (shadow reads accumulate) before giving up: SystemExit, or None
        with ``attempts=1``."""
        for attempt in range(attempts):
            for b in bases:
                admin(b, "publish")  # shadow totals stored now, not within 0.5 s
            code, out = self.cli(
                "cutover", "advance", "--state", self.state_uri, "-c", NAME,
                self.src_uri, self.tgt_uri, "--max-recall-drop", str(self.max_recall_drop),
                *extra, ok=False,
            )  # fmt: skip
            if code == 0:
                label = str(out["event"]["to"])
                await_phase(bases, label)
                self.phase = label
                return label
            reason = str(out.get("reason") or out.get("error") or out)
            refusal: dict[str, Any] = {"from": self.phase, "attempt": attempt + 1, "reason": reason}
            print(f"    refused: {reason[:300]}", flush=True)
            if "data:" in reason and attempt >= 1:
                # what an operator does when the sides differ: queue the primary's version
                # of every differing id, then ask again
                _, rec = self.cli(
                    "cutover", "reconcile", "--state", self.state_uri, "-c", NAME,
                    self.src_uri, self.tgt_uri,
                )  # fmt: skip
                refusal["then"] = f"cutover reconcile: {rec.get('queued')} ids queued"
            else:
                time.sleep(2.0)  # ids in flight settle, more shadow reads, a shorter outbox
            self.refusals.append(refusal)
        if attempts == 1:
            return None
        raise SystemExit(f"cutover advance from {self.phase} refused 3 times: {self.refusals}")

    def rollback(self, bases: list[str], *extra: str) -> str:
        """``cutover rollback`` (no gates)."""
        _, out = self.cli("cutover", "rollback", "--state", self.state_uri, "-c", NAME, *extra)
        label = str(out["event"]["to"])
        await_phase(bases, label)
        self.phase = label
        return label


def _short(arg: str, run: Run) -> str:
    return {run.src_uri: "$S", run.tgt_uri: "$T", run.state_uri: "$STATE"}.get(arg, arg)


def pct(ms: list[float]) -> dict[str, Any] | None:
    """requests, p50 and p99 in ms (None without samples)."""
    if not ms:
        return None
    return {
        "requests": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(max(ms), 1),
    }


def latency_rounds(windows: list[dict[str, Any]], samples: list[TimedSample]) -> dict[str, Any]:
    """Read latency of the alternating no-router and dual-write windows: pooled over the
    rounds, and the p99 ratio per round (the spread a single pair of windows would show)."""

    def reads(prefix: str) -> list[list[float]]:
        out = []
        for w in windows:
            if w["name"].startswith(prefix + " #"):
                inside = [s for s in samples if w["start"] <= s.at < w["end"]]
                out.append([s.seconds * 1000 for s in inside if s.ok and s.kind in READS])
        return out

    def cores(prefix: str) -> dict[str, float]:
        rounds = [w["cpu_cores"] for w in windows if w["name"].startswith(prefix + " #")]
        groups = {g for r in rounds for g in r}
        return {g: round(sum(r.get(g, 0.0) for r in rounds) / len(rounds), 2) for g in groups}

    base, dual = reads(BASELINE), reads(DUAL_WRITE)
    pooled_base = pct([x for r in base for x in r])
    pooled_dual = pct([x for r in dual for x in r])
    if not (pooled_base and pooled_dual):
        return {}
    per_round = [
        round(float(np.percentile(d, 99) / np.percentile(b, 99)), 2)
        for b, d in zip(base, dual, strict=True)
        if b and d
    ]
    return {
        "baseline_read_ms": pooled_base,
        "dual_write_read_ms": pooled_dual,
        "dual_write_read_p99_over_baseline": round(
            pooled_dual["p99_ms"] / pooled_base["p99_ms"], 2
        ),
        "dual_write_read_p50_over_baseline": round(
            pooled_dual["p50_ms"] / pooled_base["p50_ms"], 2
        ),
        "read_p99_ratio_per_round": per_round,
        "cpu_cores_no_router_rounds": cores(BASELINE),
        "cpu_cores_dual_write_rounds": cores(DUAL_WRITE),
    }


def summarise(windows: list[dict[str, Any]], samples: list[TimedSample]) -> list[dict[str, Any]]:
    """Per window: requests, failures (first errors), read and write p50/p99."""
    out = []
    for w in windows:
        inside = [s for s in samples if w["start"] <= s.at < w["end"]]
        failed = [s for s in inside if not s.ok]
        ok = [s for s in inside if s.ok]
        read = [s.seconds * 1000 for s in ok if s.kind in READS]
        write = [s.seconds * 1000 for s in ok if s.kind in ("upsert", "delete")]
        sides: dict[str, int] = {}
        for s in ok:
            if s.side:
                sides[s.side] = sides.get(s.side, 0) + 1
        out.append(
            {
                "window": w["name"],
                "kind": w["kind"],
                "phase": w["phase"],
                "seconds": round(w["end"] - w["start"], 1),
                "requests": len(inside),
                "failed": len(failed),
                "retried_by_balancer": sum(s.retried for s in inside),
                "first_errors": [f"{s.kind} -> {s.base}: {s.error}" for s in failed[:3]],
                "reads_served_by": sides,
                "read": pct(read),
                "write": pct(write),
                "cpu_cores": w.get("cpu_cores", {}),
            }
        )
    return out


def versions() -> dict[str, str]:
    """Versions of what is measured."""
    out = {"python": platform.python_version()}
    for dist in ("vecmigrate", "chromadb", "psycopg", "fastapi", "uvicorn", "httpx"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (empty once it is gone)."""
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return []


def idle_priority(pid: int) -> None:
    """SCHED_IDLE for every thread of a process tree (threads it starts later inherit it)."""
    for proc_pid in process_tree(pid):
        with contextlib.suppress(psutil.Error):
            for thread in psutil.Process(proc_pid).threads():
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setscheduler(thread.id, os.SCHED_IDLE, os.sched_param(0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20_000, help="records seeded in the source")
    ap.add_argument("--seconds-per-phase", type=float, default=10.0, help="steady load per phase")
    ap.add_argument(
        "--max-recall-drop",
        type=float,
        default=0.1,
        help="the operator's accepted recall@10 loss (random 64-d vectors are HNSW's hard "
        "case: Chroma's default ef_search loses ~0.05 against exact pgvector here)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="alternating no-router / dual-write windows (half a phase each) for the read "
        "p99 ratio",
    )
    ap.add_argument(
        "--target-cpu",
        choices=("shared", "idle"),
        default="shared",
        help="idle: the Chroma server runs under SCHED_IDLE, taking only the CPU the source "
        "side leaves (a model of a target on hosts of its own; the router's own cost is "
        "then what the ratio shows); shared: every process at the same priority",
    )
    ap.add_argument(
        "--shadow-fraction",
        type=float,
        default=1.0,
        help="share of reads the routers shadow (MigrationRouter shadow_fraction)",
    )
    ap.add_argument("--outage", type=float, default=4.0, help="seconds the target stays killed")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "live_load.json")
    opts = ap.parse_args()
    if opts.rows < OWNED + 100:
        raise SystemExit(f"--rows {opts.rows}: at least {OWNED + 100} (writers own {OWNED})")
    import psycopg

    secs = opts.seconds_per_phase
    t_start = time.monotonic()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="vm-bench-live-"))
    tmp.chmod(0o755)
    pg = chroma = None
    apps: list[tuple[str, subprocess.Popen[bytes]]] = []
    loads: list[TimedLoad] = []
    result: dict[str, Any] = {}
    try:
        pg = start_postgres(engine_dir(tmp, "pg"))
        chroma_dir = engine_dir(tmp, "chroma")
        chroma = start_chroma_server(chroma_dir)
        if opts.target_cpu == "idle":
            idle_priority(chroma.process.pid)
        src_uri, tgt_uri = pg.uri(), chroma.uri
        state_uri = f"sqlite://{tmp}/state.db"
        with psycopg.connect(pg.dsn) as c:
            row = c.execute(
                "SELECT current_setting('server_version'), extversion FROM pg_extension "
                "WHERE extname = 'vector'"
            ).fetchone()
        server_versions = {"postgresql": str(row[0]), "pgvector": str(row[1])} if row else {}
        with connect(src_uri) as src:
            seeded = time.monotonic()
            seed(src, opts.rows)
            print(f"seeded {opts.rows} x {DIM}-d in {time.monotonic() - seeded:.1f}s", flush=True)
        run = Run(tmp, src_uri, tgt_uri, state_uri)
        run.max_recall_drop = opts.max_recall_drop

        def cpu_groups() -> dict[str, list[int]]:
            postgres = [p.pid for p in psutil.process_iter(["username"])
                        if p.info["username"] == "postgres"]  # fmt: skip
            assert chroma is not None
            return {
                "source (postgres)": postgres,
                "target (chroma)": process_tree(chroma.process.pid),
                "apps": [pid for _, proc in apps for pid in process_tree(proc.pid)],
                "load generator": [os.getpid()],
            }

        run.cpu_groups = cpu_groups

        # 1. baseline: the same app and load, no router. The two plain instances stay up
        # (idle) for the dual-write rounds below, which alternate the load between them and
        # the router's instances
        no_router = ["--source", src_uri, "-c", NAME, "--no-router"]
        plain = [start_app(no_router, tmp / f"baseline{i}.log") for i in range(2)]
        apps = list(plain)
        plain_bases = [b for b, _ in plain]
        warm(plain_bases)
        base_load = new_load(plain_bases, opts.rows, seed=0)
        base_load.start()
        loads.append(base_load)
        run.phase = "no-router"
        run.window("baseline (no router)", "steady")
        time.sleep(secs)
        base_load.stop()
        run.close()

        # 2. the cutover: two router instances, same load, ledger carried over
        routed = ["--source", src_uri, "--target", tgt_uri, "--state", state_uri, "-c", NAME,
                  "--state-ttl", "0.5", "--shadow-fraction", str(opts.shadow_fraction)]  # fmt: skip
        routed_apps = [start_app(routed, tmp / f"app{i}.log") for i in range(2)]
        apps = plain + routed_apps
        bases = [b for b, _ in routed_apps]
        warm(bases)
        load = new_load(bases, opts.rows, seed=1)
        load.ledger = dict(base_load.ledger)
        load.uncertain = set(base_load.uncertain)
        load.start()
        loads.append(load)
        run.phase = "source-only"
        run.window("source-only", "steady")
        time.sleep(secs)
        run.window("backfill: vecmigrate copy --no-verify", "operator")
        run.cli("copy", src_uri, tgt_uri, "-c", NAME, "--no-verify")
        run.window("advance -> dual-write, reconcile", "operator")
        run.advance(bases)
        _, rec = run.cli("cutover", "reconcile", "--state", state_uri, "-c", NAME, src_uri, tgt_uri)
        repaired = rec.get("queued")
        # The read p99 of dual-write against the app without the router, measured in
        # alternating windows so that drift in the machine's load (2 shared cores, a
        # shared host) falls on both alike
        for r in range(1, opts.rounds + 1):
            load.bases = list(plain_bases)
            run.phase, routed_phase = "no-router", run.phase
            run.window(f"{BASELINE} #{r}", "steady")
            time.sleep(secs / 2)
            load.bases = list(bases)
            run.phase = routed_phase
            run.window(f"{DUAL_WRITE} #{r}", "steady")
            time.sleep(secs / 2)
        # the plain instances wrote to the source alone: what the target missed is queued
        run.window("dual-write: cutover reconcile (the no-router rounds' writes)", "operator")
        _, rec = run.cli("cutover", "reconcile", "--state", state_uri, "-c", NAME, src_uri, tgt_uri)
        repaired_after_rounds = rec.get("queued")
        for _, proc in plain:
            stop_group(proc)
        apps = list(routed_apps)
        run.window("dual-write", "steady")
        time.sleep(secs / 2)

        state = open_state(state_uri)
        faults: list[dict[str, Any]] = []

        def kill_target(label: str) -> None:
            # the target dies mid-load; the outbox holds its writes until it is back
            assert chroma is not None
            run.window(f"{label}: Chroma SIGKILLed {opts.outage:.0f}s, restarted", "fault")
            before = replayed(bases)
            chroma.kill()
            time.sleep(opts.outage)
            backlog = state.outbox.depth(NAME)["target"].pending
            up_after = chroma.restart()
            if opts.target_cpu == "idle":
                idle_priority(chroma.process.pid)
            drained = all(admin(b, "drain", {"timeout": 120})["drained"] for b in bases)
            faults.append(
                {"fault": f"{label}: target killed", "down_s": opts.outage,
                 "restart_s": round(up_after, 1), "outbox_backlog_at_restart": backlog,
                 "replayed": replayed(bases) - before, "drained": drained}
            )  # fmt: skip
            run.window(f"{run.phase} (after the target's restart)", "steady")

        kill_target("dual-write")
        time.sleep(secs / 3)
        run.window("advance -> shadow-read", "operator")
        run.advance(bases)
        run.window("shadow-read", "steady")
        time.sleep(secs)
        run.window("advance -> canary:10", "operator")
        run.advance(bases, "--percent", "10")
        run.window("canary:10", "steady")
        time.sleep(secs)
        run.window("advance -> canary:50", "operator")
        run.advance(bases, "--percent", "50")
        run.window("canary:50", "steady")
        time.sleep(secs)
        kill_target("canary:50")
        time.sleep(secs / 3)
        run.window("advance -> target-primary", "operator")
        if run.advance(bases, attempts=1) is None:
            # the shadow reads that failed while the target was down count against this
            # canary (max 1 %): step back one phase and take canary:50 again, with fresh
            # totals
            run.rollback(bases, "--reason", "bench: shadow errors from the target outage")
            run.window(f"{run.phase} (after rollback)", "steady")
            time.sleep(secs / 3)
            run.window("advance -> canary:50 (again)", "operator")
            run.advance(bases, "--percent", "50")
            run.window("canary:50 (again)", "steady")
            time.sleep(secs / 2)
            run.window("advance -> target-primary", "operator")
            run.advance(bases)
        run.window("target-primary", "steady")
        time.sleep(secs / 2)

        # one app instance dies mid-load; the balancer stops sending to it until it is back
        run.window("target-primary: app instance 1 SIGKILLed, restarted", "fault")
        dead = apps[1][1]
        load.bases = [bases[0]]
        kill_group(dead)
        killed = time.monotonic()
        apps[1] = start_app(routed, tmp / "app1-restarted.log")
        bases = [apps[0][0], apps[1][0]]
        await_phase(bases, run.phase)
        load.bases = list(bases)
        faults.append(
            {"fault": "target-primary: app instance killed",
             "seconds_until_replacement_serves": round(time.monotonic() - killed, 1)}
        )  # fmt: skip
        time.sleep(secs / 3)
        run.window("rollback -> canary:50", "operator")
        run.rollback(bases, "--to", "canary", "--percent", "50", "--reason", "bench: app killed")
        run.window(f"{run.phase} (after rollback)", "steady")
        time.sleep(secs / 2)
        run.window("advance -> target-primary (again)", "operator")
        run.advance(bases)
        run.window("target-primary (again)", "steady")
        time.sleep(secs / 2)
        run.window("load stopped: drain, ledger and digest checks", "operator")
        load.stop()
        drained = all(admin(b, "drain", {"timeout": 120})["drained"] for b in bases)
        with connect(src_uri) as src, connect(tgt_uri) as tgt:
            checks: dict[str, Any] = {"drained": drained, "source": ledger_check(src, load),
                      "target": ledger_check(tgt, load)}  # fmt: skip
            a, b = collection_digest(src, NAME), collection_digest(tgt, NAME)
            tol = max(src.capabilities.vector_tolerance, tgt.capabilities.vector_tolerance)
            checks["digests_equal"] = a.compare(b, tolerance=tol).equal
        run.close()

        run.window("advance -> target-only", "operator")
        run.advance(bases)
        last = new_load(bases, opts.rows, seed=2)
        last.ledger = dict(load.ledger)
        last.uncertain = set(load.uncertain)
        last.start()
        loads.append(last)
        run.window("target-only", "steady")
        time.sleep(secs)
        last.stop()
        run.close()
        with connect(tgt_uri) as tgt:
            checks["target_after_target_only"] = ledger_check(tgt, last)
        _, status = run.cli("cutover", "status", "--state", state_uri, "-c", NAME)
        state.close()

        samples: list[TimedSample] = [s for ld in loads for s in ld.samples]  # type: ignore[misc]
        windows = summarise(run.windows, samples)
        rounds = latency_rounds(run.windows, samples)

        ledgers: list[dict[str, Any]] = [
            checks["source"], checks["target"], checks["target_after_target_only"]
        ]  # fmt: skip
        lost = sum(c["lost"] + c["stale"] + c["deleted_but_present"] for c in ledgers)
        result = {
            "bench": "live_load",
            "pair": "pgvector -> chroma+http",
            "records": opts.rows,
            "dim": DIM,
            "seconds_per_phase": secs,
            "gates": f"defaults, except --max-recall-drop {opts.max_recall_drop}",
            "shadow_fraction": opts.shadow_fraction,
            "load": "2 app instances (uvicorn, 8 worker threads each), requests sent to a "
            "random live one; 2 writers (1-3 upserts or 1-2 deletes per request, 30 ms "
            "think) on ids they own; 2 readers (70% filtered top-10 search, 30% fetch of 5 "
            "ids, 10 ms think)",
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "note": "engines, both apps and the load generator share these cores",
                "target_cpu": opts.target_cpu,
                "load_avg_1m_5m_15m_before": [round(x, 2) for x in load_before],
                "load_avg_1m_5m_15m_after": [round(x, 2) for x in os.getloadavg()],
            },
            "versions": {**versions(), **server_versions},
            "summary": {
                "requests": len(samples),
                "failed": sum(not s.ok for s in samples),
                "retried_by_balancer": sum(s.retried for s in samples),
                **rounds,
                "goal_read_p99_ratio": 1.5,
                "lost_or_stale_acknowledged_writes": lost,
                "digests_equal_at_target_primary": checks["digests_equal"],
                "refused_advances": len(run.refusals),
            },
            "windows": windows,
            "faults": faults,
            "repaired_by_reconcile": repaired,
            "repaired_after_no_router_rounds": repaired_after_rounds,
            "checks": checks,
            "refusals": run.refusals,
            "commands": run.commands,
            "events": [f"{e['action']} {e['from']} -> {e['to']}" for e in status.get("events", [])],
            "wall_seconds": round(time.monotonic() - t_start, 1),
        }
    finally:
        for ld in loads:
            ld.stop()
        for _, proc in apps:
            stop_group(proc)
        if chroma is not None:
            chroma.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)


def print_table(result: dict[str, Any]) -> None:
    """The windows as a Markdown table, then the summary."""

    def ms(x: dict[str, Any] | None) -> str:
        return f"{x['p50_ms']:g} / {x['p99_ms']:g}" if x else "-"

    print("\n| window | s | requests | failed | read p50 / p99 ms | write p50 / p99 ms |")
    print("|---|---|---|---|---|---|")
    for w in result["windows"]:
        name = w["window"] if w["kind"] == "steady" else f"*{w['window']}*"
        print(
            f"| {name} | {w['seconds']:g} | {w['requests']} | {w['failed']} | "
            f"{ms(w['read'])} | {ms(w['write'])} |"
        )
    print()
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
