"""Full-text search PostgreSQL computes from an application's text, driven through the CLI:
a tsvector column GENERATED from the text (with its GIN index), a GIN index on
``to_tsvector(...)``, LlamaIndex's hybrid ``text_search_tsv``. Read as full-text search over
the document (not as a JSON field), built again on a pgvector or LanceDB target so that the
application's keyword queries find the same records with the same ranks, refused where a
target cannot build it until the mapping leaves it behind, and never written into an
application's table that has none."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from tests.conftest import require_module
from tests.e2e.helpers import cli, cli_ok, close_async_store, pgvector_uri
from vecmigrate.connectors import connect

ROWS = 40
WORDS = np.array(["alpha", "beta", "gamma", "delta", "running", "runs", "ran", "the", "foxes"])


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _text(i: int) -> str:
    """Six words (repeats give ranks that differ) and the record's own."""
    return " ".join(np.random.default_rng(i).choice(WORDS, 6)) + f" item{i}"


def _app_table(dsn: str, name: str, text_search: str) -> None:
    """An application's table: bigint key, ``content`` text, ``title``, cosine HNSW index,
    and ``text_search`` (column definitions or a statement with {t} for the table)."""
    vectors = np.random.default_rng(3).normal(size=(ROWS, 8)).astype(np.float32)
    columns = "id bigint PRIMARY KEY, title text, content text, embedding vector(8)"
    with psycopg.connect(dsn, autocommit=True) as db:
        extra = "" if text_search.startswith("CREATE") else f", {text_search}"
        db.execute(f"CREATE TABLE {name} ({columns}{extra})")
        db.execute(f"CREATE INDEX ON {name} USING hnsw (embedding vector_cosine_ops)")
        if text_search.startswith("CREATE"):
            db.execute(text_search.format(t=name))
        with db.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {name} (id, title, content, embedding) VALUES (%s, %s, %s, %s)",
                [(i, f"t{i}", _text(i), str(vectors[i].tolist())) for i in range(ROWS)],
            )


def _ranked(dsn: str, table: str, match: str, words: str) -> list[tuple[int, float]]:
    """The application's keyword query: ids and ts_rank of the records ``match`` finds."""
    query = (
        f"SELECT id, ts_rank({match}, q) FROM {table}, plainto_tsquery('english', %s) q "
        f"WHERE {match} @@ q ORDER BY 2 DESC, 1"
    )
    with psycopg.connect(dsn) as db:
        return [(int(i), round(float(r), 6)) for i, r in db.execute(query, (words,))]  # type: ignore[arg-type]


def _indexes(dsn: str, table: str) -> list[str]:
    with psycopg.connect(dsn) as db:
        rows = db.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,))
        return [str(r[0]) for r in rows]


def _full_text(uri: str, name: str) -> list[dict[str, Any]]:
    (info,) = cli_ok("inspect", uri, "-c", name)["collections"]
    return list(info["full_text"])


def test_a_generated_tsvector_is_built_again_on_pgvector_and_lancedb(
    postgres: Any, pg_database: Callable[[], str], tmp_path: Path
) -> None:
    name = _name("docs")
    generated = "tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED"
    _app_table(postgres.dsn, name, generated)
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"CREATE INDEX {name}_tsv ON {name} USING gin (tsv)")
    want = _ranked(postgres.dsn, name, "tsv", "run")
    assert len(want) >= 10  # "running", "runs": stemmed by the english configuration

    (ft,) = _full_text(postgres.uri(), name)  # not a JSON field holding the tsvector's text
    assert ft["name"] == "tsv" and ft["analyzer"] == {"config": "english"}
    (info,) = cli_ok("inspect", postgres.uri(), "-c", name)["collections"]
    assert "tsv" not in {m["name"] for m in info["metadata"]}

    other = pg_database()
    copied = cli_ok("copy", postgres.uri(), pgvector_uri(other), "-c", name)
    assert copied["verified"] and copied["rows_written"] == ROWS
    assert any(d.startswith("tsv: full-text search") for d in copied["decisions"])
    assert _ranked(other, name, "tsv", "run") == want  # same hits, same ranks
    assert any("USING gin (tsv)" in i for i in _indexes(other, name))

    # Through a dump and LanceDB: an FTS index on the document; back on pgvector, the
    # generated column again (LanceDB's tokenizer settings are not PostgreSQL's: 'simple').
    dump = f"dump://{tmp_path / 'dump'}"
    assert cli_ok("copy", pgvector_uri(other), dump, "-c", name)["verified"]
    lance = f"lancedb://{tmp_path / 'lance'}"
    assert cli_ok("copy", dump, lance, "-c", name)["verified"]
    table = require_module("lancedb").connect(str(tmp_path / "lance")).open_table(name)
    hits = table.search("gamma", query_type="fts").limit(ROWS).to_arrow()["id"].to_pylist()
    assert sorted(hits) == [i for i in range(ROWS) if "gamma" in _text(i).split()]
    back = pg_database()
    assert cli_ok("copy", lance, pgvector_uri(back), "-c", name)["verified"]
    found = _ranked(back, name, _full_text(pgvector_uri(back), name)[0]["name"], "gamma")
    assert sorted(i for i, _ in found) == sorted(hits)


def test_a_gin_index_on_to_tsvector_is_built_again_as_an_index(
    postgres: Any, pg_database: Callable[[], str]
) -> None:
    name = _name("notes")
    _app_table(
        postgres.dsn, name, "CREATE INDEX {t}_fts ON {t} USING gin (to_tsvector('simple', content))"
    )
    (ft,) = _full_text(postgres.uri(), name)
    assert ft["name"] == f"{name}_fts" and ft["analyzer"] == {"config": "simple"}
    other = pg_database()
    assert cli_ok("copy", postgres.uri(), pgvector_uri(other), "-c", name)["verified"]
    (index,) = [i for i in _indexes(other, name) if "to_tsvector" in i]
    assert "USING gin (to_tsvector('simple'::regconfig, document))" in index
    match = "to_tsvector('simple', {})"
    assert _ranked(other, name, match.format("document"), "gamma") == _ranked(
        postgres.dsn, name, match.format("content"), "gamma"
    )


def test_a_tsvector_over_other_columns_is_refused_until_left_behind(
    postgres: Any, pg_database: Callable[[], str], tmp_path: Path
) -> None:
    name = _name("titled")
    over_two = (
        "tsv tsvector GENERATED ALWAYS AS "
        "(to_tsvector('english', coalesce(title, '') || ' ' || content)) STORED"
    )
    _app_table(postgres.dsn, name, over_two)
    (info,) = cli_ok("inspect", postgres.uri(), "-c", name)["collections"]
    assert "tsv" in info["uncarried"] and not info["full_text"]
    other = pg_database()
    refused = cli("copy", postgres.uri(), pgvector_uri(other), "-c", name, "--json")
    assert refused.returncode == 2, refused.stderr
    assert "vectors: {tsv: {drop: true}}" in refused.stderr
    (tmp_path / "map.yaml").write_text("vectors:\n  tsv: {drop: true}\n")
    mapped = ("--map", str(tmp_path / "map.yaml"))
    copied = cli_ok("copy", postgres.uri(), pgvector_uri(other), "-c", name, *mapped)
    assert copied["rows_written"] == ROWS and copied["verified"]


def test_a_target_without_full_text_search_refuses_until_left_behind(
    postgres: Any, tmp_path: Path
) -> None:
    name = _name("docs")
    generated = "tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED"
    _app_table(postgres.dsn, name, generated)
    chroma = f"chroma://{tmp_path / 'chroma'}"
    refused = cli("copy", postgres.uri(), chroma, "-c", name, "--json")
    assert refused.returncode == 2, refused.stderr
    assert "field 'tsv' is full-text search" in refused.stderr
    assert "vectors: {tsv: {drop: true}}" in refused.stderr
    with connect(chroma) as conn:
        assert name not in conn.list_collections()
    (tmp_path / "map.yaml").write_text("vectors:\n  tsv: {drop: true}\n")
    copied = cli_ok("copy", postgres.uri(), chroma, "-c", name, "--map", str(tmp_path / "map.yaml"))
    assert copied["rows_written"] == ROWS
    assert any("tsv: full-text search over document left behind" in d for d in copied["decisions"])


def test_an_application_table_takes_records_only_where_it_computes_full_text(
    postgres: Any, pg_database: Callable[[], str]
) -> None:
    name = _name("docs")
    generated = "tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED"
    _app_table(postgres.dsn, name, generated)
    plain, searched = pg_database(), pg_database()
    columns = "id bigint PRIMARY KEY, title text, content text, embedding vector(8)"
    with psycopg.connect(plain, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} ({columns})")
    with psycopg.connect(searched, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} ({columns}, {generated.replace('tsv', 'words', 1)})")
    reuse = ("-c", name, "--if-exists", "reuse", "--json")
    refused = cli("copy", postgres.uri(), pgvector_uri(plain), *reuse)
    assert refused.returncode == 2, refused.stderr
    assert "has no full-text search over its document column" in refused.stderr
    assert "nothing was written" in refused.stderr
    with psycopg.connect(plain) as db:
        assert db.execute(f"SELECT count(*) FROM {name}").fetchone() == (0,)
    copied = cli("copy", postgres.uri(), pgvector_uri(searched), *reuse)
    assert copied.returncode == 0, copied.stderr
    assert _ranked(searched, name, "words", "run") == _ranked(postgres.dsn, name, "tsv", "run")


def _llamaindex_store(dsn: str, table: str, nodes: list[Any] | None = None) -> Any:
    from llama_index.vector_stores.postgres import PGVectorStore
    from sqlalchemy.engine import make_url

    def url(driver: str) -> str:
        return make_url(dsn).set(drivername=f"postgresql+{driver}").render_as_string(False)

    store = PGVectorStore.from_params(
        connection_string=url("psycopg2"),
        async_connection_string=url("asyncpg"),
        table_name=table,
        embed_dim=8,
        hybrid_search=True,
        text_search_config="english",
    )
    if nodes:
        store.add(nodes)
    return store


def _keyword_hits(dsn: str, table: str) -> list[tuple[str, float]]:
    """LlamaIndex's own TEXT_SEARCH query (its text_search_tsv, ts_rank)."""
    from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

    store = _llamaindex_store(dsn, table)
    try:
        query = VectorStoreQuery(
            query_str="run fox", mode=VectorStoreQueryMode.TEXT_SEARCH, sparse_top_k=ROWS
        )
        found = store.query(query)
        return [
            (str(n.node_id), round(float(s), 6))
            for n, s in zip(found.nodes, found.similarities or [], strict=True)
        ]
    finally:
        close_async_store(store)


def test_llamaindex_hybrid_search_is_carried_to_another_database(
    pg_database: Callable[[], str], tmp_path: Path
) -> None:
    require_module("llama_index.vector_stores.postgres")
    from llama_index.core.schema import TextNode

    source, target = pg_database(), pg_database()
    vectors = np.random.default_rng(5).normal(size=(ROWS, 8))
    nodes = [
        TextNode(id_=str(uuid.UUID(int=i + 1)), text=_text(i), embedding=vectors[i].tolist())
        for i in range(ROWS)
    ]
    close_async_store(_llamaindex_store(source, "hybrid", nodes))
    want = _keyword_hits(source, "hybrid")
    assert len(want) >= 10

    (ft,) = _full_text(pgvector_uri(source, "llamaindex"), "hybrid")
    assert ft["name"] == "text_search_tsv"
    copied = cli_ok(
        "copy",
        pgvector_uri(source, "llamaindex"),
        pgvector_uri(target, "llamaindex"),
        "-c",
        "hybrid",
    )
    assert copied["verified"] and copied["rows_written"] == ROWS
    assert _keyword_hits(target, "hybrid") == want

    # Into a LlamaIndex table without hybrid search: refused before anything is written.
    src, dst = pgvector_uri(source, "llamaindex"), pgvector_uri(target, "llamaindex")
    dropped = tmp_path / "drop.yaml"
    dropped.write_text("vectors:\n  text_search_tsv: {drop: true}\n")
    plain = ("-c", "hybrid", "--target-collection", "plain")
    assert cli_ok("copy", src, dst, *plain, "--map", str(dropped))["rows_written"] == ROWS
    again = cli("copy", src, dst, *plain, "--if-exists", "reuse", "--restart")
    assert again.returncode == 2 and "has no hybrid search" in again.stderr, again.stderr

    refused = cli(
        "copy",
        pgvector_uri(source, "llamaindex"),
        pgvector_uri(target, "langchain"),
        "-c",
        "hybrid",
    )
    assert refused.returncode == 2
    assert "LangChain's PGVector keeps no full-text search" in refused.stderr
    assert "vectors: {text_search_tsv: {drop: true}}" in refused.stderr


def test_into_milvus_it_becomes_a_bm25_function_over_the_document(
    postgres: Any, tmp_path: Path
) -> None:
    require_module("milvus_lite")
    name = _name("docs")
    generated = "tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED"
    _app_table(postgres.dsn, name, generated)
    target = tmp_path / "m.db"
    copied = cli_ok("copy", postgres.uri(), f"milvus-lite://{target}", "-c", name)
    assert copied["verified"] and copied["rows_written"] == ROWS
    from pymilvus import MilvusClient

    client = MilvusClient(str(target))
    try:
        hits = client.search(name, data=["gamma"], anns_field="tsv", limit=ROWS)[0]
    finally:
        client.close()
    # Milvus's standard analyzer (PostgreSQL's configuration is not Milvus's): the records
    # holding the word match, scored by Milvus's BM25.
    assert sorted(h["id"] for h in hits) == [i for i in range(ROWS) if "gamma" in _text(i).split()]
