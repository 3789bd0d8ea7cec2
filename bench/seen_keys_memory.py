"""Benchmark: memory of ``SeenKeys`` (Milvus Lite loads tell an id's first copy from a
repeat with it) at 1M and 10M random 64-bit keys, 2,000 per batch as a copy sends them,
each size in a fresh process: the peak RSS added (the kernel's high-water mark, so no
short spike is missed) and the share of new keys taken for repeats.

``--baseline-src DIR`` runs the same against ``DIR/vecmigrate/idkeys.py`` (the code before
a change), side by side. Run: ``.venv/bin/python bench/seen_keys_memory.py`` (results:
``bench/results/seen_keys_memory.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1_000_000, 10_000_000)

ONE = """
import importlib.util, json, resource, sys
import numpy as np
path, n = sys.argv[1], int(sys.argv[2])
spec = importlib.util.spec_from_file_location("idkeys_under_test", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
seen, rng, taken = mod.SeenKeys(), np.random.default_rng(0), 0
for _ in range(n // 2000):
    taken += int((~seen.first_seen(rng.integers(0, 2**63, 2000, dtype=np.uint64))).sum())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"added_peak_mib": round((peak - before) / 1024), "new_taken_as_seen": taken / n}))
"""


def measure(idkeys: Path, n: int) -> dict[str, Any]:
    """One size in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", ONE, str(idkeys), str(n)],
        capture_output=True, text=True, check=True, env=dict(os.environ),
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--baseline-src", type=Path, help="a src/ tree of the code before")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/seen_keys_memory.json")
    args = ap.parse_args()
    sides = {"current": ROOT / "src/vecmigrate/idkeys.py"}
    if args.baseline_src:
        sides["before"] = args.baseline_src / "vecmigrate/idkeys.py"
    results = []
    for n in SIZES:
        for side, path in sides.items():
            row = {"keys": n, "code": side, **measure(path, n)}
            print(row, flush=True)
            results.append(row)
    doc = {"benchmark": "seen_keys_memory", "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.write_text(json.dumps({**doc, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
