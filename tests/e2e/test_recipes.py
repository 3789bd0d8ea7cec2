"""The "migrate X to Y" recipes of docs/recipes/, run as written.

Each test seeds a small source (a few hundred records with a document and metadata of
several types), puts its own engines in the recipe's variables (``SRC``, ``DST``, ``C``,
...), runs every command line of the recipe's ``bash`` blocks with bash, exactly as the
doc shows it, and checks that each exits 0 and that the target holds every record: the
count, and a fetched sample compared field by field with what was seeded.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require_module
from tests.doc_blocks import read_blocks
from vecmigrate.connectors import connect
from vecmigrate.model import (
    CollectionSchema,
    IndexSpec,
    MetadataField,
    Metric,
    VectorField,
)
from vecmigrate.records import build_batch, metadata_rows

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes"
ROWS = 300
DIM = 16
SAMPLE = [0, 1, 7, 42, 150, 299]
PAIRS = (
    "chroma-to-pgvector.md",
    "pgvector-to-qdrant.md",
    "qdrant-to-milvus.md",
    "lancedb-to-chroma.md",
    "pinecone-to-pgvector.md",
    "dump-round-trip.md",
)
# verify's query counts, lowered so that each recipe runs in seconds (the gates are the
# defaults: the recipes promise those).
SMALL_VERIFY = "verify:\n  queries: 40\n  self_queries: 20\n"


def schema_for(name: str, metric: Metric) -> CollectionSchema:
    """The seeded collection: string ids, a document, five metadata types, an HNSW index."""
    return CollectionSchema(
        name=name,
        vectors=(
            VectorField(
                dim=DIM,
                metric=metric,
                index=IndexSpec(kind="hnsw", params={"M": 16, "ef_construction": 100}),
            ),
        ),
        has_document=True,
        metadata=(
            MetadataField(name="genre", type="string"),
            MetadataField(name="year", type="int64"),
            MetadataField(name="score", type="float64"),
            MetadataField(name="published", type="bool"),
            MetadataField(name="tags", type="list<string>"),
        ),
    )


def record_id(i: int) -> str:
    """The id of seeded record ``i``."""
    return f"doc-{i:05d}"


def expected(i: int) -> dict[str, Any]:
    """The metadata of seeded record ``i``."""
    return {
        "genre": ["news", "sport", "tech"][i % 3],
        "year": 1990 + i % 35,
        "score": round(i / 8, 3),
        "published": i % 2 == 0,
        "tags": [f"t{i % 4}", f"t{i % 5 + 4}"],
    }


def vectors(metric: Metric) -> np.ndarray:
    """Clustered vectors (unit length under cosine): search on them is unambiguous, so
    the recall gates judge the copy rather than the ANN index's luck."""
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(12, DIM))
    out = centers[np.arange(ROWS) % 12] + 0.3 * rng.normal(size=(ROWS, DIM))
    if metric is Metric.COSINE:
        out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def seed(uri: str, name: str, metric: Metric) -> None:
    """Create collection ``name`` at ``uri`` with ROWS records (then close it: some
    engines lock their files to one process, and the recipe's commands are others)."""
    schema = schema_for(name, metric)
    with connect(uri) as conn:
        conn.create(schema)
        batch = build_batch(
            schema,
            [record_id(i) for i in range(ROWS)],
            {"vector": vectors(metric)},
            documents=[f"text of record {i}" for i in range(ROWS)],
            metadata=[expected(i) for i in range(ROWS)],
        )
        conn.upsert(name, batch)
        conn.finalize(name)


def assert_target_holds_every_record(uri: str, name: str, metric: Metric) -> None:
    """The target's count is ROWS, and a fetched sample equals the seeded records."""
    want = vectors(metric)
    with connect(uri) as conn:
        assert conn.count(name) == ROWS
        schema = conn.describe(name)
        assert schema.vector.metric is metric, schema.vector
        got = conn.fetch(name, [record_id(i) for i in SAMPLE], schema=schema)
        ids = got.column("id").to_pylist()
        assert sorted(ids) == sorted(record_id(i) for i in SAMPLE)
        docs = got.column("document").to_pylist()
        vecs = got.column(schema.vector.name).to_pylist()
        for rid, doc, meta, vec in zip(ids, docs, metadata_rows(got, schema), vecs, strict=True):
            i = int(rid.split("-")[1])
            assert doc == f"text of record {i}", rid
            want_meta = expected(i)
            assert meta.keys() == want_meta.keys(), (rid, meta)
            for key, value in want_meta.items():
                if isinstance(value, float):
                    assert math.isclose(meta[key], value, rel_tol=1e-6), (rid, key, meta[key])
                else:
                    assert meta[key] == value and type(meta[key]) is type(value), (rid, key)
            np.testing.assert_allclose(np.asarray(vec, np.float32), want[i], atol=1e-5)


def run_recipe(doc: str, env: dict[str, str], cwd: Path) -> list[str]:
    """Run every command line of the recipe's ``bash`` blocks with bash, each in the
    test's variables; each must exit 0. Returns the lines run."""
    blocks = read_blocks(RECIPES / doc)
    assert blocks, f"{doc} has no bash block"
    # A variable the doc sets and its commands use must be the test's, else a command
    # would run against the doc's example (a secret only the doc's URIs read is not).
    commands = " ".join(line for block in blocks for line in block.commands)
    used = {n for b in blocks for n in b.assigned if re.search(rf"\$\{{?{n}\b", commands)}
    missing = used - env.keys()
    assert not missing, f"{doc} sets {sorted(missing)}, which this test does not supply"
    full_env = {
        **os.environ,
        **env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "COLUMNS": "200",
        "VECMIGRATE_CONFIG": str(cwd / "migration.yaml"),
    }
    (cwd / "migration.yaml").write_text(SMALL_VERIFY)
    ran = []
    for block in blocks:
        for line in block.commands:
            started = time.monotonic()
            proc = subprocess.run(
                ["bash", "-c", line],
                env=full_env,
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert proc.returncode == 0, (
                f"{doc}: {line}\nexited {proc.returncode}:\n{proc.stderr[-3000:]}\n"
                f"{proc.stdout[-3000:]}"
            )
            ran.append(line)
            # Shown with -s: what a reader of the recipe would see.
            print(f"$ {line}   [{time.monotonic() - started:.1f}s]\n{proc.stdout}")
    return ran


def pg_schema(server: Any, prefix: str) -> str:
    """A new PostgreSQL schema on the test server (other tests share its database)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(
        host=server.host, port=server.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return f"{server.uri()}?schema={name}"


def verbs(ran: list[str]) -> list[str]:
    """The vecmigrate verbs among the lines run, in order."""
    return [line.split()[1] for line in ran if line.startswith("vecmigrate ")]


def test_every_recipe_is_run_by_this_module() -> None:
    docs = {p.name for p in RECIPES.glob("*.md")} - {"langchain-chroma-to-pgvector.md"}
    assert docs == set(PAIRS)
    for doc in PAIRS:
        lines = [line for block in read_blocks(RECIPES / doc) for line in block.commands]
        assert lines and all(line.split()[0] in {"vecmigrate", "python"} for line in lines), doc
        assert {"SRC", "DST", "C"} <= {n for b in read_blocks(RECIPES / doc) for n in b.assigned}


def test_the_extractor_keeps_commands_and_leaves_assignments(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# T\n\n```bash\nexport KEY='...'   # a secret\nSRC=a://b\n# a comment\n\n"
        'vecmigrate copy "$SRC" \\\n   "$DST" -c x   # trailing\n```\n\n'
        '```python\nignored()\n```\n\n## Later\n\n```bash\nC=docs\necho "$C"\n```\n'
    )
    blocks = read_blocks(doc)
    assert [b.commands for b in blocks] == [
        ['vecmigrate copy "$SRC" "$DST" -c x   # trailing'],
        ['echo "$C"'],
    ]
    assert [b.assigned for b in blocks] == [["KEY", "SRC"], ["C"]]
    assert [b.commands for b in read_blocks(doc, "## Later")] == [['echo "$C"']]


def test_chroma_to_pgvector(postgres: Any, tmp_path: Path) -> None:
    require_module("chromadb")
    src, dst, name = f"chroma://{tmp_path / 'chroma'}", pg_schema(postgres, "recipe"), "docs"
    seed(src, name, Metric.L2)
    ran = run_recipe("chroma-to-pgvector.md", {"SRC": src, "DST": dst, "C": name}, tmp_path)
    assert verbs(ran)[:4] == ["inspect", "plan", "copy", "verify"]
    assert_target_holds_every_record(dst, name, Metric.L2)


def test_pgvector_to_qdrant(postgres: Any, tmp_path: Path) -> None:
    require_module("qdrant_edge")
    src, dst, name = pg_schema(postgres, "recipe"), f"qdrant-edge://{tmp_path / 'qdrant'}", "docs"
    seed(src, name, Metric.COSINE)
    ran = run_recipe("pgvector-to-qdrant.md", {"SRC": src, "DST": dst, "C": name}, tmp_path)
    assert verbs(ran)[:4] == ["inspect", "plan", "copy", "verify"]
    assert_target_holds_every_record(dst, name, Metric.COSINE)


def test_qdrant_to_milvus(tmp_path: Path) -> None:
    require_module("qdrant_client")
    require_module("pymilvus")
    src, dst = f"qdrant+local://{tmp_path / 'qdrant'}", f"milvus-lite://{tmp_path / 'm.db'}"
    name = "docs"
    seed(src, name, Metric.COSINE)
    ran = run_recipe("qdrant-to-milvus.md", {"SRC": src, "DST": dst, "C": name}, tmp_path)
    assert verbs(ran)[:4] == ["inspect", "plan", "copy", "verify"]
    assert_target_holds_every_record(dst, name, Metric.COSINE)


def test_lancedb_to_chroma(tmp_path: Path) -> None:
    require_module("lancedb")
    require_module("chromadb")
    src, dst, name = f"lancedb://{tmp_path / 'lance'}", f"chroma://{tmp_path / 'chroma'}", "docs"
    seed(src, name, Metric.L2)
    ran = run_recipe("lancedb-to-chroma.md", {"SRC": src, "DST": dst, "C": name}, tmp_path)
    assert verbs(ran)[:4] == ["inspect", "plan", "copy", "verify"]
    assert_target_holds_every_record(dst, name, Metric.L2)


@pytest.fixture
def pinecone_double(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Pinecone protocol double (tests/protocol/pinecone_server.py), its key in
    PINECONE_API_KEY as the recipe expects."""
    require_module("pinecone")
    from tests.protocol.pinecone_server import PineconeServer

    key = f"pc-recipe-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("PINECONE_API_KEY", key)
    srv = PineconeServer(key)
    try:
        yield srv
    finally:
        srv.stop()


def test_pinecone_to_pgvector(postgres: Any, pinecone_double: Any, tmp_path: Path) -> None:
    src = f"pinecone://?host={pinecone_double.url}&api_key=env:PINECONE_API_KEY"
    dst, name = pg_schema(postgres, "recipe"), "docs"
    seed(src, name, Metric.COSINE)
    env = {"SRC": src, "DST": dst, "C": name}
    ran = run_recipe("pinecone-to-pgvector.md", env, tmp_path)
    assert verbs(ran)[:4] == ["inspect", "plan", "copy", "verify"]
    assert_target_holds_every_record(dst, name, Metric.COSINE)


def test_dump_round_trip(postgres: Any, tmp_path: Path) -> None:
    require_module("duckdb")
    require_module("lancedb")
    src, name = pg_schema(postgres, "recipe"), "docs"
    dump, dst = tmp_path / "dump", f"lancedb://{tmp_path / 'lance'}"
    seed(src, name, Metric.COSINE)
    env = {"SRC": src, "DST": dst, "C": name, "DUMP": str(dump)}
    ran = run_recipe("dump-round-trip.md", env, tmp_path)
    assert [v for v in verbs(ran) if v in {"export", "check", "import", "verify"}][:4] == [
        "export",
        "check",
        "import",
        "verify",
    ]
    assert_target_holds_every_record(f"dump://{dump}", name, Metric.COSINE)
    assert_target_holds_every_record(dst, name, Metric.COSINE)
