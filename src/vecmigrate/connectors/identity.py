"""Which storage a URI reaches, whatever its spelling: the identity every writing verb
compares before it writes, so a collection is never copied onto itself.

Normalisation is DNS-free: paths are resolved (relative, ``..``, symlinks), host names
lower-cased, loopback spellings folded together, default ports and default scopes filled
in, user names and secrets left out (they do not change where the data lives).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from vecmigrate.connectors.registry import scheme_info
from vecmigrate.errors import ConfigError
from vecmigrate.uri import ConnectionURI

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@dataclass(frozen=True)
class StorageIdentity:
    """Engine family plus canonical location (path, or host:port/database) and scope."""

    family: str
    location: str
    scope: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        scope = "".join(f" {k}={v}" for k, v in self.scope if v)
        return f"{self.family} {self.location}{scope}"


def _host(host: str | None) -> str:
    name = (host or "127.0.0.1").lower().rstrip(".")
    if name in _LOOPBACK_NAMES:
        return "loopback"
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return name
    if ip.is_loopback or ip.is_unspecified:
        return "loopback"
    return ip.compressed


def _path(uri: ConnectionURI) -> str:
    # realpath follows symlinks of every existing prefix, so a missing target resolves too.
    return os.path.realpath(os.path.abspath(uri.local_path.expanduser()))


def storage_identity(uri: ConnectionURI | str) -> StorageIdentity:
    """The canonical identity of the storage ``uri`` reaches."""
    parsed = uri if isinstance(uri, ConnectionURI) else ConnectionURI.parse(uri)
    scheme = scheme_info(parsed.scheme)
    family = scheme.family or parsed.scheme
    scope = tuple((k, parsed.params.get(k, default)) for k, default in scheme.scope)
    if scheme.storage == "path":
        return StorageIdentity(family, _path(parsed), scope)
    if scheme.storage == "service":  # a cloud service: the account's index is the host
        return StorageIdentity(family, parsed.host or parsed.path.strip("/"), scope)
    # redis://h/1 and redis://h?db=1 name the same database.
    database = parsed.path.strip("/") or parsed.params.get("db") or scheme.default_db
    location = f"{_host(parsed.host)}:{parsed.port or scheme.default_port}/{database}"
    return StorageIdentity(family, location, scope)


def refuse_same_collection(
    source: ConnectionURI, collection: str, target: ConnectionURI, target_collection: str
) -> None:
    """ConfigError when writing ``target_collection`` would write into the source itself."""
    src_at, dst_at = _location(source, collection), _location(target, target_collection)
    if src_at is not None and src_at == dst_at:
        raise ConfigError(
            f"source collection {collection!r} and target collection {target_collection!r} "
            f"are the same file ({src_at}): writing it would destroy what it reads",
            hint="name another target path",
        )
    if collection != target_collection:
        return
    src, dst = storage_identity(source), storage_identity(target)
    if src == dst:
        raise ConfigError(
            f"source and target are the same collection {collection!r} ({src}): "
            "writing it would destroy what it reads",
            hint="name another target (a different path, database or --target-collection)",
        )


def _location(uri: ConnectionURI, collection: str) -> str | None:
    """Where a store that keeps each collection in its own file keeps this one (no I/O
    beyond looking at the path: connectors open nothing when constructed)."""
    from vecmigrate.connectors.base import Connector
    from vecmigrate.connectors.registry import connector_class

    cls = connector_class(uri.scheme)
    if cls.collection_location is Connector.collection_location:
        return None
    conn = cls(uri)
    try:
        return conn.collection_location(collection)
    finally:
        conn.close()
