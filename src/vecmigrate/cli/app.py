"""The ``vecmigrate`` application: one command module per group, registered here."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from vecmigrate import __version__
from vecmigrate.cli.copy_cmd import copy, export_, import_
from vecmigrate.cli.cutover import cutover_app
from vecmigrate.cli.doctor_cmd import doctor
from vecmigrate.cli.engines_cmd import engines
from vecmigrate.cli.inspect_cmd import check, inspect
from vecmigrate.cli.jobs_cmd import jobs
from vecmigrate.cli.ls_cmd import ls
from vecmigrate.cli.output import EXIT_FAILED, EXIT_USAGE, report_error, reset
from vecmigrate.cli.plan_cmd import plan
from vecmigrate.cli.sync import sync as sync_command
from vecmigrate.cli.verify_cmd import diff, verify


def _usage_hint(exc: typer.TyperException) -> str:
    """What the option is for and where to read more, for a usage error."""
    ctx = getattr(exc, "ctx", None)
    see = f"see '{ctx.command_path if ctx is not None else 'vecmigrate'} --help'"
    param = getattr(exc, "param", None)
    opts, text = getattr(param, "opts", None), getattr(param, "help", None)
    if opts and text and str(opts[0]).startswith("-"):
        return f"{opts[0]}: {str(text).rstrip('.')} ({see})"
    if ctx is not None:
        params = getattr(ctx.command, "params", [])
        args = [str(p.name).upper() for p in params if p.param_type_name == "argument"]
        if hasattr(ctx.command, "commands"):
            args.append("COMMAND [ARGS]...")
        return f"usage: {' '.join([ctx.command_path, '[OPTIONS]', *args])} ({see})"
    return see


class _Group(TyperGroup):
    """Usage errors (a bad option value, a missing argument) in the same form as every
    other error: ``error: ...`` then ``hint: ...`` on stderr, exit 2, and under ``--json``
    the error object on stdout - instead of Click's usage box."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        reset()
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        json_out = "--json" in argv[: argv.index("--") if "--" in argv else None]
        try:
            code = super().main(argv, prog_name, complete_var, False, **extra)
        except typer.TyperException as exc:  # Click's usage errors (Typer vendors Click)
            exit_code = int(getattr(exc, "exit_code", EXIT_USAGE))
            if type(exc).__name__ == "NoArgsIsHelpError":  # no arguments: the help
                sys.stderr.write(exc.format_message() + "\n")
                sys.exit(exit_code)
            kind = "UsageError" if exit_code == EXIT_USAGE else type(exc).__name__
            report_error(kind, exc.format_message(), _usage_hint(exc), json_out=json_out)
            sys.exit(exit_code)
        except typer.Abort:
            report_error("Aborted", "aborted", None, json_out=json_out)
            sys.exit(EXIT_FAILED)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="vecmigrate",
    cls=_Group,
    help="Move vector databases between engines and prove nothing was lost.\n\n"
    "Results go to stdout, progress, logs and errors to stderr; --json prints one JSON "
    "document on stdout (errors too). Exit 0: done; 1: a check failed or data was refused; "
    "2: usage or configuration error.",
    no_args_is_help=True,
    add_completion=True,
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
app.command()(ls)
app.command()(engines)
app.command()(doctor)
app.command()(jobs)
import vecmigrate.cli.proxy_cmd  # noqa: E402, F401  (registers `proxy` on app)
from vecmigrate.cli import run_cmd as _run_cmd  # noqa: E402, F401  (registers `run`)


def main() -> None:
    """Console-script entry point."""
    # LanceDB's native logger writes warnings such as "No existing dataset ..., it will be
    # created" straight to stderr, ahead of any error; keep its errors only (LANCEDB_LOG
    # set by the user wins).
    verbose = {"-v", "--verbose"} & set(sys.argv[1:]) or os.environ.get("VECMIGRATE_VERBOSE")
    if not verbose:
        os.environ.setdefault("LANCEDB_LOG", "error")
    app()
