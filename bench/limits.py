"""Benchmark: the physical limit of each pair, and how close ``vecmigrate copy`` gets.

For each engine that runs here without a server of its own (LanceDB, the dump format,
pgvector on an embedded PostgreSQL started for the run) and each vector size
(50-d x 400k, 384-d x 100k, 1536-d x 25k rows, with a document and two metadata fields),
measured side by side in one run, each in a fresh process, interleaved, best of ROUNDS:

* **scan** and **insert** alone, with the engine's fastest documented bulk path: LanceDB
  ``to_batches`` / one ``table.add`` of a large Arrow table; the dump's Parquet part files
  read / written with pyarrow; pgvector binary ``COPY ... TO STDOUT`` / ``COPY ... FROM
  STDIN`` (the bytes the scan returned). The *limit* of a pair is min(source scan, target
  insert): no copy between them can be faster.
* **raw**: a raw-client script moving the same rows (what a careful engineer writes: the
  reads above, Arrow batches of 65,536 rows, one streaming ``add`` into LanceDB, Parquet
  parts, binary COPY with ``write_row`` into pgvector). No manifest, checksums, checkpoints
  or validation.
* **api**: ``vecmigrate.copy(..., verify=False)`` timed in-process (after imports);
  **cli**: ``vecmigrate copy --no-verify`` as a subprocess, wall time including start-up.

Ratios: api/limit and api/raw compare in-process times; cli/raw compares wall times
(both pay interpreter start-up and imports). ``--rss-rows 1000000`` adds the memory check
of issue #17: peak RSS of dump -> LanceDB at that many 384-d rows (a dump generated under
/tmp, never committed; several sizes: ``--rss-rows 1000000 10000000``, ~30 GB of free disk
at 10M), ``vecmigrate copy`` vs. the raw script.
Run: ``.venv/bin/python bench/limits.py`` (about 30 min on 2 cores) or e.g.
``--sizes 50 --pairs lancedb-lancedb dump-lancedb --rounds 3``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

SIZES = {50: 400_000, 384: 100_000, 1536: 25_000}
ENGINES = ("lancedb", "dump", "pgvector")
PAIRS = (
    "lancedb-lancedb",
    "dump-lancedb",
    "lancedb-dump",
    "dump-dump",
    "pgvector-lancedb",
    "lancedb-pgvector",
    "dump-pgvector",
    "pgvector-dump",
)
DEFAULT_PAIRS = PAIRS[:6]
PY = sys.executable
VECMIGRATE = str(Path(PY).parent / "vecmigrate")
RAW_BATCH = 65_536  # rows per Arrow batch in the raw scripts
PART_ROWS = 131_072  # rows per Parquet part the raw dump writer makes
GENRES = "abcde"
PG_COLUMNS = "id, document, vector, genre, year, metadata_extra"


def measure(cmd: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB of the process tree, stdout) of one command."""
    import psutil  # type: ignore[import-untyped]

    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs))
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return seconds, peak / 2**20, out


# -- data ---------------------------------------------------------------------------------
def schema(dim: int) -> Any:
    """The collection every engine holds: id, document, a vector, two metadata fields."""
    from vecmigrate.model import CollectionSchema, IndexSpec, MetadataField, VectorField

    return CollectionSchema(
        name="docs",
        vectors=(VectorField(dim=dim, index=IndexSpec(kind="none")),),
        has_document=True,
        metadata=(
            MetadataField(name="genre", type="string"),
            MetadataField(name="year", type="int64"),
        ),
    )


def generated(dim: int, rows: int, step: int = 50_000, seed: int = 7) -> Iterator[Any]:
    """Unnormalised Gaussian vectors, as record batches in the collection's layout."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    arrow = schema(dim).arrow_schema()
    meta_type = arrow.field("metadata").type
    for start in range(0, rows, step):
        n = min(step, rows - start)
        idx = range(start, start + n)
        vecs = rng.standard_normal((n, dim), dtype=np.float32)
        cols = {
            "id": pa.array([f"w{i:08d}" for i in idx]),
            "document": pa.array([f"document number {i} about {GENRES[i % 5]}" for i in idx]),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), dim),
            "metadata": pa.StructArray.from_arrays(
                [pa.array([GENRES[i % 5] for i in idx]), pa.array([1990 + i % 35 for i in idx])],
                fields=list(meta_type),
            ),
            "metadata_extra": pa.nulls(n, pa.string()),
        }
        yield pa.RecordBatch.from_arrays([cols[f.name].cast(f.type) for f in arrow], schema=arrow)


def load(uri: str, dim: int, rows: int) -> None:
    """Write the generated rows into ``uri`` through its connector (not timed)."""
    from vecmigrate.connectors import connect

    with connect(uri) as conn:
        conn.create(schema(dim), "replace")
        conn.begin_bulk_load("docs")
        for batch in generated(dim, rows):
            for start in range(0, batch.num_rows, 10_000):
                conn.upsert("docs", batch.slice(start, 10_000))
        conn.finalize("docs")


def pg_dsn(pg: Any, db: str) -> str:
    return f"postgresql://postgres@{pg.host}:{pg.port}/{db}"


def pg_uri(pg: Any, db: str) -> str:
    return f"pgvector://postgres@{pg.host}:{pg.port}/{db}"


def pg_ddl(dim: int) -> str:
    """The table vecmigrate creates for ``schema(dim)`` (``connectors/pgvector/_sql``)."""
    return (
        f"CREATE TABLE docs (id text PRIMARY KEY, document text, vector vector({dim}), "
        "genre text, year bigint, metadata_extra jsonb)"
    )


# -- single-side limits (run in a worker process) -----------------------------------------
def scan_limit(engine: str, where: str) -> int:
    """Read every row with the engine's fastest bulk path; the rows read."""
    n = 0
    if engine == "lancedb":
        import lancedb

        for batch in (
            lancedb.connect(where).open_table("docs").to_lance().to_batches(batch_size=RAW_BATCH)
        ):
            n += batch.num_rows
    elif engine == "dump":
        import pyarrow.parquet as pq

        for part in sorted((Path(where) / "docs").glob("part-*.parquet")):
            for batch in pq.ParquetFile(part).iter_batches(batch_size=RAW_BATCH):
                n += batch.num_rows
    else:
        import psycopg

        size = 0
        with psycopg.connect(where) as conn, conn.cursor() as cur:
            query = f"COPY (SELECT {PG_COLUMNS} FROM docs) TO STDOUT (FORMAT BINARY)"
            with cur.copy(query) as copy:
                for data in copy:
                    size += len(data)
            n = cur.execute("SELECT count(*) FROM docs").fetchone()[0]  # type: ignore[index]
    return n


def insert_limit(engine: str, data: str, where: str, dim: int) -> tuple[int, float]:
    """(rows, seconds) of writing rows held in memory with the engine's bulk path."""
    if engine == "pgvector":
        import psycopg

        payload = Path(data).read_bytes()
        with psycopg.connect(where) as conn:
            conn.execute("DROP TABLE IF EXISTS docs")
            conn.execute(pg_ddl(dim))
            conn.commit()
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                with cur.copy(f"COPY docs ({PG_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                    for start in range(0, len(payload), 1 << 20):
                        copy.write(payload[start : start + (1 << 20)])
                rows = cur.rowcount
            conn.commit()
            return rows, time.perf_counter() - t0
    import pyarrow as pa

    with pa.OSFile(data) as f:
        table = pa.ipc.open_file(f).read_all()
    t0 = time.perf_counter()
    if engine == "lancedb":
        import lancedb

        db = lancedb.connect(where)
        db.create_table("docs", schema=table.schema, mode="overwrite").add(table)
    else:
        import pyarrow.parquet as pq

        folder = Path(where) / "docs"
        folder.mkdir(parents=True)
        for i, start in enumerate(range(0, table.num_rows, PART_ROWS)):
            pq.write_table(
                table.slice(start, PART_ROWS), folder / f"part-{i:05d}.parquet", compression="zstd"
            )
    return table.num_rows, time.perf_counter() - t0


# -- the raw-client script (run in a worker process) --------------------------------------
def raw_batches(engine: str, where: str, dim: int) -> Iterator[Any]:
    """Arrow batches of the source, read with its own client."""
    import pyarrow as pa

    if engine == "lancedb":
        import lancedb

        yield from (
            lancedb.connect(where).open_table("docs").to_lance().to_batches(batch_size=RAW_BATCH)
        )
    elif engine == "dump":
        import pyarrow.dataset as ds

        yield from ds.dataset(str(Path(where) / "docs"), format="parquet").to_batches(
            batch_size=RAW_BATCH
        )
    else:
        import numpy as np
        import psycopg
        from pgvector.psycopg import register_vector

        arrow = schema(dim).arrow_schema()
        meta = arrow.field("metadata").type
        with psycopg.connect(where) as conn:
            register_vector(conn)
            with conn.cursor() as cur:
                query = f"COPY (SELECT {PG_COLUMNS} FROM docs) TO STDOUT (FORMAT BINARY)"
                with cur.copy(query) as copy:
                    copy.set_types(["text", "text", "vector", "text", "int8", "jsonb"])
                    rows: list[tuple[Any, ...]] = []
                    for row in copy.rows():
                        rows.append(row)
                        if len(rows) == RAW_BATCH:
                            yield _pg_batch(rows, arrow, meta, dim, np, pa)
                            rows = []
                    if rows:
                        yield _pg_batch(rows, arrow, meta, dim, np, pa)


def _pg_batch(rows: list[Any], arrow: Any, meta: Any, dim: int, np: Any, pa: Any) -> Any:
    ids, docs, vecs, genres, years, extra = zip(*rows, strict=True)
    matrix = np.stack([v.to_numpy() for v in vecs]).astype(np.float32, copy=False)
    cols = [
        pa.array(ids),
        pa.array(docs),
        pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), dim),
        pa.StructArray.from_arrays(
            [pa.array(genres), pa.array(years, pa.int64())], fields=list(meta)
        ),
        pa.array([None if e is None else json.dumps(e) for e in extra], pa.string()),
    ]
    return pa.RecordBatch.from_arrays(cols, schema=arrow)


def raw_copy(src: str, src_at: str, dst: str, dst_at: str, dim: int) -> int:
    """Move every row from the source to the target with the engines' own clients."""
    import pyarrow as pa

    batches = raw_batches(src, src_at, dim)
    arrow = schema(dim).arrow_schema()
    n = 0
    if dst == "lancedb":
        import lancedb

        def counted() -> Iterator[Any]:
            nonlocal n
            for b in batches:
                n += b.num_rows
                yield b

        table = lancedb.connect(dst_at).create_table("docs", schema=arrow, mode="overwrite")
        table.add(pa.RecordBatchReader.from_batches(arrow, counted()))
    elif dst == "dump":
        import pyarrow.parquet as pq

        folder = Path(dst_at) / "docs"
        folder.mkdir(parents=True)
        held: list[Any] = []

        def flush(i: int) -> None:
            pq.write_table(
                pa.Table.from_batches(held), folder / f"part-{i:05d}.parquet", compression="zstd"
            )
            held.clear()

        parts = 0
        for b in batches:
            held.append(b)
            n += b.num_rows
            if sum(h.num_rows for h in held) >= PART_ROWS:
                flush(parts)
                parts += 1
        if held:
            flush(parts)
    else:
        import psycopg
        from pgvector.psycopg import register_vector
        from psycopg.types.json import Jsonb

        with psycopg.connect(dst_at) as conn:
            register_vector(conn)
            conn.execute("DROP TABLE IF EXISTS docs")
            conn.execute(pg_ddl(dim))
            query = f"COPY docs ({PG_COLUMNS}) FROM STDIN (FORMAT BINARY)"
            with conn.cursor() as cur, cur.copy(query) as copy:
                copy.set_types(["text", "text", "vector", "text", "int8", "jsonb"])
                for b in batches:
                    vecs = b.column("vector").flatten().to_numpy().reshape(-1, dim)
                    meta = b.column("metadata")
                    extra = b.column("metadata_extra").to_pylist()
                    for row in zip(
                        b.column("id").to_pylist(),
                        b.column("document").to_pylist(),
                        vecs,
                        meta.field("genre").to_pylist(),
                        meta.field("year").to_pylist(),
                        extra,
                        strict=True,
                    ):
                        e = row[5]
                        copy.write_row((*row[:5], None if e is None else Jsonb(json.loads(e))))
                    n += b.num_rows
            conn.commit()
    return n


def worker(kind: str, spec: dict[str, Any]) -> None:
    """One measurement in this process; prints {"rows", "seconds"} (imports not timed)."""
    # Imports first: what is timed is the work, on both sides.
    for module in ("numpy", "pyarrow.dataset", "pyarrow.parquet", "lancedb", "psycopg"):
        importlib.import_module(module)
    if kind == "scan":
        t0 = time.perf_counter()
        rows = scan_limit(spec["engine"], spec["at"])
        seconds = time.perf_counter() - t0
    elif kind == "insert":
        rows, seconds = insert_limit(spec["engine"], spec["data"], spec["at"], spec["dim"])
    elif kind == "raw":
        t0 = time.perf_counter()
        rows = raw_copy(spec["src"], spec["src_at"], spec["dst"], spec["dst_at"], spec["dim"])
        seconds = time.perf_counter() - t0
    else:  # the Python API, in-process
        import vecmigrate as vm
        import vecmigrate.api  # imported here (lazily loaded), not timed
        from vecmigrate.connectors.registry import connector_class
        from vecmigrate.pipeline import CopyOptions

        for uri in (spec["src_uri"], spec["dst_uri"]):  # vecmigrate loads its modules lazily
            connector_class(uri.split(":", 1)[0])
        opts = CopyOptions(job_path=Path(spec["job"]), if_exists="replace", replace_confirmed=True)
        t0 = time.perf_counter()
        report = vm.copy(spec["src_uri"], spec["dst_uri"], "docs", options=opts, verify=False)
        seconds = time.perf_counter() - t0
        rows = report.result.rows_written
    print(json.dumps({"rows": rows, "seconds": seconds}))


# -- the driver ---------------------------------------------------------------------------
class Run:
    """Sources, targets and measurements of one benchmark run."""

    def __init__(self, work: Path, pg: Any) -> None:
        self.work, self.pg = work, pg
        self.best: dict[str, dict[str, float]] = {}

    def source(self, engine: str, dim: int) -> tuple[str, str]:
        """(vecmigrate URI, raw location) of a source."""
        if engine == "pgvector":
            return pg_uri(self.pg, f"source{dim}"), pg_dsn(self.pg, f"source{dim}")
        path = self.work / f"{engine}-{dim}"
        return f"{engine}://{path}", str(path)

    def target(self, engine: str, tag: str) -> tuple[str, str]:
        """A fresh target (pgvector: table docs in database target, replaced by each run)."""
        if engine == "pgvector":
            return pg_uri(self.pg, "target"), pg_dsn(self.pg, "target")
        path = self.work / "t" / tag
        shutil.rmtree(path, ignore_errors=True)
        return f"{engine}://{path}", str(path)

    def prepare(self, dim: int, rows: int, engines: set[str]) -> None:
        """Sources of ``rows`` generated rows in each engine, and what the insert limits
        write (an Arrow IPC file; the binary COPY stream of the pgvector source)."""
        import psycopg
        import pyarrow as pa

        t0 = time.perf_counter()
        for engine in sorted(engines):
            uri, at = self.source(engine, dim)
            if engine == "pgvector":
                with psycopg.connect(pg_dsn(self.pg, "postgres"), autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE source{dim}")
                with psycopg.connect(at, autocommit=True) as conn:
                    conn.execute("CREATE EXTENSION vector")
            load(uri, dim, rows)
        arrow = schema(dim).arrow_schema()
        with (
            pa.OSFile(str(self.work / f"data-{dim}.arrow"), "wb") as f,
            pa.ipc.new_file(f, arrow) as w,
        ):
            for batch in generated(dim, rows):
                w.write_batch(batch)
        if "pgvector" in engines:
            with psycopg.connect(self.source("pgvector", dim)[1]) as conn, conn.cursor() as cur:
                query = f"COPY (SELECT {PG_COLUMNS} FROM docs) TO STDOUT (FORMAT BINARY)"
                with open(self.work / f"data-{dim}.pgcopy", "wb") as out, cur.copy(query) as cp:
                    for data in cp:
                        out.write(data)
        print(f"sources of {rows:,} x {dim}-d ready in {time.perf_counter() - t0:.0f}s", flush=True)

    def jobs(self, dim: int, engines: set[str], pairs: list[str]) -> list[tuple[str, Any]]:
        """Every measurement of one size, as (key, how to run it)."""
        out: list[tuple[str, Any]] = []
        for e in sorted(engines):
            out.append((f"scan {e}", ("scan", e)))
            out.append((f"insert {e}", ("insert", e)))
        for pair in pairs:
            for side in ("raw", "api", "cli"):
                out.append((f"{side} {pair}", (side, pair)))
        return out

    def measure(self, dim: int, rows: int, key: str, how: tuple[str, str]) -> None:
        kind, what = how
        tag = f"{dim}-{key.replace(' ', '-')}"
        me = [PY, str(Path(__file__).resolve()), "--worker", kind]
        if kind == "scan":
            cmd = [*me, json.dumps({"engine": what, "at": self.source(what, dim)[1]})]
        elif kind == "insert":
            data = self.work / f"data-{dim}.{'pgcopy' if what == 'pgvector' else 'arrow'}"
            at = self.target(what, tag)[1]
            spec = {"engine": what, "data": str(data), "at": at, "dim": dim}
            cmd = [*me, json.dumps(spec)]
        else:
            src, dst = what.split("-")
            (src_uri, src_at), (dst_uri, dst_at) = self.source(src, dim), self.target(dst, tag)
            job = self.work / "jobs" / f"{tag}.sqlite"
            shutil.rmtree(job.parent, ignore_errors=True)
            job.parent.mkdir()
            if kind == "raw":
                spec = {"src": src, "src_at": src_at, "dst": dst, "dst_at": dst_at, "dim": dim}
                cmd = [*me, json.dumps(spec)]
            elif kind == "api":
                spec = {"src_uri": src_uri, "dst_uri": dst_uri, "job": str(job)}
                cmd = [*me, json.dumps(spec)]
            else:
                cmd = [VECMIGRATE, "copy", src_uri, dst_uri, "-c", "docs", "--no-verify"]
                cmd += ["--json", "--if-exists", "replace", "--yes", "--job", str(job)]
        wall, rss, out = measure(cmd)
        got = json.loads(out)
        moved = got.get("rows", got.get("rows_written"))
        assert moved == rows, f"{key} at {dim}-d moved {moved} rows, not {rows}"
        seconds = wall if kind == "cli" else float(got["seconds"])
        shutil.rmtree(self.work / "t", ignore_errors=True)
        best = self.best.setdefault(f"{dim} {key}", {})
        if not best or seconds < best["seconds"]:
            best.update(seconds=seconds, wall=wall, rss_mib=rss)
        print(f"  {dim}-d {key}: {seconds:.2f}s (wall {wall:.1f}s, {rss:.0f} MiB)", flush=True)


def summarise(run: Run, sizes: dict[int, int], engines: set[str], pairs: list[str]) -> Any:
    """Rows/s and ratios from the best times."""
    limits, results = [], []
    for dim, rows in sizes.items():

        def rate(key: str, dim: int = dim, rows: int = rows) -> float:
            return rows / run.best[f"{dim} {key}"]["seconds"]

        for e in sorted(engines):
            limits.append(
                {
                    "engine": e,
                    "dim": dim,
                    "rows": rows,
                    "scan_rows_per_s": round(rate(f"scan {e}")),
                    "insert_rows_per_s": round(rate(f"insert {e}")),
                }
            )
        for pair in pairs:
            src, dst = pair.split("-")
            limit = min(rate(f"scan {src}"), rate(f"insert {dst}"))
            raw, api = rate(f"raw {pair}"), rate(f"api {pair}")
            raw_wall = rows / run.best[f"{dim} raw {pair}"]["wall"]
            cli = rate(f"cli {pair}")
            results.append(
                {
                    "pair": pair,
                    "dim": dim,
                    "rows": rows,
                    "limit_rows_per_s": round(limit),
                    "raw_rows_per_s": round(raw),
                    "api_rows_per_s": round(api),
                    "raw_wall_rows_per_s": round(raw_wall),
                    "cli_wall_rows_per_s": round(cli),
                    "api_vs_limit": round(api / limit, 3),
                    "api_vs_raw": round(api / raw, 3),
                    "cli_vs_raw_wall": round(cli / raw_wall, 3),
                    "cli_peak_rss_mib": round(run.best[f"{dim} cli {pair}"]["rss_mib"]),
                    "raw_peak_rss_mib": round(run.best[f"{dim} raw {pair}"]["rss_mib"]),
                }
            )
    return limits, results


def markdown(limits: list[dict[str, Any]], results: list[dict[str, Any]]) -> str:
    lines = [
        "| engine | vectors | scan rows/s | insert rows/s |",
        "|---|---|---:|---:|",
    ]
    for x in limits:
        lines.append(
            f"| {x['engine']} | {x['rows']:,} x {x['dim']}-d | {x['scan_rows_per_s']:,} "
            f"| {x['insert_rows_per_s']:,} |"
        )
    lines += [
        "",
        "| pair | vectors | limit rows/s | raw rows/s | vecmigrate API rows/s | API / limit "
        "| API / raw | CLI / raw (wall) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['pair'].replace('-', ' → ')} | {r['rows']:,} x {r['dim']}-d "
            f"| {r['limit_rows_per_s']:,} | {r['raw_rows_per_s']:,} | {r['api_rows_per_s']:,} "
            f"| {r['api_vs_limit']:.2f} | {r['api_vs_raw']:.2f} | {r['cli_vs_raw_wall']:.2f} |"
        )
    return "\n".join(lines)


def memory_check(run: Run, rows: int, rounds: int) -> dict[str, Any]:
    """Peak RSS of dump -> LanceDB at ``rows`` x 384-d: ``vecmigrate copy`` vs. raw."""
    import lancedb

    dump = run.work / f"dump-rss-{rows}"
    t0 = time.perf_counter()
    load(f"dump://{dump}", 384, rows)
    print(f"generated a {rows:,} x 384-d dump in {time.perf_counter() - t0:.0f}s", flush=True)
    best: dict[str, dict[str, float]] = {}
    for r in range(rounds):
        for side in ("vecmigrate", "raw") if r % 2 == 0 else ("raw", "vecmigrate"):
            target = run.work / "t" / f"rss-{side}"
            shutil.rmtree(target, ignore_errors=True)
            job = run.work / f"rss-{side}.sqlite"
            job.unlink(missing_ok=True)
            if side == "raw":
                spec: dict[str, Any] = {"src": "dump", "src_at": str(dump), "dst": "lancedb"}
                spec |= {"dst_at": str(target), "dim": 384}
                cmd = [PY, str(Path(__file__).resolve()), "--worker", "raw", json.dumps(spec)]
            else:
                cmd = [VECMIGRATE, "copy", f"dump://{dump}", f"lancedb://{target}", "-c", "docs"]
                cmd += ["--no-verify", "--json", "--job", str(job)]
            wall, rss, out = measure(cmd)
            got = json.loads(out)
            assert got.get("rows", got.get("rows_written")) == rows
            stats: Any = lancedb.connect(str(target)).open_table("docs").stats()
            frags = stats["fragment_stats"]["num_fragments"]
            print(
                f"  rss {side}: {wall:.1f}s wall, peak {rss:.0f} MiB, {frags} fragments",
                flush=True,
            )
            mine = best.setdefault(side, {"wall": wall, "rss_mib": rss, "fragments": frags})
            if wall < mine["wall"]:
                mine.update(wall=wall, fragments=frags)
            mine["rss_mib"] = max(mine["rss_mib"], rss)  # the worst peak of the rounds
            shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(dump, ignore_errors=True)
    return {
        "pair": "dump-lancedb",
        "rows": rows,
        "dim": 384,
        "vecmigrate_wall_rows_per_s": round(rows / best["vecmigrate"]["wall"]),
        "raw_wall_rows_per_s": round(rows / best["raw"]["wall"]),
        "vecmigrate_peak_rss_mib": round(best["vecmigrate"]["rss_mib"]),
        "raw_peak_rss_mib": round(best["raw"]["rss_mib"]),
        "vecmigrate_fragments": best["vecmigrate"]["fragments"],
        "raw_fragments": best["raw"]["fragments"],
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], json.loads(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", choices=sorted(SIZES), default=list(SIZES))
    ap.add_argument("--pairs", nargs="+", choices=PAIRS, default=list(DEFAULT_PAIRS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every row count")
    ap.add_argument("--rss-rows", type=int, nargs="*", default=[], help="e.g. 1000000 10000000")
    ap.add_argument("--rss-rounds", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "limits.json")
    args = ap.parse_args()
    from tests.engines.postgres import start_postgres

    sizes = {d: max(1000, int(SIZES[d] * args.scale)) for d in args.sizes}
    engines = {e for p in args.pairs for e in p.split("-")}
    work = Path(tempfile.mkdtemp(prefix="vecmigrate-limits-"))
    work.chmod(0o755)
    (work / "pg").mkdir(mode=0o755)
    pg = start_postgres(work / "pg") if "pgvector" in engines else None
    load_before = os.getloadavg()
    try:
        if pg is not None:
            import psycopg

            with psycopg.connect(pg_dsn(pg, "postgres"), autocommit=True) as conn:
                conn.execute("CREATE DATABASE target")
            with psycopg.connect(pg_dsn(pg, "target"), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION vector")
        run = Run(work, pg)
        for dim, rows in sizes.items():
            run.prepare(dim, rows, engines)
            jobs = run.jobs(dim, engines, args.pairs)
            for r in range(args.rounds):
                # Interleaved: every measurement once per round, the order rotating.
                shift = r * len(jobs) // max(1, args.rounds)
                for key, how in jobs[shift:] + jobs[:shift]:
                    run.measure(dim, rows, key, how)
            for f in work.glob(f"*-{dim}*"):
                shutil.rmtree(f, ignore_errors=True) if f.is_dir() else f.unlink()
        limits, results = summarise(run, sizes, engines, args.pairs)
        memory = [memory_check(run, rows, args.rss_rounds) for rows in args.rss_rows]
        table = markdown(limits, results)
        print("\n" + table)
        for m in memory:
            print(
                f"\nmemory, dump → lancedb {m['rows']:,} x 384-d: vecmigrate copy "
                f"{m['vecmigrate_peak_rss_mib']} MiB peak "
                f"({m['vecmigrate_wall_rows_per_s']:,} rows/s wall, "
                f"{m['vecmigrate_fragments']} fragments), raw {m['raw_peak_rss_mib']} "
                f"MiB ({m['raw_wall_rows_per_s']:,} rows/s, {m['raw_fragments']} fragments)"
            )
        args.out.write_text(
            json.dumps(
                {
                    "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "cpus": os.cpu_count(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "rounds": args.rounds,
                    "limits": limits,
                    "pairs": results,
                    "memory": memory,
                    "best": run.best,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"\nwritten to {args.out}")
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
