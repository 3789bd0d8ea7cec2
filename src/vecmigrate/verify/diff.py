"""Data parity down to the record: which ids are missing, extra or changed, and which field.

Pass 1 digests both sides (bucketed, order-independent). Only when buckets differ does
pass 2 re-scan both sides keeping per-record signatures of the differing buckets alone, so
memory grows with the size of the difference, not of the collection. Changed records are
then fetched from both sides to name the fields that differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector
from vecmigrate.model import CollectionSchema, IdType, Metric
from vecmigrate.records import metadata_rows, vectors_to_numpy
from vecmigrate.verify.digest import (
    CollectionDigest,
    DigestBuilder,
    Transform,
    collection_digest,
    vector_allowance,
)


@dataclass
class ChangedRecord:
    """An id present on both sides whose content differs."""

    id: str
    fields: list[str]


@dataclass
class DiffResult:
    """Missing (in source only), extra (in target only) and changed ids."""

    source_count: int
    target_count: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[ChangedRecord] = field(default_factory=list)
    source_digest: str = ""
    target_digest: str = ""

    @property
    def equal(self) -> bool:
        """Both sides hold the same records."""
        return not (self.missing or self.extra or self.changed)

    def to_table(self) -> pa.Table:
        """One row per differing id: id, kind (missing/extra/changed), changed fields."""
        ids = [*self.missing, *self.extra, *(c.id for c in self.changed)]
        kinds = ["missing"] * len(self.missing) + ["extra"] * len(self.extra)
        kinds += ["changed"] * len(self.changed)
        fields: list[str | None] = [None] * (len(self.missing) + len(self.extra))
        fields += [",".join(c.fields) for c in self.changed]
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
        }


def _batches(conn: Connector, name: str, schema: CollectionSchema) -> Iterator[pa.RecordBatch]:
    for part in conn.partitions(name, 1):
        for batch, _ in conn.scan(name, part, schema=schema, batch_rows=5000):
            yield batch


def _signatures_in(
    conn: Connector,
    name: str,
    schema: CollectionSchema,
    buckets: set[int],
    transform: Transform | None = None,
) -> dict[str, tuple[int, dict[str, np.ndarray]]]:
    builder = DigestBuilder(transform.target if transform else schema)
    out: dict[str, tuple[int, dict[str, np.ndarray]]] = {}
    for batch in _batches(conn, name, schema):
        sig = builder.signatures(transform.apply(batch)[0] if transform else batch)
        for i in np.flatnonzero(np.isin(sig.buckets, list(buckets))):
            out[sig.ids[i]] = (sig.hashes[i], {k: v[i] for k, v in sig.projections.items()})
    return out


def _typed(ids: list[str], schema: CollectionSchema) -> list[Any]:
    return [int(i) for i in ids] if schema.id_type is IdType.INT else ids


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
    for v in sa.vectors:
        x, y = np.asarray(a[v.name], np.float64), np.asarray(b.get(v.name, []), np.float64)
        if v.metric is Metric.COSINE:
            x = x / max(float(np.linalg.norm(x)), 1e-30)
            y = y / max(float(np.linalg.norm(y)), 1e-30)
        if x.shape != y.shape or float(np.max(np.abs(x - y))) > tol + 1e-9:
            fields.append(v.name)
    return fields


def _close(a: Any, b: Any) -> bool:
    # Same float at float32 precision: the digest's rule (Chroma returns some values 1 ULP off).
    return isinstance(a, float) and isinstance(b, float) and np.float32(a) == np.float32(b)


def _records(
    conn: Connector, name: str, schema: CollectionSchema, ids: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for start in range(0, len(ids), 500):
        batch = conn.fetch(name, _typed(ids[start : start + 500], schema), schema=schema)
        metas = metadata_rows(batch, schema)
        rows = batch.to_pylist()
        for v in schema.vectors:
            vecs = vectors_to_numpy(batch.column(v.name))
            for row, vec in zip(rows, vecs, strict=True):
                row[v.name] = vec
        for row, meta in zip(rows, metas, strict=True):
            row["_meta"] = meta
            out[str(row["id"])] = row
    return out


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
    ``name_fields=False`` skips fetching changed records to name their fields (ids only)."""
    tname = target_name or name
    sa, sb = source.describe(name), target.describe(tname)
    tol = max(source.capabilities.vector_tolerance, target.capabilities.vector_tolerance)
    if digests is None:
        with ThreadPoolExecutor(2) as pool:
            fa = pool.submit(collection_digest, source, name, schema=sa, transform=transform)
            fb = pool.submit(collection_digest, target, tname, schema=sb)
            digests = (fa.result(), fb.result())
    da, db = digests
    result = DiffResult(
        da.count, db.count, source_digest=da.content_hash, target_digest=db.content_hash
    )
    cmp = da.compare(db, tolerance=tol)
    if cmp.equal:
        return result
    buckets = set(cmp.differing_buckets)
    left = _signatures_in(source, name, sa, buckets, transform)
    right = _signatures_in(target, tname, sb, buckets)
    result.missing = sorted(set(left) - set(right))
    result.extra = sorted(set(right) - set(left))
    suspects: list[tuple[str, list[str]]] = []
    for rid in sorted(set(left) & set(right)):
        (ha, pa_), (hb, pb_) = left[rid], right[rid]
        dims = {**da.schema_dims, **db.schema_dims}
        moved = [
            k
            for k in sorted(set(pa_) | set(pb_))
            if float(np.max(np.abs(pa_.get(k, 0) - pb_.get(k, 0)))) > vector_allowance(tol, dims[k])
        ]
        if ha != hb or moved:
            suspects.append((rid, moved))
    if transform is not None or not name_fields:  # name what the signatures show
        result.changed = [
            ChangedRecord(rid, moved or ["(content hash)"]) for rid, moved in suspects
        ]
        return result
    ids = [rid for rid, _ in suspects]
    ra, rb = _records(source, name, sa, ids), _records(target, tname, sb, ids)
    for rid in ids:
        # Written between the scan and the fetch (a live source): report what is there now.
        if rid not in ra or rid not in rb:
            if rid in rb:
                result.extra.append(rid)
            elif rid in ra:
                result.missing.append(rid)
            continue
        fields = _changed_fields(ra[rid], rb[rid], sa, sb, tol)
        result.changed.append(ChangedRecord(rid, fields or ["(content hash)"]))
    return result


def changed_fields(
    source: Connector,
    target: Connector,
    name: str,
    ids: list[str],
    *,
    target_name: str | None = None,
) -> dict[str, list[str]]:
    """The fields that differ now for a few ids (fetched from both sides); an id missing
    on one side by now maps to ``["(missing)"]`` or ``["(extra)"]``."""
    tname = target_name or name
    sa, sb = source.describe(name), target.describe(tname)
    tol = max(source.capabilities.vector_tolerance, target.capabilities.vector_tolerance)
    ra, rb = _records(source, name, sa, ids), _records(target, tname, sb, ids)
    out: dict[str, list[str]] = {}
    for rid in ids:
        if rid not in ra or rid not in rb:
            out[rid] = ["(extra)"] if rid in rb else ["(missing)"] if rid in ra else []
            continue
        out[rid] = _changed_fields(ra[rid], rb[rid], sa, sb, tol) or ["(content hash)"]
    return out
