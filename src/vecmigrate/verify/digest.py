"""Order-independent content digests of a collection.

Each record contributes, summed so that order and partitioning do not matter:

* a 64-bit hash of its canonical encoding (id as text, namespace, document, metadata with
  floats at float32 precision, sparse vectors, the bits of a vector holding NaN/Inf);
* per dense vector field, ``PROJECTIONS`` random projections of the vector (normalised for
  cosine: some engines normalise on insert) times a weight in [1, 2) drawn from the id, so
  records swapping vectors change the sum; compared with an allowance growing with the sum;
* with a ``tolerance``, per vector field a 64-bit hash of the id and the values on a grid of
  that step (exact bits for 0). A value moved by more than the step lands in another cell:
  any change above the tolerance changes the sum, at any collection size. Noise below it
  may cross a cell boundary too, so a grid mismatch alone leaves a bucket *unsettled* until
  its records are compared one by one (``verify.diff``).

Sums are kept per bucket (by a hash of the id) so a mismatch narrows down to buckets, and
from there to ids, without sorting either side.
"""

from __future__ import annotations

import functools
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
from vecmigrate.retry import scan_resuming

BUCKETS = 64
PROJECTIONS = 8
WEIGHT_MAX = 2.0  # id weights of the projections lie in [1, WEIGHT_MAX)
_MASK = (1 << 64) - 1
# splitmix64 constants: a golden-ratio increment and the finaliser's multipliers.
_PHI = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_OFF_GRID = np.uint64(0xA5A5A5A5A5A5A5A5)  # tags values hashed by their bits, not a cell
_BLOCK = 1 << 18  # values hashed per numpy step: temporaries stay a few MB


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: a bijection of uint64 that spreads every bit."""
    x ^= x >> np.uint64(30)
    x *= _C1  # uint64 arrays wrap modulo 2**64, which is what the hash wants
    x ^= x >> np.uint64(27)
    x *= _C2
    x ^= x >> np.uint64(31)
    return x


@functools.lru_cache(maxsize=32)
def _lanes(dim: int) -> np.ndarray:
    # A key per coordinate, so equal values at different positions hash differently.
    lanes = _mix(np.arange(1, dim + 1, dtype=np.uint64) * _PHI)
    lanes.flags.writeable = False
    return lanes


def _salt(label: str) -> np.uint64:
    return np.uint64(_hash64(label.encode()))


def _projection(dim: int) -> np.ndarray:
    # Fixed per dimension so every run, machine and engine uses the same directions.
    rng = np.random.default_rng(1_000_003 + dim)
    r = rng.normal(size=(dim, PROJECTIONS))
    unit: np.ndarray = r / np.linalg.norm(r, axis=0, keepdims=True)
    return unit


def id_text(value: Any) -> str:
    """Canonical text of an id: ``5`` and ``"5"`` are the same record across engines."""
    return str(value)


def id_hashes(ids: list[str]) -> np.ndarray:
    """64-bit hash of each id's canonical text (its bucket is this modulo ``BUCKETS``)."""
    return np.fromiter((_hash64(i.encode()) for i in ids), dtype=np.uint64, count=len(ids))


def id_bucket(ids: list[str]) -> np.ndarray:
    """Bucket of each id (by its canonical text)."""
    return (id_hashes(ids) % np.uint64(BUCKETS)).astype(np.int64)


def _float_bits(m: np.ndarray) -> np.ndarray:
    # One NaN and one zero: engines may return another NaN payload or -0.0 for 0.0.
    canon = np.where(np.isnan(m), np.nan, m + 0.0)  # -0.0 + 0.0 is 0.0
    return canon.view(np.uint64)


def _cells(m: np.ndarray, step: float) -> np.ndarray:
    """Grid cell of each value as uint64 (its bits for step 0, or when off the grid)."""
    if step <= 0:
        return _float_bits(m)
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.floor(m / step)
    inside = np.abs(q) < 2.0**62  # False for NaN and Inf
    cells = np.where(inside, q, 0.0).astype(np.int64).view(np.uint64)
    if not inside.all():
        cells = np.where(inside, cells, _float_bits(m) ^ _OFF_GRID)
    return cells


def grid_hashes(m: np.ndarray, keys: np.ndarray, step: float) -> np.ndarray:
    """Per row, a 64-bit hash of its key and its values on a grid of ``step`` (0: exact):
    a sum over coordinates of a bijective mix of (cell, key, position), so moving any one
    value to another cell, or giving the row another key, always changes it."""
    n, dim = m.shape
    out = np.empty(n, np.uint64)
    rows = max(1, _BLOCK // max(dim, 1))
    for start in range(0, n, rows):
        k = keys[start : start + rows]
        block = _cells(m[start : start + rows], step)
        block ^= k[:, None] + _lanes(dim)[None, :]
        total = _mix(block).sum(axis=1, dtype=np.uint64)
        out[start : start + rows] = _mix(total ^ k)
    return out


def _prepared(vectors: np.ndarray, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """float64 copy (unit length for cosine) and the mask of rows holding NaN or Inf."""
    m = vectors.astype(np.float64)
    bad = np.asarray(~np.isfinite(m).all(axis=1))
    if metric is Metric.COSINE:
        norms = np.sqrt(np.add.reduce(m * m, axis=1))[:, None]
        with np.errstate(invalid="ignore"):
            ok = (norms > 0) & np.isfinite(norms)
        np.divide(m, norms, out=m, where=ok)  # zero and non-finite rows stay as they are
    return m, bad


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
    grid: dict[str, int] = field(default_factory=dict)


@dataclass
class DigestComparison:
    """Outcome of comparing two digests: ``differing_buckets`` certainly differ;
    ``unsettled_buckets`` differ only in a grid hash (a change, or noise at a cell edge)."""

    equal: bool
    count_a: int
    count_b: int
    differing_buckets: list[int]
    reasons: list[str]
    unsettled_buckets: list[int] = field(default_factory=list)


@dataclass
class CollectionDigest:
    """Order-independent digest of a collection's content."""

    schema_dims: dict[str, int]
    buckets: list[BucketDigest] = field(
        default_factory=lambda: [BucketDigest() for _ in range(BUCKETS)]
    )
    grid_step: float | None = None  # the vector grid's step; None: no grid hashes

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
            for name, g in theirs.grid.items():
                mine.grid[name] = (mine.grid.get(name, 0) + g) & _MASK

    def compare(self, other: CollectionDigest, *, tolerance: float = 0.0) -> DigestComparison:
        """Equal counts and hashes per bucket, vector sums within ``vector_allowance`` of
        ``tolerance`` (an engine's per-value error) and, when both digests carry grid
        hashes of one step, equal grid hashes (else the bucket is unsettled, not equal)."""
        reasons: list[str] = []
        differing: list[int] = []
        unsettled: list[int] = []
        gridded = self.grid_step is not None and self.grid_step == other.grid_step
        for i, (a, b) in enumerate(zip(self.buckets, other.buckets, strict=True)):
            why = []
            if a.count != b.count:
                why.append(f"count {a.count} != {b.count}")
            elif a.hash != b.hash:
                why.append("ids, documents or metadata differ")
            names = sorted(set(a.vectors) | set(b.vectors) | set(a.grid) | set(b.grid))
            for name in names:
                dim = self.schema_dims.get(name) or other.schema_dims.get(name) or 1
                va = a.vectors.get(name, np.zeros(PROJECTIONS))
                vb = b.vectors.get(name, np.zeros(PROJECTIONS))
                allowed = vector_allowance(tolerance, dim, max(a.count, b.count))
                # NaN never compares <=: a poisoned sum counts as a difference.
                if not float(np.max(np.abs(va - vb))) <= allowed:
                    why.append(f"vector field {name!r} differs")
            if why:
                differing.append(i)
                reasons.append(f"bucket {i}: " + "; ".join(why))
                continue
            moved = [n for n in names if gridded and a.grid.get(n, 0) != b.grid.get(n, 0)]
            if moved:
                unsettled.append(i)
                reasons.append(
                    f"bucket {i}: vector field {moved[0]!r} moved on the {self.grid_step:g} "
                    "grid (a change above the tolerance, or noise at a cell boundary)"
                )
        equal = not differing and not unsettled
        return DigestComparison(equal, self.count, other.count, differing, reasons, unsettled)

    def to_json(self) -> dict[str, Any]:
        """JSON form, as stored in a dump manifest."""
        return {
            "algorithm": f"blake2b64-sum+idproj{PROJECTIONS}+grid/buckets{BUCKETS}",
            "count": self.count,
            "content_hash": self.content_hash,
            "dims": self.schema_dims,
            "grid_step": self.grid_step,
            "buckets": [
                {
                    "count": b.count,
                    "hash": f"{b.hash:016x}",
                    "vectors": {k: [float(x) for x in v] for k, v in sorted(b.vectors.items())},
                    "grid": {k: f"{g:016x}" for k, g in sorted(b.grid.items())},
                }
                for b in self.buckets
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CollectionDigest:
        """Inverse of ``to_json``."""
        digest = cls(schema_dims=dict(data["dims"]), grid_step=data.get("grid_step"))
        for b, d in zip(digest.buckets, data["buckets"], strict=True):
            b.count = d["count"]
            b.hash = int(d["hash"], 16)
            b.vectors = {k: np.asarray(v, dtype=np.float64) for k, v in d["vectors"].items()}
            b.grid = {k: int(g, 16) for k, g in d.get("grid", {}).items()}
        return digest


@dataclass
class RecordSignatures:
    """What the digest knows about each record of a batch."""

    ids: list[str]
    hashes: list[int]
    buckets: np.ndarray
    projections: dict[str, np.ndarray]
    grid: dict[str, np.ndarray] = field(default_factory=dict)  # uint64 per record


class DigestBuilder:
    """Accumulates a digest batch by batch; thread-safe so partitions can share one. With
    ``tolerance`` (the engines' per-value vector tolerance, 0 for exact storage) it also
    sums grid hashes of that step: any change above it shows, whatever the size."""

    def __init__(self, schema: CollectionSchema, *, tolerance: float | None = None) -> None:
        self.schema = schema
        self.step = tolerance
        self.digest = CollectionDigest(
            schema_dims={v.name: v.dim for v in schema.vectors}, grid_step=tolerance
        )
        self._proj = {v.name: _projection(v.dim) for v in schema.vectors}
        self._lock = threading.Lock()

    def signatures(self, batch: pa.RecordBatch) -> RecordSignatures:
        """Per-record id text, content hash, bucket, vector projections and grid hashes."""
        ids, content = record_hashes(batch, self.schema)
        keys = id_hashes(ids)
        hashes = np.asarray(content, dtype=np.uint64)
        # High bits of a remix: within a bucket the low bits of ``keys`` are all alike.
        weights = 1.0 + (_mix(keys ^ _salt("weight")) >> np.uint64(11)) * 2.0**-53
        projections, grid = {}, {}
        for v in self.schema.vectors:
            m, bad = _prepared(vectors_to_numpy(batch.column(v.name)), v.metric)
            field_keys = _mix(keys ^ _salt(f"field:{v.name}"))
            if self.step is not None:
                grid[v.name] = grid_hashes(m, field_keys, self.step)
            if bad.any():
                # NaN/Inf would poison the projection sums: such vectors are told apart by
                # their exact bits, in the exact part of the digest, and project to zero.
                hashes[bad] += grid_hashes(m[bad], field_keys[bad], 0.0)
                m[bad] = 0.0
            projections[v.name] = (m @ self._proj[v.name]) * weights[:, None]
        buckets = (keys % np.uint64(BUCKETS)).astype(np.int64)
        return RecordSignatures(ids, hashes.tolist(), buckets, projections, grid)

    def add(self, batch: pa.RecordBatch) -> None:
        """Digest one batch in the schema's layout."""
        if batch.num_rows == 0:
            return
        sig = self.signatures(batch)
        counts = np.bincount(sig.buckets, minlength=BUCKETS)
        hashes = np.zeros(BUCKETS, np.uint64)
        np.add.at(hashes, sig.buckets, np.asarray(sig.hashes, dtype=np.uint64))  # mod 2**64
        grids = {}
        for name, per_record in sig.grid.items():
            grids[name] = np.zeros(BUCKETS, np.uint64)
            np.add.at(grids[name], sig.buckets, per_record)
        sums = {}
        for name, proj in sig.projections.items():
            sums[name] = np.zeros((BUCKETS, PROJECTIONS))
            np.add.at(sums[name], sig.buckets, proj)
        with self._lock:
            for i in np.flatnonzero(counts).tolist():
                bd = self.digest.buckets[i]
                bd.count += int(counts[i])
                bd.hash = (bd.hash + int(hashes[i])) & _MASK
                for name, g in grids.items():
                    bd.grid[name] = (bd.grid.get(name, 0) + int(g[i])) & _MASK
                for name, s in sums.items():
                    bd.vectors[name] = bd.vectors.get(name, 0) + s[i]


class Transform(Protocol):
    """What verify needs of a compiled mapping."""

    target: CollectionSchema

    def apply(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[Any]]:
        """The mapped batch and the records it refused."""
        ...


def vector_allowance(tolerance: float, dim: int, records: int = 1) -> float:
    """How far summed (id-weighted) projections of ``records`` records may drift within
    ``tolerance``: each record by at most its weight times ``tolerance * sqrt(dim)``."""
    return max(records, 1) * WEIGHT_MAX * (tolerance * float(np.sqrt(dim)) + 1e-9)


def collection_digest(
    connector: Connector,
    name: str,
    *,
    schema: CollectionSchema | None = None,
    workers: int = 2,
    batch_rows: int = 2000,
    transform: Transform | None = None,
    tolerance: float | None = None,
) -> CollectionDigest:
    """Digest a whole collection by scanning its partitions concurrently.

    With ``transform`` (a compiled mapping), the digest is of what the mapping makes of
    each record, laid out as ``transform.target``: what a mapped copy should contain.
    With ``tolerance``, it carries grid hashes of that step (see ``DigestBuilder``).
    """
    schema = schema or connector.describe(name)
    builder = DigestBuilder(transform.target if transform else schema, tolerance=tolerance)

    def run(partition: Any) -> None:
        for batch, _ in scan_resuming(
            connector, name, partition, schema=schema, batch_rows=batch_rows
        ):
            builder.add(transform.apply(batch)[0] if transform else batch)

    parts = connector.partitions(name, workers)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(run, parts))
    return builder.digest
