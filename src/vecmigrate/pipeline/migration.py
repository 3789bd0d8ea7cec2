"""The migration file: one YAML file for many collections, run and resumed as a whole.

``vecmigrate run migration.yaml`` (Python: ``vecmigrate.run(path_or_model)``)::

    version: 1
    source: chroma:///data/chroma
    target: lancedb:///data/lance
    defaults: {if_exists: fail, workers: 2, batch_rows: 2000, executor: local, verify: true}
    collections:
      - name: docs
        target: docs_v2                       # name on the target (default: the same)
        mapping: {fields: {title: {rename: headline}}}
      - name: events
        mapping: maps/events.yaml             # a mapping file, relative to this file
        verify: {queries: 50, gates: {max_recall_drop: 0.02}}

Each collection is copied with the public API's ``copy`` (counts and content digests
checked after, as ``vecmigrate copy`` does; ``verify: false`` skips them, a ``verify``
section also runs ``vecmigrate verify`` with its gates). A run state file (JSON, written
atomically) records which collections finished; each collection's copy keeps its own
resumable job file beside it, so ``--resume`` skips the finished collections and continues
the interrupted one where its job stopped. The published JSON Schema of the file is
``MigrationFile.model_json_schema()`` (docs/migration.schema.json).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from vecmigrate.errors import ConfigError
from vecmigrate.mapping import MappingSpec
from vecmigrate.pipeline.options import CopyOptions
from vecmigrate.verify.gates import VerifyConfig

IfExists = Literal["fail", "reuse", "replace"]
Counter = Callable[[int], None]
# A progress display per collection: a context manager giving (advance, set_total).
ProgressFactory = Callable[[str], AbstractContextManager[tuple[Counter, Counter]]]


def _mapping_kind(value: Any) -> str:
    return "path" if isinstance(value, str | Path) else "inline"


MappingRef = Annotated[
    Annotated[MappingSpec, Tag("inline")] | Annotated[str, Tag("path")],
    Discriminator(_mapping_kind),
]
_TAGS = {"inline", "path"}


def _check_executor(value: str | None) -> str | None:
    if value is None or value in ("local", "ray") or value.startswith("ray:"):
        return value
    raise ValueError(f"must be local, ray or ray:ADDRESS, not {value!r}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Defaults(_Model):
    """Settings of every collection that does not set its own."""

    if_exists: IfExists = Field(
        default="fail", description="when the target collection exists: fail, reuse or replace"
    )
    verify: bool | VerifyConfig = Field(
        default=True,
        description="true: counts and content digests after each copy (as `copy` does); "
        "false: no checks; a verify section (queries, k, gates, ...): also run `verify` with "
        "its gates",
    )
    executor: str = Field(default="local", description="local, ray or ray:ADDRESS")
    workers: int = Field(default=2, ge=1, description="partitions copied concurrently")
    batch_rows: int = Field(default=2000, ge=1, description="rows per read batch")

    _executor = field_validator("executor")(_check_executor)


class CollectionEntry(_Model):
    """One collection to migrate; unset settings come from ``defaults``."""

    name: str = Field(min_length=1, description="the source collection")
    target: str | None = Field(
        default=None, min_length=1, description="its name on the target (default: name)"
    )
    mapping: MappingRef | None = Field(
        default=None,
        description="the mapping inline (the keys of docs/mapping.schema.json) or the path "
        "of a mapping file, relative to the migration file",
    )
    if_exists: IfExists | None = None
    verify: bool | VerifyConfig | None = None
    executor: str | None = None
    workers: int | None = Field(default=None, ge=1)
    batch_rows: int | None = Field(default=None, ge=1)

    _executor = field_validator("executor")(_check_executor)


class MigrationFile(_Model):
    """A whole migration file."""

    version: Literal[1] = Field(default=1, description="format version of this file")
    source: str = Field(min_length=1, description="source URI")
    target: str = Field(min_length=1, description="target URI")
    state: str | None = Field(
        default=None,
        description="run state file, relative to the migration file (default: "
        ".vecmigrate/runs/<file name>.json beside it); job files go in <state>.jobs/",
    )
    defaults: Defaults = Field(default_factory=Defaults)
    collections: list[CollectionEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> MigrationFile:
        seen: dict[str, str] = {}
        for entry in self.collections:
            if entry.name in seen.values():
                raise ValueError(f"collection {entry.name!r} is listed twice")
            spec_target = (
                entry.mapping.target_collection if isinstance(entry.mapping, MappingSpec) else None
            )
            tgt = entry.target or spec_target or entry.name
            if tgt in seen:
                raise ValueError(
                    f"collections {seen[tgt]!r} and {entry.name!r} would both be written to "
                    f"{tgt!r} on the target"
                )
            seen[tgt] = entry.name
        return self

    @classmethod
    def load(cls, path: Path) -> MigrationFile:
        """Read and validate a migration file; every error names the file and the key."""
        hint = "the keys are described in docs/migration-file.md (docs/migration.schema.json)"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"migration file {path} does not exist", hint=hint) from None
        except IsADirectoryError:
            raise ConfigError(f"migration file {path} is a directory", hint=hint) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read migration file {path}: {exc}", hint=hint) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(
                f"migration file {path} is not valid YAML{where}: {problem}", hint=hint
            ) from None
        if not isinstance(data, dict):
            found = "nothing" if data is None else f"a {type(data).__name__}"
            raise ConfigError(
                f"migration file {path} holds {found}, not a mapping of keys "
                "(source, target, collections, ...)",
                hint=hint,
            )
        try:
            model = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(
                f"migration file {path}: {describe_error(exc, data)}", hint=hint
            ) from None
        model._base = path.resolve().parent
        model._stem = path.stem
        return model

    # Where relative paths (mappings, state) are resolved; the file's folder when loaded.
    _base: Path | None = None
    _stem: str | None = None

    def base(self) -> Path:
        """The folder relative mapping and state paths are read from."""
        return self._base or Path.cwd()

    def state_path(self, override: Path | None = None) -> Path:
        """The run state file: ``override``, the ``state`` key, or the default."""
        if override is not None:
            return override
        if self.state:
            return self.base() / self.state
        stem = self._stem or f"migration-{_digest(self.identity())[:12]}"
        return self.base() / ".vecmigrate" / "runs" / f"{stem}.json"

    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with the interrupted one."""
        return {
            "source": self.source,
            "target": self.target,
            "collections": [
                {
                    "name": e.name,
                    "target": e.target,
                    "mapping": (
                        e.mapping.model_dump(mode="json", by_alias=True)
                        if isinstance(e.mapping, MappingSpec)
                        else e.mapping
                    ),
                }
                for e in self.collections
            ],
        }


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def describe_error(exc: ValidationError, data: Any) -> str:
    """The first validation error as ``collections[1] (docs).mapping.fields.x: message``."""
    first = exc.errors()[0]
    parts: list[str] = []
    node: Any = data
    loc = first["loc"]
    for i, item in enumerate(loc):
        if isinstance(item, str) and (
            item in _TAGS or not isinstance(node, dict) or (item not in node and i < len(loc) - 1)
        ):
            continue  # a union member's tag, not a key of the file
        if isinstance(item, int):
            label = f"[{item}]"
            node = node[item] if isinstance(node, list) and item < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                label += f" ({node['name']})"
            parts.append(label)
        else:
            node = node.get(item) if isinstance(node, dict) else None
            parts.append(("." if parts else "") + str(item))
    where = "".join(parts) or "(top level)"
    msg = str(first["msg"])
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key missing"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{where}: {msg}"


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CollectionRun:
    """What became of one collection: ``copied`` now, ``done`` in an earlier run (skipped
    by ``--resume``), or ``failed`` (a check or gate failed, or records were refused)."""

    name: str
    target_collection: str
    status: Literal["copied", "done", "failed"]
    copy: dict[str, Any] = field(default_factory=dict)
    verify: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Copied (now or before) with every check and gate passed."""
        return self.status != "failed"

    def to_json(self) -> dict[str, Any]:
        """JSON form: name, target, status, ok, the copy report, the verify report."""
        return {
            "collection": self.name,
            "target_collection": self.target_collection,
            "status": self.status,
            "ok": self.ok,
            "copy": self.copy,
            "verify": self.verify,
        }


@dataclass(frozen=True)
class RunReport:
    """A whole migration file's run: one ``CollectionRun`` per collection, in file order."""

    source: str
    target: str
    state: str
    resumed: bool
    collections: tuple[CollectionRun, ...]

    @property
    def ok(self) -> bool:
        """Every collection copied and verified."""
        return all(c.ok for c in self.collections)

    def to_json(self) -> dict[str, Any]:
        """JSON form: ``collections`` holds one entry per collection."""
        from vecmigrate.uri import redact

        return {
            "source": redact(self.source),
            "target": redact(self.target),
            "state": self.state,
            "resumed": self.resumed,
            "ok": self.ok,
            "rows_written": sum(
                int(c.copy.get("rows_written", 0)) for c in self.collections if c.status != "done"
            ),
            "collections": [c.to_json() for c in self.collections],
        }


# -- run state ---------------------------------------------------------------------------------
class RunState:
    """The run state file: identity, overall status, each collection's status and report."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    @classmethod
    def open(cls, path: Path, identity: dict[str, Any], *, resume: bool, restart: bool) -> RunState:
        """Open (or start) the state; refuse to resume another migration or to silently
        start over an unfinished one."""
        data: dict[str, Any] | None = None
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"run state file {path} cannot be read: {exc}",
                    hint="pass --restart to start over (or remove the file)",
                ) from None
        if data is not None and not restart:
            if data.get("identity") != identity:
                raise ConfigError(
                    f"run state file {path} belongs to another migration (source, target, "
                    "collections or mappings differ)",
                    hint="pass --restart to start this file over, or --state for another file",
                )
            if not resume and data.get("status") != "complete":
                raise ConfigError(
                    f"run state file {path} holds an unfinished run of this migration",
                    hint="pass --resume to continue it, or --restart to start over",
                )
        if data is None or restart or not resume:
            data = {"identity": identity, "status": "running", "collections": {}}
        state = cls(path, data)
        state.data["status"] = "running"
        state.save()
        return state

    def entry(self, name: str) -> dict[str, Any] | None:
        """What the state holds for collection ``name``."""
        found = self.data["collections"].get(name)
        return found if isinstance(found, dict) else None

    def record(self, name: str, **values: Any) -> None:
        """Store collection ``name``'s status (and report), durably."""
        self.data["collections"][name] = values
        self.save()

    def save(self) -> None:
        """Write the file atomically (a kill leaves the old or the new one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(self.data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def job_path(state: Path, index: int, name: str) -> Path:
    """Collection ``name``'s copy job file, beside the run state."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]
    return state.with_name(f"{state.stem}.jobs") / f"{index:03d}-{safe}.sqlite"


# -- the runner --------------------------------------------------------------------------------
def load_migration(path_or_model: str | Path | MigrationFile) -> MigrationFile:
    """A migration file's model (a model as it is)."""
    if isinstance(path_or_model, MigrationFile):
        return path_or_model
    return MigrationFile.load(Path(path_or_model))


def entry_mapping(model: MigrationFile, entry: CollectionEntry) -> MappingSpec | None:
    """The collection's mapping: inline, or read from its file."""
    if entry.mapping is None or isinstance(entry.mapping, MappingSpec):
        return entry.mapping
    path = Path(entry.mapping).expanduser()
    path = path if path.is_absolute() else model.base() / path
    if not path.is_file():
        raise ConfigError(
            f"collection {entry.name!r}: mapping file {path} does not exist",
            hint="a mapping path is read relative to the migration file",
        )
    try:
        return MappingSpec.load(path)
    except ConfigError as exc:
        raise ConfigError(f"collection {entry.name!r}: {exc.message}", hint=exc.hint) from None


@contextlib.contextmanager
def _no_progress(_: str) -> Iterator[tuple[Counter, Counter]]:
    yield (lambda n: None), (lambda n: None)


def run_migration(
    path_or_model: str | Path | MigrationFile,
    *,
    resume: bool = False,
    restart: bool = False,
    state: Path | None = None,
    replace_confirmed: bool = False,
    progress: ProgressFactory | None = None,
    on_collection: Callable[[CollectionRun], None] | None = None,
) -> RunReport:
    """Run every collection of a migration file in order; see the module docstring.

    Mappings are all read before anything is copied. A collection whose copy raises
    stops the run (the state keeps the finished ones: fix and ``--resume``); a collection
    whose checks or gates fail is recorded ``failed`` and the run goes on."""
    from vecmigrate import api  # the public API builds on this module's types

    if resume and restart:
        raise ConfigError(
            "--resume and --restart exclude each other",
            hint="--resume continues the interrupted run; --restart discards it",
        )
    model = load_migration(path_or_model)
    mappings = [entry_mapping(model, e) for e in model.collections]
    state_file = model.state_path(state).expanduser().absolute()
    run_state = RunState.open(state_file, model.identity(), resume=resume, restart=restart)
    shown = progress or _no_progress
    runs: list[CollectionRun] = []
    for index, (entry, mapping) in enumerate(zip(model.collections, mappings, strict=True)):
        d = model.defaults
        tgt = entry.target or (mapping.target_collection if mapping else None) or entry.name
        before = run_state.entry(entry.name) if resume else None
        if before is not None and before.get("status") == "done":
            done = CollectionRun(
                entry.name, tgt, "done", before.get("copy") or {}, before.get("verify")
            )
            runs.append(done)
            if on_collection:
                on_collection(done)
            continue
        check = d.verify if entry.verify is None else entry.verify
        options = CopyOptions(
            workers=entry.workers or d.workers,
            batch_rows=entry.batch_rows or d.batch_rows,
            executor=entry.executor or d.executor,
            if_exists=entry.if_exists or d.if_exists,
            replace_confirmed=replace_confirmed,
            job_path=job_path(state_file, index, entry.name),
            resume=resume,
            restart=restart,
            mapping=mapping,
        )
        run_state.record(entry.name, status="running")
        with shown(entry.name) as (advance, set_total):
            report = api.copy(
                model.source,
                model.target,
                entry.name,
                target_collection=entry.target,
                options=options,
                verify=check is not False,
                progress=advance,
                on_plan=set_total,
            )
        copied = report.to_json()
        verified = None
        if isinstance(check, VerifyConfig):
            verified = api.verify(
                model.source,
                model.target,
                entry.name,
                target_collection=report.result.target_collection,
                config=check,
            ).to_json()
        ok = report.ok and (not report.checks or report.verified)
        ok = ok and (verified is None or bool(verified.get("passed")))
        status: Literal["copied", "failed"] = "copied" if ok else "failed"
        run = CollectionRun(entry.name, report.result.target_collection, status, copied, verified)
        run_state.record(
            entry.name, status="done" if ok else "failed", copy=copied, verify=verified
        )
        runs.append(run)
        if on_collection:
            on_collection(run)
    run_state.data["status"] = "complete"
    run_state.save()
    return RunReport(model.source, model.target, str(state_file), resume, tuple(runs))
