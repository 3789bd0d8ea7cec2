"""Records other tools wrote that the copy crashed on. Records without one of their
vectors — an application's pgvector rows not embedded yet (a NULL vector: "expected a
bytes-like object, NoneType found"), a Qdrant point holding some of its collection's
named vectors (KeyError) — are refused one by one into the dead-letter file and counted,
every other record copied and checked. A Qdrant collection mixing integer and UUID point
ids ("Expected bytes, got a 'int' object") copies with string ids."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg

from tests.conftest import require_module
from tests.e2e.helpers import cli
from vecmigrate.connectors import connect
from vecmigrate.pipeline.deadletter import read_dead_letters

ROWS = 40


def test_rows_without_an_embedding_are_refused_and_counted(postgres: Any, tmp_path: Path) -> None:
    name = f"pending_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, body text, emb vector(3))")
        db.execute(f"CREATE INDEX ON {name} USING hnsw (emb vector_cosine_ops)")
        with db.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {name} VALUES (%s, %s, %s)",
                [(i, f"text {i}", None if i % 8 == 0 else f"[{i + 1},1,2]") for i in range(ROWS)],
            )
    dump = f"dump://{tmp_path / 'dump'}"
    ran = cli("copy", postgres.uri(), dump, "-c", name, "--json")
    assert ran.returncode == 1, ran.stderr  # refusals fail the command, after the copy
    out = ran.json()
    assert (out["rows_written"], out["dead_letters"]) == (ROWS - 5, 5)
    checks = {c["name"]: c for c in out["checks"]}
    assert all(c["passed"] for c in checks.values()), checks
    assert "identical but for the 5 refused" in checks["content digest"]["detail"]
    report = {**out, **(out.get("collections") or [{}])[0]}
    refused = read_dead_letters(Path(report["dead_letter_dir"])).to_pylist()
    assert sorted(r["id"] for r in refused) == [0, 8, 16, 24, 32]
    assert all("vector is null" in str(r) and "emb" in str(r) for r in refused), refused[0]
    with connect(dump) as conn:
        assert conn.count(name) == ROWS - 5


def test_a_row_of_another_dimension_is_named(postgres: Any, tmp_path: Path) -> None:
    """``vector`` declared without a dimension holds rows of several, one beyond the rows
    ``describe`` samples: the record of the other dimension is named (it failed on a
    reshape of the whole batch)."""
    name = f"mixed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, body text, emb vector)")
        rows = [(i, f"t{i}", "[1,2,3]" if i != 1500 else "[1,2,3,4]") for i in range(1600)]
        db.cursor().executemany(f"INSERT INTO {name} VALUES (%s, %s, %s)", rows)
    (tmp_path / "m.yaml").write_text("vectors:\n  emb: {metric: l2}\n")
    ran = cli("copy", postgres.uri(), f"dump://{tmp_path / 'd'}", "-c", name,
              "--map", str(tmp_path / "m.yaml"))  # fmt: skip
    assert ran.returncode != 0 and "Traceback" not in ran.stderr
    line = ran.stderr.replace("\n", " ")
    for text in ("vector has 4 dimensions; the collection is 3-d", "id=1500", "field='emb'"):
        assert text in line, line


def test_a_qdrant_point_without_one_of_its_named_vectors_is_refused(tmp_path: Path) -> None:
    require_module("qdrant_client")
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path / "q"))
    params = models.VectorParams(size=3, distance=models.Distance.DOT)
    client.create_collection("x", vectors_config={"a": params, "b": params})
    client.upsert(
        "x",
        [
            models.PointStruct(
                id=i,
                vector={"a": [i + 1.0, 1, 2], **({"b": [1, i + 1.0, 2]} if i % 4 else {})},
                payload={"t": f"x{i}"},
            )
            for i in range(12)
        ],
    )
    client.close()
    ran = cli("copy", f"qdrant+local://{tmp_path / 'q'}", f"dump://{tmp_path / 'd'}", "-c", "x",
              "--json")  # fmt: skip
    assert ran.returncode == 1, ran.stderr
    out = ran.json()
    assert (out["rows_written"], out["dead_letters"]) == (9, 3)
    assert all(c["passed"] for c in out["checks"]), out["checks"]
    report = {**out, **(out.get("collections") or [{}])[0]}
    refused = read_dead_letters(Path(report["dead_letter_dir"])).to_pylist()
    assert sorted(r["id"] for r in refused) == [0, 4, 8]


def test_a_qdrant_collection_mixing_int_and_uuid_point_ids_copies(tmp_path: Path) -> None:
    require_module("qdrant_client")
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path / "q"))
    client.create_collection("x", vectors_config=models.VectorParams(size=3, distance="Dot"))
    ids: list[int | str] = [i if i % 2 else str(uuid.UUID(int=i + 1000)) for i in range(12)]
    client.upsert(
        "x",
        [models.PointStruct(id=p, vector=[i + 1.0, 1, 2], payload={}) for i, p in enumerate(ids)],
    )
    client.close()
    src, dst = f"qdrant+local://{tmp_path / 'q'}", f"qdrant+local://{tmp_path / 'q2'}"
    ran = cli("copy", src, dst, "-c", "x", "--verify", "full", "--json")
    assert ran.returncode == 0, ran.stderr
    assert ran.json()["rows_written"] == 12 and ran.json()["verified"]
    with connect(dst) as conn:
        got = conn.fetch("x", ["3", str(uuid.UUID(int=1000))])
    assert sorted(got.column("id").to_pylist()) == sorted(["3", str(uuid.UUID(int=1000))])
