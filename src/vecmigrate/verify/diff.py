"""Data parity down to the record: which ids are missing, extra, changed or duplicated.

Pass 1 digests both sides (bucketed, order-independent, with grid hashes of the vectors at
the engines' tolerance). Only when buckets differ or are unsettled does pass 2 re-scan both
sides keeping per-record signatures of those buckets alone, so memory grows with the size
of the difference, not of the collection. Records whose signatures differ are then fetched
from both sides: their vectors are compared value by value with the tolerance (a grid hash
may move for noise below it) and, when asked, the fields that differ are named.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.connectors.base import Connector
from vecmigrate.model import CollectionSchema, IdType, Metric
from vecmigrate.records import metadata_rows, vectors_or_nan
from vecmigrate.retry import scan_resuming
from vecmigrate.verify.digest import (
    BUCKETS,
    CollectionDigest,
    DigestBuilder,
    Transform,
    collection_digest,
    id_bucket,
    id_text,
)

FETCH = 500  # ids per fetch: both sides' records of one chunk are in memory at a time


@dataclass
class ChangedRecord:
    """An id present on both sides whose content differs."""

    id: str
    fields: list[str]


@dataclass
class DuplicateId:
    """An id held by more than one record on a side (``source``/``target``: how many)."""

    id: str
    source: int
    target: int


@dataclass
class DiffResult:
    """Missing (in source only), extra (in target only), changed and duplicated ids."""

    source_count: int
    target_count: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[ChangedRecord] = field(default_factory=list)
    source_digest: str = ""
    target_digest: str = ""
    duplicates: list[DuplicateId] = field(default_factory=list)
    in_flight: list[str] | None = None
    """Set by ``settle_in_flight``: ids the scans saw differ that were equal on a re-read
    (writes in flight while the application writes); the counts are then two moments."""

    @property
    def equal(self) -> bool:
        """Both sides hold the same records, each id once."""
        named = self.missing or self.extra or self.changed or self.duplicates
        counts = self.in_flight is not None or self.source_count == self.target_count
        return not named and counts

    @property
    def ok(self) -> bool:
        """Same as ``equal`` (every result of the public API has ``ok``)."""
        return self.equal

    def to_table(self) -> pa.Table:
        """One row per differing id: id, kind (missing/extra/changed/duplicate), fields."""
        ids = [*self.missing, *self.extra, *(c.id for c in self.changed)]
        ids += [d.id for d in self.duplicates]
        kinds = ["missing"] * len(self.missing) + ["extra"] * len(self.extra)
        kinds += ["changed"] * len(self.changed) + ["duplicate"] * len(self.duplicates)
        fields: list[str | None] = [None] * (len(self.missing) + len(self.extra))
        fields += [",".join(c.fields) for c in self.changed]
        fields += [f"source x{d.source},target x{d.target}" for d in self.duplicates]
        return pa.table(
            {
                "id": pa.array(ids, pa.string()),
                "kind": pa.array(kinds, pa.string()),
                "fields": pa.array(fields, pa.string()),
            }
        )

    def to_json(self) -> dict[str, Any]:
        """JSON form for reports and ``--json``."""
        return {
            "equal": self.equal,
            "source_count": self.source_count,
            "target_count": self.target_count,
            "source_digest": self.source_digest,
            "target_digest": self.target_digest,
            "missing": self.missing,
            "extra": self.extra,
            "changed": [{"id": c.id, "fields": c.fields} for c in self.changed],
            "duplicates": [
                {"id": d.id, "source": d.source, "target": d.target} for d in self.duplicates
            ],
            **({"in_flight": self.in_flight} if self.in_flight is not None else {}),
        }


@dataclass
class _Seen:
    """A record's signature in pass 2, and how many records carry its id."""

    hash: int
    grid: dict[str, int]
    times: int = 1


def _batches(conn: Connector, name: str, schema: CollectionSchema) -> Iterator[pa.RecordBatch]:
    for part in conn.partitions(name, 1):
        for batch, _ in scan_resuming(conn, name, part, schema=schema, batch_rows=5000):
            yield batch


def _signatures_in(
    conn: Connector,
    name: str,
    schema: CollectionSchema,
    buckets: set[int],
    tolerance: float,
    transform: Transform | None = None,
) -> dict[str, _Seen]:
    builder = DigestBuilder(transform.target if transform else schema, tolerance=tolerance)
    wanted = np.zeros(BUCKETS, bool)
    wanted[sorted(buckets)] = True
    out: dict[str, _Seen] = {}
    for batch in _batches(conn, name, schema):
        rows = transform.apply(batch)[0] if transform else batch
        keep = wanted[id_bucket([id_text(v) for v in rows.column("id").to_pylist()])]
        if not keep.any():
            continue  # only the wanted buckets pay for content hashing
        sig = builder.signatures(rows.filter(pa.array(keep)))
        for i, rid in enumerate(sig.ids):
            if rid in out:
                out[rid].times += 1
            else:
                out[rid] = _Seen(sig.hashes[i], {k: int(g[i]) for k, g in sig.grid.items()})
    return out


def _typed(ids: list[str], schema: CollectionSchema) -> list[Any]:
    return [int(i) for i in ids] if schema.id_type is IdType.INT else ids


def vectors_differ(x: np.ndarray, y: np.ndarray, metric: Metric, tolerance: float) -> bool:
    """Whether two vectors differ by more than ``tolerance`` in any value (after
    normalising for cosine); NaN equals NaN and Inf equals Inf of the same sign."""
    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if a.shape != b.shape:
        return True
    finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
    if metric is Metric.COSINE and finite:  # a vector with NaN/Inf has no direction
        a = a / max(float(np.linalg.norm(a)), 1e-30)
        b = b / max(float(np.linalg.norm(b)), 1e-30)
    if not finite:
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if not same[~(np.isfinite(a) & np.isfinite(b))].all():
            return True
        both = np.isfinite(a) & np.isfinite(b)
        a, b = a[both], b[both]
    # 1e-12 absorbs float64 rounding of the normalisation, far below any float32 step.
    return bool(a.size) and float(np.max(np.abs(a - b))) > tolerance + 1e-12


def _changed_fields(
    a: dict[str, Any], b: dict[str, Any], sa: CollectionSchema, sb: CollectionSchema, tol: float
) -> list[str]:
    fields = []
    if a.get("document") != b.get("document"):
        fields.append("document")
    if a.get("namespace") != b.get("namespace"):
        fields.append("namespace")
    ma, mb = a["_meta"], b["_meta"]
    for key in sorted(set(ma) | set(mb)):
        va, vb = ma.get(key), mb.get(key)
        if type(va) is not type(vb) or (va != vb and not _close(va, vb)):
            fields.append(f"metadata.{key}")
    return fields + _changed_vectors(a, b, sa, tol)


def _changed_vectors(
    a: dict[str, Any], b: dict[str, Any], schema: CollectionSchema, tol: float
) -> list[str]:
    return [
        v.name
        for v in schema.vectors
        if v.name not in b or vectors_differ(a[v.name], b[v.name], v.metric, tol)
    ]


def _close(a: Any, b: Any) -> bool:
    # Same float at float32 precision: the digest's rule (Chroma returns some values 1 ULP off).
    return isinstance(a, float) and isinstance(b, float) and np.float32(a) == np.float32(b)


def _rows(batch: pa.RecordBatch, schema: CollectionSchema) -> dict[str, Any]:
    metas = metadata_rows(batch, schema)
    rows = batch.to_pylist()
    for v in schema.vectors:
        vecs = vectors_or_nan(batch.column(v.name))
        for row, vec in zip(rows, vecs, strict=True):
            row[v.name] = vec
    out: dict[str, Any] = {}
    for row, meta in zip(rows, metas, strict=True):
        row["_meta"] = meta
        out[id_text(row["id"])] = row
    return out


def _records(
    conn: Connector, name: str, schema: CollectionSchema, ids: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for start in range(0, len(ids), FETCH):
        batch = conn.fetch(name, _typed(ids[start : start + FETCH], schema), schema=schema)
        out.update(_rows(batch, schema))
    return out


def _mapped_records(
    conn: Connector, name: str, schema: CollectionSchema, ids: list[str], transform: Transform
) -> dict[str, Any]:
    """Records of ``ids`` (mapped ids) as the mapping makes them: a scan, since a mapped
    id need not be one the source can fetch by."""
    wanted = pa.array(ids, pa.string())
    out: dict[str, Any] = {}
    for batch in _batches(conn, name, schema):
        rows = transform.apply(batch)[0]
        keep = pc.is_in(pc.cast(rows.column("id"), pa.string()), value_set=wanted)
        if pc.any(keep).as_py():
            out.update(_rows(rows.filter(keep), transform.target))
    return out


def _settle(
    source: Connector,
    target: Connector,
    names: tuple[str, str],
    schemas: tuple[CollectionSchema, CollectionSchema],
    suspects: dict[str, tuple[bool, bool]],
    tol: float,
    transform: Transform | None,
    name_fields: bool,
) -> list[ChangedRecord]:
    """Which suspects really changed. ``suspects`` maps an id to (its content hash differs:
    certainly changed, a vector grid hash differs: a change or noise below the tolerance);
    the records are fetched when their vectors must be compared or their fields named."""
    (name, tname), (sa, sb) = names, schemas
    out: list[ChangedRecord] = []
    named = name_fields and transform is None
    look = sorted(rid for rid, (content, grid) in suspects.items() if grid or named)
    blind = sorted(set(suspects) - set(look))  # content differs; no fields to name
    out += [ChangedRecord(rid, ["(content hash)"]) for rid in blind]
    layout = transform.target if transform else sa
    mapped = _mapped_records(source, name, sa, look, transform) if transform and look else {}
    for start in range(0, len(look), FETCH):
        chunk = look[start : start + FETCH]
        left = mapped if transform else _records(source, name, sa, chunk)
        right = _records(target, tname, sb, chunk)
        for rid in chunk:
            # Both scans saw it: a fetch that no longer finds it names a changed record.
            if rid not in left or rid not in right:
                side = "source" if rid not in left else "target"
                out.append(ChangedRecord(rid, [f"(not found on the {side} again)"]))
                continue
            if named:
                fields = _changed_fields(left[rid], right[rid], sa, sb, tol)
            else:  # a mapped record's other fields were compared by their hash
                fields = _changed_vectors(left[rid], right[rid], layout, tol)
            if suspects[rid][0]:
                out.append(ChangedRecord(rid, fields or ["(content hash)"]))
            elif fields:  # else: the grid moved for noise within the tolerance
                out.append(ChangedRecord(rid, fields))
    return sorted(out, key=lambda c: c.id)


def diff_collections(
    source: Connector,
    target: Connector,
    name: str,
    *,
    target_name: str | None = None,
    digests: tuple[CollectionDigest, CollectionDigest] | None = None,
    transform: Transform | None = None,
    name_fields: bool = True,
) -> DiffResult:
    """Compare two collections record by record, streaming; with ``transform`` (the
    copy's mapping) the target is compared with what the mapping makes of the source.
    ``name_fields=False`` names only the vector fields of changed records (ids only).
    ``digests`` (pass 1, reused) count only when built with the engines' tolerance."""
    tname = target_name or name
    sa, sb = source.describe(name), target.describe(tname)
    tol = max(source.capabilities.vector_tolerance, target.capabilities.vector_tolerance)
    if digests is None or any(d.grid_step != tol for d in digests):
        # Digests without grid hashes at ``tol`` cannot see every change above it.
        with ThreadPoolExecutor(2) as pool:
            fa = pool.submit(
                collection_digest, source, name, schema=sa, transform=transform, tolerance=tol
            )
            fb = pool.submit(collection_digest, target, tname, schema=sb, tolerance=tol)
            digests = (fa.result(), fb.result())
    da, db = digests
    result = DiffResult(
        da.count, db.count, source_digest=da.content_hash, target_digest=db.content_hash
    )
    cmp = da.compare(db, tolerance=tol)
    buckets = {*cmp.differing_buckets, *cmp.unsettled_buckets}
    if not buckets:
        return result
    with ThreadPoolExecutor(2) as pool:
        fl = pool.submit(_signatures_in, source, name, sa, buckets, tol, transform)
        fr = pool.submit(_signatures_in, target, tname, sb, buckets, tol)
        left, right = fl.result(), fr.result()
    result.missing = sorted(set(left) - set(right))
    result.extra = sorted(set(right) - set(left))
    suspects: dict[str, tuple[bool, bool]] = {}  # id -> (content differs, grid differs)
    for rid in sorted(set(left) | set(right)):
        a, b = left.get(rid), right.get(rid)
        if (a and a.times > 1) or (b and b.times > 1):
            # Which of its records is "the" record is unknown: it is named as a duplicate.
            result.duplicates.append(DuplicateId(rid, a.times if a else 0, b.times if b else 0))
        elif a and b and (a.hash != b.hash or a.grid != b.grid):
            suspects[rid] = (a.hash != b.hash, a.grid != b.grid)
    if suspects:
        result.changed = _settle(
            source, target, (name, tname), (sa, sb), suspects, tol, transform, name_fields
        )
    return result


def still_differing(
    source: Connector,
    target: Connector,
    name: str,
    ids: list[str],
    *,
    target_name: str | None = None,
) -> dict[str, list[str]]:
    """Of ``ids``, those whose records differ now (fetched from both sides), with what
    differs (``(missing)``/``(extra)`` when on one side only); equal ids are left out."""
    return _differing_now(source, target, name, ids, target_name or name)[0]


def _differing_now(
    source: Connector, target: Connector, name: str, ids: list[str], tname: str
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """``still_differing``'s answer, with the source's records it read."""
    sa, sb = source.describe(name), target.describe(tname)
    tol = max(source.capabilities.vector_tolerance, target.capabilities.vector_tolerance)
    ra, rb = _records(source, name, sa, ids), _records(target, tname, sb, ids)
    out: dict[str, list[str]] = {}
    for rid in ids:
        if rid in ra and rid in rb:
            fields = _changed_fields(ra[rid], rb[rid], sa, sb, tol)
            if fields:
                out[rid] = fields
        elif rid in ra or rid in rb:
            out[rid] = ["(extra)"] if rid in rb else ["(missing)"]
    return out, ra


def persistent_differences(
    source: Connector,
    target: Connector,
    name: str,
    ids: list[str],
    *,
    target_name: str | None = None,
    rounds: int = 3,
    pause: float = 0.5,
) -> dict[str, list[str]]:
    """Of ``ids``, those that differ in each of ``rounds`` re-reads by id, ``pause``
    seconds apart (with what differs at the last), while the source holds them unchanged:
    under live writes a scan sees ids in flight, written on one side and not yet on the
    other, and an id the application keeps rewriting is in flight at every read (its
    writes reach the other side through the outbox, whose own gate judges that)."""
    schema = source.describe(name)
    tol = source.capabilities.vector_tolerance
    left = list(ids)
    fields: dict[str, list[str]] = {}
    before: dict[str, Any] | None = None
    for _ in range(rounds):
        if not left:
            break
        time.sleep(pause)
        fields, now = _differing_now(source, target, name, left, target_name or name)
        left = [i for i in left if i in fields]
        if before is not None:
            left = [i for i in left if not _moved(before.get(i), now.get(i), schema, tol)]
        before = now
    return {i: fields[i] for i in left}


def _moved(a: Any, b: Any, schema: CollectionSchema, tol: float) -> bool:
    """Whether a source record changed between two reads (written, added or deleted)."""
    if a is None or b is None:
        return (a is None) != (b is None)
    return bool(_changed_fields(a, b, schema, schema, tol))


def settle_in_flight(
    result: DiffResult,
    source: Connector,
    target: Connector,
    name: str,
    *,
    target_name: str | None = None,
) -> DiffResult:
    """``result`` keeping only the ids that still differ when read again by id (see
    ``persistent_differences``); the others are listed as ``in_flight``."""
    named = [*result.missing, *result.extra, *(c.id for c in result.changed)]
    kept = persistent_differences(source, target, name, named, target_name=target_name)
    return DiffResult(
        result.source_count,
        result.target_count,
        [i for i in result.missing if i in kept],
        [i for i in result.extra if i in kept],
        [ChangedRecord(i, kept[i]) for i in (c.id for c in result.changed) if i in kept],
        result.source_digest,
        result.target_digest,
        result.duplicates,
        in_flight=sorted(set(named) - set(kept)),
    )
