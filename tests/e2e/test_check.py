"""`vecmigrate check` names every planted defect with its record id and exits non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from tests.e2e.helpers import json_of, make_dump, run_cli
from vecmigrate.dump import Dump, PartInfo, sha256_file
from vecmigrate.model import CollectionSchema


def _plant(dump_dir: Path, schema: CollectionSchema) -> None:
    """A second part holding a NaN vector, a 15-d vector, a duplicate id and a str year."""
    dim = schema.vector.dim
    vectors = [list(np.ones(dim)), [float("nan")] * dim, list(np.ones(15)), list(np.ones(dim))]
    struct = pa.array(
        [
            {"genre": "a", "year": 2001},
            {"genre": "a", "year": 2002},
            {"genre": "b", "year": 2003},
            {"genre": "c"},
        ],
        type=schema.metadata_struct_type(),
    )
    table = pa.table(
        {
            "id": ["bad-ok", "bad-nan", "bad-dim", "rec-0000003"],
            "document": ["x"] * 4,
            "vector": pa.array(vectors, type=pa.list_(pa.float32())),
            "metadata": struct,
            "metadata_extra": [None, None, None, json.dumps({"year": "1999"})],
        }
    )
    dump = Dump(dump_dir)
    dump.write_part("docs", table)
    parts = [
        PartInfo(p.name, pa.parquet.ParquetFile(p).metadata.num_rows, sha256_file(p))
        for p in dump.part_files("docs")
    ]
    dump.record_collection("docs", parts, {}, schema)


def test_check_passes_a_clean_dump(tmp_path: Path) -> None:
    make_dump(tmp_path / "dump", 500)
    proc = run_cli("check", str(tmp_path / "dump"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json_of(proc)
    assert report["ok"] and report["collections"][0]["rows"] == 500


def test_check_names_each_planted_defect(tmp_path: Path) -> None:
    import pyarrow.parquet  # noqa: F401  (pa.parquet above)

    schema = make_dump(tmp_path / "dump", 500)
    _plant(tmp_path / "dump", schema)
    proc = run_cli("check", str(tmp_path / "dump"), "--json", cwd=tmp_path)
    assert proc.returncode == 1
    findings = {(f["code"], f["field"]): f for f in json_of(proc)["collections"][0]["findings"]}
    assert findings[("non_finite", "vector")]["ids"] == ["bad-nan"]
    assert findings[("wrong_dimension", "vector")]["ids"] == ["bad-dim"]
    assert findings[("duplicate_id", "id")]["ids"] == ["rec-0000003"]
    assert findings[("type_drift", "year")]["ids"] == ["rec-0000003"]
    assert findings[("type_drift", "year")]["count"] == 1
    human = run_cli("check", str(tmp_path / "dump"), cwd=tmp_path)
    assert human.returncode == 1
    for text in ("bad-nan", "bad-dim", "duplicate_id", "type_drift", "year"):
        assert text in human.stdout  # the report is the result: on stdout
