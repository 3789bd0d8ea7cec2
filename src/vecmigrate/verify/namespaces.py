"""Per-namespace (tenant) retrieval checks: one query group per namespace whose queries
carry a ``$namespace`` filter, so each system must answer within that namespace only.

A returned id whose namespace in the source differs from the query's is a *leak*: the
query groups' filter violations are counted as ``namespace_leaks`` (gate
``max_namespace_leaks``), because one tenant seeing another's records is a failure of
its own, not a recall loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecmigrate.connectors.base import Connector
from vecmigrate.filters import NAMESPACE_KEY
from vecmigrate.model import CollectionSchema
from vecmigrate.records import vectors_to_numpy
from vecmigrate.retry import scan_resuming
from vecmigrate.verify.recall import QuerySet

GROUP_PREFIX = "namespace: "


def is_namespace_group(group: str) -> bool:
    """Whether a query group is a per-namespace group."""
    return group.startswith(GROUP_PREFIX)


def namespace_support(
    source: Connector, target: Connector, sa: CollectionSchema, sb: CollectionSchema
) -> str | None:
    """Why per-namespace groups cannot run on this pair (None: they can)."""
    if sa.namespaces is None:
        return "the source has no namespaces"
    if sb.namespaces is None:
        return "the target has no namespaces (mapped to a field or dropped)"
    for side, conn in (("source", source), ("target", target)):
        if NAMESPACE_KEY not in conn.capabilities.filter_ops:
            return f"the {side} ({conn.engine}) cannot search within one namespace yet"
    return None


def namespace_queries(
    conn: Connector,
    name: str,
    schema: CollectionSchema,
    per_namespace: int,
    max_namespaces: int,
    seed: int,
) -> tuple[QuerySet, dict[str, Any]]:
    """Up to ``per_namespace`` corpus vectors reservoir-sampled from each of the first
    ``max_namespaces`` namespaces (by name), each query filtered to its own namespace;
    plus what was covered (records without a namespace are not queried)."""
    rng = np.random.default_rng(seed)
    pools: dict[str, list[np.ndarray]] = {}
    seen: dict[str, int] = {}
    for part in conn.partitions(name, 1):
        for batch, _ in scan_resuming(conn, name, part, schema=schema, batch_rows=5000):
            vectors = vectors_to_numpy(batch.column(schema.vector.name))
            for row, ns in enumerate(batch.column("namespace").to_pylist()):
                if ns is None:
                    continue
                seen[ns] = seen.get(ns, 0) + 1
                pool = pools.setdefault(ns, [])
                slot = len(pool) if len(pool) < per_namespace else int(rng.integers(seen[ns]))
                if slot < per_namespace:
                    pool[slot : slot + 1] = [vectors[row].copy()]
    chosen = sorted(pools)[:max_namespaces]
    out = QuerySet(np.zeros((0, schema.vector.dim), np.float32), [], [])
    for ns in chosen:
        group = f"{GROUP_PREFIX}{ns}"
        n = len(pools[ns])
        out = out + QuerySet(np.stack(pools[ns]), [group] * n, [{NAMESPACE_KEY: ns}] * n)
    coverage = {
        "namespaces": len(seen),
        "queried": chosen,
        "records_per_namespace": {ns: seen[ns] for ns in chosen},
    }
    return out, coverage
