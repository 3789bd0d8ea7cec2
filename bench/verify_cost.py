"""Benchmark: what proving a copy costs next to the copy itself (issue #17, item 3).

For each size a LanceDB source is loaded once (not timed) with numpy random vectors
(unnormalised, L2, no index on either side), a document and three metadata fields
(string, int, float), through vecmigrate's own LanceDB connector. Then, side by side in
one run, each round times these steps, each in its own process (interpreter start-up and
imports included), into a fresh target (``--if-exists replace``; LanceDB, or with
``--target pgvector`` a table of an embedded PostgreSQL started for the run) where the
step copies:

* ``copy``: ``vecmigrate copy --no-verify``;
* ``copy+check``: ``vecmigrate copy`` with its default verification, as the CLI runs it;
* ``check_full``: the copy's full verification alone (``check_copy(mode="full")``: both
  sides read back and digested, concurrently) of the target copied last;
* ``copy_api``, ``copy_api+full`` and ``copy_api+sampled``: the same copy through the
  Python API's steps (``copy_collection`` then ``check_copy``), timing the copy and the
  check phases in-process: no check, the full check ``copy`` runs today, and the sampled
  check (``acknowledging`` during the copy, then ``check_copy(acknowledged=...)``: the
  source digested again and compared with what the target acknowledged, plus an exact
  read-back of 1,000 sampled records);
* ``verify``: ``vecmigrate verify`` (digests, exact ground truth, recall, self-retrieval).

The order rotates per round; the best of ``--rounds`` is kept. ``--profile`` runs the
full check, the sampled copy check and ``verify`` once more under cProfile (every thread)
and prints their top entries. Run: ``.venv/bin/python bench/verify_cost.py``
(results: ``bench/results/verify_cost.json``, ``verify_cost_pgvector.json``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]  # tests.engines starts PostgreSQL for --target pgvector
PY = sys.executable
VECMIGRATE = str(Path(PY).parent / "vecmigrate")
SIZES = {"400k-50": (400_000, 50), "100k-384": (100_000, 384)}
GENRES = ["news", "sport", "tech", "art", "science", "travel"]

CHECK_FULL = """
import inspect, sys
from vecmigrate.connectors import connect
from vecmigrate.pipeline.options import CopyResult
from vecmigrate.verify.copycheck import check_copy
src, dst = sys.argv[1], sys.argv[2]
with connect(src, read_only=True) as s, connect(dst, read_only=True) as d:
    n = s.count("docs")
    result = CopyResult(src, dst, "docs", "docs", rows_read=n, rows_written=n, rows_total=n)
    full = {"mode": "full"} if "mode" in inspect.signature(check_copy).parameters else {}
    checks = check_copy(s, d, "docs", result, None, **full)  # before: always full
assert all(c.passed for c in checks), checks
"""

# What ``api.copy`` does, timing its two phases (printed as JSON): ``none`` copies only,
# ``full`` checks as ``copy`` does today, ``sampled`` records what the target acknowledged
# during the copy (copycheck.acknowledging) and checks against it.
COPY_API = """
import json, sys, time
from pathlib import Path
from vecmigrate import api
from vecmigrate.pipeline import CopyOptions
from vecmigrate.pipeline.copy import copy_collection
from vecmigrate.verify.copycheck import check_copy
src, dst, job, mode = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
opts = CopyOptions(
    workers=2, batch_rows=2000, job_path=job, if_exists="replace", replace_confirmed=True
)
with api.opened(src, read_only=True) as s, api.opened(dst, read_only=False) as d:
    t0 = time.perf_counter()
    if mode == "sampled":
        import inspect
        from vecmigrate.verify.acknowledged import acknowledging
        # As api.copy: exact bits alone where the source keeps no digest to compare with.
        exact = "projections" in inspect.signature(acknowledging).parameters
        kw = {"projections": s.stored_digest("docs") is not None} if exact else {}
        with acknowledging(s, d, fresh=True, **kw) as ack:
            result = copy_collection(s, d, "docs", options=opts)
    else:
        result = copy_collection(s, d, "docs", options=opts)
    t1 = time.perf_counter()
    if mode == "sampled":
        checks = check_copy(s, d, "docs", result, None, acknowledged=ack)
        assert "acknowledged" in checks[-1].detail, checks
    elif mode == "full":
        checks = check_copy(s, d, "docs", result, None)  # what api.copy runs
    else:
        checks = []
    t2 = time.perf_counter()
assert all(c.passed for c in checks), checks
print(json.dumps({"copy": t1 - t0, "check": t2 - t1}))
"""


def load_source(path: Path, rows: int, dim: int, seed: int = 0) -> str:
    """A LanceDB collection ``docs`` of ``rows`` random records (not timed)."""
    from vecmigrate.connectors import connect
    from vecmigrate.model import (
        CollectionSchema,
        IndexSpec,
        MetadataField,
        Metric,
        VectorField,
    )
    from vecmigrate.records import build_batch

    schema = CollectionSchema(
        name="docs",
        # No index on either side (as bench/limits.py): the copy is the records' move.
        vectors=(
            VectorField(name="vector", dim=dim, metric=Metric.L2, index=IndexSpec(kind="none")),
        ),
        has_document=True,
        metadata=(
            MetadataField(name="genre", type="string"),
            MetadataField(name="year", type="int64"),
            MetadataField(name="score", type="float64"),
        ),
    )
    rng = np.random.default_rng(seed)
    uri = f"lancedb://{path}"
    step = 50_000
    with connect(uri, read_only=False) as conn:
        conn.create(schema, "replace")
        conn.begin_bulk_load("docs")
        for start in range(0, rows, step):
            n = min(step, rows - start)
            scale = rng.uniform(0.2, 5.0, size=(n, 1))
            vec = (rng.normal(size=(n, dim)) * scale).astype(np.float32)
            ids = [f"doc-{i:07d}" for i in range(start, start + n)]
            words = rng.integers(0, 50_000, size=(n, 12))
            docs = [" ".join(f"w{w}" for w in row) for row in words]
            meta = [
                {"genre": GENRES[int(g)], "year": int(y), "score": float(s)}
                for g, y, s in zip(
                    rng.integers(0, len(GENRES), n),
                    rng.integers(1990, 2026, n),
                    rng.uniform(0, 100, n).round(3),
                    strict=True,
                )
            ]
            conn.upsert(
                "docs", build_batch(schema, ids, {"vector": vec}, documents=docs, metadata=meta)
            )
        conn.finalize("docs")
    return uri


def timed(cmd: list[str], cwd: Path, baseline: Path | None = None) -> tuple[float, Any]:
    """Wall seconds of one command (which must succeed) and the JSON on its last line of
    output, if any; with ``baseline``, vecmigrate is imported from that source tree instead
    (the code before the change, side by side)."""
    env = dict(os.environ)
    if baseline is not None:
        env["PYTHONPATH"] = str(baseline)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = proc.stdout.strip().splitlines()
    try:
        phases = json.loads(lines[-1]) if lines and cmd[1] == "-c" else None
    except json.JSONDecodeError:
        phases = None
    return seconds, phases


def copy_cmd(src: str, dst: str, job: Path, verify: bool) -> list[str]:
    """``vecmigrate copy`` into a fresh (replaced) target, 2 workers, 2,000-row batches."""
    return [
        VECMIGRATE,
        "copy",
        src,
        dst,
        "-c",
        "docs",
        *(["--verify", "sampled"] if verify else ["--no-verify"]),
        "--json",
        "--workers",
        "2",
        "--batch-rows",
        "2000",
        "--if-exists",
        "replace",
        "--yes",
        "--job",
        str(job),
    ]


def profiled(fn: Any, top: int = 25) -> str:
    """cProfile of ``fn()`` across every thread it starts (one profile per thread,
    merged): top entries by own time, then by cumulative time."""
    profiles: list[cProfile.Profile] = []

    def per_thread(*_: Any) -> None:
        sys.setprofile(None)
        prof = cProfile.Profile()
        profiles.append(prof)
        prof.enable()

    main = cProfile.Profile()
    threading.setprofile(per_thread)
    main.enable()
    try:
        fn()
    finally:
        main.disable()
        threading.setprofile(None)
    buf = io.StringIO()
    stats = pstats.Stats(main, stream=buf)
    for prof in profiles:
        prof.disable()
        stats.add(prof)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def profile_verification(src: str, dst: str, what: str, job: Path) -> str:
    """Profile of the full check (``check_full``), of a copy with the sampled check
    (``copy+sampled``) or of ``verify``."""
    from vecmigrate import api
    from vecmigrate.pipeline import CopyOptions
    from vecmigrate.pipeline.copy import copy_collection
    from vecmigrate.pipeline.options import CopyResult
    from vecmigrate.verify.acknowledged import acknowledging
    from vecmigrate.verify.copycheck import check_copy
    from vecmigrate.verify.run import verify_migration

    if what == "copy+sampled":
        opts = CopyOptions(job_path=job, if_exists="replace", replace_confirmed=True)
        with api.opened(src, read_only=True) as s, api.opened(dst, read_only=False) as d:

            def run() -> None:
                with acknowledging(s, d) as ack:
                    result = copy_collection(s, d, "docs", options=opts)
                check_copy(s, d, "docs", result, None, acknowledged=ack)

            return profiled(run)
    with api.opened(src, read_only=True) as s, api.opened(dst, read_only=True) as d:
        if what == "verify":
            return profiled(lambda: verify_migration(s, d, "docs"))
        n = s.count("docs")
        result = CopyResult(src, dst, "docs", "docs", rows_read=n, rows_written=n, rows_total=n)
        return profiled(lambda: check_copy(s, d, "docs", result, None, mode="full"))


def summary(
    size: str,
    rows: int,
    dim: int,
    runs: dict[str, list[float]],
    phases: dict[str, list[dict[str, float]]],
) -> dict[str, Any]:
    """One result: best and all seconds per step, and what verifying costs over the copy:
    in CLI wall time (the issue's measure) and, in-process, the check phase over the copy
    phase of the Python API's steps (start-up and imports left out)."""
    best = {n: min(v) for n, v in runs.items()}
    copy_phase = min(p["copy"] for p in phases["copy_api"])

    def check_phase(name: str) -> float:
        return min(p["check"] for p in phases[name])

    def added(name: str) -> float:  # the check, plus what recording costs the copy
        return min(p["copy"] + p["check"] for p in phases[name]) - copy_phase

    row: dict[str, Any] = {
        "size": size,
        "rows": rows,
        "dim": dim,
        "rounds": len(runs["copy"]),
        "best_seconds": {n: round(v, 3) for n, v in best.items()},
        "all_seconds": {n: [round(x, 3) for x in v] for n, v in runs.items()},
        "in_process_seconds": {
            n: {k: round(min(p[k] for p in v), 3) for k in ("copy", "check")}
            for n, v in phases.items()
        },
        "cli_wall": {
            # (copy with its check - copy without) / copy without: the 2.4x
            "check_over_copy": round((best["copy+check"] - best["copy"]) / best["copy"], 3),
            "check_alone_over_copy": round(best["check_full"] / best["copy"], 3),
        },
        "in_process": {
            "full_check_over_copy": round(check_phase("copy_api+full") / copy_phase, 3),
            "sampled_check_over_copy": round(added("copy_api+sampled") / copy_phase, 3),
        },
    }
    if "verify" in best:
        row["cli_wall"]["verify_over_copy"] = round(best["verify"] / best["copy"], 3)
    if "copy+check (before)" in best:
        before = row["before"] = {
            "check_over_copy": round(
                (best["copy+check (before)"] - best["copy"]) / best["copy"], 3
            ),
            "check_alone_over_copy": round(best["check_full (before)"] / best["copy"], 3),
            "in_process_full_check_over_copy": round(
                check_phase("copy_api+full (before)") / copy_phase, 3
            ),
        }
        if "verify (before)" in best:
            before["verify_over_copy"] = round(best["verify (before)"] / best["copy"], 3)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile the verification")
    ap.add_argument("--skip-verify-cmd", action="store_true", help="leave out `vecmigrate verify`")
    ap.add_argument("--out", type=Path, help="default bench/results/verify_cost[_TARGET].json")
    ap.add_argument(
        "--baseline-src",
        type=Path,
        help="a src/ tree of the code before the change: its copy+check, check_full and "
        "verify are timed too, in the same rounds (steps named '... (before)')",
    )
    ap.add_argument(
        "--target",
        choices=("lancedb", "pgvector"),
        default="lancedb",
        help="the engine copied into: LanceDB (local, Arrow-native, as fast to write as "
        "to read) or pgvector (an embedded PostgreSQL started for the run: the copy waits "
        "on the server)",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vecmigrate-verify-cost-"))
    work.chmod(0o755)  # PostgreSQL runs as its own user where we are root
    pg = None
    if args.target == "pgvector":
        from tests.engines.postgres import start_postgres

        (work / "pg").mkdir(mode=0o755)
        pg = start_postgres(work / "pg")
    results: list[dict[str, Any]] = []
    try:
        for size in args.sizes:
            rows, dim = SIZES[size]
            src = load_source(work / f"src-{size}", rows, dim)
            dst = pg.uri() if pg is not None else f"lancedb://{work / f'dst-{size}'}"
            job = work / f"job-{size}.sqlite"
            report = work / f"report-{size}"
            runs: dict[str, list[float]] = {}
            phases: dict[str, list[dict[str, float]]] = {}
            steps: dict[str, list[str]] = {
                "copy": copy_cmd(src, dst, job, verify=False),
                "copy+check": copy_cmd(src, dst, job, verify=True),
                "check_full": [PY, "-c", CHECK_FULL, src, dst],
                "copy_api": [PY, "-c", COPY_API, src, dst, str(job), "none"],
                "copy_api+full": [PY, "-c", COPY_API, src, dst, str(job), "full"],
                "copy_api+sampled": [PY, "-c", COPY_API, src, dst, str(job), "sampled"],
            }
            if not args.skip_verify_cmd:
                steps["verify"] = [
                    VECMIGRATE, "verify", src, dst, "-c", "docs", "--json",
                    "--report-dir", str(report),
                ]  # fmt: skip
            if args.baseline_src:
                timed_before = ("copy+check", "check_full", "copy_api+full", "copy_api+sampled")
                for n in (*timed_before, "verify"):
                    if n in steps:
                        steps[f"{n} (before)"] = steps[n]
            names = list(steps)
            timed(steps["copy"], work)  # a target for the first check/verify (and warm caches)
            for r in range(args.rounds):
                # Rotate the order; every step after "copy" reads the target copied last.
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    base = args.baseline_src if name.endswith("(before)") else None
                    seconds, phase = timed(steps[name], work, base)
                    runs.setdefault(name, []).append(seconds)
                    if phase is not None:
                        phases.setdefault(name, []).append(phase)
                print(size, "round", r + 1, {n: round(runs[n][-1], 2) for n in names}, flush=True)
            if runs:  # --rounds 0: profiles only
                results.append(summary(size, rows, dim, runs, phases))
                print(json.dumps(results[-1]), flush=True)
            if args.profile:
                for what in ("check_full", "copy+sampled", "verify"):
                    print(f"--- cProfile of {what} ({size})")
                    print(profile_verification(src, dst, what, job), flush=True)
            shutil.rmtree(work / f"src-{size}", ignore_errors=True)
            shutil.rmtree(work / f"dst-{size}", ignore_errors=True)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    doc = {
        "benchmark": "verify_cost",
        "target": args.target,
        "cpus": os.cpu_count(),
        "note": "best of rounds, side by side in one run, each step in its own process "
        "(interpreter start-up included); *_over_copy: verification time / copy time",
        "results": results,
    }
    suffix = "" if args.target == "lancedb" else f"_{args.target}"
    out = args.out or ROOT / "bench" / "results" / f"verify_cost{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
