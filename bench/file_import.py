"""Benchmark: embeddings in a Parquet file another tool wrote, imported into LanceDB and
pgvector with flat memory (issue #19: "a 1M-row Parquet file imports into LanceDB and
pgvector with flat memory").

The file is what an application writes: ``doc_id`` (string), ``emb`` (list<float32> of
384 unnormalised Gaussian values), ``text`` and two scalar columns (``topic`` string,
``year`` int64), written by pyarrow's default ``ParquetWriter`` (row groups of up to
1,048,576 rows: a 1M-row file is one row group, the hard case for a streaming reader)
and, for comparison, with 50,000-row row groups. Generated under /tmp, never committed.

For each row count (``--rows``, default 100,000 and 1,000,000) and layout, in a fresh
process: ``vecmigrate import parquet:///file?id_field=doc_id&vector_field=emb&\
document_field=text TARGET --map map.yaml --no-verify`` (the map states the metric, which
the file cannot) into a fresh LanceDB folder and a pgvector table (a PostgreSQL started
for the run, ``tests/engines/postgres.py``); peak RSS of the process tree sampled every
20 ms, and rows/s. Memory is flat when the 1M-row peak is within 10 % of the 100k-row one.
Run: ``.venv/bin/python bench/file_import.py [--rows 100000 1000000]`` (~10 min on 2 cores).
Writes ``results/file_import.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from limits import VECMIGRATE, measure  # noqa: E402

DIM = 384
TOPICS = ["news", "art", "science", "sport", "tech"]
LAYOUTS = (("one row group (pyarrow default)", None), ("50k-row groups", 50_000))


def write_file(path: Path, rows: int, row_group_rows: int | None, seed: int = 11) -> None:
    """``rows`` records as an application's Parquet file, written 50,000 rows at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    schema = pa.schema(
        [
            ("doc_id", pa.string()),
            ("emb", pa.list_(pa.float32())),
            ("text", pa.string()),
            ("topic", pa.string()),
            ("year", pa.int64()),
        ]
    )
    chunks = []
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 50_000):
            n = min(50_000, rows - start)
            idx = range(start, start + n)
            flat = pa.array(rng.standard_normal(n * DIM, dtype=np.float32))
            offsets = pa.array(np.arange(0, (n + 1) * DIM, DIM, dtype=np.int32))
            table = pa.table(
                {
                    "doc_id": [f"doc-{i:08d}" for i in idx],
                    "emb": pa.ListArray.from_arrays(offsets, flat),
                    "text": [f"text of document {i} about {TOPICS[i % 5]}" for i in idx],
                    "topic": [TOPICS[i % 5] for i in idx],
                    "year": [1990 + i % 35 for i in idx],
                },
                schema=schema,
            )
            if row_group_rows is None:  # one write_table call: one row group up to 1Mi rows
                chunks.append(table)
            else:
                writer.write_table(table, row_group_size=row_group_rows)
        if chunks:
            writer.write_table(pa.concat_tables(chunks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "file_import.json")
    args = ap.parse_args()
    import pyarrow.parquet as pq
    from tests.engines.postgres import start_postgres

    work = Path(tempfile.mkdtemp(prefix="vecmigrate-fileimport-"))
    work.chmod(0o755)
    (work / "pg").mkdir(mode=0o755)
    pg = start_postgres(work / "pg")
    # the file records no metric: the application's is stated, as a user must
    mapping = work / "map.yaml"
    mapping.write_text("vectors:\n  emb:\n    metric: l2\n")
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    try:
        for rows in args.rows:
            for layout, group in (
                ("one row group (pyarrow default)", None),
                ("50k-row groups", 50_000),
            ):
                path = work / f"emb-{rows}-{group or 'default'}.parquet"
                t0 = time.perf_counter()
                write_file(path, rows, group)
                meta = pq.ParquetFile(path).metadata
                mib, took = path.stat().st_size / 2**20, time.perf_counter() - t0
                print(f"{rows:,} rows, {meta.num_row_groups} row group(s), {mib:.0f} MiB, "
                      f"written in {took:.0f}s", flush=True)  # fmt: skip
                src = f"parquet://{path}?id_field=doc_id&vector_field=emb&document_field=text"
                for target in ("lancedb", "pgvector"):
                    name = f"emb{rows}{'d' if group is None else 'g'}"
                    if target == "lancedb":
                        dst = f"lancedb://{work / 'lance'}"
                    else:
                        dst = f"pgvector://postgres@{pg.host}:{pg.port}/postgres"
                    job = work / f"{name}-{target}.sqlite"
                    cmd = [VECMIGRATE, "import", src, dst, "--target-collection", name]
                    cmd += ["--map", str(mapping), "--no-verify", "--json", "--job", str(job)]
                    wall, rss, out = measure(cmd)
                    got = json.loads(out)
                    moved = got.get("rows", got.get("rows_written"))
                    assert moved == rows, f"{target}: {moved} rows imported, not {rows}"
                    print(f"  -> {target}: {wall:.1f}s, peak {rss:.0f} MiB", flush=True)
                    results.append(
                        {
                            "rows": rows,
                            "file": layout,
                            "row_groups": meta.num_row_groups,
                            "target": target,
                            "rows_per_s": round(rows / wall),
                            "peak_rss_mib": round(rss),
                        }
                    )
                path.unlink()
                shutil.rmtree(work / "lance", ignore_errors=True)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    flat: dict[str, Any] = {}
    small, large = min(args.rows), max(args.rows)
    for r in results:
        if r["rows"] == large:
            base = next(
                x for x in results
                if x["rows"] == small and x["file"] == r["file"] and x["target"] == r["target"]
            )  # fmt: skip
            flat[f"{r['target']}, {r['file']}"] = round(r["peak_rss_mib"] / base["peak_rss_mib"], 3)
    doc = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "dim": DIM,
        "note": "vecmigrate import parquet -> target --no-verify, wall time with start-up; "
        "peak RSS of the process tree",
        "results": results,
        f"peak_rss_{large}_over_{small}": flat,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print("\n| rows | file | target | rows/s | peak RSS MiB |\n|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['rows']:,} | {r['file']} | {r['target']} | {r['rows_per_s']:,} | "
            f"{r['peak_rss_mib']} |"
        )
    print(json.dumps(flat, indent=2))


if __name__ == "__main__":
    main()
