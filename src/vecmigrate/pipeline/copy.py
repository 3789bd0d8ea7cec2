"""copy: one resumable copy job of a collection from a source into a target connector.

The job refuses to write a collection into itself and to replace a non-empty target
unconfirmed, creates the target, plans partitions and streams them (``streams.py``);
the partition's resume token is checkpointed only after the target acknowledged the
batch. With ``namespaces: {to: collections}`` the write step fans out to one target
collection per namespace (``pipeline/fanout.py``); the scan and its resume tokens are
unchanged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from vecmigrate.connectors.base import Connector, IfExists
from vecmigrate.connectors.identity import refuse_same_collection
from vecmigrate.errors import ConfigError, ReplaceNotConfirmed
from vecmigrate.mapping import Mapping, build_mapping
from vecmigrate.model import CollectionSchema
from vecmigrate.pipeline.deadletter import DeadLetterWriter
from vecmigrate.pipeline.dryrun import metadata_sample
from vecmigrate.pipeline.fanout import fan_out_spec, open_router
from vecmigrate.pipeline.jobstate import JobState
from vecmigrate.pipeline.options import CopyOptions, CopyResult, PartitionTask, default_job_path
from vecmigrate.pipeline.selection import MISSING_SHOWN, SelectedSource, select_reading
from vecmigrate.pipeline.streams import (
    Copier,
    OutcomeStream,
    ProgressCallback,
    run_partition_task,
    run_streams,
)

log = logging.getLogger("vecmigrate.copy")

__all__ = ["confirm_replace", "copy_collection", "require_ray", "run_partition_task"]


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
    """Copy one collection, resumably. Raises on failure; refused records are counted.

    Refuses to write a collection into itself (any spelling of the same storage) and to
    replace a non-empty target unless ``options.replace_confirmed``. A run that fails
    before the target acknowledged its first batch leaves nothing behind: the target
    collection it created is dropped and its job file removed, so the run can simply be
    started again.
    """
    options = options or CopyOptions()
    spec_target = options.mapping.target_collection if options.mapping else None
    tgt = target_collection or spec_target or collection
    refuse_same_collection(source.uri, collection, target.uri, tgt)
    started = time.perf_counter()
    # A selection reads as a source holding only the selected records; building the view
    # validates it (filter fields, id types) before anything exists on the target.
    source, source_schema = select_reading(source, collection, options.selection, options.mapping)
    fan = fan_out_spec(options.mapping)
    if fan and options.executor != "local":
        raise ConfigError(
            "namespaces to collections runs with --executor local only",
            hint="drop --executor, or copy each namespace separately",
        )
    if options.executor != "local":
        require_ray()  # before anything is created
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
    job_path = options.job_path or default_job_path(source, target, collection, tgt)
    identity = {
        "source": str(source.uri),
        "target": str(target.uri),
        "collection": collection,
        "target_collection": tgt,
        **({"namespaces_to": fan.pattern} if fan else {}),
    }
    if isinstance(source, SelectedSource) and not source.selection.empty:
        identity["selection"] = source.selection.fingerprint()
        identity["selection_text"] = source.selection.describe()
    job = JobState.open(job_path, identity, resume=options.resume, restart=options.restart)
    run = _CopyRun(source, target, collection, tgt, source_schema, mapping, options, job, fan)
    try:
        return run.execute(started, progress, on_plan)
    except BaseException:
        run.undo_if_unstarted()
        raise
    finally:
        job.close()


class _CopyRun:
    """The stateful part of ``copy_collection``: what it created, so that a failure before
    the first acknowledged batch can remove it."""

    def __init__(
        self,
        source: Connector,
        target: Connector,
        collection: str,
        tgt: str,
        source_schema: CollectionSchema,
        mapping: Mapping,
        options: CopyOptions,
        job: JobState,
        fan: Any,
    ) -> None:
        self.source, self.target, self.job = source, target, job
        self.collection, self.tgt = collection, tgt
        self.source_schema, self.mapping, self.options, self.fan = (
            source_schema,
            mapping,
            options,
            fan,
        )
        self.states = job.partitions() if options.resume else []
        # A run killed after creating the target but before planning left no partitions;
        # its --resume must reuse what it created.
        self.continuing = bool(self.states) or (
            options.resume and job.get("target_created") is not None
        )
        self.created: list[str] = []  # target collections this run made (or replaced)
        self.dead_dir = options.dead_letter_dir or job.path.with_suffix(".dead-letters")

    def _create(self, names: list[str], create: Callable[[IfExists], None]) -> None:
        """Create the target collection(s), after checking what ``replace`` would drop."""
        if self.continuing:
            create("reuse")
            return
        existing = set(self.target.list_collections())
        if self.options.if_exists == "replace":
            confirm_replace(self.target, [n for n in names if n in existing], self.options)
        self.created = [
            n for n in names if n not in existing or self.options.if_exists == "replace"
        ]
        self.job.set("target_created", self.tgt)
        create(self.options.if_exists)

    def execute(
        self,
        started: float,
        progress: ProgressCallback | None,
        on_plan: Callable[[int], None] | None,
    ) -> CopyResult:
        """Create the target, plan partitions and stream them; see ``copy_collection``."""
        source, target, job, options = self.source, self.target, self.job, self.options
        collection, tgt, mapping = self.collection, self.tgt, self.mapping
        dead = DeadLetterWriter(self.dead_dir, key=source.at_rest_key() or target.at_rest_key())
        router = None
        if self.fan:
            router = open_router(
                target,
                job,
                collection,
                tgt,
                self.fan.pattern,
                self.source_schema,
                mapping,
                dead,
                options.retry,
                options.batch_rows,
            )
            self._create(list(router.names.values()), router.create_declared)
        else:
            self._create([tgt], partial(target.create, mapping.target))
        states = self.states
        if not states:
            n = options.partitions or max(1, options.workers * 2)
            states = job.plan(source.partitions(collection, n))
            for name in router.names.values() if router else [tgt]:
                target.begin_bulk_load(name)
        job.set("status", "running")
        job.set("target_schema", mapping.target.to_json())
        result = CopyResult(
            source=str(source.uri),
            target=str(target.uri),
            collection=collection,
            target_collection=tgt,
            partitions=len(states),
            resumed=bool(self.states),
            dead_letter_dir=str(self.dead_dir),
            job=str(job.path),
            decisions=mapping.decisions,
            warnings=list(mapping.warnings),
        )
        if on_plan:
            total = (
                source.planned_total()
                if isinstance(source, SelectedSource)
                else source.count(collection)
            )
            on_plan(max(0, total - sum(s.rows for s in states)))
        todo = [s for s in states if not s.done]
        if options.executor == "local":
            copier = Copier(
                source,
                target,
                collection,
                tgt,
                self.source_schema,
                mapping,
                options,
                dead,
                router,
            )
            streams: dict[int, OutcomeStream] = {s.seq: partial(copier.outcomes, s) for s in todo}
        else:
            from vecmigrate.pipeline.ray_executor import ray_streams

            task = PartitionTask(
                source.uri.raw, target.uri.raw, collection, tgt, self.source_schema, options
            )
            streams = ray_streams(task, todo, options.executor, dead)
        run_streams(streams, job, result, options.workers, progress)
        if router is None:
            target.finalize(tgt)
        else:
            result.target_collections = router.finish()
        if isinstance(source, SelectedSource) and not source.selection.empty:
            _report_selection(source, result)
        job.set("status", "complete")
        result.rows_total = sum(s.rows for s in job.partitions())
        result.dead_letters = job.counter("dead_letters")
        result.seconds = time.perf_counter() - started
        if result.dead_letters == 0:
            result.dead_letter_dir = None
        job.set("result", json.dumps(result.to_json()))
        return result

    def undo_if_unstarted(self) -> None:
        """After a failure: if no batch was acknowledged, remove what this run created."""
        if self.continuing or self.job.get("status") == "complete":
            return
        if any(s.rows or s.token is not None for s in self.job.partitions()):
            return  # progress to resume from: keep target and job state
        for name in self.created:
            try:
                self.target.drop(name)
            except Exception as exc:  # the original error matters more; say what is left
                log.warning("could not remove %r after the failed copy: %s", name, exc)
        self.job.discard()
        if self.dead_dir.is_dir() and not any(self.dead_dir.iterdir()):
            self.dead_dir.rmdir()


def _report_selection(view: SelectedSource, result: CopyResult) -> None:
    """Put the selection and the ids it did not find into the result (and a warning)."""
    result.selection = view.selection.to_json()
    if view.ids is None:
        return
    _, missing = view.missing_ids()
    result.ids_missing = len(missing)
    result.ids_missing_examples = [str(i) for i in missing[:MISSING_SHOWN]]
    if missing:
        where = view.selection.ids_file or "the ids given"
        shown = ", ".join(result.ids_missing_examples) + (
            " ..." if len(missing) > MISSING_SHOWN else ""
        )
        result.warnings.append(
            f"{len(missing):,} of the {len(view.ids):,} ids in {where} are not in "
            f"{view.name!r} and were not copied: {shown}"
        )


def require_ray() -> None:
    """ConfigError naming the extra when Ray is not installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--executor ray needs Ray, which is not installed",
            hint="pip install 'vecmigrate[ray]'",
        ) from None


def confirm_replace(target: Connector, names: list[str], options: CopyOptions) -> None:
    """ReplaceNotConfirmed naming what ``--if-exists replace`` would drop, unless confirmed
    or every collection it would replace is empty."""
    doomed = [(n, target.count(n)) for n in names]
    doomed = [(n, c) for n, c in doomed if c]
    if doomed and not options.replace_confirmed:
        what = ", ".join(f"{n!r} ({c:,} records)" for n, c in doomed)
        raise ReplaceNotConfirmed(
            f"--if-exists replace would drop {what} on {target.uri}",
            hint="pass --yes to drop and replace it, or --if-exists reuse to write into it",
        )
