"""The conventions of issue #18: ``engines``, ``ls``, ``doctor``, ``--dry-run`` (nothing
touched, byte for byte), ``--state-dir`` with ``jobs ls|rm``, and shell completion."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_module
from tests.e2e.helpers import VECMIGRATE, cli, make_dump
from vecmigrate import api
from vecmigrate.connectors import connect
from vecmigrate.connectors.registry import known_schemes


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding ``dump`` (collections docs: 60 and more: 25 records)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VECMIGRATE_STATE_DIR", raising=False)
    make_dump(tmp_path / "dump", 60, dim=8)
    make_dump(tmp_path / "dump", 25, dim=8, name="more", seed=1)
    return tmp_path


def _tree(root: Path) -> dict[str, str]:
    """Every file below ``root`` (relative path: sha256 of its bytes); directories too."""
    tree = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        tree[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return tree


# -- engines -------------------------------------------------------------------------------


def test_engines_lists_every_scheme_with_its_typed_parameters() -> None:
    ran = cli("engines", "--json")
    assert ran.returncode == 0, ran.stderr
    found = {e["scheme"]: e for e in ran.json()["engines"]}
    assert set(found) == known_schemes()
    chroma = found["chroma"]
    assert chroma["storage"] == "path" and chroma["extra"] == "chroma"
    assert chroma["installed"] is True and chroma["install"] is None
    params = {p["name"]: p for p in chroma["params"]}
    assert params["tenant"]["type"] == "str" and params["tenant"]["default"] == "default_tenant"
    assert params["token"]["secret"] is True and params["token"]["required"] is False
    assert found["pgvector"]["default_port"] == 5432 and found["pgvector"]["storage"] == "server"
    assert found["dump"]["extra"] is None
    # a field comment in the connector's Config is its description
    vector_field = next(p for p in found["lancedb"]["params"] if p["name"] == "vector_field")
    assert "Comma-separated" in vector_field["description"]

    text = cli("engines")
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert any(
        line.startswith("chroma+http://  installed; server, default port 8000") for line in lines
    )
    assert "    ?tenant= str, default 'default_tenant'" in lines


def test_api_engines_names_the_extra_of_a_missing_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from vecmigrate.connectors import registry
    from vecmigrate.errors import ConfigError

    real = registry.connector_class
    installed = {e.scheme: e for e in api.engines()}

    def missing(scheme: str) -> object:
        if scheme in ("weaviate", "milvus-lite", "pgvector"):
            raise ConfigError(f"the client for {scheme!r} is not installed")
        return real(scheme)

    monkeypatch.setattr(registry, "connector_class", missing)
    absent = {e.scheme: e for e in api.engines()}
    for scheme in ("weaviate", "milvus-lite", "pgvector"):
        # the parameters are read from the connector's source, without importing it
        assert not absent[scheme].installed
        assert absent[scheme].params == installed[scheme].params, scheme
    weaviate = absent["weaviate"]
    assert weaviate.install == "pip install 'vecmigrate[weaviate]'"
    assert weaviate.to_json()["install"] == weaviate.install


# -- ls ------------------------------------------------------------------------------------


def test_ls_prints_counts_and_names(here: Path) -> None:
    ran = cli("ls", "dump:./dump")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [f"{60:>12} docs", f"{25:>12} more"]
    assert cli("ls", "dump:./dump", "--json").json() == {
        "uri": "dump:./dump",
        "collections": [{"name": "docs", "count": 60}, {"name": "more", "count": 25}],
        "total": 85,
    }
    listing = api.ls("dump:./dump")
    assert listing.collections == (("docs", 60), ("more", 25))
    missing = cli("ls", "lancedb:./nowhere", "--json")
    assert missing.returncode == 2 and "does not exist" in missing.json()["error"]["message"]
    assert not (here / "nowhere").exists()


# -- doctor --------------------------------------------------------------------------------


def test_doctor_checks_a_store_one_line_each(here: Path) -> None:
    ran = cli("doctor", "dump:./dump")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    names = [line.split()[1].rstrip(":") for line in ran.stdout.splitlines()]
    assert names == ["uri", "connect", "read", "version", "capabilities", "write"]
    assert ran.stdout.splitlines()[-1].startswith("skip write: not probed")
    report = api.doctor("dump:./dump")
    assert report.ok and report.engine == "dump"


def test_doctor_write_creates_and_drops_a_scratch_collection(here: Path) -> None:
    assert cli("import", "dump", "lancedb:./lance", "-c", "docs").returncode == 0
    ran = cli("doctor", "lancedb:./lance", "--write", "--json")
    assert ran.returncode == 0, ran.stdout
    checks = {c["name"]: c for c in ran.json()["checks"]}
    assert checks["write"]["ok"] and not checks["write"]["skipped"]
    assert "dropped" in checks["write"]["detail"]
    with connect("lancedb:./lance", read_only=True) as conn:
        assert conn.list_collections() == ["docs"]


def test_doctor_fails_with_a_hint_and_exit_1(here: Path) -> None:
    refused = cli("doctor", "pgvector://u@127.0.0.1:9/db")
    assert refused.returncode == 1
    fail = next(line for line in refused.stdout.splitlines() if line.startswith("FAIL"))
    assert fail.startswith("FAIL connect: cannot connect to") and "127.0.0.1:9" in fail
    assert "hint: check that the pgvector server is running" in refused.stdout
    bad = cli("doctor", "lancedb:./lance?bogus=1", "--json")
    assert bad.returncode == 1
    doc = bad.json()
    assert not doc["ok"] and doc["checks"][0]["name"] == "uri"
    assert "known parameters" in doc["checks"][0]["hint"]


# -- --dry-run -----------------------------------------------------------------------------

_EMBEDDED = [
    ("lancedb", "lancedb", "store"),
    ("chroma", "chromadb", "store"),
    ("dump", None, "store"),
    ("sqlite-vec", "sqlite_vec", "store.db"),
    ("faiss", "faiss", "store"),
]


@pytest.mark.parametrize("scheme,module,path", _EMBEDDED)
def test_dry_run_leaves_every_embedded_store_byte_identical(
    here: Path, scheme: str, module: str | None, path: str
) -> None:
    if module:
        require_module(module)
    store = f"{scheme}:./{path}"
    assert cli("import", "dump", store, "-c", "docs").returncode == 0
    absent = f"{scheme}:./{path.replace('store', 'absent')}"
    before = _tree(here)
    runs = [
        # into an existing target: one collection exists (fail / replace / reuse), one not
        ["copy", "dump:./dump", store, "--dry-run", "--json"],
        ["copy", "dump:./dump", store, "-c", "docs", "--dry-run", "--if-exists", "replace"],
        ["import", "dump", store, "-c", "docs", "--if-exists", "reuse", "--dry-run"],
        # out of the store, into targets that do not exist (nothing may be created)
        ["copy", store, absent, "-c", "docs", "--dry-run", "--state-dir", "state"],
        ["copy", store, "dump:./absent_dump", "-c", "docs", "--dry-run"],
        ["export", store, "-o", "exported", "-c", "docs", "--dry-run", "--json"],
    ]
    results = [cli(*args) for args in runs]
    assert _tree(here) == before, f"a dry run changed files below {here}"
    assert not (here / "state").exists()  # the setup's import made ./.vecmigrate: unchanged
    for args, ran in zip(runs, results, strict=True):
        assert ran.returncode in (0, 1), (args, ran.stderr)

    first = results[0].json()
    assert first["dry_run"] is True and first["rows"] == 85 and not first["ok"]
    by_name = {c["collection"]: c for c in first["collections"]}
    assert by_name["docs"]["target_collections"][0]["action"] == "fail"
    assert "already exists" in by_name["docs"]["error"]
    assert by_name["more"]["target_collections"][0] == {
        "name": "more",
        "exists": False,
        "action": "create",
        "rows_now": 0,
        "rows_dropped": 0,
    }
    assert results[0].returncode == 1  # the real copy would fail on 'docs'
    assert "would drop (60 records) and recreate 'docs', 60 records to write" in results[1].stdout
    assert results[1].returncode == 0
    assert "would write into 'docs'" in results[2].stdout
    assert "would create 'docs', 60 records to write" in results[3].stdout
    assert results[5].json()["collections"][0]["rows"] == 60


def test_dry_run_names_the_job_file_the_copy_then_uses(here: Path) -> None:
    planned = cli("copy", "dump:./dump", "lancedb:./lance", "-c", "docs", "--dry-run", "--json")
    job = planned.json()["collections"][0]["job"]
    assert not Path(job).exists()
    done = cli("copy", "dump:./dump", "lancedb:./lance", "-c", "docs", "--json")
    assert done.returncode == 0 and done.json()["collections"][0]["job"] == job


# -- --state-dir and jobs ------------------------------------------------------------------


def test_state_dir_holds_the_jobs_that_jobs_ls_and_rm_manage(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = cli("copy", "dump:./dump", "lancedb:./lance", "-c", "docs", "--state-dir", "st")
    assert ran.returncode == 0, ran.stderr
    monkeypatch.setenv("VECMIGRATE_STATE_DIR", str(here / "env-state"))
    assert cli("copy", "dump:./dump", "lancedb:./lance", "-c", "more").returncode == 0
    assert not (here / ".vecmigrate").exists()
    assert len(list((here / "st" / "jobs").glob("docs-*.sqlite"))) == 1
    assert len(list((here / "env-state" / "jobs").glob("more-*.sqlite"))) == 1

    listed = cli("jobs", "ls", "--state-dir", "st", "--json").json()["jobs"]
    assert [(j["collection"], j["status"], j["rows"]) for j in listed] == [("docs", "complete", 60)]
    assert listed[0]["source"] == "dump:./dump" and listed[0]["target"] == "lancedb:./lance"
    text = cli("jobs", "ls")  # the environment's state directory
    assert text.stdout.startswith("more-") and "complete  25 rows" in text.stdout

    unknown = cli("jobs", "rm", "nope", "--state-dir", "st")
    assert unknown.returncode == 2 and listed[0]["name"] in unknown.stderr
    assert cli("jobs", "rm", "--state-dir", "st").returncode == 2  # no name, no --all
    removed = cli("jobs", "rm", listed[0]["name"], "--state-dir", "st")
    assert removed.returncode == 0 and removed.stdout == f"removed {listed[0]['name']}\n"
    assert cli("jobs", "ls", "--state-dir", "st", "--json").json() == {"jobs": []}
    assert cli("jobs", "rm", "--all").returncode == 0
    assert api.jobs(here / "env-state") == ()


# -- shell completion ----------------------------------------------------------------------


def test_shell_completion_is_on(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "_VECMIGRATE_COMPLETE": "complete_bash",
        "COMP_WORDS": "vecmigrate eng",
        "COMP_CWORD": "1",
    }
    done = subprocess.run(
        [VECMIGRATE], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.split() == ["engines"]
    assert "--install-completion" in cli("--help").stdout


def test_dry_run_into_a_server_changes_nothing_it_can_see(here: Path, postgres: Any) -> None:
    from vecmigrate.testing.safety import storage_fingerprint

    target = str(postgres.uri())
    made = cli(
        "import", "dump", target, "-c", "docs", "--target-collection", "dry_docs",
        "--if-exists", "replace", "--yes",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with connect(target, read_only=True) as conn:
        before = storage_fingerprint(conn)
    replace = cli(
        "copy", "dump:./dump", target, "-c", "docs", "--target-collection", "dry_docs",
        "--dry-run", "--if-exists", "replace", "--json",
    )  # fmt: skip
    assert replace.returncode == 0, replace.stdout
    planned = replace.json()["collections"][0]["target_collections"][0]
    assert planned["action"] == "replace" and planned["rows_dropped"] == 60
    create = cli(
        "import", "dump", target, "-c", "more", "--target-collection", "dry_more", "--dry-run"
    )
    assert create.returncode == 0 and "would create 'dry_more', 25 records" in create.stdout
    with connect(target, read_only=True) as conn:
        assert storage_fingerprint(conn) == before
        assert "dry_more" not in conn.list_collections()
