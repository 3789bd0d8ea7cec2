"""What ``cutover status`` shows: the phase, the outbox, shadow totals, the audit trail
and, per application instance, the phase it routes by."""

from __future__ import annotations

import time
from typing import Any

from vecmigrate.live.state import StateStore

# An instance that has not published for this long is listed as silent (stopped or stuck).
SILENT_AFTER = 30.0


def cutover_status(state: StateStore, collection: str, events: int = 20) -> dict[str, Any]:
    """The collection's cutover state as JSON-ready data."""
    current = state.get(collection)
    depth = state.outbox.depth(collection)
    shadow = state.shadow_totals(collection, current.version)
    now = time.time()
    instances = {
        name: {
            "version": version,
            "seen_s_ago": round(now - seen, 1),
            "routes_by_current_phase": version == current.version,
            "silent": now - seen > SILENT_AFTER,
        }
        for name, (version, seen) in sorted(state.instances(collection).items())
    }
    return {
        "collection": collection,
        "phase": current.phase.value,
        "canary_percent": current.canary_percent,
        "label": current.label,
        "version": current.version,
        "instances": instances,
        "outbox": {
            side: {"pending": d.pending, "oldest_age_s": round(d.oldest_age, 3), "dead": d.dead}
            for side, d in depth.items()
        },
        "shadow": shadow.to_json(),
        "events": [e.to_json() for e in state.events(collection, events)],
    }
