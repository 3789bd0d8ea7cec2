"""The data verbs: inspect, copy, export, import, check, verify, diff, plan, sync, and
their typed reports."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vecmigrate.api.stores import (
    Progress,
    Store,
    _at_least_one,
    check_copy_options,
    check_verify_config,
    dump_uri,
    export_uri,
    opened,
    plan_target,
    refuse_writing_into_source,
    require_collection,
)
from vecmigrate.connectors import Connector
from vecmigrate.errors import ConfigError, DataError, VecmigrateError
from vecmigrate.mapping import MappingSpec
from vecmigrate.model import CollectionSchema
from vecmigrate.pipeline.copy import copy_collection
from vecmigrate.pipeline.dryrun import plan_migration
from vecmigrate.pipeline.options import CopyOptions, CopyResult
from vecmigrate.pipeline.selection import (
    Selection,
    choose_collections,
    read_ids_file,
    select_reading,
)
from vecmigrate.pipeline.sync import SyncOptions, SyncResult, sync_collection
from vecmigrate.uri import redact
from vecmigrate.verify.acknowledged import acknowledging
from vecmigrate.verify.check import CheckReport, check_collection
from vecmigrate.verify.copycheck import Check, VerifyMode, check_copy
from vecmigrate.verify.diff import DiffResult, diff_collections
from vecmigrate.verify.gates import VerifyConfig
from vecmigrate.verify.judged import as_transform, source_mapping
from vecmigrate.verify.run import verify_migration


@dataclass(frozen=True)
class CollectionInfo:
    """What ``inspect`` found of one collection: its schema and record count, or (when
    every collection was asked for) why it cannot be described, with the fix."""

    schema: CollectionSchema
    count: int | None
    problem: str | None = None
    hint: str | None = None

    @property
    def ok(self) -> bool:
        """The collection was described."""
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        """JSON form: the count and the schema's fields (and the problem, if one)."""
        data = {"count": self.count, **self.schema.model_dump(mode="json")}
        if self.problem is not None:
            data.update(problem=self.problem, hint=self.hint)
        return data


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
    """Schema and count of ``collection`` (default: every collection) of ``source``.
    Asked for every collection, one that cannot be described (an empty Chroma
    collection, a table without a usable id) is listed with why, not fatal to the rest."""
    with opened(source, read_only=True) as conn:
        if collection:
            require_collection(conn, collection)
            return (CollectionInfo(conn.describe(collection), conn.count(collection)),)
        return tuple(_described(conn, n) for n in conn.list_collections())


def _described(conn: Connector, name: str) -> CollectionInfo:
    try:
        schema = conn.describe(name)
    except (ConfigError, DataError) as exc:
        try:
            count: int | None = conn.count(name)
        except VecmigrateError:
            count = None
        return CollectionInfo(CollectionSchema(name=name), count, exc.message, exc.hint)
    return CollectionInfo(schema, conn.count(name))


def copy(
    source: Store,
    target: Store,
    collection: str,
    *,
    target_collection: str | None = None,
    options: CopyOptions | None = None,
    verify: bool | VerifyMode = True,
    progress: Progress | None = None,
    on_plan: Progress | None = None,
) -> CopyReport:
    """Copy one collection, resumably; with ``verify`` compare counts and content digests
    after, as ``vecmigrate copy`` does: ``True``/``"sampled"`` the target's digest from
    what it acknowledged plus a read-back sample, ``"full"`` both sides read back,
    ``"live"`` (the application writes meanwhile) the target read back against what it
    acknowledged, ``False`` no checks. Raises on failure (``ReplaceNotConfirmed`` when
    ``if_exists="replace"`` would drop records: pass ``replace_confirmed=True``).
    ``options.selection`` (a ``Selection``: limit, filter, ids) copies only those records,
    and the checks after judge those records alone."""
    opts = check_copy_options(options or CopyOptions())
    refuse_writing_into_source(source, target, collection, target_collection, opts.mapping)
    with opened(source, read_only=True) as src:
        require_collection(src, collection)
        if opts.selection is not None:  # a bad filter or id is refused before the target opens
            opts.selection.check(src.describe(collection))
        mode: VerifyMode | None = ("sampled" if verify is True else verify) or None
        with (
            opened(target, read_only=False) as dst,
            # Acknowledgements are digested only for a check that reads them; compared with
            # the source read again (no stored digest), by the vectors' exact bits alone.
            acknowledging(
                src,
                dst,
                fresh=opts.if_exists != "reuse",
                projections=mode == "live" or src.stored_digest(collection) is not None,
            )
            if mode in ("sampled", "live")
            else nullcontext(None) as ack,
        ):
            result = copy_collection(
                src,
                dst,
                collection,
                target_collection=target_collection,
                options=opts,
                progress=progress,
                on_plan=on_plan,
            )
            if mode is None:
                return CopyReport(result, ())
            checks = check_copy(
                src,
                dst,
                collection,
                result,
                opts.mapping,
                mode=mode,
                acknowledged=ack,
                selection=opts.selection,
            )
            return CopyReport(result, tuple(checks))


def export(
    source: Store,
    output: str | Path,
    collection: str,
    *,
    options: CopyOptions | None = None,
    encrypt_key: str | None = None,
    verify: bool | VerifyMode = True,
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
    verify: bool | VerifyMode = True,
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


def select_collections(
    source: Store,
    names: list[str] | tuple[str, ...] = (),
    *,
    include: list[str] | tuple[str, ...] = (),
    exclude: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """The collections of ``source`` that ``copy``/``export``/``import`` take: ``names``
    (each must exist), plus those matching an ``include`` glob (all when neither is
    given), minus those matching an ``exclude`` glob (fnmatch). A glob matching nothing,
    or a name that is not there: ConfigError listing the collections there are."""
    with opened(source, read_only=True) as conn:
        for name in names:
            require_collection(conn, name)
        if names and not include and not exclude:
            return list(dict.fromkeys(names))
        available = conn.list_collections()
        if not available and not names:
            raise VecmigrateError(
                f"{redact(str(conn.uri))} has no collections",
                hint="check that the URI names the store you mean (a path that does not exist "
                "is refused as such, so this one exists and is empty)",
            )
        return choose_collections(available, names, include, exclude)


def selection_of(
    *,
    limit: int | None = None,
    filter: dict[str, Any] | str | None = None,
    ids_file: str | Path | None = None,
    ids: list[Any] | tuple[Any, ...] | None = None,
) -> Selection | None:
    """A ``Selection`` from what a user gives (``filter`` as a dict or JSON text,
    ``ids_file`` one id per line, or ``ids``); None when nothing is selected out."""
    from vecmigrate.pipeline.selection import parse_filter_option

    if ids is not None and ids_file is not None:
        raise ConfigError("give ids or ids_file, not both", hint="--ids-file reads one per line")
    parsed = parse_filter_option(filter) if isinstance(filter, str) else filter
    got = read_ids_file(ids_file) if ids_file is not None else ids
    selection = Selection(
        limit=limit,
        filter=parsed,
        ids=None if got is None else tuple(got),
        ids_file=None if ids_file is None else str(ids_file),
    )
    return None if selection.empty else selection


def check(source: Store, collection: str | None = None) -> tuple[CheckReport, ...]:
    """Validate a dump (or any store): dims, NaN/Inf, duplicate ids, type drift, layout."""
    src = source if isinstance(source, Connector) else dump_uri(source)
    with opened(src, read_only=True) as conn:
        if collection:
            require_collection(conn, collection)
        names = [collection] if collection else conn.list_collections()
        return tuple(check_collection(conn, n) for n in names)


def verify(
    source: Store,
    target: Store,
    collection: str,
    *,
    target_collection: str | None = None,
    config: VerifyConfig | None = None,
    mapping: MappingSpec | None = None,
) -> VerifyReport:
    """Data parity and retrieval parity against exact ground truth, gated by ``config``;
    with ``mapping`` (the copy's) against what it made of the source."""
    config = check_verify_config(config)
    with opened(source, read_only=True) as src, opened(target, read_only=True) as dst:
        require_collection(src, collection)
        data = verify_migration(
            src, dst, collection, target_name=target_collection, config=config, spec=mapping
        )
    return VerifyReport(data)


def diff(
    source: Store,
    target: Store,
    collection: str,
    *,
    target_collection: str | None = None,
    mapping: MappingSpec | None = None,
) -> DiffResult:
    """Missing, extra, changed and duplicate ids between source and target; with
    ``mapping`` (the copy's) between what it made of the source and the target."""
    with opened(source, read_only=True) as src, opened(target, read_only=True) as dst:
        require_collection(src, collection)
        tname = target_collection or collection
        view, _ = select_reading(src, collection, None, mapping)  # as the copy read it
        compiled = source_mapping(view, dst, collection, tname, mapping)
        return diff_collections(
            view, dst, collection, target_name=tname, transform=as_transform(compiled)
        )


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
    _at_least_one("plan", sample_rows=sample_rows)
    with opened(source, read_only=True) as src, plan_target(target, measure_writes) as dst:
        require_collection(src, collection)
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
    if options is not None:
        _at_least_one(
            "SyncOptions",
            batch_rows=options.batch_rows,
            fetch_rows=options.fetch_rows,
            page_rows=options.page_rows,
        )
    mapping = options.mapping if options else None
    refuse_writing_into_source(source, target, collection, target_collection, mapping)
    with opened(source, read_only=True) as src, opened(target, read_only=False) as dst:
        return sync_collection(
            src, dst, collection, target_collection=target_collection, options=options
        )


def confirmed(options: CopyOptions | None) -> CopyOptions:
    """``options`` with ``--if-exists replace`` confirmed (after a user said yes)."""
    return replace(options or CopyOptions(), replace_confirmed=True)
