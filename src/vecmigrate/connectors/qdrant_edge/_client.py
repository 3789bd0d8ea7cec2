"""Talking to Qdrant Edge for the qdrant-edge connector (used only by it): the shards of one
store, each opened on first use, and Edge failures mapped to vecmigrate's errors
(``translate_error``).

A store is a folder; each collection is one Edge shard in a sub-folder of the same name,
with the vecmigrate schema beside the shard's own files (``vecmigrate_schema.json``).
Edge takes an exclusive lock on a shard's write-ahead log while it is open, so a shard is
opened once per connector and shared by its threads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

import qdrant_edge as qe

from vecmigrate.errors import (
    ConfigError,
    DataError,
    TerminalError,
    TransientError,
    VecmigrateError,
)

CONFIG_FILE = "edge_config.json"
SCHEMA_FILE = "vecmigrate_schema.json"

# Edge raises a plain ``Exception`` whose text starts with Qdrant's error kind.
_DATA_KINDS = (
    "Vector dimension error",
    "Wrong input",
    "Bad input",
    "Bad request",
    "Validation",
    "Not existing vector name",
    "Missed vector name",
    "Type error",
    "Wrong usage of sparse vectors",
    "Vector inference error",
)
_TRANSIENT_KINDS = ("Operation cancelled", "Timeout", "timed out", "Service unavailable")
# Raised while Python values are converted for the engine (a negative or too large point
# id, a string that is not a UUID): the record is what cannot be stored.
_CONVERSION = ("failed to extract", "failed to parse", "can't convert", "out of range")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """Qdrant Edge failures as vecmigrate errors: a shard locked by another process or
    missing is a ConfigError, a record or request Edge refuses a DataError, a cancelled
    operation transient, any other engine error terminal; file-system errors by kind;
    None for anything else (a bug)."""
    text = _first_line(exc)
    if type(exc) is Exception:  # Edge's own errors carry no subclass
        if "WouldBlock" in text or "Resource temporarily unavailable" in text:
            return ConfigError(
                f"{what}: the shard is open in another process ({text})",
                hint="Qdrant Edge opens a shard in one process at a time: close the other one",
            )
        if "does not exist" in text or "no segments were loaded" in text:
            return ConfigError(f"{what}: {text}", hint="check the path and the collection name")
        if text.startswith(_DATA_KINDS):
            return DataError(f"{what}: {text}")
        if any(k in text for k in _TRANSIENT_KINDS):
            return TransientError(f"{what}: {text}")
        return TerminalError(f"{what}: {text}")
    if isinstance(exc, TypeError | ValueError | OverflowError) and any(
        k in str(exc) for k in _CONVERSION
    ):
        return DataError(f"{what}: {text}")
    if isinstance(exc, PermissionError):
        return ConfigError(f"{what}: {text}", hint="check the permissions of the store's folder")
    if isinstance(exc, OSError):
        return TerminalError(f"{what}: {text}")
    return None


def valid_name(name: str) -> str:
    """``name`` when it can be a shard's folder name (one path component, not hidden)."""
    bad = not name or name in (".", "..") or name.startswith(".")
    if bad or any(c in name for c in "/\\\0"):
        raise ConfigError(
            f"qdrant-edge collection name {name!r} cannot be a folder name",
            hint="use letters, digits, '-' and '_' (no '/', no leading '.')",
        )
    return name


def is_shard(path: Path) -> bool:
    """Whether ``path`` holds an Edge shard (its config, or segments to derive it from)."""
    if (path / CONFIG_FILE).is_file():
        return True
    segments = path / "segments"
    return segments.is_dir() and any(segments.iterdir())


class Shards:
    """The shards of the store at ``root``, each loaded on first use and kept open until
    ``close``. Nothing is read or created before a call needs it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._open: dict[str, qe.EdgeShard] = {}
        self._written: set[str] = set()
        self._lock = threading.RLock()

    def path(self, name: str) -> Path:
        return self.root / valid_name(name)

    def exists(self, name: str) -> bool:
        return name in self._open or is_shard(self.path(name))

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if not p.name.startswith(".") and is_shard(p)
        )

    def get(self, name: str) -> qe.EdgeShard:
        """The open shard of ``name`` (loaded now if it is not open yet)."""
        with self._lock:
            shard = self._open.get(name)
            if shard is None:
                path = self.path(name)
                if not is_shard(path):
                    raise ConfigError(f"qdrant-edge:{self.root} has no collection {name!r}")
                shard = self._open[name] = qe.EdgeShard.load(str(path))
            return shard

    def written(self, name: str) -> qe.EdgeShard:
        """``get``, for a write: the shard is settled on ``close``."""
        shard = self.get(name)
        self._written.add(name)
        return shard

    def create(self, name: str, config: qe.EdgeConfig, schema_json: str | None) -> qe.EdgeShard:
        """A new shard for ``name`` (the folder must hold none), with the schema file."""
        path = self.path(name)
        with self._lock:
            made = not path.exists()
            path.mkdir(parents=True, exist_ok=True)
            try:
                if schema_json is not None:
                    write_atomic(path / SCHEMA_FILE, schema_json)
                shard = self._open[name] = qe.EdgeShard.create(str(path), config)
            except BaseException:
                if made:  # never remove a folder this call did not make
                    shutil.rmtree(path, ignore_errors=True)
                raise
            self._written.add(name)
            return shard

    def drop(self, name: str) -> None:
        """Close ``name``'s shard and remove its folder (missing: nothing to do)."""
        path = self.path(name)
        with self._lock:
            shard = self._open.pop(name, None)
            self._written.discard(name)
            if shard is not None:
                shard.close()
            # Only a shard's folder is removed: a folder that holds none is not ours.
            if is_shard(path) or (path / SCHEMA_FILE).exists():
                shutil.rmtree(path)

    def close(self) -> None:
        """Close every open shard. A shard written here is then loaded and closed once
        more: Edge completes its config file and folds its journals on the first load
        after writes, so readers that open it later leave its files as they are."""
        with self._lock:
            shards, self._open = self._open, {}
            written, self._written = self._written, set()
        for name, shard in shards.items():
            with contextlib.suppress(Exception):  # closing must not fail a job
                shard.flush()
                shard.close()
                if name in written:
                    qe.EdgeShard.load(str(self.path(name))).close()


def write_atomic(path: Path, text: str) -> None:
    """``text`` into ``path`` through a temporary file renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
