"""The public Python API: every verb of the CLI as a function returning a typed result.

Sources and targets are URIs (opened and closed here; read-only where the verb only
reads) or open ``Connector`` objects (left open). Results are immutable and carry
``.ok`` and ``.to_json()``; the CLI prints exactly these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vecmigrate.connectors import Connector, connect
from vecmigrate.connectors.registry import known_schemes
from vecmigrate.errors import ConfigError
from vecmigrate.mapping import MappingSpec
from vecmigrate.model import CollectionSchema
from vecmigrate.pipeline.copy import copy_collection
from vecmigrate.pipeline.dryrun import AbsentTarget, open_plan_target, plan_migration
from vecmigrate.pipeline.options import CopyOptions, CopyResult
from vecmigrate.pipeline.sync import SyncOptions, SyncResult, sync_collection
from vecmigrate.uri import path_uri, uri_scheme
from vecmigrate.verify.check import CheckReport, check_collection
from vecmigrate.verify.copycheck import Check, check_copy
from vecmigrate.verify.diff import DiffResult, diff_collections
from vecmigrate.verify.gates import VerifyConfig
from vecmigrate.verify.run import verify_migration

Store = str | Connector
Progress = Callable[[int], None]


@contextmanager
def opened(store: Store, *, read_only: bool) -> Iterator[Connector]:
    """A connector for ``store``: an open one as it is, a URI opened (and closed) here."""
    if isinstance(store, Connector):
        yield store
        return
    with connect(store, read_only=read_only) as conn:
        yield conn


@contextmanager
def _plan_target(target: Store, measure_writes: bool) -> Iterator[Connector | AbsentTarget]:
    if isinstance(target, Connector):
        yield target
        return
    with open_plan_target(target, measure_writes) as dst:
        yield dst


def dump_uri(arg: str | Path) -> str:
    """A connection URI as it is; a path (``dump/``, ``./x``) as the dump there."""
    text = str(arg)
    return text if uri_scheme(text) in known_schemes() else path_uri("dump", text)


def export_uri(output: str | Path, encrypt_key: str | None = None) -> str:
    """The dump URI an export writes: ``output`` as a path, with the key reference."""
    target = path_uri("dump", output)
    if encrypt_key is None:
        return target
    if not encrypt_key.startswith(("env:", "file:")):
        # Never echo the value: it may be the key itself.
        raise ConfigError("--encrypt-key (encrypt_key) takes env:NAME or file:/path, not a key")
    return f"{target}?key={quote(encrypt_key, safe=':/')}"


@dataclass(frozen=True)
class CollectionInfo:
    """What ``inspect`` found of one collection: its schema and record count."""

    schema: CollectionSchema
    count: int

    @property
    def ok(self) -> bool:
        """Always True: inspecting succeeded."""
        return True

    def to_json(self) -> dict[str, Any]:
        """JSON form: the count and the schema's fields."""
        return {"count": self.count, **self.schema.model_dump(mode="json")}


@dataclass(frozen=True)
class CopyReport:
    """A finished copy (``result``) and the checks run after it (empty: not verified)."""

    result: CopyResult
    checks: tuple[Check, ...] = ()

    @property
    def verified(self) -> bool:
        """Checks ran and every one passed."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def ok(self) -> bool:
        """Nothing refused and no check failed."""
        return self.result.ok and all(c.passed for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """The copy result's JSON plus ``checks`` and ``verified``."""
        out = self.result.to_json()
        out["checks"] = [c.to_json() for c in self.checks]
        out["verified"] = self.verified
        return out


@dataclass(frozen=True)
class VerifyReport:
    """The verify report (stable JSON schema, ``report_version``); ``ok``: every gate passed."""

    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Every gate passed."""
        return bool(self.data["passed"])

    @property
    def gates(self) -> list[dict[str, Any]]:
        """Each gate: name, threshold, value, passed."""
        return list(self.data.get("gates", []))

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-able data."""
        return dict(self.data)


@dataclass(frozen=True)
class PlanReport:
    """A dry run: schemas side by side, decisions, warnings, errors, checks, estimates."""

    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        """No error would stop the copy."""
        return not self.data["errors"]

    @property
    def mapping(self) -> MappingSpec:
        """The mapping with every decision spelled out (what ``--write-map`` writes)."""
        return MappingSpec.model_validate(self.data["mapping"])

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-able data."""
        return dict(self.data)


def inspect(source: Store, collection: str | None = None) -> tuple[CollectionInfo, ...]:
    """Schema and count of ``collection`` (default: every collection) of ``source``."""
    with opened(source, read_only=True) as conn:
        names = [collection] if collection else conn.list_collections()
        return tuple(CollectionInfo(conn.describe(n), conn.count(n)) for n in names)


def copy(
    source: Store,
    target: Store,
    collection: str,
    *,
    target_collection: str | None = None,
    options: CopyOptions | None = None,
    verify: bool = True,
    progress: Progress | None = None,
    on_plan: Progress | None = None,
) -> CopyReport:
    """Copy one collection, resumably; with ``verify`` compare counts and content digests
    after, as ``vecmigrate copy`` does. Raises on failure (``ReplaceNotConfirmed`` when
    ``if_exists="replace"`` would drop records: pass ``replace_confirmed=True``)."""
    with opened(source, read_only=True) as src, opened(target, read_only=False) as dst:
        opts = options or CopyOptions()
        result = copy_collection(
            src,
            dst,
            collection,
            target_collection=target_collection,
            options=opts,
            progress=progress,
            on_plan=on_plan,
        )
        checks = check_copy(src, dst, collection, result, opts.mapping) if verify else []
        return CopyReport(result, tuple(checks))


def export(
    source: Store,
    output: str | Path,
    collection: str,
    *,
    options: CopyOptions | None = None,
    encrypt_key: str | None = None,
    verify: bool = True,
    progress: Progress | None = None,
    on_plan: Progress | None = None,
) -> CopyReport:
    """Export a collection to a dump folder; ``encrypt_key`` is ``env:NAME`` or
    ``file:/path`` (AES-256-GCM parts, readable back with the same key)."""
    return copy(
        source,
        export_uri(output, encrypt_key),
        collection,
        options=options,
        verify=verify,
        progress=progress,
        on_plan=on_plan,
    )


def import_(
    dump: str | Path | Connector,
    target: Store,
    collection: str,
    *,
    target_collection: str | None = None,
    options: CopyOptions | None = None,
    verify: bool = True,
    progress: Progress | None = None,
    on_plan: Progress | None = None,
) -> CopyReport:
    """Import a collection of a dump (a folder, or ``dump:///dir?key=env:NAME``)."""
    source = dump if isinstance(dump, Connector) else dump_uri(dump)
    return copy(
        source,
        target,
        collection,
        target_collection=target_collection,
        options=options,
        verify=verify,
        progress=progress,
        on_plan=on_plan,
    )


def check(source: Store, collection: str | None = None) -> tuple[CheckReport, ...]:
    """Validate a dump (or any store): dims, NaN/Inf, duplicate ids, type drift, layout."""
    src = source if isinstance(source, Connector) else dump_uri(source)
    with opened(src, read_only=True) as conn:
        names = [collection] if collection else conn.list_collections()
        return tuple(check_collection(conn, n) for n in names)


def verify(
    source: Store,
    target: Store,
    collection: str,
    *,
    target_collection: str | None = None,
    config: VerifyConfig | None = None,
) -> VerifyReport:
    """Data parity and retrieval parity against exact ground truth, gated by ``config``."""
    with opened(source, read_only=True) as src, opened(target, read_only=True) as dst:
        data = verify_migration(src, dst, collection, target_name=target_collection, config=config)
    return VerifyReport(data)


def diff(
    source: Store, target: Store, collection: str, *, target_collection: str | None = None
) -> DiffResult:
    """Missing, extra, changed and duplicate ids between source and target."""
    with opened(source, read_only=True) as src, opened(target, read_only=True) as dst:
        return diff_collections(src, dst, collection, target_name=target_collection)


def plan(
    source: Store,
    target: Store,
    collection: str,
    *,
    mapping: MappingSpec | None = None,
    target_collection: str | None = None,
    sample_rows: int = 2000,
    measure_writes: bool = False,
) -> PlanReport:
    """Dry run of a copy; reads only, unless ``measure_writes`` loads a scratch
    collection on the target to time writes (dropped after)."""
    with opened(source, read_only=True) as src, _plan_target(target, measure_writes) as dst:
        data = plan_migration(
            src,
            dst,
            collection,
            spec=mapping,
            target_name=target_collection,
            sample_rows=sample_rows,
            measure_write=measure_writes,
        )
    return PlanReport(data)


def sync(
    source: Store,
    target: Store,
    collection: str,
    *,
    target_collection: str | None = None,
    options: SyncOptions | None = None,
) -> SyncResult:
    """One sync round: make the target equal the source (changes feed or digests)."""
    with opened(source, read_only=True) as src, opened(target, read_only=False) as dst:
        return sync_collection(
            src, dst, collection, target_collection=target_collection, options=options
        )


def confirmed(options: CopyOptions | None) -> CopyOptions:
    """``options`` with ``--if-exists replace`` confirmed (after a user said yes)."""
    return replace(options or CopyOptions(), replace_confirmed=True)
