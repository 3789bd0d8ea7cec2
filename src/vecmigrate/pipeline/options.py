"""What a copy is asked to do (``CopyOptions``), what travels between its executor and
its writers (``BatchOutcome``, ``PartitionTask``), and what it did (``CopyResult``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vecmigrate.connectors.base import Connector, IfExists
from vecmigrate.mapping import MappingSpec
from vecmigrate.model import CollectionSchema, ResumeToken
from vecmigrate.pipeline.deadletter import DeadLetter
from vecmigrate.pipeline.selection import Selection
from vecmigrate.retry import RetryPolicy


@dataclass
class CopyOptions:
    """How a copy runs. Defaults suit a laptop; every one is a CLI flag."""

    workers: int = 2
    partitions: int | None = None
    batch_rows: int = 2000
    queue_depth: int = 4
    job_path: Path | None = None
    resume: bool = False
    restart: bool = False
    if_exists: IfExists = "fail"
    # ``if_exists="replace"`` drops a non-empty target only when this is True (--yes).
    replace_confirmed: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    dead_letter_dir: Path | None = None
    mapping: MappingSpec | None = None
    executor: str = "local"
    # Which records of each collection to take (--limit, --filter, --ids-file); None: all.
    selection: Selection | None = None


@dataclass
class BatchOutcome:
    """One acknowledged batch: where to resume after it and what became of its rows."""

    token: ResumeToken
    rows_read: int
    written: int
    refused: int
    retries: int
    refused_records: list[DeadLetter] = field(default_factory=list)


@dataclass(frozen=True)
class PartitionTask:
    """What a remote worker needs to copy partitions: picklable, no open clients.
    URIs carry secret references (``env:``/``file:``), resolved where the task runs."""

    source_uri: str
    target_uri: str
    collection: str
    target_collection: str
    source_schema: CollectionSchema
    options: CopyOptions


@dataclass
class CopyResult:
    """What a copy did; ``ok`` is False when any record was refused."""

    source: str
    target: str
    collection: str
    target_collection: str
    rows_read: int = 0
    rows_written: int = 0
    rows_total: int = 0
    dead_letters: int = 0
    retries: int = 0
    partitions: int = 0
    seconds: float = 0.0
    resumed: bool = False
    dead_letter_dir: str | None = None
    job: str | None = None
    decisions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # namespaces to collections: one {"namespace", "name", "rows"} per target collection
    target_collections: list[dict[str, Any]] = field(default_factory=list)
    # What was selected (Selection.to_json; None: the whole collection), and the ids of
    # --ids-file that the source does not hold: their number and the first few.
    selection: dict[str, Any] | None = None
    ids_missing: int = 0
    ids_missing_examples: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        """Throughput of this run."""
        return self.rows_written / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Nothing refused."""
        return self.dead_letters == 0

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``--json`` output."""
        out = dict(self.__dict__)
        out["rows_per_second"] = round(self.rows_per_second, 1)
        out["seconds"] = round(self.seconds, 3)
        out["ok"] = self.ok
        return out


def default_job_path(source: Connector, target: Connector, collection: str, tgt: str) -> Path:
    """Stable job file per (source, target, collection) under ``.vecmigrate/jobs``."""
    key = hashlib.sha256(f"{source.uri}|{target.uri}|{collection}|{tgt}".encode()).hexdigest()
    return Path(".vecmigrate") / "jobs" / f"{collection}-{key[:12]}.sqlite"
