"""``sync --dry-run``: what one sync round would upsert and delete on the target, found
the way the round itself finds it, with nothing written on either side.

The source and the target are only read: no target collection is created, no state
file, no dead-letter directory, no change-feed position is stored. The counts are the
ones the real round reports when nothing changes in between: ``upserted`` is the
ids to upsert (less any record the writer refuses and dead-letters), ``deleted`` the
ids to delete.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vecmigrate.connectors.base import ChangeFeed, Connector
from vecmigrate.errors import ConfigError
from vecmigrate.mapping import Mapping, build_mapping, reading_schema
from vecmigrate.model import IdType
from vecmigrate.pipeline.dryrun import AbsentTarget
from vecmigrate.pipeline.sync.drift import Drift, Side, _signed, find_drift
from vecmigrate.pipeline.sync.run import SyncOptions, default_state_path, round_setup
from vecmigrate.uri import redact
from vecmigrate.verify.digest import id_text

SAMPLE_IDS = 10


def _id_order(value: Any) -> tuple[int, int, str]:
    """Numbers in numeric order before text ids in text order (a stable sample)."""
    if isinstance(value, int):
        return (0, value, "")
    return (1, 0, id_text(value))


@dataclass
class SyncPlan:
    """What one sync round would do; ``error``: what would stop it (None: nothing)."""

    source: str
    target: str
    collection: str
    target_collection: str
    mode: str
    target_exists: bool
    state: str
    upsert_ids: list[Any] = field(default_factory=list)  # source ids
    delete_ids: list[Any] = field(default_factory=list)  # target ids
    missing: int | None = None
    changed: int | None = None
    initial_generic: bool = False
    changes_read: int = 0
    mapping_refused: int = 0
    rows_scanned: int = 0
    buckets: int = 0
    dirty_buckets: int = 0
    error: str | None = None
    seconds: float = 0.0
    sample_size: int = SAMPLE_IDS

    @property
    def ok(self) -> bool:
        """Nothing would stop the round."""
        return self.error is None

    def _sample(self, ids: list[Any]) -> list[Any]:
        return sorted(ids, key=_id_order)[: self.sample_size]

    def to_json(self) -> dict[str, Any]:
        """JSON form (docs/json-schema/sync.schema.json, the ``dry_run`` branch)."""
        return {
            "dry_run": True,
            "source": redact(self.source),
            "target": redact(self.target),
            "collection": self.collection,
            "target_collection": self.target_collection,
            "mode": self.mode,
            "initial_generic": self.initial_generic,
            "target_exists": self.target_exists,
            "upsert": {
                "count": len(self.upsert_ids),
                "missing": self.missing,
                "changed": self.changed,
                "sample": self._sample(self.upsert_ids),
            },
            "delete": {"count": len(self.delete_ids), "sample": self._sample(self.delete_ids)},
            "changes_read": self.changes_read,
            "mapping_refused": self.mapping_refused,
            "rows_scanned": self.rows_scanned,
            "buckets": self.buckets,
            "dirty_buckets": self.dirty_buckets,
            "state": self.state,
            "error": self.error,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
        }


def _stored_window(path: Path, identity: dict[str, str]) -> dict[str, Any] | None:
    """The change-feed window stored in a sync state file, read without creating or
    locking it (None: no file, no window yet, or the file belongs to another sync)."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = dict(db.execute("SELECT key, value FROM job").fetchall())
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ConfigError(
            f"cannot read sync state file {path}: {exc}",
            hint="pass another --state, or delete the file to start from a generic pass",
        ) from None
    stored = rows.get("identity")
    if stored is not None and json.loads(stored) != identity:
        raise ConfigError(
            f"state file {path} belongs to another sync ({stored})", hint="pass another --state"
        )
    feed = rows.get("feed")
    return None if feed is None else dict(json.loads(feed))


def plan_sync(
    source: Connector,
    target: Connector | AbsentTarget,
    name: str,
    *,
    target_collection: str | None = None,
    options: SyncOptions | None = None,
    sample: int = SAMPLE_IDS,
) -> SyncPlan:
    """What ``sync_collection`` would upsert and delete for ``name``, reading only."""
    options = options or SyncOptions()
    started = time.perf_counter()
    tname, mode, feed = round_setup(source, target, name, target_collection, options)
    state_path = options.state_path or default_state_path(
        source,
        target,  # type: ignore[arg-type]  # only its uri is read
        name,
        tname,
    )
    exists = isinstance(target, Connector) and tname in target.list_collections()
    plan = SyncPlan(
        str(source.uri.raw),
        str(target.uri.raw),
        name,
        tname,
        mode,
        exists,
        str(state_path),
        sample_size=sample,
    )
    source_schema = reading_schema(source.describe(name), options.mapping)
    mapping = build_mapping(
        source_schema,
        target.capabilities,
        options.mapping,
        name=tname,
        source_engine=source.engine,
        source_uri=str(source.uri),
    )
    transform = None if mapping.is_identity else mapping
    src_side = Side(source, name, source_schema, transform)

    def generic() -> None:
        if isinstance(target, Connector) and exists:
            tolerance = max(
                source.capabilities.vector_tolerance, target.capabilities.vector_tolerance
            )
            drift = find_drift(
                src_side,
                Side(target, tname, target.describe(tname)),
                tolerance=tolerance,
                batch_rows=options.batch_rows,
            )
        else:  # the round would create the collection and upsert every (mappable) record
            drift, stats = Drift(0, 0, 0), dict[str, int]()
            for _, originals in _signed(src_side, options.batch_rows, stats):
                drift.missing.extend(originals)
            drift.rows_scanned = stats.get("read", 0)
            drift.mapping_refused = stats.get("refused", 0)
        plan.missing = (plan.missing or 0) + len(drift.missing)
        plan.changed = (plan.changed or 0) + len(drift.changed)
        plan.upsert_ids += [*drift.missing, *(s for s, _ in drift.changed)]
        plan.delete_ids += drift.extra
        plan.mapping_refused = drift.mapping_refused
        plan.rows_scanned += drift.rows_scanned
        plan.buckets, plan.dirty_buckets = drift.buckets, drift.dirty_buckets
        # As the round checks them: the deletes of a generic pass (a change feed's are not).
        plan.error = plan.error or _delete_error(plan, target, len(drift.extra), options.max_delete)

    identity = {
        "source": str(source.uri),
        "target": str(target.uri),
        "collection": name,
        "target_collection": tname,
    }
    window = _stored_window(state_path, identity) if mode == "changes" else None
    if mode == "changes":
        assert feed is not None
        if window is None or window.get("capture") != feed.change_capture_id(name):
            plan.initial_generic = True  # as the first round: a generic pass first
            generic()
        else:
            if _plan_changes(plan, feed, source, source_schema.id_type, mapping, window, options):
                generic()  # a truncate: the round compares everything too
    else:
        generic()
    plan.seconds = time.perf_counter() - started
    return plan


def _plan_changes(
    plan: SyncPlan,
    feed: ChangeFeed,
    source: Connector,
    id_type: IdType,
    mapping: Mapping,
    window: dict[str, Any],
    options: SyncOptions,
) -> bool:
    """The ids recorded since the stored position, split by their current source state
    (present: upsert, gone: delete) as ``Applier.bring_current`` splits them; True when
    the window holds a truncate."""
    until = window["until"] or feed.change_position(plan.collection)
    after, read, truncated, ids = window["after_seq"], 0, False, []
    while True:
        page = feed.changes(
            plan.collection, window["since"], until, after_seq=after, limit=options.page_rows
        )
        if not page:
            break
        read += len(page)
        truncated = truncated or any(c.op == "truncate" for c in page)
        ids += [c.id for c in page if c.id is not None]
        after = page[-1].seq
    unique = list(dict.fromkeys(ids))
    typed = [int(i) if id_type is IdType.INT else str(i) for i in unique]
    schema = source.describe(plan.collection)
    for start in range(0, len(typed), options.fetch_rows):
        chunk = typed[start : start + options.fetch_rows]
        batch = source.fetch(plan.collection, chunk, schema=schema)
        present = {id_text(i) for i in batch.column("id").to_pylist()}
        plan.upsert_ids += [i for i in chunk if id_text(i) in present]
        gone = [i for i in chunk if id_text(i) not in present]
        mapped = mapping.map_ids(gone)
        plan.delete_ids += [
            int(i) if mapping.target.id_type is IdType.INT else str(i) for i in mapped
        ]
    plan.changes_read = read
    return truncated


def _delete_error(
    plan: SyncPlan, target: Connector | AbsentTarget, n: int, limit: int | None
) -> str | None:
    """The refusal ``_Round._check_deletes`` would raise before deleting ``n`` records
    (None: the deletes may go)."""
    if not n or (limit is not None and n <= limit) or not isinstance(target, Connector):
        return None
    held = target.count(plan.target_collection) if plan.target_exists else 0
    if limit is None and n < held:
        return None
    more = "" if limit is None else f", more than --max-delete {limit:,}"
    return (
        f"sync would delete {n:,} of the {held:,} records of {plan.target_collection!r} on "
        f"{redact(plan.target)} (the source collection {plan.collection!r} lacks them){more}; "
        f"to delete them, pass --max-delete {n}"
    )
