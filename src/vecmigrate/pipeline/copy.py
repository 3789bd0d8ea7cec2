"""copy: stream a collection from a source connector into a target connector.

Per partition, a reader thread scans the source into a bounded queue (back-pressure:
memory stays flat) while the partition's worker conforms, validates, splits to the
target's limits and upserts; the partition's resume token is checkpointed only after
the target acknowledged the batch. Partitions run concurrently on a thread pool.
With ``namespaces: {to: collections}`` the write step fans out to one target collection
per namespace (``pipeline/fanout.py``); the scan and its resume tokens are unchanged.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Any

import pyarrow as pa

from vecmigrate.connectors.base import Connector, IfExists
from vecmigrate.errors import ConfigError, TransientError
from vecmigrate.mapping import Mapping, build_mapping
from vecmigrate.model import CollectionSchema, ResumeToken
from vecmigrate.pipeline.deadletter import (
    DeadLetterBuffer,
    DeadLetterSink,
    DeadLetterWriter,
)
from vecmigrate.pipeline.fanout import NamespaceRouter, fan_out_spec, open_router
from vecmigrate.pipeline.jobstate import JobState, PartitionState
from vecmigrate.pipeline.options import (
    BatchOutcome,
    CopyOptions,
    CopyResult,
    PartitionTask,
    default_job_path,
)
from vecmigrate.pipeline.plan import metadata_sample
from vecmigrate.pipeline.writer import RecordWriter

log = logging.getLogger("vecmigrate.copy")
ProgressCallback = Callable[[int], None]


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
        dead: DeadLetterSink,
        router: NamespaceRouter | None = None,
    ) -> None:
        self.source, self.target = source, target
        self.collection, self.target_collection = collection, target_collection
        self.source_schema, self.mapping = source_schema, mapping
        self.target_schema = mapping.target
        self.options = options
        self.writer: RecordWriter | NamespaceRouter = router or RecordWriter(
            target,
            target_collection,
            collection,
            source_schema,
            mapping,
            dead,
            options.retry,
            options.batch_rows,
        )

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

        # A transient source failure (a dropped connection, a 503) restarts the scan
        # after the last batch handed over, with back-off: the same contract as --resume,
        # so nothing is read twice or skipped.
        token, failures, rng = state.token, 0, random.Random()
        while True:
            try:
                scan = self.source.scan(
                    self.collection,
                    state.partition,
                    token,
                    schema=self.source_schema,
                    batch_rows=self.options.batch_rows,
                )
                for item in scan:
                    if not offer(item):
                        return
                    token, failures = item[1], 0
                offer(None)
                return
            except TransientError as exc:
                failures += 1
                if failures >= self.options.retry.attempts:
                    offer(
                        TransientError(
                            f"scan of {self.collection!r} still failing after {failures} "
                            f"attempts: {exc.message}",
                            hint="the job is resumable: fix the cause and rerun with --resume",
                        )
                    )
                    return
                wait = self.options.retry.delay(failures, rng)
                log.warning("scan of %r failed (%s); retry in %.2fs", self.collection, exc, wait)
                if stop.wait(wait):
                    return
            except BaseException as exc:  # handed to the writer, which re-raises it
                offer(exc)
                return

    def outcomes(self, state: PartitionState) -> Iterator[BatchOutcome]:
        """Copy one partition, yielding each batch's outcome once the target acknowledged
        it. The caller checkpoints; this runs wherever the executor runs it."""
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
                w = self.writer.write(batch)
                yield BatchOutcome(token, batch.num_rows, w.written, w.refused, w.retries)
        finally:
            stop.set()
            reader.join(timeout=5)


OutcomeStream = Callable[[], Iterator[BatchOutcome]]


def _run_streams(
    streams: dict[int, OutcomeStream],
    job: JobState,
    result: CopyResult,
    workers: int,
    progress: ProgressCallback | None,
) -> None:
    """Consume each partition's outcomes concurrently, checkpointing after every ack."""
    lock = threading.Lock()

    def consume(seq: int, stream: OutcomeStream) -> None:
        for o in stream():
            job.checkpoint(seq, o.token, o.written, o.refused)
            with lock:
                result.rows_read += o.rows_read
                result.rows_written += o.written
                result.dead_letters += o.refused
                result.retries += o.retries
            if progress:
                progress(o.rows_read)
        job.finish_partition(seq)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for fut in [pool.submit(consume, seq, st) for seq, st in streams.items()]:
            fut.result()


def run_partition_task(task: PartitionTask, state: PartitionState) -> Iterator[BatchOutcome]:
    """Copy one partition in a worker process: open both ends from their URIs, rebuild
    the mapping, and yield outcomes whose refused records travel with them."""
    from vecmigrate.connectors import connect

    with connect(task.source_uri) as source, connect(task.target_uri) as target:
        mapping = build_mapping(
            task.source_schema,
            target.capabilities,
            task.options.mapping,
            name=task.target_collection,
            source_engine=source.engine,
            source_uri=str(source.uri),
        )
        dead = DeadLetterBuffer()
        copier = _Copier(
            source,
            target,
            task.collection,
            task.target_collection,
            task.source_schema,
            mapping,
            task.options,
            dead,
        )
        for outcome in copier.outcomes(state):
            outcome.refused_records = dead.drain()
            yield outcome


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
    fan = fan_out_spec(options.mapping)
    if fan and options.executor != "local":
        raise ConfigError(
            "namespaces to collections runs with --executor local only",
            hint="drop --executor, or copy each namespace separately",
        )
    mapping = build_mapping(
        source_schema,
        target.capabilities,
        options.mapping,
        name=tgt,
        source_engine=source.engine,
        source_uri=str(source.uri),
        sample=metadata_sample(source, collection, options.mapping),
        fan_out=fan is not None,
    )
    if mapping.spec.flatten is not None:  # remote workers get the sampled field types
        options = replace(options, mapping=mapping.spec)
    target_schema = mapping.target
    job_path = options.job_path or default_job_path(source, target, collection, tgt)
    identity = {
        "source": str(source.uri),
        "target": str(target.uri),
        "collection": collection,
        "target_collection": tgt,
        **({"namespaces_to": fan.pattern} if fan else {}),
    }
    job = JobState.open(job_path, identity, resume=options.resume, restart=options.restart)
    try:
        states = job.partitions() if options.resume else []
        resumed = bool(states)
        # A run killed after creating the target but before planning left no partitions;
        # its --resume must reuse what it created. The mark is set before create, so a
        # kill during create is covered too ("reuse" creates what is missing).
        created = options.resume and job.get("target_created") is not None
        job.set("target_created", tgt)
        if_exists: IfExists = "reuse" if resumed or created else options.if_exists
        dead_dir = options.dead_letter_dir or job_path.with_suffix(".dead-letters")
        dead = DeadLetterWriter(dead_dir, key=source.at_rest_key() or target.at_rest_key())
        router = None
        if fan:
            router = open_router(
                target,
                job,
                collection,
                tgt,
                fan.pattern,
                source_schema,
                mapping,
                dead,
                options.retry,
                options.batch_rows,
            )
            router.create_declared(if_exists)
        else:
            target.create(target_schema, if_exists=if_exists)
        if not states:
            n = options.partitions or max(1, options.workers * 2)
            states = job.plan(source.partitions(collection, n))
            for name in router.names.values() if router else [tgt]:
                target.begin_bulk_load(name)
        job.set("status", "running")
        job.set("target_schema", target_schema.to_json())
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
        if on_plan:
            on_plan(source.count(collection) - sum(s.rows for s in states))
        todo = [s for s in states if not s.done]
        if options.executor == "local":
            copier = _Copier(
                source, target, collection, tgt, source_schema, mapping, options, dead, router
            )
            streams: dict[int, OutcomeStream] = {s.seq: partial(copier.outcomes, s) for s in todo}
        else:
            from vecmigrate.pipeline.ray_executor import ray_streams

            task = PartitionTask(
                source.uri.raw, target.uri.raw, collection, tgt, source_schema, options
            )
            streams = ray_streams(task, todo, options.executor, dead)
        _run_streams(streams, job, result, options.workers, progress)
        if router is None:
            target.finalize(tgt)
        else:
            result.target_collections = router.finish()
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
