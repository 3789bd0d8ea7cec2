"""LanceDB tables other tools wrote, read as they are laid out (issue #14), through the CLI:
LangChain's layout (text in ``text``, a struct or JSON-text ``metadata``), ids in ``_id`` /
``pk`` / binary UUIDs, several candidate columns, and the metric LanceDB searches with (a
vector index's distance type; un-indexed, its default l2 for unit vectors, else stated in
the mapping) carried to the target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import Ran, cli
from vecmigrate.connectors import connect
from vecmigrate.model import Metric

DEFAULT = "LanceDB default for an un-indexed table (l2)"
UNIT = f"{DEFAULT}; the 400 vectors sampled are unit length, so cosine, dot and l2 rank alike"
ROWS, DIM = 400, 16


def _vectors(n: int = ROWS, dim: int = DIM, *, unit: bool = True) -> pa.FixedSizeListArray:
    # Unnormalised, as word vectors are: l2 and cosine rank them differently.
    values = np.random.default_rng(0).normal(size=(n, dim)) * np.linspace(0.2, 5, n)[:, None]
    if unit:  # every metric ranks them alike
        values /= np.linalg.norm(values, axis=1, keepdims=True)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.astype(np.float32).reshape(-1)), dim)


def _create(path: Path, name: str, columns: dict[str, Any]) -> Any:
    lancedb = require_module("lancedb")
    return lancedb.connect(str(path)).create_table(name, pa.table(columns))


def _ok(*args: str) -> Any:
    ran = cli(*args, "--json")
    assert ran.returncode == 0, ran.stderr
    return ran.json()


def _inspect(uri: str, name: str) -> dict[str, Any]:
    (info,) = _ok("inspect", uri, "-c", name)["collections"]
    return dict(info)


def _langchain_metadata(fmt: str) -> pa.Array | list[str]:
    rows = [
        {"source": f"doc-{i % 7}.md", "page": i % 13, "lang": ["en", "de"][i % 2]}
        for i in range(ROWS)
    ]
    return pa.array(rows) if fmt == "struct" else [json.dumps(r) for r in rows]


@pytest.mark.parametrize("fmt", ["struct", "json"])
def test_langchain_table_inspects_copies_and_verifies(tmp_path: Path, fmt: str) -> None:
    _create(
        tmp_path / "src",
        "lc",
        {
            "id": [f"chunk-{i:04d}" for i in range(ROWS)],
            "text": [f"passage number {i}" for i in range(ROWS)],
            "vector": _vectors(),
            "metadata": _langchain_metadata(fmt),
        },
    )
    src, dump = f"lancedb://{tmp_path / 'src'}", f"dump://{tmp_path / 'dump'}"
    back = f"lancedb://{tmp_path / 'back'}"
    info = _inspect(src, "lc")
    assert info["has_document"] and info["id_type"] == "string" and info["count"] == ROWS
    assert {(m["name"], m["type"]) for m in info["metadata"]} == {
        ("source", "string"),
        ("page", "int64"),
        ("lang", "string"),
    }
    (vector,) = info["vectors"]
    assert (vector["name"], vector["metric"], vector["metric_source"]) == ("vector", "l2", UNIT)
    table = cli("inspect", src, "-c", "lc")
    assert table.returncode == 0 and "metric=l2 (LanceDB default" in table.stdout

    assert _ok("copy", src, dump, "-c", "lc")["verified"]
    with connect(dump) as conn:
        batch = conn.fetch("lc", ["chunk-0003"])
        assert batch.column("document").to_pylist() == ["passage number 3"]
        assert batch.column("metadata").to_pylist() == [
            {"source": "doc-3.md", "page": 3, "lang": "de"}
        ]
        assert conn.describe("lc").vector.metric is Metric.L2
    assert _ok("copy", dump, back, "-c", "lc")["verified"]
    report = _ok("verify", src, back, "-c", "lc", "--queries", "30", "--report-dir", str(tmp_path))
    assert report["passed"] and report["parity"]["equal"]
    assert any(g.startswith("filter: ") for g in report["queries"]["groups"])
    with connect(back) as conn:
        assert conn.describe("lc").vector.metric is Metric.L2


@pytest.mark.parametrize(
    ("column", "values", "id_type"),
    [
        ("_id", pa.array(range(ROWS), pa.int64()), "int"),
        ("pk", pa.array([f"k{i}" for i in range(ROWS)]), "string"),
    ],
)
def test_ids_in_underscore_id_or_pk_need_no_parameter(
    tmp_path: Path, column: str, values: pa.Array, id_type: str
) -> None:
    _create(tmp_path / "src", "t", {column: values, "content": ["c"] * ROWS, "vector": _vectors()})
    src = f"lancedb://{tmp_path / 'src'}"
    info = _inspect(src, "t")
    assert info["id_type"] == id_type and info["has_document"] and info["metadata"] == []
    assert info["engine_settings"]["lancedb.layout"]["id"] == column
    out = f"dump://{tmp_path / 'dump'}"
    assert _ok("copy", src, out, "-c", "t")["verified"]
    with connect(out) as conn:
        assert conn.fetch("t", [values[5].as_py()]).num_rows == 1


def test_parameters_choose_among_candidate_columns(tmp_path: Path) -> None:
    _create(
        tmp_path / "src",
        "two",
        {
            "uuid": [f"u-{i}" for i in range(ROWS)],
            "node_id": [f"n-{i}" for i in range(ROWS)],
            "text": [f"t{i}" for i in range(ROWS)],
            "content": [f"c{i}" for i in range(ROWS)],
            "vector": _vectors(),
        },
    )
    src = f"lancedb://{tmp_path / 'src'}"
    refused: Ran = cli("inspect", src, "-c", "two")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    line = refused.stderr.replace("\n", " ")
    for text in ("'text'", "'content'", "document_field"):
        assert text in line, line

    chosen = f"{src}?id_field=node_id&document_field=content"
    info = _inspect(chosen, "two")
    assert {m["name"] for m in info["metadata"]} == {"uuid", "text"}
    out = f"dump://{tmp_path / 'dump'}"
    assert _ok("copy", chosen, out, "-c", "two")["verified"]
    with connect(out) as conn:
        got = conn.fetch("two", ["n-7"])
    assert got.column("document").to_pylist() == ["c7"]
    assert got.column("metadata").to_pylist() == [{"uuid": "u-7", "text": "t7"}]
    # Without a parameter the first common id name (uuid before node_id) is the id.
    assert (
        _inspect(f"{src}?document_field=text", "two")["engine_settings"]["lancedb.layout"]["id"]
        == "uuid"
    )


@pytest.mark.parametrize(("metric", "kind"), [("dot", "IvfFlat"), ("cosine", "HnswSq")])
def test_the_metric_of_a_vector_index_is_read_from_it(
    tmp_path: Path, metric: str, kind: str
) -> None:
    require_module("lancedb")
    import lancedb.index

    table = _create(
        tmp_path / "src",
        "ix",
        {"id": list(range(ROWS)), "text": ["x"] * ROWS, "vector": _vectors()},
    )
    config = getattr(lancedb.index, kind)(distance_type=metric, num_partitions=2)
    table.create_index("vector", config=config)
    src = f"lancedb://{tmp_path / 'src'}"
    (vector,) = _inspect(src, "ix")["vectors"]
    assert vector["metric"] == metric
    assert "index" in vector["metric_source"] and metric in vector["metric_source"]
    out = f"dump://{tmp_path / 'dump'}"
    assert _ok("copy", src, out, "-c", "ix")["verified"]
    with connect(out) as conn:
        assert conn.describe("ix").vector.metric.value == metric


@pytest.mark.parametrize(("metric", "distance"), [("l2", "Euclid"), ("cosine", "Cosine")])
def test_unnormalised_vectors_of_an_unindexed_table_copy_with_the_metric_the_mapping_states(
    tmp_path: Path, metric: str, distance: str
) -> None:
    """Each query of an un-indexed table names its metric (l2 unless it names one), so the
    table cannot tell: unnormalised vectors are refused, naming the mapping line, rather
    than copied for LanceDB's default; the stated metric reaches the target."""
    require_module("qdrant_client")
    _create(
        tmp_path / "src",
        "glove",
        {
            "word": [f"w{i}" for i in range(ROWS)],
            "id": list(range(ROWS)),
            "vector": _vectors(unit=False),
        },
    )
    src, dump = f"lancedb://{tmp_path / 'src'}", f"dump://{tmp_path / 'dump'}"
    (vector,) = _inspect(src, "glove")["vectors"]
    assert vector["metric_source"] == "unknown"
    assert "UNKNOWN (state it: vectors.vector.metric" in cli("inspect", src, "-c", "glove").stdout
    refused = cli("copy", src, dump, "-c", "glove")
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.replace("\n", " ")
    assert "nothing records the metric of vector field 'vector'" in line, line
    assert "vectors: {vector: {metric: l2}}" in line, line
    (tmp_path / "map.yaml").write_text(f"vectors:\n  vector: {{metric: {metric}}}\n")
    assert _ok("copy", src, dump, "-c", "glove", "--map", str(tmp_path / "map.yaml"))["verified"]
    with connect(dump) as conn:
        v = conn.describe("glove").vector
    assert v.metric.value == metric and v.metric_source == "the mapping"
    target = f"qdrant+local://{tmp_path / 'q'}"
    assert _ok("copy", dump, target, "-c", "glove")["verified"]
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path / "q"))
    try:
        params = client.get_collection("glove").config.params.vectors
        distances = (
            [p.distance for p in params.values()] if isinstance(params, dict) else [params.distance]  # type: ignore[union-attr]
        )
    finally:
        client.close()
    assert distances == [getattr(models.Distance, distance.upper())]


@pytest.mark.parametrize("fmt", ["struct", "json"])
def test_copy_into_an_application_table_writes_its_own_columns(tmp_path: Path, fmt: str) -> None:
    columns = {
        "id": [f"chunk-{i:04d}" for i in range(ROWS)],
        "text": [f"passage number {i}" for i in range(ROWS)],
        "vector": _vectors(),
        "metadata": _langchain_metadata(fmt),
    }
    _create(tmp_path / "src", "lc", columns)
    raw_schema = pa.table(columns).schema
    lancedb = require_module("lancedb")
    lancedb.connect(str(tmp_path / "app")).create_table("lc", schema=raw_schema)
    src, app_uri = f"lancedb://{tmp_path / 'src'}", f"lancedb://{tmp_path / 'app'}"
    dump = f"dump://{tmp_path / 'dump'}"
    assert _ok("copy", src, dump, "-c", "lc")["verified"]
    assert _ok("copy", dump, app_uri, "-c", "lc", "--if-exists", "reuse")["verified"]
    table = lancedb.connect(str(tmp_path / "app")).open_table("lc")
    assert table.schema.equals(raw_schema) and table.count_rows() == ROWS
    got, want = table.to_arrow().sort_by("id"), pa.table(columns)
    assert got.drop_columns(["metadata"]).equals(want.drop_columns(["metadata"]))
    parse = (lambda v: v) if fmt == "struct" else json.loads
    assert [parse(v) for v in got["metadata"].to_pylist()] == [
        parse(v) for v in want["metadata"].to_pylist()
    ]
    report = _ok(
        "verify", src, app_uri, "-c", "lc", "--queries", "20", "--report-dir", str(tmp_path)
    )
    assert report["passed"]

    # A table whose columns cannot take the records is refused before the first write.
    _create(tmp_path / "other", "lc", {"pk": pa.array([1], pa.int64()), "vector": _vectors(1)})
    refused = cli(
        "copy", dump, f"lancedb://{tmp_path / 'other'}", "-c", "lc", "--if-exists", "reuse"
    )
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.replace("\n", " ")
    for text in ("'pk' holds int ids", "no text column", "no column for metadata field 'source'"):
        assert text in line, line


def test_a_multivector_column_is_not_carried_until_the_mapping_leaves_it_behind(
    tmp_path: Path,
) -> None:
    # LanceDB's multivector type (ColBERT-style late interaction): a list of vectors per row.
    tokens = [np.random.default_rng(i).normal(size=(1 + i % 3, 4)) for i in range(ROWS)]
    colbert = pa.array(
        [t.astype(np.float32).tolist() for t in tokens], pa.list_(pa.list_(pa.float32(), 4))
    )
    columns = {
        "id": [f"p{i}" for i in range(ROWS)],
        "text": [f"passage {i}" for i in range(ROWS)],
        "vector": _vectors(),
        "colbert": colbert,
    }
    _create(tmp_path / "src", "mv", columns)
    src, out = f"lancedb://{tmp_path / 'src'}", f"lancedb://{tmp_path / 'out'}"
    info = _inspect(src, "mv")
    assert "multivector" in info["uncarried"]["colbert"]
    assert "colbert" not in {m["name"] for m in info["metadata"]}
    refused = cli("copy", src, out, "-c", "mv")
    assert refused.returncode == 2, refused.stderr
    assert "vectors: {colbert: {drop: true}}" in refused.stderr
    (tmp_path / "map.yaml").write_text("vectors:\n  colbert: {drop: true}\n")
    copied = _ok("copy", src, out, "-c", "mv", "--map", str(tmp_path / "map.yaml"))
    assert copied["verified"] and copied["rows_written"] == ROWS
    with connect(out) as conn:
        schema = conn.describe("mv")
        assert [v.name for v in schema.vectors] == ["vector"] and schema.uncarried == {}
        assert "colbert" not in {m.name for m in schema.metadata}
        assert conn.fetch("mv", ["p7"]).column("document").to_pylist() == ["passage 7"]


def _keyword_hits(path: Path, table: str, query: str = "gamma delta") -> dict[str, float]:
    lancedb = require_module("lancedb")
    got = lancedb.connect(str(path)).open_table(table).search(query, query_type="fts")
    rows = got.limit(ROWS).to_arrow()
    return dict(zip(rows["id"].to_pylist(), rows["_score"].to_pylist(), strict=True))


def test_a_full_text_index_on_the_text_is_built_again_on_the_target(tmp_path: Path) -> None:
    """An FTS index over the text (what LangChain's and LlamaIndex's hybrid search query)
    is full-text search over the document: built again on the target with the same
    tokenizer settings (it was left behind, silently; the application's keyword search
    failed there). One on another column is refused until the mapping leaves it behind."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    columns = {
        "id": [f"p{i}" for i in range(ROWS)],
        "text": [" ".join(words[(i * k) % 6] for k in range(1, 5)) for i in range(ROWS)],
        "title": [f"title {words[i % 6]}" for i in range(ROWS)],
        "vector": _vectors(),
    }
    lancedb = require_module("lancedb")
    from lancedb.index import FTS

    table = _create(tmp_path / "src", "hybrid", columns)
    table.create_index("text", config=FTS(stem=False, remove_stop_words=False))
    want = _keyword_hits(tmp_path / "src", "hybrid")
    src, out = f"lancedb://{tmp_path / 'src'}", f"lancedb://{tmp_path / 'out'}"
    (ft,) = _inspect(src, "hybrid")["full_text"]
    assert ft["over"] == "document" and ft["analyzer"]["stem"] is False
    assert _ok("copy", src, out, "-c", "hybrid")["verified"]
    (index,) = lancedb.connect(str(tmp_path / "out")).open_table("hybrid").list_indices()
    assert index.index_type == "FTS" and list(index.columns) == ["document"]
    assert index.index_details["stem"] is False
    got = _keyword_hits(tmp_path / "out", "hybrid")
    assert got == want and len(want) > 10

    table.create_index("title", config=FTS())
    refused = cli("copy", src, f"lancedb://{tmp_path / 'again'}", "-c", "hybrid")
    assert refused.returncode == 2 and "FTS) index on column 'title'" in refused.stderr


def test_a_table_without_an_id_column_is_keyed_by_lancedbs_row_ids_when_asked(
    tmp_path: Path,
) -> None:
    """A table made from plain rows (``create_table(name, data=[{...}])``) has no id
    column: refused, naming ``?id_field=_rowid``; with it, each record is keyed by the row
    id LanceDB gives it, copied, verified and fetched by it. Nothing can write row ids:
    such a table takes no records."""
    lancedb = require_module("lancedb")
    vectors = _vectors().to_numpy(zero_copy_only=False)
    rows = [
        {"vector": vectors[i].tolist(), "text": f"note {i}", "stars": i % 5} for i in range(ROWS)
    ]
    table = lancedb.connect(str(tmp_path / "src")).create_table("notes", data=rows)
    src = f"lancedb://{tmp_path / 'src'}"
    refused = cli("inspect", src, "-c", "notes")
    assert refused.returncode == 2 and "?id_field=_rowid" in refused.stderr.replace("\n", "")

    keyed = f"{src}?id_field=_rowid"
    info = _inspect(keyed, "notes")
    assert info["id_type"] == "int" and "row ids" in info["engine_settings"]["id"]
    out = f"dump://{tmp_path / 'dump'}"
    assert _ok("copy", keyed, out, "-c", "notes")["verified"]
    row_ids = table.search().where("stars = 3").with_row_id(True).to_arrow()
    picked = row_ids["_rowid"].to_pylist()[:4]
    with connect(out) as conn:
        got = conn.fetch("notes", picked)
    want = {r: t for r, t in zip(picked, row_ids["text"].to_pylist(), strict=False)}
    assert dict(zip(got["id"].to_pylist(), got["document"].to_pylist(), strict=True)) == want
    report = _ok("verify", keyed, out, "-c", "notes", "--queries", "20",
                 "--report-dir", str(tmp_path / "r"))  # fmt: skip
    assert report["passed"] and report["parity"]["equal"]

    into = cli("copy", out, keyed, "-c", "notes", "--if-exists", "reuse")
    assert into.returncode == 2 and "it has no id column" in into.stderr.replace("\n", " ")
    assert table.count_rows() == ROWS


def test_an_id_column_that_repeats_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """LanceDB keeps no column unique: a chunk table keyed by ``doc_id`` (three chunks per
    document) was copied with the chunks of a document merged into one record on the
    target, and only the check after said so. Now refused before anything is read or
    written, naming the values and both ways out."""
    _create(
        tmp_path / "src",
        "chunks",
        {
            "doc_id": [f"doc-{i // 3}" for i in range(ROWS)],
            "text": [f"chunk {i}" for i in range(ROWS)],
            "vector": _vectors(),
        },
    )
    src, out = f"lancedb://{tmp_path / 'src'}", f"lancedb://{tmp_path / 'out'}"
    refused = cli("copy", src, out, "-c", "chunks")
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.replace("\n", " ")
    for text in ("'doc_id' has no unique constraint", "'doc-0'", "?id_field=_rowid"):
        assert text in line, line
    lancedb = require_module("lancedb")
    assert "chunks" not in lancedb.connect(str(tmp_path / "out")).table_names()
    copied = _ok("copy", f"{src}?id_field=_rowid", out, "-c", "chunks")
    assert copied["verified"] and copied["rows_written"] == ROWS
