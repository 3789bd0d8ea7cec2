"""Migration config for verify: query set, k, and the gates a migration must pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vecmigrate.errors import ConfigError


class Gates(BaseModel):
    """Thresholds; ``None`` turns a gate off."""

    model_config = ConfigDict(extra="forbid")

    max_recall_drop: float | None = Field(
        default=0.01, description="target recall@k >= source - this"
    )
    min_target_recall: float | None = None
    min_overlap: float | None = None
    max_missing: int | None = 0
    max_extra: int | None = 0
    max_changed: int | None = 0
    max_duplicates: int | None = Field(
        default=0, description="ids held by more than one record, on either side"
    )
    max_empty_rate: float | None = 0.0
    max_filter_violations: int | None = 0
    max_namespace_leaks: int | None = Field(
        default=0, description="returned ids from another namespace than the query's"
    )
    max_p99_ratio: float | None = Field(default=None, description="target p99 <= this x source p99")
    max_self_misses: int | None = Field(
        default=0,
        description="sampled records the source finds by their own vector and the target "
        "does not; on an approximate (non-flat) target index at least max_recall_drop's "
        "share of the sampled records",
    )


class VerifyConfig(BaseModel):
    """The ``verify`` section of a migration config (YAML)."""

    model_config = ConfigDict(extra="forbid")

    queries: int = Field(default=200, gt=0)
    k: int = Field(default=10, gt=0)
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10])
    seed: int = 0
    user_queries: Path | None = None
    filter_queries: int = Field(default=20, ge=0, description="queries per generated filter")
    namespace_queries: int = Field(
        default=20, ge=0, description="queries per namespace, filtered to it (0: off)"
    )
    max_namespaces: int = Field(default=20, gt=0, description="namespaces given a query group")
    self_queries: int = Field(
        default=100,
        ge=0,
        description="sampled records searched by their own vector, taken from the query "
        "sample (at most `queries`; 0: off)",
    )
    live: bool = Field(
        default=False,
        description="the application writes meanwhile: ids that differ in the scan are read "
        "again by id, and only those that stay different count",
    )
    gates: Gates = Field(default_factory=Gates)

    @classmethod
    def load(cls, path: Path | None) -> VerifyConfig:
        """Read ``path`` (its ``verify:`` section, or the whole file); defaults without one."""
        if path is None:
            return cls()
        try:
            data: Any = yaml.safe_load(path.read_text()) or {}
            section = data.get("verify", data) if isinstance(data, dict) else data
            return cls.model_validate(section)
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read migration config {path}: {exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise ConfigError(f"{path}: {where}: {first['msg']}") from None


def evaluate_gates(gates: Gates, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each enabled gate with its threshold, actual value and verdict."""
    k = report["k"]
    src = report["systems"]["source"]["all"]
    tgt = report["systems"]["target"]["all"]
    parity = report["parity"]
    checks: list[tuple[str, float | None, float, bool]] = []

    def add(name: str, threshold: float | None, actual: float, ok: bool) -> None:
        if threshold is not None:
            checks.append((name, threshold, actual, ok))

    drop = src[f"recall@{k}"] - tgt[f"recall@{k}"]
    add(
        f"recall@{k} drop",
        gates.max_recall_drop,
        drop,
        drop <= (gates.max_recall_drop or 0) + 1e-12,
    )
    if gates.min_target_recall is not None:
        add(
            f"target recall@{k}",
            gates.min_target_recall,
            tgt[f"recall@{k}"],
            tgt[f"recall@{k}"] >= gates.min_target_recall,
        )
    if gates.min_overlap is not None:
        ov = report["overlap"][f"overlap@{k}"]
        add(f"overlap@{k}", gates.min_overlap, ov, ov >= gates.min_overlap)
    for kind, limit in (
        ("missing", gates.max_missing),
        ("extra", gates.max_extra),
        ("changed", gates.max_changed),
    ):
        n = len(parity[kind])
        add(f"{kind} ids", limit, n, limit is None or n <= limit)
    n = len(parity.get("duplicates", []))
    add("duplicate ids", gates.max_duplicates, n, n <= (gates.max_duplicates or 0))
    if gates.max_empty_rate is not None:
        add(
            "target empty results",
            gates.max_empty_rate,
            tgt["empty_rate"],
            tgt["empty_rate"] <= gates.max_empty_rate,
        )
    if gates.max_filter_violations is not None:
        n = tgt["filter_violations"] + src["filter_violations"]
        add("filter violations", gates.max_filter_violations, n, n <= gates.max_filter_violations)
    if gates.max_namespace_leaks is not None and report.get("namespaces", {}).get("queried"):
        n = tgt["namespace_leaks"] + src["namespace_leaks"]
        add("namespace leaks", gates.max_namespace_leaks, n, n <= gates.max_namespace_leaks)
    if gates.max_self_misses is not None and "self_retrieval" in report:
        sr = report["self_retrieval"]
        n, limit = sr["regression_count"], gates.max_self_misses
        if report.get("serving", {}).get("target", {}).get("index") not in (None, "flat"):
            # An approximate index may miss a record's own vector as it may miss any
            # neighbour: allow the recall drop's share of the sampled records there.
            share = gates.max_recall_drop or 0.0
            limit = max(limit, int(share * sr["systems"]["target"]["asked"] + 1e-9))
        add("self-retrieval misses", limit, n, n <= limit)
    if gates.max_p99_ratio is not None:
        ratio = tgt["latency"]["p99_ms"] / max(src["latency"]["p99_ms"], 1e-9)
        add("p99 latency ratio", gates.max_p99_ratio, ratio, ratio <= gates.max_p99_ratio)
    return [
        {"gate": n, "threshold": t, "actual": round(a, 6), "passed": ok} for n, t, a, ok in checks
    ]
