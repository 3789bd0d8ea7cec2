"""Index parameters are read from what each engine's own client built and mapped onto the
target's index, not left to the target's defaults: pgvector's WITH (m, ef_construction,
lists), Qdrant's HNSW config (a vector's own over the collection's), LanceDB's HNSW and PQ
settings. A copy through pgvector -> Qdrant -> LanceDB -> pgvector keeps M and
ef_construction at every hop."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from tests.conftest import require_module
from tests.e2e.helpers import cli_ok, pgvector_uri

ROWS = 5000  # LanceDB builds no vector index below 5,000 rows
DIM = 8


def _vectors() -> np.ndarray:
    return np.random.default_rng(11).normal(size=(ROWS, DIM)).astype(np.float32)


def _index(uri: str, name: str) -> dict[str, Any]:
    (info,) = cli_ok("inspect", uri, "-c", name)["collections"]
    return dict(info["vectors"][0]["index"])


def _pg_index(dsn: str, table: str) -> str:
    with psycopg.connect(dsn) as db:
        rows = db.execute(
            "SELECT indexdef FROM pg_indexes "
            "WHERE tablename = %s AND indexdef ~ 'USING (hnsw|ivfflat)'",
            (table,),
        ).fetchall()
    (row,) = rows
    return str(row[0])


def test_hnsw_settings_survive_pgvector_qdrant_lancedb_and_back(
    postgres: Any, pg_database: Callable[[], str], tmp_path: Path
) -> None:
    require_module("qdrant_client")
    require_module("lancedb")
    name = f"hnsw_{uuid.uuid4().hex[:8]}"
    vectors = _vectors()
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, body text, emb vector({DIM}))")
        db.execute(
            f"CREATE INDEX ON {name} USING hnsw (emb vector_l2_ops) "
            "WITH (m = 24, ef_construction = 100)"
        )
        with db.cursor() as cur, cur.copy(f"COPY {name} FROM STDIN") as copy:
            for i in range(ROWS):
                copy.write_row((i, f"text {i}", str(vectors[i].tolist())))
    assert _index(postgres.uri(), name) == {
        "kind": "hnsw",
        "params": {"M": 24, "ef_construction": 100},
    }

    qdrant = f"qdrant+local://{tmp_path / 'q'}"
    assert cli_ok("copy", postgres.uri(), qdrant, "-c", name)["verified"]
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "q"))
    try:
        params = client.get_collection(name).config.params.vectors
        (hnsw,) = [p.hnsw_config for p in params.values()]  # type: ignore[union-attr]
        assert (hnsw.m, hnsw.ef_construct) == (24, 100)
    finally:
        client.close()

    lance = f"lancedb://{tmp_path / 'l'}"
    assert cli_ok("copy", qdrant, lance, "-c", name)["verified"]
    table = require_module("lancedb").connect(str(tmp_path / "l")).open_table(name)
    (config,) = table.list_indices()
    assert config.index_details["hnsw"]["max_connections"] == 24
    assert config.index_details["hnsw"]["construction_ef"] == 100

    back = pg_database()
    assert cli_ok("copy", lance, pgvector_uri(back), "-c", name)["verified"]
    assert "WITH (m='24', ef_construction='100')" in _pg_index(back, name)


def test_indexes_built_by_the_engines_own_clients_give_their_parameters(
    postgres: Any, pg_database: Callable[[], str], tmp_path: Path
) -> None:
    require_module("qdrant_client")
    lancedb = require_module("lancedb")
    import pyarrow as pa
    from qdrant_client import QdrantClient, models

    vectors = _vectors()
    ids = [str(uuid.UUID(int=i + 1)) for i in range(ROWS)]

    # LanceDB: an IVF_HNSW_SQ index with the application's own M and ef_construction.
    db = lancedb.connect(str(tmp_path / "l"))
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)
    table = db.create_table("docs", pa.table({"id": ids, "vector": column}))
    table.create_index(metric="cosine", index_type="IVF_HNSW_SQ", m=28, ef_construction=90)
    lance = f"lancedb://{tmp_path / 'l'}"
    assert _index(lance, "docs")["params"] == {"M": 28, "ef_construction": 90}
    target = pg_database()
    assert cli_ok("copy", lance, pgvector_uri(target), "-c", "docs")["verified"]
    assert "WITH (m='28', ef_construction='90')" in _pg_index(target, "docs")

    # Qdrant: a vector's own HNSW m, the collection's ef_construct.
    client = QdrantClient(path=str(tmp_path / "q"))
    client.create_collection(
        "docs",
        vectors_config={
            "dense": models.VectorParams(
                size=DIM, distance=models.Distance.DOT, hnsw_config=models.HnswConfigDiff(m=32)
            )
        },
    )
    client.upsert(
        "docs",
        [
            models.PointStruct(id=ids[i], vector={"dense": vectors[i].tolist()}, payload={})
            for i in range(200)
        ],
    )
    client.close()
    qdrant = f"qdrant+local://{tmp_path / 'q'}"
    assert _index(qdrant, "docs")["params"] == {"M": 32, "ef_construction": 100}
    other = pg_database()
    assert cli_ok("copy", qdrant, pgvector_uri(other), "-c", "docs")["verified"]
    assert "WITH (m='32', ef_construction='100')" in _pg_index(other, "docs")

    # pgvector IVFFlat: its lists.
    name = f"ivf_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as pg:
        pg.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, emb vector({DIM}))")
        pg.execute(f"INSERT INTO {name} VALUES (1, %s), (2, %s)", ("[1,0,0,0,0,0,0,0]",) * 2)
        pg.execute(f"CREATE INDEX ON {name} USING ivfflat (emb vector_cosine_ops) WITH (lists = 7)")
    assert _index(postgres.uri(), name) == {"kind": "ivf_flat", "params": {"nlist": 7}}
    assert cli_ok("copy", postgres.uri(), pgvector_uri(other), "-c", name)["verified"]
    assert "WITH (lists='7')" in _pg_index(other, name)


def _indexed(uri: str, name: str) -> set[str]:
    (info,) = cli_ok("inspect", uri, "-c", name)["collections"]
    return {m["name"] for m in info["metadata"] if m["indexed"]}


def test_indexes_serving_filters_are_built_again_on_the_target(
    postgres: Any, pg_database: Callable[[], str], tmp_path: Path
) -> None:
    """An application's btree on a column, its index on a JSON key and its GIN on an
    array: the filters they serve are served on the target too (pgvector, LanceDB)."""
    lancedb = require_module("lancedb")
    name = f"filtered_{uuid.uuid4().hex[:8]}"
    vectors = _vectors()[:300]
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(
            f"CREATE TABLE {name} (id bigint PRIMARY KEY, body text, source text, year int, "
            f"tags text[], meta jsonb, emb vector({DIM}))"
        )
        db.execute(f"CREATE INDEX ON {name} (source)")
        db.execute(f"CREATE INDEX ON {name} USING gin (tags)")
        db.execute(f"CREATE INDEX ON {name} ((meta ->> 'page'))")
        with db.cursor() as cur, cur.copy(f"COPY {name} FROM STDIN") as copy:
            for i in range(len(vectors)):
                meta = f'{{"page": "p{i % 7}", "lang": "en"}}'
                row = (i, f"t{i}", f"s{i % 5}", 2000 + i % 3, ["a", "b"][: i % 3], meta)
                copy.write_row((*row, str(vectors[i].tolist())))
    assert _indexed(postgres.uri(), name) == {"source", "tags", "page"}

    other = pg_database()
    (tmp_path / "m.yaml").write_text("vectors:\n  emb: {metric: l2}\n")
    mapped = ("--map", str(tmp_path / "m.yaml"))
    assert cli_ok("copy", postgres.uri(), pgvector_uri(other), "-c", name, *mapped)["verified"]
    with psycopg.connect(other) as db:
        defs = [r[0] for r in db.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s",
                                         (name,))]  # fmt: skip
    assert any("btree (source)" in d for d in defs), defs
    assert any("gin (tags)" in d for d in defs), defs
    assert any("btree (page)" in d for d in defs), defs
    assert not any("(year)" in d for d in defs), defs  # not indexed on the source

    lance = f"lancedb://{tmp_path / 'l'}"
    assert cli_ok("copy", pgvector_uri(other), lance, "-c", name)["verified"]
    table = lancedb.connect(str(tmp_path / "l")).open_table(name)
    scalar = {c.columns[0]: str(c.index_type) for c in table.list_indices()}
    assert scalar == {"metadata.source": "BTree", "metadata.tags": "LabelList",
                      "metadata.page": "BTree"}  # fmt: skip
    assert _indexed(lance, name) == {"source", "tags", "page"}

    # Qdrant Edge: a payload index per field, made before the points; read back as such.
    require_module("qdrant_edge")
    edge = f"qdrant-edge://{tmp_path / 'edge'}"
    assert cli_ok("copy", pgvector_uri(other), edge, "-c", name)["verified"]
    assert _indexed(edge, name) == {"source", "tags", "page"}
    back = pg_database()
    assert cli_ok("copy", edge, pgvector_uri(back), "-c", name)["verified"]
    with psycopg.connect(back) as db:
        got = db.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (name,))
        assert sum(" (source)" in r[0] or " (tags)" in r[0] or " (page)" in r[0]
                   for r in got) == 3  # fmt: skip

    # A table LanceDB's own client indexed: its BTree on a column is read.
    import pyarrow as pa

    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)
    ids = [str(i) for i in range(len(vectors))]
    own = lancedb.connect(str(tmp_path / "app")).create_table(
        "docs",
        pa.table({"id": ids, "vector": column, "kind": [f"k{i % 4}" for i in range(len(ids))]}),
    )
    from lancedb.index import BTree

    own.create_index("kind", config=BTree())
    assert _indexed(f"lancedb://{tmp_path / 'app'}", "docs") == {"kind"}


def test_a_milvus_scalar_index_marks_its_field_and_follows_it(
    pg_database: Callable[[], str], tmp_path: Path
) -> None:
    """A collection pymilvus made with an INVERTED index on a scalar field (Milvus Lite):
    the field is indexed on a pgvector target; a field without one is not."""
    require_module("milvus_lite")
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(str(tmp_path / "m.db"))
    try:
        schema = client.create_schema(auto_id=False)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("emb", DataType.FLOAT_VECTOR, dim=DIM)
        schema.add_field("source", DataType.VARCHAR, max_length=32)
        schema.add_field("year", DataType.INT64)
        index = client.prepare_index_params()
        index.add_index("emb", index_type="FLAT", metric_type="L2")
        index.add_index("source", index_type="INVERTED")
        client.create_collection("docs", schema=schema, index_params=index)
        vectors = _vectors()[:200]
        rows = [
            {"pk": i, "emb": vectors[i].tolist(), "source": f"s{i % 4}", "year": 2000 + i % 3}
            for i in range(len(vectors))
        ]
        client.insert("docs", rows)
    finally:
        client.close()
    src = f"milvus-lite://{tmp_path / 'm.db'}"
    assert _indexed(src, "docs") == {"source"}
    target = pg_database()
    assert cli_ok("copy", src, pgvector_uri(target), "-c", "docs")["verified"]
    with psycopg.connect(target) as db:
        defs = [
            r[0] for r in db.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'docs'")
        ]
    assert any("btree (source)" in d for d in defs), defs
    assert not any("(year)" in d for d in defs), defs
