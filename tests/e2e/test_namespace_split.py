"""``namespaces: {to: collections}``: a namespaced dump copied into one collection per
namespace (LanceDB, Chroma, a dump), through the library and the CLI, with per-collection
digests against the source filtered to each namespace, kill -9 + --resume, and plan."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from tests.e2e.helpers import VECMIGRATE, cli, json_of, run_cli
from vecmigrate.connectors import Connector, connect
from vecmigrate.errors import ConfigError, SchemaMismatchError
from vecmigrate.mapping import MappingSpec, build_mapping
from vecmigrate.model import CollectionSchema, MetadataField, VectorField
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.pipeline.fanout import collection_name, split_by_namespace
from vecmigrate.records import build_batch
from vecmigrate.verify.copycheck import check_copy
from vecmigrate.verify.digest import CollectionDigest, DigestBuilder, collection_digest

NAMESPACES = ("acme", "beta", "gamma")
SPLIT = MappingSpec.model_validate({"namespaces": {"to": "collections"}})
MAP_YAML = 'namespaces: {to: collections, pattern: "{collection}__{namespace}"}\n'


def make_ns_dump(
    path: Path, rows: int, extra: list[str | None] | None = None, head: list[str] | None = None
) -> None:
    """A dump ``docs`` declaring NAMESPACES; record i is in namespace i % 3, and the last
    ``len(extra)`` (first ``len(head)``) records are in the namespaces ``extra`` (``head``)
    gives: undeclared ones, or None."""
    schema = CollectionSchema(
        name="docs",
        vectors=(VectorField(dim=16),),
        has_document=True,
        metadata=(
            MetadataField(name="year", type="int64"),
            MetadataField(name="genre", type="string"),
        ),
        namespaces=NAMESPACES,
    )
    conn = connect(f"dump://{path}")
    conn.create(schema)
    rng = np.random.default_rng(7)
    namespaces: list[str | None] = [NAMESPACES[i % 3] for i in range(rows)]
    if extra:
        namespaces[-len(extra) :] = extra
    if head:
        namespaces[: len(head)] = head
    step = 4000
    for start in range(0, rows, step):
        idx = range(start, min(rows, start + step))
        batch = build_batch(
            schema,
            [f"r{i:06d}" for i in idx],
            {"vector": rng.normal(size=(len(idx), 16)).astype(np.float32)},
            documents=[f"text {i}" for i in idx],
            metadata=[{"year": 2000 + i % 20, "genre": "abc"[i % 3]} for i in idx],
            namespaces=namespaces[start : start + len(idx)],
        )
        conn.upsert("docs", batch)
    conn.finalize("docs")


def source_by_namespace(src: Connector) -> dict[str | None, CollectionDigest]:
    """Independent expectation: the source filtered to each namespace, without the
    namespace column, digested."""
    schema = src.describe("docs")
    plain = schema.replace(namespaces=None)
    table = pa.Table.from_batches(
        [b for p in src.partitions("docs", 1) for b, _ in src.scan("docs", p, schema=schema)]
    )
    out: dict[str | None, CollectionDigest] = {}
    for ns in set(table.column("namespace").to_pylist()):
        mask = (
            pc.is_null(table.column("namespace"))
            if ns is None
            else pc.equal(table.column("namespace"), ns)
        )
        rows = table.filter(mask).drop_columns(["namespace"]).combine_chunks()
        builder = DigestBuilder(plain)
        for batch in rows.to_batches():
            builder.add(batch)
        out[ns] = builder.digest
    return out


def assert_split_equal(src: Connector, dst: Connector, names: dict[str, str]) -> None:
    expected = source_by_namespace(src)
    tol = dst.capabilities.vector_tolerance
    for ns, name in names.items():
        got = collection_digest(dst, name)
        assert got.count == expected[ns].count > 0
        assert expected[ns].compare(got, tolerance=tol).equal, (ns, name)
        assert dst.describe(name).namespaces is None


@pytest.mark.parametrize("kind", ["lancedb", "chroma"])
def test_one_collection_per_namespace(kind: str, tmp_path: Path) -> None:
    make_ns_dump(tmp_path / "src", 1500)
    with (
        connect(f"dump://{tmp_path / 'src'}") as src,
        connect(f"{kind}://{tmp_path / kind}") as dst,
    ):
        result = copy_collection(
            src, dst, "docs", options=CopyOptions(job_path=tmp_path / "job", mapping=SPLIT)
        )
        assert result.ok and result.rows_written == 1500
        names = {f"docs__{ns}": ns for ns in NAMESPACES}
        assert result.target_collections == [
            {"namespace": ns, "name": f"docs__{ns}", "rows": 500} for ns in NAMESPACES
        ]
        assert "docs" not in dst.list_collections()
        assert set(names) <= set(dst.list_collections())
        assert_split_equal(src, dst, {ns: name for name, ns in names.items()})
        assert any("to collections named" in d for d in result.decisions)


def test_undeclared_namespace_is_created_and_records_without_one_are_refused(
    tmp_path: Path,
) -> None:
    make_ns_dump(tmp_path / "src", 300, extra=["zeta", "zeta", None, "bad/name", "ACME"])
    with (
        connect(f"dump://{tmp_path / 'src'}") as src,
        connect(f"lancedb://{tmp_path / 'l'}") as dst,
    ):
        result = copy_collection(
            src,
            dst,
            "docs",
            target_collection="t",
            options=CopyOptions(job_path=tmp_path / "job", mapping=SPLIT),
        )
        rows = {c["name"]: c["rows"] for c in result.target_collections}
        assert rows == {"t__acme": 99, "t__beta": 98, "t__gamma": 98, "t__zeta": 2}
        # None, "bad/name" and "ACME" (t__ACME would be t__acme on a case-folding engine)
        assert result.dead_letters == 3 and not result.ok
        assert sorted(dst.list_collections()) == sorted(rows)
        checks = check_copy(src, dst, "docs", result, SPLIT)
        assert [c.passed for c in checks] == [True] * 5, checks
        # A record missing from one collection fails that collection's check only.
        dst.delete("t__zeta", ["r000296"])
        checks = check_copy(src, dst, "docs", result, SPLIT)
        failed = [c.name for c in checks if not c.passed]
        assert failed == ["row count", "content digest t__zeta"], checks


def test_patterns_and_names_are_checked(tmp_path: Path) -> None:
    for bad in ["{collection}", "{collection}_{tenant}", "{namespace!r}", "{namespace:>5}", "{"]:
        with pytest.raises(ValidationError):
            MappingSpec.model_validate({"namespaces": {"to": "collections", "pattern": bad}})
    make_ns_dump(tmp_path / "src", 30)
    with connect(f"dump://{tmp_path / 'src'}") as src:
        # sync and other writers of one collection refuse the fan-out decision.
        with pytest.raises(SchemaMismatchError, match="copy, import and plan only"):
            build_mapping(src.describe("docs"), src.capabilities, SPLIT)
        chroma = connect(f"chroma://{tmp_path / 'chroma'}")
        # Chroma's own create refuses spaces and "!"; nothing is created before that.
        spec = MappingSpec.model_validate(
            {"namespaces": {"to": "collections", "pattern": "{namespace} {collection}!"}}
        )
        with pytest.raises(ConfigError, match="namespace 'acme'"):
            copy_collection(
                src, chroma, "docs", options=CopyOptions(job_path=tmp_path / "j", mapping=spec)
            )
        assert chroma.list_collections() == []
        with pytest.raises(ConfigError, match="--executor local"):
            copy_collection(
                src,
                chroma,
                "docs",
                options=CopyOptions(job_path=tmp_path / "j", mapping=SPLIT, executor="ray"),
            )


def _rows_done(job: Path) -> int:
    try:
        with sqlite3.connect(f"file:{job}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT coalesce(sum(rows), 0) FROM partition").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_cli_copy_kill_resume_verifies_each_collection(tmp_path: Path) -> None:
    rows = 12_000
    make_ns_dump(tmp_path / "src", rows)
    (tmp_path / "map.yaml").write_text(MAP_YAML)
    source, target = f"dump://{tmp_path / 'src'}", f"lancedb://{tmp_path / 'lance'}"
    job = tmp_path / "job.sqlite"
    args = ["copy", source, target, "-c", "docs", "--map", "map.yaml", "--job", str(job)]
    args += ["--batch-rows", "200", "--workers", "2", "--json"]
    proc = subprocess.Popen(
        [VECMIGRATE, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while _rows_done(job) < rows // 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the copy finished before it could be killed; make it bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < _rows_done(job) < rows
    resumed = run_cli(*args, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    out = json_of(resumed)
    assert out["resumed"] and out["rows_total"] == rows and out["ok"]
    assert out["target_collections"] == [
        {"namespace": ns, "name": f"docs__{ns}", "rows": rows // 3} for ns in NAMESPACES
    ]
    names = [c["name"] for c in out["checks"]]
    assert names == ["row count", *(f"content digest docs__{ns}" for ns in NAMESPACES)]
    assert out["verified"] and all(c["passed"] for c in out["checks"]), out["checks"]
    with connect(source) as src, connect(target) as dst:
        assert_split_equal(src, dst, {ns: f"docs__{ns}" for ns in NAMESPACES})


def test_cli_import_into_chroma_and_plan(tmp_path: Path) -> None:
    make_ns_dump(tmp_path / "src", 600)
    (tmp_path / "map.yaml").write_text(MAP_YAML)
    target = f"chroma://{tmp_path / 'chroma'}"
    plan = cli(
        "plan",
        f"dump://{tmp_path / 'src'}",
        target,
        "-c",
        "docs",
        "--map",
        str(tmp_path / "map.yaml"),
        "--json",
    )
    assert plan.returncode == 0, plan.stderr
    data = plan.json()
    assert data["target_collections"] == [
        {"namespace": ns, "name": f"docs__{ns}"} for ns in NAMESPACES
    ]
    assert any("to collections named '{collection}__{namespace}'" in d for d in data["decisions"])
    assert data["target"]["schema"]["namespaces"] is None
    text = cli(
        "plan",
        f"dump://{tmp_path / 'src'}",
        target,
        "-c",
        "docs",
        "--map",
        str(tmp_path / "map.yaml"),
    )
    assert "target collection: docs__gamma (namespace 'gamma')" in text.stdout + text.stderr
    ran = cli(
        "import",
        str(tmp_path / "src"),
        target,
        "-c",
        "docs",
        "--map",
        str(tmp_path / "map.yaml"),
        "--job",
        str(tmp_path / "job"),
        "--json",
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = ran.json()
    assert [c["rows"] for c in out["target_collections"]] == [200, 200, 200]
    assert out["verified"] and len(out["checks"]) == 4
    shown = cli(
        "copy",
        f"dump://{tmp_path / 'src'}",
        target,
        "-c",
        "docs",
        "--map",
        str(tmp_path / "map.yaml"),
        "--job",
        str(tmp_path / "job2"),
        "--if-exists",
        "reuse",
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "namespace 'beta' -> docs__beta: 200 rows" in shown.stdout + shown.stderr
    assert "pass content digest docs__beta" in shown.stdout + shown.stderr


def test_split_by_namespace_groups_rows_in_order() -> None:
    batch = pa.RecordBatch.from_pydict(
        {"id": ["a", "b", "c", "d", "e"], "namespace": ["x", None, "y", "x", None]}
    )
    groups = {ns: rows.column("id").to_pylist() for ns, rows in split_by_namespace(batch)}
    assert groups == {"x": ["a", "d"], "y": ["c"], None: ["b", "e"]}
    assert list(split_by_namespace(batch.slice(0, 0))) == []
    with pytest.raises(ConfigError, match="empty"):
        collection_name("{collection}__{namespace}", "docs", "")
    assert collection_name("{namespace}-{collection}", "docs", "acme") == "acme-docs"


def test_interrupted_copy_resumes_and_finalizes_a_lazily_created_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The undeclared namespace's records are all in the first batch: the resumed run
    never meets it again, yet finalizes and reports its collection (recorded in the job)."""
    make_ns_dump(tmp_path / "src", 600, head=["zeta"] * 5)
    opts = CopyOptions(job_path=tmp_path / "job", mapping=SPLIT, batch_rows=50, workers=1)
    with connect(f"dump://{tmp_path / 'src'}") as src, connect(f"dump://{tmp_path / 'o'}") as dst:
        real, calls = dst.upsert, [0]

        def crash_later(name: str, batch: pa.RecordBatch) -> None:
            calls[0] += 1
            if calls[0] == 12:
                raise RuntimeError("killed")
            real(name, batch)

        monkeypatch.setattr(dst, "upsert", crash_later)
        with pytest.raises(RuntimeError, match="killed"):
            copy_collection(src, dst, "docs", options=opts)
        monkeypatch.setattr(dst, "upsert", real)
    with connect(f"dump://{tmp_path / 'src'}") as src, connect(f"dump://{tmp_path / 'o'}") as dst:
        result = copy_collection(src, dst, "docs", options=replace(opts, resume=True))
        assert result.resumed and result.ok
        rows = {c["name"]: c["rows"] for c in result.target_collections}
        assert rows == {"docs__acme": 198, "docs__beta": 198, "docs__gamma": 199, "docs__zeta": 5}
        checks = check_copy(src, dst, "docs", result, SPLIT)
        assert all(c.passed for c in checks) and len(checks) == 5, checks
