"""Run the proxy: one ``MigrationRouter`` per collection, an engine dialect in front, uvicorn.

``uvicorn`` answers SIGTERM/SIGINT by closing the listening socket and waiting (up to
``drain_timeout``) for the requests in flight; the application's shutdown then waits for
writes still running, replays what they queued for the secondary (``router.drain``) and
closes the routers, so a restart or a rolling deploy loses no acknowledged write.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError
from vecmigrate.live.router import MigrationRouter
from vecmigrate.live.state import open_state
from vecmigrate.proxy.app import Dialect, KeyPolicy, Proxy, create_app
from vecmigrate.proxy.service import ProxyCollection
from vecmigrate.uri import Secret, redact

log = logging.getLogger(__name__)
DialectName = Literal["chroma", "qdrant"]
DIALECTS: tuple[DialectName, ...] = ("chroma", "qdrant")


@dataclass
class ProxyConfig:
    """Everything ``vecmigrate proxy`` takes."""

    source: str
    target: str
    state: str
    collections: list[str]
    dialect: DialectName = "chroma"
    host: str = "127.0.0.1"
    port: int = 8300
    target_collection: str | None = None
    tenant: str = "default_tenant"
    database: str = "default_database"
    api_key: str | None = None  # a reference: env:NAME or file:PATH
    key_header: str | None = "x-vecmigrate-key"
    key_client_address: bool = False
    workers: int = 16
    max_connections: int = 1024
    request_timeout: float = 30.0
    read_timeout: float = 5.0
    shadow_fraction: float = 1.0
    drain_timeout: float = 30.0
    state_ttl: float = 1.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    access_log: bool = False
    instance: str | None = None

    def check(self) -> None:
        """ConfigError for anything that cannot work, before anything is opened."""
        if self.dialect not in DIALECTS:
            raise ConfigError(f"unknown dialect {self.dialect!r}", hint=f"one of {DIALECTS}")
        if not self.collections:
            raise ConfigError("name the collection(s) to serve with --collection")
        if len(set(self.collections)) != len(self.collections):
            raise ConfigError("a collection is named twice")
        if self.target_collection and len(self.collections) > 1:
            raise ConfigError("--target-collection applies to a single --collection")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both --tls-cert and --tls-key")
        if self.api_key is not None:
            api_key_secret(self.api_key)
        if self.workers < 1 or self.request_timeout <= 0 or self.drain_timeout < 0:
            raise ConfigError(
                "--workers and --request-timeout must be positive, --drain-timeout not negative"
            )


def api_key_secret(ref: str) -> Secret:
    """The client API key by reference; a literal key is refused (it would end up in
    shell history, process lists and unit files)."""
    if not ref.startswith(("env:", "file:")):
        raise ConfigError(
            "--api-key takes a reference, not the key itself",
            hint="--api-key env:NAME (an environment variable) or --api-key file:/path",
        )
    return Secret(ref, param="api-key")


def build(cfg: ProxyConfig) -> tuple[Proxy, Dialect]:
    """Open the engines and the state store, start a router per collection."""
    cfg.check()
    api_key = api_key_secret(cfg.api_key).reveal() if cfg.api_key else None
    source, target = connect(cfg.source), connect(cfg.target)
    state = open_state(cfg.state)
    collections: dict[str, ProxyCollection] = {}
    try:
        for name in cfg.collections:
            router = MigrationRouter(
                source,
                target,
                name,
                state,
                target_collection=cfg.target_collection,
                instance=cfg.instance,
                state_ttl=cfg.state_ttl,
                read_timeout=cfg.read_timeout,
                shadow_fraction=cfg.shadow_fraction,
            )
            collections[name] = ProxyCollection(router)
    except BaseException:
        for c in collections.values():
            c.router.close()
        raise
    proxy = Proxy(
        collections,
        workers=cfg.workers,
        request_timeout=cfg.request_timeout,
        drain_timeout=cfg.drain_timeout,
        api_key=api_key,
        keys=KeyPolicy(cfg.key_header.lower() if cfg.key_header else None, cfg.key_client_address),
    )
    dialect: Dialect
    if cfg.dialect == "chroma":
        from vecmigrate.proxy.chroma_api import ChromaDialect

        dialect = ChromaDialect(proxy, tenant=cfg.tenant, database=cfg.database)
    else:
        from vecmigrate.proxy.qdrant_api import QdrantDialect

        dialect = QdrantDialect(proxy)
    return proxy, dialect


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, except that a SIGTERM/SIGINT it shut down for gracefully is
        not raised again afterwards: the process exits 0 once drained."""

        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            sigs = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in sigs}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server


def serve(cfg: ProxyConfig, announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain (see the module doc); exits normally.
    ``announce`` receives one line per collection once the routers run (default: log)."""
    import uvicorn

    server_class = _server_class()
    proxy, dialect = build(cfg)
    try:
        scheme = "https" if cfg.tls_cert else "http"
        for name, c in proxy.collections.items():
            (announce or log.info)(
                f"vecmigrate proxy: {name} ({dialect.name} API) on {scheme}://{cfg.host}:"
                f"{cfg.port}; source {redact(cfg.source)}, target {redact(cfg.target)}, "
                f"phase {c.phase().label}"
            )
        config = uvicorn.Config(
            create_app(proxy, dialect),
            host=cfg.host,
            port=cfg.port,
            log_config=None,
            log_level="warning",
            access_log=cfg.access_log,
            limit_concurrency=cfg.max_connections,
            timeout_graceful_shutdown=int(cfg.drain_timeout) or None,
            ssl_certfile=str(cfg.tls_cert) if cfg.tls_cert else None,
            ssl_keyfile=str(cfg.tls_key) if cfg.tls_key else None,
            lifespan="on",
        )
        server_class(config).run()
    finally:
        proxy.shutdown()  # no-op when the application's shutdown ran it
