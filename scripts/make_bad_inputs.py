"""Generate the bad-input corpus under tests/data/bad/: one tiny dump per defect.

    .venv/bin/python scripts/make_bad_inputs.py [--out tests/data/bad]

Each case is a finished dump (manifest + _schema.json + parts) of a handful of records in
which exactly one thing is wrong; ``tests/e2e/test_bad_inputs.py`` drives ``check`` and
``import`` over each and asserts the specific error or dead letter. Parts are written
raw (not conformed), the way a buggy exporter or a damaged disk would leave them.
Output is deterministic: rerunning rewrites identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vecmigrate.dump import MANIFEST, SCHEMA, Dump, PartInfo
from vecmigrate.model import CollectionSchema, IdType, MetadataField, Metric, VectorField

DIM = 4
ROWS = 6
NAME = "docs"


def _schema(**overrides: Any) -> CollectionSchema:
    base: dict[str, Any] = {
        "name": NAME,
        "vectors": (VectorField(dim=DIM, metric=Metric.L2),),
        "has_document": True,
        "metadata": (
            MetadataField(name="genre", type="string"),
            MetadataField(name="year", type="int64"),
        ),
    }
    base.update(overrides)
    return CollectionSchema(**base)


def _columns(schema: CollectionSchema, ids: list[Any]) -> dict[str, Any]:
    """Valid column values for ``ids`` (vectors as a plain list<float32>, editable)."""
    rng = np.random.default_rng(7)
    n = len(ids)
    return {
        "id": ids,
        "document": [f"document {i}" for i in range(n)],
        "vector": [list(map(float, rng.normal(size=DIM).round(3))) for _ in range(n)],
        "metadata": [{"genre": "news" if i % 2 else "art", "year": 2000 + i} for i in range(n)],
        "metadata_extra": [None] * n,
    }


def _table(
    schema: CollectionSchema, cols: dict[str, Any], vector_type: pa.DataType | None = None
) -> pa.Table:
    id_type = pa.string() if isinstance(cols["id"][0], str) else schema.id_arrow_type()
    doc = cols["document"]
    doc_arr = doc if isinstance(doc, pa.Array) else pa.array(doc, pa.string())
    return pa.table(
        {
            "id": pa.array(cols["id"], id_type),
            "document": doc_arr,
            "vector": pa.array(cols["vector"], vector_type or pa.list_(pa.float32(), DIM)),
            "metadata": pa.array(cols["metadata"], schema.metadata_struct_type()),
            "metadata_extra": pa.array(cols["metadata_extra"], pa.string()),
        }
    )


def _finish(root: Path, schema: CollectionSchema, tables: list[pa.Table]) -> Dump:
    """Write schema, parts and a manifest whose checksums match the files."""
    dump = Dump(root)
    dump.write_schema(schema)
    for t in tables:
        dump.write_part(NAME, t)
    parts = [
        PartInfo(p.name, pq.ParquetFile(p).metadata.num_rows, _sha(p))
        for p in dump.part_files(NAME)
    ]
    dump.record_collection(NAME, parts, {}, schema)
    _pin_manifest(root)
    return dump


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pin_manifest(root: Path) -> None:
    """Fixed creation time and tool version, so regenerating changes nothing."""
    path = root / MANIFEST
    m = json.loads(path.read_text())
    m["created"], m["tool_version"] = "2026-01-01T00:00:00+00:00", "0.1.0"
    path.write_text(json.dumps(m, indent=2, sort_keys=True))


def _rewrite_manifest(root: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = root / MANIFEST
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m, indent=2, sort_keys=True))


def _ids(n: int = ROWS) -> list[str]:
    return [f"r{i}" for i in range(n)]


# -- the cases --------------------------------------------------------------------------
def nan_inf(root: Path) -> None:
    """r2 has a NaN component, r4 an Inf one."""
    s = _schema()
    c = _columns(s, _ids())
    c["vector"][2][1] = float("nan")
    c["vector"][4][3] = float("inf")
    _finish(root, s, [_table(s, c)])


def wrong_dimension(root: Path) -> None:
    """r3's vector has 3 components in a 4-d collection (stored as a variable list)."""
    s = _schema()
    c = _columns(s, _ids())
    c["vector"][3] = c["vector"][3][:3]
    _finish(root, s, [_table(s, c, vector_type=pa.list_(pa.float32()))])


def zero_vector_cosine(root: Path) -> None:
    """r1 is the zero vector in a cosine collection (no direction, no cosine)."""
    s = _schema(vectors=(VectorField(dim=DIM, metric=Metric.COSINE),))
    c = _columns(s, _ids())
    c["vector"][1] = [0.0] * DIM
    _finish(root, s, [_table(s, c)])


def duplicate_ids(root: Path) -> None:
    """r5 is in two parts with different documents and vectors."""
    s = _schema()
    c = _columns(s, _ids())
    d = _columns(s, ["r5"])
    d["document"], d["vector"] = ["another r5"], [[9.0, 9.0, 9.0, 9.0]]
    _finish(root, s, [_table(s, c), _table(s, d)])


def empty_id(root: Path) -> None:
    """r2's id is the empty string."""
    s = _schema()
    ids = _ids()
    ids[2] = ""
    _finish(root, s, [_table(s, _columns(s, ids))])


def non_utf8(root: Path) -> None:
    """r4's document is Latin-1 bytes in a UTF-8 string column."""
    s = _schema()
    c = _columns(s, _ids())
    raw = [d.encode() for d in c["document"]]
    raw[4] = "café latin-1".encode("latin-1")
    binary = pa.array(raw, pa.binary())
    c["document"] = pa.Array.from_buffers(pa.string(), len(binary), binary.buffers())
    _finish(root, s, [_table(s, c)])


def mixed_types(root: Path) -> None:
    """year is int64, but r1 holds the string "1999" and r3 the float 2001.5 (kept in
    metadata_extra, as a faithful export of a schemaless source does)."""
    s = _schema()
    c = _columns(s, _ids())
    for i, v in ((1, "1999"), (3, 2001.5)):
        c["metadata"][i] = {"genre": c["metadata"][i]["genre"]}
        c["metadata_extra"][i] = json.dumps({"year": v})
    _finish(root, s, [_table(s, c)])


def metadata_too_large(root: Path) -> None:
    """r2's genre is 70,000 characters: over Milvus' 65,536-byte metadata limit."""
    s = _schema()
    c = _columns(s, _ids())
    c["metadata"][2] = {"genre": "x" * 70_000, "year": 2002}
    _finish(root, s, [_table(s, c)])


def quote_in_id(root: Path) -> None:
    """r3's id contains a single quote, which milvus-lite cannot store."""
    s = _schema()
    ids = _ids()
    ids[3] = "r3's"
    _finish(root, s, [_table(s, _columns(s, ids))])


def id_type_mismatch(root: Path) -> None:
    """The schema says int ids; the part holds strings and one is not a number."""
    s = _schema(id_type=IdType.INT)
    ids = [str(i) for i in range(ROWS)]
    ids[4] = "four"
    _finish(root, s, [_table(s, _columns(s, ids))])


def truncated_part(root: Path) -> None:
    """The part lost its second half (and the manifest checksum was updated to match,
    as a copy that stopped early and then re-listed would)."""
    s = _schema()
    dump = _finish(root, s, [_table(s, _columns(s, _ids()))])
    part = dump.part_files(NAME)[0]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])

    def fix(m: dict[str, Any]) -> None:
        m["collections"][NAME]["files"][0]["sha256"] = _sha(part)

    _rewrite_manifest(root, fix)


def checksum_mismatch(root: Path) -> None:
    """One byte of the part changed after the manifest recorded its sha256."""
    s = _schema()
    dump = _finish(root, s, [_table(s, _columns(s, _ids()))])
    part = dump.part_files(NAME)[0]
    data = bytearray(part.read_bytes())
    data[len(data) // 3] ^= 0xFF
    part.write_bytes(bytes(data))


def schema_version(root: Path) -> None:
    """_schema.json declares format_version 99."""
    s = _schema()
    _finish(root, s, [_table(s, _columns(s, _ids()))])
    path = root / NAME / SCHEMA
    doc = json.loads(path.read_text())
    doc["format_version"] = 99
    path.write_text(json.dumps(doc, indent=2))


def missing_metadata_column(root: Path) -> None:
    """The part has no metadata column at all, though the schema declares genre and year
    (a reader that filled it with nulls would import every record without them)."""
    s = _schema()
    _finish(root, s, [_table(s, _columns(s, _ids())).drop_columns(["metadata"])])


def renamed_metadata_field(root: Path) -> None:
    """The part's metadata struct calls year "yaer" (a cast by name would null every year)."""
    s = _schema()
    t = _table(s, _columns(s, _ids()))
    struct = t.column("metadata").combine_chunks()
    renamed = pa.StructArray.from_arrays(struct.flatten(), names=["genre", "yaer"])
    _finish(root, s, [t.set_column(t.schema.get_field_index("metadata"), "metadata", renamed)])


def extra_column(root: Path) -> None:
    """The part has a top-level column "rating" the schema does not declare."""
    s = _schema()
    t = _table(s, _columns(s, _ids()))
    _finish(root, s, [t.append_column("rating", pa.array(range(ROWS), pa.int64()))])


def numeric_strings(root: Path) -> None:
    """year is int64 in the schema, but the part stores it as text: "007", "-0",
    "0000000001" and "2003" must stay those strings (in metadata_extra), never 7, 0, 1."""
    s = _schema()
    t = _table(s, _columns(s, _ids()))
    genre = t.column("metadata").combine_chunks().field("genre")
    year = pa.array(["007", "-0", "0000000001", "2003", None, "+5"], pa.string())
    struct = pa.StructArray.from_arrays([genre, year], names=["genre", "year"])
    _finish(root, s, [t.set_column(t.schema.get_field_index("metadata"), "metadata", struct)])


def id_leading_zeros(root: Path) -> None:
    """The schema says int ids; the part holds them as text and r2's is "007" (not 7)."""
    s = _schema(id_type=IdType.INT)
    ids = [str(i) for i in range(ROWS)]
    ids[2] = "007"
    _finish(root, s, [_table(s, _columns(s, ids))])


def float64_vectors(root: Path) -> None:
    """Vectors stored as float64; r3's has a component (0.1) that float32 would round."""
    s = _schema()
    c = _columns(s, _ids())
    c["vector"] = [[0.5, 0.25, -1.0, 2.0] for _ in range(ROWS)]
    c["vector"][3][2] = 0.1
    _finish(root, s, [_table(s, c, vector_type=pa.list_(pa.float64(), DIM))])


def null_vector(root: Path) -> None:
    """r2's vector is null."""
    s = _schema()
    c = _columns(s, _ids())
    c["vector"][2] = None
    _finish(root, s, [_table(s, c)])


CASES: dict[str, Callable[[Path], None]] = {
    f.__name__: f
    for f in (
        nan_inf,
        wrong_dimension,
        zero_vector_cosine,
        duplicate_ids,
        empty_id,
        non_utf8,
        mixed_types,
        metadata_too_large,
        quote_in_id,
        id_type_mismatch,
        truncated_part,
        checksum_mismatch,
        schema_version,
        missing_metadata_column,
        renamed_metadata_field,
        extra_column,
        numeric_strings,
        id_leading_zeros,
        float64_vectors,
        null_vector,
    )
}


def main() -> None:
    """Regenerate every case (the folder is replaced)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("tests/data/bad"))
    out = ap.parse_args().out
    shutil.rmtree(out, ignore_errors=True)
    for name, make in CASES.items():
        make(out / name)
        (out / name / "CASE.txt").write_text((make.__doc__ or "").strip() + "\n")
    print(f"{len(CASES)} cases in {out}")


if __name__ == "__main__":
    main()
