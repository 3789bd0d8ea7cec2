"""sync: bring a target up to date with its source after a copy (``run``), from the
drift found by digests (``drift``) or a change feed, applied by id (``apply``)."""

from vecmigrate.pipeline.sync.plan import SyncPlan, plan_sync
from vecmigrate.pipeline.sync.run import (
    SyncMode,
    SyncOptions,
    SyncResult,
    WatchOutcome,
    default_state_path,
    feed_of,
    last_result,
    sync_collection,
    watch,
)

__all__ = [
    "SyncMode",
    "SyncOptions",
    "SyncPlan",
    "SyncResult",
    "WatchOutcome",
    "default_state_path",
    "feed_of",
    "last_result",
    "plan_sync",
    "sync_collection",
    "watch",
]
