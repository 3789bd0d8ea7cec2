"""Safety as a user meets it: a collection is never written into itself, read-only verbs
never create storage, URIs mean what they say, and every printed hint leads forward."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_module
from tests.e2e.helpers import cli, make_dump
from vecmigrate.connectors import connect

ROWS = 300


@pytest.fixture
def lance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A LanceDB store with a 300-row collection ``docs``; the cwd is ``tmp_path``."""
    require_module("lancedb")
    monkeypatch.chdir(tmp_path)
    make_dump(tmp_path / "dump", ROWS, dim=8)
    assert cli("import", "dump", "lancedb:./data/Lance", "-c", "docs").returncode == 0
    (tmp_path / "link").symlink_to(tmp_path / "data")
    return tmp_path / "data" / "Lance"


def _rows(uri: str) -> int:
    with connect(uri) as conn:
        return conn.count("docs")


@pytest.mark.parametrize(
    "target",
    [
        "lancedb:./data/Lance",  # the same spelling
        "lancedb:data/Lance",
        "lancedb://./data/Lance",
        "lancedb:./data/../data/Lance",
        "lancedb:./link/Lance",  # through a symlink
        "ABSOLUTE",
    ],
)
def test_copying_a_collection_onto_itself_is_refused_with_rows_intact(
    lance: Path, target: str
) -> None:
    target = f"lancedb://{lance}" if target == "ABSOLUTE" else target
    for extra in ([], ["--if-exists", "replace", "--yes"], ["--if-exists", "replace", "--restart"]):
        out = cli("copy", "lancedb:./data/Lance", target, "-c", "docs", *extra)
        assert out.returncode == 2, out.stderr
        assert "same collection 'docs'" in out.stderr
    assert _rows(f"lancedb://{lance}") == ROWS


def test_sync_and_a_dump_onto_itself_are_refused(lance: Path) -> None:
    out = cli("sync", "lancedb:./data/Lance", "lancedb:./link/Lance", "-c", "docs")
    assert out.returncode == 2 and "same collection" in out.stderr
    out = cli("import", "dump", "dump:./dump", "-c", "docs", "--if-exists", "replace", "--yes")
    assert out.returncode == 2 and "same collection" in out.stderr
    assert _rows("dump:./dump") == ROWS


def test_pgvector_spellings_of_one_database_are_one_storage(postgres: Any, tmp_path: Path) -> None:
    make_dump(tmp_path / "dump", 50, dim=8, name="safety_docs")
    uri = postgres.uri()
    imported = cli("import", str(tmp_path / "dump"), uri, "-c", "safety_docs")
    assert imported.returncode == 0, imported.stderr
    port = uri.split(":")[-1].split("/")[0]
    spellings = [
        f"postgresql://postgres@localhost:{port}/postgres",
        f"pgvector://other@127.0.0.1:{port}/postgres?schema=public",
        f"pgvector://postgres@[::1]:{port}/postgres",
    ]
    try:
        for target in spellings:
            out = cli("copy", uri, target, "-c", "safety_docs", "--if-exists", "replace", "--yes")
            assert out.returncode == 2 and "same collection" in out.stderr, (target, out.stderr)
        with connect(uri) as conn:
            assert conn.count("safety_docs") == 50
        # Another schema of the same database is other storage: allowed.
        out = cli("copy", uri, f"{uri}?schema=copy_target", "-c", "safety_docs", "--json")
        assert "same collection" not in out.stderr
    finally:
        with connect(uri) as conn:
            conn.drop("safety_docs")


def test_replace_states_what_it_drops_and_needs_yes(lance: Path) -> None:
    out = cli("copy", "dump:./dump", "lancedb:./other", "-c", "docs")
    assert out.returncode == 0, out.stderr
    # Each hint, followed literally, leads forward.
    out = cli("copy", "dump:./dump", "lancedb:./other", "-c", "docs")
    assert out.returncode == 2 and "--if-exists replace or reuse" in out.stderr
    out = cli("copy", "dump:./dump", "lancedb:./other", "-c", "docs", "--if-exists", "replace")
    assert out.returncode == 2
    assert "would drop 'docs' (300 records)" in out.stderr and "--yes" in out.stderr
    assert _rows("lancedb:./other") == ROWS
    out = cli(
        "copy", "dump:./dump", "lancedb:./other", "-c", "docs", "--if-exists", "replace", "--yes"
    )
    assert out.returncode == 0, out.stderr
    assert _rows("lancedb:./other") == ROWS


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "chroma:./missing"],
        ["inspect", "lancedb:./missing"],
        ["inspect", "qdrant+local:./missing"],
        ["inspect", "sqlite-vec:./missing.db"],
        ["inspect", "faiss:./missing"],
        ["check", "./missing"],
        ["diff", "lancedb:./missing", "lancedb:./data/Lance", "-c", "docs"],
        ["verify", "lancedb:./data/Lance", "chroma:./missing", "-c", "docs"],
        ["copy", "lancedb:./missing", "lancedb:./out", "-c", "docs"],
        ["export", "lancedb:./missing", "-o", "out", "-c", "docs"],
    ],
)
def test_read_only_verbs_on_a_missing_path_say_so_and_create_nothing(
    lance: Path, args: list[str]
) -> None:
    before = sorted(p.name for p in Path.cwd().iterdir())
    out = cli(*args)
    assert out.returncode == 2, out.stderr
    assert "does not exist" in out.stderr
    assert sorted(p.name for p in Path.cwd().iterdir()) == before


def test_plan_writes_nothing_unless_asked_to_measure_writes(lance: Path) -> None:
    out = cli("plan", "lancedb:./data/Lance", "lancedb:./planned", "-c", "docs", "--json")
    assert out.returncode == 0, out.stderr
    assert not Path("planned").exists()
    assert out.json()["estimate"]["write_rows_per_second"] is None
    cli("copy", "dump:./dump", "lancedb:./existing", "-c", "docs")
    with connect("lancedb:./existing") as conn:
        before = sorted(conn.list_collections())
    out = cli("plan", "lancedb:./data/Lance", "lancedb:./existing", "-c", "d2", "--measure-writes")
    assert "does not exist" in out.stderr or out.returncode != 0  # no collection d2
    out = cli(
        "plan",
        "lancedb:./data/Lance",
        "lancedb:./existing",
        "-c",
        "docs",
        "--target-collection",
        "d2",
        "--measure-writes",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert out.json()["estimate"]["write_rows_per_second"] > 0
    with connect("lancedb:./existing") as conn:
        assert sorted(conn.list_collections()) == before  # the scratch collection is gone


def test_relative_paths_keep_their_case_and_hosts_are_refused(lance: Path) -> None:
    out = cli("copy", "dump:./dump", "lancedb:./MyLance", "-c", "docs")
    assert out.returncode == 0, out.stderr
    assert "MyLance" in os.listdir(".") and "mylance" not in os.listdir(".")
    out = cli("copy", "dump:./dump", "lancedb://MyLance", "-c", "docs")
    assert out.returncode == 2
    assert "lancedb:./MyLance" in out.stderr  # the corrected spelling
    assert "mylance" not in os.listdir(".")


def test_unknown_uri_parameter_names_itself_and_the_known_ones(lance: Path) -> None:
    out = cli("inspect", f"lancedb://{lance}?bogus=1")
    assert out.returncode == 2 and "'bogus'" in out.stderr
    out = cli("inspect", "dump:./dump?kye=env:X")
    assert out.returncode == 2 and "'kye'" in out.stderr and "key" in out.stderr
    out = cli("inspect", "lancedb:./a#b")
    assert out.returncode == 2 and "%23" in out.stderr


def _file_bytes(root: Path) -> dict[str, bytes]:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): p.read_bytes() for p in files}


@pytest.mark.parametrize(
    "scheme,module,path",
    [
        ("chroma", "chromadb", "store"),
        ("lancedb", "lancedb", "store"),
        ("qdrant+local", "qdrant_client", "store"),
        ("sqlite-vec", "sqlite_vec", "store.db"),
        ("faiss", "faiss", "store"),
        ("milvus-lite", "milvus_lite", "store.db"),
        ("dump", None, "store"),
    ],
)
def test_every_read_only_verb_leaves_an_embedded_store_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str, module: str | None, path: str
) -> None:
    if module:
        require_module(module)
    monkeypatch.chdir(tmp_path)
    make_dump(tmp_path / "dump", 120, dim=8)
    store = f"{scheme}:./{path}"
    assert cli("import", "dump", store, "-c", "docs").returncode == 0
    before = _file_bytes(tmp_path / path)
    verbs = [
        ["inspect", store],
        ["inspect", store, "-c", "docs", "--json"],
        ["check", store, "-c", "docs"],
        ["diff", store, "dump:./dump", "-c", "docs"],
        ["verify", store, "dump:./dump", "-c", "docs", "--queries", "5"],
        ["plan", store, "dump:./planned", "-c", "docs"],
        ["export", store, "-o", "exported", "-c", "docs"],
    ]
    for verb in verbs:
        out = cli(*verb)
        assert out.returncode in (0, 1), (verb, out.stderr)  # 1: a gate may fail on ANN
        assert _file_bytes(tmp_path / path) == before, f"{verb[0]} changed the {scheme} store"


def test_sync_from_an_empty_source_does_not_empty_the_target(lance: Path) -> None:
    with connect("dump:./dump") as dump:
        schema = dump.describe("docs")
    with connect("lancedb:./empty") as conn:
        conn.create(schema)  # the same collection, with no records: a mistaken source
    out = cli("sync", "lancedb:./empty", "lancedb:./data/Lance", "-c", "docs")
    assert out.returncode == 2, out.stderr
    assert "would delete 300 of the 300 records" in out.stderr and "--max-delete 300" in out.stderr
    assert _rows(f"lancedb://{lance}") == ROWS
    out = cli("sync", "lancedb:./empty", "lancedb:./data/Lance", "-c", "docs", "--max-delete", "10")
    assert out.returncode == 2 and "more than --max-delete 10" in out.stderr
    # The printed hint, followed, does what it says.
    out = cli(
        "sync", "lancedb:./empty", "lancedb:./data/Lance", "-c", "docs", "--max-delete", "300"
    )
    assert out.returncode == 0, out.stderr
    assert _rows(f"lancedb://{lance}") == 0


def test_a_file_collection_named_two_ways_is_one_collection(tmp_path: Path) -> None:
    """``parquet:///out`` + collection ``docs`` and ``parquet:///out/docs`` (a folder of
    part files) are one collection: replacing one with the other is refused and the files
    are left as they were."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    (out / "docs").mkdir(parents=True)
    vec = pa.FixedSizeListArray.from_arrays(pa.array([1.0, 0.0, 0.0, 1.0], pa.float32()), 2)
    part = out / "docs" / "part-0.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "vector": vec}), part)
    before = part.read_bytes()
    for src, dst in [
        (f"parquet://{out}/docs", f"parquet://{out}"),
        (f"parquet://{out}", f"parquet://{out}/docs"),
    ]:
        res = cli("copy", src, dst, "-c", "docs", "--if-exists", "replace", "--yes")
        assert res.returncode == 2 and "same file" in res.stderr, res.stderr
    assert part.read_bytes() == before
