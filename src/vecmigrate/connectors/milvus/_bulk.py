"""Milvus bulk insert for the Milvus connector (used only by it).

A copy into a collection it created empty calls ``begin_bulk_load``. When the URI names
``bulk_dir`` (a directory this process writes and the server reads at the same path: a
standalone with local storage on this machine, or a volume both mount), every batch the
copy writes is then *staged* instead of upserted: ``_bulk_stage`` makes, column by column,
the rows an upsert would send, and they are appended to an Arrow stream file in
``<bulk_dir>/vecmigrate-bulk/<db>/<collection>/`` and flushed before ``upsert`` returns,
so a batch the job checkpoints is on disk. The rows land in one of two ways:

* once ``bulk_insert_rows`` rows are staged (and the collection is still empty at the
  first import), every ``bulk_part_rows`` rows become a Parquet part (the layout Milvus
  2.3.4+ imports: one column per field, vectors as ``list<float32>``, JSON fields as the
  JSON text pymilvus sends for an upsert), recorded in ``import.json`` and imported with
  ``do_bulk_insert`` (one task per part) while the copy stages the rest, the collection
  released meanwhile; ``finalize`` imports the remainder, polls every task to completion
  (``bulk_timeout``), loads the collection and awaits its count until it shows every
  row. A failed task raises ``TerminalError`` naming the collection, the task, the file
  and the server's reason;
* fewer rows: ``finalize`` upserts them from the stage, as without bulk insert.

Bulk insert is an insert: an id imported twice is stored twice. Hence the guards: only an
empty collection this job created; an id staged a second time (a re-sent batch, a source
repeating an id) goes to a *repeats* file, upserted after the imports (the last copy
wins); and whatever a job that died left staged is landed by the next ``finalize`` on the
collection (a ``--resume``d copy's) by *upserting* it, which is correct whatever the
server already holds, after waiting for any import task it had started on those files
(found by task id, or by file name in the server's task list when the job died before
recording the id). A task that failed in an earlier run is landed the same way. A staged
file that disappeared fails the load, then and on every later ``finalize``. ``drop``
removes the staging folder; a new bulk load replaces a stale one.

MinIO/S3-backed servers read import files from their bucket, which vecmigrate does not
write: leave ``bulk_dir`` unset for them (rows are upserted).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pymilvus import utility
from pymilvus.client.types import BulkInsertState

from vecmigrate.connectors.milvus import _frameworks
from vecmigrate.connectors.milvus._bulk_stage import (
    first_copies,
    keep_last_copies,
    last_copies,
    stage_table,
)
from vecmigrate.connectors.milvus._filters import layout
from vecmigrate.errors import TerminalError
from vecmigrate.idkeys import SeenKeys
from vecmigrate.model import CollectionSchema

log = logging.getLogger("vecmigrate.milvus.bulk")

STAGE = "vecmigrate-bulk"
MANIFEST = "import.json"
BROKEN = "rows-lost.txt"
REPEATS = "repeats.arrows"  # written as repeats-<ns>.arrows
_SPOOL = "spool-*.arrows"
# Rows per Parquet part (one import task each; 2.3.5 runs a collection's tasks one after
# another, each with ~1-2 s of its own between Persisted and Completed): about 154 MB of
# 384-d vectors. 200k rows in 50k-row parts took 22 s in the bench, in 100k-row parts 19 s.
PART_ROWS = 100_000
# Rows per Parquet row group (one per staged batch of 2,000 made 2.3.5 import 200k rows
# ~5 s slower in the bench).
ROW_GROUP_ROWS = 16_384
# Rows per upsert when staged rows are upserted instead of imported.
UPSERT_ROWS = 1000
_POLL_S = 0.2  # the last task's end and the count are waited for, not computed
_DONE = BulkInsertState.ImportCompleted
_FAILED = (BulkInsertState.ImportFailed, BulkInsertState.ImportFailedAndCleaned)

# The connector's side of landing staged rows (its ``_call``-wrapped client calls).
Upsert = Callable[[list[dict[str, Any]]], None]
Count = Callable[[], int]
# How many of the given ids the collection holds.
CountIds = Callable[[list[Any]], int]
# Load the collection (releasing it first if loaded): a loaded collection picks imported
# segments up only at its next target update (up to ~30 s on 2.3, and none showed at a
# task's Completed on the test server); ``load(refresh=True)`` took ~6 s for 6k rows where
# release + load took 2 s. The collection is the job's own, not yet read by anyone.
Refresh = Callable[[], None]
# Release the collection (the first import of a bulk load does, as it is loaded after).
Release = Callable[[], None]


def supports(schema: CollectionSchema) -> bool:
    """Whether staged rows can be imported into ``schema``'s collection: vecmigrate's own
    ``json`` layout without sparse fields (Milvus 2.3 imports no sparse vectors)."""
    return layout(schema) == "json" and not _frameworks.framework(schema) and not schema.sparse


def stage_dir(bulk_dir: str, db: str, name: str) -> Path:
    """The staging folder of collection ``name`` in database ``db``."""
    return Path(bulk_dir).absolute() / STAGE / (db or "default") / name


def table_rows(table: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """Staged rows as upsert rows (JSON fields stay JSON text, which pymilvus sends as is)."""
    return list(table.to_pylist())


class BulkLoad:
    """A bulk load in progress in this process: the spool files staged batches go to.

    A row whose id was staged before (a re-sent batch, a source repeating an id) goes to
    the *repeats* spool, upserted after the imports, so no id is imported twice and the
    last copy wins as with upserts. Once ``threshold`` rows are staged, each spool that
    reaches ``PART_ROWS`` rows is handed to ``lander.import_part`` while staging goes on.
    """

    def __init__(
        self,
        name: str,
        schema: CollectionSchema,
        folder: Path,
        lander: Lander,
        version: tuple[int, int] | None,
    ) -> None:
        self.name = name
        self.schema = schema
        self.version = version  # the server's, for ``stage_table``'s checks
        self.folder = folder
        self.lander = lander
        self.paths: list[Path] = []  # spools of first copies not handed to an import
        self.repeats = folder / REPEATS
        self.repeat_paths: list[Path] = []  # repeats files, in the order written
        self.rows = 0  # first copies staged (each id once)
        self._in_spool = 0  # rows in the spool being written
        self._seen = SeenKeys()  # the ids staged
        self.seconds = 0.0  # spent in ``append`` (the debug log's breakdown)
        self._lock = threading.Lock()
        self._spool: tuple[Any, pa.ipc.RecordBatchStreamWriter] | None = None
        self._repeat: tuple[Any, pa.ipc.RecordBatchStreamWriter] | None = None

    def append(self, batch: pa.RecordBatch) -> None:
        """Stage ``batch`` (DataError for what an upsert would refuse); on disk (flushed)
        when this returns."""
        began = time.monotonic()
        table = stage_table(self.name, self.schema, batch, self.version)
        sealed: Path | None = None
        with self._lock:
            first = first_copies(table.column("id"), self._seen)
            fresh = table.filter(first) if first is not None else table
            repeat = table.filter(pc.invert(first)) if first is not None else None
            if fresh.num_rows:
                spool, self._spool = self._spool, None  # None after a failed write
                self._spool = self._write(spool, fresh, None)
                self.rows += fresh.num_rows
                self._in_spool += fresh.num_rows
            if repeat is not None:
                spool, self._repeat = self._repeat, None
                self._repeat = self._write(spool, repeat, self.repeats)
            full = self._spool is not None and self._in_spool >= self.lander.part_rows
            if full and self.rows >= self.lander.threshold:
                self._spool = self._close(self._spool)
                self._in_spool = 0
                sealed = self.paths[-1]
            self.seconds += time.monotonic() - began  # workers overlap: a sum, not wall time
        if sealed is not None and self.lander.import_part([sealed]):
            with self._lock:
                self.paths.remove(sealed)

    def _write(
        self, current: tuple[Any, Any] | None, table: pa.Table, path: Path | None
    ) -> tuple[Any, Any]:
        """Append ``table`` to a spool (opened when None: a new first-copies file, or a
        new repeats file); the spool (closed when the write fails)."""
        if current is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            if path is None:
                path = self.folder / f"spool-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.arrows"
                self.paths.append(path)
                self._in_spool = 0
                sink = pa.OSFile(str(path), "wb")
                current = (sink, pa.ipc.new_stream(sink, table.schema))
            else:
                # Appending after an earlier writer: a new stream in a new file each time.
                path = path.with_name(f"{path.stem}-{time.time_ns():020d}.arrows")
                self.repeat_paths.append(path)
                sink = pa.OSFile(str(path), "wb")
                current = (sink, pa.ipc.new_stream(sink, table.schema))
        sink, writer = current
        try:
            writer.write_table(table)
            sink.flush()
        except BaseException:
            # A batch written in part ends its file for readers; a re-sent batch is a
            # repeat now, staged in the repeats file.
            self._close(current)
            raise
        return current

    def close(self) -> None:
        """Close the spool files (idempotent)."""
        with self._lock:
            self._spool = self._close(self._spool)
            self._repeat = self._close(self._repeat)

    @staticmethod
    def _close(current: tuple[Any, Any] | None) -> None:
        if current is not None:
            sink, writer = current
            with contextlib.suppress(Exception):  # a failed file is read up to the failure
                writer.close()
            sink.close()
        return None


def spooled_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The batches of one spool file; a batch cut short (the process died writing it, so
    its upsert never returned and the job re-sends it) ends the file."""
    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))
    except (pa.ArrowInvalid, OSError):
        return  # died before the first batch was complete
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError):
            log.warning("%s ends in a partly written batch; it was never acknowledged", path)
            return


def _all_batches(spools: list[Path]) -> Iterator[pa.RecordBatch]:
    for spool in spools:
        yield from spooled_batches(spool)


def write_parts(
    spools: list[Path], folder: Path, part_rows: int = PART_ROWS
) -> list[dict[str, Any]]:
    """The spools' rows as Parquet parts of at most ``part_rows`` rows, each id once; the
    parts as manifest entries (file, rows, task)."""
    return list(iter_parts(spools, folder, part_rows))


def iter_parts(
    spools: list[Path], folder: Path, part_rows: int = PART_ROWS
) -> Iterator[dict[str, Any]]:
    """``write_parts``, yielding each part once its file is complete (so that its import
    can start while the next one is written). Uncompressed: float vectors do not shrink,
    and both sides would spend CPU trying."""
    ids = pa.chunked_array([b.column(0) for b in _all_batches(spools)])
    keep = last_copies(ids)
    parts: list[dict[str, Any]] = []
    writer: pq.ParquetWriter | None = None
    group: list[pa.RecordBatch] = []  # the rows of the part's next row group
    start = 0
    began = time.monotonic()
    for batch in _all_batches(spools):
        if keep is not None:
            mask = keep.slice(start, batch.num_rows)
            start += batch.num_rows
            batch = batch.filter(mask)
        while batch.num_rows:
            if writer is None:
                path = folder / f"part-{len(parts):05d}-{uuid.uuid4().hex[:8]}.parquet"
                writer = pq.ParquetWriter(str(path), batch.schema, compression="none")
                parts.append({"file": str(path), "rows": 0, "task": None})
                began = time.monotonic()
            room = part_rows - parts[-1]["rows"]
            piece, batch = batch.slice(0, room), batch.slice(room)
            group.append(piece)
            parts[-1]["rows"] += piece.num_rows
            done = parts[-1]["rows"] >= part_rows
            if done or sum(g.num_rows for g in group) >= ROW_GROUP_ROWS:
                writer.write_table(pa.Table.from_batches(group))
                group = []
            if done:
                writer.close()
                writer = None
                log.debug("part %s written in %.1f s", path.name, time.monotonic() - began)
                yield parts[-1]
    if writer is not None:
        if group:
            writer.write_table(pa.Table.from_batches(group))
        writer.close()
        log.debug("part %s written in %.1f s", path.name, time.monotonic() - began)
        yield parts[-1]


def _write_json(path: Path, value: Any) -> None:
    """Replace ``path`` atomically (a reader sees the old or the new manifest, whole)."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Lander:
    """Lands what is staged for one collection: imports a finished bulk load, settles
    what an earlier run left, or upserts. ``call(what, fn, *args)`` is the connector's
    error-translating call; ``using`` its pymilvus connection alias."""

    def __init__(
        self,
        name: str,
        folder: Path,
        *,
        using: str,
        call: Callable[..., Any],
        upsert: Upsert,
        count: Count,
        count_ids: CountIds,
        refresh: Refresh,
        release: Release,
        threshold: int,
        timeout: float,
        where: str,
        part_rows: int = PART_ROWS,
    ) -> None:
        self.name, self.folder, self.using = name, folder, using
        self.call, self.upsert, self.count, self.count_ids = call, upsert, count, count_ids
        self.refresh, self.release = refresh, release
        self.threshold, self.timeout, self.where = threshold, timeout, where
        self.part_rows = part_rows
        self.imported: list[int] = []  # task ids of imports this lander completed
        self._lock = threading.Lock()
        self._parts: list[dict[str, Any]] = []  # parts this process started importing
        self._allowed: bool | None = None  # the collection was empty at the first import
        self._started: float | None = None

    def import_part(self, spools: list[Path]) -> bool:
        """Start importing the rows of ``spools`` (complete files of first copies) as
        Parquet parts; False when the collection is no longer empty (then they are upserted
        at ``land``). The spools are removed once the manifest lists their parts."""
        with self._lock:
            if self._allowed is None:
                self._allowed = self.count() == 0
                self._started = time.monotonic()
                if self._allowed:
                    self.release()
            if not self._allowed:
                return False
            manifest_path = self.folder / MANIFEST
            manifest = {"collection": self.name, "parts": self._parts}
            # Each part is in the manifest before its import starts, and its task id right
            # after: a run that dies here leaves what the next ``land`` settles (``_settle``;
            # the spools, kept until all their parts are listed, are upserted then too).
            for part in iter_parts(spools, self.folder, self.part_rows):
                self._parts.append(part)
                _write_json(manifest_path, manifest)
                part["task"] = self.call(
                    f"{self.where}: bulk insert into {self.name!r} from {part['file']}",
                    utility.do_bulk_insert,
                    self.name,
                    files=[part["file"]],
                    using=self.using,
                )
                _write_json(manifest_path, manifest)
                log.debug("%s: task %d imports %d rows", self.name, part["task"], part["rows"])
            for spool in spools:
                spool.unlink()
            return True

    # -- entry point -------------------------------------------------------------------------
    def land(self, load: BulkLoad | None) -> None:
        """Land everything staged for the collection; remove the folder when done.

        ``load`` is this process's bulk load (the collection was empty when it began), or
        None: then whatever is staged was left by a run that died, and is upserted.
        """
        broken = self.folder / BROKEN
        if load is not None:
            load.close()
            log.debug(
                "%s: finalize: %d rows staged, %.1f s in append (summed over workers)",
                self.name,
                load.rows,
                load.seconds,
            )
            missing = [p for p in [*load.paths, *load.repeat_paths] if not p.exists()]
            if missing:  # rows the job was told were written: never drop them silently
                broken.write_text(
                    f"staged file {missing[0]} of collection {self.name!r} was removed "
                    "before its rows were bulk inserted"
                )
        if broken.exists():  # a --resume cannot bring the rows back either
            raise TerminalError(
                broken.read_text(),
                hint="copy the collection again (--restart); keep bulk_dir for vecmigrate",
            )
        manifest = self.folder / MANIFEST
        if load is None:  # what a run that died left: settled, the rest upserted
            if manifest.exists():
                self._settle(json.loads(manifest.read_text()), manifest)
            for spool in sorted(self.folder.glob(_SPOOL)):
                self._upsert_file(spool)
            for spool in sorted(self.folder.glob("repeats-*.arrows")):
                self._upsert_file(spool)
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        rest = [p for p in load.paths if p.exists()]
        bulk = self._parts or (load.rows >= self.threshold and self.count() == 0)
        if rest and bulk and self.import_part(rest):
            rest = []  # otherwise (not empty at the first import) they are upserted
        if self._parts:
            self._finish_import(load.rows)
        elif load.rows:
            log.info(
                "%s: upserting %d staged rows (below bulk_insert_rows=%d, or the "
                "collection is no longer empty)",
                self.name,
                load.rows,
                self.threshold,
            )
        for spool in [*rest, *load.repeat_paths]:  # repeats after first copies: last wins
            self._upsert_file(spool)
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- import --------------------------------------------------------------------------------
    def _finish_import(self, rows: int) -> None:
        """Wait for the imports this process started and for all ``rows`` to show
        (``timeout`` counts from here: the first imports may have begun long before)."""
        first = self._started or time.monotonic()
        started = time.monotonic()
        parts = self._parts
        manifest_path = self.folder / MANIFEST
        for part in parts:
            state = self._wait(int(part["task"]), started)
            if state.state in _FAILED:
                raise TerminalError(
                    f"Milvus bulk insert into collection {self.name!r} failed (task "
                    f"{part['task']}, file {part['file']}): {state.failed_reason}",
                    hint="fix the cause and run the copy again with --resume: what is still "
                    "staged is then upserted instead (or unset bulk_dir)",
                )
            self.imported.append(int(part["task"]))
        log.debug("%s: import tasks done after %.1f s", self.name, time.monotonic() - started)
        self.refresh()
        log.debug("%s: loaded after %.1f s", self.name, time.monotonic() - started)
        self._await_count(rows, started)
        log.debug("%s: count right after %.1f s", self.name, time.monotonic() - started)
        manifest_path.unlink()
        log.info(
            "%s: bulk inserted %d rows in %d task(s): %.1f s after finalize, %.1f s after "
            "the first import began",
            self.name,
            rows,
            len(parts),
            time.monotonic() - started,
            time.monotonic() - first,
        )

    def _wait(self, task: int, started: float) -> Any:
        """The task's final state; TerminalError after ``timeout`` seconds."""
        last = None
        while True:
            state = self.call(
                f"{self.where}: bulk insert state of task {task} ({self.name!r})",
                utility.get_bulk_insert_state,
                task,
                using=self.using,
            )
            if state.state != last:  # each state once, timed from ``started``
                log.debug(
                    "%s: task %d %s at %.1f s",
                    self.name,
                    task,
                    state.state_name,
                    time.monotonic() - started,
                )
                last = state.state
            if state.state == _DONE or state.state in _FAILED:
                return state
            if time.monotonic() - started > self.timeout:
                raise TerminalError(
                    f"Milvus bulk insert into collection {self.name!r} (task {task}) did not "
                    f"finish within {self.timeout:.0f} s; it is {state.state_name}",
                    hint="run the copy again with --resume once the task has ended (it waits "
                    "for it, and upserts what it did not import), or raise bulk_timeout",
                )
            time.sleep(_POLL_S)

    def _await_count(self, rows: int, started: float) -> None:
        """Wait until the collection shows ``rows`` rows: a completed task's segments
        become readable a moment later; more or fewer at the deadline is an error."""
        while True:
            seen = self.count()
            if seen == rows:
                return
            if seen > rows or time.monotonic() - started > self.timeout:
                raise TerminalError(
                    f"after bulk insert, collection {self.name!r} holds {seen:,} rows; "
                    f"{rows:,} were imported into it empty",
                    hint="drop it and copy again (or copy without bulk_dir)",
                )
            time.sleep(_POLL_S)

    # -- what an earlier run left ------------------------------------------------------------
    def _settle(self, manifest: dict[str, Any], path: Path) -> None:
        """Parts of an import an earlier run began: a part its task completed is there;
        any other part is upserted, after its task (if one was started) has ended."""
        started = time.monotonic()
        tasks = self._tasks_by_file()
        imported: list[Path] = []
        for part in manifest["parts"]:
            task = part.get("task") or tasks.get(part["file"])
            if task is not None and self._wait(int(task), started).state == _DONE:
                self.imported.append(int(task))
                imported.append(Path(part["file"]))
            else:
                self._upsert_file(Path(part["file"]))
        if imported:
            self.refresh()
        for part_file in imported:
            self._await_ids(part_file, started)
        path.unlink()

    def _await_ids(self, part: Path, started: float) -> None:
        """Wait until every id of an imported part is readable (the collection may hold
        other rows by now, so its count proves nothing)."""
        ids = pq.read_table(str(part), columns=["id"]).column("id").to_pylist()
        for start in range(0, len(ids), UPSERT_ROWS):
            chunk = ids[start : start + UPSERT_ROWS]
            while (seen := self.count_ids(chunk)) < len(chunk):
                if time.monotonic() - started > self.timeout:
                    raise TerminalError(
                        f"collection {self.name!r} shows {seen} of {len(chunk)} ids of "
                        f"{part}, imported {self.timeout:.0f} s ago",
                        hint="run the copy again with --resume (the part is then upserted "
                        "if its import is still unreadable)",
                    )
                time.sleep(_POLL_S)

    def _tasks_by_file(self) -> dict[str, int]:
        """The collection's import tasks the server remembers, by file (the latest each)."""
        listed = self.call(
            f"{self.where}: list bulk insert tasks of {self.name!r}",
            utility.list_bulk_insert_tasks,
            collection_name=self.name,
            using=self.using,
        )
        out: dict[str, int] = {}
        for t in sorted(listed, key=lambda t: t.task_id):
            for f in t.files.split(","):
                out[f.strip()] = int(t.task_id)
        return out

    def _upsert_file(self, path: Path) -> None:
        """Upsert the rows of a spool or part file (idempotent: right whatever is there)."""
        if not path.exists():
            raise TerminalError(
                f"staged file {path} of collection {self.name!r} is missing; its rows "
                "cannot be landed",
                hint="copy the collection again (--restart)",
            )
        if path.suffix == ".parquet":
            batches: Iterator[pa.RecordBatch] = pq.ParquetFile(str(path)).iter_batches(UPSERT_ROWS)
        else:
            batches = spooled_batches(path)
        for batch in batches:
            for start in range(0, batch.num_rows, UPSERT_ROWS):
                self.upsert(table_rows(keep_last_copies(batch.slice(start, UPSERT_ROWS))))
