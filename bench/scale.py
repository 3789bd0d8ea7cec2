"""Benchmark: flat memory at scale. Generated N x 384 float32 vectors with documents and
metadata in a vecmigrate dump, copied dump -> lancedb, dump -> pgvector and (``--targets
milvus_lite``) dump -> milvus-lite by ``vecmigrate copy`` and by a raw-client script
(``raw_copy.py``) side by side in one run. Milvus Lite's server is a child process: its
memory is in the process tree's peak.

No index is built on either side (an HNSW build over 1M vectors would dominate and is
the engine's cost, not the mover's); what is measured is the data movement: wall time,
rows/s, the ratio vecmigrate/raw and peak RSS of each process tree, for each N, so that
memory can be seen not to grow with the row count.
Run: ``.venv/bin/python bench/scale.py --rows 100000 1000000``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from copy_vs_raw import PY, _dsn, _uri, measure_peaks, result_row, vecmigrate_copy  # noqa: E402

DIM = 384
GENRES = ["news", "art", "science", "sport", "tech"]


def generate_dump(path: Path, rows: int, seed: int = 7) -> None:
    """A dump of ``rows`` unit vectors with documents and typed metadata, 10k per part."""
    from vecmigrate.connectors import connect
    from vecmigrate.model import CollectionSchema, IndexSpec, MetadataField, VectorField
    from vecmigrate.records import build_batch

    schema = CollectionSchema(
        name="docs",
        vectors=(VectorField(dim=DIM, index=IndexSpec(kind="none")),),
        has_document=True,
        metadata=(
            MetadataField(name="genre", type="string"),
            MetadataField(name="year", type="int64"),
            MetadataField(name="score", type="float64"),
            MetadataField(name="tags", type="list<string>"),
        ),
    )
    rng = np.random.default_rng(seed)
    conn = connect(f"dump://{path}")
    conn.create(schema)
    step = 10_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        vecs = rng.standard_normal((n, DIM), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        idx = range(start, start + n)
        batch = build_batch(
            schema,
            [f"rec-{i:08d}" for i in idx],
            {"vector": vecs},
            documents=[f"document number {i} about {GENRES[i % 5]}" for i in idx],
            metadata=[
                {
                    "genre": GENRES[i % 5],
                    "year": 1990 + i % 35,
                    "score": (i % 1000) / 10,
                    "tags": [f"t{i % 7}", f"u{i % 3}"],
                }
                for i in idx
            ],
        )
        conn.upsert("docs", batch)
    conn.finalize("docs")
    conn.close()


def side_rows(pair: str, rows: int, sides: dict[str, tuple[float, float, float]]) -> Any:
    """One result: both sides with their ratio, or the one side run; with each side's
    own process peak beside its process tree's."""
    if len(sides) == 2:
        row = result_row(pair, rows, sides["vecmigrate"][:2], sides["raw"][:2])
    else:
        ((side, (seconds, tree, _)),) = sides.items()
        row = {"pair": pair, "rows": rows, f"{side}_rows_per_s": round(rows / seconds)}
        row[f"{side}_peak_rss_mib"] = round(tree)
    for side, (_, _, own) in sides.items():
        row[f"{side}_own_process_peak_rss_mib"] = round(own)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument(
        "--targets",
        nargs="+",
        choices=["lancedb", "pgvector", "milvus_lite"],
        default=["lancedb", "pgvector"],
    )
    ap.add_argument(
        "--sides",
        nargs="+",
        choices=["vecmigrate", "raw"],
        default=["vecmigrate", "raw"],
        help="vecmigrate alone: its memory at a size the raw script is not needed for",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = ap.parse_args()
    from tests.engines.postgres import start_postgres

    work = Path(tempfile.mkdtemp(prefix="vecmigrate-scale-"))
    work.chmod(0o755)
    (work / "pg").mkdir(mode=0o755)
    pg = start_postgres(work / "pg")
    results = []
    try:
        import psycopg

        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE target")
        with psycopg.connect(_dsn(pg, "target"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
        for rows in args.rows:
            dump = work / f"dump-{rows}"
            t0 = time.perf_counter()
            generate_dump(dump, rows)
            print(f"generated {rows:,} rows in {time.perf_counter() - t0:.0f}s", flush=True)
            for target in args.targets:
                sides = {}
                for side in args.sides:
                    tag = f"{target}-{rows}-{side}"
                    if target == "lancedb":
                        raw_t, vm_t = str(work / tag), f"lancedb://{work / tag}"
                    elif target == "milvus_lite":
                        (work / tag).mkdir()
                        raw_t = str(work / tag / "milvus.db")
                        vm_t = f"milvus-lite://{raw_t}"
                    else:  # both sides drop and recreate table "docs"
                        raw_t, vm_t = _dsn(pg, "target"), _uri(pg, "target")
                    if side == "raw":
                        cmd = [
                            PY,
                            str(ROOT / "bench" / "raw_copy.py"),
                            f"dump-{target}",
                            str(dump / "docs"),
                            raw_t,
                        ]
                    else:
                        cmd = vecmigrate_copy(f"dump://{dump}", vm_t, work / f"{tag}.sqlite")
                    seconds, rss, own, out = measure_peaks(cmd)
                    moved = json.loads(out)["rows" if side == "raw" else "rows_written"]
                    assert moved == rows, f"{tag} moved {moved} rows"
                    sides[side] = (seconds, rss, own)
                    print(
                        f"  {tag}: {seconds:.1f}s, {rows / seconds:,.0f} rows/s, "
                        f"peak RSS {rss:.0f} MiB (own process {own:.0f})",
                        flush=True,
                    )
                    shutil.rmtree(work / tag, ignore_errors=True)
                results.append(side_rows(f"dump-{target}", rows, sides))
            shutil.rmtree(dump, ignore_errors=True)
        out_file = args.out.resolve()
        out_file.write_text(
            json.dumps(
                {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "results": results}, indent=2
            )
        )
        for r in results:
            print(r)
        print(f"written to {out_file}")
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
