"""Prometheus metrics of one router, in a registry of its own (tests and several routers
in one process never clash; an app exposes ``router.metrics.registry``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from vecmigrate.live.phases import ORDER, PhaseState

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_OVERLAP_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class RouterMetrics:
    """Reads and writes per side, outbox depth and age, shadow comparisons, errors."""

    def __init__(self, collection: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r, ns = self.registry, "vecmigrate_live"
        self.collection = collection
        self.writes = Counter(
            f"{ns}_writes",
            "Writes by side, op, role and outcome.",
            ["collection", "side", "op", "role", "outcome"],
            registry=r,
        )
        self.reads = Counter(
            f"{ns}_reads",
            "Reads served, by side, kind and outcome.",
            ["collection", "side", "kind", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            f"{ns}_latency_seconds",
            "Latency of calls on the request path, by side and kind.",
            ["collection", "side", "kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.outbox_depth = Gauge(
            f"{ns}_outbox_depth", "Pending secondary writes.", ["collection", "side"], registry=r
        )
        self.outbox_age = Gauge(
            f"{ns}_outbox_oldest_age_seconds",
            "Age of the oldest pending secondary write.",
            ["collection", "side"],
            registry=r,
        )
        self.outbox_dead = Gauge(
            f"{ns}_outbox_dead",
            "Secondary writes the engine refused for good.",
            ["collection", "side"],
            registry=r,
        )
        self.replayed = Counter(
            f"{ns}_outbox_replayed",
            "Outbox entries applied to a secondary.",
            ["collection", "side"],
            registry=r,
        )
        self.replay_failures = Counter(
            f"{ns}_outbox_replay_failures",
            "Replay passes stopped by an engine error.",
            ["collection", "side"],
            registry=r,
        )
        self.shadow = Counter(
            f"{ns}_shadow",
            "Shadow reads by outcome (compared, dropped, error).",
            ["collection", "outcome"],
            registry=r,
        )
        self.shadow_overlap = Histogram(
            f"{ns}_shadow_overlap",
            "overlap@k of shadow reads with the served result.",
            ["collection"],
            buckets=_OVERLAP_BUCKETS,
            registry=r,
        )
        self.shadow_missing = Counter(
            f"{ns}_shadow_missing_ids",
            "Ids the served result had and the shadow lacked.",
            ["collection"],
            registry=r,
        )
        self.shadow_violations = Counter(
            f"{ns}_shadow_filter_violations",
            "Shadow results failing the request's filter.",
            ["collection"],
            registry=r,
        )
        self.errors = Counter(
            f"{ns}_errors", "Errors by where they happened.", ["collection", "where"], registry=r
        )
        self.phase = Gauge(
            f"{ns}_phase",
            "1 for the phase this instance routes by.",
            ["collection", "phase"],
            registry=r,
        )
        self.canary = Gauge(
            f"{ns}_canary_percent",
            "Share of request keys read from the target in a canary.",
            ["collection"],
            registry=r,
        )

    def set_phase(self, state: PhaseState) -> None:
        """Export the phase this instance now routes by."""
        for p in ORDER:
            self.phase.labels(self.collection, p.value).set(1 if p is state.phase else 0)
        self.canary.labels(self.collection).set(state.canary_percent)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (for a ``/metrics`` endpoint)."""
        return bytes(generate_latest(self.registry))
