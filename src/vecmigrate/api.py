"""The public Python API: every verb of the CLI as a function returning a typed result.

Sources and targets are URIs (opened and closed here; read-only where the verb only
reads) or open ``Connector`` objects (left open). Results are immutable and carry
``.ok`` and ``.to_json()``; the CLI prints exactly these.
"""

from __future__ import annotations

import difflib
import socket
import unicodedata
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vecmigrate.connectors import Connector, connect
from vecmigrate.connectors.identity import refuse_same_collection
from vecmigrate.connectors.registry import REGISTRY, known_schemes
from vecmigrate.errors import ConfigError, TransientError, VecmigrateError
from vecmigrate.mapping import MappingSpec
from vecmigrate.model import CollectionSchema
from vecmigrate.pipeline.copy import copy_collection
from vecmigrate.pipeline.dryrun import AbsentTarget, open_plan_target, plan_migration
from vecmigrate.pipeline.options import CopyOptions, CopyResult
from vecmigrate.pipeline.sync import SyncOptions, SyncResult, sync_collection
from vecmigrate.uri import SECRET_PARAMS, ConnectionURI, Secret, path_uri, redact, uri_scheme
from vecmigrate.verify.check import CheckReport, check_collection
from vecmigrate.verify.copycheck import Check, check_copy
from vecmigrate.verify.diff import DiffResult, diff_collections
from vecmigrate.verify.gates import VerifyConfig
from vecmigrate.verify.run import verify_migration

Store = str | Connector
Progress = Callable[[int], None]


@contextmanager
def opened(store: Store, *, read_only: bool) -> Iterator[Connector]:
    """A connector for ``store``: an open one as it is, a URI opened (and closed) here.

    A URI is checked before any engine client sees it: a scheme with non-ASCII letters,
    a local store whose path is a file where the engine keeps a directory (or the other
    way round), and a server that refuses TCP connections are each refused with one
    line naming them, instead of whatever the engine client makes of them."""
    if isinstance(store, Connector):
        yield store
        return
    parsed = parse_uri(store)
    _check_local_path(parsed)
    conn = connect(parsed, read_only=read_only)
    try:
        _check_secrets(parsed)
        _check_reachable(parsed)
    except BaseException:
        conn.close()
        raise
    with conn:
        yield conn


def parse_uri(text: str) -> ConnectionURI:
    """``text`` parsed as a connection URI; a scheme spelled with a non-ASCII look-alike
    (a Cyrillic o in ``chroma://``) is named as such, with the known schemes."""
    _check_scheme_ascii(text)
    return ConnectionURI.parse(text)


def _check_scheme_ascii(text: str) -> None:
    head, sep, _ = text.partition(":")
    if not sep or not head or "/" in head or head.isascii():
        return
    odd = [
        f"{c!r} ({unicodedata.name(c, f'U+{ord(c):04X}')})"
        for c in dict.fromkeys(head)
        if not c.isascii()
    ]
    known = sorted(known_schemes())
    close = difflib.get_close_matches(head.lower(), known, n=1, cutoff=0.6)
    raise ConfigError(
        f"the scheme {head!r} of {redact(text)!r} is not ASCII: {', '.join(odd)}",
        hint=(f"did you mean {close[0]!r}? " if close else "")
        + f"type the scheme in ASCII letters; known schemes: {', '.join(known)}",
    )


# Local stores kept in a directory, and those kept in one file.
_DIRECTORY_STORES = {
    "dump": "a dump",
    "chroma": "a Chroma store",
    "lancedb": "a LanceDB database",
    "qdrant+local": "a Qdrant local store",
    "faiss": "a FAISS store",
}
_FILE_STORES = {"milvus-lite": "a Milvus Lite database file", "sqlite-vec": "an SQLite file"}


def _check_local_path(uri: ConnectionURI) -> None:
    """Refuse a local path that cannot be the store the scheme keeps there: a regular file
    where a directory is kept, a directory where a file is, or a path below a file."""
    if uri.scheme not in _DIRECTORY_STORES and uri.scheme not in _FILE_STORES:
        return
    path = uri.local_path.expanduser()
    where = path.resolve()
    if uri.scheme in _DIRECTORY_STORES and path.exists() and not path.is_dir():
        raise ConfigError(
            f"{uri} is a file ({where}), not the directory of {_DIRECTORY_STORES[uri.scheme]}",
            hint=f"{uri.scheme} keeps its data in a directory: give that directory, or a "
            "path that does not exist yet to create one",
        )
    if uri.scheme in _FILE_STORES and path.is_dir():
        raise ConfigError(
            f"{uri} is a directory ({where}), not {_FILE_STORES[uri.scheme]}",
            hint=f"name the file, e.g. {uri.scheme}://{quote(str(where / 'vectors.db'))}",
        )
    for parent in where.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    f"{uri} cannot be used: {parent} is a file, so nothing can be below it",
                    hint="choose a path whose parent folders are directories",
                )
            return


def _check_secrets(uri: ConnectionURI) -> None:
    """Resolve each secret reference once, so that an unset ``env:NAME`` is reported as
    such before a connection is tried (the connector resolves it again when it opens)."""
    for name, ref in uri.params.items():
        if name.lower() in SECRET_PARAMS and ref.startswith(("env:", "file:")):
            try:
                Secret(ref, param=name).reveal()
            except ConfigError as exc:
                fix = "set the variable" if ref.startswith("env:") else "create the file"
                hint = (
                    f"{fix} before running, or pass ?{name}=env:OTHER / ?{name}=file:/path "
                    f"(the URI names {ref!r})"
                )
                raise ConfigError(exc.message, hint=exc.hint or hint) from None


def _check_reachable(uri: ConnectionURI, timeout: float = 10.0) -> None:
    """Refuse a server that does not accept a TCP connection, naming host and port (one
    check for every engine, before its client retries or logs on its own)."""
    info = REGISTRY.get(uri.scheme)
    if info is None or info.storage != "server" or info.default_port is None:
        return
    host, port = uri.host or "127.0.0.1", uri.port or info.default_port
    proxies = {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https")}
    if proxies and not urllib.request.proxy_bypass(host):
        return  # the client may reach it through the proxy: let it try
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        if isinstance(exc, socket.gaierror):
            why = f"host name {host!r} is not known"
        elif isinstance(exc, TimeoutError | socket.timeout):
            why = f"no answer within {timeout:g}s"
        else:
            why = (exc.strerror or str(exc)).lower()
        raise TransientError(
            f"cannot connect to {uri} ({host}:{port}): {why}",
            hint=f"check that the {uri.scheme} server is running and listening on "
            f"{host}:{port}, and that the URI's host and port are right",
        ) from None


@contextmanager
def _plan_target(target: Store, measure_writes: bool) -> Iterator[Connector | AbsentTarget]:
    if isinstance(target, Connector):
        yield target
        return
    parsed = parse_uri(target)
    _check_local_path(parsed)
    _check_secrets(parsed)
    _check_reachable(parsed)
    with open_plan_target(target, measure_writes) as dst:
        yield dst


def dump_uri(arg: str | Path) -> str:
    """A connection URI as it is; a path (``dump/``, ``./x``) as the dump there."""
    text = str(arg)
    if "://" in text:
        _check_scheme_ascii(text)
    return text if uri_scheme(text) in known_schemes() else path_uri("dump", text)


def export_uri(output: str | Path, encrypt_key: str | None = None) -> str:
    """The dump URI an export writes: ``output`` as a path, with the key reference."""
    where = Path(output).expanduser()
    if where.exists() and not where.is_dir():
        raise ConfigError(
            f"the export output {where} is a file; an export writes a directory",
            hint="give a directory that does not exist yet (or an existing dump directory "
            "with --if-exists reuse/replace)",
        )
    target = path_uri("dump", output)
    if encrypt_key is None:
        return target
    if not encrypt_key.startswith(("env:", "file:")):
        # Never echo the value: it may be the key itself.
        raise ConfigError(
            "--encrypt-key (encrypt_key) takes env:NAME or file:/path, not a key",
            hint="put the key in an environment variable or a file and name it: "
            "--encrypt-key env:DUMP_KEY",
        )
    return f"{target}?key={quote(encrypt_key, safe=':/')}"


def _at_least_one(owner: str, **counts: int | None) -> None:
    """Counts an option type takes (workers, batch_rows, k, ...) are 1 or more."""
    for name, value in counts.items():
        if value is not None and value < 1:
            raise ConfigError(
                f"{owner}.{name} must be 1 or more, not {value}",
                hint=f"--{name.replace('_', '-')} on the command line; a count of 0 would "
                "never finish or divide by zero",
            )


def check_copy_options(options: CopyOptions) -> CopyOptions:
    """``options`` when every count in it is usable (ConfigError otherwise)."""
    _at_least_one(
        "CopyOptions",
        workers=options.workers,
        batch_rows=options.batch_rows,
        queue_depth=options.queue_depth,
        partitions=options.partitions,
    )
    return options


def check_verify_config(config: VerifyConfig | None) -> VerifyConfig | None:
    """``config`` validated again: ``model_copy(update=...)`` skips pydantic's checks,
    so ``queries=0`` or ``k=0`` would reach the run and divide by zero."""
    if config is None:
        return None
    _at_least_one(
        "VerifyConfig",
        queries=config.queries,
        k=config.k,
        max_namespaces=config.max_namespaces,
    )
    return config


def refuse_writing_into_source(
    source: Store,
    target: Store,
    collection: str,
    target_collection: str | None = None,
    mapping: MappingSpec | None = None,
) -> None:
    """Refuse a copy or sync of a collection into itself before either store is opened,
    so that the refusal needs no connection (the pipeline checks it again)."""
    if isinstance(source, Connector) or isinstance(target, Connector):
        return
    spec_target = mapping.target_collection if mapping else None
    tgt = target_collection or spec_target or collection
    refuse_same_collection(parse_uri(source), collection, parse_uri(target), tgt)


def require_collection(conn: Connector, name: str) -> None:
    """Refuse a collection ``conn`` does not hold, listing the ones it does. A name that
    is not listed but that the engine describes (an alias) is accepted."""
    try:
        names = conn.list_collections()
    except VecmigrateError:
        return  # the verb itself reports the engine's error
    if name in names:
        return
    try:
        conn.describe(name)
    except TransientError:
        raise
    except VecmigrateError:
        shown = ", ".join(map(repr, sorted(names)[:20])) + (" ..." if len(names) > 20 else "")
        raise ConfigError(
            f"{conn.uri} has no collection {name!r}",
            hint=f"its collections: {shown}" if names else "it holds no collections",
        ) from None


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
        if collection:
            require_collection(conn, collection)
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
    opts = check_copy_options(options or CopyOptions())
    refuse_writing_into_source(source, target, collection, target_collection, opts.mapping)
    with opened(source, read_only=True) as src, opened(target, read_only=False) as dst:
        require_collection(src, collection)
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
) -> VerifyReport:
    """Data parity and retrieval parity against exact ground truth, gated by ``config``."""
    config = check_verify_config(config)
    with opened(source, read_only=True) as src, opened(target, read_only=True) as dst:
        require_collection(src, collection)
        data = verify_migration(src, dst, collection, target_name=target_collection, config=config)
    return VerifyReport(data)


def diff(
    source: Store, target: Store, collection: str, *, target_collection: str | None = None
) -> DiffResult:
    """Missing, extra, changed and duplicate ids between source and target."""
    with opened(source, read_only=True) as src, opened(target, read_only=True) as dst:
        require_collection(src, collection)
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
    _at_least_one("plan", sample_rows=sample_rows)
    with opened(source, read_only=True) as src, _plan_target(target, measure_writes) as dst:
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
