"""Mapping end to end through the CLI: chroma -> qdrant with uuid5 ids and translated HNSW
parameters (plan checked first), and a copy that re-embeds documents into a new vector."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.conftest import require_module
from tests.e2e.helpers import json_of, run_cli
from tests.e2e.test_verify_cli import _chroma_source
from vecmigrate.connectors import connect
from vecmigrate.records import metadata_rows

MAP = """
id: {strategy: uuid5, original_field: source_id}
fields:
  words: {rename: word_count}
vectors:
  vector: {index: {kind: hnsw, params: {M: 32, ef_construction: 200}}}
"""


def test_chroma_to_qdrant_with_uuid5_ids_and_hnsw_params(tmp_path: Path) -> None:
    require_module("qdrant_client")
    source = _chroma_source(tmp_path / "chroma")
    target = f"qdrant+local://{tmp_path / 'qdrant'}"
    (tmp_path / "map.yaml").write_text(MAP)

    plan = run_cli(
        "plan",
        source,
        target,
        "-c",
        "docs",
        "--map",
        "map.yaml",
        "--measure-writes",
        "--json",
        cwd=tmp_path,
    )
    assert plan.returncode == 0, plan.stderr
    p = json_of(plan)
    assert "ids: uuid5 (string -> uuid), originals in metadata.source_id" in p["decisions"]
    assert any("index hnsw" in d and "'M': 32" in d for d in p["decisions"])
    assert p["estimate"]["rows"] == 600 and p["estimate"]["write_rows_per_second"] > 0
    assert p["target"]["schema"]["id_type"] == "uuid" and p["errors"] == []
    assert {m["name"] for m in p["target"]["schema"]["metadata"]} >= {"word_count", "source_id"}

    out = run_cli("copy", source, target, "-c", "docs", "--map", "map.yaml", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout[-1500:]
    result = json_of(out)
    # Verified against what the mapping makes of the source (uuid5 ids, renamed field).
    assert result["rows_written"] == 600 and result["verified"], result["checks"]
    with connect(target) as q:
        hnsw = q.client.get_collection("docs").config.params.vectors["vector"].hnsw_config  # type: ignore[attr-defined]
        assert (hnsw.m, hnsw.ef_construct) == (32, 200)
        point = str(uuid.uuid5(uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8"), "docs/doc-0042"))
        batch = q.fetch("docs", [point])
        meta = metadata_rows(batch, q.describe("docs"))[0]
        assert meta["source_id"] == "doc-0042" and isinstance(meta["word_count"], int)


def test_copy_with_reembedding_into_a_new_named_vector(tmp_path: Path) -> None:
    require_module("sentence_transformers")
    source = _chroma_source(tmp_path / "chroma")
    target = f"lancedb://{tmp_path / 'lance'}"
    (tmp_path / "map.yaml").write_text("reembed: {field: minilm_v2}\n")
    out = run_cli("copy", source, target, "-c", "docs", "--map", "map.yaml", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json_of(out)
    assert result["rows_written"] == 600 and any("re-embedded" in d for d in result["decisions"])
    assert result["verified"], result["checks"]
    with connect(target) as lance:
        schema = lance.describe("docs")
        assert [(v.name, v.dim) for v in schema.vectors] == [("vector", 384), ("minilm_v2", 384)]
        assert schema.embedding[-1].model == "all-MiniLM-L6-v2"


def test_verify_after_a_renaming_copy_reports_the_renamed_field(tmp_path: Path) -> None:
    """``verify`` compares the collections as they are: after a copy that renamed a field
    it asks no filter on a field the target lacks (it failed on "filter names 'genre',
    which is not a metadata field", with a hint about config files) and reports each
    record changed in the renamed field."""
    from tests.e2e.helpers import cli, cli_ok, make_dump

    make_dump(tmp_path / "src", 60, dim=8)
    src = f"dump://{tmp_path / 'src'}"
    (tmp_path / "map.yaml").write_text("fields:\n  genre: {rename: kind}\n")
    dst = f"dump://{tmp_path / 'dst'}"
    assert cli_ok("copy", src, dst, "-c", "docs", "--map", str(tmp_path / "map.yaml"))["verified"]
    ran = cli("verify", src, dst, "-c", "docs", "--queries", "10", "--report-dir",
              str(tmp_path / "r"), "--json")  # fmt: skip
    assert ran.returncode == 1, ran.stderr  # verification failed, not an error
    report = ran.json()
    changed = report["parity"]["changed"]
    assert len(changed) == 60 and changed[0]["fields"] == ["metadata.genre", "metadata.kind"]
    groups = report["queries"]["groups"]
    assert not any("genre" in g for g in groups) and any("year" in g for g in groups), groups
