"""Benchmark: ``vecmigrate copy`` vs. a minimal raw-client script, side by side in one run.

For each pair the source is loaded once (not timed) with N real MiniLM embeddings of
stdlib/library docstrings plus metadata; then each side copies it into a fresh target in
its own process, alternating which goes first, ROUNDS times. Reported: best wall time,
rows/s, the ratio vecmigrate/raw (1.0 = as fast as the raw client) and peak RSS.
Run: ``make bench`` or ``.venv/bin/python bench/copy_vs_raw.py --rows 30000``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from corpus import cached_embeddings, metadata_for  # noqa: E402

PAIRS = ("chroma-lancedb", "chroma-pgvector", "pgvector-lancedb")
PY = sys.executable
VECMIGRATE = str(Path(PY).parent / "vecmigrate")


def measure(cmd: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB of the process tree, stdout) of one command."""
    seconds, tree, _, out = measure_peaks(cmd)
    return seconds, tree, out


def measure_peaks(cmd: list[str]) -> tuple[float, float, float, str]:
    """(seconds, peak RSS in MiB of the process tree, of the command's own process,
    stdout) of one command: an engine run as a child (Milvus Lite's server) counts in
    the tree, not in the command's own peak."""
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = own = 0
    while proc.poll() is None:
        try:
            mine = proc.memory_info().rss
            kids = sum(p.memory_info().rss for p in proc.children(recursive=True))
            peak, own = max(peak, mine + kids), max(own, mine)
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd)} failed after {seconds:.0f}s (peak RSS tree {peak / 2**20:.0f} "
            f"MiB, own {own / 2**20:.0f} MiB):\n{err[-3000:]}"
        )
    return seconds, peak / 2**20, own / 2**20, out


def vecmigrate_copy(source: str, target: str, job: Path) -> list[str]:
    """The ``vecmigrate copy`` both benchmarks time: no verification pass, 2 workers."""
    return [
        VECMIGRATE,
        "copy",
        source,
        target,
        "-c",
        "docs",
        "--no-verify",
        "--json",
        "--batch-rows",
        "2000",
        "--workers",
        "2",
        "--if-exists",
        "replace",
        "--yes",
        "--job",
        str(job),
    ]


def result_row(
    pair: str, rows: int, vecmigrate: tuple[float, float], raw: tuple[float, float]
) -> dict[str, Any]:
    """One result: rows/s of each side from (seconds, peak RSS MiB), and their ratio."""
    (vm_s, vm_rss), (raw_s, raw_rss) = vecmigrate, raw
    return {
        "pair": pair,
        "rows": rows,
        "vecmigrate_rows_per_s": round(rows / vm_s),
        "raw_rows_per_s": round(rows / raw_s),
        "ratio": round(raw_s / vm_s, 3),
        "vecmigrate_peak_rss_mib": round(vm_rss),
        "raw_peak_rss_mib": round(raw_rss),
    }


def load_sources(n: int, work: Path, pg: Any) -> dict[str, str]:
    """Chroma and pgvector sources with the same records, written with the raw clients."""
    import chromadb
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg.types.json import Jsonb

    items, vectors = cached_embeddings(n)
    ids = [f"doc-{i:06d}" for i in range(n)]
    metas = [metadata_for(i, *items[i]) for i in range(n)]
    docs = [t for _, t in items]
    col = chromadb.PersistentClient(path=str(work / "chroma")).create_collection(
        "docs", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    for s in range(0, n, 5000):
        col.add(
            ids=ids[s : s + 5000],
            embeddings=vectors[s : s + 5000],
            documents=docs[s : s + 5000],
            metadatas=metas[s : s + 5000],
        )  # type: ignore[arg-type]
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE source")
        conn.execute("CREATE DATABASE target")
    for db in ("source", "target"):
        with psycopg.connect(_dsn(pg, db), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
    with psycopg.connect(_dsn(pg, "source")) as conn:
        register_vector(conn)
        conn.execute(
            "CREATE TABLE docs (id text PRIMARY KEY, document text, vector vector(384), "
            "metadata jsonb)"
        )
        with conn.cursor() as cur, cur.copy("COPY docs FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "vector", "jsonb"])
            for row in zip(ids, docs, vectors, metas, strict=True):
                copy.write_row((row[0], row[1], row[2], Jsonb(row[3])))
        conn.execute("CREATE INDEX ON docs USING hnsw (vector vector_cosine_ops)")
    return {"chroma": str(work / "chroma"), "pgvector": _dsn(pg, "source")}


def _dsn(pg: Any, db: str) -> str:
    return f"postgresql://postgres@{pg.host}:{pg.port}/{db}"


def _uri(pg: Any, db: str) -> str:
    return f"pgvector://postgres@{pg.host}:{pg.port}/{db}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pairs", nargs="+", choices=PAIRS, default=list(PAIRS))
    args = ap.parse_args()
    from tests.engines.postgres import start_postgres

    work = Path(tempfile.mkdtemp(prefix="vecmigrate-bench-"))
    work.chmod(0o755)
    (work / "pg").mkdir(mode=0o755)
    pg = start_postgres(work / "pg")
    try:
        sources = load_sources(args.rows, work, pg)
        results = []
        for pair in args.pairs:
            src, dst = pair.split("-")
            best: dict[str, tuple[float, float]] = {}
            for r in range(args.rounds):
                order = ("vecmigrate", "raw") if r % 2 == 0 else ("raw", "vecmigrate")
                for side in order:
                    tag = f"{pair}-{side}-{r}"
                    if dst == "lancedb":
                        target_raw, target_vm = str(work / tag), f"lancedb://{work / tag}"
                    else:  # both sides drop and recreate table "docs"
                        target_raw, target_vm = _dsn(pg, "target"), _uri(pg, "target")
                    if side == "raw":
                        cmd = [
                            PY,
                            str(ROOT / "bench" / "raw_copy.py"),
                            pair,
                            sources[src],
                            target_raw,
                        ]
                    else:
                        src_uri = (
                            f"chroma://{sources['chroma']}"
                            if src == "chroma"
                            else _uri(pg, "source")
                        )
                        cmd = vecmigrate_copy(src_uri, target_vm, work / f"{tag}.sqlite")
                    seconds, rss, out = measure(cmd)
                    rows = json.loads(out)["rows" if side == "raw" else "rows_written"]
                    assert rows == args.rows, f"{tag} moved {rows} rows"
                    if side not in best or seconds < best[side][0]:
                        best[side] = (seconds, rss)
                    print(f"  {tag}: {seconds:.2f}s, peak RSS {rss:.0f} MiB", flush=True)
            results.append(result_row(pair, args.rows, best["vecmigrate"], best["raw"]))
        print(
            f"\n{'pair':<18}{'rows':>8}{'vecmigrate r/s':>16}{'raw r/s':>10}{'ratio':>8}"
            f"{'RSS vm/raw MiB':>17}"
        )
        for r in results:
            print(
                f"{r['pair']:<18}{r['rows']:>8,}{r['vecmigrate_rows_per_s']:>16,}{r['raw_rows_per_s']:>10,}"
                f"{r['ratio']:>8.2f}{r['vecmigrate_peak_rss_mib']:>9}/{r['raw_peak_rss_mib']}"
            )
        out_file = ROOT / "bench" / "results" / "copy_vs_raw.json"
        out_file.write_text(
            json.dumps(
                {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "results": results}, indent=2
            )
        )
        print(f"\nwritten to {out_file.relative_to(ROOT)}")
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
