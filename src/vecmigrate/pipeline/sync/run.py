"""sync: bring a target up to date with its source after a backfill - inserts, updates, deletes.

Two ways to learn what changed:

* **generic** (every engine): bucketed digests of both sides narrow the difference down to
  ids (``drift``); missing and changed records are fetched from the source and
  upserted, extra ones deleted. Reads scan both sides (twice when anything differs);
  writes and memory grow with the difference.
* **changes** (engines with a ``ChangeFeed``, e.g. pgvector after ``--install-capture``):
  the writes recorded since the last acknowledged position are read in order and only
  those ids are brought current. The position is stored in a SQLite state file only after
  the target acknowledged the writes, so a crash re-applies at most one page (idempotent).
  The first run, with no stored position, takes the position first and then runs a generic
  sync, so writes made before capture was installed are not missed.

Either way an id is applied by reading its current state from the source (present ->
upsert, absent -> delete), so the last write wins however many writes an id saw.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vecmigrate.connectors.base import ChangeFeed, Connector
from vecmigrate.connectors.identity import refuse_same_collection
from vecmigrate.errors import ConfigError
from vecmigrate.mapping import MappingSpec, build_mapping, reading_schema
from vecmigrate.model import IdType
from vecmigrate.pipeline.deadletter import DeadLetterWriter
from vecmigrate.pipeline.jobstate import JobState
from vecmigrate.pipeline.selection import select_reading
from vecmigrate.pipeline.sync.apply import Applied, Applier
from vecmigrate.pipeline.sync.drift import Side, find_drift
from vecmigrate.retry import RetryPolicy
from vecmigrate.verify.diff import diff_collections

SyncMode = Literal["auto", "generic", "changes"]


@dataclass
class SyncOptions:
    """How a sync runs; every field is a CLI flag."""

    mode: SyncMode = "auto"
    mapping: MappingSpec | None = None
    batch_rows: int = 2000
    fetch_rows: int = 500
    page_rows: int = 5000
    state_path: Path | None = None
    dead_letter_dir: Path | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    verify: bool = True
    prune: bool = False
    # Deletes one generic round may make; None: any number short of the whole target
    # (emptying a target, as an empty or mistaken source would, needs an explicit limit).
    max_delete: int | None = None


@dataclass
class SyncResult:
    """One sync round. ``ok`` is False when records were refused or parity was not reached."""

    source: str
    target: str
    collection: str
    target_collection: str
    mode: str
    round: int = 1
    upserted: int = 0
    deleted: int = 0
    dead_letters: int = 0
    retries: int = 0
    missing: int = 0
    changed: int = 0
    extra: int = 0
    mapping_refused: int = 0
    changes_read: int = 0
    initial_generic: bool = False
    rows_scanned: int = 0
    buckets: int = 0
    dirty_buckets: int = 0
    behind_seconds: float | None = None
    lag_rows: int | None = None
    lag_seconds: float | None = None
    parity: dict[str, Any] | None = None
    interrupted: bool = False
    seconds: float = 0.0
    state: str | None = None
    dead_letter_dir: str | None = None

    @property
    def rows_changed(self) -> int:
        """Records written or deleted on the target this round."""
        return self.upserted + self.deleted

    @property
    def ok(self) -> bool:
        """Nothing refused, and parity reached when it was checked."""
        return self.dead_letters == 0 and (self.parity is None or bool(self.parity["equal"]))

    def add(self, applied: Applied) -> None:
        """Count what an apply call did."""
        self.upserted += applied.upserted
        self.deleted += applied.deleted
        self.dead_letters += applied.dead_letters
        self.retries += applied.retries

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``--json`` (one line per round under ``--watch``)."""
        out = dict(self.__dict__)
        out.update(seconds=round(self.seconds, 3), rows_changed=self.rows_changed, ok=self.ok)
        return out


def default_state_path(source: Connector, target: Connector, name: str, tname: str) -> Path:
    """Stable state file per (source, target, collection) under ``.vecmigrate/jobs``."""
    key = hashlib.sha256(f"sync|{source.uri}|{target.uri}|{name}|{tname}".encode()).hexdigest()
    return Path(".vecmigrate") / "jobs" / f"sync-{name}-{key[:12]}.sqlite"


def _open_state(path: Path, identity: dict[str, str]) -> JobState:
    state = JobState(path)
    stored = state.get("identity")
    if stored is not None and json.loads(stored) != identity:
        state.close()
        raise ConfigError(
            f"state file {path} belongs to another sync ({stored})", hint="pass another --state"
        )
    state.set("identity", json.dumps(identity))
    return state


def last_result(state_path: Path) -> dict[str, Any] | None:
    """The JSON result of the last completed round stored in a sync state file (parity,
    ``lag_rows``, dead letters): what a cutover gate such as "sync lag 0" reads."""
    if not state_path.exists():
        return None
    state = JobState(state_path)
    try:
        raw = state.get("last_result")
    finally:
        state.close()
    return None if raw is None else dict(json.loads(raw))


def feed_of(source: Connector) -> ChangeFeed | None:
    """The source's change feed, when its engine has one."""
    return source if isinstance(source, ChangeFeed) else None


class _Round:
    """One sync round of one collection; see ``sync_collection``."""

    def __init__(
        self,
        source: Connector,
        target: Connector,
        name: str,
        tname: str,
        options: SyncOptions,
        state: JobState,
        result: SyncResult,
        stop: threading.Event,
    ) -> None:
        self.source, self.target, self.name, self.tname = source, target, name, tname
        self.options, self.state, self.result, self.stop = options, state, result, stop
        self.source_schema = reading_schema(source.describe(name), options.mapping)
        self.mapping = build_mapping(
            self.source_schema,
            target.capabilities,
            options.mapping,
            name=tname,
            source_engine=source.engine,
            source_uri=str(source.uri),
        )
        # A sync normally follows a copy; an absent target is created as copy would.
        target.create(self.mapping.target, if_exists="reuse")
        self.target_schema = target.describe(tname)
        self.transform = None if self.mapping.is_identity else self.mapping
        self.tolerance = max(
            source.capabilities.vector_tolerance, target.capabilities.vector_tolerance
        )
        dead_dir = options.dead_letter_dir or state.path.with_suffix(".dead-letters")
        result.dead_letter_dir = str(dead_dir)
        self.applier = Applier(
            source,
            target,
            name,
            tname,
            self.source_schema,
            self.mapping,
            DeadLetterWriter(dead_dir, key=source.at_rest_key() or target.at_rest_key()),
            options.retry,
            options.fetch_rows,
        )

    def generic(self) -> None:
        """Diff by digests, then upsert missing/changed and delete extra records."""
        drift = find_drift(
            Side(self.source, self.name, self.source_schema, self.transform),
            Side(self.target, self.tname, self.target_schema),
            tolerance=self.tolerance,
            batch_rows=self.options.batch_rows,
        )
        r = self.result
        r.missing += len(drift.missing)
        r.changed += len(drift.changed)
        r.extra += len(drift.extra)
        r.mapping_refused = drift.mapping_refused
        r.rows_scanned += drift.rows_scanned
        r.buckets, r.dirty_buckets = drift.buckets, drift.dirty_buckets
        self._check_deletes(len(drift.extra))
        ids = [*drift.missing, *(s for s, _ in drift.changed)]
        if self.mapping.is_identity:
            # Confirm each extra id against the source before deleting it: a scan over an
            # offset order (Chroma, LanceDB) can skip a record while the source is written.
            # An id the source could not even hold (text in an int-id source) just goes.
            int_ids = self.source_schema.id_type is IdType.INT

            def fits(x: Any) -> bool:
                return not int_ids or str(x).lstrip("-").isdigit()

            ids += [x for x in drift.extra if fits(x)]
            drift.extra = [x for x in drift.extra if not fits(x)]
        step = self.options.fetch_rows
        for start in range(0, len(ids), step):
            if self.stop.is_set():
                r.interrupted = True
                return
            r.add(self.applier.bring_current(ids[start : start + step]))
        if drift.extra:
            r.add(self.applier.delete(drift.extra))  # already target ids

    def _check_deletes(self, n: int) -> None:
        """ConfigError before deleting more than ``max_delete`` records, or (without a
        limit) every record of the target: what a wrong or empty source would cause."""
        limit = self.options.max_delete
        if not n or (limit is not None and n <= limit):
            return
        held = self.target.count(self.tname)
        if limit is None and n < held:
            return
        raise ConfigError(
            f"sync would delete {n:,} of the {held:,} records of {self.tname!r} on "
            f"{self.target.uri} (the source {self.source.uri} collection {self.name!r} "
            f"lacks them){'' if limit is None else f', more than --max-delete {limit:,}'}; "
            "nothing was changed",
            hint=f"check the source; to delete them, pass --max-delete {n}",
        )

    def changes(self, feed: ChangeFeed) -> None:
        """Apply the recorded changes since the stored position, page by page."""
        r = self.result
        capture = feed.change_capture_id(self.name)
        stored = self.state.get("feed")
        window: dict[str, Any] = json.loads(stored) if stored else {}
        if window.get("capture") != capture:  # first run, or capture reinstalled since
            # Everything committed before this position is covered by the generic pass;
            # everything after it is in the change table. Stored only once that pass is done.
            position = feed.change_position(self.name)
            r.initial_generic = True
            self.generic()
            if r.interrupted:
                return
            window = {"capture": capture, "since": position, "until": None, "after_seq": 0}
            self.state.set("feed", json.dumps(window))
        r.behind_seconds = round(feed.change_backlog(self.name, window["since"])[1], 3)
        if window["until"] is None:
            window["until"] = feed.change_position(self.name)
            self.state.set("feed", json.dumps(window))
        while True:
            if self.stop.is_set():
                r.interrupted = True
                break
            page = feed.changes(
                self.name,
                window["since"],
                window["until"],
                after_seq=window["after_seq"],
                limit=self.options.page_rows,
            )
            if not page:
                break
            r.changes_read += len(page)
            if any(c.op == "truncate" for c in page):
                self.generic()  # ids of a truncated table are unknown: compare everything
            # Each id once, at its last position: its current source state is what counts.
            ids = list(dict.fromkeys(reversed([c.id for c in page if c.id is not None])))[::-1]
            r.add(self.applier.bring_current(ids))
            window["after_seq"] = page[-1].seq
            self.state.set("feed", json.dumps(window))  # only after the target acknowledged
        if not r.interrupted:
            done = window["until"]
            window.update(since=done, until=None, after_seq=0)
            self.state.set("feed", json.dumps(window))
            if self.options.prune:
                feed.prune_changes(self.name, done)
        lag_rows, lag_seconds = feed.change_backlog(self.name, window["since"])
        r.lag_rows, r.lag_seconds = lag_rows, round(lag_seconds, 3) if lag_rows else 0.0

    def parity(self) -> dict[str, Any]:
        """Whether the target now equals (what the mapping makes of) the source: the diff's
        digests, drilled down to records, so any change above the engines' tolerance is
        found at any size (the cutover gate's input)."""
        source, _ = select_reading(self.source, self.name, None, self.options.mapping)
        d = diff_collections(
            source, self.target, self.name, target_name=self.tname, transform=self.transform
        )
        return {
            "equal": d.equal,
            "source_count": d.source_count,
            "target_count": d.target_count,
            "source_digest": d.source_digest,
            "target_digest": d.target_digest,
            "differing_ids": len(d.missing) + len(d.extra) + len(d.changed) + len(d.duplicates),
        }


def round_setup(
    source: Connector,
    target: Any,
    name: str,
    target_collection: str | None,
    options: SyncOptions,
) -> tuple[str, str, ChangeFeed | None]:
    """What a round (or its dry run) works with: the target collection's name, the mode
    (``auto`` resolved) and the source's change feed; refuses an append-only target, the
    source itself as target, and ``changes`` without change capture installed."""
    spec_target = options.mapping.target_collection if options.mapping else None
    tname = target_collection or spec_target or name
    refuse_same_collection(source.uri, name, target.uri, tname)
    if not target.capabilities.mutable:
        raise ConfigError(
            f"{target.engine} targets are append-only: sync needs to update and delete",
            hint="sync into a database; export a fresh dump instead",
        )
    feed = feed_of(source)
    installed = feed is not None and feed.change_capture_installed(name)
    mode = options.mode
    if mode == "changes" and not installed:
        raise ConfigError(
            f"{source.engine} collection {name!r} has no change capture installed",
            hint=f"run: vecmigrate sync --install-capture {source.uri} -c {name}"
            if feed
            else f"{source.engine} has no change feed: use --mode generic",
        )
    if mode == "auto":
        mode = "changes" if installed else "generic"
    return tname, mode, feed


def sync_collection(
    source: Connector,
    target: Connector,
    name: str,
    *,
    target_collection: str | None = None,
    options: SyncOptions | None = None,
    stop: threading.Event | None = None,
    round_no: int = 1,
) -> SyncResult:
    """One sync round: make ``target`` equal ``source`` for collection ``name``."""
    options = options or SyncOptions()
    started = time.perf_counter()
    tname, mode, feed = round_setup(source, target, name, target_collection, options)
    state_path = options.state_path or default_state_path(source, target, name, tname)
    identity = {
        "source": str(source.uri),
        "target": str(target.uri),
        "collection": name,
        "target_collection": tname,
    }
    state = _open_state(state_path, identity)
    try:
        result = SyncResult(
            str(source.uri), str(target.uri), name, tname, mode, round_no, state=str(state_path)
        )
        work = _Round(
            source, target, name, tname, options, state, result, stop or threading.Event()
        )
        if mode == "changes":
            assert feed is not None
            work.changes(feed)
        else:
            work.generic()
        if result.rows_changed:
            # Compaction etc.: LanceDB scans by offset slow down ~40x on an uncompacted table.
            target.finalize(tname)
        if options.verify and not result.interrupted:
            result.parity = work.parity()
        if result.dead_letters == 0:
            result.dead_letter_dir = None
        result.seconds = time.perf_counter() - started
        state.set("last_result", json.dumps(result.to_json()))
        return result
    finally:
        state.close()


@dataclass
class WatchOutcome:
    """What a ``--watch`` run did over all its rounds."""

    rounds: int = 0
    dead_letters: int = 0
    last: SyncResult | None = None

    @property
    def ok(self) -> bool:
        """No round refused records, and the last round reached parity (when checked)."""
        return self.dead_letters == 0 and (self.last is None or self.last.ok)


def watch(
    source: Connector,
    target: Connector,
    name: str,
    *,
    interval: float,
    max_rounds: int | None = None,
    target_collection: str | None = None,
    options: SyncOptions | None = None,
    stop: threading.Event | None = None,
    on_round: Callable[[SyncResult], None] | None = None,
) -> WatchOutcome:
    """Sync round after round, ``interval`` seconds apart, until ``stop`` or ``max_rounds``."""
    stop = stop or threading.Event()
    outcome = WatchOutcome()
    while not stop.is_set():
        result = sync_collection(
            source,
            target,
            name,
            target_collection=target_collection,
            options=options,
            stop=stop,
            round_no=outcome.rounds + 1,
        )
        outcome.rounds += 1
        outcome.dead_letters += result.dead_letters
        outcome.last = result
        if on_round:
            on_round(result)
        if max_rounds is not None and outcome.rounds >= max_rounds:
            break
        stop.wait(interval)
    return outcome
