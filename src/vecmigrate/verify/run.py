"""``verify``: data parity and retrieval parity of a migration, gated by thresholds."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from vecmigrate import __version__
from vecmigrate.connectors.base import Connector
from vecmigrate.errors import SchemaMismatchError
from vecmigrate.filters import NAMESPACE_KEY
from vecmigrate.model import CollectionSchema
from vecmigrate.verify.diff import diff_collections
from vecmigrate.verify.gates import VerifyConfig, evaluate_gates
from vecmigrate.verify.groundtruth import GroundTruth
from vecmigrate.verify.namespaces import (
    is_namespace_group,
    namespace_queries,
    namespace_support,
)
from vecmigrate.verify.recall import (
    QuerySet,
    ReturnedFacts,
    SystemRun,
    bootstrap_ci,
    expected_hits,
    filter_queries,
    filter_violations,
    ground_truth,
    latency_summary,
    load_user_queries,
    overlap_at_k,
    rank_biased_overlap,
    recall_at_k,
    returned_facts,
    run_queries,
    sample_queries,
)

REPORT_VERSION = 1


def _system_metrics(
    run: SystemRun,
    truth: GroundTruth,
    facts: ReturnedFacts,
    queries: QuerySet,
    ks: list[int],
    k: int,
) -> dict[str, Any]:
    groups = np.asarray(queries.groups)
    expected = expected_hits(run, queries.expected, k)
    per_k = {kk: recall_at_k(run, truth, facts.scores, kk) for kk in ks}
    # Empty is only wrong when the exact answer is not empty (a filter may match nothing).
    empty = np.asarray(
        [not got and bool(exact) for got, exact in zip(run.ids, truth.ids, strict=True)]
    )
    violations = filter_violations(run, facts)
    # Violations of a namespace group's filter are cross-namespace leaks, counted apart.
    in_ns = np.asarray([is_namespace_group(g) for g in queries.groups], bool)
    out = {}
    for group in ["all", *sorted(set(groups))]:
        sel = np.ones(len(groups), bool) if group == "all" else groups == group
        entry: dict[str, Any] = {f"recall@{kk}": float(v[sel].mean()) for kk, v in per_k.items()}
        lo, hi = bootstrap_ci(per_k[k][sel])
        entry[f"recall@{k}_ci95"] = [lo, hi]
        entry["empty_rate"] = float(empty[sel].mean())
        entry["filter_violations"] = int(violations[sel & ~in_ns].sum())
        entry["namespace_leaks"] = int(violations[sel & in_ns].sum())
        if not np.isnan(expected[sel]).all():
            entry[f"expected_found@{k}"] = float(np.nanmean(expected[sel]))
        entry["latency"] = latency_summary(run.latencies[sel])
        entry["queries"] = int(sel.sum())
        out[group] = entry
    return out


def _namespace_groups(
    source: Connector,
    target: Connector,
    name: str,
    sa: CollectionSchema,
    sb: CollectionSchema,
    config: VerifyConfig,
) -> tuple[QuerySet | None, dict[str, Any]]:
    """Per-namespace query groups and what they cover, or why they could not run
    (nothing when the source has no namespaces or the groups are turned off)."""
    if sa.namespaces is None or not config.namespace_queries:
        return None, {}
    why = namespace_support(source, target, sa, sb)
    if why is not None:
        return None, {"skipped": why}
    return namespace_queries(
        source, name, sa, config.namespace_queries, config.max_namespaces, config.seed
    )


def _leaks(
    runs: dict[str, SystemRun], facts: ReturnedFacts, queries: QuerySet, limit: int = 50
) -> list[dict[str, Any]]:
    """The first ``limit`` returned ids that live in another namespace than the query's."""
    out: list[dict[str, Any]] = []
    for qi, (group, flt) in enumerate(zip(queries.groups, queries.filters, strict=True)):
        if not is_namespace_group(group) or not flt:
            continue
        for side, run in runs.items():
            for rid in run.ids[qi]:
                if rid in facts.failing[qi] and len(out) < limit:
                    out.append({"system": side, "query_namespace": flt[NAMESPACE_KEY], "id": rid})
    return out


def verify_migration(
    source: Connector,
    target: Connector,
    name: str,
    *,
    target_name: str | None = None,
    config: VerifyConfig | None = None,
) -> dict[str, Any]:
    """Run every check and return the report (stable JSON schema, ``report_version``)."""
    config = config or VerifyConfig()
    tname = target_name or name
    sa, sb = source.describe(name), target.describe(tname)
    if sa.vector.dim != sb.vector.dim or sa.vector.metric != sb.vector.metric:
        raise SchemaMismatchError(
            f"source {sa.vector.dim}-d {sa.vector.metric.value} vs target "
            f"{sb.vector.dim}-d {sb.vector.metric.value}: recall is not comparable"
        )
    k = config.k
    ks = sorted({*config.ks, k})
    parity = diff_collections(source, target, name, target_name=tname)
    queries, sample_meta = sample_queries(source, name, sa, config.queries, config.seed)
    if config.filter_queries:
        queries = queries + filter_queries(
            sa, sample_meta, queries.vectors, config.filter_queries, config.seed
        )
    if config.user_queries:
        queries = queries + load_user_queries(config.user_queries, sa.vector.dim)
    ns_queries, namespaces = _namespace_groups(source, target, name, sa, sb, config)
    if ns_queries is not None:
        queries = queries + ns_queries
    truth = ground_truth(source, name, sa, queries, max(ks))
    runs = {
        "source": run_queries(source, name, queries, max(ks)),
        "target": run_queries(target, tname, queries, max(ks)),
    }
    facts = returned_facts(source, name, sa, queries, list(runs.values()))
    groups = np.asarray(queries.groups)
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "tool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"uri": str(source.uri), "engine": source.engine, "collection": name},
        "target": {"uri": str(target.uri), "engine": target.engine, "collection": tname},
        "k": k,
        "ks": ks,
        "queries": {
            "total": len(groups),
            "groups": {g: int((groups == g).sum()) for g in sorted(set(groups))},
            "seed": config.seed,
        },
        "parity": parity.to_json(),
        "systems": {
            side: _system_metrics(run, truth, facts, queries, ks, k) for side, run in runs.items()
        },
        "overlap": {
            f"overlap@{kk}": float(overlap_at_k(runs["source"], runs["target"], kk).mean())
            for kk in ks
        },
        "rank_biased_overlap": float(
            np.mean(
                [
                    rank_biased_overlap(a, b)
                    for a, b in zip(runs["source"].ids, runs["target"].ids, strict=True)
                ]
            )
        ),
        "latency_ms": {
            side: (run.latencies * 1000).round(4).tolist() for side, run in runs.items()
        },
    }
    if namespaces:
        if "queried" in namespaces:
            namespaces["leaks"] = _leaks(runs, facts, queries)
        report["namespaces"] = namespaces
    report["gates"] = evaluate_gates(config.gates, report)
    report["passed"] = all(g["passed"] for g in report["gates"])
    return report
