"""Values that used to arrive altered with exit 0 (issue #12): each now survives exactly,
through the CLI and real engines, or is refused by name.

* Chroma strings that look like vecmigrate's own JSON marker stay strings;
* an int in a float64 field stays an int, and an explicit null stays apart from a missing
  key (Qdrant payloads, pgvector, Chroma);
* LanceDB tables made with lancedb's own client: every Arrow column type either maps to a
  portable type without changing a value, or is refused naming the table and column;
* float64 vectors are copied only when float32 holds them exactly.
"""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import Ran, cli
from vecmigrate.connectors import connect
from vecmigrate.records import metadata_rows

# Strings a foreign tool may store that begin with the marker vecmigrate's Chroma
# connector uses for the values it encodes itself.
MARKED = {
    "a": "vecmigrate:json:42",
    "b": 'vecmigrate:json:{"a": 1}',
    "c": "vecmigrate:json:",
    "d": 'vecmigrate:json:"quoted"',
}


def _copy(src: str, dst: str, name: str, *extra: str) -> Ran:
    return cli("copy", src, dst, "-c", name, "--json", *extra)


def _copied(src: str, dst: str, name: str, *extra: str) -> dict[str, Any]:
    """Run a copy that must succeed and verify; its JSON result."""
    ran = _copy(src, dst, name, *extra)
    assert ran.returncode == 0, ran.stderr
    out: dict[str, Any] = ran.json()
    assert out["verified"], out["checks"]
    return out


def _metadata(uri: str, name: str, ids: list[Any]) -> dict[Any, dict[str, Any]]:
    """id -> metadata dict (explicit nulls included), as vecmigrate reads the collection."""
    with connect(uri) as conn:
        schema = conn.describe(name)
        batch = conn.fetch(name, ids)
    rows = metadata_rows(batch, schema)
    return dict(zip(batch.column("id").to_pylist(), rows, strict=True))


def _exact(got: dict[Any, dict[str, Any]], want: dict[Any, dict[str, Any]]) -> None:
    """Equal values of equal Python types (3 is not 3.0, "7" is not 7)."""
    assert got == want
    for rid, meta in want.items():
        for key, value in meta.items():
            assert type(got[rid][key]) is type(value), (rid, key, got[rid][key])


@pytest.fixture
def pg_uri(postgres: Any) -> str:
    return str(postgres.uri())


# -- A: Chroma's marker -----------------------------------------------------------------------
def _foreign_chroma(path: Path, name: str) -> None:
    chromadb = require_module("chromadb")
    client = chromadb.PersistentClient(path=str(path))
    col = client.create_collection(name, embedding_function=None)
    ids = sorted(MARKED)
    col.add(
        ids=ids,
        embeddings=np.eye(len(ids), 3, dtype=np.float32) + 0.5,
        metadatas=[{"v": MARKED[i], "n": k} for k, i in enumerate(ids)],
    )


def test_foreign_chroma_strings_with_the_marker_stay_strings(tmp_path: Path, pg_uri: str) -> None:
    name = f"marker_{uuid.uuid4().hex[:8]}"
    _foreign_chroma(tmp_path / "chroma", name)
    _copied(f"chroma://{tmp_path / 'chroma'}", pg_uri, name)
    want = {i: {"v": MARKED[i], "n": k} for k, i in enumerate(sorted(MARKED))}
    _exact(_metadata(pg_uri, name, sorted(MARKED)), want)


def test_marker_strings_round_trip_through_a_chroma_vecmigrate_made(tmp_path: Path) -> None:
    """Into a Chroma collection vecmigrate creates and back: the marked strings are stored
    escaped, the values vecmigrate encodes itself (objects, empty lists, nulls) decode."""
    name = "marker"
    _foreign_chroma(tmp_path / "src", name)
    _copied(f"chroma://{tmp_path / 'src'}", f"dump://{tmp_path / 'dump'}", name)
    chroma = f"chroma://{tmp_path / 'made'}"
    _copied(f"dump://{tmp_path / 'dump'}", chroma, name)
    _copied(chroma, f"dump://{tmp_path / 'back'}", name)
    want = {i: {"v": MARKED[i], "n": k} for k, i in enumerate(sorted(MARKED))}
    _exact(_metadata(f"dump://{tmp_path / 'back'}", name, sorted(MARKED)), want)

    chromadb = require_module("chromadb")
    stored = chromadb.PersistentClient(path=str(tmp_path / "made")).get_collection(name)
    raw = stored.get(ids=["a"], include=["metadatas"])["metadatas"][0]["v"]
    assert raw != MARKED["a"] and json.loads(raw.removeprefix("vecmigrate:json:")) == MARKED["a"]
    with connect(chroma) as conn:  # filters find the string as it was written
        assert conn.count(name, {"v": MARKED["a"]}) == 1
        assert conn.count(name, {"v": {"$in": [MARKED["b"], "plain"]}}) == 1


def test_values_chroma_cannot_hold_are_refused_by_a_foreign_collection(tmp_path: Path) -> None:
    """Writing into a Chroma collection another tool made (--if-exists reuse), an object or
    explicit null cannot be encoded (it would read back as text): a counted dead letter."""
    chromadb = require_module("chromadb")
    src = f"qdrant+local://{tmp_path / 'q'}"
    _qdrant_points(tmp_path / "q", "odd", [(1, {"o": {"a": 1}}), (2, {"o": "plain"}), (3, {})])
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    client.create_collection(
        "odd", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    ran = _copy(src, f"chroma://{tmp_path / 'chroma'}", "odd", "--if-exists", "reuse")
    out = ran.json()
    assert ran.returncode == 1, ran.stderr
    assert (out["rows_written"], out["dead_letters"]) == (2, 1)
    assert all(c["passed"] for c in out["checks"]), out["checks"]


# -- C/D: ints in float fields, explicit nulls -------------------------------------------------
def _qdrant_points(path: Path, name: str, payloads: list[tuple[int, dict[str, Any]]]) -> None:
    require_module("qdrant_client")
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(path))
    client.create_collection(
        name, vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE)
    )
    rng = np.random.default_rng(1)
    client.upsert(
        name,
        points=[
            models.PointStruct(id=pid, vector=rng.normal(size=3).tolist(), payload=payload)
            for pid, payload in payloads
        ],
    )
    client.close()


# Point 1 sets n to null, point 3 has no n; score is 3 (an int) beside 2.5 and 4.0.
PAYLOADS = [
    (1, {"n": None, "score": 3, "tags": ["x"]}),
    (2, {"n": "set", "score": 2.5, "tags": []}),
    (3, {"score": 4.0, "tags": ["y", "z"]}),
]


def test_ints_and_explicit_nulls_survive_qdrant_to_pgvector_and_back(
    tmp_path: Path, pg_uri: str
) -> None:
    name = f"nulls_{uuid.uuid4().hex[:8]}"
    _qdrant_points(tmp_path / "q", name, PAYLOADS)
    _copied(f"qdrant+local://{tmp_path / 'q'}", pg_uri, name)
    want = dict(PAYLOADS)
    _exact(_metadata(pg_uri, name, [1, 2, 3]), want)

    _copied(pg_uri, f"qdrant+local://{tmp_path / 'q2'}", name)
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "q2"))
    try:
        points, _ = client.scroll(name, limit=10)
    finally:
        client.close()
    got = {p.id: p.payload for p in points}
    assert got == want
    assert "n" in got[1] and got[1]["n"] is None and "n" not in got[3]
    assert type(got[1]["score"]) is int and type(got[3]["score"]) is float


def test_explicit_nulls_and_ints_round_trip_through_chroma(tmp_path: Path) -> None:
    """Chroma stores no nulls: a collection vecmigrate made keeps them encoded."""
    _qdrant_points(tmp_path / "q", "nulls", PAYLOADS)
    _copied(f"qdrant+local://{tmp_path / 'q'}", f"chroma://{tmp_path / 'chroma'}", "nulls")
    _copied(f"chroma://{tmp_path / 'chroma'}", f"dump://{tmp_path / 'dump'}", "nulls")
    _exact(_metadata(f"dump://{tmp_path / 'dump'}", "nulls", [1, 2, 3]), dict(PAYLOADS))


def test_explicit_nulls_and_ints_round_trip_through_redis_hashes(
    tmp_path: Path, redis_server: Any
) -> None:
    """A hash field holds text only: nulls and ints in float fields travel beside it."""
    name = f"nulls_{uuid.uuid4().hex[:8]}"
    _qdrant_points(tmp_path / "q", name, PAYLOADS)
    target = redis_server.uri
    try:
        _copied(f"qdrant+local://{tmp_path / 'q'}", target, name)
        _exact(_metadata(target, name, [1, 2, 3]), dict(PAYLOADS))
        hits = _count_where(target, name, {"score": {"$gte": 3}})
        assert hits == 2  # the int 3 is still indexed as a number
    finally:
        with connect(target) as conn:
            conn.drop(name)


def _count_where(uri: str, name: str, flt: dict[str, Any]) -> int:
    with connect(uri) as conn:
        return conn.count(name, flt)


# -- E: LanceDB tables made by lancedb's own client --------------------------------------------
def _lance_table(path: Path, name: str, columns: dict[str, pa.Array], dim: int = 3) -> None:
    lancedb = require_module("lancedb")
    n = len(next(iter(columns.values())))
    vectors = np.random.default_rng(2).normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # any metric ranks them alike
    table = pa.table(
        {
            "id": pa.array(range(1, n + 1), pa.int64()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
            **columns,
        }
    )
    lancedb.connect(str(path)).create_table(name, table)


def test_foreign_lancedb_types_map_without_changing_a_value(tmp_path: Path) -> None:
    big = 2**64 - 1  # above int64: travels exactly in metadata_extra
    _lance_table(
        tmp_path / "lance",
        "types",
        {
            "i8": pa.array([-5, None, 7], pa.int8()),
            "u64": pa.array([1, big, None], pa.uint64()),
            "f16": pa.array(np.array([0.5, 1.25, -3.0], np.float16)),
            "f32": pa.array([0.1, None, 2.0], pa.float32()),
            "label": pa.array(["a", None, "c"], pa.large_string()),
            "day": pa.array([datetime.date(2024, 5, 1), None, datetime.date(1999, 12, 31)]),
            "at": pa.array(
                [datetime.datetime(2024, 5, 1, 12, 30, 0, 123000), None, None],
                pa.timestamp("ms", tz="UTC"),
            ),
            "nested": pa.array([{"a": 1, "b": [True]}, None, {"a": 2, "b": []}]),
            "flags": pa.array([[True, False], [], None], pa.list_(pa.bool_())),
        },
    )
    out = f"dump://{tmp_path / 'dump'}"
    _copied(f"lancedb://{tmp_path / 'lance'}", out, "types")
    with connect(out) as conn:
        types = {f.name: f.type for f in conn.describe("types").metadata}
        notes = conn.describe("types").engine_settings
    assert types == {
        "i8": "int64",
        "u64": "int64",
        "f16": "float64",
        "f32": "float64",
        "label": "string",
        "day": "string",
        "at": "string",
        "nested": "json",
        "flags": "json",
    }
    assert "ISO-8601" in notes["day.type"] and "ISO-8601" in notes["at.type"]
    _exact(
        _metadata(out, "types", [1, 2, 3]),
        {
            1: {
                "i8": -5,
                "u64": 1,
                "f16": 0.5,
                "f32": float(np.float32(0.1)),
                "label": "a",
                "day": "2024-05-01",
                "at": "2024-05-01T12:30:00.123Z",
                "nested": {"a": 1, "b": [True]},
                "flags": [True, False],
            },
            2: {"u64": big, "f16": 1.25, "flags": []},
            3: {
                "i8": 7,
                "f16": -3.0,
                "f32": 2.0,
                "label": "c",
                "day": "1999-12-31",
                "nested": {"a": 2, "b": []},
            },
        },
    )


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        (pa.array([decimal.Decimal("1.20"), None], pa.decimal128(5, 2)), "decimal128(5, 2)"),
        (pa.array([b"\x00\xff", None], pa.binary()), "binary"),
        (pa.array([datetime.time(1, 2), None], pa.time64("us")), "time64[us]"),
    ],
)
def test_foreign_lancedb_types_without_a_portable_form_are_refused(
    tmp_path: Path, column: pa.Array, kind: str
) -> None:
    _lance_table(tmp_path / "lance", "odd", {"price": column})
    ran = _copy(f"lancedb://{tmp_path / 'lance'}", f"dump://{tmp_path / 'dump'}", "odd")
    assert ran.returncode == 2, ran.stderr
    assert "Traceback" not in ran.stderr and ran.stderr.count("error:") == 1
    line = ran.stderr.replace("\n", " ")
    for text in ("'odd'", "'price'", kind, "no exact portable type", "hint:"):
        assert text in line, line


@pytest.mark.parametrize("exact", [True, False])
def test_float64_vectors_copy_only_when_float32_holds_them(tmp_path: Path, exact: bool) -> None:
    lancedb = require_module("lancedb")
    values = [[0.5, -0.25, 1.0], [2.0, 0.125, -1.5]]
    if not exact:
        values[1][1] = 0.1  # float32 would round it
    table = pa.table({"id": [1, 2], "vector": pa.array(values, pa.list_(pa.float64(), 3))})
    lancedb.connect(str(tmp_path / "lance")).create_table("f64", table)
    # Not unit vectors in an un-indexed table: the application's queries name the metric.
    (tmp_path / "l2.yaml").write_text("vectors:\n  vector: {metric: l2}\n")
    ran = _copy(f"lancedb://{tmp_path / 'lance'}", f"dump://{tmp_path / 'dump'}", "f64",
                "--map", str(tmp_path / "l2.yaml"))  # fmt: skip
    if exact:
        assert ran.returncode == 0 and ran.json()["verified"], ran.stderr
        with connect(f"dump://{tmp_path / 'dump'}") as conn:
            got = conn.fetch("f64", [1, 2])
        assert got.column("vector").to_pylist() == values
        return
    assert ran.returncode == 1, ran.stderr
    line = ran.stderr.replace("\n", " ")
    for text in ("float64", "not exactly representable as float32", "id=2", "field='vector'"):
        assert text in line, line
    # The hint names the mapping line that lets the copy round them (the source unchanged).
    assert "vectors: {vector: {round_to_float32: true}}" in line
    (tmp_path / "map.yaml").write_text("vectors:\n  vector: {metric: l2, round_to_float32: true}\n")
    for verify in ("sampled", "full"):
        dump = f"dump://{tmp_path / verify}"
        out = _copied(f"lancedb://{tmp_path / 'lance'}", dump, "f64", "--map",
                      str(tmp_path / "map.yaml"), "--verify", verify)  # fmt: skip
        assert any("rounded to the nearest float32" in d for d in out["decisions"]), out
        with connect(dump) as conn:
            got = conn.fetch("f64", [1, 2]).column("vector").to_pylist()
            assert conn.describe("f64").vector.rounded is False  # the dump holds float32
        assert got == np.asarray(values, np.float32).tolist() and got[1][1] != 0.1


def test_sync_verify_and_diff_read_float64_vectors_as_the_mapping_let_the_copy(
    tmp_path: Path,
) -> None:
    """The copy rounded float64 vectors as its mapping allowed; a sync round, ``verify
    --map`` and ``diff --map`` with the same mapping failed on the same values, naming the
    very mapping line they had been given (their checks read the source unrounded)."""
    lancedb = require_module("lancedb")
    values = [[0.5, -0.25, 1.0], [2.0, 0.1, -1.5], [0.3, 0.2, 0.1]]
    table = pa.table({"id": [1, 2, 3], "vector": pa.array(values, pa.list_(pa.float64(), 3))})
    source = lancedb.connect(str(tmp_path / "lance")).create_table("f64", table)
    mapping = tmp_path / "map.yaml"
    mapping.write_text("vectors:\n  vector: {metric: l2, round_to_float32: true}\n")
    src, dst = f"lancedb://{tmp_path / 'lance'}", f"lancedb://{tmp_path / 'out'}"
    _copied(src, dst, "f64", "--map", str(mapping))
    row = pa.table({"id": [4], "vector": pa.array([[0.7, 0.7, 0.1]], pa.list_(pa.float64(), 3))})
    source.add(row)
    synced = cli("sync", src, dst, "-c", "f64", "--map", str(mapping), "--json")
    assert synced.returncode == 0, synced.stderr
    assert synced.json()["upserted"] == 1 and synced.json()["parity"]["equal"]
    report = cli("verify", src, dst, "-c", "f64", "--map", str(mapping), "--queries", "4",
                 "--report-dir", str(tmp_path / "r"), "--json")  # fmt: skip
    assert report.returncode == 0 and report.json()["parity"]["equal"], report.stderr
    diffed = cli("diff", src, dst, "-c", "f64", "--map", str(mapping), "--json")
    assert diffed.returncode == 0 and diffed.json()["equal"], diffed.stderr


def test_a_float64_beyond_float32s_range_is_refused_even_when_rounding(tmp_path: Path) -> None:
    lancedb = require_module("lancedb")
    values = [[0.5, -0.25, 1.0], [2.0, 1e39, -1.5]]
    table = pa.table({"id": [1, 2], "vector": pa.array(values, pa.list_(pa.float64(), 3))})
    lancedb.connect(str(tmp_path / "lance")).create_table("f64", table)
    (tmp_path / "map.yaml").write_text("vectors:\n  vector: {metric: l2, round_to_float32: true}\n")
    ran = _copy(f"lancedb://{tmp_path / 'lance'}", f"dump://{tmp_path / 'dump'}", "f64",
                "--map", str(tmp_path / "map.yaml"))  # fmt: skip
    assert ran.returncode == 1, ran.stderr
    line = ran.stderr.replace("\n", " ")
    for text in ("1e+39 is beyond float32's range", "id=2", "field='vector'"):
        assert text in line, line
