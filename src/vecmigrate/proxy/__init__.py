"""``vecmigrate proxy``: a server that speaks a vector engine's own HTTP API (Chroma's,
Qdrant's) to an unchanged application and routes every request through the live
migration's ``MigrationRouter`` (phases, outbox, shadow reads, canary, rollback).

Needs the ``proxy`` extra (starlette, uvicorn) and the ``live`` extra (prometheus-client).
See docs/proxy.md.
"""

from __future__ import annotations

from vecmigrate.proxy.server import ProxyConfig, build, serve

__all__ = ["ProxyConfig", "build", "serve"]
