"""Local files of the engines that keep their stores in them (dump, FAISS, LanceDB,
sqlite-vec): one reading of file system errors, so a full disk or a path that cannot be a
directory reads the same for all."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from vecmigrate.errors import ConfigError, TerminalError, TransientError, VecmigrateError

# Worth another try: the file system was busy or interrupted (NFS, a lock held elsewhere).
_RETRY = frozenset({errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE})
_DENIED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def os_error(exc: OSError, what: str) -> VecmigrateError:
    """A file system error as ``ConfigError`` (permissions, read-only file system),
    ``TransientError`` (busy, interrupted, timed out) or ``TerminalError`` (anything else:
    a full disk, a regular file where a directory should be...), naming the path."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    reason = exc.strerror or str(exc) or type(exc).__name__
    named = paths and not (len(paths) == 1 and what.endswith(paths[0]))
    message = f"{what}: {reason}" + (f": {' -> '.join(paths)}" if named else "")
    if exc.errno in _DENIED:
        return ConfigError(message, hint="check the path and its permissions")
    if exc.errno in _FULL:
        return TerminalError(message, hint="free disk space (or raise the quota), then --resume")
    if exc.errno in _RETRY:
        return TransientError(message)
    return TerminalError(message)


def make_dir(path: Path) -> None:
    """``mkdir -p path``; a regular file in the way is NotADirectoryError naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None


def check_dir(path: Path) -> None:
    """Nothing when ``path`` is a directory or missing (a write creates it); a path that
    cannot be one (a regular file, or under one) is NotADirectoryError naming it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
