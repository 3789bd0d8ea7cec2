"""The streaming half of a copy: per partition, a reader thread scans the source into a
bounded queue (back-pressure: memory stays flat) while the partition's worker conforms,
validates, splits to the target's limits and upserts. Each acknowledged batch becomes a
``BatchOutcome`` that the caller checkpoints; partitions run concurrently on a thread pool.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import TransientError
from vecmigrate.mapping import Mapping, build_mapping
from vecmigrate.model import CollectionSchema, ResumeToken
from vecmigrate.pipeline.deadletter import DeadLetterBuffer, DeadLetterSink
from vecmigrate.pipeline.fanout import NamespaceRouter
from vecmigrate.pipeline.jobstate import JobState, PartitionState
from vecmigrate.pipeline.options import BatchOutcome, CopyOptions, CopyResult, PartitionTask
from vecmigrate.pipeline.selection import select
from vecmigrate.pipeline.writer import BulkWriter, RecordWriter, StreamedPiece

log = logging.getLogger("vecmigrate.copy")
STREAM_BATCH_BYTES = 2 << 20  # a streamed write's source batches (``_streamed_batch_rows``)
PROBE_ROWS = 64  # rows read to size them
ProgressCallback = Callable[[int], None]


class Copier:
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

    def _read(
        self,
        partition: Any,
        token: ResumeToken | None,
        batch_rows: int,
        out: queue.Queue[Any],
        stop: threading.Event,
    ) -> None:
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
        failures, rng = 0, random.Random()
        while True:
            try:
                scan = self.source.scan(
                    self.collection,
                    partition,
                    token,
                    schema=self.source_schema,
                    batch_rows=batch_rows,
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

    @contextmanager
    def _scanning(
        self, partition: Any, token: ResumeToken | None, batch_rows: int | None = None
    ) -> Iterator[Iterator[Any]]:
        """The partition's batches after ``token`` (``batch_rows`` each, default the
        options'), read ahead by a thread of their own into a bounded queue: (batch, token)
        items, then None, or the source's exception."""
        q: queue.Queue[Any] = queue.Queue(self.options.queue_depth)
        stop = threading.Event()
        rows = batch_rows or self.options.batch_rows
        reader = threading.Thread(
            target=self._read, args=(partition, token, rows, q, stop), daemon=True
        )
        reader.start()
        try:
            yield iter(q.get, object())  # a sentinel never queued: get until the caller stops
        finally:
            stop.set()
            reader.join(timeout=5)

    def outcomes(self, state: PartitionState) -> Iterator[BatchOutcome]:
        """Copy one partition, yielding each batch's outcome once the target acknowledged
        it. The caller checkpoints; this runs wherever the executor runs it. A target that
        prefers large writes gets consecutive batches as one piece (``BulkWriter``): one
        outcome, resuming after the last of them, once the piece is acknowledged; one that
        appends a stream (``stream_bytes``, ``streams_into``) gets them as they are read
        (``_streamed``)."""
        token = state.token
        writer = self.writer
        if (
            isinstance(writer, RecordWriter)
            and writer.stream_bytes
            and self.target.streams_into(self.target_collection)
        ):
            resume = yield from self._streamed(state.partition, token, writer)
            if resume is None:
                return
            token = resume.token
        yield from self._pieces(state.partition, token)

    def _streamed(
        self, partition: Any, token: ResumeToken | None, writer: RecordWriter
    ) -> Generator[BatchOutcome, None, _Resume | None]:
        """Stream the partition into the target, one ``upsert_stream`` per
        ``stream_bytes`` read. A write that fails (for any reason but the data's or the
        source's own) is not retried as a stream, whose batches are gone: the partition
        goes on from the last acknowledged token by bounded pieces (``_pieces``: retries,
        bisection to the refused records), which this returns; None when it is done."""
        rows = self._streamed_batch_rows(partition, token)
        with self._scanning(partition, token, rows) as items:
            while True:
                piece = StreamedPiece(writer, writer.stream_bytes)
                try:
                    self.target.upsert_stream(self.target_collection, piece.batches(items))
                except BaseException as exc:
                    if piece.failure is not None:
                        raise piece.failure from None
                    if not isinstance(exc, Exception):
                        raise
                    log.warning(
                        "streamed write into %r failed (%s); re-reading its batches to write "
                        "them in pieces",
                        self.target_collection,
                        exc,
                    )
                    return _Resume(token)
                if piece.last is not None:  # some batches were read
                    w = piece.acknowledged()
                    token = piece.last
                    yield BatchOutcome(token, piece.rows_read, w.written, w.refused, w.retries)
                if piece.source_failure is not None:
                    raise piece.source_failure
                if piece.ended:
                    return None

    def _streamed_batch_rows(self, partition: Any, token: ResumeToken | None) -> int:
        """Rows per source batch of a streamed write: about ``STREAM_BATCH_BYTES`` at the
        size of the partition's first rows (read once, ``PROBE_ROWS``), within what the
        source takes per call, never fewer than the options ask. The checkpoint of a
        streamed write is its piece, not a batch; what costs per batch (validation,
        mapping, id keys: ~0.2 ms each) took a sixth of a LanceDB copy of 2,000-row 50-d
        batches."""
        least = self.options.batch_rows
        try:
            scan = self.source.scan(
                self.collection, partition, token, schema=self.source_schema, batch_rows=PROBE_ROWS
            )
            first = next(scan, None)
            close = getattr(scan, "close", None)
            if close is not None:
                close()
        except Exception:  # the scan proper meets it again, with its retries
            return least
        if first is None or not first[0].num_rows:
            return least
        row_bytes = max(1, int(first[0].nbytes) // int(first[0].num_rows))
        rows = min(STREAM_BATCH_BYTES // row_bytes, self.source.capabilities.max_batch_rows)
        return max(least, rows)

    def _pieces(self, partition: Any, token: ResumeToken | None) -> Iterator[BatchOutcome]:
        """Copy the partition after ``token`` batch by batch, or by ``BulkWriter`` pieces."""
        bulk = self.writer.bulk() if isinstance(self.writer, RecordWriter) else None
        held: tuple[ResumeToken, int] | None = None  # (last token, rows read) not yet written
        failure: BaseException | None = None
        with self._scanning(partition, token) as items:
            for item in items:
                if item is None or isinstance(item, BaseException):
                    failure = item
                    break
                batch, token = item
                if bulk is None:
                    w = self.writer.write(batch)
                    yield BatchOutcome(token, batch.num_rows, w.written, w.refused, w.retries)
                    continue
                bulk.add(batch)
                held = (token, batch.num_rows + (held[1] if held else 0))
                if bulk.full:
                    yield _flushed(bulk, held)
                    held = None
            # what is held is written at the end, and before a source failure is raised,
            # so that a resumed job starts after it
            if bulk is not None and held is not None:
                yield _flushed(bulk, held)
            if failure is not None:
                raise failure


@dataclass
class _Resume:
    """Where a partition whose streamed write failed goes on from (None: its start)."""

    token: ResumeToken | None


def _flushed(bulk: BulkWriter, held: tuple[ResumeToken, int]) -> BatchOutcome:
    """Write the batches ``bulk`` holds as one piece: the outcome of (last token, rows)."""
    w = bulk.flush()
    return BatchOutcome(held[0], held[1], w.written, w.refused, w.retries)


OutcomeStream = Callable[[], Iterator[BatchOutcome]]


def run_streams(
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
    """Copy one partition in a worker process: open both ends from their URIs (the source
    seen through the task's selection), rebuild the mapping, and yield outcomes whose
    refused records travel with them."""
    from vecmigrate.connectors import connect

    with connect(task.source_uri) as opened, connect(task.target_uri) as target:
        # The worker reads the same selection as the driver planned (same partitions).
        source = select(opened, task.collection, task.options.selection)
        mapping = build_mapping(
            task.source_schema,
            target.capabilities,
            task.options.mapping,
            name=task.target_collection,
            source_engine=source.engine,
            source_uri=str(source.uri),
        )
        dead = DeadLetterBuffer()
        copier = Copier(
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
