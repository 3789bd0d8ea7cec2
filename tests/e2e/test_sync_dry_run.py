"""``vecmigrate sync --dry-run`` (issue #18): it says what a round would upsert and delete,
leaves both stores byte-identical, and the real round that follows does exactly that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_module
from tests.e2e.helpers import cli
from tests.e2e.test_safety import _file_bytes
from tests.e2e.test_sync import _backfill, _fill, _ids, _mutate, _records, _schema
from vecmigrate.connectors import connect
from vecmigrate.mapping import MappingSpec
from vecmigrate.model import IdType

N = 200


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A Chroma source and a LanceDB target copied from it, then the source changed: 5
    inserts, 4 updates, 3 deletes. The cwd is ``tmp_path`` (where state files would go)."""
    require_module("chromadb")
    require_module("lancedb")
    monkeypatch.chdir(tmp_path)
    schema = _schema("docs")
    src_uri, dst_uri = "chroma:./src", "lancedb:./dst"
    with connect(src_uri) as src, connect(dst_uri) as dst:
        _fill(src, schema, N)
        _backfill(src, dst, "docs", tmp_path)
        _mutate(src, schema, N)
    return src_uri, dst_uri


def _stores(tmp: Path) -> dict[str, bytes]:
    return {**_file_bytes(tmp / "src"), **_file_bytes(tmp / "dst")}


def _sorted(ids: list[Any]) -> list[str]:
    return sorted(str(i) for i in ids)


def test_dry_run_touches_nothing_and_the_real_round_does_what_it_said(
    pair: tuple[str, str], tmp_path: Path
) -> None:
    src_uri, dst_uri = pair
    before = _stores(tmp_path)
    dry = cli("sync", src_uri, dst_uri, "-c", "docs", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = dry.json()
    assert _stores(tmp_path) == before, "a dry run changed a store"
    assert not (tmp_path / ".vecmigrate").exists(), "a dry run wrote a state file"
    schema = _schema("docs")
    inserted, updated = _ids(schema, range(N, N + 5)), _ids(schema, [3, 4, 5, 6])
    deleted = _ids(schema, [10, 11, 12])
    assert plan["dry_run"] is True and plan["mode"] == "generic" and plan["ok"]
    assert plan["upsert"]["count"] == 9
    assert (plan["upsert"]["missing"], plan["upsert"]["changed"]) == (5, 4)
    assert plan["upsert"]["sample"] == _sorted([*inserted, *updated])
    assert plan["delete"] == {"count": 3, "sample": deleted}

    real = cli("sync", src_uri, dst_uri, "-c", "docs", "--json")
    assert real.returncode == 0, real.stderr
    done = real.json()
    assert (done["upserted"], done["deleted"]) == (
        plan["upsert"]["count"],
        plan["delete"]["count"],
    )
    assert (done["missing"], done["changed"], done["extra"]) == (5, 4, 3)
    assert done["parity"]["equal"]
    with connect(dst_uri) as dst, connect(src_uri) as src:
        assert dst.fetch("docs", deleted).num_rows == 0
        got = dst.fetch("docs", plan["upsert"]["sample"], schema=dst.describe("docs"))
        want = src.fetch("docs", plan["upsert"]["sample"], schema=src.describe("docs"))
        assert _sorted(got.column("id").to_pylist()) == plan["upsert"]["sample"]
        key = {r["id"]: r["document"] for r in want.to_pylist()}
        assert {r["id"]: r["document"] for r in got.to_pylist()} == key

    again = cli("sync", src_uri, dst_uri, "-c", "docs", "--dry-run", "--json").json()
    assert again["upsert"] == {"count": 0, "missing": 0, "changed": 0, "sample": []}
    assert again["delete"] == {"count": 0, "sample": []}


def test_text_output_names_counts_and_sample_ids(pair: tuple[str, str]) -> None:
    src_uri, dst_uri = pair
    out = cli("sync", src_uri, dst_uri, "-c", "docs", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "would upsert 9 (5 missing, 4 changed) and delete 3; nothing was changed" in out.stdout
    assert "delete: r00010, r00011, r00012" in out.stdout


def test_dry_run_into_an_absent_target_creates_nothing(
    pair: tuple[str, str], tmp_path: Path
) -> None:
    src_uri, _ = pair
    before = _stores(tmp_path)
    out = cli("sync", src_uri, "lancedb:./fresh", "-c", "docs", "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    plan = out.json()
    assert not (tmp_path / "fresh").exists() and not (tmp_path / ".vecmigrate").exists()
    assert _stores(tmp_path) == before
    assert plan["target_exists"] is False and plan["delete"]["count"] == 0
    assert plan["upsert"]["count"] == N + 5 - 3 and len(plan["upsert"]["sample"]) == 10
    real = cli("sync", src_uri, "lancedb:./fresh", "-c", "docs", "--json")
    assert real.returncode == 0, real.stderr
    assert real.json()["upserted"] == plan["upsert"]["count"]


def test_a_round_max_delete_would_refuse_is_reported_not_run(
    pair: tuple[str, str], tmp_path: Path
) -> None:
    src_uri, dst_uri = pair
    before = _stores(tmp_path)
    args = ("sync", src_uri, dst_uri, "-c", "docs", "--max-delete", "2")
    dry = cli(*args, "--dry-run", "--json")
    assert dry.returncode == 1, dry.stderr
    plan = dry.json()
    assert plan["ok"] is False and "more than --max-delete 2" in plan["error"]
    assert "--max-delete 3" in plan["error"]  # what to pass to let it go
    assert _stores(tmp_path) == before
    real = cli(*args)  # the real round refuses the same deletes
    assert real.returncode == 2 and "more than --max-delete 2" in real.stderr


def test_dry_run_with_a_mapping_samples_target_ids_for_deletes(
    pair: tuple[str, str], tmp_path: Path
) -> None:
    src_uri, _ = pair
    spec = {"id": {"strategy": "uuid5", "original_field": "source_id"}}
    (tmp_path / "map.yaml").write_text(
        "id:\n  strategy: uuid5\n  original_field: source_id\n", encoding="utf-8"
    )
    with connect(src_uri) as src, connect("lancedb:./mapped") as dst:
        # The backfill of the unchanged collection (200 records), under the mapping.
        schema = _schema("orig")
        _fill(src, schema, N)
        (tmp_path / "m").mkdir()
        _backfill(src, dst, "orig", tmp_path / "m", MappingSpec.model_validate(spec))
        src.delete("orig", _ids(schema, [1, 2]))
        src.upsert("orig", _records(schema, _ids(schema, [N]), seed=4))
    before = _file_bytes(tmp_path / "mapped")
    args = ("sync", src_uri, "lancedb:./mapped", "-c", "orig", "--map", "map.yaml", "--json")
    plan = cli(*args, "--dry-run").json()
    assert _file_bytes(tmp_path / "mapped") == before
    assert plan["upsert"]["sample"] == _ids(schema, [N])  # source ids
    gone = plan["delete"]["sample"]
    assert len(gone) == 2 and not set(gone) & set(_ids(schema, range(N + 1)))
    with connect("lancedb:./mapped") as dst:
        assert dst.fetch("orig", gone).num_rows == 2  # target (uuid5) ids, there now
    done = cli(*args).json()
    assert (done["upserted"], done["deleted"]) == (1, 2) and done["parity"]["equal"]
    with connect("lancedb:./mapped") as dst:
        assert dst.fetch("orig", gone).num_rows == 0


def test_dry_run_refuses_watch_and_capture_flags(pair: tuple[str, str]) -> None:
    src_uri, dst_uri = pair
    out = cli("sync", src_uri, dst_uri, "-c", "docs", "--dry-run", "--watch", "--json")
    assert out.returncode == 2
    assert out.json()["error"]["message"] == "--dry-run cannot be combined with --watch"


def test_change_feed_dry_run_reads_the_recorded_changes(postgres: Any, tmp_path: Path) -> None:
    require_module("lancedb")
    schema = _schema("dry_feed", IdType.INT)
    uri, name = postgres.uri(), schema.name
    dst_uri, state = f"lancedb://{tmp_path / 'l'}", tmp_path / "sync.sqlite"
    with connect(uri) as src, connect(dst_uri) as dst:
        src.remove_change_capture(name)  # type: ignore[attr-defined]
        _fill(src, schema, 50)
        _backfill(src, dst, name, tmp_path)
        src.install_change_capture(name)  # type: ignore[attr-defined]
    args = ("sync", uri, dst_uri, "-c", name, "--state", str(state), "--json")
    # Before any round: the first round's generic pass, and no state file made.
    first = cli(*args, "--dry-run").json()
    assert first["mode"] == "changes" and first["initial_generic"] and not state.exists()
    assert cli(*args).returncode == 0
    with connect(uri) as src:
        src.upsert(name, _records(schema, [7, 8, 500], seed=6))
        src.delete(name, [9, 10])
    before = {**_file_bytes(tmp_path / "l"), **_file_bytes(state)}
    plan = cli(*args, "--dry-run").json()
    assert {**_file_bytes(tmp_path / "l"), **_file_bytes(state)} == before
    assert not plan["initial_generic"] and plan["changes_read"] == 5
    assert plan["upsert"] == {"count": 3, "missing": None, "changed": None, "sample": [7, 8, 500]}
    assert plan["delete"] == {"count": 2, "sample": [9, 10]}
    done = cli(*args).json()
    assert (done["changes_read"], done["upserted"], done["deleted"]) == (5, 3, 2)
    assert done["parity"]["equal"]
    with connect(uri) as src:
        src.remove_change_capture(name)  # type: ignore[attr-defined]
