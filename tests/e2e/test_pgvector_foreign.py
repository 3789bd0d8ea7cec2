"""pgvector tables an application made with plain SQL, driven through the CLI like a user:
read as they are (any key column, a JSON metadata column, the metric from the index or
from sampled vectors, refused until the mapping states it), and written in their own
column types (a value that does not fit is refused for its record only)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from tests.e2e.helpers import cli
from vecmigrate.connectors import connect
from vecmigrate.model import CollectionSchema, MetadataField, VectorField
from vecmigrate.pipeline.deadletter import read_dead_letters
from vecmigrate.records import build_batch, metadata_rows

ROWS = 60


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _meta(i: int) -> dict[str, Any]:
    return {
        "source": f"file{i % 4}.pdf",
        "page": i,
        "score": i / 4,
        "tags": ["a", "b", "c"][: i % 4],
        "draft": i % 2 == 0,
    }


def _items(postgres: Any, name: str, index: str | None = None) -> np.ndarray:
    """A LangChain-like table: bigint key, page_content, cmetadata jsonb, vector(8)."""
    vectors = np.random.default_rng(7).normal(size=(ROWS, 8)).astype(np.float32) * 3
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(
            f"CREATE TABLE {name} (pk bigint PRIMARY KEY, page_content text, "
            "cmetadata jsonb, embedding vector(8))"
        )
        if index:
            db.execute(f"CREATE INDEX {name}_vec_idx ON {name} USING hnsw (embedding {index})")
        with db.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {name} VALUES (%s, %s, %s, %s::vector)",
                [
                    (i * 10, f"chunk {i}", json.dumps(_meta(i)), str(vectors[i].tolist()))
                    for i in range(ROWS)
                ],
            )
    return vectors


def _inspected(uri: str, name: str) -> dict[str, Any]:
    out = cli("inspect", uri, "-c", name, "--json")
    assert out.returncode == 0, out.stderr
    info: dict[str, Any] = out.json()["collections"][0]
    return info


@pytest.mark.parametrize("kind", ["dump", "lancedb"])
def test_unindexed_table_needs_the_metric_then_copies_and_verifies(
    postgres: Any, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = _name("items")
    vectors = _items(postgres, name)
    source = postgres.uri()

    info = _inspected(source, name)
    assert info["count"] == ROWS and info["id_type"] == "int" and info["has_document"]
    (vec,) = info["vectors"]
    assert (vec["name"], vec["dim"], vec["metric_source"]) == ("embedding", 8, "unknown")
    types = {m["name"]: m["type"] for m in info["metadata"]}
    assert types == {
        "source": "string",
        "page": "int64",
        "score": "float64",
        "tags": "list<string>",
        "draft": "bool",
    }
    layout = info["engine_settings"]["layout"]
    assert (layout["key"], layout["document"], layout["metadata"]) == (
        "pk",
        "page_content",
        "cmetadata",
    )
    shown = cli("inspect", source, "-c", name)
    assert "UNKNOWN" in shown.stdout and "vectors.embedding.metric" in shown.stdout

    target = f"{kind}://{tmp_path / kind}"
    refused = cli("copy", source, target, "-c", name, "--json")
    assert refused.returncode == 2
    assert "vector field 'embedding'" in refused.stderr
    assert "vectors: {embedding: {metric: l2}}" in refused.stderr

    (tmp_path / "map.yaml").write_text("vectors:\n  embedding: {metric: l2}\n")
    copied = cli("copy", source, target, "-c", name, "--map", "map.yaml", "--json")
    assert copied.returncode == 0, copied.stderr
    result = copied.json()
    assert result["rows_written"] == ROWS and result["verified"], result["checks"]

    verified = cli("verify", source, target, "-c", name, "--json", "--report-dir", "report")
    assert verified.returncode == 0, verified.stderr + verified.stdout[-2000:]
    assert verified.json()["passed"]

    with connect(target) as t:
        schema = t.describe(name)
        assert schema.vector.metric.value == "l2"
        assert {m.name: m.type for m in schema.metadata} == types
        batch = t.fetch(name, [0, 30, 590])
        rows = {r["id"]: r for r in batch.to_pylist()}
        metas = dict(zip(batch.column("id").to_pylist(), metadata_rows(batch, schema), strict=True))
    for i in (0, 3, 59):
        assert rows[i * 10]["document"] == f"chunk {i}"
        assert rows[i * 10]["embedding"] == vectors[i].tolist()
        want = {k: v for k, v in _meta(i).items()}
        assert metas[i * 10] == want


def _index_scans(postgres: Any, table: str) -> int:
    with psycopg.connect(postgres.dsn) as db:
        row = db.execute(
            "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes WHERE relname = %s "
            "AND indexrelname NOT LIKE '%%pkey'",
            (table,),
        ).fetchone()
    return int(row[0]) if row else 0


INDEXED_ROWS = 2000  # enough rows that the planner prefers the HNSW index to a sort


def _indexed_table(postgres: Any, name: str, column: str, index: str) -> np.ndarray:
    """A table of ``INDEXED_ROWS`` unnormalised 8-d vectors in a ``column`` (SQL type)
    column ``emb`` with HNSW ``index`` (``USING hnsw (...)``), analysed; the vectors as
    stored (float16 values for halfvec), ids 1..N in order."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(INDEXED_ROWS, 8)) * rng.uniform(0.2, 5, (INDEXED_ROWS, 1))
    stored = values.astype(np.float16 if column.startswith("halfvec") else np.float32)
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} (id bigserial PRIMARY KEY, body text, emb {column})")
        with db.cursor() as cur, cur.copy(f"COPY {name} (body, emb) FROM STDIN") as copy:
            for i, v in enumerate(stored):
                copy.write_row((f"passage {i}", str(v.astype(float).tolist())))
        db.execute(f"CREATE INDEX {name}_emb ON {name} USING hnsw ({index})")
        db.execute(f"ANALYZE {name}")
    return stored.astype(np.float32)


def _copied_vectors(target: str, name: str, ids: list[int]) -> np.ndarray:
    with connect(target) as t:
        got = t.fetch(name, ids)
    order = np.argsort(got.column("id").to_numpy())
    return np.stack(got.column("emb").to_numpy(zero_copy_only=False))[order]


def test_a_halfvec_table_is_listed_copied_exactly_and_searched_through_its_index(
    postgres: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pgvector's halfvec (float16: how 3,072-d embeddings get an HNSW index), as an
    application creates it: the table was not even listed. Its float16 values widen to
    float32 exactly, and verify's searches go through its index."""
    monkeypatch.chdir(tmp_path)
    name = _name("half")
    stored = _indexed_table(postgres, name, "halfvec(8)", "emb halfvec_l2_ops")
    source = postgres.uri()
    with connect(source) as conn:
        assert name in conn.list_collections()
    info = _inspected(source, name)
    (vec,) = info["vectors"]
    assert (vec["name"], vec["dim"], vec["metric"]) == ("emb", 8, "l2")
    assert f"{name}_emb (halfvec_l2_ops)" in vec["metric_source"]
    assert "float16" in info["engine_settings"]["emb.type"]

    target = f"lancedb://{tmp_path / 'lance'}"
    copied = cli("copy", source, target, "-c", name, "--json")
    assert copied.returncode == 0, copied.stderr
    assert copied.json()["rows_written"] == INDEXED_ROWS and copied.json()["verified"]
    got = _copied_vectors(target, name, [1, 2, INDEXED_ROWS])
    assert np.array_equal(got, stored[[0, 1, -1]])  # bit for bit
    before = _index_scans(postgres, name)
    verified = cli("verify", source, target, "-c", name, "--json", "--report-dir", "report")
    assert verified.returncode == 0, verified.stderr + verified.stdout[-2000:]
    assert verified.json()["passed"]
    assert _index_scans(postgres, name) > before

    back = cli("copy", target, source, "-c", name, "--if-exists", "reuse", "--json")
    assert back.returncode == 2
    assert "writing into halfvec columns (emb) is not built" in back.stderr


def test_a_vector_column_indexed_as_halfvec_gives_its_metric_and_serves_verify(
    postgres: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pgvector's documented way to index more than 2,000 dimensions: a vector column
    with an HNSW index on ``(emb::halfvec(N))``. That index says the metric (the vectors
    are not unit length: nothing else would), and verify searches the expression it is
    built on, as the application's queries do, so the index serves them."""
    monkeypatch.chdir(tmp_path)
    name = _name("cast")
    stored = _indexed_table(postgres, name, "vector(8)", "(emb::halfvec(8)) halfvec_cosine_ops")
    source = postgres.uri()
    (vec,) = _inspected(source, name)["vectors"]
    assert (vec["metric"], vec["index"]["kind"]) == ("cosine", "hnsw")
    assert f"{name}_emb (halfvec_cosine_ops)" in vec["metric_source"]

    target = f"dump://{tmp_path / 'dump'}"
    copied = cli("copy", source, target, "-c", name, "--json")
    assert copied.returncode == 0, copied.stderr
    assert copied.json()["rows_written"] == INDEXED_ROWS and copied.json()["verified"]
    assert np.array_equal(_copied_vectors(target, name, [5]), stored[[4]])
    before = _index_scans(postgres, name)
    verified = cli("verify", source, target, "-c", name, "--json", "--report-dir", "report")
    assert verified.returncode == 0, verified.stderr + verified.stdout[-2000:]
    assert verified.json()["passed"]
    assert _index_scans(postgres, name) > before


def test_a_partitioned_table_is_one_collection_not_one_per_partition(
    postgres: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pgvector's README partitions a table by category to filter fast. The table itself
    was not listed (only ordinary tables were), its partitions were, each as a collection
    holding part of the records."""
    monkeypatch.chdir(tmp_path)
    name = _name("parts")
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(
            f"CREATE TABLE {name} (id bigint, category text, body text, embedding vector(4), "
            "PRIMARY KEY (category, id)) PARTITION BY LIST (category)"
        )
        for c in ("a", "b", "c"):
            db.execute(f"CREATE TABLE {name}_{c} PARTITION OF {name} FOR VALUES IN ('{c}')")
        db.execute(f"CREATE INDEX ON {name} USING hnsw (embedding vector_ip_ops)")
        db.execute(
            f"INSERT INTO {name} SELECT i, chr(97 + i % 3), 'doc ' || i, "
            "ARRAY[i % 17, 1, -2, i % 5]::vector FROM generate_series(1, 3000) i"
        )
    with connect(postgres.uri()) as conn:
        listed = [c for c in conn.list_collections() if c.startswith(name)]
    assert listed == [name]
    # Its key is (category, id): which column identifies a record is the user's to say.
    refused = cli("inspect", postgres.uri(), "-c", name)
    assert refused.returncode == 2 and "?id_field=" in refused.stderr
    source = f"{postgres.uri()}?id_field=id"
    info = _inspected(source, name)
    assert info["count"] == 3000 and info["vectors"][0]["metric"] == "dot"
    target = f"dump://{tmp_path / 'dump'}"
    copied = cli("copy", source, target, "-c", name, "--workers", "2", "--json")
    assert copied.returncode == 0, copied.stderr
    assert copied.json()["rows_written"] == 3000 and copied.json()["verified"]


def test_cosine_index_gives_the_metric(postgres: Any, tmp_path: Path) -> None:
    name = _name("indexed")
    _items(postgres, name, index="vector_cosine_ops")
    (vec,) = _inspected(postgres.uri(), name)["vectors"]
    assert vec["metric"] == "cosine" and vec["index"]["kind"] == "hnsw"
    assert vec["metric_source"] == f"index {name}_vec_idx (vector_cosine_ops)"
    target = f"dump://{tmp_path / 'out'}"
    copied = cli("copy", postgres.uri(), target, "-c", name, "--json")
    assert copied.returncode == 0, copied.stderr
    assert copied.json()["verified"], copied.json()["checks"]
    with connect(target) as t:
        assert t.describe(name).vector.metric.value == "cosine"


def test_uuid_keyed_table(postgres: Any, tmp_path: Path) -> None:
    name = _name("notes")
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(
            f"CREATE TABLE {name} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
            "body text NOT NULL, kind varchar(10), created timestamptz DEFAULT now(), "
            "embedding vector(4))"
        )
        # Unit vectors and no index: cosine, from the sample.
        db.execute(
            f"INSERT INTO {name} (body, kind, embedding) SELECT 'note ' || g, "
            "CASE WHEN g % 2 = 0 THEN 'even' END, "
            "('[' || cos(g) || ',' || sin(g) || ',0,0]')::vector FROM generate_series(1, 2500) g"
        )
        ids = [str(r[0]) for r in db.execute(f"SELECT id FROM {name} ORDER BY body LIMIT 3")]
    uri = postgres.uri()
    info = _inspected(uri, name)
    assert info["id_type"] == "uuid" and info["count"] == 2500
    (vec,) = info["vectors"]
    assert vec["metric"] == "cosine" and "unit length" in vec["metric_source"]
    assert {m["name"]: m["type"] for m in info["metadata"]} == {
        "kind": "string",
        "created": "json",
    }
    target = f"dump://{tmp_path / 'out'}"
    copied = cli("copy", uri, target, "-c", name, "--workers", "2", "--json")
    assert copied.returncode == 0, copied.stderr
    result = copied.json()
    assert result["rows_written"] == 2500 and result["partitions"] > 1 and result["verified"]
    with connect(uri) as pg, connect(target) as t:
        assert sorted(t.fetch(name, ids).column("id").to_pylist()) == sorted(ids)
        got = pg.fetch(name, [*ids, "not-a-uuid"]).to_pylist()
        assert sorted(r["id"] for r in got) == sorted(ids)
        assert all(r["document"].startswith("note ") for r in got)
        found, _ = pg.search(name, np.array([[1, 0, 0, 0]], np.float32), 3, filter={"kind": "even"})
        assert len(found[0]) == 3 and all(isinstance(i, str) for i in found[0])


def test_id_field_chooses_among_unique_columns(postgres: Any) -> None:
    name = _name("products")
    refs = [str(uuid.uuid4()) for _ in range(5)]
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(
            f"CREATE TABLE {name} (sku text UNIQUE NOT NULL, ext uuid UNIQUE, "
            "label text, embedding vector(3))"
        )
        for i, ref in enumerate(refs):
            db.execute(
                f"INSERT INTO {name} VALUES (%s, %s, %s, %s::vector)",
                (f"SKU-{i}", ref, f"label {i}", f"[{i},1,2]"),
            )
        pair = _name("pairs")
        db.execute(f"CREATE TABLE {pair} (a int, b int, v vector(2), PRIMARY KEY (a, b))")
    uri = postgres.uri()
    unsure = cli("inspect", uri, "-c", name)
    assert unsure.returncode == 2 and "?id_field=" in unsure.stderr

    by_sku = _inspected(f"{uri}?id_field=sku", name)
    assert by_sku["id_type"] == "string"
    assert {m["name"] for m in by_sku["metadata"]} == {"ext", "label"}
    by_ext = _inspected(f"{uri}?id_field=ext", name)
    assert by_ext["id_type"] == "uuid"
    assert {m["name"] for m in by_ext["metadata"]} == {"sku", "label"}
    with connect(f"{uri}?id_field=ext") as pg:
        rows = pg.fetch(name, refs[:2]).to_pylist()
        assert sorted(r["id"] for r in rows) == sorted(refs[:2])
        assert {r["metadata"]["sku"] for r in rows} == {"SKU-0", "SKU-1"}
    with connect(f"{uri}?id_field=sku") as pg:
        part = pg.partitions(name, 2)
        ids = [i for p in part for b, _ in pg.scan(name, p) for i in b.column("id").to_pylist()]
        assert sorted(ids) == [f"SKU-{i}" for i in range(5)]

    composite = cli("inspect", uri, "-c", pair)
    assert composite.returncode == 2
    error = [line for line in composite.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "(a, b)" in error[0] and "?id_field=" in error[0]
    assert "Traceback" not in composite.stderr
    assert _inspected(f"{uri}?id_field=a", pair)["id_type"] == "int"


# -- writing into an application's table ---------------------------------------------------------
DOCS_SCHEMA = CollectionSchema(
    name="app",
    vectors=(VectorField(dim=8),),
    has_document=True,
    metadata=(
        MetadataField(name="n", type="int64"),
        MetadataField(name="qty", type="float64"),
        MetadataField(name="ratio", type="float64"),
        MetadataField(name="amount", type="float64"),
        MetadataField(name="name", type="string"),
        MetadataField(name="attrs", type="json"),
        MetadataField(name="created", type="string"),
        MetadataField(name="ref", type="string"),
        MetadataField(name="flag", type="bool"),
    ),
)
APP_COLUMNS = (
    "id varchar(20) PRIMARY KEY, content text NOT NULL, embedding vector(8) NOT NULL, "
    "n integer, qty smallint, ratio real, amount numeric(10,2), name varchar(40), "
    "attrs jsonb, created timestamptz, ref uuid, flag boolean, "
    "inserted_at timestamptz NOT NULL DEFAULT now()"
)
APP_ROWS = 20


def _app_meta(i: int) -> dict[str, Any]:
    return {
        "n": 2**40 if i == 3 else i * 1000,
        "qty": 3.5 if i == 5 else float(i),
        "ratio": i / 8,
        "amount": i + 0.25,
        "name": f"item {i}",
        "attrs": {"k": i, "tags": ["x"]},
        "created": f"2024-05-{i + 1:02d}T10:30:00+00:00",
        "ref": str(uuid.UUID(int=i + 1)),
        "flag": i % 3 == 0,
    }


def _app_dump(path: Path, name: str) -> np.ndarray:
    schema = DOCS_SCHEMA.replace(name=name)
    vectors = np.random.default_rng(3).normal(size=(APP_ROWS, 8)).astype(np.float32)
    conn = connect(f"dump://{path}")
    conn.create(schema)
    conn.upsert(
        name,
        build_batch(
            schema,
            [f"rec-{i}" for i in range(APP_ROWS)],
            {"vector": vectors},
            documents=[f"text {i}" for i in range(APP_ROWS)],
            metadata=[_app_meta(i) for i in range(APP_ROWS)],
        ),
    )
    conn.finalize(name)
    conn.close()
    return vectors


def test_copy_into_an_application_table_in_its_own_types(postgres: Any, tmp_path: Path) -> None:
    name = _name("app")
    vectors = _app_dump(tmp_path / "src", name)
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} ({APP_COLUMNS})")
    out = cli(
        "copy", f"dump://{tmp_path / 'src'}", postgres.uri(), "-c", name, "--if-exists",
        "reuse", "--job", str(tmp_path / "job.sqlite"), "--json",
    )  # fmt: skip
    assert out.returncode == 1, out.stderr  # records were refused
    result = out.json()
    assert result["dead_letters"] == 2 and result["rows_written"] == APP_ROWS - 2
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["row count"]["passed"], checks
    # The other records read back exactly as the source has them.
    assert checks["content digest"]["passed"], checks
    assert "identical but for the 2 refused" in checks["content digest"]["detail"]
    # One collection's report, at the top level or as the only one in "collections".
    report = {**result, **(result.get("collections") or [{}])[0]}
    refused = read_dead_letters(Path(report["dead_letter_dir"])).to_pylist()
    reasons = {r["id"]: r for r in refused}
    assert set(reasons) == {"rec-3", "rec-5"}
    assert "integer" in str(reasons["rec-3"]) and "'n'" in str(reasons["rec-3"])
    assert "3.5" in str(reasons["rec-5"]) and "'qty'" in str(reasons["rec-5"])

    with psycopg.connect(postgres.dsn) as db:
        rows = db.execute(
            f"SELECT id, content, embedding::text, n, qty, ratio, amount, name, attrs, created, "
            f"ref, flag, inserted_at IS NOT NULL FROM {name} ORDER BY id"
        ).fetchall()
    assert [r[0] for r in rows] == sorted(f"rec-{i}" for i in range(APP_ROWS) if i not in (3, 5))
    for r in rows:
        i = int(r[0].split("-")[1])
        m = _app_meta(i)
        assert r[1] == f"text {i}"
        assert np.array_equal(np.array(json.loads(r[2]), np.float32), vectors[i])
        assert r[3:9] == (
            m["n"],
            int(m["qty"]),
            m["ratio"],
            Decimal(repr(m["amount"])),
            m["name"],
            m["attrs"],
        )
        assert r[9] == datetime(2024, 5, i + 1, 10, 30, tzinfo=timezone.utc)
        assert r[10] == uuid.UUID(m["ref"]) and r[11] is m["flag"] and r[12]
    # vecmigrate reads the table back as the application wrote it.
    with connect(postgres.uri()) as pg:
        got = {r["id"]: r for r in pg.fetch(name, ["rec-1", "rec-3"]).to_pylist()}
        assert set(got) == {"rec-1"} and got["rec-1"]["embedding"] == vectors[1].tolist()
        assert got["rec-1"]["metadata"]["ref"] == _app_meta(1)["ref"]


@pytest.mark.parametrize(
    ("columns", "named"),
    [
        (APP_COLUMNS.replace("name varchar(40)", "name integer"), "column 'name' is integer"),
        (APP_COLUMNS.replace("vector(8)", "vector(16)"), "column 'embedding' is vector(16)"),
        (APP_COLUMNS + ", owner text NOT NULL", "column 'owner' is NOT NULL without a default"),
        (APP_COLUMNS.replace("flag boolean, ", ""), "no column for metadata field 'flag'"),
        (  # a generated column (e.g. a tsvector kept from the text): the mapping drops it
            APP_COLUMNS.replace("name varchar(40)", "name text GENERATED ALWAYS AS ('x') STORED"),
            "column 'name' is generated by the table (it computes it): leave metadata field "
            "'name' out with fields: {name: {drop: true}}",
        ),
    ],
)
def test_reuse_refuses_a_table_that_cannot_hold_the_records(
    postgres: Any, tmp_path: Path, columns: str, named: str
) -> None:
    name = _name("app")
    _app_dump(tmp_path / "src", name)
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} ({columns})")
    out = cli(
        "copy", f"dump://{tmp_path / 'src'}", postgres.uri(), "-c", name, "--if-exists",
        "reuse", "--job", str(tmp_path / "job.sqlite"),
    )  # fmt: skip
    assert out.returncode == 2
    assert named in out.stderr and "nothing was written" in out.stderr
    with psycopg.connect(postgres.dsn) as db:
        assert db.execute(f"SELECT count(*) FROM {name}").fetchone() == (0,)


def test_a_generated_column_is_left_to_the_table_as_the_refusal_says(
    postgres: Any, tmp_path: Path
) -> None:
    name = _name("app")
    _app_dump(tmp_path / "src", name)
    generated = "name text GENERATED ALWAYS AS ('item ' || n::text) STORED"
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} ({APP_COLUMNS.replace('name varchar(40)', generated)})")
    (tmp_path / "map.yaml").write_text("fields:\n  name: {drop: true}\n")
    out = cli(
        "copy", f"dump://{tmp_path / 'src'}", postgres.uri(), "-c", name, "--if-exists",
        "reuse", "--map", str(tmp_path / "map.yaml"), "--job", str(tmp_path / "job.sqlite"),
    )  # fmt: skip
    # Written, but for the two records the app's columns refuse anyway (see above).
    assert out.returncode == 1 and "2 refused" in out.stdout, out.stdout + out.stderr
    with psycopg.connect(postgres.dsn) as db:
        got = db.execute(f"SELECT n, name FROM {name} ORDER BY n").fetchall()
    assert len(got) == APP_ROWS - 2 and all(text == f"item {n}" for n, text in got)


def test_langchain_layout_with_undeclared_dimension_and_chosen_columns(
    postgres: Any, tmp_path: Path
) -> None:
    """langchain_pg_embedding declares ``vector`` without a dimension and keys by varchar."""
    name = _name("lc")
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(
            f"CREATE TABLE {name} (id varchar PRIMARY KEY, collection_id uuid, "
            "embedding vector, document varchar, cmetadata jsonb, title text, "
            "other vector(2))"
        )
        for i in range(30):
            v = np.array([np.cos(i), np.sin(i), 0.0])
            db.execute(
                f"INSERT INTO {name} VALUES (%s, %s, %s::vector, %s, %s, %s, '[1,2]')",
                (f"doc-{i}", str(uuid.UUID(int=7)), str(v.tolist()), f"text {i}",
                 json.dumps({"page": i, "source": "a.pdf"}), f"title {i}"),
            )  # fmt: skip
    uri = postgres.uri()
    info = _inspected(f"{uri}?vector_field=embedding", name)
    (vec,) = info["vectors"]
    assert (vec["name"], vec["dim"], vec["metric"]) == ("embedding", 3, "cosine")
    assert "3 read from the rows" in info["engine_settings"]["embedding.dim"]
    types = {m["name"]: m["type"] for m in info["metadata"]}
    assert types == {
        "collection_id": "string",
        "title": "string",
        "page": "int64",
        "source": "string",
    }
    # The document and the metadata object can be named; another vector column chosen.
    named = _inspected(
        f"{uri}?document_field=title&metadata_field=cmetadata&vector_field=other", name
    )
    assert [v["name"] for v in named["vectors"]] == ["other"]
    assert named["engine_settings"]["layout"]["document"] == "title"
    bad = cli("inspect", f"{uri}?vector_field=nope", "-c", name)
    assert bad.returncode == 2 and "vector_field=nope" in bad.stderr
    target = f"lancedb://{tmp_path / 'lance'}"
    copied = cli("copy", f"{uri}?vector_field=embedding", target, "-c", name, "--json")
    assert copied.returncode == 0, copied.stderr
    assert copied.json()["verified"] and copied.json()["rows_written"] == 30


@pytest.mark.parametrize(
    ("column", "value", "why"),
    [
        ("ratio", 0.1, "would read back as 0.10000000149011612 (real)"),
        ("amount", 1.234, "does not fit numeric(10,2)"),
        ("ref", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "would read back as 'a0eebc99"),
        ("created", "2024-05-01T10:30:00", "has no time zone"),
        ("name", "x" * 41, "41 characters do not fit character varying(40)"),
        ("n", True, "True is not a number"),
    ],
)
def test_a_value_the_column_cannot_hold_exactly_is_refused_for_its_record(
    postgres: Any, column: str, value: Any, why: str
) -> None:
    from vecmigrate.errors import DataError

    name = _name("app")
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} ({APP_COLUMNS})")
    schema = DOCS_SCHEMA.replace(name=name)
    vectors = np.ones((2, 8), np.float32)
    good, bad = _app_meta(1), {**_app_meta(2), column: value}
    batch = build_batch(
        schema, ["a", "b"], {"vector": vectors}, documents=["x", "y"], metadata=[good, bad]
    )
    with connect(postgres.uri()) as pg:
        pg.create(schema, if_exists="reuse")
        with pytest.raises(DataError) as err:
            pg.upsert(name, batch)
        assert why in str(err.value) and err.value.record_id == "b" and err.value.field == column
        pg.upsert(name, batch.slice(0, 1))
        assert pg.count(name) == 1


def test_a_table_without_vectors_is_never_replaced(postgres: Any, tmp_path: Path) -> None:
    name = _name("plain")
    _app_dump(tmp_path / "src", name)
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} (id text PRIMARY KEY)")
        db.execute(f"INSERT INTO {name} VALUES ('keep')")
    for mode in ("fail", "replace"):
        job = str(tmp_path / f"{mode}.sqlite")
        out = cli("copy", f"dump://{tmp_path / 'src'}", postgres.uri(), "-c", name,
                  "--if-exists", mode, "--yes", "--job", job)  # fmt: skip
        assert out.returncode == 2 and "has no vector column" in out.stderr, out.stderr
    with psycopg.connect(postgres.dsn) as db:
        assert db.execute(f"SELECT id FROM {name}").fetchall() == [("keep",)]


def test_an_id_column_no_constraint_keeps_unique_is_checked_before_anything_is_read(
    postgres: Any, tmp_path: Path
) -> None:
    """A chunk table whose ``doc_id`` repeats for each chunk of a document, no primary key:
    keyed by it, a copy merged those chunks into one record (upserts) and its scans skipped
    the rest of a repeated key (each batch resumes after the last key read). Now refused
    before a record is read, naming the values; a column whose values do identify the rows
    copies. A unique column holding NULL is refused too (those rows were never read)."""
    name, other = _name("chunks"), _name("refs")
    vectors = np.random.default_rng(2).normal(size=(ROWS, 4)).astype(np.float32)
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} (doc_id text, chunk_id text, body text, emb vector(4))")
        db.execute(f"CREATE TABLE {other} (ref text UNIQUE, body text, emb vector(4))")
        with db.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {name} VALUES (%s, %s, %s, %s::vector)",
                [
                    (f"doc-{i // 3}", f"doc-{i // 3}#{i % 3}", f"chunk {i}", str(v.tolist()))
                    for i, v in enumerate(vectors)
                ],
            )
            cur.executemany(
                f"INSERT INTO {other} VALUES (%s, %s, %s::vector)",
                [
                    (None if i == 5 else f"r{i}", f"b{i}", str(v.tolist()))
                    for i, v in enumerate(vectors)
                ],
            )
    (tmp_path / "map.yaml").write_text("vectors:\n  emb: {metric: l2}\n")
    uri, out = postgres.uri(), f"dump://{tmp_path / 'dump'}"
    chosen = _inspected(f"{uri}?document_field=body", name)
    assert chosen["engine_settings"]["layout"]["key"] == "doc_id"  # a common id name
    refused = cli("copy", f"{uri}?document_field=body", out, "-c", name,
                  "--map", str(tmp_path / "map.yaml"))  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.replace("\n", " ")
    for text in ("'doc_id' has no unique constraint", "same value in several rows",
                 "'doc-", "?id_field=NAME", "?id_field=ctid"):  # fmt: skip
        assert text in line, line
    assert not (tmp_path / "dump" / name).exists()

    by_chunk = f"{uri}?id_field=chunk_id&document_field=body"
    copied = cli("copy", by_chunk, out, "-c", name, "--map", str(tmp_path / "map.yaml"), "--json")
    assert copied.returncode == 0 and copied.json()["rows_written"] == ROWS, copied.stderr
    with connect(out) as conn:
        got = conn.fetch(name, ["doc-4#1"])
    assert got.column("metadata").to_pylist() == [{"doc_id": "doc-4"}]

    nulls = cli("copy", f"{uri}?id_field=ref", f"dump://{tmp_path / 'd2'}", "-c", other,
                "--map", str(tmp_path / "map.yaml"))  # fmt: skip
    assert nulls.returncode == 2 and "no value (NULL) in 1 row(s)" in nulls.stderr.replace(
        "\n", " "
    )


def test_a_table_without_an_id_column_is_keyed_by_its_rows_location_when_asked(
    postgres: Any, tmp_path: Path
) -> None:
    """A table with no column that identifies its rows (text and vectors only) could not be
    copied without changing it; ``?id_field=ctid`` keys each row by its physical location
    (read only: no write can set it, and an update moves it)."""
    name = _name("notes")
    vectors = np.random.default_rng(4).normal(size=(ROWS, 4)).astype(np.float32)
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} (body text, emb vector(4))")
        with db.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {name} VALUES (%s, %s::vector)",
                [(f"note {i}", str(v.tolist())) for i, v in enumerate(vectors)],
            )
        where = {r[1]: r[0] for r in db.execute(f"SELECT ctid::text, body FROM {name}")}
    (tmp_path / "map.yaml").write_text("vectors:\n  emb: {metric: l2}\n")
    uri, out = postgres.uri(), f"dump://{tmp_path / 'dump'}"
    refused = cli("inspect", uri, "-c", name)
    assert refused.returncode == 2 and "?id_field=ctid" in refused.stderr.replace("\n", " ")

    keyed = f"{uri}?id_field=ctid"
    info = _inspected(keyed, name)
    assert info["id_type"] == "string" and info["has_document"]
    copied = cli("copy", keyed, out, "-c", name, "--map", str(tmp_path / "map.yaml"), "--json")
    assert copied.returncode == 0 and copied.json()["rows_written"] == ROWS, copied.stderr
    with connect(out) as conn:
        got = conn.fetch(name, [where["note 7"]])
    assert got.column("document").to_pylist() == ["note 7"]
    with connect(keyed) as pg:
        assert pg.fetch(name, [where["note 9"]]).column("document").to_pylist() == ["note 9"]
    report = cli("verify", keyed, out, "-c", name, "--map", str(tmp_path / "map.yaml"),
                 "--queries", "20", "--report-dir", str(tmp_path / "r"), "--json")  # fmt: skip
    assert report.returncode == 0 and report.json()["parity"]["equal"], report.stderr
    into = cli("copy", out, keyed, "-c", name, "--if-exists", "reuse")
    assert into.returncode == 2 and "no write can set" in into.stderr.replace("\n", " ")
