"""Live migration: the application-side router (dual write with a durable outbox, shadow
reads, sticky canary routing) and the phase state every instance shares.

Needs the ``live`` extra (prometheus-client) for the router's metrics.
"""

from __future__ import annotations

from vecmigrate.live.cutover_gates import GateConfig, GateFailedError, GateResult, advance, rollback
from vecmigrate.live.phases import Phase, PhaseState, canary_bucket
from vecmigrate.live.reconcile import reconcile_collection
from vecmigrate.live.state import PhaseEvent, ShadowTotals, StateStore, open_state
from vecmigrate.live.status import cutover_status

__all__ = [
    "GateConfig",
    "GateFailedError",
    "GateResult",
    "MigrationRouter",
    "Phase",
    "PhaseEvent",
    "PhaseState",
    "ShadowTotals",
    "StateStore",
    "advance",
    "canary_bucket",
    "cutover_status",
    "open_state",
    "reconcile_collection",
    "rollback",
]


def __getattr__(name: str) -> object:
    # The router imports prometheus_client: load it only when asked for.
    if name == "MigrationRouter":
        from vecmigrate.live.router import MigrationRouter

        return MigrationRouter
    raise AttributeError(name)
