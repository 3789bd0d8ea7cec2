"""Benchmark: what a sync round costs with no change and with 1% of the records changed.

pgvector source (a PostgreSQL + pgvector server started here, as the tests do) -> LanceDB
target, N records of dim D. After a copy (the backfill), it times:

* generic mode: 0 changes, then 1% changes (half updates, a quarter inserts, a quarter
  deletes) - each round's diff + apply, and the parity check separately;
* change-feed mode (after --install-capture and the first run): 0 changes, then 1% changes.

Run: ``.venv/bin/python bench/sync.py [--rows 100000] [--dim 64]``. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.engines.postgres import start_postgres  # noqa: E402

from vecmigrate.connectors import Connector, connect  # noqa: E402
from vecmigrate.model import CollectionSchema, IdType, MetadataField, VectorField  # noqa: E402
from vecmigrate.pipeline import CopyOptions, copy_collection  # noqa: E402
from vecmigrate.pipeline.sync import SyncOptions, sync_collection  # noqa: E402
from vecmigrate.records import build_batch  # noqa: E402


def _batch(schema: CollectionSchema, ids: list[int], seed: int) -> Any:
    rng = np.random.default_rng(seed)
    return build_batch(
        schema,
        ids,
        {"vector": rng.normal(size=(len(ids), schema.vector.dim)).astype(np.float32)},
        documents=[f"document {i} {seed}" for i in ids],
        metadata=[{"genre": f"g{i % 7}", "year": 1990 + i % 30} for i in ids],
    )


def _change(src: Connector, schema: CollectionSchema, n: int, fraction: float, seed: int) -> int:
    """Update half, insert a quarter, delete a quarter of ``fraction * n`` records."""
    k = max(4, int(n * fraction))
    rng = np.random.default_rng(seed)
    picked = rng.choice(n, size=k // 2 + k // 4, replace=False).tolist()
    updates, deletes = picked[: k // 2], picked[k // 2 :]
    inserts = list(range(10 * n + seed * k, 10 * n + seed * k + k // 4))
    src.upsert(schema.name, _batch(schema, updates, seed))
    src.upsert(schema.name, _batch(schema, inserts, seed))
    src.delete(schema.name, deletes)
    return len(updates) + len(inserts) + len(deletes)


def _round(src: Connector, dst: Connector, name: str, opts: SyncOptions) -> dict[str, Any]:
    t = time.perf_counter()
    r = sync_collection(src, dst, name, options=opts)
    return {
        "seconds": round(time.perf_counter() - t, 3),
        "mode": r.mode,
        "upserted": r.upserted,
        "deleted": r.deleted,
        "rows_scanned": r.rows_scanned,
        "dirty_buckets": f"{r.dirty_buckets}/{r.buckets}",
        "changes_read": r.changes_read,
        "ok": r.ok,
    }


def _parity_seconds(src: Connector, dst: Connector, name: str, opts: SyncOptions) -> float:
    # A round with nothing to do in changes mode is all parity check.
    t = time.perf_counter()
    r = sync_collection(src, dst, name, options=opts)
    assert r.parity and r.parity["equal"], r.parity
    return round(time.perf_counter() - t, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=64)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vecmigrate-bench-sync-"))
    work.chmod(0o755)
    server = start_postgres(work / "pg")
    try:
        schema = CollectionSchema(
            name="bench_sync",
            id_type=IdType.INT,
            vectors=(VectorField(dim=args.dim),),
            has_document=True,
            metadata=(
                MetadataField(name="genre", type="string"),
                MetadataField(name="year", type="int64"),
            ),
        )
        name, n = schema.name, args.rows
        out: dict[str, Any] = {
            "rows": n,
            "dim": args.dim,
            "source": "pgvector",
            "target": "lancedb",
        }
        with connect(server.uri()) as src, connect(f"lancedb://{work / 'lance'}") as dst:
            src.create(schema, if_exists="replace")
            for start in range(0, n, 10_000):
                src.upsert(name, _batch(schema, list(range(start, min(n, start + 10_000))), 0))
            t = time.perf_counter()
            copy_collection(src, dst, name, options=CopyOptions(job_path=work / "copy.sqlite"))
            out["copy_seconds"] = round(time.perf_counter() - t, 3)
            plain = SyncOptions(mode="generic", state_path=work / "g.sqlite", verify=False)
            out["generic_0_changes"] = _round(src, dst, name, plain)
            out["generic_1pct"] = {"changed": _change(src, schema, n, 0.01, 1)}
            out["generic_1pct"].update(_round(src, dst, name, plain))
            checked = SyncOptions(mode="generic", state_path=work / "g.sqlite")
            t = time.perf_counter()
            assert sync_collection(src, dst, name, options=checked).ok
            out["generic_0_changes_with_parity_seconds"] = round(time.perf_counter() - t, 3)

            src.install_change_capture(name)  # type: ignore[attr-defined]
            feed = SyncOptions(state_path=work / "f.sqlite", verify=False, prune=True)
            out["changes_first_run"] = _round(src, dst, name, feed)  # includes a generic pass
            out["changes_0_changes"] = _round(src, dst, name, feed)
            out["changes_1pct"] = {"changed": _change(src, schema, n, 0.01, 2)}
            out["changes_1pct"].update(_round(src, dst, name, feed))
            verified = SyncOptions(state_path=work / "f.sqlite")
            out["parity_check_seconds"] = _parity_seconds(src, dst, name, verified)
        # Other work on the machine inflates every figure alike; say how busy it was.
        out["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
        out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(out, indent=2))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
