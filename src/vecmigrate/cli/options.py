"""Options and helpers shared by the ``vecmigrate`` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vecmigrate.cli.output import fail
from vecmigrate.connectors import Connector

# Options shared by several commands, defined once; settings a team fixes for every run
# can come from the environment (VECMIGRATE_*).
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document; no progress bar.")]
VerboseOpt = Annotated[
    bool,
    typer.Option("--verbose", "-v", envvar="VECMIGRATE_VERBOSE", help="Debug logs and tracebacks."),
]
CollectionOpt = Annotated[str | None, typer.Option("--collection", "-c", help="Collection name.")]
NameOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
TargetCollectionOpt = Annotated[str | None, typer.Option(help="Name on the target.")]
WorkersOpt = Annotated[
    int, typer.Option(envvar="VECMIGRATE_WORKERS", help="Partitions copied concurrently.")
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        envvar="VECMIGRATE_EXECUTOR",
        help="Where partitions run: local (threads), ray (local Ray) or ray:ADDRESS.",
    ),
]
BatchOpt = Annotated[
    int, typer.Option("--batch-rows", envvar="VECMIGRATE_BATCH_ROWS", help="Rows per read batch.")
]
JobOpt = Annotated[Path | None, typer.Option("--job", help="Job state file (for --resume).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted job.")]
RestartOpt = Annotated[
    bool, typer.Option("--restart", help="Discard an interrupted job, start over.")
]
MapOpt = Annotated[Path | None, typer.Option("--map", help="Mapping file (YAML); see `plan`.")]
IfExistsOpt = Annotated[str, typer.Option("--if-exists", help="fail | reuse | replace the target.")]
YesOpt = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Confirm that --if-exists replace may drop a non-empty target (asked "
        "interactively on a terminal; required otherwise).",
    ),
]


def collections_of(conn: Connector, collection: str | None) -> list[str]:
    """The named collection, or every collection of ``conn`` (none: exit 1)."""
    names = [collection] if collection else conn.list_collections()
    if not names:
        fail(f"{conn.uri} has no collections")
    return names
