"""The ``vecmigrate`` application: one command module per group, registered here."""

from __future__ import annotations

from typing import Annotated

import typer

from vecmigrate import __version__
from vecmigrate.cli.copy_cmd import copy, export_, import_
from vecmigrate.cli.cutover import cutover_app
from vecmigrate.cli.inspect_cmd import check, inspect
from vecmigrate.cli.plan_cmd import plan
from vecmigrate.cli.sync import sync as sync_command
from vecmigrate.cli.verify_cmd import diff, verify

app = typer.Typer(
    name="vecmigrate",
    help="Move vector databases between engines and prove nothing was lost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vecmigrate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    """Move vector databases between engines and prove nothing was lost."""


app.command()(inspect)
app.command()(check)
app.command()(copy)
app.command("export")(export_)
app.command("import")(import_)
app.command()(plan)
app.command()(verify)
app.command()(diff)
app.command("sync")(sync_command)
app.add_typer(cutover_app, name="cutover")


def main() -> None:
    """Console-script entry point."""
    app()
