"""Opening the stores a verb names, and the checks made before anything is read or
written: URI shape, local paths, secrets, reachability, option sanity, a collection
that exists, never writing into the source."""

from __future__ import annotations

import difflib
import socket
import unicodedata
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from vecmigrate.connectors import Connector, connect
from vecmigrate.connectors.identity import refuse_same_collection
from vecmigrate.connectors.registry import REGISTRY, known_schemes
from vecmigrate.errors import ConfigError, TransientError, VecmigrateError
from vecmigrate.mapping import MappingSpec
from vecmigrate.pipeline.dryrun import AbsentTarget, open_plan_target
from vecmigrate.pipeline.options import CopyOptions
from vecmigrate.uri import SECRET_PARAMS, ConnectionURI, Secret, path_uri, redact, uri_scheme
from vecmigrate.verify.gates import VerifyConfig

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
    except UnicodeError:  # the IDNA codec refuses it: ".", "a..b", a 64-character label
        raise ConfigError(
            f"{uri}: {host!r} is not a host name",
            hint=f"a {uri.scheme} URI names a server, {uri.scheme}://HOST:PORT/...; a local "
            "file or folder takes an embedded engine's scheme (`vecmigrate engines` lists them)",
        ) from None
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
def plan_target(target: Store, measure_writes: bool) -> Iterator[Connector | AbsentTarget]:
    """The target of a dry run: open (read-only unless ``measure_writes``), or a stand-in
    for one that does not exist yet."""
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
