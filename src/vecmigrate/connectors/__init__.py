"""Connector registry. Engine modules are imported lazily, on first use of their scheme,
so ``import vecmigrate`` pulls in no engine client."""

from __future__ import annotations

from vecmigrate.connectors.base import Connector
from vecmigrate.connectors.identity import StorageIdentity, storage_identity
from vecmigrate.connectors.registry import REGISTRY, Scheme, connector_class, scheme_info
from vecmigrate.errors import ConfigError
from vecmigrate.uri import ConnectionURI


def _check_exists(uri: ConnectionURI) -> None:
    path = uri.local_path.expanduser()
    if not path.exists():
        raise ConfigError(
            f"{uri} does not exist ({path.resolve()})",
            hint="check the path; read-only commands never create storage",
        )


def connect(uri: str | ConnectionURI, *, read_only: bool = False) -> Connector:
    """Open a connector for a connection URI such as ``chroma:///data/chroma``.

    ``read_only`` is for verbs that must not create or change storage (inspect, check,
    verify, diff, plan, the source of a copy): a local store that does not exist is a
    ConfigError instead of being created empty.
    """
    parsed = uri if isinstance(uri, ConnectionURI) else ConnectionURI.parse(uri)
    cls = connector_class(parsed.scheme)
    cls.Config.from_uri(parsed)  # a mistyped parameter first, before any existence check
    if scheme_info(parsed.scheme).storage == "path" and read_only:
        _check_exists(parsed)
    return cls(parsed)


__all__ = [
    "REGISTRY",
    "Connector",
    "Scheme",
    "StorageIdentity",
    "connect",
    "connector_class",
    "scheme_info",
    "storage_identity",
]
