"""Which ids differ between source and target, while the application keeps writing.

``verify.diff.diff_collections`` also names the changed fields, by fetching both
versions of each changed record. Under live writes a record can vanish between its scan
and that fetch, and Chroma's offset scans fail outright while the collection is written.
The cutover needs only the ids: digests first (bucketed, order-independent), then a scan
of the differing buckets only, and the whole thing is taken again when writes get in its
way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import ConnectorError
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.verify.digest import DigestBuilder, collection_digest, vector_allowance

Signatures = dict[str, tuple[int, dict[str, np.ndarray]]]


@dataclass
class Drift:
    """Ids missing from the target, extra on it, or with different content."""

    source_count: int
    target_count: int
    missing: list[Any] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)
    changed: list[Any] = field(default_factory=list)

    @property
    def ids(self) -> list[Any]:
        """Every differing id (typed as the collection's ids)."""
        return [*self.missing, *self.extra, *self.changed]

    @property
    def size(self) -> int:
        """How many ids differ."""
        return len(self.missing) + len(self.extra) + len(self.changed)


def _signatures(
    conn: Connector, name: str, schema: CollectionSchema, buckets: set[int]
) -> Signatures:
    builder = DigestBuilder(schema)
    out: Signatures = {}
    for part in conn.partitions(name, 1):
        for batch, _ in conn.scan(name, part, schema=schema, batch_rows=5000):
            sig = builder.signatures(batch)
            for i in np.flatnonzero(np.isin(sig.buckets, list(buckets))):
                out[sig.ids[i]] = (sig.hashes[i], {k: v[i] for k, v in sig.projections.items()})
    return out


def _drift_once(source: Connector, target: Connector, name: str, target_name: str) -> Drift:
    sa, sb = source.describe(name), target.describe(target_name)
    da, db = (
        collection_digest(source, name, schema=sa),
        collection_digest(target, target_name, schema=sb),
    )
    tol = max(source.capabilities.vector_tolerance, target.capabilities.vector_tolerance)
    cmp = da.compare(db, tolerance=tol)
    out = Drift(da.count, db.count)
    if cmp.equal:
        return out
    buckets = set(cmp.differing_buckets)
    left, right = (
        _signatures(source, name, sa, buckets),
        _signatures(target, target_name, sb, buckets),
    )
    typed = (lambda i: int(i)) if sa.id_type is IdType.INT else (lambda i: i)
    out.missing = [typed(i) for i in sorted(set(left) - set(right))]
    out.extra = [typed(i) for i in sorted(set(right) - set(left))]
    dims = {v.name: v.dim for v in sa.vectors}
    for rid in sorted(set(left) & set(right)):
        (ha, pa_), (hb, pb_) = left[rid], right[rid]
        moved = any(
            float(np.max(np.abs(pa_[k] - pb_.get(k, 0)))) > vector_allowance(tol, dims[k])
            for k in pa_
            if k in dims
        )
        if ha != hb or moved:
            out.changed.append(typed(rid))
    return out


def live_drift(
    source: Connector,
    target: Connector,
    name: str,
    target_name: str | None = None,
    *,
    attempts: int = 5,
) -> Drift:
    """Differing ids between the two sides; retried when concurrent writes break a scan."""
    for attempt in range(attempts):
        try:
            return _drift_once(source, target, name, target_name or name)
        except ConnectorError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
