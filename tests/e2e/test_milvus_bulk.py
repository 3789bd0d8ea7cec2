"""Milvus bulk insert (``connectors/milvus/_bulk``) against the real Milvus 2.3 server:
a copy above ``bulk_insert_rows`` imports Parquet files and ends identical to an upsert
copy; below it upserts; a failed import or a lost staged file is a typed error; what a
job that died left staged is landed by the next ``finalize`` without duplicates."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, connections, utility

import vecmigrate as vm
from tests.e2e.helpers import make_dump
from vecmigrate.connectors import Connector, connect
from vecmigrate.connectors.milvus._bulk import MANIFEST, stage_dir, write_parts
from vecmigrate.connectors.milvus._bulk_stage import stage_table
from vecmigrate.connectors.milvus._records import batch_to_rows
from vecmigrate.errors import DataError, TerminalError
from vecmigrate.model import CollectionSchema, MetadataField, VectorField
from vecmigrate.records import build_batch

ROWS = 6000


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, CollectionSchema]:
    """A dump of ROWS records (16-d vectors, documents, metadata of every type)."""
    path = tmp_path_factory.mktemp("bulk-dump")
    schema = make_dump(path, ROWS, dim=16)
    return f"dump://{path}", schema


@pytest.fixture
def name() -> str:
    return f"bulk_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bulk_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bulk"
    path.mkdir()
    return path


@pytest.fixture
def using(milvus_server: Any) -> Iterator[str]:
    """A pymilvus connection of the test's own, to ask the server about import tasks."""
    alias = f"test-{uuid.uuid4().hex}"
    connections.connect(alias=alias, uri=f"http://{milvus_server.host}:{milvus_server.port}")
    yield alias
    connections.disconnect(alias)


def bulk_uri(server: Any, folder: Path, rows: int) -> str:
    return f"{server.uri}?bulk_dir={folder}&bulk_insert_rows={rows}"


def imported_rows(using: str, name: str) -> int:
    """Rows the server's completed import tasks put into ``name``."""
    tasks = utility.list_bulk_insert_tasks(collection_name=name, using=using)
    return sum(t.row_count for t in tasks if t.state_name == "Completed")


def records(conn: Connector, name: str, ids: list[Any]) -> list[dict[str, Any]]:
    """Every record of ``ids`` as stored, in id order."""
    return sorted(conn.fetch(name, ids).to_pylist(), key=lambda r: r["id"])


def all_ids() -> list[str]:
    return [f"rec-{i:07d}" for i in range(ROWS)]


def test_copy_above_threshold_bulk_inserts_records_identical_to_upserts(
    milvus_server: Any, dump: tuple[str, CollectionSchema], bulk_dir: Path, using: str, name: str
) -> None:
    src, _ = dump
    target = bulk_uri(milvus_server, bulk_dir, 1000)
    report = vm.copy(src, target, "docs", target_collection=name)
    assert report.ok and report.verified
    assert imported_rows(using, name) == ROWS  # the rows came through bulk insert
    assert not stage_dir(str(bulk_dir), "", name).exists()  # nothing left staged

    upserted = f"{name}_u"
    vm.copy(src, milvus_server.uri, "docs", target_collection=upserted)
    assert imported_rows(using, upserted) == 0
    with connect(milvus_server.uri) as conn:
        assert conn.count(name) == ROWS
        assert records(conn, name, all_ids()) == records(conn, upserted, all_ids())
        conn.drop(upserted)
    diff = vm.diff(src, target, "docs", target_collection=name)
    assert diff.equal and not diff.duplicates
    with connect(milvus_server.uri) as conn:
        conn.drop(name)


def test_copy_below_threshold_upserts(
    milvus_server: Any, dump: tuple[str, CollectionSchema], bulk_dir: Path, using: str, name: str
) -> None:
    src, _ = dump
    report = vm.copy(
        src, bulk_uri(milvus_server, bulk_dir, ROWS + 1), "docs", target_collection=name
    )
    assert report.ok and report.verified
    assert imported_rows(using, name) == 0
    assert not stage_dir(str(bulk_dir), "", name).exists()
    with connect(milvus_server.uri) as conn:
        assert conn.count(name) == ROWS
        conn.drop(name)


def _stage(conn: Connector, schema: CollectionSchema, name: str, rows: int) -> list[Any]:
    """Create ``name`` and stage ``rows`` records of the dump's shape, as a copy does
    (written directly when ``conn`` has no ``bulk_dir``); the same records every call."""
    conn.create(schema.replace(name=name))
    conn.begin_bulk_load(name)
    rng = np.random.default_rng(1)
    ids = [f"id-{i:05d}" for i in range(rows)]
    for start in range(0, rows, 500):
        chunk = ids[start : start + 500]
        batch = build_batch(
            schema,
            chunk,
            {"vector": rng.normal(size=(len(chunk), 16)).astype(np.float32)},
            documents=[f"doc {i}" for i in chunk],
            metadata=[{"genre": "a", "year": 2001} for _ in chunk],
        )
        conn.upsert(name, batch)
    return ids


def test_failed_import_raises_typed_error_with_servers_reason(
    milvus_server: Any, dump: tuple[str, CollectionSchema], bulk_dir: Path, name: str
) -> None:
    _, schema = dump
    with connect(bulk_uri(milvus_server, bulk_dir, 100)) as conn:
        _stage(conn, schema, name, 1000)
        # Another tool replaces the collection meanwhile: its vectors have 8 dimensions.
        client = MilvusClient(uri=f"http://{milvus_server.host}:{milvus_server.port}")
        client.drop_collection(name)
        ms = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        ms.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        ms.add_field("vector", DataType.FLOAT_VECTOR, dim=8)
        ms.add_field("document", DataType.VARCHAR, max_length=1000)
        ms.add_field("metadata", DataType.JSON)
        ms.add_field("metadata_extra", DataType.VARCHAR, max_length=1000)
        ms.add_field("metadata_present", DataType.JSON)
        index = client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="COSINE")
        client.create_collection(name, schema=ms, index_params=index)  # and loads it
        client.close()
        with pytest.raises(TerminalError) as err:
            conn.finalize(name)
        msg = str(err.value)
        assert "bulk insert" in msg and repr(name) in msg and "task" in msg
        assert "float vector is irregular" in msg  # the server's reason (16 values, dim 8)
        assert (stage_dir(str(bulk_dir), "", name) / MANIFEST).exists()  # kept for --resume
        conn.drop(name)
    assert not stage_dir(str(bulk_dir), "", name).exists()


def test_removed_staged_file_is_an_error_not_a_silent_loss(
    milvus_server: Any, dump: tuple[str, CollectionSchema], bulk_dir: Path, name: str
) -> None:
    _, schema = dump
    with connect(bulk_uri(milvus_server, bulk_dir, 100)) as conn:
        _stage(conn, schema, name, 600)
        for spool in stage_dir(str(bulk_dir), "", name).glob("spool-*"):
            spool.unlink()
        with pytest.raises(TerminalError, match="was removed before"):
            conn.finalize(name)
    with connect(bulk_uri(milvus_server, bulk_dir, 100)) as resumed:
        with pytest.raises(TerminalError, match="was removed before"):
            resumed.finalize(name)  # a --resume does not pass over the lost rows
        resumed.drop(name)
    assert not stage_dir(str(bulk_dir), "", name).exists()


def test_rows_staged_by_a_job_that_died_are_landed_by_the_next_finalize(
    milvus_server: Any, dump: tuple[str, CollectionSchema], bulk_dir: Path, name: str
) -> None:
    _, schema = dump
    uri = bulk_uri(milvus_server, bulk_dir, 100)
    with connect(uri) as dead:
        ids = _stage(dead, schema, name, 1500)
        assert dead.count(name) == 0  # staged only: the job dies here
    # A new process (a --resume) finalizes: the staged rows are upserted.
    with connect(uri) as conn, connect(milvus_server.uri) as plain:
        conn.finalize(name)
        assert name not in conn.bulk_tasks  # type: ignore[attr-defined]
        _stage(plain, schema, f"{name}_u", 1500)  # the same records, upserted
        assert conn.count(name) == 1500
        assert records(conn, name, ids) == records(plain, f"{name}_u", ids)
        assert not stage_dir(str(bulk_dir), "", name).exists()
        conn.drop(name)
        plain.drop(f"{name}_u")


def test_import_started_by_a_job_that_died_is_waited_for_not_repeated(
    milvus_server: Any,
    dump: tuple[str, CollectionSchema],
    bulk_dir: Path,
    using: str,
    name: str,
) -> None:
    _, schema = dump
    uri = bulk_uri(milvus_server, bulk_dir, 100)
    with connect(uri) as dead:
        ids = _stage(dead, schema, name, 1200)
        dead.close()
        folder = stage_dir(str(bulk_dir), "", name)
        spools = sorted(folder.glob("spool-*"))
        parts = write_parts(spools, folder, part_rows=700)
        # Died after triggering the imports, before recording their task ids.
        (folder / MANIFEST).write_text(json.dumps({"collection": name, "parts": parts}))
        for spool in spools:
            spool.unlink()
        for part in parts:
            utility.do_bulk_insert(name, files=[part["file"]], using=using)
    with connect(uri) as conn:
        conn.finalize(name)
        found = utility.list_bulk_insert_tasks(collection_name=name, using=using)
        assert sorted(conn.bulk_tasks[name]) == sorted(t.task_id for t in found)  # type: ignore[attr-defined]
        assert imported_rows(using, name) == 1200
        assert conn.count(name) == 1200
        assert len(records(conn, name, ids)) == 1200
        conn.drop(name)


def test_a_batch_staged_twice_is_imported_once_with_its_last_values(
    milvus_server: Any, dump: tuple[str, CollectionSchema], bulk_dir: Path, using: str, name: str
) -> None:
    _, schema = dump
    with connect(bulk_uri(milvus_server, bulk_dir, 100)) as conn:
        ids = _stage(conn, schema, name, 800)
        again = build_batch(
            schema,
            ids[:300],
            {"vector": np.ones((300, 16), dtype=np.float32)},
            documents=["second" for _ in range(300)],
            metadata=[{"genre": "b"} for _ in range(300)],
        )
        conn.upsert(name, again)  # a re-sent batch, or a source with repeated ids
        conn.finalize(name)
        assert imported_rows(using, name) == 800
        assert conn.count(name) == 800
        got = records(conn, name, ids[:300])
        assert {r["document"] for r in got} == {"second"}
        assert all(r["metadata"]["genre"] == "b" and r["metadata"]["year"] is None for r in got)
        assert records(conn, name, ids[300:])[0]["document"] == "doc id-00300"
        conn.drop(name)


def test_parts_are_imported_while_the_rest_is_staged(
    milvus_server: Any, dump: tuple[str, CollectionSchema], bulk_dir: Path, using: str, name: str
) -> None:
    _, schema = dump
    uri = bulk_uri(milvus_server, bulk_dir, 1000) + "&bulk_part_rows=500"
    with connect(uri) as conn:
        ids = _stage(conn, schema, name, 2500)
        started = utility.list_bulk_insert_tasks(collection_name=name, using=using)
        assert started  # from 1,000 rows on, full parts were imported before finalize
        conn.upsert(name, _again(schema, ids[:10]))  # repeats, upserted after the imports
        conn.finalize(name)
        tasks = utility.list_bulk_insert_tasks(collection_name=name, using=using)
        assert len(tasks) == 5 and imported_rows(using, name) == 2500
        assert conn.count(name) == 2500
        assert {r["document"] for r in records(conn, name, ids[:10])} == {"second"}
        conn.drop(name)


def _again(schema: CollectionSchema, ids: list[Any]) -> Any:
    """New values for records staged already (a re-sent batch)."""
    return build_batch(
        schema,
        ids,
        {"vector": np.ones((len(ids), 16), dtype=np.float32)},
        documents=["second" for _ in ids],
        metadata=[{"genre": "b"} for _ in ids],
    )


def test_staged_rows_are_the_rows_an_upsert_sends() -> None:
    schema = CollectionSchema(
        name="docs",
        vectors=(VectorField(dim=4),),
        has_document=True,
        metadata=(
            MetadataField(name="genre", type="string"),
            MetadataField(name="year", type="int64"),
            MetadataField(name="score", type="float64"),
            MetadataField(name="flag", type="bool"),
            MetadataField(name="tags", type="list<string>"),
            MetadataField(name="obj", type="json"),
        ),
    )
    full = {"genre": 'ü "q"', "year": 2001, "score": 1.0, "flag": False, "tags": ["a"]}
    metadata: list[dict[str, Any]] = [
        {**full, "obj": {"k": [1, 2.5], "n": None}},
        {"year": 7},
        {},
        full,
    ]
    ids = ["a", "b", "c", "d"]
    batch = build_batch(
        schema,
        ids,
        {"vector": np.arange(16, dtype=np.float32).reshape(4, 4)},
        documents=["doc ✓", None, "", "x"],
        metadata=metadata,
    )
    staged = stage_table("docs", schema, batch, (2, 3)).to_pylist()
    for row in staged:
        for field in ("metadata", "metadata_present"):
            row[field] = json.loads(row[field])
    upserted = batch_to_rows("docs", schema, batch, ids)
    for row in upserted:
        row["vector"] = row["vector"].tolist()
        row["metadata_present"].pop("sparse")  # no sparse field: always {}
    for row in staged:
        assert row["metadata_present"].pop("sparse") == {}
    assert staged == upserted


def test_staging_refuses_what_an_upsert_refuses_naming_the_record(
    milvus_server: Any, dump: tuple[str, CollectionSchema], bulk_dir: Path, name: str
) -> None:
    _, schema = dump
    with connect(bulk_uri(milvus_server, bulk_dir, 100)) as conn:
        _stage(conn, schema, name, 500)
        docs = ["fine", "x" * 70_000, "fine"]
        bad = build_batch(
            schema,
            ["ok-1", "long-doc", "ok-2"],
            {"vector": np.ones((3, 16), dtype=np.float32)},
            documents=docs,
            metadata=[{} for _ in docs],
        )
        with pytest.raises(DataError) as err:
            conn.upsert(name, bad)
        assert (err.value.collection, err.value.record_id, err.value.field) == (
            name,
            "long-doc",
            "document",
        )
        long_id = build_batch(
            schema,
            ["i" * 600],
            {"vector": np.ones((1, 16), dtype=np.float32)},
            documents=["d"],
            metadata=[{}],
        )
        with pytest.raises(DataError, match="longer than the key") as err:
            conn.upsert(name, long_id)
        assert (err.value.collection, err.value.field) == (name, "id")
        conn.finalize(name)  # the refused batches staged nothing
        assert conn.count(name) == 500
        conn.drop(name)


def test_an_id_twice_in_one_batch_is_imported_once_with_its_last_values(
    milvus_server: Any, dump: tuple[str, CollectionSchema], bulk_dir: Path, using: str, name: str
) -> None:
    _, schema = dump
    with connect(bulk_uri(milvus_server, bulk_dir, 100)) as conn:
        _stage(conn, schema, name, 400)
        ids = ["dup-0", "dup-1", "dup-0", "dup-2", "dup-0"]
        batch = build_batch(
            schema,
            ids,
            {"vector": np.ones((5, 16), dtype=np.float32)},
            documents=[f"copy {i}" for i in range(5)],
            metadata=[{} for _ in ids],
        )
        conn.upsert(name, batch)
        conn.finalize(name)
        assert imported_rows(using, name) == 403  # each id's first copy
        assert conn.count(name) == 403
        got = {r["id"]: r["document"] for r in records(conn, name, ["dup-0", "dup-1", "dup-2"])}
        assert got == {"dup-0": "copy 4", "dup-1": "copy 1", "dup-2": "copy 3"}
        conn.drop(name)
