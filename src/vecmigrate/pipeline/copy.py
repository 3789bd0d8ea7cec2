"""copy: stream a collection from a source connector into a target connector.

Per partition, a reader thread scans the source into a bounded queue (back-pressure:
memory stays flat) while the partition's worker conforms, validates, splits to the
target's limits and upserts; the partition's resume token is checkpointed only after
the target acknowledged the batch. Partitions run concurrently on a thread pool.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.connectors.base import Connector, IfExists
from vecmigrate.errors import DataError, TerminalError
from vecmigrate.mapping import Mapping, MappingSpec, build_mapping
from vecmigrate.model import CollectionSchema, ResumeToken
from vecmigrate.pipeline.deadletter import DeadLetterWriter
from vecmigrate.pipeline.jobstate import JobState, PartitionState
from vecmigrate.pipeline.retry import RetryPolicy, call_with_retry
from vecmigrate.records import conform, vectors_to_numpy

log = logging.getLogger("vecmigrate.copy")
ProgressCallback = Callable[[int], None]


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
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    dead_letter_dir: Path | None = None
    mapping: MappingSpec | None = None


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


def invalid_vector_rows(
    batch: pa.RecordBatch, schema: CollectionSchema
) -> list[tuple[int, str, str]]:
    """(row, field, reason) for records no engine should receive: null/NaN/Inf vectors,
    null or empty ids."""
    checks: list[tuple[np.ndarray, str, str]] = []
    for v in schema.vectors:
        col = batch.column(v.name)
        if col.null_count:
            checks.append((col.is_null().to_numpy(zero_copy_only=False), v.name, "vector is null"))
        else:
            finite = np.isfinite(vectors_to_numpy(col)).all(axis=1)
            checks.append((~finite, v.name, "vector contains NaN or Inf"))
    ids = batch.column("id")
    if ids.null_count:
        checks.append((ids.is_null().to_numpy(zero_copy_only=False), "id", "id is null"))
    elif pa.types.is_string(ids.type):
        checks.append((np.asarray(pc.utf8_length(ids)) == 0, "id", "id is empty"))
    return [(int(i), fld, why) for mask, fld, why in checks for i in np.flatnonzero(mask)]


class _Copier:
    """One run of one copy job; see ``copy_collection``."""

    def __init__(
        self,
        source: Connector,
        target: Connector,
        collection: str,
        target_collection: str,
        source_schema: CollectionSchema,
        mapping: Mapping,
        options: CopyOptions,
        job: JobState,
        dead: DeadLetterWriter,
        result: CopyResult,
        progress: ProgressCallback | None,
    ) -> None:
        self.source, self.target = source, target
        self.collection, self.target_collection = collection, target_collection
        self.source_schema, self.mapping = source_schema, mapping
        self.target_schema = mapping.target
        self.options, self.job, self.dead, self.result = options, job, dead, result
        self.progress = progress
        self._lock = threading.Lock()
        caps = target.capabilities
        self.max_rows = max(1, min(caps.max_batch_rows, options.batch_rows))
        self.max_bytes = caps.max_batch_bytes

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for k, v in deltas.items():
                setattr(self.result, k, getattr(self.result, k) + v)

    def _read(self, state: PartitionState, out: queue.Queue[Any], stop: threading.Event) -> None:
        def offer(item: Any) -> bool:
            # Never block for good: the writer may have stopped consuming after a failure.
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            scan = self.source.scan(
                self.collection,
                state.partition,
                state.token,
                schema=self.source_schema,
                batch_rows=self.options.batch_rows,
            )
            for item in scan:
                if not offer(item):
                    return
            offer(None)
        except BaseException as exc:  # handed to the writer, which re-raises it
            offer(exc)

    def run_partition(self, state: PartitionState) -> None:
        if state.done:
            return
        q: queue.Queue[tuple[pa.RecordBatch, ResumeToken] | BaseException | None] = queue.Queue(
            self.options.queue_depth
        )
        stop = threading.Event()
        reader = threading.Thread(target=self._read, args=(state, q, stop), daemon=True)
        reader.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                batch, token = item
                self._count(rows_read=batch.num_rows)
                written, refused = self._write(batch)
                self.job.checkpoint(state.seq, token, written, refused)
                self._count(rows_written=written, dead_letters=refused)
                if self.progress:
                    self.progress(batch.num_rows)
            self.job.finish_partition(state.seq)
        finally:
            stop.set()
            reader.join(timeout=5)

    def _write(self, batch: pa.RecordBatch) -> tuple[int, int]:
        """Validate, split and upsert one source batch; returns (written, dead-lettered)."""
        bad = {
            row: (reason, fld)
            for row, fld, reason in reversed(invalid_vector_rows(batch, self.source_schema))
        }
        batch, refused = self._dead_letter(batch, bad), len(bad)
        mapped, refusals = self.mapping.apply(batch)
        if refusals:
            first = refusals[0]
            if self.mapping.spec.on_invalid == "fail":
                raise DataError(
                    first.reason,
                    collection=self.collection,
                    record_id=batch.column("id")[first.row].as_py(),
                    field=first.field,
                    hint="fix the data or set on_invalid: dead_letter in the mapping",
                )
            reasons = {r.row: (r.reason, r.field) for r in reversed(refusals)}
            batch, refused = self._dead_letter(batch, reasons), refused + len(reasons)
        try:
            converted = conform(mapped, self.target_schema)
        except TerminalError:
            return self._isolate(batch, refused)
        written = 0
        for chunk in self._split(converted):
            w, r = self._upsert_isolating(chunk)
            written, refused = written + w, refused + r
        return written, refused

    def _dead_letter(
        self, batch: pa.RecordBatch, reasons: dict[int, tuple[str, str]]
    ) -> pa.RecordBatch:
        """Write each refused row once (with its first reason); return the rows kept."""
        if not reasons:
            return batch
        for row, (reason, fld) in sorted(reasons.items()):
            self.dead.write(batch.slice(row, 1), reason, fld)
        keep = np.ones(batch.num_rows, dtype=bool)
        keep[list(reasons)] = False
        return batch.filter(pa.array(keep))

    def _isolate(self, batch: pa.RecordBatch, refused: int) -> tuple[int, int]:
        # A batch that cannot be converted as a whole: convert row by row to name the culprits.
        written = 0
        for i in range(batch.num_rows):
            row = batch.slice(i, 1)
            try:
                w, r = self._upsert_isolating(
                    conform(self.mapping.apply(row)[0], self.target_schema)
                )
            except TerminalError as exc:
                self.dead.write(row, exc.message, getattr(exc, "field", None))
                w, r = 0, 1
            written, refused = written + w, refused + r
        return written, refused

    def _split(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        per_row = max(1, batch.nbytes // max(1, batch.num_rows))
        step = max(1, min(self.max_rows, self.max_bytes // per_row))
        for start in range(0, batch.num_rows, step):
            yield batch.slice(start, step)

    def _upsert_isolating(self, batch: pa.RecordBatch) -> tuple[int, int]:
        """Upsert with retries; a refused batch is bisected down to the refused records."""
        try:
            _, retries = call_with_retry(
                lambda: self.target.upsert(self.target_collection, batch),
                self.options.retry,
                what=f"upsert into {self.target_collection!r}",
            )
            self._count(retries=retries)
            return batch.num_rows, 0
        except TerminalError as exc:
            if batch.num_rows == 1:
                rid = batch.column("id")[0].as_py()
                log.warning("record %r refused by the target: %s", rid, exc.message)
                self.dead.write(batch, exc.message, getattr(exc, "field", None))
                return 0, 1
            half = batch.num_rows // 2
            a = self._upsert_isolating(batch.slice(0, half))
            b = self._upsert_isolating(batch.slice(half))
            return a[0] + b[0], a[1] + b[1]


def copy_collection(
    source: Connector,
    target: Connector,
    collection: str,
    *,
    target_collection: str | None = None,
    options: CopyOptions | None = None,
    progress: ProgressCallback | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> CopyResult:
    """Copy one collection, resumably. Raises on failure; refused records are counted."""
    options = options or CopyOptions()
    spec_target = options.mapping.target_collection if options.mapping else None
    tgt = target_collection or spec_target or collection
    started = time.perf_counter()
    source_schema = source.describe(collection)
    mapping = build_mapping(
        source_schema,
        target.capabilities,
        options.mapping,
        name=tgt,
        source_engine=source.engine,
        source_uri=str(source.uri),
    )
    target_schema = mapping.target
    job_path = options.job_path or default_job_path(source, target, collection, tgt)
    identity = {
        "source": str(source.uri),
        "target": str(target.uri),
        "collection": collection,
        "target_collection": tgt,
    }
    job = JobState.open(job_path, identity, resume=options.resume, restart=options.restart)
    try:
        states = job.partitions() if options.resume else []
        resumed = bool(states)
        target.create(target_schema, if_exists="reuse" if resumed else options.if_exists)
        if not states:
            n = options.partitions or max(1, options.workers * 2)
            states = job.plan(source.partitions(collection, n))
        job.set("status", "running")
        job.set("target_schema", target_schema.to_json())
        dead_dir = options.dead_letter_dir or job_path.with_suffix(".dead-letters")
        result = CopyResult(
            source=str(source.uri),
            target=str(target.uri),
            collection=collection,
            target_collection=tgt,
            partitions=len(states),
            resumed=resumed,
            dead_letter_dir=str(dead_dir),
            job=str(job_path),
            decisions=mapping.decisions,
            warnings=mapping.warnings,
        )
        dead = DeadLetterWriter(dead_dir)
        if on_plan:
            on_plan(source.count(collection) - sum(s.rows for s in states))
        copier = _Copier(
            source,
            target,
            collection,
            tgt,
            source_schema,
            mapping,
            options,
            job,
            dead,
            result,
            progress,
        )
        with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
            for fut in [pool.submit(copier.run_partition, s) for s in states]:
                fut.result()
        target.finalize(tgt)
        job.set("status", "complete")
        result.rows_total = sum(s.rows for s in job.partitions())
        result.dead_letters = job.counter("dead_letters")
        result.seconds = time.perf_counter() - started
        if result.dead_letters == 0:
            result.dead_letter_dir = None
        job.set("result", json.dumps(result.to_json()))
        return result
    finally:
        job.close()
