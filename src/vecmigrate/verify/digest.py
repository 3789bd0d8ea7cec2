"""Order-independent content digests of a collection.

Each record contributes two things, both summed so order and partitioning do not matter:

* a 64-bit hash of its canonical encoding (id as text, namespace, document, metadata with
  JSON types and floats at float32 precision, sparse vectors) - summed modulo 2**64;
* for each dense vector field, ``PROJECTIONS`` random projections of the vector (normalised
  first when the metric is cosine, because some engines normalise on insert) - summed in
  float64 and compared with the engines' declared tolerance, because engines return
  vectors that differ from the inserted ones by ~1e-7.

Records are also summed per bucket (by a hash of the id) so a mismatch narrows down to
the buckets, and from there to ids, without sorting either side.
"""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector
from vecmigrate.model import CollectionSchema, Metric
from vecmigrate.records import metadata_rows, vectors_to_numpy

BUCKETS = 64
PROJECTIONS = 8
_MASK = (1 << 64) - 1


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _projection(dim: int) -> np.ndarray:
    # Fixed per dimension so every run, machine and engine uses the same directions.
    rng = np.random.default_rng(1_000_003 + dim)
    r = rng.normal(size=(dim, PROJECTIONS))
    unit: np.ndarray = r / np.linalg.norm(r, axis=0, keepdims=True)
    return unit


def id_text(value: Any) -> str:
    """Canonical text of an id: ``5`` and ``"5"`` are the same record across engines."""
    return str(value)


def id_bucket(ids: list[str]) -> np.ndarray:
    """Bucket of each id (by its canonical text)."""
    return np.fromiter((_hash64(i.encode()) % BUCKETS for i in ids), dtype=np.int64, count=len(ids))


def _canonical(value: Any) -> Any:
    """Floats at float32 precision: some engines (Chroma) return float64 metadata 1 ULP off,
    and a 1-ULP change crosses a float32 rounding boundary with probability ~2**-29."""
    if isinstance(value, float):
        return float(np.float32(value)) if abs(value) < 3e38 else value
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def record_hashes(batch: pa.RecordBatch, schema: CollectionSchema) -> tuple[list[str], list[int]]:
    """Canonical id text and 64-bit content hash (everything but dense vectors) per record."""
    ids = [id_text(v) for v in batch.column("id").to_pylist()]
    n = batch.num_rows
    names = batch.schema.names
    docs = batch.column("document").to_pylist() if "document" in names else [None] * n
    nss = batch.column("namespace").to_pylist() if "namespace" in names else [None] * n
    sparse = {s.name: batch.column(s.name).to_pylist() for s in schema.sparse if s.name in names}
    metas = metadata_rows(batch, schema)
    hashes = []
    for i in range(n):
        rec = [ids[i], nss[i], docs[i], _canonical(metas[i]), {k: v[i] for k, v in sparse.items()}]
        text = json.dumps(rec, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        hashes.append(_hash64(text.encode()))
    return ids, hashes


@dataclass
class BucketDigest:
    """Sums over the records of one id bucket."""

    count: int = 0
    hash: int = 0
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DigestComparison:
    """Outcome of comparing two digests."""

    equal: bool
    count_a: int
    count_b: int
    differing_buckets: list[int]
    reasons: list[str]


@dataclass
class CollectionDigest:
    """Order-independent digest of a collection's content."""

    schema_dims: dict[str, int]
    buckets: list[BucketDigest] = field(
        default_factory=lambda: [BucketDigest() for _ in range(BUCKETS)]
    )

    @property
    def count(self) -> int:
        """Number of records digested."""
        return sum(b.count for b in self.buckets)

    @property
    def content_hash(self) -> str:
        """Hex of the exact part of the digest (all buckets)."""
        return f"{sum(b.hash for b in self.buckets) & _MASK:016x}"

    def merge(self, other: CollectionDigest) -> None:
        """Add another digest of disjoint records (e.g. another partition)."""
        for mine, theirs in zip(self.buckets, other.buckets, strict=True):
            mine.count += theirs.count
            mine.hash = (mine.hash + theirs.hash) & _MASK
            for name, v in theirs.vectors.items():
                mine.vectors[name] = mine.vectors.get(name, 0) + v

    def compare(self, other: CollectionDigest, *, tolerance: float = 0.0) -> DigestComparison:
        """Equal counts and hashes per bucket; vector sums equal within ``tolerance``.

        ``tolerance`` is the per-component absolute error an engine may introduce; a
        bucket of n records may differ by n * tolerance * sqrt(dim) per projection.
        """
        reasons: list[str] = []
        differing: list[int] = []
        for i, (a, b) in enumerate(zip(self.buckets, other.buckets, strict=True)):
            why = []
            if a.count != b.count:
                why.append(f"count {a.count} != {b.count}")
            elif a.hash != b.hash:
                why.append("ids, documents or metadata differ")
            for name in sorted(set(a.vectors) | set(b.vectors)):
                dim = self.schema_dims.get(name) or other.schema_dims.get(name) or 1
                va = a.vectors.get(name, np.zeros(PROJECTIONS))
                vb = b.vectors.get(name, np.zeros(PROJECTIONS))
                allowed = vector_allowance(tolerance, dim, a.count)
                if float(np.max(np.abs(va - vb))) > allowed:
                    why.append(f"vector field {name!r} differs")
            if why:
                differing.append(i)
                reasons.append(f"bucket {i}: " + "; ".join(why))
        return DigestComparison(not differing, self.count, other.count, differing, reasons)

    def to_json(self) -> dict[str, Any]:
        """JSON form, as stored in a dump manifest."""
        return {
            "algorithm": f"blake2b64-sum+proj{PROJECTIONS}/buckets{BUCKETS}",
            "count": self.count,
            "content_hash": self.content_hash,
            "dims": self.schema_dims,
            "buckets": [
                {
                    "count": b.count,
                    "hash": f"{b.hash:016x}",
                    "vectors": {k: [float(x) for x in v] for k, v in sorted(b.vectors.items())},
                }
                for b in self.buckets
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CollectionDigest:
        """Inverse of ``to_json``."""
        digest = cls(schema_dims=dict(data["dims"]))
        for b, d in zip(digest.buckets, data["buckets"], strict=True):
            b.count = d["count"]
            b.hash = int(d["hash"], 16)
            b.vectors = {k: np.asarray(v, dtype=np.float64) for k, v in d["vectors"].items()}
        return digest


class DigestBuilder:
    """Accumulates a digest batch by batch; thread-safe so partitions can share one."""

    def __init__(self, schema: CollectionSchema) -> None:
        self.schema = schema
        self.digest = CollectionDigest(schema_dims={v.name: v.dim for v in schema.vectors})
        self._proj = {v.name: _projection(v.dim) for v in schema.vectors}
        self._lock = threading.Lock()

    def signatures(self, batch: pa.RecordBatch) -> RecordSignatures:
        """Per-record id text, content hash, bucket and vector projections."""
        ids, hashes = record_hashes(batch, self.schema)
        projections = {}
        for v in self.schema.vectors:
            m = vectors_to_numpy(batch.column(v.name)).astype(np.float64)
            if v.metric is Metric.COSINE:
                norms = np.linalg.norm(m, axis=1, keepdims=True)
                m = np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)
            projections[v.name] = m @ self._proj[v.name]
        return RecordSignatures(ids, hashes, id_bucket(ids), projections)

    def add(self, batch: pa.RecordBatch) -> None:
        """Digest one batch in the schema's layout."""
        if batch.num_rows == 0:
            return
        sig = self.signatures(batch)
        sums: dict[str, np.ndarray] = {}
        for name, proj in sig.projections.items():
            per_bucket = np.zeros((BUCKETS, PROJECTIONS))
            np.add.at(per_bucket, sig.buckets, proj)
            sums[name] = per_bucket
        counts = np.bincount(sig.buckets, minlength=BUCKETS)
        bucket_hash = [0] * BUCKETS
        for b, h in zip(sig.buckets.tolist(), sig.hashes, strict=True):
            bucket_hash[b] += h
        with self._lock:
            for i, bd in enumerate(self.digest.buckets):
                if counts[i]:
                    bd.count += int(counts[i])
                    bd.hash = (bd.hash + bucket_hash[i]) & _MASK
                    for name, s in sums.items():
                        bd.vectors[name] = bd.vectors.get(name, 0) + s[i]


@dataclass
class RecordSignatures:
    """What the digest knows about each record of a batch."""

    ids: list[str]
    hashes: list[int]
    buckets: np.ndarray
    projections: dict[str, np.ndarray]


class Transform(Protocol):
    """What verify needs of a compiled mapping."""

    target: CollectionSchema

    def apply(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[Any]]:
        """The mapped batch and the records it refused."""
        ...


def vector_allowance(tolerance: float, dim: int, records: int = 1) -> float:
    """How far summed projections of ``records`` records may drift within ``tolerance``."""
    return max(records, 1) * (tolerance * float(np.sqrt(dim)) + 1e-9)


def collection_digest(
    connector: Connector,
    name: str,
    *,
    schema: CollectionSchema | None = None,
    workers: int = 2,
    batch_rows: int = 2000,
    transform: Transform | None = None,
) -> CollectionDigest:
    """Digest a whole collection by scanning its partitions concurrently.

    With ``transform`` (a compiled mapping), the digest is of what the mapping makes of
    each record, laid out as ``transform.target``: what a mapped copy should contain.
    """
    schema = schema or connector.describe(name)
    builder = DigestBuilder(transform.target if transform else schema)

    def run(partition: Any) -> None:
        for batch, _ in connector.scan(name, partition, schema=schema, batch_rows=batch_rows):
            builder.add(transform.apply(batch)[0] if transform else batch)

    parts = connector.partitions(name, workers)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(run, parts))
    return builder.digest
