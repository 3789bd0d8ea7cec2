"""Benchmark: Milvus bulk insert vs. batched upserts (issue #19), side by side in one run.

A dump of N generated 384-d unit vectors with documents and typed metadata (``scale.py``'s
``generate_dump``, no index: FLAT) is copied into a Milvus 2.3 standalone started for the
run (``tests/engines/milvus.py``) twice per round, into fresh collections, the order
alternating per round: ``vecmigrate.copy`` to ``milvus://...?bulk_dir=...`` (batches staged,
Parquet parts bulk-inserted from ``--threshold`` rows on and at finalize, the collection
loaded and its count awaited until every row is readable)
and to plain ``milvus://...`` (batches of 2,000 upserted). Both with 2 workers, no
verification pass. Reported: best (and every) seconds, rows/s, the speed-up upsert/bulk
(of the best times, and per round), and the bulk side's time from ``finalize`` and from
the first import (parts are imported while the copy stages the rest) to every row
readable.
``--debug`` prints the bulk side's timed breakdown (debug log of ``vecmigrate.milvus.bulk``:
time in staging, each Parquet part's write, each import task's states, the load, the count).
Run: ``.venv/bin/python bench/milvus_bulk.py [--rows 200000] [--rounds 1] [--debug]``.
Last run (2026-12-06, 3 rounds, load average 2.9 on 2 shared cores): bulk 18.2 s (18.2,
18.2, 18.8), upserts 25.2 s (30.3, 49.0, 25.2): 1.39x, per round 1.67, 2.70, 1.34.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from scale import DIM, generate_dump  # noqa: E402
from tests.engines.milvus import MilvusServer, start_milvus_server  # noqa: E402


class _ImportTimes(logging.Handler):
    """Collects the import seconds the connector logs after each bulk insert."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: list[float] = []  # finalize -> every row readable
        self.overlapped: list[float] = []  # first import started -> every row readable

    def emit(self, record: logging.LogRecord) -> None:
        m = re.search(r"([\d.]+) s after finalize, ([\d.]+) s after", record.getMessage())
        if m:
            self.seconds.append(float(m.group(1)))
            self.overlapped.append(float(m.group(2)))


def copy_once(
    server: MilvusServer, dump: Path, work: Path, name: str, bulk_rows: int | None
) -> float:
    """Seconds of one ``vecmigrate.copy`` of the dump into a new collection ``name``, with
    bulk insert from ``bulk_rows`` rows (None: without ``bulk_dir``, upserts)."""
    import vecmigrate as vm
    from vecmigrate.connectors import connect
    from vecmigrate.pipeline.options import CopyOptions

    target = server.uri
    if bulk_rows is not None:
        target += f"?bulk_dir={work / 'bulk'}&bulk_insert_rows={bulk_rows}"
    options = CopyOptions(workers=2, batch_rows=2000, job_path=work / f"{name}.job")
    started = time.perf_counter()
    vm.copy(f"dump://{dump}", target, "docs", target_collection=name, options=options, verify=False)
    seconds = time.perf_counter() - started
    with connect(server.uri) as conn:
        rows = conn.count(name)
        conn.drop(name)  # frees the server's memory for the next copy
    expected = int(json.loads((dump / "manifest.json").read_text())["collections"]["docs"]["rows"])
    if rows != expected:
        raise SystemExit(f"{name}: {rows} rows in Milvus, {expected} in the dump")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threshold", type=int, default=100_000, help="bulk_insert_rows")
    ap.add_argument(
        "--debug", action="store_true", help="print the bulk side's timed debug log (breakdown)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "milvus_bulk.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vecmigrate-bench-milvus-"))
    work.chmod(0o755)
    times = _ImportTimes()
    logging.getLogger("vecmigrate.milvus.bulk").addHandler(times)
    logging.getLogger("vecmigrate.milvus.bulk").setLevel(logging.INFO)
    if args.debug:
        shown = logging.StreamHandler()
        shown.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logging.getLogger("vecmigrate.milvus.bulk").addHandler(shown)
        logging.getLogger("vecmigrate.milvus.bulk").setLevel(logging.DEBUG)
    server = None
    try:
        t0 = time.perf_counter()
        generate_dump(work / "dump", args.rows)
        print(f"dump of {args.rows:,} x {DIM}-d generated in {time.perf_counter() - t0:.0f} s")
        server = start_milvus_server(work)
        load = os.getloadavg()[0]
        best: dict[str, float] = {}
        every: dict[str, list[float]] = {}
        for r in range(args.rounds):
            order = [True, False] if r % 2 == 0 else [False, True]
            for bulk in order:
                method = "bulk_insert" if bulk else "upsert"
                imports = len(times.seconds)
                seconds = copy_once(
                    server, work / "dump", work, f"{method}_{r}", args.threshold if bulk else None
                )
                if bulk and args.rows >= args.threshold and len(times.seconds) == imports:
                    raise SystemExit("the bulk side did not bulk insert")
                print(f"round {r + 1} {method}: {seconds:.1f} s, {args.rows / seconds:,.0f} rows/s")
                best[method] = min(best.get(method, seconds), seconds)
                every.setdefault(method, []).append(round(seconds, 2))
        result: dict[str, Any] = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "milvus": server.version,
            "rows": args.rows,
            "dim": DIM,
            "rounds": args.rounds,
            "workers": 2,
            "bulk_insert_rows": args.threshold,
            "batch_rows": 2000,
            "load_average_at_start": round(load, 2),
            "cpus": os.cpu_count(),
            "methods": {
                m: {"seconds": round(s, 2), "rows_per_s": round(args.rows / s), "every": every[m]}
                for m, s in best.items()
            },
            "speedup_bulk_over_upsert": round(best["upsert"] / best["bulk_insert"], 2),
            "speedup_per_round": [
                round(u / b, 2) for u, b in zip(every["upsert"], every["bulk_insert"], strict=True)
            ],
            "bulk_seconds_after_finalize": [round(s, 2) for s in times.seconds],
            "bulk_seconds_after_first_import": [round(s, 2) for s in times.overlapped],
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
