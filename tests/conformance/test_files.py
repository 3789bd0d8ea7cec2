"""Files as sources and targets (issue #19 item 2).

Parquet folders and JSON Lines files, which vecmigrate also writes, pass the conformance
suite as append-only stores (like the dump). Every format is then read from files laid out
as other tools write them, holding the suite's data (``vecmigrate.testing.data``): the
same ids, vectors, documents and metadata come back, counted, partitioned, resumed,
fetched, filtered and searched alike, and reading changes nothing on disk.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vecmigrate.connectors import Connector, connect
from vecmigrate.connectors.tabular import SOURCE_ERROR_KEY
from vecmigrate.errors import ConfigError, SchemaMismatchError
from vecmigrate.exact import exact_topk
from vecmigrate.filters import evaluate, parse
from vecmigrate.model import METRIC_UNKNOWN, CollectionSchema, IdType, Metric
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.records import metadata_rows, vectors_to_numpy
from vecmigrate.testing.data import (
    DIM,
    GENRES,
    ROWS,
    sample_batch,
    sample_ids,
    sample_metadata,
    sample_schema,
    sample_vectors,
)
from vecmigrate.testing.safety import storage_fingerprint
from vecmigrate.testing.suite import ConnectorConformance


# -- the writable formats: the whole suite ------------------------------------------------------
class TestParquetStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[Connector]:
        conn = connect(f"parquet://{tmp_path / 'store'}")
        yield conn
        conn.close()


class TestParquetIntIds(TestParquetStringIds):
    id_type = IdType.INT


class TestJsonlStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[Connector]:
        conn = connect(f"jsonl://{tmp_path / 'store'}")
        yield conn
        conn.close()


class TestJsonlIntIds(TestJsonlStringIds):
    id_type = IdType.INT


# -- the suite's data as other tools write it ---------------------------------------------------
DOCS = [f"document number {i} about {GENRES[i % 4]}" for i in range(ROWS)]
FIELDS = {
    "genre": "string",
    "year": "int64",
    "score": "float64",
    "published": "bool",
    "tags": "list<string>",
    "note": "string",
}


def _columns(id_type: IdType) -> dict[str, Any]:
    meta = sample_metadata()
    return {
        "doc_id": sample_ids(id_type),
        "text": DOCS,
        **{k: [m.get(k) for m in meta] for k in FIELDS},
    }


def _write_parquet(root: Path, id_type: IdType) -> str:
    """A folder of two files, pandas-style variable lists of float32 under ``emb``."""
    cols = _columns(id_type)
    vectors = sample_vectors()
    folder = root / "docs"
    folder.mkdir()
    for part, (a, b) in enumerate([(0, 100), (100, ROWS)]):
        table = pa.table(
            {
                **{k: v[a:b] for k, v in cols.items()},
                "emb": pa.array(list(vectors[a:b]), pa.list_(pa.float32())),
            }
        )
        pq.write_table(table, folder / f"part{part}.parquet", row_group_size=40)
    return f"parquet://{folder}?id_field=doc_id&vector_field=emb&metric=cosine"


def _write_jsonl(root: Path, id_type: IdType) -> str:
    vectors = sample_vectors()
    with (root / "docs.jsonl").open("w") as f:
        for i, (rid, meta) in enumerate(zip(sample_ids(id_type), sample_metadata(), strict=True)):
            row = {"id": rid, "text": DOCS[i], "embedding": vectors[i].tolist(), **meta}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            if i % 50 == 0:
                f.write("\n")  # blank lines are not records
    return f"jsonl://{root / 'docs.jsonl'}?metric=cosine"


def _write_csv(root: Path, id_type: IdType) -> str:
    """Vectors as JSON-list text and as space-separated text (two files, one folder);
    lists (``tags``) have no CSV form and are left out."""
    vectors = sample_vectors()
    meta = sample_metadata()
    ids = sample_ids(id_type)
    folder = root / "csvs"
    folder.mkdir()
    for part, (a, b) in enumerate([(0, 100), (100, ROWS)]):
        lines = ["id,text,embedding,genre,year,score,published,note"]
        for i in range(a, b):
            m = meta[i]
            numbers = [repr(float(x)) for x in vectors[i]]
            vec = json.dumps([float(x) for x in vectors[i]]) if part == 0 else " ".join(numbers)
            cells = [ids[i], DOCS[i], vec, m["genre"], m["year"], m["score"], m["published"]]
            cells.append(m.get("note", ""))
            lines.append(",".join(_csv_cell(c) for c in cells))
        (folder / f"docs{part}.csv").write_text("\n".join(lines) + "\n")
    return f"csv://{folder}?metric=cosine"


def _csv_cell(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def _write_npy(root: Path, id_type: IdType) -> str:
    np.save(root / "docs.npy", sample_vectors())
    (root / "ids.txt").write_text("".join(f"{i}\n" for i in sample_ids(id_type)))
    return f"npy://{root / 'docs.npy'}?ids_file=ids.txt&metric=cosine"


def write_hf(folder: Path, table: pa.Table, shards: int = 2) -> None:
    """What ``datasets.Dataset.save_to_disk`` writes: Arrow stream shards, state.json,
    dataset_info.json (written here with pyarrow; ``datasets`` is not installed)."""
    folder.mkdir(parents=True)
    bounds = np.linspace(0, table.num_rows, shards + 1).astype(int)
    names = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        name = f"data-{i:05d}-of-{shards:05d}.arrow"
        with (
            pa.OSFile(str(folder / name), "wb") as sink,
            pa.ipc.new_stream(sink, table.schema) as writer,
        ):
            for batch in table.slice(a, b - a).to_batches(max_chunksize=50):
                writer.write_batch(batch)
        names.append({"filename": name})
    state: dict[str, Any] = {
        "_data_files": names,
        "_fingerprint": "0123456789abcdef",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": "train",
    }
    (folder / "state.json").write_text(json.dumps(state, indent=2))
    (folder / "dataset_info.json").write_text(json.dumps({"features": {}}, indent=2))


def _write_hf(root: Path, id_type: IdType) -> str:
    cols = _columns(id_type)
    cols["id"] = cols.pop("doc_id")
    flat = pa.array(sample_vectors().reshape(-1), pa.float32())
    table = pa.table({**cols, "embedding": pa.FixedSizeListArray.from_arrays(flat, DIM)})
    write_hf(root / "docs", table)
    return f"hf://{root / 'docs'}?metric=cosine"


WRITERS: dict[str, Callable[[Path, IdType], str]] = {
    "parquet": _write_parquet,
    "jsonl": _write_jsonl,
    "csv": _write_csv,
    "npy": _write_npy,
    "hf": _write_hf,
}
# What each format carries of the suite's records (CSV has no lists, npy only vectors).
CARRIES = {
    "parquet": set(FIELDS),
    "jsonl": set(FIELDS),
    "csv": set(FIELDS) - {"tags"},
    "npy": set(),
    "hf": set(FIELDS),
}


def _scan(conn: Connector, name: str, n: int = 1, batch_rows: int = 37) -> pa.Table:
    schema = conn.describe(name)
    batches = [
        b
        for p in conn.partitions(name, n)
        for b, _ in conn.scan(name, p, schema=schema, batch_rows=batch_rows)
    ]
    return pa.Table.from_batches(batches, schema=schema.arrow_schema())


@pytest.fixture(params=sorted(WRITERS))
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[IdType.STRING, IdType.INT], ids=["string-ids", "int-ids"])
def id_type(request: pytest.FixtureRequest) -> IdType:
    return IdType(request.param)


@pytest.fixture
def written(fmt: str, id_type: IdType, tmp_path: Path) -> Iterator[tuple[Connector, str]]:
    (tmp_path / "src").mkdir()
    uri = WRITERS[fmt](tmp_path / "src", id_type)
    with connect(uri, read_only=True) as conn:
        names = conn.list_collections()
        if fmt == "csv":  # JSON-list vector text in docs0, space-separated in docs1
            assert names == ["docs0", "docs1"]
            yield conn, "docs0" if id_type is IdType.STRING else "docs1"
        else:
            assert names == ["docs"]
            yield conn, "docs"


def test_describe_reads_the_layout(
    written: tuple[Connector, str], fmt: str, id_type: IdType
) -> None:
    conn, name = written
    schema = conn.describe(name)
    assert schema.id_type is id_type
    assert schema.has_document is (fmt != "npy")
    (vector,) = schema.vectors
    assert (vector.dim, vector.metric, vector.metric_source) == (
        DIM,
        Metric.COSINE,
        "stated by ?metric=cosine",
    )
    want = {(k, t) for k, t in FIELDS.items() if k in CARRIES[fmt]}
    assert {(m.name, m.type) for m in schema.metadata} == want


def _expected(fmt: str, id_type: IdType, name: str) -> tuple[list[Any], range]:
    ids = sample_ids(id_type)
    rows = {"docs0": range(100), "docs1": range(100, ROWS)}.get(name, range(ROWS))
    return [ids[i] for i in rows], rows


@pytest.mark.parametrize("parts", [1, 3])
def test_scan_returns_the_records(
    written: tuple[Connector, str], fmt: str, id_type: IdType, parts: int
) -> None:
    conn, name = written
    schema = conn.describe(name)
    ids, rows = _expected(fmt, id_type, name)
    assert conn.count(name) == len(rows)
    table = _scan(conn, name, n=parts)
    got = {rid: i for i, rid in enumerate(table.column("id").to_pylist())}
    assert len(got) == table.num_rows == len(rows)
    order = [got[rid] for rid in ids]
    table = table.take(pa.array(order))
    assert np.array_equal(
        vectors_to_numpy(table.column("vector" if fmt == "npy" else schema.vector.name)),
        sample_vectors()[list(rows)],
    )
    if fmt == "npy":
        return
    assert table.column("document").to_pylist() == [DOCS[i] for i in rows]
    batch = table.combine_chunks().to_batches()[0]
    metas = sample_metadata()
    for i, got_meta in zip(rows, metadata_rows(batch, schema), strict=True):
        want = {k: v for k, v in metas[i].items() if k in CARRIES[fmt]}
        assert got_meta == want, f"record {i}"
        for key, value in want.items():
            assert type(got_meta[key]) is type(value), (i, key)


def test_resume_continues_without_loss_or_duplicates(written: tuple[Connector, str]) -> None:
    conn, name = written
    schema = conn.describe(name)
    (part,) = conn.partitions(name, 1)
    first: list[Any] = []
    token = None
    for i, (batch, tok) in enumerate(conn.scan(name, part, schema=schema, batch_rows=23)):
        assert 0 < batch.num_rows <= 23
        first += batch.column("id").to_pylist()
        token = tok
        if i == 2:
            break
    rest = [
        x
        for b, _ in conn.scan(name, part, resume=token, schema=schema, batch_rows=23)
        for x in b.column("id").to_pylist()
    ]
    assert len(first) > 23 and set(first).isdisjoint(rest)
    assert len(first) + len(rest) == conn.count(name)


def test_fetch_filter_and_search(written: tuple[Connector, str], fmt: str, id_type: IdType) -> None:
    conn, name = written
    schema = conn.describe(name)
    ids, rows = _expected(fmt, id_type, name)
    missing = 999_999 if id_type is IdType.INT else "no-such-id"
    got = conn.fetch(name, [ids[3], ids[17], missing])
    assert sorted(map(str, got.column("id").to_pylist())) == sorted(map(str, [ids[3], ids[17]]))
    corpus = sample_vectors()[list(rows)]
    found, _ = conn.search(name, corpus[:5] + 0.01, 3)
    assert [hits[0] for hits in found] == ids[:5]
    if fmt == "npy":
        return
    table = _scan(conn, name).combine_chunks().to_batches()[0]
    for flt in ({"genre": "news"}, {"year": {"$gte": 2010}}, {"note": {"$exists": True}}):
        mask = evaluate(parse(flt, schema), table)
        assert conn.count(name, flt) == int(mask.sum()), flt
        allowed = [i for i, m in zip(table.column("id").to_pylist(), mask, strict=True) if m]
        truth = exact_topk(
            [(allowed, vectors_to_numpy(table.column(schema.vector.name))[mask])],
            corpus[:3],
            5,
            Metric.COSINE,
        )
        assert conn.search(name, corpus[:3], 5, filter=flt)[0] == truth.ids, flt


def test_reading_changes_nothing_and_writing_is_refused(
    written: tuple[Connector, str], fmt: str
) -> None:
    conn, name = written
    before = storage_fingerprint(conn)
    schema = conn.describe(name)
    _scan(conn, name, n=2)
    conn.count(name, {"genre": "news"} if fmt != "npy" else None)
    conn.search(name, sample_vectors()[:2], 3)
    assert storage_fingerprint(conn) == before
    if fmt in ("parquet", "jsonl"):  # writable, but never over a file vecmigrate did not write
        with pytest.raises(ConfigError, match="not written by vecmigrate"):
            conn.drop(name)
        with pytest.raises(ConfigError, match="not written by vecmigrate"):
            conn.create(schema, if_exists="replace")
        return
    assert not conn.capabilities.mutable
    with pytest.raises(ConfigError, match="read-only"):
        conn.create(schema)
    with pytest.raises(ConfigError, match="read-only"):
        conn.drop(name)
    conn.drop("not-there")  # missing is a no-op, as for every engine
    assert storage_fingerprint(conn) == before


def test_export_to_a_dump_gives_equal_digests(
    written: tuple[Connector, str], tmp_path: Path
) -> None:
    conn, name = written
    dump = connect(f"dump://{tmp_path / 'dump'}")
    opts = CopyOptions(workers=2, batch_rows=64, job_path=tmp_path / "job.sqlite")
    result = copy_collection(conn, dump, name, options=opts)
    assert result.rows_written == conn.count(name) and result.dead_letters == 0
    from vecmigrate.verify.digest import collection_digest

    assert collection_digest(conn, name).compare(collection_digest(dump, name)).equal


# -- the metric -----------------------------------------------------------------------------------
def _plain_parquet(path: Path, vectors: np.ndarray) -> None:
    ids = [f"r{i}" for i in range(len(vectors))]
    flat = pa.array(vectors.astype(np.float32).reshape(-1))
    emb = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    pq.write_table(pa.table({"id": ids, "embedding": emb}), path)


def test_metric_is_sampled_stated_or_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(50, 8))
    _plain_parquet(tmp_path / "unit.parquet", raw / np.linalg.norm(raw, axis=1, keepdims=True))
    _plain_parquet(tmp_path / "raw.parquet", raw)
    with connect(f"parquet://{tmp_path / 'unit.parquet'}") as conn:
        v = conn.describe("unit").vector
        assert v.metric is Metric.COSINE and "unit length" in (v.metric_source or "")
    with connect(f"parquet://{tmp_path / 'raw.parquet'}") as conn:
        assert conn.describe("raw").vector.metric_source == METRIC_UNKNOWN
        dump = connect(f"dump://{tmp_path / 'dump'}")
        with pytest.raises(SchemaMismatchError, match="nothing records the metric"):
            copy_collection(conn, dump, "raw", options=CopyOptions(job_path=tmp_path / "j"))
    with connect(f"parquet://{tmp_path / 'raw.parquet'}?metric=dot") as conn:
        assert conn.describe("raw").vector.metric is Metric.DOT
    with pytest.raises(ConfigError, match="metric=cosine, metric=l2 or metric=dot"):
        connect(f"parquet://{tmp_path / 'raw.parquet'}?metric=hamming").describe("raw")


# -- records no engine could take -----------------------------------------------------------------
def _bad(conn: Connector, name: str) -> dict[Any, str]:
    """{id: source error} of the records read as bad (NaN vectors)."""
    table = _scan(conn, name)
    out = {}
    for rid, extra, vec in zip(
        table.column("id").to_pylist(),
        table.column("metadata_extra").to_pylist(),
        vectors_to_numpy(table.column(conn.describe(name).vector.name)),
        strict=True,
    ):
        if extra and SOURCE_ERROR_KEY in extra:
            assert np.isnan(vec).all()
            out[rid] = json.loads(extra)[SOURCE_ERROR_KEY]
        else:
            assert np.isfinite(vec).all()
    return out


def test_bad_jsonl_lines_become_records_saying_why(tmp_path: Path) -> None:
    lines = [json.dumps({"id": f"d{i}", "text": "t", "embedding": [0.5] * 4}) for i in range(6)]
    lines[1] = '{"id": "d1", "text": "cut off'
    lines[2] = json.dumps({"id": "d2", "embedding": [0.5] * 3})
    lines[3] = "[1, 2]"
    lines[4] = json.dumps({"id": "d4", "embedding": [0.5, "x", 1, 2]})
    (tmp_path / "b.jsonl").write_text("\n".join(lines) + "\n")
    with connect(f"jsonl://{tmp_path / 'b.jsonl'}") as conn:
        assert conn.count("b") == 6
        bad = _bad(conn, "b")
    assert bad == {
        "d1": bad["d1"],
        "d2": "jsonl b.jsonl line 3: embedding: vector has 3 values, the collection's are 4-d",
        "<jsonl b.jsonl line 4>": "jsonl b.jsonl line 4: not a JSON object but list",
        "d4": "jsonl b.jsonl line 5: embedding: not a list of numbers",
    }
    assert bad["d1"].startswith("jsonl b.jsonl line 2: not JSON (")


def test_bad_csv_rows_become_records_saying_why(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text(
        "id,vector,genre\n1,[1 2 3],a\n2,[1 2],b\n3,[1 x 3],c\n4,[1 2 3],d,extra\n5,[4 5 6],e\n"
    )
    with connect(f"csv://{tmp_path / 'b.csv'}?metric=l2") as conn:
        schema = conn.describe("b")
        assert schema.id_type is IdType.INT and schema.vector.dim == 3
        assert conn.count("b") == 5
        bad = _bad(conn, "b")
    line5 = next(k for k in bad if k not in (2, 3))
    assert bad == {
        2: "csv b.csv record 2: vector: vector has 2 values, the collection's are 3-d",
        3: "csv b.csv record 3: vector: vector text '[1 x 3]' is not a list of numbers",
        line5: "csv b.csv line 5: 4 fields, the header has 3",
    }
    assert line5 < 0  # an int placeholder id, derived from where the line is


def test_bad_parquet_rows_become_records_saying_why(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": ["a", None, "c", "d"],
            "embedding": pa.array([[1.0, 0.0], [0.0, 1.0], [1.0], None], pa.list_(pa.float32())),
        }
    )
    pq.write_table(table, tmp_path / "p.parquet")
    with connect(f"parquet://{tmp_path / 'p.parquet'}?metric=cosine") as conn:
        assert _bad(conn, "p") == {
            "<parquet p.parquet row 1>": "parquet p.parquet row 1: id: no id",
            "c": "parquet p.parquet row 2: embedding: vector has 1 value, the collection's are 2-d",
            "d": "parquet p.parquet row 3: embedding: vector is null",
        }


def test_a_parquet_file_repeating_an_id_is_refused_before_anything_is_read(
    tmp_path: Path,
) -> None:
    """A file keeps nothing unique: chunks keyed by their document's id were merged on the
    target (30 rows became 10) and only the check after said so. Its id column alone is
    read first; a row without an id stays a dead letter of its own (above)."""
    vectors = sample_vectors(30)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
    ids = [f"doc-{i // 3}" for i in range(30)]
    pq.write_table(pa.table({"id": ids, "embedding": emb}), tmp_path / "chunks.parquet")
    with connect(f"parquet://{tmp_path / 'chunks.parquet'}?metric=cosine") as conn:
        target = connect(f"lancedb://{tmp_path / 'out'}")
        with pytest.raises(ConfigError, match=r"same value in several rows \(e.g. 'doc-"):
            copy_collection(conn, target, "chunks", options=CopyOptions(job_path=tmp_path / "j"))
        assert "chunks" not in target.list_collections()


def test_float64_vectors_move_only_when_exact(tmp_path: Path) -> None:
    exact = sample_vectors(10).astype(np.float64)
    np.save(tmp_path / "exact.npy", exact)
    np.save(tmp_path / "wide.npy", exact + 1e-12)
    with connect(f"npy://{tmp_path}?metric=l2") as conn:
        assert conn.list_collections() == ["exact", "wide"]
        got = vectors_to_numpy(_scan(conn, "exact").column("vector"))
        assert np.array_equal(got, exact.astype(np.float32))
        with pytest.raises(Exception, match="not exactly representable as float32"):
            _scan(conn, "wide")


def test_npy_ids_file_must_match_the_rows(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", sample_vectors(10))
    (tmp_path / "ids.txt").write_text("a\nb\n")
    with pytest.raises(ConfigError, match=r"holds 10 vectors but ids\.txt 2 ids"):
        connect(f"npy://{tmp_path / 'v.npy'}?ids_file=ids.txt").describe("v")
    with connect(f"npy://{tmp_path / 'v.npy'}") as conn:
        assert conn.describe("v").id_type is IdType.INT
        assert _scan(conn, "v").column("id").to_pylist() == list(range(10))


def test_hf_dataset_dict_is_one_collection_per_split(tmp_path: Path) -> None:
    flat = pa.array(sample_vectors(20).reshape(-1))
    table = pa.table(
        {
            "id": [f"q{i}" for i in range(20)],
            "embeddings": pa.array(list(sample_vectors(20)), pa.list_(pa.float32())),
            "label": list(range(20)),
            "image": pa.array([b"\x89PNG"] * 20, pa.binary()),
        }
    )
    assert len(flat) == 20 * DIM
    write_hf(tmp_path / "dd" / "train", table.slice(0, 15), shards=1)
    write_hf(tmp_path / "dd" / "test", table.slice(15), shards=1)
    (tmp_path / "dd" / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')
    with pytest.raises(ConfigError, match=r"'image' is binary.*exclude_fields=image"):
        connect(f"hf://{tmp_path / 'dd'}?metric=l2").describe("train")
    with connect(f"hf://{tmp_path / 'dd'}?metric=l2&exclude_fields=image") as conn:
        assert conn.list_collections() == ["test", "train"]
        assert (conn.count("train"), conn.count("test")) == (15, 5)
        schema = conn.describe("test")
        assert [(m.name, m.type) for m in schema.metadata] == [("label", "int64")]
        assert _scan(conn, "test").column("id").to_pylist() == [f"q{i}" for i in range(15, 20)]


# -- writing: where, append-only, last copy wins --------------------------------------------------
def test_parquet_target_path_is_the_collection_folder(tmp_path: Path) -> None:
    schema = sample_schema("docs")
    with connect(f"parquet://{tmp_path / 'docs'}") as conn:
        conn.create(schema)
        conn.upsert("docs", sample_batch(schema))
        conn.finalize("docs")
    files = sorted(p.name for p in (tmp_path / "docs").iterdir())
    assert files[0] == "_vecmigrate_schema.json" and files[1].startswith("part-")
    # Any Parquet reader sees the records; vecmigrate sees the schema it wrote.
    assert pq.read_table(tmp_path / "docs").num_rows == ROWS
    with connect(f"parquet://{tmp_path}") as conn:
        assert conn.list_collections() == ["docs"]
        assert conn.describe("docs").vector.metric is Metric.COSINE
    conn = connect(f"jsonl://{tmp_path / 'emb.jsonl'}")
    with pytest.raises(ConfigError, match="--target-collection emb"):
        conn.create(schema)


@pytest.mark.parametrize("scheme", ["parquet", "jsonl"])
def test_finalize_keeps_the_last_copy_of_each_id(tmp_path: Path, scheme: str) -> None:
    schema = sample_schema("docs")
    batch = sample_batch(schema)
    with connect(f"{scheme}://{tmp_path / 'out'}") as conn:
        conn.create(schema)
        conn.upsert("docs", batch)
        docs = pa.array([f"again {i}" for i in range(10)])
        again = batch.slice(0, 10)
        again = again.set_column(again.schema.get_field_index("document"), "document", docs)
        conn.upsert("docs", again)  # a resumed job re-sends a batch
        assert conn.count("docs") == ROWS + 10
        conn.finalize("docs")
        assert conn.count("docs") == ROWS
        got = conn.fetch("docs", batch.column("id").to_pylist()[:10])
        assert sorted(got.column("document").to_pylist()) == sorted(docs.to_pylist())
        with pytest.raises(ConfigError, match="append-only"):
            conn.delete("docs", ["doc-0001"])


def test_resumed_jsonl_write_cuts_a_half_written_line(tmp_path: Path) -> None:
    schema = sample_schema("docs")
    batch = sample_batch(schema)
    with connect(f"jsonl://{tmp_path / 'docs.jsonl'}") as conn:
        conn.create(schema)
        conn.upsert("docs", batch.slice(0, 100))
    with (tmp_path / "docs.jsonl").open("a") as f:
        f.write('{"id":"doc-0100","document":"killed mid-wri')
    with connect(f"jsonl://{tmp_path / 'docs.jsonl'}") as conn:
        conn.create(schema, if_exists="reuse")
        conn.upsert("docs", batch.slice(100))
        conn.finalize("docs")
        assert conn.count("docs") == ROWS
        assert _bad(conn, "docs") == {}


def test_copy_between_files_is_verified(tmp_path: Path) -> None:
    """dump -> jsonl -> parquet, each read back identical."""
    schema: CollectionSchema = sample_schema("docs")
    dump = connect(f"dump://{tmp_path / 'dump'}")
    dump.create(schema)
    dump.upsert("docs", sample_batch(schema))
    dump.finalize("docs")
    from vecmigrate.verify.digest import collection_digest

    want = collection_digest(dump, "docs")
    source: Connector = dump
    for i, uri in enumerate((f"jsonl://{tmp_path / 'j'}", f"parquet://{tmp_path / 'p'}")):
        target = connect(uri)
        opts = CopyOptions(workers=2, batch_rows=50, job_path=tmp_path / f"{i}.sqlite")
        assert copy_collection(source, target, "docs", options=opts).rows_written == ROWS
        assert collection_digest(target, "docs").compare(want).equal
        source = target
