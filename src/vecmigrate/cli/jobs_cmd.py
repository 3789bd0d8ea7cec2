"""``vecmigrate jobs ls|rm``: the job files kept under the state directory (``--state-dir``,
``VECMIGRATE_STATE_DIR``, default ``./.vecmigrate``) for ``--resume``.

One command whose first argument is the action, so that it takes ``--json``, ``--quiet``
and ``--verbose`` where every other verb does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from vecmigrate.cli.options import JsonOpt, QuietOpt, StateDirOpt, VerboseOpt
from vecmigrate.cli.output import command, emit_json, out
from vecmigrate.errors import ConfigError

if TYPE_CHECKING:
    from vecmigrate import api


def _ls(found: tuple[api.JobInfo, ...], json_out: bool) -> None:
    if json_out:
        emit_json({"jobs": [j.to_json() for j in found]})
        return
    console = out()
    for j in found:
        if j.error:
            line = f"{j.name}  unreadable: {j.error}"
        else:
            line = (
                f"{j.name}  {j.status}  {j.rows:,} rows  "
                f"{j.partitions_done}/{j.partitions} partitions  "
                f"{j.source} -> {j.target} ({j.collection} -> {j.target_collection})"
            )
        console.print(line, highlight=False, markup=False)


def _rm(
    found: tuple[api.JobInfo, ...],
    names: list[str],
    all_jobs: bool,
    dead_letters: bool,
    json_out: bool,
) -> None:
    from vecmigrate import api

    by_name = {j.name: j for j in found}
    if all_jobs == bool(names):
        raise ConfigError(
            "name the jobs to remove, or pass --all (not both)",
            hint="`vecmigrate jobs ls` lists them",
        )
    wanted = list(by_name) if all_jobs else names
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ConfigError(
            f"no job {', '.join(map(repr, unknown))} under the state directory",
            hint=f"its jobs: {', '.join(by_name) or 'none'} (`vecmigrate jobs ls`)",
        )
    removed = {n: api.remove_job(by_name[n], dead_letters=dead_letters) for n in wanted}
    if json_out:
        emit_json({"removed": [{"name": n, "paths": p} for n, p in removed.items()]})
        return
    for n in removed:
        out().print(f"removed {n}", highlight=False, markup=False)


def jobs(
    action: Annotated[
        Literal["ls", "rm"],
        typer.Argument(help="ls: list the job files; rm: remove the named ones (or --all)."),
    ],
    names: Annotated[
        list[str] | None, typer.Argument(help="Job names as `jobs ls` prints them (rm).")
    ] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="rm: remove every job file.")] = False,
    dead_letters: Annotated[
        bool,
        typer.Option("--dead-letters", help="rm: remove their dead-letter directories too."),
    ] = False,
    state_dir: StateDirOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """List (ls) or remove (rm) the job files kept for --resume; a removed job starts over."""
    from vecmigrate import api

    with command(verbose=verbose, quiet=quiet, json_out=json_out):
        found = api.jobs(state_dir)
        if action == "ls":
            if names or all_jobs or dead_letters:
                raise ConfigError(
                    "jobs ls takes no job names, --all or --dead-letters",
                    hint="`vecmigrate jobs rm NAME` or `jobs rm --all` removes jobs",
                )
            _ls(found, json_out)
        else:
            _rm(found, list(names or []), all_jobs, dead_letters, json_out)
