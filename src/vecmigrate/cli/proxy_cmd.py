"""``vecmigrate proxy``: serve an engine's HTTP API to an unchanged application and route
every request through the live migration's router (see docs/proxy.md).

Registers itself on the CLI application: ``cli/app.py`` imports this module once, after
``app`` exists."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vecmigrate.cli.app import app
from vecmigrate.cli.options import QuietOpt, VerboseOpt
from vecmigrate.cli.output import command, err
from vecmigrate.errors import ConfigError


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--listen takes HOST:PORT, got {value!r}", hint="e.g. 0.0.0.0:8300")
    return host.strip("[]") or "0.0.0.0", int(port)


@app.command("proxy")
def proxy(
    source: Annotated[str, typer.Option("--source", help="Source URI (the system of record).")],
    target: Annotated[str, typer.Option("--target", help="Target URI (where data moves to).")],
    state: Annotated[
        str,
        typer.Option(
            "--state",
            envvar="VECMIGRATE_STATE",
            help="State store shared with `vecmigrate cutover`: sqlite:///path, "
            "postgresql://... or redis://...",
        ),
    ],
    collection: Annotated[
        list[str], typer.Option("--collection", "-c", help="Collection to serve (repeatable).")
    ],
    dialect: Annotated[
        str, typer.Option("--dialect", help="API spoken to the application: chroma or qdrant.")
    ] = "chroma",
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to listen on.")] = (
        "127.0.0.1:8300"
    ),
    target_collection: Annotated[
        str | None, typer.Option("--target-collection", help="Name on the target.")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Chroma tenant the proxy answers as.")] = (
        "default_tenant"
    ),
    database: Annotated[str, typer.Option(help="Chroma database the proxy answers as.")] = (
        "default_database"
    ),
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="Key clients must send (Chroma: X-Chroma-Token or Authorization: Bearer; "
            "Qdrant: api-key), by reference: env:NAME or file:/path. Never logged.",
        ),
    ] = None,
    key_header: Annotated[
        str,
        typer.Option(
            "--key-header",
            help="Request header holding the canary key (user or tenant id); '' for none.",
        ),
    ] = "X-Vecmigrate-Key",
    key_client_address: Annotated[
        bool,
        typer.Option(
            "--key-client-address",
            help="Without the header, use the client's address as the canary key.",
        ),
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Threads running engine calls.")] = 16,
    max_connections: Annotated[
        int, typer.Option(min=1, help="Concurrent connections before answering 503.")
    ] = 1024,
    request_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds before a request answers 504.")
    ] = 30.0,
    read_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds before a target read falls back.")
    ] = 5.0,
    drain_timeout: Annotated[
        float, typer.Option(min=0.0, help="Seconds to finish writes and the outbox on stop.")
    ] = 30.0,
    shadow_fraction: Annotated[
        float,
        typer.Option(
            min=0.001, max=1.0, help="Share of reads shadowed on the other system (at random)."
        ),
    ] = 1.0,
    state_ttl: Annotated[
        float, typer.Option(min=0.0, help="Seconds the phase is cached between reads.")
    ] = 1.0,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request (no headers).")] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Serve an engine's HTTP API (Chroma's, Qdrant's) to an unchanged application, routing
    every request by the cutover phase (`vecmigrate cutover`) through the live router."""
    with command(verbose=verbose, quiet=quiet):
        from vecmigrate.proxy.server import DIALECTS, ProxyConfig, serve

        if dialect not in DIALECTS:
            raise ConfigError(
                f"unknown --dialect {dialect!r}", hint=f"one of {', '.join(DIALECTS)}"
            )
        host, port = _listen(listen)

        def announce(line: str) -> None:
            if not quiet:
                err().print(line, highlight=False, markup=False)

        serve(
            ProxyConfig(
                source=source,
                target=target,
                state=state,
                collections=list(collection),
                dialect=dialect,
                host=host,
                port=port,
                target_collection=target_collection,
                tenant=tenant,
                database=database,
                api_key=api_key,
                key_header=key_header or None,
                key_client_address=key_client_address,
                workers=workers,
                max_connections=max_connections,
                request_timeout=request_timeout,
                read_timeout=read_timeout,
                shadow_fraction=shadow_fraction,
                drain_timeout=drain_timeout,
                state_ttl=state_ttl,
                tls_cert=tls_cert,
                tls_key=tls_key,
                access_log=access_log,
            ),
            announce=announce,
        )
