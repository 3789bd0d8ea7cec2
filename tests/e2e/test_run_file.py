"""``vecmigrate run migration.yaml``: many collections with their own mappings from one
file, a file validated with errors naming the key, and kill -9 mid-run then ``--resume``."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import vecmigrate as vm
from tests.conftest import require_module
from tests.e2e.helpers import VECMIGRATE, cli, json_of, make_dump, run_cli
from vecmigrate.connectors import connect
from vecmigrate.pipeline.migration import MigrationFile
from vecmigrate.verify.digest import collection_digest

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "migration.schema.json"
BIG = 20_000


def test_published_json_schema_is_current() -> None:
    assert json.loads(SCHEMA.read_text()) == MigrationFile.model_json_schema(), (
        "regenerate docs/migration.schema.json (see docs/migration-file.md)"
    )


def _write(path: Path, data: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _fields(target: str, name: str) -> dict[str, str]:
    with connect(target) as conn:
        return {f.name: f.type for f in conn.describe(name).metadata}


def test_three_collections_with_their_own_mappings_from_one_file(tmp_path: Path) -> None:
    require_module("lancedb")
    src = tmp_path / "src"
    for i, name in enumerate(("articles", "events", "people")):
        make_dump(src, 400 + 100 * i, dim=16, name=name, seed=i)
    (tmp_path / "maps").mkdir()
    _write(tmp_path / "maps" / "people.yaml", {"fields": {"tags": {"drop": True}}})
    target = f"lancedb://{tmp_path / 'lance'}"
    migration = _write(
        tmp_path / "migration.yaml",
        {
            "source": f"dump://{src}",
            "target": target,
            "defaults": {"batch_rows": 128, "workers": 2},
            "collections": [
                {
                    "name": "articles",
                    "target": "articles_v2",
                    "mapping": {"fields": {"genre": {"rename": "kind"}}},
                },
                {"name": "events", "mapping": {"fields": {"year": {"cast": "float64"}}}},
                {"name": "people", "mapping": "maps/people.yaml", "if_exists": "fail"},
            ],
        },
    )
    ran = cli("run", str(migration), "--json")
    assert ran.returncode == 0, ran.stderr
    out = ran.json()
    assert out["ok"] and not out["resumed"] and out["rows_written"] == 400 + 500 + 600
    entries = {e["collection"]: e for e in out["collections"]}
    assert list(entries) == ["articles", "events", "people"]
    for entry in entries.values():
        assert entry["status"] == "copied" and entry["copy"]["verified"], entry
        assert entry["copy"]["dead_letters"] == 0
    assert entries["articles"]["target_collection"] == "articles_v2"
    articles = _fields(target, "articles_v2")
    assert "kind" in articles and "genre" not in articles
    assert _fields(target, "events")["year"] == "float64"
    assert "tags" not in _fields(target, "people") and "genre" in _fields(target, "people")
    state = json.loads(Path(out["state"]).read_text())
    assert state["status"] == "complete"
    assert {n: c["status"] for n, c in state["collections"].items()} == dict.fromkeys(
        entries, "done"
    )
    assert Path(out["state"]).parent == tmp_path / ".vecmigrate" / "runs"

    # From Python: the same file refused as it stands (the targets exist now) ...
    with pytest.raises(vm.ConfigError, match="exists"):
        vm.run(migration, state=tmp_path / "py-state.json", restart=True)
    # ... and run again as a model writing into them: upserts by id, nothing duplicated.
    data = yaml.safe_load(migration.read_text())
    data["defaults"]["if_exists"] = "reuse"
    data["collections"][2] = {"name": "people", "mapping": {"fields": {"tags": {"drop": True}}}}
    model = vm.MigrationFile.model_validate(data)
    report = vm.run(model, state=tmp_path / "py-state.json", restart=True)
    assert isinstance(report, vm.RunReport) and report.ok, report.to_json()
    assert [c.status for c in report.collections] == ["copied"] * 3
    with connect(target) as conn:
        assert conn.count("events") == 500


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"collections": [{"name": "a", "mapping": {"fields": {"year": {"cast": "int"}}}}]},
            "collections[0] (a).mapping.fields.year.cast:",
        ),
        ({"collections": [{"name": "a", "workers": 0}]}, "collections[0] (a).workers:"),
        ({"collections": [{"name": "a", "bogus": 1}]}, "collections[0] (a).bogus: unknown key"),
        ({"collections": []}, "collections: List should have at least 1 item"),
        ({"defaults": {"if_exists": "drop"}}, "defaults.if_exists:"),
        ({"defaults": {"executor": "spark"}}, "defaults.executor: must be local, ray"),
        (
            {"collections": [{"name": "a"}, {"name": "b", "target": "a"}]},
            "would both be written to 'a'",
        ),
        ({"source": None}, "source:"),
    ],
)
def test_a_bad_file_is_refused_naming_the_key(
    tmp_path: Path, change: dict[str, object], expected: str
) -> None:
    data: dict[str, object] = {
        "source": f"dump://{tmp_path / 'src'}",
        "target": f"dump://{tmp_path / 'out'}",
        "collections": [{"name": "a"}],
        **change,
    }
    data = {k: v for k, v in data.items() if v is not None}
    ran = cli("run", str(_write(tmp_path / "m.yaml", data)), "--json")
    assert ran.returncode == 2
    error = ran.json()["error"]
    assert error["message"].startswith(f"migration file {tmp_path / 'm.yaml'}: ")
    assert expected in error["message"], error
    assert "unexpected" not in error["message"]


def _rows_done(job_dir: Path, prefix: str) -> int:
    total = 0
    for job in job_dir.glob(f"{prefix}*.sqlite"):
        try:
            with sqlite3.connect(f"file:{job}?mode=ro", uri=True, timeout=1) as db:
                total += int(
                    db.execute("SELECT coalesce(sum(rows), 0) FROM partition").fetchone()[0]
                )
        except sqlite3.Error:
            pass
    return total


def _finished(state: Path) -> set[str]:
    try:
        data = json.loads(state.read_text())
    except (OSError, ValueError):
        return set()
    return {n for n, c in data["collections"].items() if c.get("status") == "done"}


def test_kill_9_mid_run_then_resume_completes_every_collection(tmp_path: Path) -> None:
    require_module("lancedb")
    src = tmp_path / "src"
    make_dump(src, 300, dim=16, name="small", seed=1)
    make_dump(src, BIG, dim=32, name="big", seed=2)
    make_dump(src, 300, dim=16, name="last", seed=3)
    target = f"lancedb://{tmp_path / 'lance'}"
    state = tmp_path / "run" / "state.json"
    migration = _write(
        tmp_path / "migration.yaml",
        {
            "source": f"dump://{src}",
            "target": target,
            "state": "run/state.json",
            "defaults": {"batch_rows": 250, "workers": 2},
            "collections": [
                {"name": "small", "mapping": {"fields": {"genre": {"rename": "kind"}}}},
                {"name": "big", "verify": {"queries": 20, "self_queries": 20}},
                {"name": "last", "mapping": {"fields": {"tags": {"drop": True}}}},
            ],
        },
    )
    args = ["run", str(migration), "--json"]
    proc = subprocess.Popen(
        [VECMIGRATE, *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    jobs = tmp_path / "run" / "state.jobs"
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if "small" in _finished(state) and _rows_done(jobs, "001-") >= BIG // 5:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed; make 'big' bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _finished(state) == {"small"}
    assert 0 < _rows_done(jobs, "001-") < BIG

    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 2 and "--resume" in json_of(again)["error"]["hint"]

    resumed = run_cli(*args, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    out = json_of(resumed)
    assert out["ok"] and out["resumed"]
    entries = {e["collection"]: e for e in out["collections"]}
    assert [entries[n]["status"] for n in ("small", "big", "last")] == ["done", "copied", "copied"]
    big = entries["big"]
    assert big["copy"]["resumed"] and big["copy"]["rows_total"] == BIG
    assert big["copy"]["verified"] and big["verify"]["passed"], big["verify"]["gates"]
    assert entries["last"]["copy"]["verified"]
    with connect(f"dump://{src}") as s, connect(target) as t:
        assert t.count("small") == 300 and t.count("big") == BIG and t.count("last") == 300
        tol = t.capabilities.vector_tolerance
        assert collection_digest(s, "big").compare(collection_digest(t, "big"), tolerance=tol).equal
