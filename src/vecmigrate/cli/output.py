"""Console output: a command's result on stdout, progress, logs, warnings and errors on
stderr; one JSON document on stdout under ``--json`` (an error too); never a traceback
unless ``--verbose`` asked for one.

Where a stream is not a terminal (a pipe, a file), text is written as it is: not wrapped
at 80 columns (``COLUMNS`` is not consulted), no colour or style codes, no live progress
bar - so ``vecmigrate verify ... > report.md`` is valid Markdown and ``inspect | grep``
sees whole lines.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from vecmigrate.errors import (
    ConfigError,
    DataError,
    ReplaceNotConfirmed,
    SchemaMismatchError,
    TerminalError,
    TransientError,
    VecmigrateError,
)
from vecmigrate.uri import redact

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Width of a console that is not a terminal: lines are never wrapped there.
_UNWRAPPED = 1_000_000


@dataclass
class _Mode:
    """How the running command reports: set once by ``command()``."""

    json: bool = False
    verbose: bool = False
    quiet: bool = False
    json_written: bool = False


_mode = _Mode()


def reset() -> None:
    """Forget the previous invocation's mode (one process may run several: tests)."""
    global _mode
    _mode = _Mode()


_consoles: dict[int, tuple[IO[str], Console]] = {}


def _is_terminal(file: IO[str]) -> bool:
    try:
        return file.isatty()
    except (ValueError, OSError):  # closed or detached
        return False


def _console_for(file: IO[str]) -> Console:
    cached = _consoles.get(id(file))
    if cached is not None and cached[0] is file:
        return cached[1]
    if _is_terminal(file):
        console = Console(file=file)
    else:
        console = Console(
            file=file,
            width=_UNWRAPPED,
            soft_wrap=True,
            color_system="standard" if os.environ.get("FORCE_COLOR") else None,
            force_terminal=False,
            emoji=False,
            highlight=False,
        )
    _consoles[id(file)] = (file, console)
    return console


def out() -> Console:
    """The console of results (stdout)."""
    return _console_for(sys.stdout)


def err() -> Console:
    """The console of progress, logs, warnings and errors (stderr)."""
    return _console_for(sys.stderr)


def emit_json(data: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()
    _mode.json_written = True


def report_error(
    kind: str, message: str, hint: str | None, *, json_out: bool | None = None
) -> None:
    """Print an error (redacted): ``error: ...`` and ``hint: ...`` on stderr, and under
    ``--json`` the object ``{"error": {"type", "message", "hint"}}`` on stdout."""
    message, hint = redact(message), redact(hint) if hint else None
    # Escaped: messages carry "[collection='x', id='y', field='z']", which Rich would
    # otherwise take for markup and silently drop.
    console = err()
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    if hint:
        console.print(f"[dim]hint: {escape(hint)}[/]", highlight=False)
    if (_mode.json if json_out is None else json_out) and not _mode.json_written:
        emit_json({"error": {"type": kind, "message": message, "hint": hint}})


def fail(
    message: str, hint: str | None = None, code: int = EXIT_FAILED, kind: str | None = None
) -> NoReturn:
    """Report an error and exit with ``code``."""
    kind = kind or ("ConfigError" if code == EXIT_USAGE else "VecmigrateError")
    report_error(kind, message, hint)
    raise typer.Exit(code)


def _command_path() -> str:
    try:  # Typer vendors Click; the running command's context names it
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - another Typer layout
        return "vecmigrate"
    ctx = get_current_context(silent=True)
    return ctx.command_path if ctx is not None else "vecmigrate"


def _fallback_hint(exc: VecmigrateError, config_hint: str | None) -> str | None:
    """A hint for an error raised without one: what to do next, by kind of error."""
    if isinstance(exc, ReplaceNotConfirmed):
        return "add --yes to drop it, or use --if-exists reuse to write into it"
    if isinstance(exc, ConfigError):
        see = f"see '{_command_path()} --help'"
        return config_hint or f"check the command line and the files it names ({see})"
    if isinstance(exc, TransientError):
        return (
            "the engine did not answer in time or refused the connection: check that it is "
            "running and reachable, then run again (an interrupted copy continues with --resume)"
        )
    if isinstance(exc, DataError):
        return "fix or drop the record at the source, or map the field (--map; see `plan`)"
    if isinstance(exc, SchemaMismatchError):
        if config_hint:  # a mapping was given: it names what the collection lacks
            return (
                "compare the mapping with the collection: `vecmigrate inspect SOURCE -c NAME` "
                "lists its fields"
            )
        return "state the decision in a mapping file (--map); `plan --write-map` writes one"
    if isinstance(exc, TerminalError):
        return "the engine refused the request; retrying will not help" + (
            "" if _mode.verbose else " (-v logs the engine's full reply)"
        )
    return None


@contextmanager
def command(
    *,
    verbose: bool = False,
    quiet: bool = False,
    json_out: bool = False,
    config_hint: str | None = None,
) -> Iterator[None]:
    """Run a command's body: set up logging and output, and turn every exception into one
    ``error:`` line with a hint and an exit code (2: usage or configuration, 1: anything
    else); with ``--verbose`` an unexpected exception also prints its traceback."""
    _mode.json, _mode.verbose, _mode.quiet = json_out, verbose, quiet
    if verbose and quiet:
        report_error(
            "UsageError",
            "--quiet and --verbose exclude each other",
            "give one (VECMIGRATE_VERBOSE / VECMIGRATE_QUIET may set one from the environment)",
            json_out=json_out,
        )
        raise typer.Exit(EXIT_USAGE)
    setup_logging(verbose, quiet)
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except VecmigrateError as exc:
        code = EXIT_USAGE if isinstance(exc, ConfigError | SchemaMismatchError) else EXIT_FAILED
        kind = type(exc).__name__
        fail(exc.message, exc.hint or _fallback_hint(exc, config_hint), code, kind)
    except KeyboardInterrupt:
        fail("interrupted", "a copy continues where it stopped with --resume", kind="Interrupted")
    except Exception as exc:
        if verbose:
            err().print_exception()
            hint = "a bug in vecmigrate: the traceback above shows where; please report it"
        else:
            hint = "a bug in vecmigrate: rerun with --verbose for the traceback and report it"
        fail(f"unexpected {type(exc).__name__}: {exc}", hint, EXIT_FAILED, type(exc).__name__)


def quiet() -> bool:
    """``--quiet`` was given: no progress and no informational lines."""
    return _mode.quiet


def setup_logging(verbose: bool, quiet: bool = False) -> None:
    """Warnings by default, debug with --verbose, errors only with --quiet; to stderr,
    every message passed through redaction."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("vecmigrate")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


@contextmanager
def progress_bar(
    enabled: bool, label: str
) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """(advance, set_total) callbacks driving a rows / rows-per-second / ETA bar on stderr,
    shown only where stderr is a terminal (and not under --quiet or --json)."""
    console = err()
    if not enabled or _mode.quiet or not console.is_terminal:
        yield (lambda n: None), (lambda n: None)
        return
    # Here, not at module level: only a copy on a terminal draws a bar, and --help and
    # piped runs need not pay for importing it.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn(f"[bold]{escape(label)}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    task = bar.add_task(label, total=None, rate="-")

    def advance(n: int) -> None:
        bar.advance(task, n)
        t = bar.tasks[0]
        if t.elapsed:
            bar.update(task, rate=f"{t.completed / t.elapsed:,.0f}")

    with bar:
        yield advance, (lambda total: bar.update(task, total=total))
