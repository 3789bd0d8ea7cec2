"""Sparse vectors on pgvector: sparsevec columns, exact indices, refusals, foreign tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from tests.e2e.helpers import cli
from vecmigrate.connectors import connect
from vecmigrate.errors import DataError, SchemaMismatchError
from vecmigrate.mapping import MappingSpec
from vecmigrate.model import METRIC_UNKNOWN, SPARSE_TYPE, IdType, Metric, SparseField
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.testing.data import rich_batch, rich_schema
from vecmigrate.verify.digest import collection_digest


def test_dump_to_pgvector_to_dump_keeps_sparse_vectors_exactly(
    postgres: Any, tmp_path: Path
) -> None:
    schema = rich_schema("sparse_rt", id_type=IdType.STRING, sparse=True)
    batch = rich_batch(schema)
    # an empty sparse vector and a missing one must stay distinct
    kw = batch.column("keywords").to_pylist()
    kw[5] = {"indices": [], "values": []}
    kw[6] = None
    kw[7] = {"indices": [0, 999_999_999], "values": [-1.5, 3.0]}  # both ends of the index space
    batch = batch.set_column(
        batch.schema.get_field_index("keywords"), "keywords", pa.array(kw, SPARSE_TYPE)
    )
    src = connect(f"dump://{tmp_path / 'src'}")
    src.create(schema)
    src.upsert("sparse_rt", batch)
    src.finalize("sparse_rt")
    pg = connect(postgres.uri())
    back = connect(f"dump://{tmp_path / 'back'}")
    try:
        opts = CopyOptions(
            job_path=tmp_path / "a.sqlite",
            batch_rows=70,
            if_exists="replace",
            replace_confirmed=True,
        )
        assert copy_collection(src, pg, "sparse_rt", options=opts).ok
        opts = CopyOptions(job_path=tmp_path / "b.sqlite", batch_rows=70)
        assert copy_collection(pg, back, "sparse_rt", options=opts).ok
        digests = [collection_digest(c, "sparse_rt") for c in (src, pg, back)]
        assert digests[0].compare(digests[1]).equal and digests[0].compare(digests[2]).equal
        assert back.describe("sparse_rt").sparse == schema.sparse  # dim stays unrecorded
        with psycopg.connect(postgres.dsn) as db:
            typ, text = db.execute(
                "SELECT format_type(atttypid, atttypmod), (SELECT keywords::text FROM sparse_rt "
                "WHERE id = %s) FROM pg_attribute "
                "WHERE attrelid = 'sparse_rt'::regclass AND attname = 'keywords'",
                (str(batch.column("id")[7]),),
            ).fetchone()
        # pgvector's text form is 1-based: vecmigrate index 0 is element 1
        assert (typ, text) == ("sparsevec(1000000000)", "{1:-1.5,1000000000:3}/1000000000")
    finally:
        pg.drop("sparse_rt")
        pg.close()


BAD = [
    ({"indices": [3, 1], "values": [1.0, 2.0]}, "not strictly ascending"),
    ({"indices": [1, 1], "values": [1.0, 2.0]}, "not strictly ascending"),
    ({"indices": [100], "values": [1.0]}, "outside the field's dimension 100"),
    ({"indices": [1, 2], "values": [1.0]}, "2 indices but 1 values"),
    ({"indices": [1], "values": [0.0]}, "explicit zero"),
    ({"indices": [1], "values": [float("nan")]}, "NaN or infinite"),
]


@pytest.mark.parametrize(("vector", "why"), BAD, ids=[w for _, w in BAD])
def test_refuses_what_sparsevec_cannot_hold(postgres: Any, vector: Any, why: str) -> None:
    base = rich_schema("sparse_bad", id_type=IdType.INT, sparse=True)
    schema = base.replace(sparse=(SparseField(name="keywords", dim=100),))
    batch = rich_batch(base, n=3)
    kw = [{"indices": [1], "values": [1.0]}, vector, None]
    batch = batch.set_column(
        batch.schema.get_field_index("keywords"), "keywords", pa.array(kw, SPARSE_TYPE)
    )
    with connect(postgres.uri()) as pg:
        pg.create(schema, if_exists="replace")
        with pytest.raises(DataError, match=why) as err:
            pg.upsert("sparse_bad", batch)
        assert (err.value.record_id, err.value.field) == (batch.column("id")[1].as_py(), "keywords")
        assert pg.count("sparse_bad") == 0
        pg.drop("sparse_bad")


def test_refuses_more_non_zeros_than_pgvector_allows(postgres: Any) -> None:
    schema = rich_schema("sparse_big", id_type=IdType.INT, sparse=True)
    batch = rich_batch(schema, n=2)
    kw = [{"indices": list(range(16_000)), "values": [1.0] * 16_000}] * 2
    kw[1] = {"indices": list(range(16_001)), "values": [1.0] * 16_001}
    batch = batch.set_column(
        batch.schema.get_field_index("keywords"), "keywords", pa.array(kw, SPARSE_TYPE)
    )
    with connect(postgres.uri()) as pg:
        pg.create(schema, if_exists="replace")
        with pytest.raises(DataError, match="16001 non-zeros; pgvector allows 16000"):
            pg.upsert("sparse_big", batch)
        pg.upsert("sparse_big", batch.slice(0, 1))
        got = pg.fetch("sparse_big", [batch.column("id")[0].as_py()]).column("keywords")
        assert got.to_pylist() == kw[:1]
        pg.drop("sparse_big")


def test_describes_a_hand_made_table_with_sparsevec_columns(postgres: Any) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS hand_sparse, only_sparse")
        db.execute(
            "CREATE TABLE hand_sparse (id text PRIMARY KEY, embedding vector(2), "
            "kw sparsevec(50), free sparsevec)"
        )
        db.execute("CREATE INDEX ON hand_sparse USING hnsw (kw sparsevec_l2_ops)")
        db.execute(
            "INSERT INTO hand_sparse VALUES ('a', '[1,2]', '{1:0.5,3:2}/50', '{7:1}/9'), "
            "('b', '[3,4]', NULL, NULL)"
        )
        db.execute("CREATE TABLE only_sparse (id bigint PRIMARY KEY, s sparsevec(10))")
    try:
        with connect(postgres.uri()) as conn:
            assert {"hand_sparse", "only_sparse"} <= set(conn.list_collections())
            schema = conn.describe("hand_sparse")
            kw, free = schema.sparse
            assert (kw.name, kw.metric, kw.dim) == ("kw", Metric.L2, 50)
            assert kw.metric_known and "sparsevec_l2_ops" in (kw.metric_source or "")
            # No index says how the application searches it: unknown, not assumed.
            assert (free.name, free.dim, free.metric_source) == ("free", None, METRIC_UNKNOWN)
            assert "unknown" in schema.engine_settings["free.metric"]
            rows = conn.fetch("hand_sparse", ["a", "b"], schema=schema).to_pylist()
            assert rows[0]["kw"] == {"indices": [0, 2], "values": [0.5, 2.0]}
            assert rows[0]["free"] == {"indices": [6], "values": [1.0]}
            assert rows[1]["kw"] is None and rows[1]["free"] is None
            assert conn.describe("only_sparse").sparse == (
                SparseField(name="s", dim=10, metric_source=METRIC_UNKNOWN),
            )
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True) as db:
            db.execute("DROP TABLE IF EXISTS hand_sparse, only_sparse")


def test_a_sparsevec_column_without_an_index_copies_once_its_metric_is_stated(
    postgres: Any, tmp_path: Path
) -> None:
    """A table made with psycopg: nothing says how its unindexed sparsevec column is
    searched, so a copy refuses (naming the field and the mapping that fixes it) and
    writes nothing; with the metric stated it copies, and the target records it."""
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS app_sparse")
        db.execute("CREATE TABLE app_sparse (id bigint PRIMARY KEY, body text, s sparsevec(30))")
        db.execute(
            "INSERT INTO app_sparse SELECT i, 'doc ' || i, "
            "format('{%s:0.5,%s:1.5}/30', 1 + i % 10, 11 + i % 19)::sparsevec "
            "FROM generate_series(1, 40) i"
        )
    dump = f"dump://{tmp_path / 'dump'}"
    try:
        shown = cli("inspect", postgres.uri(), "-c", "app_sparse")
        assert "sparse[30]" in shown.stdout
        assert "UNKNOWN (state it: vectors.s.metric in a mapping)" in shown.stdout
        with connect(postgres.uri()) as src, connect(dump, read_only=False) as dst:
            opts = CopyOptions(job_path=tmp_path / "job.sqlite")
            with pytest.raises(SchemaMismatchError, match="metric of sparse field 's'") as err:
                copy_collection(src, dst, "app_sparse", options=opts)
            assert "vectors: {s: {metric: l2}}" in (err.value.hint or "")
            assert "app_sparse" not in dst.list_collections()
            spec = MappingSpec.model_validate({"vectors": {"s": {"metric": "l2"}}})
            opts = CopyOptions(job_path=tmp_path / "job2.sqlite", mapping=spec)
            assert copy_collection(src, dst, "app_sparse", options=opts).rows_written == 40
            (stored,) = dst.describe("app_sparse").sparse
            assert (stored.metric, stored.metric_source) == (Metric.L2, "the mapping")
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True) as db:
            db.execute("DROP TABLE IF EXISTS app_sparse")


def test_encoding_is_byte_identical_to_pgvectors_own_client() -> None:
    import numpy as np

    try:
        from pgvector import SparseVector
    except ImportError:  # pgvector < 0.4 keeps it in pgvector.utils
        from pgvector.utils import SparseVector  # type: ignore[no-redef]

    from vecmigrate.connectors.pgvector import _sparse as pgvector_sparse

    rng = np.random.default_rng(1)
    rows: list[Any] = []
    for i in range(300):
        idx = np.unique(rng.integers(0, 5000, int(rng.integers(0, 40))))
        vals = (rng.random(len(idx)) + 0.1).astype(np.float32)
        rows.append(None if i % 9 == 4 else {"indices": idx.tolist(), "values": vals.tolist()})
    column = pa.array(rows, SPARSE_TYPE).slice(7)  # a sliced column, as batches often are
    field = SparseField(name="kw", dim=5000)
    got = pgvector_sparse.encode("c", field, column, list(range(len(column))))
    for want, raw in zip(rows[7:], got, strict=True):
        ref = None if want is None else dict(zip(want["indices"], want["values"], strict=True))
        assert raw == (None if ref is None else SparseVector(ref, 5000).to_binary())
    assert pgvector_sparse.decode(tuple(got)).to_pylist() == rows[7:]
