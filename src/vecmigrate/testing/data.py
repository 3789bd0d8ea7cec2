"""The one data set every connector is tested with: deterministic, every metadata type."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.model import (
    CollectionSchema,
    IdType,
    MetadataField,
    Metric,
    SparseField,
    VectorField,
)
from vecmigrate.records import build_batch

DIM = 16
ROWS = 240
GENRES = ["news", "sport", "tech", "art"]


# Every operator on str/int/float/bool/list fields, with nulls and missing keys ("note").
FILTER_MATRIX: list[dict[str, Any]] = [
    {"genre": "news"},
    {"genre": {"$ne": "news"}},
    {"genre": {"$in": ["art", "tech"]}},
    {"genre": {"$nin": ["art"]}},
    {"year": {"$gt": 2010}},
    {"year": {"$gte": 2010, "$lt": 2015}},
    {"score": {"$lte": 40.0}},
    {"published": True},
    {"published": {"$ne": True}},
    {"tags": "t3"},
    {"tags": {"$in": ["t1", "t6"]}},
    {"note": {"$exists": True}},
    {"note": {"$exists": False}},
    {"note": {"$ne": "x"}},
    {"$and": [{"genre": "news"}, {"year": {"$lt": 2015}}]},
    {"$or": [{"genre": "art"}, {"published": True}]},
    {"$not": {"genre": "news"}},
    {"$not": {"note": {"$ne": "x"}}},
]


def sample_schema(
    name: str, *, id_type: IdType = IdType.STRING, metric: Metric = Metric.COSINE
) -> CollectionSchema:
    """Schema of the conformance collection."""
    return CollectionSchema(
        name=name,
        id_type=id_type,
        vectors=(VectorField(name="vector", dim=DIM, metric=metric),),
        has_document=True,
        metadata=(
            MetadataField(name="genre", type="string"),
            MetadataField(name="year", type="int64"),
            MetadataField(name="score", type="float64"),
            MetadataField(name="published", type="bool"),
            MetadataField(name="tags", type="list<string>"),
            MetadataField(name="note", type="string"),
        ),
    )


def sample_ids(id_type: IdType, n: int = ROWS) -> list[Any]:
    """Ids of the sample rows; string ids include characters engines tend to mangle."""
    if id_type is IdType.INT:
        return [i * 7 + 1 for i in range(n)]
    return [f"doc-{i:04d}/é" if i % 17 == 0 else f"doc-{i:04d}" for i in range(n)]


def sample_vectors(n: int = ROWS, seed: int = 7) -> np.ndarray:
    """Random float32 vectors, not normalised (so normalising engines are exercised)."""
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def sample_metadata(n: int = ROWS) -> list[dict[str, Any]]:
    """Metadata rows covering str, int, float, bool, list of str and nulls."""
    rows = []
    for i in range(n):
        row: dict[str, Any] = {
            "genre": GENRES[i % len(GENRES)],
            "year": 1990 + i % 35,
            "score": round(i * 0.37, 3) + 0.5,
            "published": i % 3 == 0,
            "tags": [f"t{i % 5}", f"t{i % 7}"],
        }
        if i % 4 == 0:
            row["note"] = f"note {i} ünïcode"
        rows.append(row)
    return rows


def sample_batch(schema: CollectionSchema, n: int = ROWS, seed: int = 7) -> pa.RecordBatch:
    """The sample rows as one batch in ``schema``'s layout."""
    ids = sample_ids(schema.id_type, n)
    return build_batch(
        schema,
        ids,
        {"vector": sample_vectors(n, seed)},
        documents=[f"document number {i} about {GENRES[i % 4]}" for i in range(n)],
        metadata=sample_metadata(n),
    )


NAMESPACES = ("tenant-a", "tenant-b")
TITLE_DIM = 8


def rich_schema(
    name: str,
    *,
    id_type: IdType,
    named: bool = False,
    namespaces: bool = False,
    sparse: bool = False,
) -> CollectionSchema:
    """The sample schema plus a second named vector, namespaces and/or a sparse field."""
    base = sample_schema(name, id_type=id_type)
    vectors = base.vectors
    if named:
        vectors = (*vectors, VectorField(name="title", dim=TITLE_DIM, metric=Metric.COSINE))
    return base.replace(
        vectors=vectors,
        namespaces=NAMESPACES if namespaces else None,
        sparse=(SparseField(name="keywords"),) if sparse else (),
    )


def sample_sparse(n: int = ROWS) -> list[dict[str, Any]]:
    """Sparse vectors with 1-4 sorted, distinct indices each (large ids included)."""
    out = []
    for i in range(n):
        idx = sorted({(i * 31 + j * 977) % 30_000 for j in range(1 + i % 4)})
        out.append({"indices": idx, "values": [round(0.25 * (j + 1), 2) for j in range(len(idx))]})
    return out


def rich_batch(schema: CollectionSchema, n: int = ROWS) -> pa.RecordBatch:
    """The sample rows in a ``rich_schema`` layout."""
    vectors: dict[str, Any] = {"vector": sample_vectors(n)}
    if any(v.name == "title" for v in schema.vectors):
        vectors["title"] = np.random.default_rng(3).normal(size=(n, TITLE_DIM)).astype(np.float32)
    return build_batch(
        schema,
        sample_ids(schema.id_type, n),
        vectors,
        documents=[f"document number {i} about {GENRES[i % 4]}" for i in range(n)],
        metadata=sample_metadata(n),
        namespaces=[NAMESPACES[i % 2] for i in range(n)] if schema.namespaces else None,
        sparse={"keywords": sample_sparse(n)} if schema.sparse else None,
    )
