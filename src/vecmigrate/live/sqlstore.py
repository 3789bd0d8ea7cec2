"""State store + outbox over SQL: SQLite (one host) and PostgreSQL (many hosts).

One implementation, two dialects: the statements are the same but for placeholders and
column types. Each thread uses its own connection; phase changes are compare-and-set
on a version column inside one transaction with their audit event.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vecmigrate.errors import ConfigError
from vecmigrate.live.outbox import Op, Outbox, OutboxDepth, OutboxEntry, oldest_age
from vecmigrate.live.phases import PhaseState, parse_phase
from vecmigrate.live.state import (
    SHADOW_QUERY_BATCHES,
    PhaseConflictError,
    PhaseEvent,
    ShadowTotals,
    StateStore,
    gates_json,
)
from vecmigrate.uri import ConnectionURI

P = "vecmigrate_live_"
_DDL = [
    f"""CREATE TABLE IF NOT EXISTS {P}phase (
        collection TEXT PRIMARY KEY, phase TEXT NOT NULL, canary_percent {{float}} NOT NULL,
        version BIGINT NOT NULL, updated {{float}} NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {P}events (
        seq {{serial}}, collection TEXT NOT NULL, at {{float}} NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL, from_phase TEXT NOT NULL, from_percent {{float}} NOT NULL,
        to_phase TEXT NOT NULL, to_percent {{float}} NOT NULL, version BIGINT NOT NULL,
        gates TEXT NOT NULL, note TEXT)""",
    f"""CREATE TABLE IF NOT EXISTS {P}shadow (
        collection TEXT NOT NULL, instance TEXT NOT NULL, version BIGINT NOT NULL,
        comparisons BIGINT NOT NULL, overlap_sum {{float}} NOT NULL,
        min_overlap {{float}} NOT NULL, missing BIGINT NOT NULL, violations BIGINT NOT NULL,
        errors BIGINT NOT NULL, dropped BIGINT NOT NULL, updated {{float}} NOT NULL,
        PRIMARY KEY (collection, instance, version))""",
    f"""CREATE TABLE IF NOT EXISTS {P}instances (
        collection TEXT NOT NULL, instance TEXT NOT NULL, version BIGINT NOT NULL,
        updated {{float}} NOT NULL, PRIMARY KEY (collection, instance))""",
    f"""CREATE TABLE IF NOT EXISTS {P}shadow_queries (
        collection TEXT NOT NULL, version BIGINT NOT NULL, at {{float}} NOT NULL,
        payload {{blob}} NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {P}outbox (
        seq {{serial}}, collection TEXT NOT NULL, side TEXT NOT NULL, op TEXT NOT NULL,
        payload {{blob}} NOT NULL, created {{float}} NOT NULL, attempts INTEGER NOT NULL,
        dead INTEGER NOT NULL, held INTEGER NOT NULL, last_error TEXT)""",
    f"CREATE INDEX IF NOT EXISTS {P}outbox_side ON {P}outbox (collection, side, dead, seq)",
    f"""CREATE TABLE IF NOT EXISTS {P}leases (
        collection TEXT NOT NULL, side TEXT NOT NULL, owner TEXT NOT NULL,
        until {{float}} NOT NULL, PRIMARY KEY (collection, side))""",
]
_STATE_COLS = "phase, canary_percent, version"


class _SqlStore(StateStore, Outbox):
    """The shared statements; subclasses connect and name their types."""

    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    blob = "BLOB"
    float_type = "REAL"
    ph = "?"
    serialize_appends = ""  # SQLite: BEGIN IMMEDIATE already serialises writers
    serialize_ddl = ""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        with self._tx() as cur:
            if self.serialize_ddl:
                cur.execute(self.serialize_ddl)
            for ddl in _DDL:
                cur.execute(ddl.format(serial=self.serial, blob=self.blob, float=self.float_type))

    # -- connections -----------------------------------------------------------------------
    @abstractmethod
    def _connect(self) -> Any: ...

    @abstractmethod
    def _begin(self, conn: Any, *, write: bool = True) -> Any:
        """A context manager around one transaction (``write``: one that may write);
        yields a cursor."""

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Any]:
        with self._begin(self._conn(), write=write) as cur:
            yield cur

    def _q(self, statement: str) -> str:
        return statement.replace("?", self.ph)

    def _rows(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one SELECT (a read transaction: it takes no write lock)."""
        with self._tx(write=False) as cur:
            cur.execute(self._q(statement), tuple(params))
            return list(cur.fetchall())

    def _exec(self, statement: str, params: Sequence[Any] = ()) -> int:
        with self._tx() as cur:
            cur.execute(self._q(statement), tuple(params))
            return int(cur.rowcount)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # -- phase -----------------------------------------------------------------------------
    @property
    def outbox(self) -> Outbox:
        return self

    def get(self, collection: str) -> PhaseState:
        rows = self._rows(f"SELECT {_STATE_COLS} FROM {P}phase WHERE collection = ?", [collection])
        if not rows:
            return PhaseState()
        phase, pct, version = rows[0]
        return PhaseState(parse_phase(phase), float(pct), int(version))

    def transition(
        self,
        collection: str,
        expected: PhaseState,
        new: PhaseState,
        *,
        actor: str,
        action: str,
        gates: list[dict[str, Any]] | None = None,
        note: str | None = None,
    ) -> PhaseEvent:
        now = time.time()
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"INSERT INTO {P}phase (collection, {_STATE_COLS}, updated) "
                    "VALUES (?, 'source-only', 0, 0, ?) ON CONFLICT (collection) DO NOTHING"
                ),
                (collection, now),
            )
            cur.execute(
                self._q(
                    f"UPDATE {P}phase SET phase = ?, canary_percent = ?, version = ?, updated = ? "
                    "WHERE collection = ? AND version = ?"
                ),
                (
                    new.phase.value,
                    new.canary_percent,
                    new.version,
                    now,
                    collection,
                    expected.version,
                ),
            )
            if cur.rowcount != 1:
                raise PhaseConflictError(
                    f"the phase of {collection!r} changed since version {expected.version}",
                    hint="run `vecmigrate cutover status` and retry",
                )
            cur.execute(
                self._q(
                    f"INSERT INTO {P}events (collection, at, actor, action, from_phase, "
                    "from_percent, to_phase, to_percent, version, gates, note) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq"
                ),
                (
                    collection,
                    now,
                    actor,
                    action,
                    expected.phase.value,
                    expected.canary_percent,
                    new.phase.value,
                    new.canary_percent,
                    new.version,
                    gates_json(gates or []),
                    note,
                ),
            )
            seq = int(cur.fetchone()[0])
        return PhaseEvent(
            seq=seq,
            collection=collection,
            at=now,
            actor=actor,
            action=action,
            before=PhaseState(expected.phase, expected.canary_percent, new.version - 1),
            after=new,
            gates=list(gates or []),
            note=note,
        )

    def events(self, collection: str, limit: int = 50) -> list[PhaseEvent]:
        rows = self._rows(
            f"SELECT seq, at, actor, action, from_phase, from_percent, to_phase, to_percent, "
            f"version, gates, note FROM {P}events WHERE collection = ? ORDER BY seq DESC LIMIT ?",
            [collection, limit],
        )
        out = []
        for seq, at, actor, action, fp, fpct, tp, tpct, version, gates, note in reversed(rows):
            out.append(
                PhaseEvent(
                    seq=int(seq),
                    collection=collection,
                    at=float(at),
                    actor=actor,
                    action=action,
                    before=PhaseState(parse_phase(fp), float(fpct), int(version) - 1),
                    after=PhaseState(parse_phase(tp), float(tpct), int(version)),
                    gates=json.loads(gates),
                    note=note,
                )
            )
        return out

    # -- shadow totals -----------------------------------------------------------------------
    def record_shadow(
        self, collection: str, instance: str, version: int, totals: ShadowTotals
    ) -> None:
        t = totals
        self._exec(
            f"INSERT INTO {P}shadow (collection, instance, version, comparisons, overlap_sum, "
            "min_overlap, missing, violations, errors, dropped, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (collection, instance, version) "
            "DO UPDATE SET comparisons = excluded.comparisons, overlap_sum = excluded.overlap_sum, "
            "min_overlap = excluded.min_overlap, missing = excluded.missing, "
            "violations = excluded.violations, errors = excluded.errors, "
            "dropped = excluded.dropped, updated = excluded.updated",
            [
                collection,
                instance,
                version,
                t.comparisons,
                t.overlap_sum,
                t.min_overlap,
                t.missing,
                t.violations,
                t.errors,
                t.dropped,
                time.time(),
            ],
        )

    def shadow_totals(self, collection: str, version: int) -> ShadowTotals:
        total = ShadowTotals()
        for row in self._rows(
            f"SELECT comparisons, overlap_sum, min_overlap, missing, violations, errors, "
            f"dropped FROM {P}shadow WHERE collection = ? AND version = ?",
            [collection, version],
        ):
            total.add(ShadowTotals(int(row[0]), float(row[1]), float(row[2]), *map(int, row[3:])))
        return total

    def record_instance(self, collection: str, instance: str, version: int) -> None:
        self._exec(
            f"INSERT INTO {P}instances (collection, instance, version, updated) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (collection, instance) "
            "DO UPDATE SET version = excluded.version, updated = excluded.updated",
            [collection, instance, version, time.time()],
        )

    def instances(self, collection: str) -> dict[str, tuple[int, float]]:
        rows = self._rows(
            f"SELECT instance, version, updated FROM {P}instances WHERE collection = ?",
            [collection],
        )
        return {str(i): (int(v), float(u)) for i, v, u in rows}

    def record_shadow_queries(self, collection: str, version: int, payload: bytes) -> None:
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"SELECT COUNT(*) FROM {P}shadow_queries WHERE collection = ? AND version = ?"
                ),
                (collection, version),
            )
            if int(cur.fetchone()[0]) < SHADOW_QUERY_BATCHES:
                cur.execute(
                    self._q(
                        f"INSERT INTO {P}shadow_queries (collection, version, at, payload) "
                        "VALUES (?, ?, ?, ?)"
                    ),
                    (collection, version, time.time(), payload),
                )

    def shadow_queries(self, collection: str, version: int) -> list[bytes]:
        rows = self._rows(
            f"SELECT payload FROM {P}shadow_queries WHERE collection = ? AND version = ? "
            "ORDER BY at",
            [collection, version],
        )
        return [bytes(r[0]) for r in rows]

    # -- outbox ------------------------------------------------------------------------------
    def append(
        self, collection: str, side: str, op: Op, payload: bytes, *, held: bool = False
    ) -> int:
        with self._tx() as cur:
            if self.serialize_appends:
                cur.execute(self.serialize_appends)
            cur.execute(
                self._q(
                    f"INSERT INTO {P}outbox (collection, side, op, payload, created, attempts, "
                    "dead, held) VALUES (?, ?, ?, ?, ?, 0, 0, ?) RETURNING seq"
                ),
                (collection, side, op, payload, time.time(), int(held)),
            )
            return int(cur.fetchone()[0])

    def pending(self, collection: str, side: str, limit: int = 100) -> list[OutboxEntry]:
        rows = self._rows(
            f"SELECT seq, op, payload, created, attempts, held FROM {P}outbox "
            "WHERE collection = ? AND side = ? AND dead = 0 ORDER BY seq LIMIT ?",
            [collection, side, limit],
        )
        return [
            OutboxEntry(int(s), collection, side, op, bytes(p), float(c), int(a), bool(h))
            for s, op, p, c, a, h in rows
        ]

    def held(self, collection: str, older_than: float) -> list[OutboxEntry]:
        rows = self._rows(
            f"SELECT seq, side, op, payload, created, attempts FROM {P}outbox "
            "WHERE collection = ? AND dead = 0 AND held = 1 AND created < ? ORDER BY seq",
            [collection, time.time() - older_than],
        )
        return [
            OutboxEntry(int(s), collection, side, op, bytes(p), float(c), int(a), True)
            for s, side, op, p, c, a in rows
        ]

    def mark_ready(self, seq: int) -> bool:
        return self._exec(f"UPDATE {P}outbox SET held = 0 WHERE seq = ? AND held = 1", [seq]) == 1

    def rewrite(self, seq: int, op: Op, payload: bytes) -> None:
        self._exec(
            f"UPDATE {P}outbox SET op = ?, payload = ?, held = 0 WHERE seq = ?", [op, payload, seq]
        )

    def has_pending(self, collection: str, side: str) -> bool:
        return bool(
            self._rows(
                f"SELECT 1 FROM {P}outbox WHERE collection = ? AND side = ? AND dead = 0 LIMIT 1",
                [collection, side],
            )
        )

    def last_seq(self, collection: str) -> int:
        rows = self._rows(f"SELECT MAX(seq) FROM {P}outbox WHERE collection = ?", [collection])
        return int(rows[0][0] or 0) if rows else 0

    def complete(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        marks = ", ".join("?" * len(seqs))
        self._exec(f"DELETE FROM {P}outbox WHERE seq IN ({marks})", list(seqs))

    def retry_later(self, seq: int, error: str) -> None:
        self._exec(
            f"UPDATE {P}outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
            [error[:2000], seq],
        )

    def dead_letter(self, seq: int, error: str) -> None:
        self._exec(
            f"UPDATE {P}outbox SET dead = 1, attempts = attempts + 1, last_error = ? WHERE seq = ?",
            [error[:2000], seq],
        )

    def depth(self, collection: str) -> dict[str, OutboxDepth]:
        out = {s: OutboxDepth(0, 0.0, 0) for s in ("source", "target")}
        for side, pending, oldest, dead in self._rows(
            f"SELECT side, SUM(CASE WHEN dead = 0 THEN 1 ELSE 0 END), "
            f"MIN(CASE WHEN dead = 0 THEN created END), SUM(dead) FROM {P}outbox "
            "WHERE collection = ? GROUP BY side",
            [collection],
        ):
            out[side] = OutboxDepth(int(pending or 0), oldest_age(oldest), int(dead or 0))
        return out

    def acquire_lease(self, collection: str, side: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"INSERT INTO {P}leases (collection, side, owner, until) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (collection, side) DO UPDATE SET owner = excluded.owner, "
                    f"until = excluded.until WHERE {P}leases.owner = excluded.owner "
                    f"OR {P}leases.until < ?"
                ),
                (collection, side, owner, now + ttl, now),
            )
            cur.execute(
                self._q(f"SELECT owner FROM {P}leases WHERE collection = ? AND side = ?"),
                (collection, side),
            )
            row = cur.fetchone()
        return bool(row and row[0] == owner)

    def release_lease(self, collection: str, side: str, owner: str) -> None:
        self._exec(
            f"DELETE FROM {P}leases WHERE collection = ? AND side = ? AND owner = ?",
            [collection, side, owner],
        )

    def lease_holder(self, collection: str, side: str) -> str | None:
        rows = self._rows(
            f"SELECT owner FROM {P}leases WHERE collection = ? AND side = ? AND until >= ?",
            [collection, side, time.time()],
        )
        return str(rows[0][0]) if rows else None


class SqliteStateStore(_SqlStore):
    """A SQLite file (WAL mode): every process on one host shares it."""

    def __init__(self, path: Path) -> None:
        if not str(path) or str(path) == ".":
            raise ConfigError("the sqlite state store needs a file: sqlite:///path/state.db")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        super().__init__()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextmanager
    def _begin(self, conn: Any, *, write: bool = True) -> Iterator[Any]:
        cur = conn.cursor()
        # A write takes the file's write lock at once (no deadlock on a later upgrade);
        # a read takes none: under WAL it reads a snapshot, never waiting for a writer
        # (the replayer's polls and each phase re-read used to queue behind every write
        # of every instance, and SQLite's busy wait sleeps in steps of up to 100 ms).
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")


class PostgresStateStore(_SqlStore):
    """Tables in a PostgreSQL database: application instances on many hosts share it."""

    serial = "BIGSERIAL PRIMARY KEY"
    blob = "BYTEA"
    float_type = "DOUBLE PRECISION"
    ph = "%s"
    # A sequence hands out numbers before commit, so without this an append could become
    # visible after a later one: replay or a reconcile's wait for older held entries
    # would miss it. Appends take this lock (to commit) so seq order is visibility order.
    serialize_appends = "SELECT pg_advisory_xact_lock(7307734501)"
    # CREATE TABLE IF NOT EXISTS is not atomic against itself: instances starting at once
    # both create the table's row type and one fails (pg_type_typname_nsp_index).
    serialize_ddl = "SELECT pg_advisory_xact_lock(7307734502)"

    def __init__(self, uri: ConnectionURI) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigError(
                "the PostgreSQL state store needs psycopg",
                hint="pip install 'vecmigrate[pgvector]'",
            ) from None
        self._psycopg = psycopg
        self._conninfo: dict[str, Any] = {
            "host": uri.host or "127.0.0.1",
            "port": uri.port or 5432,
            "dbname": uri.path.lstrip("/") or "postgres",
            "user": uri.user or "postgres",
            "password": uri.secret("password"),
            "connect_timeout": 10,
        }
        super().__init__()

    def _connect(self) -> Any:
        return self._psycopg.connect(**self._conninfo, autocommit=True)

    @contextmanager
    def _begin(self, conn: Any, *, write: bool = True) -> Iterator[Any]:
        with conn.transaction(), conn.cursor() as cur:
            yield cur
