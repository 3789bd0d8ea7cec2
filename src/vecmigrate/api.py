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
from contextlib import contextmanager, nullcontext
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
from vecmigrate.pipeline.migration import (
    CollectionRun,
    MigrationFile,
    ProgressFactory,
    RunReport,
    run_migration,
)
from vecmigrate.pipeline.options import CopyOptions, CopyResult
from vecmigrate.pipeline.selection import Selection, choose_collections, read_ids_file
from vecmigrate.pipeline.sync import SyncOptions, SyncResult, sync_collection
from vecmigrate.uri import SECRET_PARAMS, ConnectionURI, Secret, path_uri, redact, uri_scheme
from vecmigrate.verify.check import CheckReport, check_collection
from vecmigrate.verify.copycheck import Check, VerifyMode, acknowledging, check_copy
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
        with (
            opened(target, read_only=False) as dst,
            # Acknowledgements are digested only for a check that reads them.
            acknowledging(src, dst, fresh=opts.if_exists != "reuse")
            if verify
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
            if not verify:
                return CopyReport(result, ())
            checks = check_copy(
                src,
                dst,
                collection,
                result,
                opts.mapping,
                mode="sampled" if verify is True else verify,
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


# -- engines, ls, doctor, dry runs and job files (issue #18's conventions) ------------------


@dataclass(frozen=True)
class EngineParam:
    """One ``?parameter`` a scheme takes, from its connector's ``Config`` dataclass."""

    name: str
    type: str
    default: Any
    required: bool
    secret: bool
    description: str | None

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class EngineInfo:
    """One URI scheme: whether its client is installed (else the extra that installs it),
    how its storage is located, and the parameters it takes (None: the connector could not
    be loaded, so its ``Config`` is unknown here)."""

    scheme: str
    installed: bool
    extra: str | None
    storage: str
    default_port: int | None
    params: tuple[EngineParam, ...] | None
    missing: str | None = None

    @property
    def ok(self) -> bool:
        """The scheme can be used as installed."""
        return self.installed

    @property
    def install(self) -> str | None:
        """The command that installs the client (None: installed, or nothing to install)."""
        if self.installed or not self.extra:
            return None
        return f"pip install 'vecmigrate[{self.extra}]'"

    def to_json(self) -> dict[str, Any]:
        """JSON form (docs/cli-json.md)."""
        return {
            "scheme": self.scheme,
            "installed": self.installed,
            "extra": self.extra,
            "install": self.install,
            "storage": self.storage,
            "default_port": self.default_port,
            "params": None if self.params is None else [p.to_json() for p in self.params],
        }


def _type_name(hint: Any) -> tuple[str, bool]:
    """(the type of a Config field as a user writes it, whether it is a secret)."""
    import types
    import typing

    from vecmigrate.uri import Secret as _Secret

    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if hint is _Secret:
        return "secret (env:NAME or file:PATH)", True
    return getattr(hint, "__name__", str(hint)), False


def _field_notes(cls: type) -> dict[str, str]:
    """Each field's comment (the ``#`` lines above it) or docstring (the string below it)
    in the source of ``cls`` and its bases: what the connector says of the parameter."""
    import inspect as _inspect
    import re

    notes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            lines = _inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        comment: list[str] = []
        for i, line in enumerate(lines):
            text = line.strip()
            if text.startswith("#"):
                comment.append(text.lstrip("#").strip())
                continue
            m = re.match(r"^\s{4}(\w+)\s*:[^=]", line)
            if m and not text.startswith(("def ", "@")):
                below = lines[i + 1].strip() if i + 1 < len(lines) else ""
                doc = below.strip("\"'") if below[:3] in ('"""', "'''") else ""
                note = " ".join(comment) or doc
                if note:
                    notes[m.group(1)] = note
            comment = []
    return notes


def _params_of(config: type) -> tuple[EngineParam, ...]:
    import dataclasses
    import typing

    hints = typing.get_type_hints(config)
    notes = _field_notes(config)
    params = []
    for f in dataclasses.fields(config):
        kind, secret = _type_name(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required or f.default is dataclasses.MISSING else f.default
        described = f.metadata.get("help") or f.metadata.get("description") or notes.get(f.name)
        params.append(EngineParam(f.name, kind, default, required, secret, described))
    return tuple(params)


def _class_in_source(module: str, name: str) -> tuple[Any, list[str], Any] | None:
    """(the ``ast.ClassDef`` of ``name`` in ``module``'s source, its lines, the module's
    tree), read without importing ``module`` (whose engine client may be missing)."""
    import ast
    from importlib.util import find_spec

    try:
        spec = find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    text = Path(spec.origin).read_text(encoding="utf-8")
    tree = ast.parse(text)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node, text.splitlines(), tree
    return None


def _source_params(module: str, cls_name: str, depth: int = 0) -> list[EngineParam] | None:
    """The parameters of the ``Config`` of connector ``cls_name`` in ``module``, read from
    the source (bases followed through the module's imports); None when not found."""
    import ast

    found = _class_in_source(module, cls_name)
    if found is None or depth > 4:
        return None
    node, lines, tree = found
    if depth == 0:  # the connector class: its ``Config = XConfig``
        config = next(
            (
                a.value.id
                for a in node.body
                if isinstance(a, ast.Assign)
                and isinstance(a.value, ast.Name)
                and any(isinstance(t, ast.Name) and t.id == "Config" for t in a.targets)
            ),
            None,
        )
        if config is not None:
            return _source_params(module, config, 1)
        for base in node.bases:  # a connector inheriting its Config (MilvusLiteConnector)
            if isinstance(base, ast.Name) and base.id != "Connector":
                return _source_params(module, base.id, 0)
        return []  # the base's ConnectorConfig: no parameters
    params: list[EngineParam] = []
    for base in node.bases:
        if not isinstance(base, ast.Name) or base.id == "ConnectorConfig":
            continue
        where = next(
            (
                imp.module
                for imp in tree.body
                if isinstance(imp, ast.ImportFrom)
                and imp.module
                and any((a.asname or a.name) == base.id for a in imp.names)
            ),
            module,
        )
        inherited = _source_params(where, base.id, depth + 1)
        if inherited is None:
            return None
        params += inherited
    for item in node.body:
        if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
            continue
        annotation = ast.unparse(item.annotation)
        if annotation.startswith("ClassVar"):
            continue
        above: list[str] = []
        for line in reversed(lines[: item.lineno - 1]):
            if not line.strip().startswith("#"):
                break
            above.insert(0, line.strip().lstrip("#").strip())
        kinds = [k.strip() for k in annotation.split("|") if k.strip() != "None"]
        secret = kinds == ["Secret"]
        kind = "secret (env:NAME or file:PATH)" if secret else " | ".join(kinds)
        try:
            default = ast.literal_eval(item.value) if item.value is not None else None
        except ValueError:
            default = ast.unparse(item.value) if item.value is not None else None
        name = item.target.id
        params = [p for p in params if p.name != name]
        params.append(
            EngineParam(name, kind, default, item.value is None, secret, " ".join(above) or None)
        )
    return params


def engines() -> tuple[EngineInfo, ...]:
    """Every URI scheme (built in and from plug-ins), sorted: installed or the extra that
    installs it, storage kind, default port and each URI parameter with its type."""
    from vecmigrate.connectors.registry import connector_class, scheme_info

    found = []
    for scheme in sorted(known_schemes()):
        extra = REGISTRY[scheme].extra if scheme in REGISTRY else None
        try:
            cls = connector_class(scheme)
        except ConfigError as exc:
            info = REGISTRY.get(scheme)
            read = _source_params(info.module, info.cls) if info else None
            found.append(
                EngineInfo(
                    scheme,
                    False,
                    extra,
                    info.storage if info else "unknown",
                    info.default_port if info else None,
                    None if read is None else tuple(read),
                    exc.message,
                )
            )
            continue
        info = scheme_info(scheme)
        found.append(
            EngineInfo(scheme, True, extra, info.storage, info.default_port, _params_of(cls.Config))
        )
    return tuple(found)


@dataclass(frozen=True)
class Listing:
    """``ls``: the collections of a store with their record counts."""

    uri: str
    collections: tuple[tuple[str, int], ...]

    @property
    def ok(self) -> bool:
        """Always True: listing succeeded."""
        return True

    def to_json(self) -> dict[str, Any]:
        """JSON form (docs/cli-json.md)."""
        return {
            "uri": redact(self.uri),
            "collections": [{"name": n, "count": c} for n, c in self.collections],
            "total": sum(c for _, c in self.collections),
        }


def ls(source: Store) -> Listing:
    """The collections of ``source`` (read-only) with their counts, sorted by name."""
    with opened(source, read_only=True) as conn:
        names = sorted(conn.list_collections())
        return Listing(str(conn.uri.raw), tuple((n, conn.count(n)) for n in names))


@dataclass(frozen=True)
class DoctorCheck:
    """One check of ``doctor``: its name, whether it passed, what was found, a hint when
    it failed (``skipped``: not run, neither a pass nor a failure)."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {k: redact(v) if isinstance(v, str) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class DoctorReport:
    """Every check ``doctor`` ran on a store; ``ok``: none failed."""

    uri: str
    engine: str | None
    checks: tuple[DoctorCheck, ...]

    @property
    def ok(self) -> bool:
        """No check failed."""
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """JSON form (docs/cli-json.md)."""
        return {
            "uri": redact(self.uri),
            "engine": self.engine,
            "ok": self.ok,
            "checks": [c.to_json() for c in self.checks],
        }


def _client_version(extra: str | None) -> str | None:
    """The installed version of the first distribution the extra requires."""
    import re
    from importlib.metadata import PackageNotFoundError, requires, version

    if not extra:
        return None
    try:
        reqs = requires("vecmigrate") or []
    except PackageNotFoundError:
        return None
    for req in reqs:
        if f'extra == "{extra}"' in req:
            name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
            try:
                return f"{name} {version(name)}"
            except PackageNotFoundError:
                continue
    return None


def _server_version(conn: Connector) -> str | None:
    """The engine's version where the connector exposes one (None otherwise)."""
    for attr in ("server_version", "version"):
        value = getattr(conn, attr, None)
        if callable(value):
            value = value()
        if value:
            return ".".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return None


def _capabilities_line(conn: Connector) -> str:
    caps = conn.capabilities
    parts = [
        "metrics " + ",".join(sorted(m.value for m in caps.metrics)),
        "ids " + ",".join(sorted(i.value for i in caps.id_types)),
        f"max batch {caps.max_batch_rows} rows",
    ]
    parts += [
        name
        for name, on in (
            ("named vectors", caps.named_vectors),
            ("sparse", caps.sparse_vectors),
            ("namespaces", caps.namespaces),
            ("documents", caps.documents),
        )
        if on
    ]
    parts.append("mutable" if caps.mutable else "append-only")
    return ", ".join(parts)


def _failure(exc: Exception) -> tuple[str, str | None]:
    """(message, hint) of an exception a check caught."""
    if isinstance(exc, VecmigrateError):
        return exc.message, exc.hint
    return f"{type(exc).__name__}: {exc}", None


def _probe_write(store: str) -> DoctorCheck:
    """Create a scratch collection, write one record, count it, drop it."""
    import uuid

    import numpy as np

    from vecmigrate.model import IdType, Metric, VectorField
    from vecmigrate.records import build_batch

    name = f"vecmigrate_doctor_{uuid.uuid4().hex[:8]}"
    try:
        with opened(store, read_only=False) as conn:
            caps = conn.capabilities
            metric = Metric.COSINE if Metric.COSINE in caps.metrics else next(iter(caps.metrics))
            id_type = IdType.STRING if IdType.STRING in caps.id_types else IdType.INT
            schema = CollectionSchema(
                name=name, vectors=(VectorField(dim=4, metric=metric),), id_type=id_type
            )
            conn.create(schema)
            try:
                ids = ["doctor-1"] if id_type == IdType.STRING else [1]
                vec = np.array([[0.5, 0.5, 0.5, 0.5]], dtype=np.float32)
                conn.upsert(name, build_batch(schema, ids, {"vector": vec}))
                conn.finalize(name)
                counted = conn.count(name)
            finally:
                conn.drop(name)
    except Exception as exc:
        message, hint = _failure(exc)
        return DoctorCheck(
            "write", False, message, hint or "check that this user may create and drop collections"
        )
    return DoctorCheck(
        "write", True, f"created, wrote 1 record ({counted} counted) and dropped {name!r}"
    )


def doctor(store: str, *, write: bool = False) -> DoctorReport:
    """Check a store: the URI and its client, the connection, the listing, the engine's
    version (where the connector exposes one), its capabilities, and with ``write`` a
    write permission probe (a scratch collection created and dropped). Never raises for
    a failed check: each failure is a check with ``ok=False`` and a hint."""
    from vecmigrate.connectors.registry import connector_class

    checks: list[DoctorCheck] = []
    try:
        parsed = parse_uri(store)
        cls = connector_class(parsed.scheme)
        cls.Config.from_uri(parsed)
    except VecmigrateError as exc:
        checks.append(DoctorCheck("uri", False, exc.message, exc.hint))
        return DoctorReport(store, None, tuple(checks))
    extra = REGISTRY[parsed.scheme].extra if parsed.scheme in REGISTRY else None
    client = _client_version(extra)
    checks.append(
        DoctorCheck("uri", True, f"{cls.schemes[0]} connector" + (f", {client}" if client else ""))
    )
    try:
        with opened(store, read_only=True) as conn:
            checks.append(DoctorCheck("connect", True, f"opened {conn.uri} read-only"))
            try:
                names = conn.list_collections()
                checks.append(DoctorCheck("read", True, f"{len(names)} collection(s) listed"))
            except Exception as exc:
                message, hint = _failure(exc)
                hint = hint or "check that this user may read the store"
                checks.append(DoctorCheck("read", False, message, hint))
            version = _server_version(conn)
            checks.append(
                DoctorCheck("version", True, f"server {version}")
                if version
                else DoctorCheck("version", True, "the connector does not expose one", skipped=True)
            )
            checks.append(DoctorCheck("capabilities", True, _capabilities_line(conn)))
    except Exception as exc:
        checks.append(DoctorCheck("connect", False, *_failure(exc)))
        return DoctorReport(store, cls.schemes[0], tuple(checks))
    if write:
        checks.append(_probe_write(store))
    else:
        checks.append(
            DoctorCheck(
                "write",
                True,
                "not probed (--write creates and drops a scratch collection)",
                skipped=True,
            )
        )
    return DoctorReport(store, cls.schemes[0], tuple(checks))


def run(
    migration: str | Path | MigrationFile,
    *,
    resume: bool = False,
    restart: bool = False,
    state: str | Path | None = None,
    replace_confirmed: bool = False,
    progress: ProgressFactory | None = None,
    on_collection: Callable[[CollectionRun], None] | None = None,
) -> RunReport:
    """Run a migration file (a path, or a ``MigrationFile``): each collection copied with
    ``copy`` and verified as it is, in order; resumable as a whole with ``resume=True``
    (the run state file records the finished collections, each copy its own job).
    ``progress(name)`` gives an ``(advance, set_total)`` context per collection."""
    return run_migration(
        migration,
        resume=resume,
        restart=restart,
        state=Path(state) if state is not None else None,
        replace_confirmed=replace_confirmed,
        progress=progress,
        on_collection=on_collection,
    )


@dataclass(frozen=True)
class DryRunReport:
    """What a copy would do, nothing touched (``copy --dry-run``): per collection the target
    collection(s) it would create, reuse or replace, the records it would write, the
    mapping decisions, and ``error``: what would stop it (None: nothing)."""

    source: str
    target: str
    collections: tuple[dict[str, Any], ...]

    @property
    def ok(self) -> bool:
        """Nothing would stop the copy."""
        return all(c["error"] is None for c in self.collections)

    def to_json(self) -> dict[str, Any]:
        """JSON form (docs/cli-json.md)."""
        return {
            "dry_run": True,
            "source": redact(self.source),
            "target": redact(self.target),
            "ok": self.ok,
            "rows": sum(c["rows"] for c in self.collections),
            "collections": list(self.collections),
        }


def dry_run(
    source: Store,
    target: Store,
    collections: list[str] | None = None,
    *,
    target_collection: str | None = None,
    options: CopyOptions | None = None,
    state_dir: str | Path | None = None,
) -> DryRunReport:
    """What ``copy`` of ``collections`` (default: every one) would create and write, read
    from both stores without changing either: no job file, no target collection, no
    dead-letter directory (a local target that does not exist is not created)."""
    from vecmigrate.pipeline.dryrun import dry_run_copy

    opts = check_copy_options(options or CopyOptions())
    results = []
    with opened(source, read_only=True) as src, _plan_target(target, False) as dst:
        names = collections or src.list_collections()
        for name in names:
            require_collection(src, name)
            refuse_writing_into_source(source, target, name, target_collection, opts.mapping)
            job = opts.job_path or job_path(
                source, target, name, target_collection, opts.mapping, state_dir
            )
            results.append(
                dry_run_copy(
                    src,
                    dst,
                    name,
                    target_collection=target_collection,
                    spec=opts.mapping,
                    if_exists=opts.if_exists,
                    job=str(job),
                    selection=opts.selection,
                )
            )
    src_uri = source if isinstance(source, str) else source.uri.raw
    dst_uri = target if isinstance(target, str) else target.uri.raw
    return DryRunReport(src_uri, dst_uri, tuple(results))


DEFAULT_STATE_DIR = Path(".vecmigrate")


def job_path(
    source: Store,
    target: Store,
    collection: str,
    target_collection: str | None = None,
    mapping: MappingSpec | None = None,
    state_dir: str | Path | None = None,
) -> Path:
    """The job file a copy of ``collection`` keeps under ``state_dir`` (default
    ``./.vecmigrate``): ``<state_dir>/jobs/<collection>-<hash>.sqlite``, the same name the
    pipeline gives it."""
    from types import SimpleNamespace
    from typing import cast

    from vecmigrate.pipeline.options import default_job_path

    def stand_in(store: Store) -> Connector:
        uri = store.uri if isinstance(store, Connector) else parse_uri(store)
        return cast(Connector, SimpleNamespace(uri=uri))

    spec_target = mapping.target_collection if mapping else None
    tgt = target_collection or spec_target or collection
    path = default_job_path(stand_in(source), stand_in(target), collection, tgt)
    root = Path(state_dir) if state_dir is not None else DEFAULT_STATE_DIR
    return root / path.relative_to(DEFAULT_STATE_DIR)


@dataclass(frozen=True)
class JobInfo:
    """A job file under a state directory: what it copies and how far it got."""

    name: str
    path: str
    source: str | None
    target: str | None
    collection: str | None
    target_collection: str | None
    status: str | None
    rows: int
    partitions: int
    partitions_done: int
    dead_letters: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The file could be read."""
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """JSON form (docs/cli-json.md)."""
        return {k: redact(v) if isinstance(v, str) else v for k, v in self.__dict__.items()}


def _read_job(path: Path) -> JobInfo:
    import json
    import sqlite3

    name = path.name.removesuffix(".sqlite")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            job = dict(db.execute("SELECT key, value FROM job").fetchall())
            rows, parts, done = db.execute(
                "SELECT coalesce(sum(rows), 0), count(*), coalesce(sum(done), 0) FROM partition"
            ).fetchone()
            dead = db.execute("SELECT value FROM counter WHERE name='dead_letters'").fetchone()
        finally:
            db.close()
        ident = json.loads(job.get("identity") or "{}")
    except (sqlite3.Error, ValueError) as exc:
        return JobInfo(name, str(path), None, None, None, None, None, 0, 0, 0, 0, str(exc))
    return JobInfo(
        name,
        str(path),
        ident.get("source"),
        ident.get("target"),
        ident.get("collection"),
        ident.get("target_collection"),
        job.get("status") or "planned",
        int(rows),
        int(parts),
        int(done),
        int(dead[0]) if dead else 0,
    )


def jobs(state_dir: str | Path | None = None) -> tuple[JobInfo, ...]:
    """The job files under ``state_dir`` (default ``./.vecmigrate``), sorted by name;
    read-only (a missing directory holds no jobs)."""
    root = (Path(state_dir) if state_dir is not None else DEFAULT_STATE_DIR) / "jobs"
    if not root.is_dir():
        return ()
    return tuple(_read_job(p) for p in sorted(root.glob("*.sqlite")))


def remove_job(job: JobInfo, *, dead_letters: bool = False) -> list[str]:
    """Delete a job file (with its SQLite -wal/-shm files) and, with ``dead_letters``,
    its dead-letter directory; the paths removed."""
    import shutil

    removed = []
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{job.path}{suffix}")
        if p.exists():
            p.unlink()
            removed.append(str(p))
    dead = Path(job.path).with_suffix(".dead-letters")
    if dead_letters and dead.is_dir():
        shutil.rmtree(dead)
        removed.append(str(dead))
    return removed
