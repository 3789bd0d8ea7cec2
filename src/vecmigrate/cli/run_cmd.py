"""``vecmigrate run FILE``: every collection of a migration file, resumable as a whole.

Registers itself on the CLI application: ``cli/app.py`` imports this module once, after
``app`` exists."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from vecmigrate.cli.app import app
from vecmigrate.cli.options import JsonOpt, QuietOpt, VerboseOpt, YesOpt
from vecmigrate.cli.output import EXIT_FAILED, command, emit_json, out, progress_bar

if TYPE_CHECKING:
    from vecmigrate.pipeline.migration import CollectionRun

RUN_HINT = (
    "a migration file is YAML with the keys version, source, target, state, defaults and "
    "collections (docs/migration-file.md, docs/migration.schema.json)"
)


def _line(run: CollectionRun) -> None:
    c = run.copy
    if run.status == "done":
        text = "done in an earlier run (skipped)"
    else:
        text = (
            f"{c.get('rows_written', 0):,} rows written in {c.get('seconds', 0.0):.1f}s, "
            f"{c.get('dead_letters', 0)} refused{' (resumed)' if c.get('resumed') else ''}"
        )
    mark = "[green]ok[/]" if run.ok else "[red]FAILED[/]"
    out().print(
        f"{mark} [bold]{escape(run.name)}[/] -> {escape(run.target_collection)}: {escape(text)}",
        highlight=False,
    )
    if run.status == "done":
        return
    for check in c.get("checks", []):
        if not check["passed"]:
            out().print(
                f"  [red]FAIL[/] {escape(check['name'])}: {escape(check['detail'])}",
                highlight=False,
            )
    for gate in (run.verify or {}).get("gates", []):
        if not gate.get("passed", True):
            out().print(f"  [red]FAIL[/] gate {escape(str(gate.get('name')))}", highlight=False)


def run(
    migration: Annotated[
        Path, typer.Argument(help="Migration file (YAML): source, target, collections.")
    ],
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an interrupted run: skip finished collections, resume the "
            "interrupted copy.",
        ),
    ] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Discard an interrupted run, start over.")
    ] = False,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="Run state file (default: the file's state key, else "
            ".vecmigrate/runs/<file name>.json beside the migration file).",
        ),
    ] = None,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run a migration file: copy and verify each of its collections, resumable as a whole."""
    from vecmigrate import api

    with command(verbose=verbose, quiet=quiet, json_out=json_out, config_hint=RUN_HINT):
        report = api.run(
            migration,
            resume=resume,
            restart=restart,
            state=state,
            replace_confirmed=yes,
            progress=lambda name: progress_bar(not json_out, name),
            on_collection=None if json_out else _line,
        )
        if json_out:
            emit_json(report.to_json())
        else:
            done = sum(r.ok for r in report.collections)
            out().print(
                f"{done} of {len(report.collections)} collections migrated "
                f"(run state: {escape(report.state)})",
                highlight=False,
            )
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


app.command("run")(run)
