"""Benchmark: the latency ``vecmigrate proxy`` adds in front of a Chroma server.

A ``chroma run`` server holds 600 real 384-d MiniLM records (cosine, with documents and
metadata; ``tests/data/minilm-600.parquet``). The same unmodified ``chromadb.HttpClient``
calls it directly and through ``vecmigrate proxy --dialect chroma`` (its own process,
``chroma+http`` source, SQLite state), one call at a time, alternating direct and proxied
calls so that both see the same machine noise:

* ``query``: one query vector, ``n_results=10``, default include (documents, metadatas,
  distances);
* ``upsert``: one record (an existing id, a new vector, document and metadata);
* ``heartbeat``: ``GET /api/v2/heartbeat``, which the proxy answers itself: the cost of
  the proxy's HTTP server alone, without engine calls.

Phases: source-only, then dual-write (after ``vecmigrate copy`` to a LanceDB target and
``vecmigrate cutover advance``: every write also goes to the target through the outbox).
p50/p99 are per call, in milliseconds; throughput is sequential calls per second.

``--baseline DIR`` also starts a second proxy running the ``vecmigrate`` package under
``DIR/src`` (an earlier version: ``git archive <commit> src | tar -x -C DIR``) with the same
state store, measured in the same rotation (direct, proxy, baseline), so that a before/after
comparison sees the same machine load.

Run: ``.venv/bin/python bench/proxy.py [--calls 500] [--baseline DIR [--baseline-label
TEXT]]``. Writes ``results/proxy.json`` (with the 1-minute load average before, after and
sampled every 5 s during the run: the machine may be shared) and prints the table.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.engines.chroma import start_chroma_server  # noqa: E402
from tests.engines.common import free_port, stop_group, wait_until  # noqa: E402

VECMIGRATE = str(Path(sys.executable).parent / "vecmigrate")
DATA = ROOT / "tests" / "data" / "minilm-600.parquet"
NAME = "bench"


def _ms(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "per_s": round(1000 / float(a.mean()), 1),
    }


def _cli(*args: str, cwd: Path) -> dict[str, Any]:
    ran = subprocess.run(
        [VECMIGRATE, *args, "--json"], cwd=cwd, capture_output=True, text=True, check=False
    )
    if ran.returncode != 0:
        raise SystemExit(f"vecmigrate {' '.join(args)}: {ran.stdout}\n{ran.stderr}")
    out: dict[str, Any] = json.loads(ran.stdout)
    return out


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _phase_version(port: int) -> int:
    r = httpx.get(f"http://127.0.0.1:{port}/vecmigrate/status", timeout=10).json()
    return int(r["collections"][NAME]["version"])


def measure(
    calls: int, sides: dict[str, Any], vectors: np.ndarray, rows: dict[str, Any]
) -> dict[str, dict[str, dict[str, float]]]:
    """Calls rotating over ``sides`` (``direct`` first); per operation and side: p50, p99,
    calls/s, and per side other than ``direct`` what it adds over it (``added``,
    ``added_by_<side>``)."""
    rng = np.random.default_rng(0)
    n = len(rows["ids"])

    def query(col: Any) -> None:
        q = vectors[rng.integers(n)] + 0.01 * rng.normal(size=vectors.shape[1])
        col.query(query_embeddings=[q], n_results=10)

    def upsert(col: Any) -> None:
        i = int(rng.integers(n))
        col.upsert(
            ids=[rows["ids"][i]],
            embeddings=[vectors[i] + 0.01 * rng.normal(size=vectors.shape[1])],
            documents=[rows["docs"][i]],
            metadatas=[{**rows["metas"][i], "words": int(rng.integers(1000))}],
        )

    def heartbeat(col: Any) -> None:  # answered by the proxy itself: its own overhead
        col._client.heartbeat()

    out: dict[str, dict[str, dict[str, float]]] = {}
    ops: dict[str, Callable[[Any], None]] = {"heartbeat": heartbeat, "query": query,
                                             "upsert": upsert}  # fmt: skip
    for op, fn in ops.items():
        times: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(20):  # warm-up: connections, caches, the proxy's code paths
            for col in sides.values():
                fn(col)
        for _ in range(calls):
            for side, col in sides.items():
                t = time.perf_counter()
                fn(col)
                times[side].append(time.perf_counter() - t)
        stats = {side: _ms(t) for side, t in times.items()}
        d = stats["direct"]
        for side in sides:
            if side != "direct":
                name = "added" if side == "proxy" else f"added_by_{side}"
                stats[name] = {k: round(stats[side][k] - d[k], 3) for k in ("p50_ms", "p99_ms")}
        out[op] = stats
    return out


def _start_proxy(
    port: int, src: str, dst: str, state: str, log: Path, pythonpath: Path | None
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    with log.open("wb") as out:
        return subprocess.Popen(
            [VECMIGRATE, "proxy", "--dialect", "chroma", "--listen", f"127.0.0.1:{port}",
             "--source", src, "--target", dst, "--state", state, "--collection", NAME,
             "--state-ttl", "1"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=500, help="measured calls per operation")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "proxy.json")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="also measure a proxy running the vecmigrate under DIR/src (an earlier version)",
    )
    ap.add_argument("--baseline-label", help="what the baseline is, for the results (default: DIR)")
    opts = ap.parse_args()
    if opts.baseline is not None and not (opts.baseline / "src" / "vecmigrate").is_dir():
        raise SystemExit(f"--baseline {opts.baseline}: no src/vecmigrate there")
    import chromadb

    t = pq.read_table(DATA)
    vectors = t.column("vector").combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1)
    rows = {
        "ids": t.column("id").to_pylist(),
        "docs": t.column("document").to_pylist(),
        "metas": t.column("metadata").to_pylist(),
    }
    results: dict[str, Any] = {}
    load_before = os.getloadavg()[0]
    loads: list[float] = []  # the 1-minute load average every 5 s while measuring
    stop = threading.Event()

    def sample_load() -> None:
        while not stop.wait(5):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample_load, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="vm-bench-proxy-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "chroma").mkdir()
        server = start_chroma_server(tmp / "chroma")
        proxies: list[subprocess.Popen[bytes]] = []
        try:
            c = chromadb.HttpClient(host=server.host, port=server.port)
            col = c.create_collection(
                NAME, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
            )
            col.add(ids=rows["ids"], embeddings=vectors, documents=rows["docs"],
                    metadatas=rows["metas"])  # fmt: skip
            src, dst = server.uri, f"lancedb://{tmp / 'target'}"
            state = f"sqlite://{tmp}/state.db"
            ports = {"proxy": free_port()}
            if opts.baseline is not None:
                ports["baseline"] = free_port()
            sides: dict[str, Any] = {"direct": c.get_collection(NAME, embedding_function=None)}
            for side, port in ports.items():
                log = tmp / f"{side}.log"
                code = opts.baseline / "src" if side == "baseline" else None
                proxies.append(_start_proxy(port, src, dst, state, log, code))
                wait_until(functools.partial(_ready, port), 60, f"vecmigrate proxy ({side})", log)
                sides[side] = chromadb.HttpClient(host="127.0.0.1", port=port).get_collection(
                    NAME, embedding_function=None
                )
            results["source-only"] = measure(opts.calls, sides, vectors, rows)
            _cli("copy", src, dst, "-c", NAME, cwd=tmp)
            ran = _cli("cutover", "advance", "--state", state, "-c", NAME, src, dst, cwd=tmp)
            version = int(ran["event"]["version"])
            deadline = time.monotonic() + 30
            while any(_phase_version(port) != version for port in ports.values()):
                if time.monotonic() > deadline:
                    raise SystemExit("a proxy did not take the dual-write phase")
                time.sleep(0.1)
            results["dual-write"] = measure(opts.calls, sides, vectors, rows)
        finally:
            stop.set()
            for proxy in proxies:
                stop_group(proxy, grace=30)
            server.stop()
    doc = {
        "bench": "proxy",
        "records": t.num_rows,
        "dim": int(vectors.shape[1]),
        "calls_per_op": opts.calls,
        "client": f"chromadb {chromadb.__version__} HttpClient",
        "baseline": (opts.baseline_label or str(opts.baseline)) if opts.baseline else None,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # other work on the machine: the 1-minute load average before and after
            "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "load_avg_1m_during": {
                "min": round(min(loads, default=load_before), 2),
                "mean": round(float(np.mean(loads)) if loads else load_before, 2),
                "max": round(max(loads, default=load_before), 2),
            },
        },
        "results": results,
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{'phase':<12} {'op':<10} {'side':<9} {'p50/p99 ms':>17} {'added p50/p99 ms':>18} "
          f"{'calls/s':>8}")  # fmt: skip
    for ph, ops in results.items():
        for op, r in ops.items():
            for side in ("direct", "proxy", "baseline"):
                if side not in r:
                    continue
                s = r[side]
                a = r.get("added" if side == "proxy" else f"added_by_{side}")
                added = f"{a['p50_ms']:>8.2f} /{a['p99_ms']:>7.2f}" if a else " " * 17
                print(
                    f"{ph:<12} {op:<10} {side:<9} {s['p50_ms']:>8.2f} /{s['p99_ms']:>7.2f}  "
                    f"{added} {s['per_s']:>8.0f}"
                )


if __name__ == "__main__":
    main()
