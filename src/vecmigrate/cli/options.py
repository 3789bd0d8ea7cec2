"""Options and helpers shared by the ``vecmigrate`` commands, defined once.

Counts are checked where they are parsed (``min=``): ``--k 0`` or ``--workers 0`` is a
usage error naming the option, never a division by zero or a copy with no workers.
Settings a team fixes for every run can come from the environment (VECMIGRATE_*).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from vecmigrate.errors import ConfigError, VecmigrateError
from vecmigrate.uri import redact

if TYPE_CHECKING:
    # The CLI imports this module to build --help: the connectors and the pydantic models
    # are imported where a command runs, not here.
    from vecmigrate.connectors import Connector
    from vecmigrate.mapping import MappingSpec
    from vecmigrate.verify.gates import VerifyConfig

JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help='Print one JSON document on stdout (an error too: {"error": {...}}); no progress bar.',
    ),
]
VerboseOpt = Annotated[
    bool,
    typer.Option("--verbose", "-v", envvar="VECMIGRATE_VERBOSE", help="Debug logs and tracebacks."),
]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        envvar="VECMIGRATE_QUIET",
        help="No progress bar and no log lines below errors; results and errors still print.",
    ),
]
CollectionOpt = Annotated[str | None, typer.Option("--collection", "-c", help="Collection name.")]
CollectionsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--collection",
        "-c",
        metavar="NAME",
        help="Collection name; repeat for several (none: every collection).",
    ),
]
IncludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        metavar="GLOB",
        help="Also take the collections matching this glob (fnmatch); repeatable.",
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude",
        metavar="GLOB",
        help="Leave out the collections matching this glob (fnmatch); repeatable.",
    ),
]
LimitOpt = Annotated[
    int | None,
    typer.Option(
        "--limit",
        min=1,
        metavar="N",
        help="Take at most N records of each collection: the first N of one scan (>= 1).",
    ),
]
FilterOpt = Annotated[
    str | None,
    typer.Option(
        "--filter",
        metavar="JSON",
        help='Take only the records matching this portable filter, e.g. \'{"genre": "news"}\'.',
    ),
]
IdsFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--ids-file",
        metavar="PATH",
        help="Take only the records with the ids in this file (one per line); ids not found "
        "are counted and reported.",
    ),
]
NameOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
TargetCollectionOpt = Annotated[str | None, typer.Option(help="Name on the target.")]
WorkersOpt = Annotated[
    int,
    typer.Option(min=1, envvar="VECMIGRATE_WORKERS", help="Partitions copied concurrently (>= 1)."),
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        envvar="VECMIGRATE_EXECUTOR",
        help="Where partitions run: local (threads), ray (local Ray) or ray:ADDRESS.",
    ),
]
BatchOpt = Annotated[
    int,
    typer.Option(
        "--batch-rows", min=1, envvar="VECMIGRATE_BATCH_ROWS", help="Rows per read batch (>= 1)."
    ),
]
JobOpt = Annotated[Path | None, typer.Option("--job", help="Job state file (for --resume).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted job.")]
RestartOpt = Annotated[
    bool, typer.Option("--restart", help="Discard an interrupted job, start over.")
]
MapOpt = Annotated[Path | None, typer.Option("--map", help="Mapping file (YAML); see `plan`.")]
CopyMapOpt = Annotated[
    Path | None,
    typer.Option(
        "--map",
        help="The mapping file the copy used: the target is compared with what it made of "
        "the source (renamed, dropped or cast fields, a stated metric).",
    ),
]
IfExists = Literal["fail", "reuse", "replace"]
VerifyOpt = Annotated[
    Literal["sampled", "full", "live", "none"],
    typer.Option(
        "--verify",
        help="The check after copying. sampled: the target's digest from what it "
        "acknowledged plus an exact read-back of 1,000 sampled records, against a fresh read "
        "of the source; full: both sides read back in full; live: the application writes "
        "to the source meanwhile, so the target is read back against what it acknowledged; "
        "none: no check.",
    ),
]
NoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Same as --verify none.")]
IfExistsOpt = Annotated[
    IfExists,
    typer.Option(
        "--if-exists",
        help="When the target collection exists: fail, reuse (write into it) or replace it.",
    ),
]
YesOpt = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Confirm that --if-exists replace may drop a non-empty target (asked "
        "interactively on a terminal; required otherwise).",
    ),
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Say what would be created and how many records written; touch nothing (no job "
        "file, no target collection, no dead-letter directory).",
    ),
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar="VECMIGRATE_STATE_DIR",
        help="Where job files (for --resume) and dead letters are kept [default: ./.vecmigrate].",
    ),
]
QueriesOpt = Annotated[int | None, typer.Option(min=1, help="Sampled corpus queries (>= 1).")]
KOpt = Annotated[int | None, typer.Option(min=1, help="k of recall@k gates (>= 1).")]
SampleOpt = Annotated[int, typer.Option(min=1, help="Rows sampled for checks and rates (>= 1).")]


def collections_of(conn: Connector, collection: str | None) -> list[str]:
    """The named collection, or every collection of ``conn`` (none: exit 1)."""
    names = [collection] if collection else conn.list_collections()
    if not names:
        raise no_collections(str(conn.uri))
    return names


def no_collections(uri: str) -> VecmigrateError:
    """An existing store that holds nothing: exit 1 (not a usage error)."""
    return VecmigrateError(
        f"{redact(uri)} has no collections",
        hint="check that the URI names the store you mean (a path that does not exist is "
        "refused as such, so this one exists and is empty)",
    )


# -- YAML files given to options ---------------------------------------------------------------
@cache
def mapping_hint() -> str:
    """What a ``--map`` file holds (its keys read from the model), for a ConfigError."""
    from vecmigrate.mapping import MappingSpec

    keys = ", ".join(f.alias or n for n, f in MappingSpec.model_fields.items())
    return (
        f"a mapping file is YAML with the keys {keys} (docs/mapping.schema.json); "
        "`vecmigrate plan SOURCE TARGET -c NAME --write-map map.yaml` writes a complete one "
        "to edit"
    )


@cache
def config_hint() -> str:
    """What a ``--config`` file holds (its keys read from the model), for a ConfigError."""
    from vecmigrate.verify.gates import VerifyConfig

    keys = ", ".join(VerifyConfig.model_fields)
    return (
        f"a migration config is YAML with a verify: section taking {keys} "
        "(gates: max_recall_drop, max_missing, ...)"
    )


_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}


def read_yaml(path: Path, what: str, option: str, hint: str) -> Any:
    """The YAML document of ``path``: every failure a ConfigError naming the file, the
    line and what was found, with ``hint``; a document that is not a mapping (``[]``, a
    string) is refused here rather than deep in the code that reads it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{what} {path} does not exist", hint=f"check the path given to {option}"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"{what} {path} is a directory", hint=f"give {option} a YAML file"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text", hint=hint) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {what} {path}: {exc.strerror or exc}",
            hint="check that the file is readable by this user",
        ) from None
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{what} {path} is not valid YAML{where}: {problem}", hint=hint) from None
    if data is not None and not isinstance(data, dict):
        found = "an empty list" if data == [] else _KINDS.get(type(data), type(data).__name__)
        raise ConfigError(f"{what} {path} holds {found}, not a mapping of keys", hint=hint)
    return data


def load_mapping(path: Path | None) -> MappingSpec | None:
    """The mapping file given to ``--map`` (None: no mapping)."""
    if path is None:
        return None
    from vecmigrate.mapping import MappingSpec

    read_yaml(path, "mapping file", "--map", mapping_hint())
    try:
        return MappingSpec.load(path)
    except ConfigError as exc:
        raise ConfigError(redact(exc.message), hint=exc.hint or mapping_hint()) from None


def load_verify_config(path: Path | None, **overrides: int | None) -> VerifyConfig:
    """The ``verify`` section of ``--config`` (defaults without one), with the options
    given on the command line applied and validated."""
    from vecmigrate.verify.gates import VerifyConfig

    if path is not None:
        read_yaml(path, "migration config", "--config", config_hint())
    try:
        cfg = VerifyConfig.load(path)
    except ConfigError as exc:
        raise ConfigError(exc.message, hint=exc.hint or config_hint()) from None
    updates = {n: v for n, v in overrides.items() if v is not None}
    return cfg.model_copy(update=updates)
