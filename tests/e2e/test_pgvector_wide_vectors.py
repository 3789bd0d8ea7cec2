"""pgvector targets for vectors wider than its indexes take: 3,072-d embeddings (OpenAI's
text-embedding-3-large) get their HNSW index on the column cast to halfvec, pgvector's way
past 2,000 dimensions, and searches use that expression; past 4,000 an index is refused
before anything is written, naming the mapping line that copies the field without one."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from tests.conftest import require_module
from tests.e2e.helpers import cli, cli_ok, close_async_store, pgvector_uri
from vecmigrate.connectors import connect
from vecmigrate.model import CollectionSchema, IndexSpec, Metric, VectorField
from vecmigrate.records import build_batch

ROWS = 60


def _unit(rows: int, dim: int) -> np.ndarray:
    v = np.random.default_rng(dim).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_3072_d_table_indexed_as_halfvec_copies_with_that_index(
    postgres: Any, pg_database: Callable[[], str], tmp_path: Path
) -> None:
    """The application's table, as pgvector's README says to index 3,072 dimensions; the
    target's HNSW index (on the column, it was) failed after every row was written."""
    name = f"wide_{uuid.uuid4().hex[:8]}"
    vectors = _unit(ROWS, 3072)
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, body text, emb vector(3072))")
        db.execute(f"CREATE INDEX ON {name} USING hnsw ((emb::halfvec(3072)) halfvec_cosine_ops)")
        with db.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {name} VALUES (%s, %s, %s)",
                [(i, f"text {i}", str(vectors[i].tolist())) for i in range(ROWS)],
            )
    other = pg_database()
    copied = cli_ok("copy", postgres.uri(), pgvector_uri(other), "-c", name)
    assert copied["verified"] and copied["rows_written"] == ROWS
    with psycopg.connect(other) as db:
        (index,) = db.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE '%%hnsw%%'",
            (name,),
        ).fetchone() or ("",)
        assert "((emb)::halfvec(3072)) halfvec_cosine_ops" in str(index)
        # The table keeps float32: every value exactly as written.
        stored = db.execute(f"SELECT emb FROM {name} ORDER BY id").fetchall()
        read = np.array([json.loads(r[0]) for r in stored], dtype=np.float32)
        assert np.array_equal(read, vectors)
    report = cli_ok(
        "verify", postgres.uri(), pgvector_uri(other), "-c", name, "--queries", "20",
        "--report-dir", str(tmp_path / "r"),
    )  # fmt: skip
    assert report["passed"], report  # searched through the halfvec expression


def test_an_index_past_4000_dimensions_is_refused_until_the_mapping_drops_it(
    pg_database: Callable[[], str], tmp_path: Path
) -> None:
    dump = f"dump://{tmp_path / 'dump'}"
    hnsw = IndexSpec(kind="hnsw", params={"M": 16})
    schema = CollectionSchema(
        name="huge",
        vectors=(VectorField(name="vector", dim=4096, metric=Metric.COSINE, index=hnsw),),
    )
    with connect(dump) as conn:
        conn.create(schema)
        ids = [f"r{i}" for i in range(ROWS)]
        conn.upsert("huge", build_batch(schema, ids, {"vector": _unit(ROWS, 4096)}))
        conn.finalize("huge")
    target = pgvector_uri(pg_database())
    refused = cli("copy", dump, target, "-c", "huge", "--json")
    assert refused.returncode == 2, refused.stderr
    assert "has 4096 dimensions; pgvector indexes at most 4,000" in refused.stderr
    assert "vectors: {vector: {index: {kind: flat}}}" in refused.stderr
    with connect(target) as conn:
        assert "huge" not in conn.list_collections()
    (tmp_path / "map.yaml").write_text("vectors:\n  vector: {index: {kind: flat}}\n")
    copied = cli_ok("copy", dump, target, "-c", "huge", "--map", str(tmp_path / "map.yaml"))
    assert copied["verified"] and copied["rows_written"] == ROWS


def _halfvec_store(dsn: str, table: str) -> Any:
    """LlamaIndex's ``PGVectorStore(use_halfvec=True, use_jsonb=True)`` on ``dsn``."""
    from llama_index.vector_stores.postgres import PGVectorStore
    from sqlalchemy.engine import make_url

    def url(driver: str) -> str:
        return make_url(dsn).set(drivername=f"postgresql+{driver}").render_as_string(False)

    return PGVectorStore.from_params(
        connection_string=url("psycopg2"),
        async_connection_string=url("asyncpg"),
        table_name=table,
        embed_dim=8,
        use_halfvec=True,
        use_jsonb=True,
    )


def _nearest(dsn: str, table: str, query: list[float]) -> list[str]:
    from llama_index.core.vector_stores.types import VectorStoreQuery

    store = _halfvec_store(dsn, table)
    try:
        found = store.query(VectorStoreQuery(query_embedding=query, similarity_top_k=5))
        return [str(n.node_id) for n in found.nodes]
    finally:
        close_async_store(store)


def test_a_llamaindex_halfvec_store_is_read_and_copied(pg_database: Callable[[], str]) -> None:
    """``use_halfvec=True`` keeps embeddings in a halfvec column: the layout read it with
    vector_send(halfvec), which does not exist, and failed. Read widened (exactly), copied
    into a new table the application's own query gives the same nodes; writing into an
    existing halfvec table is refused before anything is written."""
    require_module("llama_index.vector_stores.postgres")
    from llama_index.core.schema import TextNode

    source = pg_database()
    vectors = np.random.default_rng(8).normal(size=(ROWS, 8)).astype(np.float16)
    store = _halfvec_store(source, "half")
    store.add(
        [
            TextNode(id_=str(uuid.UUID(int=i + 1)), text=f"t{i}", embedding=v.tolist())
            for i, v in enumerate(vectors.astype(np.float32))
        ]
    )
    close_async_store(store)
    src = pgvector_uri(source, "llamaindex")
    copied = cli_ok("copy", src, src, "-c", "half", "--target-collection", "copied")
    assert copied["verified"] and copied["rows_written"] == ROWS
    with connect(src) as conn:
        got = conn.fetch("copied", [str(uuid.UUID(int=1))]).column("vector").to_pylist()
    assert got == [vectors[0].astype(np.float32).tolist()]  # float16 widened exactly
    query = vectors[3].astype(np.float32).tolist()
    assert _nearest(source, "copied", query) == _nearest(source, "half", query)

    again = cli("copy", src, src, "-c", "copied", "--target-collection", "half",
                "--if-exists", "reuse")  # fmt: skip
    assert again.returncode == 2 and "is halfvec (float16)" in again.stderr, again.stderr
