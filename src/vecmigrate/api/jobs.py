"""Migration files, dry runs and job files: ``run``, ``dry_run``, ``job_path``, ``jobs``,
``remove_job``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vecmigrate.api.stores import (
    Store,
    check_copy_options,
    opened,
    parse_uri,
    plan_target,
    refuse_writing_into_source,
    require_collection,
)
from vecmigrate.connectors import Connector
from vecmigrate.mapping import MappingSpec
from vecmigrate.pipeline.migration import (
    CollectionRun,
    MigrationFile,
    ProgressFactory,
    RunReport,
    run_migration,
)
from vecmigrate.pipeline.options import CopyOptions
from vecmigrate.uri import redact


def run(
    migration: str | Path | MigrationFile,
    *,
    resume: bool = False,
    restart: bool = False,
    state: str | Path | None = None,
    replace_confirmed: bool = False,
    progress: ProgressFactory | None = None,
    on_collection: Callable[[CollectionRun], None] | None = None,
) -> RunReport:
    """Run a migration file (a path, or a ``MigrationFile``): each collection copied with
    ``copy`` and verified as it is, in order; resumable as a whole with ``resume=True``
    (the run state file records the finished collections, each copy its own job).
    ``progress(name)`` gives an ``(advance, set_total)`` context per collection."""
    return run_migration(
        migration,
        resume=resume,
        restart=restart,
        state=Path(state) if state is not None else None,
        replace_confirmed=replace_confirmed,
        progress=progress,
        on_collection=on_collection,
    )


@dataclass(frozen=True)
class DryRunReport:
    """What a copy would do, nothing touched (``copy --dry-run``): per collection the target
    collection(s) it would create, reuse or replace, the records it would write, the
    mapping decisions, and ``error``: what would stop it (None: nothing)."""

    source: str
    target: str
    collections: tuple[dict[str, Any], ...]

    @property
    def ok(self) -> bool:
        """Nothing would stop the copy."""
        return all(c["error"] is None for c in self.collections)

    def to_json(self) -> dict[str, Any]:
        """JSON form (docs/cli-json.md)."""
        return {
            "dry_run": True,
            "source": redact(self.source),
            "target": redact(self.target),
            "ok": self.ok,
            "rows": sum(c["rows"] for c in self.collections),
            "collections": list(self.collections),
        }


def dry_run(
    source: Store,
    target: Store,
    collections: list[str] | None = None,
    *,
    target_collection: str | None = None,
    options: CopyOptions | None = None,
    state_dir: str | Path | None = None,
) -> DryRunReport:
    """What ``copy`` of ``collections`` (default: every one) would create and write, read
    from both stores without changing either: no job file, no target collection, no
    dead-letter directory (a local target that does not exist is not created)."""
    from vecmigrate.pipeline.dryrun import dry_run_copy

    opts = check_copy_options(options or CopyOptions())
    results = []
    with opened(source, read_only=True) as src, plan_target(target, False) as dst:
        names = collections or src.list_collections()
        for name in names:
            require_collection(src, name)
            refuse_writing_into_source(source, target, name, target_collection, opts.mapping)
            job = opts.job_path or job_path(
                source, target, name, target_collection, opts.mapping, state_dir
            )
            results.append(
                dry_run_copy(
                    src,
                    dst,
                    name,
                    target_collection=target_collection,
                    spec=opts.mapping,
                    if_exists=opts.if_exists,
                    job=str(job),
                    selection=opts.selection,
                )
            )
    src_uri = source if isinstance(source, str) else source.uri.raw
    dst_uri = target if isinstance(target, str) else target.uri.raw
    return DryRunReport(src_uri, dst_uri, tuple(results))


DEFAULT_STATE_DIR = Path(".vecmigrate")


def job_path(
    source: Store,
    target: Store,
    collection: str,
    target_collection: str | None = None,
    mapping: MappingSpec | None = None,
    state_dir: str | Path | None = None,
) -> Path:
    """The job file a copy of ``collection`` keeps under ``state_dir`` (default
    ``./.vecmigrate``): ``<state_dir>/jobs/<collection>-<hash>.sqlite``, the same name the
    pipeline gives it."""
    from types import SimpleNamespace
    from typing import cast

    from vecmigrate.pipeline.options import default_job_path

    def stand_in(store: Store) -> Connector:
        uri = store.uri if isinstance(store, Connector) else parse_uri(store)
        return cast(Connector, SimpleNamespace(uri=uri))

    spec_target = mapping.target_collection if mapping else None
    tgt = target_collection or spec_target or collection
    path = default_job_path(stand_in(source), stand_in(target), collection, tgt)
    root = Path(state_dir) if state_dir is not None else DEFAULT_STATE_DIR
    return root / path.relative_to(DEFAULT_STATE_DIR)


@dataclass(frozen=True)
class JobInfo:
    """A job file under a state directory: what it copies and how far it got."""

    name: str
    path: str
    source: str | None
    target: str | None
    collection: str | None
    target_collection: str | None
    status: str | None
    rows: int
    partitions: int
    partitions_done: int
    dead_letters: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The file could be read."""
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """JSON form (docs/cli-json.md)."""
        return {k: redact(v) if isinstance(v, str) else v for k, v in self.__dict__.items()}


def _read_job(path: Path) -> JobInfo:
    import json
    import sqlite3

    name = path.name.removesuffix(".sqlite")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            job = dict(db.execute("SELECT key, value FROM job").fetchall())
            rows, parts, done = db.execute(
                "SELECT coalesce(sum(rows), 0), count(*), coalesce(sum(done), 0) FROM partition"
            ).fetchone()
            dead = db.execute("SELECT value FROM counter WHERE name='dead_letters'").fetchone()
        finally:
            db.close()
        ident = json.loads(job.get("identity") or "{}")
    except (sqlite3.Error, ValueError) as exc:
        return JobInfo(name, str(path), None, None, None, None, None, 0, 0, 0, 0, str(exc))
    return JobInfo(
        name,
        str(path),
        ident.get("source"),
        ident.get("target"),
        ident.get("collection"),
        ident.get("target_collection"),
        job.get("status") or "planned",
        int(rows),
        int(parts),
        int(done),
        int(dead[0]) if dead else 0,
    )


def jobs(state_dir: str | Path | None = None) -> tuple[JobInfo, ...]:
    """The job files under ``state_dir`` (default ``./.vecmigrate``), sorted by name;
    read-only (a missing directory holds no jobs)."""
    root = (Path(state_dir) if state_dir is not None else DEFAULT_STATE_DIR) / "jobs"
    if not root.is_dir():
        return ()
    return tuple(_read_job(p) for p in sorted(root.glob("*.sqlite")))


def remove_job(job: JobInfo, *, dead_letters: bool = False) -> list[str]:
    """Delete a job file (with its SQLite -wal/-shm files) and, with ``dead_letters``,
    its dead-letter directory; the paths removed."""
    import shutil

    removed = []
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{job.path}{suffix}")
        if p.exists():
            p.unlink()
            removed.append(str(p))
    dead = Path(job.path).with_suffix(".dead-letters")
    if dead_letters and dead.is_dir():
        shutil.rmtree(dead)
        removed.append(str(dead))
    return removed
