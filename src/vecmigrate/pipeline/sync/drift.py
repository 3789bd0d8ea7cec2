"""Which records differ between a source and a target, for ``sync`` on any engine.

Pass 1 scans both sides (concurrently) into fine-grained bucketed digests: per bucket of
ids, a count, a 64-bit sum of record hashes and summed vector projections (the same
per-record signatures as ``verify.digest``). There are about ``ROWS_PER_BUCKET`` records per
bucket, so a change dirties one small bucket: 1% of records changed dirties ~1-4% of the
buckets, not all 64 coarse ones. Pass 2 re-scans both sides and keeps per-record signatures
only for records in dirty buckets, so memory is a few bytes per record for the digests plus
signatures proportional to the difference. Reads are four scans when anything differs, two
when nothing does; writes are proportional to the difference.

With a compiled mapping the source side is compared as the mapping makes it, and each
differing record keeps its source id so the writer can fetch it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vecmigrate.connectors.base import Connector
from vecmigrate.model import CollectionSchema
from vecmigrate.retry import scan_resuming
from vecmigrate.verify.digest import (
    PROJECTIONS,
    DigestBuilder,
    RecordSignatures,
    Transform,
    vector_allowance,
)

ROWS_PER_BUCKET = 4
MIN_BUCKETS, MAX_BUCKETS = 64, 1 << 20


@dataclass
class Side:
    """One end of a sync: connector, collection, schema, and the mapping for the source."""

    conn: Connector
    name: str
    schema: CollectionSchema
    transform: Transform | None = None

    @property
    def digest_schema(self) -> CollectionSchema:
        """Layout the signatures are computed in (the mapping's target for a mapped source)."""
        return self.transform.target if self.transform else self.schema


@dataclass
class Drift:
    """What it takes to make the target equal the source."""

    source_count: int
    target_count: int
    buckets: int
    dirty_buckets: int = 0
    missing: list[Any] = field(default_factory=list)  # source ids absent from the target
    changed: list[tuple[Any, Any]] = field(default_factory=list)  # (source id, target id)
    extra: list[Any] = field(default_factory=list)  # target ids absent from the source
    rows_scanned: int = 0
    mapping_refused: int = 0  # source records the mapping refuses (left out, as copy does)

    @property
    def equal(self) -> bool:
        """Nothing to do."""
        return not (self.missing or self.changed or self.extra)


def bucket_count(rows: int) -> int:
    """Power of two near ``rows / ROWS_PER_BUCKET``, within [MIN_BUCKETS, MAX_BUCKETS]."""
    want = max(MIN_BUCKETS, rows // ROWS_PER_BUCKET)
    return min(MAX_BUCKETS, 1 << (want - 1).bit_length())


def id_buckets(ids: list[str], buckets: int) -> np.ndarray:
    """Bucket of each canonical id text (a hash independent of the digest's own buckets)."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8, person=b"vm-sync").digest())
            % buckets
            for i in ids
        ),
        dtype=np.int64,
        count=len(ids),
    )


class FineDigest:
    """Per-bucket count, hash sum (mod 2**64) and projection sums, as numpy arrays."""

    def __init__(self, buckets: int, schema: CollectionSchema) -> None:
        self.n = buckets
        self.dims = {v.name: v.dim for v in schema.vectors}
        self.counts = np.zeros(buckets, np.int64)
        self.hashes = np.zeros(buckets, np.uint64)
        self.vectors = {name: np.zeros((buckets, PROJECTIONS)) for name in self.dims}

    def add(self, sig: RecordSignatures, where: np.ndarray) -> None:
        """Add the records of one batch, given their buckets."""
        self.counts += np.bincount(where, minlength=self.n)
        np.add.at(self.hashes, where, np.asarray(sig.hashes, dtype=np.uint64))  # wraps mod 2**64
        for name, proj in sig.projections.items():
            np.add.at(self.vectors[name], where, proj)

    def dirty(self, other: FineDigest, tolerance: float) -> np.ndarray:
        """Mask of buckets whose count, hash or vector sums differ beyond ``tolerance``."""
        mask: np.ndarray = (self.counts != other.counts) | (self.hashes != other.hashes)
        for name in set(self.vectors) | set(other.vectors):
            zero = np.zeros((self.n, PROJECTIONS))
            delta = np.abs(self.vectors.get(name, zero) - other.vectors.get(name, zero))
            dim = self.dims.get(name) or other.dims.get(name) or 1
            allowed = vector_allowance(tolerance, dim, 1) * np.maximum(self.counts, 1)
            # NaN (an invalid vector) never compares greater: count it as a difference.
            mask |= ~(delta.max(axis=1) <= allowed)
        return mask


def _signed(
    side: Side, batch_rows: int, stats: dict[str, int] | None = None
) -> Iterator[tuple[RecordSignatures, list[Any]]]:
    """Signatures of every record of ``side`` (mapped for a source), with original ids;
    ``stats`` counts rows ``read`` and ``refused`` by the mapping."""
    stats = stats if stats is not None else {}
    builder = DigestBuilder(side.digest_schema)
    for part in side.conn.partitions(side.name, 1):
        for batch, _ in scan_resuming(
            side.conn, side.name, part, schema=side.schema, batch_rows=batch_rows
        ):
            originals = batch.column("id").to_pylist()
            stats["read"] = stats.get("read", 0) + batch.num_rows
            if side.transform is not None:
                batch, refusals = side.transform.apply(batch)
                refused = {r.row for r in refusals}
                stats["refused"] = stats.get("refused", 0) + len(refused)
                originals = [x for i, x in enumerate(originals) if i not in refused]
            if batch.num_rows:
                yield builder.signatures(batch), originals


def _digest(side: Side, buckets: int, batch_rows: int) -> tuple[FineDigest, dict[str, int]]:
    digest = FineDigest(buckets, side.digest_schema)
    stats: dict[str, int] = {}
    for sig, _ in _signed(side, batch_rows, stats):
        digest.add(sig, id_buckets(sig.ids, buckets))
    return digest, stats


Signature = tuple[int, np.ndarray, Any]  # content hash, projections, original id


def _signatures_in(side: Side, dirty: np.ndarray, batch_rows: int) -> dict[str, Signature]:
    out: dict[str, Signature] = {}
    names = [v.name for v in side.digest_schema.vectors]
    for sig, originals in _signed(side, batch_rows):
        where = id_buckets(sig.ids, dirty.size)
        for i in np.flatnonzero(dirty[where]):
            proj = np.concatenate([sig.projections[n][i] for n in names]) if names else np.zeros(0)
            out[sig.ids[i]] = (sig.hashes[i], proj, originals[i])
    return out


def find_drift(source: Side, target: Side, *, tolerance: float, batch_rows: int = 2000) -> Drift:
    """Missing, changed and extra records of ``target`` relative to ``source``."""
    buckets = bucket_count(max(source.conn.count(source.name), target.conn.count(target.name)))
    with ThreadPoolExecutor(2) as pool:
        fa = pool.submit(_digest, source, buckets, batch_rows)
        fb = pool.submit(_digest, target, buckets, batch_rows)
        (da, stats_a), (db, stats_b) = fa.result(), fb.result()
    rows_a, rows_b = stats_a.get("read", 0), stats_b.get("read", 0)
    drift = Drift(int(da.counts.sum()), int(db.counts.sum()), buckets, rows_scanned=rows_a + rows_b)
    drift.mapping_refused = stats_a.get("refused", 0)
    dirty = da.dirty(db, tolerance)
    drift.dirty_buckets = int(dirty.sum())
    if not drift.dirty_buckets:
        return drift
    with ThreadPoolExecutor(2) as pool:
        fa2 = pool.submit(_signatures_in, source, dirty, batch_rows)
        fb2 = pool.submit(_signatures_in, target, dirty, batch_rows)
        left, right = fa2.result(), fb2.result()
    drift.rows_scanned += rows_a + rows_b
    dims = [v.dim for v in source.digest_schema.vectors]
    allowed = max((vector_allowance(tolerance, d) for d in dims), default=0.0)
    for key, (h, proj, original) in left.items():
        other = right.get(key)
        if other is None:
            drift.missing.append(original)
        elif (
            other[0] != h
            or proj.shape != other[1].shape
            or not float(np.max(np.abs(proj - other[1]), initial=0.0)) <= allowed
        ):
            drift.changed.append((original, other[2]))
    drift.extra = [other[2] for key, other in right.items() if key not in left]
    return drift
