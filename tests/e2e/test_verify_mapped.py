"""``verify --map`` and ``diff --map``: a copy that went through a mapping (a renamed field,
a metric the source does not record) is proved after the fact against what the mapping
made of the source, not reported as every record changed; the source, whose table names
no metric, is searched and judged with the metric the mapping states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tests.conftest import require_module
from tests.e2e.helpers import cli

ROWS, DIM = 600, 12


def _app_table(path: Path) -> None:
    """A table lancedb's own client made: unnormalised vectors, no vector index (so each
    query names its metric), two metadata columns."""
    lancedb = require_module("lancedb")
    rng = np.random.default_rng(5)
    values = rng.normal(size=(ROWS, DIM)) * np.linspace(0.2, 5, ROWS)[:, None]
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(values.astype(np.float32).ravel()), DIM)
    table = pa.table(
        {
            "id": [f"doc-{i}" for i in range(ROWS)],
            "text": [f"passage {i}" for i in range(ROWS)],
            "vector": vectors,
            "genre": [["news", "blog", "paper"][i % 3] for i in range(ROWS)],
            "year": pa.array([2000 + i % 20 for i in range(ROWS)], pa.int64()),
        }
    )
    lancedb.connect(str(path)).create_table("app", table)


def _json(*args: str, code: int = 0) -> Any:
    ran = cli(*args, "--json")
    assert ran.returncode == code, ran.stderr
    return ran.json()


def _mapped_copy(tmp_path: Path, mapping_text: str) -> tuple[str, str, Path]:
    """(source, target, mapping file) of the app table copied through ``mapping_text``."""
    _app_table(tmp_path / "src")
    src, dst = f"lancedb://{tmp_path / 'src'}", f"lancedb://{tmp_path / 'dst'}"
    mapping = tmp_path / "map.yaml"
    mapping.write_text(mapping_text)
    assert _json("copy", src, dst, "-c", "app", "--map", str(mapping))["verified"]
    return src, dst, mapping


def test_verify_and_diff_judge_a_mapped_copy_through_its_mapping(tmp_path: Path) -> None:
    src, dst, mapping = _mapped_copy(
        tmp_path, "vectors:\n  vector: {metric: cosine}\nfields:\n  genre: {rename: category}\n"
    )
    reports = str(tmp_path / "reports")
    common = ("-c", "app", "--queries", "40", "--report-dir", reports)

    # Without the mapping every record differs (genre is category there): not a pass,
    # and the source, which records no metric, is judged by the cosine the target serves.
    plain = _json("verify", src, dst, *common, code=1)
    assert not plain["parity"]["equal"] and len(plain["parity"]["changed"]) == ROWS
    assert "judged by the cosine the target serves" in plain["serving"]["source"]["metric_note"]

    report = _json("verify", src, dst, *common, "--map", str(mapping))
    assert report["passed"] and report["parity"]["equal"], report["gates"]
    source = report["serving"]["source"]
    assert source["metric"] == "cosine" and "as the mapping states" in source["metric_note"]
    # The source is searched with the stated cosine (LanceDB's flat search is exact):
    # were it searched with LanceDB's default l2, its top 10 would not be cosine's.
    assert report["systems"]["source"]["all"]["recall@10"] == 1.0
    assert report["systems"]["target"]["all"]["recall@10"] >= 0.95

    changed = _json("diff", src, dst, "-c", "app", code=1)
    assert len(changed["changed"]) == ROWS
    fields = {tuple(c["fields"]) for c in changed["changed"]}
    assert fields == {("metadata.category", "metadata.genre")}, fields
    same = _json("diff", src, dst, "-c", "app", "--map", str(mapping))
    assert same["equal"] and same["source_count"] == same["target_count"] == ROWS


def test_a_mapping_that_gives_new_ids_is_diffed_not_verified(tmp_path: Path) -> None:
    src, dst, mapping = _mapped_copy(
        tmp_path,
        "id: {strategy: uuid5, original_field: source_id}\nvectors:\n  vector: {metric: l2}\n",
    )
    refused = cli("verify", src, dst, "-c", "app", "--map", str(mapping))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    line = refused.stderr.replace("\n", " ")
    for text in ("new ids (uuid5)", "vecmigrate diff --map"):
        assert text in line, line
    assert _json("diff", src, dst, "-c", "app", "--map", str(mapping))["equal"]


def test_a_mapping_that_leaves_out_the_searched_vector_is_refused(tmp_path: Path) -> None:
    _app_table(tmp_path / "src")
    src = f"lancedb://{tmp_path / 'src'}"
    mapping = tmp_path / "map.yaml"
    mapping.write_text("vectors:\n  vector: {drop: true}\n")
    refused = cli(
        "verify", src, f"lancedb://{tmp_path / 'src'}", "-c", "app", "--map", str(mapping)
    )
    assert refused.returncode == 2, refused.stderr
    assert "does not carry the vector field 'vector'" in refused.stderr.replace("\n", " ")
