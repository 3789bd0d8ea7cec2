"""Gates of ``cutover advance``: a phase only moves forward when the evidence says so.

* ``data``: the target holds the source's data - ``diff_collections`` finds at most
  ``max_diff`` missing + extra + changed ids (writes in flight show up as a few);
* ``outbox``: caught up — at most ``max_outbox`` secondary writes pending at one of 6
  reads 0.5 s apart, or any number while the oldest never waits more than
  ``max_outbox_lag`` seconds across them (under live writes the outbox is rarely empty:
  it is replayed as fast as it is written; an entry nobody replays ages past the lag) —
  none older than ``max_outbox_age``, no dead letters;
* ``verify``: the latest ``vecmigrate verify`` report.json passed (when a path is given);
* ``shadow``: in a shadowing phase, at least ``min_shadow_reads`` comparisons were
  recorded in this phase with mean overlap@k >= ``min_overlap`` and at most
  ``max_violations`` filter violations.

Rollback has no gates: it must always be possible (until target-only).
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vecmigrate.connectors.base import Connector
from vecmigrate.connectors.identity import storage_identity
from vecmigrate.errors import ConfigError, VecmigrateError
from vecmigrate.live.drift import live_drift
from vecmigrate.live.phases import Phase, PhaseState, next_state, rollback_state
from vecmigrate.live.shadow_recall import shadow_recall
from vecmigrate.live.state import PhaseEvent, StateStore

GATE_NAMES = ("data", "outbox", "verify", "shadow")
OUTBOX_READS, OUTBOX_PAUSE = 6, 0.5  # the outbox gate's reads of the backlog, seconds apart
OUTBOX_SCAN = 1000  # outbox entries per side the data gate reads for ids in flight


class GateFailedError(VecmigrateError):
    """``advance`` refused: at least one gate failed (the results say which and why)."""

    def __init__(self, message: str, results: list[GateResult]) -> None:
        super().__init__(message)
        self.results = results


@dataclass
class GateResult:
    """One gate's verdict with the numbers behind it."""

    gate: str
    passed: bool
    detail: str
    skipped: bool = False
    actual: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON form (stored in the audit event)."""
        return asdict(self)


@dataclass
class GateConfig:
    """Thresholds of the gates (each one a ``cutover advance`` flag)."""

    max_diff: int = 0
    max_outbox: int = 0
    max_outbox_age: float = 30.0
    # Under live writes the outbox is rarely empty: a backlog whose oldest write waits no
    # longer than this is being replayed as fast as it is written (caught up).
    max_outbox_lag: float = 2.0
    min_overlap: float = 0.9
    min_shadow_reads: int = 20
    max_violations: int = 0
    verify_report: Path | None = None
    # A verify report older than this judged data that may have been reloaded since.
    max_report_age: float = 900.0
    # Shadow reads that failed or timed out, as a share of all shadow reads.
    max_shadow_errors: float = 0.01
    # With SOURCE given, the target's recall@k on the sampled shadow queries may be this
    # much below the source's (against exact ground truth); overlap is then a diagnostic.
    max_recall_drop: float = 0.02
    skip: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.skip) - set(GATE_NAMES)
        if unknown:
            raise ConfigError(f"unknown gate(s) {sorted(unknown)}", hint=f"gates: {GATE_NAMES}")


def actor_name() -> str:
    """``user@host`` of whoever runs the command (recorded in the audit event)."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def queued_ids(state: StateStore, collection: str, limit: int = OUTBOX_SCAN) -> set[str]:
    """Ids with a write waiting in the outbox for either side (the oldest ``limit``
    entries per side; a longer backlog fails the outbox gate on its own)."""
    ids: set[str] = set()
    for side in ("source", "target"):
        for entry in state.outbox.pending(collection, side, limit=limit):
            ids.update(str(i) for i in entry.batch().column("id").to_pylist())
    return ids


def _data_gate(
    state: StateStore,
    source: Connector | None,
    target: Connector | None,
    collection: str,
    target_collection: str | None,
    cfg: GateConfig,
) -> GateResult:
    if source is None or target is None:
        return GateResult("data", False, "needs SOURCE and TARGET to compare the data")
    d = live_drift(source, target, collection, target_collection)
    # An id whose write still waits in the outbox is in flight, not divergent: the
    # outbox gate judges how far behind replay is. Read after the comparison, so a write
    # queued while the sides were compared counts too.
    queued = queued_ids(state, collection) if d.size else set()
    if queued:
        d = d.keeping(lambda i: i not in queued)
    bad = d.size
    actual: dict[str, Any] = {
        "source_count": d.source_count,
        "target_count": d.target_count,
        "missing": len(d.missing),
        "extra": len(d.extra),
        "changed": len(d.changed),
        "queued_in_outbox": len(queued),
    }
    detail = (
        f"{d.source_count:,} vs {d.target_count:,} records; {len(d.missing)} missing, "
        f"{len(d.extra)} extra, {len(d.changed)} changed (max {cfg.max_diff})"
    )
    if bad:
        sample = [*d.missing[:2], *d.extra[:2], *d.changed[:2]]
        fields = d.sample_fields
        detail += ", e.g. " + ", ".join(
            f"{i} ({','.join(fields[str(i)])})" if fields.get(str(i)) else str(i) for i in sample
        )
        actual["changed_fields"] = fields
    return GateResult("data", bad <= cfg.max_diff, detail, actual=actual)


def _outbox_gate(state: StateStore, collection: str, cfg: GateConfig) -> GateResult:
    # Under live writes the outbox is empty only between writes. It passes when it drains
    # to the bound at one of a few reads, or when its oldest entry stays young across all
    # of them (replayed as fast as written); an entry nobody replays ages past the lag.
    oldest_seen = 0.0
    for attempt in range(OUTBOX_READS):
        if attempt:
            time.sleep(OUTBOX_PAUSE)
        depth = state.outbox.depth(collection)
        pending = sum(d.pending for d in depth.values())
        dead = sum(d.dead for d in depth.values())
        age = max(d.oldest_age for d in depth.values())
        oldest_seen = max(oldest_seen, age)
        if dead or (pending <= cfg.max_outbox and age <= cfg.max_outbox_age):
            break
    drained = pending <= cfg.max_outbox
    keeping_up = oldest_seen <= cfg.max_outbox_lag
    ok = (drained or keeping_up) and age <= cfg.max_outbox_age and dead == 0
    detail = (
        f"{pending} pending (max {cfg.max_outbox}, or any while the oldest waits at most "
        f"{cfg.max_outbox_lag:g}s: it waited up to {oldest_seen:.1f}s), oldest {age:.1f}s "
        f"(max {cfg.max_outbox_age:g}s), {dead} dead letters"
    )
    return GateResult(
        "outbox", ok, detail, actual={"pending": pending, "oldest_age": age, "dead": dead}
    )


def _verify_gate(
    cfg: GateConfig,
    source: Connector | None,
    target: Connector | None,
    collection: str,
    target_collection: str | None,
) -> GateResult:
    path = cfg.verify_report
    if path is None:
        return GateResult("verify", True, "no verify report given", skipped=True)
    report_file = path / "report.json" if path.is_dir() else path
    try:
        report = json.loads(report_file.read_text())
    except (OSError, ValueError) as exc:
        return GateResult("verify", False, f"cannot read {report_file}: {exc}")
    wrong = _report_mismatch(report, cfg, source, target, collection, target_collection)
    if wrong:
        return GateResult("verify", False, f"{report_file}: {wrong}; run verify again")
    failed = [g["gate"] for g in report.get("gates", []) if not g.get("passed")]
    passed = bool(report.get("passed")) and not failed
    detail = f"{report_file}: " + ("passed" if passed else f"FAILED gates {failed}")
    return GateResult("verify", passed, detail, actual={"failed": failed})


def _report_mismatch(
    report: dict[str, Any],
    cfg: GateConfig,
    source: Connector | None,
    target: Connector | None,
    collection: str,
    target_collection: str | None,
) -> str | None:
    """Why ``report`` does not judge this cutover's data now (None: it does)."""
    try:
        created = datetime.fromisoformat(report["created"])
        sides = {side: report[side] for side in ("source", "target")}
        ident = {side: storage_identity(sides[side]["uri"]) for side in sides}
    except (KeyError, TypeError, ValueError) as exc:
        return f"not a vecmigrate verify report ({type(exc).__name__}: {exc})"
    age = (datetime.now(timezone.utc) - created).total_seconds()
    if age > cfg.max_report_age:
        return f"made {age / 60:.0f} min ago (max {cfg.max_report_age / 60:g} min)"
    if (ident["source"], sides["source"]["collection"]) == (
        ident["target"],
        sides["target"]["collection"],
    ):
        return "compares a collection with itself"
    expected = {
        "source": (source, collection),
        "target": (target, target_collection or collection),
    }
    for side, (conn, name) in expected.items():
        if conn is None:
            continue
        if (ident[side], sides[side]["collection"]) != (storage_identity(conn.uri), name):
            found = f"{sides[side]['collection']!r} on {sides[side]['uri']}"
            return f"its {side} is {found}, not this cutover's"
    return None


def _shadow_gate(
    state: StateStore,
    collection: str,
    current: PhaseState,
    cfg: GateConfig,
    source: Connector | None,
) -> GateResult:
    if current.phase not in (Phase.SHADOW_READ, Phase.CANARY, Phase.TARGET_PRIMARY):
        return GateResult("shadow", True, f"{current.label} does not shadow reads", skipped=True)
    t = state.shadow_totals(collection, current.version)
    mean = t.mean_overlap
    attempted = t.comparisons + t.errors
    error_share = t.errors / attempted if attempted else 0.0
    recall = (
        shadow_recall(state, collection, current.version, source, collection)
        if source is not None
        else None
    )
    if recall is not None:  # judged by recall against exact ground truth
        judged = recall.target >= recall.source - cfg.max_recall_drop
        verdict = (
            f"recall@k on {recall.queries} sampled shadow queries: target "
            f"{recall.target:.3f}, source {recall.source:.3f} (max drop {cfg.max_recall_drop:g})"
        )
    else:
        judged = mean is not None and mean >= cfg.min_overlap
        verdict = (
            f"mean overlap {mean if mean is not None else float('nan'):.3f} "
            f"(min {cfg.min_overlap:g}; give SOURCE to judge recall instead)"
        )
    ok = (
        t.comparisons >= cfg.min_shadow_reads
        and judged
        and t.violations <= cfg.max_violations
        and error_share <= cfg.max_shadow_errors
    )
    detail = (
        f"{t.comparisons} shadow reads in {current.label} (min {cfg.min_shadow_reads}), "
        f"{verdict}, overlap {mean if mean is not None else float('nan'):.3f}, "
        f"{t.violations} filter violations (max {cfg.max_violations}), {t.dropped} dropped, "
        f"{t.errors} errors ({error_share:.1%} of shadow reads, max {cfg.max_shadow_errors:.1%})"
    )
    actual = t.to_json()
    if recall is not None:
        actual["recall"] = {
            "queries": recall.queries,
            "source": recall.source,
            "target": recall.target,
        }
    return GateResult("shadow", ok, detail, actual=actual)


def evaluate_gates(
    state: StateStore,
    collection: str,
    current: PhaseState,
    *,
    source: Connector | None,
    target: Connector | None,
    target_collection: str | None = None,
    config: GateConfig | None = None,
) -> list[GateResult]:
    """Every gate's verdict for leaving ``current``; skipped gates say so."""
    cfg = config or GateConfig()
    if current.phase is Phase.SOURCE_ONLY:  # nothing is mirrored yet: only a target check
        ok = target is not None
        if target is not None:
            name = target_collection or collection
            ok = name in target.list_collections()
        return [
            GateResult(
                "target",
                ok,
                "target collection exists"
                if ok
                else "target collection not found "
                "(backfill it with `vecmigrate copy` first, or pass SOURCE TARGET)",
            )
        ]
    results = []
    for name in GATE_NAMES:
        if name in cfg.skip:
            results.append(GateResult(name, True, "skipped by the operator", skipped=True))
        elif name == "data":
            results.append(_data_gate(state, source, target, collection, target_collection, cfg))
        elif name == "outbox":
            results.append(_outbox_gate(state, collection, cfg))
        elif name == "verify":
            results.append(_verify_gate(cfg, source, target, collection, target_collection))
        else:
            results.append(_shadow_gate(state, collection, current, cfg, source))
    return results


def advance(
    state: StateStore,
    collection: str,
    *,
    source: Connector | None = None,
    target: Connector | None = None,
    target_collection: str | None = None,
    config: GateConfig | None = None,
    to: Phase | None = None,
    percent: float | None = None,
    actor: str | None = None,
    note: str | None = None,
) -> tuple[PhaseEvent, list[GateResult]]:
    """Check the gates and move to the next phase; GateFailedError when one fails."""
    current = state.get(collection)
    new = next_state(current, to=to, percent=percent)
    results = evaluate_gates(
        state,
        collection,
        current,
        source=source,
        target=target,
        target_collection=target_collection,
        config=config,
    )
    failed = [r for r in results if not r.passed]
    if failed:
        reasons = "; ".join(f"{r.gate}: {r.detail}" for r in failed)
        raise GateFailedError(
            f"{collection}: cannot advance {current.label} -> {new.label}: {reasons}", results
        )
    event = state.transition(
        collection,
        current,
        new,
        actor=actor or actor_name(),
        action="advance",
        gates=[r.to_json() for r in results],
        note=note,
    )
    return event, results


def rollback(
    state: StateStore,
    collection: str,
    *,
    to: Phase | None = None,
    percent: float | None = None,
    actor: str | None = None,
    note: str | None = None,
) -> PhaseEvent:
    """Step back (no gates: a rollback must always be possible until target-only)."""
    current = state.get(collection)
    new = rollback_state(current, to=to, percent=percent)
    return state.transition(
        collection, current, new, actor=actor or actor_name(), action="rollback", note=note
    )
