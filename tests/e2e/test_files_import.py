"""Embeddings in files into an engine through the CLI (issue #19 item 2): 10,000 records of
384-d vectors with ids, text and metadata, written with numpy/pyarrow as other tools
write them (a folder of three Parquet files, JSON Lines, CSV, ``.npy`` + ``ids.txt``),
copied (and imported) into LanceDB, then verified; bad lines are dead-lettered and
counted; a Parquet folder is scanned row group by row group, never whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import cli
from vecmigrate.connectors import connect
from vecmigrate.connectors.tabular import SOURCE_ERROR_KEY

ROWS, DIM = 10_000, 384
GENRES = ["news", "sport", "tech"]


class Data:
    """The records, with unit-length vectors (so the metric reads as cosine)."""

    def __init__(self) -> None:
        raw = np.random.default_rng(19).normal(size=(ROWS, DIM))
        self.vectors = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)
        self.ids = [f"doc-{i:05d}" for i in range(ROWS)]
        self.texts = [f"passage {i} about {GENRES[i % 3]}" for i in range(ROWS)]
        self.meta = [
            {"genre": GENRES[i % 3], "year": 1990 + i % 30, "score": i / 8} for i in range(ROWS)
        ]


@pytest.fixture(scope="module")
def data() -> Data:
    require_module("lancedb")
    return Data()


def _ok(*args: str) -> Any:
    ran = cli(*args, "--json")
    assert ran.returncode == 0, ran.stderr
    return ran.json()


def _verify(src: str, dst: str, name: str, tmp_path: Path) -> None:
    report = _ok("verify", src, dst, "-c", name, "--queries", "20", "--report-dir", str(tmp_path))
    assert report["passed"] and report["parity"]["equal"], report


def _write_parquet_folder(folder: Path, d: Data) -> None:
    folder.mkdir()
    flat = pa.array(d.vectors.reshape(-1))
    emb = pa.FixedSizeListArray.from_arrays(flat, DIM)
    table = pa.table(
        {
            "doc_id": d.ids,
            "text": d.texts,
            "emb": emb,
            **{k: [m[k] for m in d.meta] for k in ("genre", "year", "score")},
        }
    )
    for i, (a, b) in enumerate([(0, 3000), (3000, 6500), (6500, ROWS)]):
        pq.write_table(table.slice(a, b - a), folder / f"part-{i}.parquet", row_group_size=500)


def test_parquet_folder_copies_imports_and_verifies(
    data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write_parquet_folder(tmp_path / "corpus", data)
    src = f"parquet://{tmp_path / 'corpus'}?id_field=doc_id&vector_field=emb"
    lance = f"lancedb://{tmp_path / 'lance'}"

    (info,) = _ok("inspect", src)["collections"]
    assert (info["name"], info["count"], info["id_type"]) == ("corpus", ROWS, "string")
    (vector,) = info["vectors"]
    assert (vector["name"], vector["dim"], vector["metric"]) == ("emb", DIM, "cosine")
    assert "unit length" in vector["metric_source"]
    assert {(m["name"], m["type"]) for m in info["metadata"]} == {
        ("genre", "string"),
        ("year", "int64"),
        ("score", "float64"),
    }

    out = _ok("copy", src, lance)
    assert out["verified"] and out["rows_written"] == ROWS and out["dead_letters"] == 0
    _verify(src, lance, "corpus", tmp_path)
    with connect(lance) as conn:
        got = conn.fetch("corpus", ["doc-00042"])
        assert got.column("document").to_pylist() == [data.texts[42]]
        assert got.column("metadata").to_pylist() == [data.meta[42]]

    # ``import`` takes any source URI, not only a dump.
    other = f"lancedb://{tmp_path / 'imported'}"
    out = _ok("import", src, other, "--target-collection", "docs")
    assert out["verified"] and out["rows_written"] == ROWS


def test_parquet_folder_is_scanned_in_batches_never_whole(data: Data, tmp_path: Path) -> None:
    _write_parquet_folder(tmp_path / "corpus", data)
    with connect(f"parquet://{tmp_path / 'corpus'}?id_field=doc_id&vector_field=emb") as conn:
        schema = conn.describe("corpus")
        parts = conn.partitions("corpus", 4)
        assert len(parts) == 4 and sum(p.estimated_rows or 0 for p in parts) == ROWS
        whole = ROWS * DIM * 4
        baseline = pa.total_allocated_bytes()
        peak, sizes = 0, []
        for part in parts:
            for batch, _ in conn.scan("corpus", part, schema=schema, batch_rows=500):
                sizes.append(batch.num_rows)
                peak = max(peak, pa.total_allocated_bytes() - baseline)
                del batch
    assert sum(sizes) == ROWS and max(sizes) <= 500 and len(sizes) >= 20
    # A row group (500 rows, 0.8 MB of vectors) at a time, never the folder's 15 MB.
    assert peak < whole / 2, (peak, whole)


def test_jsonl_csv_and_npy_copy_and_verify(
    data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with (tmp_path / "corpus.jsonl").open("w") as f:
        for rid, text, vec, meta in zip(data.ids, data.texts, data.vectors, data.meta, strict=True):
            row = {"id": rid, "text": text, "embedding": vec.tolist(), "metadata": meta}
            f.write(json.dumps(row) + "\n")
    lines = ["id,text,embedding,genre,year,score"]
    for rid, text, vec, meta in zip(data.ids, data.texts, data.vectors, data.meta, strict=True):
        vec_text = " ".join(repr(float(x)) for x in vec)
        lines.append(f"{rid},{text},{vec_text},{meta['genre']},{meta['year']},{meta['score']}")
    (tmp_path / "corpus.csv").write_text("\n".join(lines) + "\n")
    np.save(tmp_path / "corpus.npy", data.vectors)
    (tmp_path / "ids.txt").write_text("\n".join(data.ids) + "\n")

    sources = {
        "jsonl": f"jsonl://{tmp_path / 'corpus.jsonl'}",
        "csv": f"csv://{tmp_path / 'corpus.csv'}",
        "npy": f"npy://{tmp_path / 'corpus.npy'}?ids_file=ids.txt",
    }
    for fmt, src in sources.items():
        lance = f"lancedb://{tmp_path / f'lance-{fmt}'}"
        out = _ok("copy", src, lance)
        assert out["verified"] and out["rows_written"] == ROWS, (fmt, out)
        _verify(src, lance, "corpus", tmp_path)
        with connect(lance) as conn:
            got = conn.fetch("corpus", ["doc-00007"])
            name = "vector" if fmt == "npy" else "embedding"
            assert np.array_equal(got.column(name).to_pylist()[0], data.vectors[7]), fmt
            if fmt != "npy":
                assert got.column("metadata").to_pylist() == [data.meta[7]], fmt


def test_bad_jsonl_lines_are_dead_lettered_and_counted(
    data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    n = 2000
    with (tmp_path / "corpus.jsonl").open("w") as f:
        for i in range(n):
            vec = data.vectors[i].tolist()
            if i == 700:
                f.write('{"id": "doc-00700", "text": "cut off mid-line\n')
                continue
            if i == 1500:
                vec = vec[:-1]  # 383 values
            row = {"id": data.ids[i], "text": data.texts[i], "embedding": vec, **data.meta[i]}
            f.write(json.dumps(row) + "\n")
    src, lance = f"jsonl://{tmp_path / 'corpus.jsonl'}", f"lancedb://{tmp_path / 'lance'}"

    ran = cli("copy", src, lance)
    assert ran.returncode == 1, ran.stderr
    assert "1,998 rows written" in ran.stdout and "2 refused" in ran.stdout, ran.stdout

    ran = cli("copy", src, f"lancedb://{tmp_path / 'again'}", "--json")
    out = ran.json()
    assert ran.returncode == 1 and not out["ok"]
    assert (out["rows_read"], out["rows_written"], out["dead_letters"]) == (n, n - 2, 2)
    assert all(c["passed"] for c in out["checks"]), out["checks"]  # the rest is identical
    dead = pq.read_table(out["collections"][0]["dead_letter_dir"]).to_pylist()
    why = {r["id"]: json.loads(r["metadata_extra"])[SOURCE_ERROR_KEY] for r in dead}
    assert set(why) == {"doc-00700", "doc-01500"}
    assert why["doc-00700"].startswith("jsonl corpus.jsonl line 701: not JSON")
    assert why["doc-01500"] == (
        "jsonl corpus.jsonl line 1501: embedding: vector has 383 values, the collection's are 384-d"
    )
    assert {r["_field"] for r in dead} == {"embedding"}
    with connect(f"lancedb://{tmp_path / 'again'}") as conn:
        assert conn.count("corpus") == n - 2


def test_a_pandas_parquet_of_float64_embeddings_imports_when_the_mapping_rounds(
    tmp_path: Path,
) -> None:
    """pandas writes numpy embeddings as float64 lists: refused (float32 cannot hold them
    exactly) with the mapping line that lets the copy round them, never a request to
    rewrite the file; with it, the values are the nearest float32s and the check passes."""
    pd = require_module("pandas")
    vectors = np.random.default_rng(4).normal(size=(50, 6))
    frame = pd.DataFrame({"id": range(50), "embedding": list(vectors), "text": ["t"] * 50})
    frame.to_parquet(tmp_path / "emb.parquet")
    src, dump = f"parquet://{tmp_path / 'emb.parquet'}", f"dump://{tmp_path / 'dump'}"
    (tmp_path / "l2.yaml").write_text("vectors:\n  embedding: {metric: l2}\n")
    refused = cli("copy", src, dump, "--map", str(tmp_path / "l2.yaml"), "--json")
    assert refused.returncode == 1, refused.stderr
    assert "vectors: {embedding: {round_to_float32: true}}" in refused.stderr
    (tmp_path / "round.yaml").write_text(
        "vectors:\n  embedding: {metric: l2, round_to_float32: true}\n"
    )
    # plan and --dry-run read the sample as the copy will (they refused it before).
    planned = cli("plan", src, dump, "-c", "emb", "--map", str(tmp_path / "round.yaml"))
    assert planned.returncode == 0 and "rounded to the nearest float32" in planned.stdout
    dry = cli("copy", src, dump, "--map", str(tmp_path / "round.yaml"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    copied = cli("copy", src, dump, "--map", str(tmp_path / "round.yaml"), "--json")
    assert copied.returncode == 0, copied.stderr
    assert copied.json()["verified"] and copied.json()["rows_written"] == 50
    with connect(dump) as conn:
        (name,) = conn.list_collections()
        got = conn.fetch(name, list(range(50))).column("embedding").to_pylist()
    assert np.array_equal(np.asarray(got, np.float32), vectors.astype(np.float32))
