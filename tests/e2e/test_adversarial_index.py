"""The index that serves queries, changed behind vecmigrate's back (issue #12, item 3).

Engines that keep each vector twice (sqlite-vec: the table and its vec0 index; FAISS: the
Parquet sidecar and the index file) get one vector negated in the index copy alone; a
LanceDB target gets its vector index rebuilt with another metric. ``diff``, ``verify``
and ``inspect`` must say so, through the CLI, and ``sync`` must repair the first kind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import json_of, run_cli
from vecmigrate.connectors import connect
from vecmigrate.model import CollectionSchema, MetadataField, Metric, VectorField
from vecmigrate.records import build_batch

DIM = 16
ROWS = 300
VICTIM = "rec-0123"


def _source(uri: str, metric: Metric, rows: int = ROWS) -> np.ndarray:
    """A collection of ``rows`` random records at ``uri``; returns its vectors."""
    schema = CollectionSchema(
        name="docs",
        vectors=(VectorField(dim=DIM, metric=metric),),
        has_document=True,
        metadata=(MetadataField(name="genre", type="string"),),
    )
    vectors = np.random.default_rng(3).normal(size=(rows, DIM)).astype(np.float32)
    with connect(uri) as conn:
        conn.create(schema, if_exists="replace")
        conn.upsert(
            "docs",
            build_batch(
                schema,
                [f"rec-{i:04d}" for i in range(rows)],
                {"vector": vectors},
                documents=[f"text {i}" for i in range(rows)],
                metadata=[{"genre": "abc"[i % 3]} for i in range(rows)],
            ),
        )
        conn.finalize("docs")
    return vectors


def _negate_in_vec0(target: Path) -> None:
    """Negate the victim's vector in the vec0 table; the main table keeps its blob."""
    sqlite3 = require_module("pysqlite3.dbapi2")
    sqlite_vec = require_module("sqlite_vec")
    db = sqlite3.connect(str(target), isolation_level=None)
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    rowid, blob = db.execute("SELECT rowid, vector FROM docs WHERE id = ?", (VICTIM,)).fetchone()
    negated = (-np.frombuffer(blob, np.float32)).tobytes()
    db.execute("DELETE FROM docs__vec WHERE rowid = ?", (rowid,))
    db.execute("INSERT INTO docs__vec (rowid, embedding) VALUES (?, ?)", (rowid, negated))
    db.close()


def _negate_in_faiss(target: Path) -> None:
    """Negate the victim's vector in the index file; the Parquet sidecar is untouched."""
    faiss = require_module("faiss")
    pq = require_module("pyarrow.parquet")
    row = pq.read_table(target / "docs.parquet").column("id").to_pylist().index(VICTIM)
    index = faiss.read_index(str(target / "docs.faiss"))
    vectors = index.reconstruct_n(0, index.ntotal)
    vectors[row] = -vectors[row]
    rebuilt = faiss.IndexFlat(index.d, index.metric_type)
    rebuilt.add(vectors)
    faiss.write_index(rebuilt, str(target / "docs.faiss"))


ENGINES: dict[str, tuple[Callable[[Path], str], Callable[[Path], None]]] = {
    "sqlite-vec": (
        lambda tmp: f"sqlite-vec://{tmp / 'vec.db'}",
        lambda tmp: _negate_in_vec0(tmp / "vec.db"),
    ),
    "faiss": (lambda tmp: f"faiss://{tmp / 'faiss'}", lambda tmp: _negate_in_faiss(tmp / "faiss")),
}


def _verify(src: str, dst: str, tmp: Path, out: str) -> tuple[int, Any]:
    config = tmp / "verify.yaml"
    # Every record sampled and asked by its own vector, so the victim is always among them.
    config.write_text(f"verify:\n  queries: {ROWS}\n  filter_queries: 0\n  self_queries: {ROWS}\n")
    proc = run_cli(
        "verify",
        src,
        dst,
        "-c",
        "docs",
        "--config",
        str(config),
        "--report-dir",
        out,
        "--json",
        cwd=tmp,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json_of(proc)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_a_vector_changed_in_the_index_alone_is_found_and_repaired(
    engine: str, tmp_path: Path
) -> None:
    require_module("lancedb")
    target_uri, corrupt = ENGINES[engine]
    src, dst = f"lancedb://{tmp_path / 'src'}", target_uri(tmp_path)
    _source(src, Metric.COSINE)
    run_cli("copy", src, dst, "-c", "docs", "--json", cwd=tmp_path, check=True)
    code, report = _verify(src, dst, tmp_path, "before")
    assert code == 0 and report["passed"], report["gates"]
    assert report["self_retrieval"]["systems"]["target"]["found"] == ROWS

    corrupt(tmp_path)
    diff = run_cli("diff", src, dst, "-c", "docs", "--json", cwd=tmp_path)
    assert diff.returncode == 1, diff.stderr
    found = json_of(diff)
    assert (found["missing"], found["extra"]) == ([], [])
    assert found["changed"] == [{"id": VICTIM, "fields": ["vector"]}]

    code, report = _verify(src, dst, tmp_path, "after")
    assert code == 1 and not report["passed"]
    failed = {g["gate"] for g in report["gates"] if not g["passed"]}
    assert failed == {"changed ids", "self-retrieval misses"}
    assert report["self_retrieval"]["regressions"] == [VICTIM]
    assert report["self_retrieval"]["systems"]["source"]["found"] == ROWS
    markdown = (tmp_path / "after" / "report.md").read_text()
    assert f"not found by the target: {VICTIM}" in markdown
    assert VICTIM in (tmp_path / "after" / "report.html").read_text()

    sync = run_cli("sync", src, dst, "-c", "docs", "--json", cwd=tmp_path)
    assert sync.returncode == 0, sync.stderr
    repaired = json_of(sync)
    assert (repaired["changed"], repaired["upserted"], repaired["deleted"]) == (1, 1, 0)
    assert repaired["parity"]["equal"]
    code, report = _verify(src, dst, tmp_path, "repaired")
    assert code == 0 and report["passed"] and report["self_retrieval"]["regression_count"] == 0


def test_a_lancedb_index_rebuilt_with_another_metric_is_reported(tmp_path: Path) -> None:
    lancedb = require_module("lancedb")
    require_module("faiss")
    src, dst = f"faiss://{tmp_path / 'src'}", f"lancedb://{tmp_path / 'lance'}"
    _source(src, Metric.L2, rows=600)
    run_cli("copy", src, dst, "-c", "docs", "--json", cwd=tmp_path, check=True)
    before = json_of(run_cli("inspect", dst, "-c", "docs", "--json", cwd=tmp_path, check=True))
    assert before["collections"][0]["vectors"][0]["metric"] == "l2"

    # Rebuilt by hand, outside vecmigrate: cosine over data copied for l2.
    from lancedb.index import IvfFlat

    table = lancedb.connect(str(tmp_path / "lance")).open_table("docs")
    table.create_index("vector", config=IvfFlat(distance_type="cosine", num_partitions=2))

    after = json_of(run_cli("inspect", dst, "-c", "docs", "--json", cwd=tmp_path, check=True))
    row = after["collections"][0]
    assert row["vectors"][0]["metric"] == "cosine"
    assert "recorded l2" in row["engine_settings"]["vector.metric"]
    assert row["engine_settings"]["vector.index"].startswith("IVF_FLAT (cosine)")

    proc = run_cli("verify", src, dst, "-c", "docs", "--json", cwd=tmp_path)
    assert proc.returncode == 2  # not comparable: refused, with what each side serves
    message = " ".join(proc.stderr.split())
    assert "source serves 16-d l2, index IndexFlatL2 (l2)" in message
    assert "target serves 16-d cosine, index IVF_FLAT (cosine)" in message
    assert "vecmigrate recorded l2" in message
