"""The error mapping of ``connectors/lancedb``: lance's and lancedb's errors as vecmigrate's."""

from __future__ import annotations

import re

from lancedb.exceptions import MissingColumnError

from vecmigrate.connectors.files import os_error
from vecmigrate.errors import TerminalError, TransientError, VecmigrateError

# Where in Lance's Rust sources an error was raised (", /path/file.rs:12:34"): noise to users.
_RUST_WHERE = re.compile(r",\s*/\S+\.rs:\d+:\d+")
# Lance commits are optimistic: a concurrent writer won this time, the next try may not.
_CONFLICT = ("Retryable commit conflict", "CommitConflict", "Too many concurrent writers")


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """Lance's and lancedb's errors. A file system error with an errno (making the
    database's directory) goes by ``os_error``; one without (an Arrow or Lance IO error)
    and a lost commit race are TransientError; whatever else Lance refuses (ValueError,
    RuntimeError "lance error: ...": a bad value, predicate or column, a missing data
    file) is TerminalError."""
    if isinstance(exc, OSError):  # pyarrow's ArrowIOError is an OSError
        if exc.errno is not None:
            return os_error(exc, what)
        return TransientError(f"{what}: {_brief(exc)}")
    if isinstance(exc, RecursionError) or not isinstance(
        exc, ValueError | RuntimeError | MissingColumnError
    ):
        return None
    if any(c in str(exc) for c in _CONFLICT):
        return TransientError(f"{what}: {_brief(exc)}")
    return TerminalError(f"{what}: {_brief(exc)}")


def _brief(exc: BaseException) -> str:
    return _RUST_WHERE.sub("", str(exc)) or type(exc).__name__
