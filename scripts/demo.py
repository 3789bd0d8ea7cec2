"""`make demo`: a real-text collection in embedded Chroma, copied to LanceDB and proven.

1. Embed 2,000 short texts with all-MiniLM-L6-v2 (offline; cached after the first run).
2. Build "the user's existing collection" with the chromadb client: ids, vectors,
   documents and metadata of every type, cosine space.
3. ``vecmigrate inspect`` it, then ``vecmigrate copy`` it to LanceDB; the copy verifies
   row counts and content digests of both sides.
4. Ask both engines the same question and show their top 3 side by side.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chromadb
import numpy as np
from corpus import _load_model, cached_embeddings, embed, metadata_for

ROWS = 2000
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "demo-data"
VECMIGRATE = str(Path(sys.executable).parent / "vecmigrate")
QUERY = "How do I read a compressed file line by line?"


def build_chroma(path: Path) -> None:
    """The source: a Chroma collection written with Chroma's own client."""
    items, vectors = cached_embeddings(ROWS)
    client = chromadb.PersistentClient(path=str(path))
    col = client.create_collection(
        "docs", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    for start in range(0, ROWS, 500):
        chunk = range(start, min(ROWS, start + 500))
        col.add(
            ids=[f"doc-{i:05d}" for i in chunk],
            embeddings=vectors[start : start + len(chunk)],
            documents=[items[i][1] for i in chunk],
            metadatas=[metadata_for(i, *items[i]) for i in chunk],  # type: ignore[misc]
        )
    print(f"built Chroma collection 'docs': {col.count():,} records, {vectors.shape[1]}-d, cosine")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the vecmigrate CLI; stop the demo if it fails."""
    print(f"\n$ vecmigrate {' '.join(args)}", flush=True)
    proc = subprocess.run([VECMIGRATE, *args], text=True, stdout=subprocess.PIPE)
    if proc.returncode != 0:
        print(proc.stdout)
        raise SystemExit(f"vecmigrate {args[0]} exited {proc.returncode}")
    return proc


def side_by_side(chroma_uri: str, lance_uri: str) -> None:
    """The same question to both engines through vecmigrate's connectors."""
    from vecmigrate.connectors import connect

    q = embed([QUERY], _load_model())
    print(f"\nquery: {QUERY!r}")
    with connect(chroma_uri) as src, connect(lance_uri) as dst:
        a, _ = src.search("docs", q, 3)
        b, _ = dst.search("docs", q, 3)
        docs = {
            r["id"]: r["document"]
            for r in dst.fetch("docs", list(set(a[0]) | set(b[0]))).to_pylist()
        }
    for rank, (x, y) in enumerate(zip(a[0], b[0], strict=True), 1):
        print(f"  {rank}. chroma  {x}: {docs[x][:90]}")
        print(f"     lancedb {y}: {docs[y][:90]}")
    print(f"  top-3 overlap: {len(set(a[0]) & set(b[0]))}/3")


def main() -> None:
    t0 = time.perf_counter()
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir()
    build_chroma(DATA / "chroma")
    chroma_uri, lance_uri = f"chroma://{DATA / 'chroma'}", f"lancedb://{DATA / 'lancedb'}"
    print(run("inspect", chroma_uri).stdout, end="")
    out = json.loads(
        run(
            "copy", chroma_uri, lance_uri, "-c", "docs", "--job", str(DATA / "job.sqlite"), "--json"
        ).stdout
    )
    print(
        f"\nmoved {out['rows_written']:,} of {out['rows_read']:,} rows in {out['seconds']:.2f}s "
        f"({out['rows_per_second']:,.0f} rows/s), {out['dead_letters']} refused"
    )
    for check in out["checks"]:
        print(f"  {'pass' if check['passed'] else 'FAIL'}  {check['name']}: {check['detail']}")
    side_by_side(chroma_uri, lance_uri)
    report = DATA / "report"
    verified = subprocess.run(
        [
            VECMIGRATE,
            "verify",
            chroma_uri,
            lance_uri,
            "-c",
            "docs",
            "--queries",
            "200",
            "--report-dir",
            str(report),
            "--json",
        ],
        text=True,
        stdout=subprocess.PIPE,
    )
    result = json.loads(verified.stdout)
    src, tgt = result["systems"]["source"]["all"], result["systems"]["target"]["all"]
    print(f"\n$ vecmigrate verify {chroma_uri} {lance_uri} -c docs")
    print(
        f"  recall@10 vs exact ground truth: chroma {src['recall@10']:.3f}, "
        f"lancedb {tgt['recall@10']:.3f}; overlap@10 {result['overlap']['overlap@10']:.3f}; "
        f"gates {'passed' if result['passed'] else 'FAILED'}"
    )
    print(f"  report: {report / 'report.html'}")
    ok = out["verified"] and out["dead_letters"] == 0 and result["passed"]
    print(f"\ndemo {'passed' if ok else 'FAILED'} in {time.perf_counter() - t0:.0f}s")
    if not ok:
        raise SystemExit(1)
    _ = np  # numpy is imported for chromadb's embeddings type


if __name__ == "__main__":
    main()
