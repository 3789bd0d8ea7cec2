"""The proxy's ASGI application: one engine dialect's routes over ``ProxyCollection``s,
plus the operator's endpoints (``/healthz``, ``/readyz``, ``/metrics``,
``/vecmigrate/status``).

Every engine call runs on a bounded thread pool (``workers``; asyncio's executor hop,
which costs less than anyio's at p50 and far less at p99) under a request timeout;
a request that times out answers 504 in the dialect's error shape (a write's outcome is
then unknown to the client, as with any timeout; the router still completes or resolves
it). Requests the dialect does not serve are refused in the dialect's error shape,
naming the route, never forwarded. A client API key, when configured, is compared in
constant time and never logged.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import anyio
import anyio.to_thread
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vecmigrate.errors import (
    ConfigError,
    DataError,
    SchemaMismatchError,
    TransientError,
    VecmigrateError,
)
from vecmigrate.proxy.service import ProxyCollection
from vecmigrate.uri import redact

try:  # installed with chromadb; the proxy does not depend on it
    import orjson as _orjson
except ImportError:  # pragma: no cover - the standard library renders then
    _orjson = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
T = TypeVar("T")
ErrorKind = Literal[
    "invalid",
    "unauthorized",
    "not_found",
    "conflict",
    "internal",
    "unsupported",
    "unavailable",
    "timeout",
]
STATUS: dict[ErrorKind, int] = {
    "invalid": 400,
    "unauthorized": 401,
    "not_found": 404,
    "conflict": 409,
    "internal": 500,
    "unsupported": 501,
    "unavailable": 503,
    "timeout": 504,
}
OPS_PATHS = ("/healthz", "/readyz", "/metrics", "/vecmigrate/")
# Digits as "0" (bytes.find then spots a long run in C; a regex scan is 20-70x slower).
_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_ZEROS = re.compile(rb"0+")
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class FastJSONResponse(JSONResponse):
    """``JSONResponse`` rendered by orjson where it is installed (several times faster on
    a query's response), else as Starlette renders it. A value orjson refuses (an int
    beyond 64 bits) is rendered by the standard library; a NaN, which Starlette refuses,
    is rendered as null."""

    def render(self, content: Any) -> bytes:
        """The body: compact UTF-8 JSON, as Starlette's."""
        if _orjson is not None:
            try:
                return _orjson.dumps(content)
            except TypeError:
                pass
        return super().render(content)


class ProxyError(Exception):
    """A refusal a dialect renders in its engine's error shape."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Dialect(Protocol):
    """An engine's HTTP API spoken over the proxy's collections."""

    name: str

    def routes(self) -> list[BaseRoute]:
        """The engine routes this dialect serves."""

    def error(self, kind: ErrorKind, message: str) -> Response:
        """A refusal in the engine's own error shape."""

    def client_key(self, request: Request) -> str | None:
        """The API key the client sent, where this engine's clients send it."""


@dataclass
class KeyPolicy:
    """Where a request's canary key comes from: a header (``X-Vecmigrate-Key`` by
    default), else the client address when ``client_address`` is set, else none (a read
    without a key is served by the source during a canary)."""

    header: str | None = "x-vecmigrate-key"
    client_address: bool = False

    def key(self, request: Request) -> str | None:
        """The request key of ``request``."""
        if self.header:
            value = request.headers.get(self.header)
            if value:
                return value
        if self.client_address and request.client is not None:
            return request.client.host
        return None


@dataclass
class Proxy:
    """The proxy's state: collections by name, the worker pool, timeouts, the client key."""

    collections: Mapping[str, ProxyCollection]
    workers: int = 16
    request_timeout: float = 30.0
    drain_timeout: float = 30.0
    api_key: str | None = None
    keys: KeyPolicy = field(default_factory=KeyPolicy)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    started: bool = False
    closing: bool = False
    closed: bool = False
    _limiter: anyio.CapacityLimiter | None = None
    _executor: ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "vecmigrate_proxy_requests",
            "Requests answered, by dialect, route, method and status.",
            ["dialect", "route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "vecmigrate_proxy_request_seconds",
            "Time from a request's arrival to its response, by dialect and route.",
            ["dialect", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "vecmigrate_proxy_in_flight", "Requests being answered now.", registry=r
        )
        self.forwarded = Counter(
            "vecmigrate_proxy_forwarded",
            "Requests passed through to the engine as they were, by collection and operation.",
            ["collection", "op"],
            registry=r,
        )

    def collection(self, name: str) -> ProxyCollection:
        """A served collection by name; ProxyError(not_found) for any other."""
        found = self.collections.get(name)
        if found is None:
            raise ProxyError("not_found", f"Collection [{name}] does not exist")
        return found

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the bounded worker pool, within the request timeout (a call
        still running then is abandoned, not interrupted: the router completes it)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another event loop than asyncio's (trio): anyio's pool
            loop = None
        if loop is None or sys.version_info < (3, 11):
            if self._limiter is None:
                self._limiter = anyio.CapacityLimiter(self.workers)
            with anyio.fail_after(self.request_timeout):
                return await anyio.to_thread.run_sync(
                    fn, *args, limiter=self._limiter, abandon_on_cancel=True
                )
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="vm-proxy")
        # anyio's hop (capacity limiter, cancel scope, its own worker threads) cost 0.02-0.05
        # ms more at p50 and 2-3 ms more at p99 than the executor's, timed bare on this
        # machine (3,000 hops of a no-op, load 4).
        async with asyncio.timeout(self.request_timeout):
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def shutdown(self) -> None:
        """Finish in-flight writes, replay what they queued for the secondary
        (``router.drain``), then close the routers (replayer, shadow pool, leases)."""
        self.closing = True
        deadline = time.monotonic() + self.drain_timeout
        for c in self.collections.values():
            if not c.wait_idle(max(0.0, deadline - time.monotonic())):
                log.warning("%s: writes still in flight at shutdown", c.name)
        for c in self.collections.values():
            try:
                if not c.router.drain(max(0.1, deadline - time.monotonic())):
                    log.warning(
                        "%s: outbox not drained at shutdown; another instance or the next "
                        "start replays it",
                        c.name,
                    )
            except Exception as exc:
                log.warning("%s: drain at shutdown: %s", c.name, redact(str(exc)))
        for c in self.collections.values():
            try:
                c.router.close()
            except Exception as exc:
                log.warning("%s: close: %s", c.name, redact(str(exc)))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def exposition(self) -> bytes:
        """The proxy's metrics and every router's, families merged by name."""
        registries = [
            self.registry,
            *(c.router.metrics.registry for c in self.collections.values()),
        ]
        return merged_exposition(registries)

    def status(self, dialect: str) -> dict[str, Any]:
        """What ``/vecmigrate/status`` shows."""
        first = next(iter(self.collections.values()), None)
        return {
            "dialect": dialect,
            "instance": first.router.instance if first else None,
            "ready": self.started and not self.closing,
            "collections": {name: c.status() for name, c in self.collections.items()},
        }


def merged_exposition(registries: Sequence[CollectorRegistry]) -> bytes:
    """Prometheus text of several registries whose families may share names (one router
    per collection, each with its own registry): samples of one name go in one family."""
    merged: dict[str, Metric] = {}
    for registry in registries:
        for family in registry.collect():
            into = merged.get(family.name)
            if into is None:
                into = Metric(family.name, family.documentation, family.type, family.unit)
                merged[family.name] = into
            into.samples.extend(family.samples)

    class _Merged:
        def collect(self) -> list[Metric]:
            return list(merged.values())

    out = CollectorRegistry(auto_describe=False)
    out.register(_Merged())
    return bytes(generate_latest(out))


def error_of(exc: BaseException) -> tuple[ErrorKind, str]:
    """The refusal an exception is shown as (its message redacted)."""
    if isinstance(exc, ProxyError):
        return exc.kind, exc.message
    if isinstance(exc, DataError | ConfigError | SchemaMismatchError):
        return "invalid", redact(str(exc))
    if isinstance(exc, TransientError):
        return "unavailable", redact(str(exc))
    if isinstance(exc, TimeoutError | FutureTimeout):
        return "timeout", "the request timed out (a write's outcome is unknown: read it back)"
    if isinstance(exc, VecmigrateError):
        return "internal", redact(str(exc))
    log.error("unexpected %s", type(exc).__name__, exc_info=exc)
    return "internal", f"{type(exc).__name__}: {redact(str(exc))}"


Handler = Callable[[Request], Awaitable[Response]]


def guarded(dialect: Dialect, handler: Handler) -> Handler:
    """``handler`` with every exception answered in the dialect's error shape."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            kind, message = error_of(exc)
            return dialect.error(kind, message)

    return endpoint


async def json_body(request: Request) -> Any:
    """The request's JSON body; ProxyError(invalid) when it is not JSON."""
    return json_loads(await request.body())


def json_loads(raw: bytes) -> Any:
    """A request body parsed as JSON (empty: ``{}``); ProxyError(invalid) when it is not."""
    if not raw:
        return {}
    # orjson parses a query's vector (JSON numbers) ~10x faster than json; what it refuses
    # (NaN, lone surrogates) or would read as a float (an integer beyond 64 bits) is left
    # to json, so a body means the same either way.
    if _orjson is not None and not _big_int(raw):
        try:
            return _orjson.loads(raw)
        except ValueError:
            pass
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ProxyError("invalid", f"the request body is not JSON: {exc}") from None


def _big_int(raw: bytes) -> bool:
    """Whether a JSON text has an integer literal of 19 digits or more (it may not fit 64
    bits); a float's fraction or exponent digits do not count."""
    flat = raw.translate(_AS_ZERO)
    start = flat.find(b"0" * 19)
    while start != -1:
        run = _ZEROS.match(flat, start)
        end = run.end() if run is not None else start + 19
        if raw[start - 1 : start] != b"." and raw[end : end + 1] not in (b".", b"e", b"E"):
            return True
        start = flat.find(b"0" * 19, end)
    return False


class _Observe:
    """Pure ASGI middleware: API key check, in-flight gauge, per-route count and latency."""

    def __init__(self, app: ASGIApp, proxy: Proxy, dialect: Dialect) -> None:
        self.app, self.proxy, self.dialect = app, proxy, dialect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if self.proxy.api_key is not None and not path.startswith(OPS_PATHS):
            given = self.dialect.client_key(Request(scope))
            if given is None or not hmac.compare_digest(
                given.encode(), self.proxy.api_key.encode()
            ):
                response = self.dialect.error("unauthorized", "missing or wrong API key")
                await response(scope, receive, send)
                self._count(scope, response.status_code, 0.0)
                return
        status = 500
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.proxy.in_flight.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            self.proxy.in_flight.dec()
            self._count(scope, status, time.perf_counter() - started)

    def _count(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        label = getattr(route, "path", None) or "unmatched"
        self.proxy.requests.labels(self.dialect.name, label, scope["method"], str(status)).inc()
        self.proxy.latency.labels(self.dialect.name, label).observe(seconds)


def create_app(proxy: Proxy, dialect: Dialect) -> ASGIApp:
    """The proxy application for one dialect."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready = proxy.started and not proxy.closing
        body = {"ready": ready, "closing": proxy.closing}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        data = await anyio.to_thread.run_sync(proxy.exposition)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    async def status(request: Request) -> Response:
        return JSONResponse(await proxy.run(proxy.status, dialect.name))

    async def unsupported(request: Request) -> Response:
        return dialect.error(
            "unsupported",
            f"the vecmigrate proxy ({dialect.name} API) does not serve "
            f"{request.method} {request.url.path}; nothing was forwarded",
        )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        proxy.started = True
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(proxy.shutdown)

    any_method = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/vecmigrate/status", guarded(dialect, status), methods=["GET"]),
        *dialect.routes(),
        Route("/{path:path}", unsupported, methods=any_method),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return _Observe(app, proxy, dialect)
