"""``vecmigrate doctor URI``: can this store be used? One line per check (ok / FAIL with a
hint); exit 1 when any check failed."""

from __future__ import annotations

from typing import Annotated

import typer

from vecmigrate.cli.options import JsonOpt, QuietOpt, VerboseOpt
from vecmigrate.cli.output import EXIT_FAILED, command, emit_json, out
from vecmigrate.uri import redact


def doctor(
    store: Annotated[str, typer.Argument(help="Store URI.")],
    write: Annotated[
        bool,
        typer.Option(
            "--write",
            help="Probe write permission: create a scratch collection, write one record, drop it.",
        ),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check a store: URI and client, connection, read, version, capabilities, (--write)."""
    from vecmigrate import api

    with command(verbose=verbose, quiet=quiet, json_out=json_out):
        report = api.doctor(store, write=write)
        if json_out:
            emit_json(report.to_json())
        else:
            console = out()
            for c in report.checks:
                mark = "skip" if c.skipped else "ok" if c.ok else "FAIL"
                console.print(
                    f"{mark:<4} {c.name}: {redact(c.detail)}", highlight=False, markup=False
                )
                if not c.ok and c.hint:
                    console.print(f"     hint: {redact(c.hint)}", highlight=False, markup=False)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)
