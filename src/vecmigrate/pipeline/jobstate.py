"""Job state in a SQLite file: per-partition resume tokens written only after the target
acknowledged the batch, so a resumed job re-sends at most the batches in flight."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from vecmigrate.errors import ConfigError
from vecmigrate.model import Partition, ResumeToken

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS partition (
    seq INTEGER PRIMARY KEY,
    spec TEXT NOT NULL,
    token TEXT,
    rows INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass
class PartitionState:
    """Where one partition stands."""

    seq: int
    partition: Partition
    token: ResumeToken | None
    rows: int
    done: bool


class JobState:
    """A resumable job's durable state. Safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # WAL + NORMAL survives a killed process (not a power cut) at a fraction of the cost.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls, path: Path, identity: dict[str, str], *, resume: bool, restart: bool = False
    ) -> JobState:
        """Open a job file; refuse to silently restart or to resume a different job (one
        that selected other records: ``selection`` in ``identity``)."""
        exists = path.exists()
        state = cls(path)
        stored = state.get("identity")
        if exists and stored is not None:
            before = json.loads(stored)
            if _same_but_selection(before, identity):
                # The same copy with other records selected: resuming would mix the two
                # selections; starting over (--restart, or after a finished run) is fine.
                if resume:
                    state.close()
                    raise ConfigError(
                        f"job file {path} was started with another selection "
                        f"({before.get('selection_text', 'all records')}; now "
                        f"{identity.get('selection_text', 'all records')}): --resume would "
                        "mix the two",
                        hint="rerun with the selection (--limit, --filter, --ids-file) of the "
                        "interrupted run, or pass --restart to start over with this one",
                    )
                before = identity  # not resuming: the checks below apply as to this job
            if before != identity:
                state.close()
                raise ConfigError(
                    f"job file {path} belongs to another job ({stored})",
                    hint="pass a different --job path",
                )
            if not resume and not restart and state.get("status") != "complete":
                state.close()
                raise ConfigError(
                    f"job file {path} holds an unfinished run of this job",
                    hint="pass --resume to continue it, or --restart to start over",
                )
            if not resume:
                state.reset()
        state.set("identity", json.dumps(identity))
        return state

    def reset(self) -> None:
        """Forget partitions and counters (start over)."""
        with self._lock:
            self._db.executescript("DELETE FROM partition; DELETE FROM counter; DELETE FROM job;")

    def get(self, key: str) -> str | None:
        """A job-level value."""
        with self._lock:
            row = self._db.execute("SELECT value FROM job WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, key: str, value: str) -> None:
        """Store a job-level value."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO job VALUES (?, ?)", (key, value))

    def partitions(self) -> list[PartitionState]:
        """Partitions recorded for this job (empty before the first run planned them)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, spec, token, rows, done FROM partition ORDER BY seq"
            ).fetchall()
        return [PartitionState(s, Partition.from_json(p), t, r, bool(d)) for s, p, t, r, d in rows]

    def plan(self, partitions: list[Partition]) -> list[PartitionState]:
        """Record the partitions of a new run."""
        with self._lock:
            self._db.executemany(
                "INSERT INTO partition (seq, spec) VALUES (?, ?)",
                [(i, p.to_json()) for i, p in enumerate(partitions)],
            )
        return self.partitions()

    def checkpoint(self, seq: int, token: ResumeToken, rows: int, dead: int = 0) -> None:
        """Record that every batch up to ``token`` is acknowledged by the target."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "UPDATE partition SET token=?, rows=rows+? WHERE seq=?", (token, rows, seq)
            )
            if dead:
                self._db.execute(
                    "INSERT INTO counter VALUES ('dead_letters', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value=value+excluded.value",
                    (dead,),
                )
            self._db.execute("COMMIT")

    def finish_partition(self, seq: int) -> None:
        """Mark a partition fully copied."""
        with self._lock:
            self._db.execute("UPDATE partition SET done=1 WHERE seq=?", (seq,))

    def counter(self, name: str) -> int:
        """A running total kept across resumed runs."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counter WHERE name=?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        """Close the database (again is a no-op)."""
        self._db.close()

    def discard(self) -> None:
        """Close and delete the job file: nothing was done that a rerun must know of."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


_SELECTION_KEYS = ("selection", "selection_text")


def _same_but_selection(before: dict[str, str], now: dict[str, str]) -> bool:
    """The two identities differ in what they select and in nothing else."""

    def rest(d: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in d.items() if k not in _SELECTION_KEYS}

    differs = any(before.get(k) != now.get(k) for k in _SELECTION_KEYS)
    return differs and rest(before) == rest(now)
