"""``verify``: data parity and retrieval parity of a migration, gated by thresholds.

Besides recall against exact ground truth, sampled records are searched by their own
(source) vector on both systems: an index holding another vector than the stored record
(a copy changed behind the connector's back) loses that record, which a recall average
hides. Each side's report names the metric and index it actually serves with.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import numpy as np

from vecmigrate import __version__
from vecmigrate.connectors.base import Connector
from vecmigrate.errors import ConfigError, SchemaMismatchError
from vecmigrate.exact import GroundTruth, prepare_queries, similarity
from vecmigrate.filters import NAMESPACE_KEY
from vecmigrate.mapping import MappingSpec
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.pipeline.selection import select_reading
from vecmigrate.records import vectors_to_numpy
from vecmigrate.verify.diff import diff_collections, settle_in_flight
from vecmigrate.verify.gates import VerifyConfig, evaluate_gates
from vecmigrate.verify.judged import judge_source
from vecmigrate.verify.live import rejudge_violations, rewritten_since_sampled
from vecmigrate.verify.namespaces import (
    is_namespace_group,
    namespace_queries,
    namespace_support,
)
from vecmigrate.verify.recall import (
    TIE_EPS,
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
from vecmigrate.verify.report import describe_serving

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


def serving(schema: CollectionSchema) -> dict[str, Any]:
    """The default vector field as the engine serves it: dim, metric, index, and the
    connector's notes on where the metric came from and which index answers."""
    v = schema.vector
    out: dict[str, Any] = {
        "vector": v.name,
        "dim": v.dim,
        "metric": v.metric.value,
        "index": v.index.kind if v.index else None,
    }
    for key, label in (("index", "served_index"), ("metric", "metric_note")):
        note = schema.engine_settings.get(f"{v.name}.{key}")
        if note:
            out[label] = str(note)
    return out


def self_retrieval(
    source: Connector,
    target: Connector,
    name: str,
    tname: str,
    schema: CollectionSchema,
    config: VerifyConfig,
    sample: tuple[list[Any], np.ndarray],
    absent: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Sampled source records (``sample``: ids and vectors of the query sample, the first
    ``config.self_queries`` of them) searched by their own vector on both systems; a
    record not in a system's top ``k`` is a miss unless ``k`` records at least as close
    came back (ties and, for dot, larger vectors). ``regressions``: misses of the target
    only. Records in ``absent`` (missing from the target: the parity gate counts them)
    are not asked of the target."""
    k = config.k
    ids, vectors = sample[0][: config.self_queries], sample[1][: config.self_queries]
    queries = QuerySet(vectors, ["self"] * len(ids))
    runs = {
        "source": run_queries(source, name, queries, k),
        "target": run_queries(target, tname, queries, k),
    }
    # Under live writes a sampled record rewritten since is not asked for by a stale vector.
    rewritten = (
        rewritten_since_sampled(
            source, name, schema, list(ids), vectors, source.capabilities.vector_tolerance
        )
        if config.live
        else set()
    )
    metric = schema.vector.metric
    q = prepare_queries(vectors, metric)
    own = [float(similarity(q[i : i + 1], vectors[i : i + 1], metric)[0, 0]) for i in range(len(q))]
    missed: dict[str, list[str]] = {}
    for side, run in runs.items():
        missed[side] = []
        for qi, got in enumerate(run.ids):
            if str(ids[qi]) in got[:k] or str(ids[qi]) in rewritten:
                continue
            if side == "target" and str(ids[qi]) in absent:
                continue
            if len(got) >= k and all(
                s >= own[qi] - TIE_EPS for s in _exact_scores(source, name, schema, q[qi], got[:k])
            ):
                continue
            missed[side].append(str(ids[qi]))
    regressions = [i for i in missed["target"] if i not in set(missed["source"])]
    not_there = sum(str(i) in absent and str(i) not in rewritten for i in ids)
    asked = {"source": len(ids) - len(rewritten), "target": len(ids) - len(rewritten) - not_there}
    return {
        "k": k,
        "sampled": len(ids),
        "missing_from_target": not_there,
        "systems": {
            side: {
                "asked": asked[side],
                "found": asked[side] - len(m),
                "rate": (asked[side] - len(m)) / asked[side] if asked[side] else 1.0,
                "misses": m[:50],
            }
            for side, m in missed.items()
        },
        "regressions": regressions[:50],
        "regression_count": len(regressions),
        **({"rewritten": len(rewritten)} if config.live else {}),
    }


def _exact_scores(
    conn: Connector, name: str, schema: CollectionSchema, q: np.ndarray, got: list[str]
) -> list[float]:
    """Exact similarity of ``q`` (prepared) to each returned id's source record
    (-inf for an id the source does not hold)."""
    typed: list[Any] = [int(i) for i in got] if schema.id_type is IdType.INT else list(got)
    batch = conn.fetch(name, typed, schema=schema)
    sims = similarity(
        q[None, :], vectors_to_numpy(batch.column(schema.vector.name)), schema.vector.metric
    )[0]
    found = dict(zip(map(str, batch.column("id").to_pylist()), map(float, sims), strict=True))
    return [found.get(i, -np.inf) for i in got]


def _queries_and_truth(
    source: Connector,
    target: Connector,
    name: str,
    sa: CollectionSchema,
    sb: CollectionSchema,
    config: VerifyConfig,
    k: int,
) -> tuple[QuerySet, tuple[list[Any], np.ndarray], GroundTruth, dict[str, Any]]:
    """The query set (sampled corpus records, generated filter groups, the user's queries,
    per-namespace groups), the sampled records (ids and vectors, for self-retrieval), the
    exact top ``k`` of every query over the source, and what the namespace groups cover."""
    queries, sample_meta, sample_ids = sample_queries(source, name, sa, config.queries, config.seed)
    sample = (sample_ids, queries.vectors)  # the corpus records, before other query groups
    if config.filter_queries:
        # Filters on fields both sides have, alike, and can filter on: one the target lacks
        # (a copy mapped it away or renamed it) is no question to ask it; parity reports
        # the difference.
        types = {m.name: m.type for m in sb.metadata}
        stored_only = source.unfilterable(sa) | target.unfilterable(sb)
        shared = tuple(
            m for m in sa.metadata if types.get(m.name) == m.type and m.name not in stored_only
        )
        queries = queries + filter_queries(
            sa.replace(metadata=shared), sample_meta, queries.vectors, config.filter_queries,
            config.seed,
        )  # fmt: skip
    if config.user_queries:
        queries = queries + load_user_queries(config.user_queries, sa.vector.dim)
    ns_queries, namespaces = _namespace_groups(source, target, name, sa, sb, config)
    if ns_queries is not None:
        queries = queries + ns_queries
    return queries, sample, ground_truth(source, name, sa, queries, k), namespaces


def verify_migration(
    source: Connector,
    target: Connector,
    name: str,
    *,
    target_name: str | None = None,
    config: VerifyConfig | None = None,
    spec: MappingSpec | None = None,
) -> dict[str, Any]:
    """Run every check and return the report (stable JSON schema, ``report_version``);
    with ``spec`` (the copy's mapping) the target is judged against what it made of the
    source (``verify.judged``)."""
    config = config or VerifyConfig()
    tname = target_name or name
    source, _ = select_reading(source, name, None, spec)  # as the copy read it
    judged = judge_source(source, target, name, tname, spec)
    if config.live and judged.transform is not None:
        raise ConfigError(
            f"{name!r}: verify --live reads changed records again as they are, not through "
            "a mapping that changes them",
            hint="verify once the application's writes have stopped, or without --live",
        )
    sa, sb = judged.schema, target.describe(tname)
    serve = {"source": serving(sa), "target": serving(sb)}
    serve["source"]["metric"] = judged.served.value
    if judged.note:
        serve["source"]["metric_note"] = judged.note
    if sa.vector.dim != sb.vector.dim or judged.served != sb.vector.metric:
        raise SchemaMismatchError(
            f"source serves {describe_serving(serve['source'])}; target serves "
            f"{describe_serving(serve['target'])}: recall is not comparable",
            hint="an index built with another metric than the data was copied for is "
            "rebuilt by copying again (--if-exists replace)",
        )
    k = config.k
    ks = sorted({*config.ks, k})
    # Data parity (both sides digested, concurrently) runs beside the query set and the
    # exact ground truth: numpy and BLAS release the GIL, so the scans overlap.
    with ThreadPoolExecutor(1) as pool:
        parity_run = pool.submit(
            diff_collections, source, target, name, target_name=tname, transform=judged.transform
        )
        queries, sample, truth, namespaces = _queries_and_truth(
            source, target, name, sa, sb, config, max(ks)
        )
        parity = parity_run.result()
    if config.live:
        parity = settle_in_flight(parity, source, target, name, target_name=tname)
    runs = {
        "source": run_queries(source, name, queries, max(ks)),
        "target": run_queries(target, tname, queries, max(ks)),
    }
    facts = returned_facts(source, name, sa, queries, list(runs.values()))
    asked_again = 0
    if config.live:
        sides = {"source": (source, name), "target": (target, tname)}
        asked_again = rejudge_violations(sides, sa, queries, runs, facts, max(ks))
    groups = np.asarray(queries.groups)
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "tool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"uri": str(source.uri), "engine": source.engine, "collection": name},
        "target": {"uri": str(target.uri), "engine": target.engine, "collection": tname},
        "serving": serve,
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
    if config.self_queries:
        absent = frozenset(parity.missing)
        report["self_retrieval"] = self_retrieval(
            source, target, name, tname, sa, config, sample, absent
        )
    if config.live:
        report["live"] = {
            "in_flight_ids": len(parity.in_flight or []),
            "queries_asked_again": asked_again,
            "self_rewritten": report.get("self_retrieval", {}).get("rewritten", 0),
        }
    if namespaces:
        if "queried" in namespaces:
            namespaces["leaks"] = _leaks(runs, facts, queries)
        report["namespaces"] = namespaces
    report["gates"] = evaluate_gates(config.gates, report)
    report["passed"] = all(g["passed"] for g in report["gates"])
    return report
