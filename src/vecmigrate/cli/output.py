"""Console output: Rich for people, one JSON document under ``--json``, no tracebacks."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vecmigrate.errors import ConfigError, SchemaMismatchError, VecmigrateError
from vecmigrate.uri import redact

console = Console(stderr=True)
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def emit_json(data: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(message: str, hint: str | None = None, code: int = EXIT_FAILED) -> NoReturn:
    """Print an error (redacted) and exit with ``code``."""
    # Escaped: messages carry "[collection='x', id='y', field='z']", which Rich would
    # otherwise take for markup and silently drop.
    console.print(f"[bold red]error:[/] {escape(redact(message))}", highlight=False)
    if hint:
        console.print(f"[dim]hint: {escape(redact(hint))}[/]", highlight=False)
    raise typer.Exit(code)


@contextmanager
def user_errors(verbose: bool) -> Iterator[None]:
    """Turn exceptions into a one-line message and an exit code (traceback with -v)."""
    try:
        yield
    except typer.Exit:
        raise
    except (ConfigError, SchemaMismatchError) as exc:
        fail(exc.message, exc.hint, EXIT_USAGE)
    except VecmigrateError as exc:
        fail(exc.message, exc.hint)
    except KeyboardInterrupt:
        fail("interrupted", "rerun with --resume to continue")
    except Exception as exc:
        if verbose:
            console.print_exception()
        fail(f"unexpected {type(exc).__name__}: {exc}", "rerun with --verbose for details")


def setup_logging(verbose: bool) -> None:
    """Warnings by default, debug with --verbose; messages pass through redaction."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("vecmigrate")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


@contextmanager
def progress_bar(
    enabled: bool, label: str
) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """(advance, set_total) callbacks driving a rows / rows-per-second / ETA bar."""
    if not enabled:
        yield (lambda n: None), (lambda n: None)
        return
    bar = Progress(
        TextColumn(f"[bold]{label}"),
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
