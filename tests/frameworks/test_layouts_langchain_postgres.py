"""LangChain's own ``langchain-postgres`` (0.0.19) against vecmigrate (issue #14), driven in
the side venv ``.venv-fw2`` (tests/frameworks/side.py, side_langchain_postgres.py): it pins
pgvector<0.4 and cannot be installed beside the project. Stores are built and queried by
the package itself; vecmigrate runs in the main venv; the MiniLM vectors are computed here
and sent along, so the side venv needs no model.

* (a) ``langchain_postgres.PGVector`` -> LangChain Chroma (``layout=langchain``): the 50
  filtered queries through langchain-chroma give the documents and metadata the source's
  own retriever gives;
* (b) LangChain Chroma -> ``pgvector://...?layout=langchain``, into a database where
  langchain-postgres' tables (and another collection) already exist, and into an empty
  one, where vecmigrate creates the tables as langchain-postgres does; both read back
  through ``langchain_postgres.PGVector``;
* (c) a ``PGVectorStore`` table (``PGEngine.init_vectorstore_table``: one table per store,
  some metadata keys as columns, the rest in ``langchain_metadata``) read as an
  application's table by plain ``pgvector://`` and copied to LanceDB whole.

Plus the side runner's own failures (a failing, unknown or hanging op; a missing venv).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require_module
from tests.frameworks import compare, kit, side
from tests.frameworks.side import run_side, side_python, vectors_for
from tests.frameworks.test_layouts_pgvector import (
    _chroma_source,
    _copy_and_verify,
    _queries,
    _rows,
)
from vecmigrate.connectors import connect
from vecmigrate.connectors import frameworks as fw
from vecmigrate.model import Metric

SCRIPT = "side_langchain_postgres.py"
N = 200  # texts in each store (_queries assumes 200)
QUERIES = 50

Hit = kit.Hit


# --------------------------------------------------------------------------- helpers


def _require(*kinds: str) -> None:
    side_python()
    require_module("psycopg")
    compare.require_kinds(*kinds)


@pytest.fixture
def database(postgres: Any) -> Iterator[Callable[[], str]]:
    """Fresh databases (with the vector extension) on the session's PostgreSQL."""
    yield from compare.fresh_databases(postgres.dsn, "lcpg_")


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    return compare.text_vectors()


def _pg_store(
    url: str, rows: list[kit.Text], collection: str = "langchain", ids: list[str] | None = None
) -> kit.Store:
    """A ``langchain_postgres.PGVector`` store of ``rows`` (ids: the doc ids by default)."""
    return kit.Store(
        "langchain-pgvector",
        "langchain",
        "pgvector",
        url,
        collection,
        "langchain_pg_embedding",
        ids or [r.id for r in rows],
        rows,
        flat_tags=False,
    )


def _build_pgvector(store: kit.Store) -> None:
    texts = [r.document for r in store.rows]
    reply = run_side(
        SCRIPT,
        {
            "op": "build_pgvector",
            "url": store.location,
            "collection": store.collection,
            "texts": texts,
            "metadatas": [store.metadata(r) for r in store.rows],
            "ids": store.ids,
            "dim": kit.DIM,
            "vectors": vectors_for(texts),
        },
    )
    assert reply["ids"] == store.ids


def _search_pgvector(
    store: kit.Store, queries: list[tuple[str, int, kit.Where]]
) -> list[list[Hit]]:
    """The queries through ``langchain_postgres.PGVector.similarity_search_with_score``."""
    reply = run_side(
        SCRIPT,
        {
            "op": "search_pgvector",
            "url": store.location,
            "collection": store.collection,
            "queries": [list(q) for q in queries],
            "vectors": vectors_for(q for q, _, _ in queries),
        },
    )
    return [[(t, md, float(s)) for t, md, s in hits] for hits in reply["hits"]]


def _assert_hits_agree(
    queries: list[tuple[str, int, kit.Where]],
    before: list[list[Hit]],
    after: list[list[Hit]],
    vectors: dict[str, np.ndarray],
) -> None:
    """Same documents and metadata (ties aside, see ``compare.assert_same_hits``), every
    hit passing the query's filter, and the filters letting enough through to mean
    something."""
    assert len(before) == len(after) == QUERIES
    compare.assert_hits_agree(queries, before, after, vectors, QUERIES * 3)


def _columns(url: str, table: str) -> list[tuple[Any, ...]]:
    """(name, type, nullable, default) of each column of ``public.<table>``, in order."""
    return _rows(
        url,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (f"public.{table}",),
    )


def _constraints(url: str, table: str) -> list[tuple[Any, ...]]:
    """(type, definition) of each constraint and index definition of ``public.<table>``."""
    cons = _rows(
        url,
        "SELECT contype::text, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass ORDER BY 1, 2",
        (f"public.{table}",),
    )
    indexes = _rows(
        url,
        "SELECT 'index', regexp_replace(indexdef, ' ON public\\.\\w+ ', ' ON ') FROM pg_indexes "
        "WHERE schemaname = 'public' AND tablename = %s ORDER BY 2",
        (table,),
    )
    # Constraint and index names are whatever each tool chose (pkey names differ).
    return sorted(cons) + [(k, _unnamed(d)) for k, d in indexes]


def _unnamed(indexdef: str) -> str:
    head, _, tail = indexdef.partition(" ON ")
    kind = head.rsplit(" ", 1)[0]  # "CREATE [UNIQUE] INDEX"
    return f"{kind} ON {tail}"


# --------------------------------------------------------------------------- acceptance


def test_a_langchain_postgres_to_langchain_chroma(
    tmp_path: Path,
    database: Callable[[], str],
    vectors: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _require("langchain-chroma")
    monkeypatch.chdir(tmp_path)
    source = _pg_store(database(), list(kit.texts()[:N]))
    _build_pgvector(source)
    target = source.retarget(tmp_path / "chroma", kind="langchain-chroma")

    # langchain-postgres' variant of the tables, its ids (the table's key) as record ids.
    with connect(source.uri()) as conn:
        assert conn.list_collections() == ["langchain"]
        schema = conn.describe("langchain")
        assert schema.engine_settings["pgvector.framework"]["variant"] == "langchain-postgres"
        assert schema.vector.dim == kit.DIM
        v = schema.vector
        assert (v.metric, v.metric_source) == fw.search_metric("langchain", "pgvector")
        # vecmigrate's own filtered search on these tables: the query's record first.
        probe = source.rows[5]
        words = probe.metadata["words"]
        (found,), _ = conn.search(
            "langchain",
            np.asarray([probe.vector], np.float32),
            5,
            filter={"words": {"$gte": words}},
        )
        batch = conn.fetch("langchain", [source.ids[3], source.ids[150]])
    assert found[0] == probe.id and len(found) == 5
    by_id = {r.id: r for r in source.rows}
    assert all(by_id[i].metadata["words"] >= words for i in found)
    assert batch.column("id").to_pylist() == [source.ids[3], source.ids[150]]
    assert batch.column("document").to_pylist() == [
        source.rows[3].document,
        source.rows[150].document,
    ]

    _copy_and_verify(source.uri(), _chroma_source(target)[0], "langchain")

    queries = _queries(source)
    before = _search_pgvector(source, queries)
    after = kit.search_many(target, queries)
    _assert_hits_agree(queries, before, after, vectors)


@pytest.mark.parametrize("tables", ["existing", "created"])
def test_b_langchain_chroma_to_langchain_postgres(
    tables: str,
    tmp_path: Path,
    database: Callable[[], str],
    vectors: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _require("langchain-chroma")
    monkeypatch.chdir(tmp_path)
    source = kit.build_langchain_chroma(tmp_path / "chroma", n=N)
    url = database()
    # Another collection, written by langchain-postgres before the copy: it made the
    # tables (existing), or the same in a database of its own (created, compared below).
    # Ten of its ids are ids of the copy, with other texts: langchain-postgres' id is the
    # table's key, so writing them moves them to the copy's collection, as its upsert does.
    notes = list(kit.texts()[400:420])
    other = _pg_store(
        database() if tables == "created" else url,
        notes,
        "notes",
        [*source.ids[190:200], *(r.id for r in notes[10:])],
    )
    _build_pgvector(other)
    target = _pg_store(url, source.rows)

    _copy_and_verify(_chroma_source(source)[0], target.uri(), "langchain")

    if tables == "created":
        # vecmigrate made the tables as langchain-postgres makes them: same columns,
        # types, keys and indexes, and so its PGVector reads them.
        for table in ("langchain_pg_collection", "langchain_pg_embedding"):
            assert _columns(url, table) == _columns(other.location, table), table
            assert _constraints(url, table) == _constraints(other.location, table), table
    else:
        # The other collection keeps the ten ids that are its own, and the new one is
        # beside it.
        got = _rows(
            url,
            "SELECT c.name, count(e.id) FROM langchain_pg_collection c "
            "LEFT JOIN langchain_pg_embedding e ON e.collection_id = c.uuid GROUP BY 1 ORDER BY 1",
        )
        assert got == [("langchain", N), ("notes", 10)]
        kept = notes[10]
        ((hit, *_),) = _search_pgvector(other, [(kept.document, 3, None)])
        assert hit[:2] == (kept.document, other.metadata(kept))

    stored = _rows(url, "SELECT id, document, cmetadata FROM langchain_pg_embedding ORDER BY id")
    by_id = {r.id: r for r in source.rows}
    mine = [r for r in stored if r[0] in by_id]
    assert [r[0] for r in mine] == sorted(source.ids)
    assert all((d, md) == (by_id[i].document, source.metadata(by_id[i])) for i, d, md in mine)

    queries = _queries(source)
    before = kit.search_many(source, queries)
    after = _search_pgvector(target, queries)
    _assert_hits_agree(queries, before, after, vectors)


def test_c_pgvectorstore_table_read_as_an_application_table(
    tmp_path: Path,
    database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _require()
    require_module("lancedb")
    monkeypatch.chdir(tmp_path)
    info = run_side(SCRIPT, {"op": "info", "vectors": {}})
    assert info["version"] == "0.0.19"
    assert info["pgvectorstore"], "langchain-postgres 0.0.19 has PGVectorStore and PGEngine"

    url = database()
    rows = list(kit.texts()[:N])
    texts = [r.document for r in rows]
    columns = [["package", "TEXT"], ["module", "TEXT"], ["words", "INTEGER"]]
    reply = run_side(
        SCRIPT,
        {
            "op": "build_pgvectorstore",
            "url": url,
            "table": "app_docs",
            "texts": texts,
            "metadatas": [r.meta() for r in rows],
            "ids": [r.uuid for r in rows],  # the id column is a UUID by default
            "dim": kit.DIM,
            "metadata_columns": columns,
            "vectors": vectors_for(texts),
        },
    )
    assert reply["ids"] == [r.uuid for r in rows]

    source = "pgvector://" + url.split("://", 1)[1]
    by_id = {r.uuid: r for r in rows}
    # The metadata PGVectorStore gives back: its columns' and langchain_metadata's keys.
    probe = rows[7]
    reply = run_side(
        SCRIPT,
        {
            "op": "search_pgvectorstore",
            "url": url,
            "table": "app_docs",
            "metadata_columns": columns,
            "queries": [[probe.document, 3, {"package": probe.metadata["package"]}]],
            "vectors": vectors_for([probe.document]),
        },
    )
    ((first, *rest),) = reply["hits"]
    assert first[:2] == [probe.document, probe.meta()]
    assert all(md["package"] == probe.metadata["package"] for _, md, _ in rest)

    # Inferred: key langchain_id (the primary key), text content, vector embedding; the
    # metadata columns and langchain_metadata's keys (the JSON column PGVectorStore keeps
    # the rest in) as fields: the metadata PGVectorStore returns for a Document. Naming the
    # column (?metadata_field=) gives the same.
    with connect(source) as conn:
        schema = conn.describe("app_docs")
    v = schema.vector
    assert (v.name, v.dim, v.metric) == ("embedding", kit.DIM, Metric.COSINE)  # unit vectors
    assert schema.has_document
    assert {"package", "module", "words"} <= {m.name for m in schema.metadata}
    assert "langchain_metadata" not in {m.name for m in schema.metadata}
    for params, out in (
        ("", tmp_path / "plain"),
        ("?metadata_field=langchain_metadata", tmp_path / "named"),
    ):
        _copy_and_verify(source + params, f"lancedb://{out}", "app_docs")
        records = _lance_records(out, "app_docs")
        assert [r["id"] for r in records] == sorted(by_id)
        for rec in records:
            row = by_id[rec["id"]]
            assert rec["document"] == row.document
            assert np.allclose(rec["embedding"], row.vector, atol=1e-6)
            assert rec["metadata"] == row.meta(), rec["id"]


def _lance_records(path: Path, table: str) -> list[dict[str, Any]]:
    """The rows of a LanceDB table vecmigrate wrote, ``metadata`` with ``metadata_extra``'s
    keys merged in (where a key no typed field holds goes), sorted by id."""
    import lancedb

    rows = lancedb.connect(str(path)).open_table(table).to_arrow().to_pylist()
    for row in rows:
        row["metadata"] = dict(row["metadata"] or {})
        row["metadata"].update(json.loads(row.pop("metadata_extra", None) or "{}"))
        row["id"] = str(row["id"])
    return sorted(rows, key=lambda r: r["id"])


# --------------------------------------------------------------------------- the runner


def test_side_runner_reports_failures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A failing, unknown or hanging op fails with the script's own stderr; a text sent
    without its vector is named; a missing side venv skips, or fails under CI."""
    side_python()
    with pytest.raises(side.SideScriptError, match="unknown op 'nope'"):
        run_side(SCRIPT, {"op": "nope"})
    with pytest.raises(side.SideScriptError, match=r"exited 1(.|\n)*expected a postgresql://"):
        run_side(
            SCRIPT,
            {"op": "search_pgvector", "url": "mysql://x/y", "collection": "c", "vectors": {}},
        )
    with pytest.raises(side.SideScriptError, match="ran over"):
        run_side(SCRIPT, {"op": "info"}, timeout=0.01)
    with pytest.raises(KeyError, match="no vector was sent for the text 'unknown'"):
        side.GivenEmbeddings({"known": [1.0]}).embed_query("unknown")

    monkeypatch.setattr(side, "SIDE_VENV", tmp_path / "missing")
    monkeypatch.delenv("VECMIGRATE_REQUIRE_ENGINES", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"make \.venv-fw2/\.installed"):
        side_python()
    monkeypatch.setenv("VECMIGRATE_REQUIRE_ENGINES", "1")
    with pytest.raises(pytest.fail.Exception, match="missing or incomplete"):
        side_python()
