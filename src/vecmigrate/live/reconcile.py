"""``cutover reconcile``: repair what differs between the two sides while the
application keeps writing, through the outbox, and see it applied."""

from __future__ import annotations

import time
from typing import Any

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import ConfigError
from vecmigrate.live.drift import live_drift
from vecmigrate.live.outbox import queue_reconcile, replay
from vecmigrate.live.phases import Side
from vecmigrate.live.state import StateStore


def reconcile_collection(
    state: StateStore,
    collection: str,
    source: Connector,
    target: Connector,
    *,
    target_collection: str | None = None,
    chunk: int = 500,
    wait: float = 30.0,
) -> dict[str, Any]:
    """Diff both sides, queue the primary's current version of every differing id for
    the secondary (``outbox.queue_reconcile``) while the application keeps writing, and
    apply it (here, or by the router holding the side's replay lease, waited for)."""
    current = state.get(collection)
    secondary = current.secondary()
    if secondary is None:
        raise ConfigError(
            f"{collection} is {current.label}: only one side takes writes, nothing to reconcile"
        )
    d = live_drift(source, target, collection, target_collection)
    schema = source.describe(collection)
    ids = d.ids
    conns = {"source": (source, collection), "target": (target, target_collection or collection)}
    primary, primary_name = conns[current.primary()]
    primary_schema = primary.describe(primary_name)
    last = 0
    for start in range(0, len(ids), chunk):
        last = queue_reconcile(
            state.outbox,
            collection,
            secondary,
            primary,
            primary_name,
            primary_schema,
            schema,
            ids[start : start + chunk],
        )
    secondary_conn, secondary_name = conns[secondary]
    applied_by = (
        _apply_queued(state, collection, secondary, secondary_conn, secondary_name, last, wait)
        if ids
        else "nothing to apply"
    )
    return {
        "collection": collection,
        "phase": current.label,
        "secondary": secondary,
        "missing": len(d.missing),
        "extra": len(d.extra),
        "changed": len(d.changed),
        "queued": len(ids),
        "applied": applied_by,
    }


RECONCILER = "vecmigrate-cutover-reconcile"


def _apply_queued(
    state: StateStore,
    collection: str,
    side: Side,
    conn: Connector,
    name: str,
    upto: int,
    wait: float,
) -> str:
    """Apply the side's outbox up to entry ``upto`` here when no router holds its replay
    lease, else wait for the router that does; says who applied it, or that it is pending."""
    outbox = state.outbox
    schema = conn.describe(name)
    deadline = time.monotonic() + wait
    while True:
        head = outbox.pending(collection, side, limit=1)
        if not head or head[0].seq > upto:
            return "applied"
        holder = outbox.lease_holder(collection, side)
        if holder in (None, RECONCILER) and outbox.acquire_lease(collection, side, RECONCILER, 30):
            try:
                result = replay(outbox, collection, side, conn, name, schema)
            finally:
                outbox.release_lease(collection, side, RECONCILER)
            if result.error:
                return f"pending: the {side} refused for now ({result.error}); a router retries"
        if time.monotonic() > deadline:
            who = f"router {holder}" if holder not in (None, RECONCILER) else "a running router"
            return f"pending: queued behind writes in flight; {who} applies it"
        time.sleep(0.1)
