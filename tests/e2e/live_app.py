"""A small FastAPI application that reads and writes through ``MigrationRouter``.

Run as its own process (``python -m tests.e2e.live_app --source URI --target URI --state
URI -c NAME --port P``) so that the test drives the phase from outside, as an operator
would, and the app picks it up from the shared state store. ``/admin/*`` endpoints exist
for the test only: planting an outage of the target, draining, publishing totals.

``--no-router`` serves the same endpoints from the source connector directly, with no
target and no state store: the application as it was before adopting the router, the
baseline that ``bench/live_load.py`` measures the router against.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import numpy as np
import pyarrow as pa
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from vecmigrate.connectors import connect
from vecmigrate.errors import TransientError, VecmigrateError
from vecmigrate.live import open_state
from vecmigrate.live.router import MigrationRouter
from vecmigrate.records import build_batch


class Outage:
    """Wraps a real connector; while ``down`` is set its writes raise TransientError (the
    engine stays real: this plants an unavailability window, nothing else). While ``stuck``
    is set its writes never return: the process is then in the middle of a write, with its
    outbox entry held, for a test to SIGKILL it there."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = threading.Event()
        self.stuck = threading.Event()
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _check(self) -> None:
        if self.stuck.is_set():
            threading.Event().wait()
        if self.down.is_set():
            self.refused += 1
            raise TransientError("injected outage: target unavailable")

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        self._check()
        self.inner.upsert(name, batch)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        self._check()
        self.inner.delete(name, ids)


class _NoRouterState:
    """What the endpoints ask of a phase, for an app without a router: one side, always."""

    label = "no-router"

    def read_side(self, key: str | None) -> str:
        """Every read is served by the source."""
        return "source"


class _NoMetrics:
    def exposition(self) -> bytes:
        return b""


class DirectSource:
    """The router's calls answered by the source connector alone (``--no-router``): no
    outbox, no shadow reads, no phase to re-read."""

    def __init__(self, conn: Any, collection: str) -> None:
        self.conn = conn
        self.collection = collection
        self.schema = conn.describe(collection)
        self.metrics = _NoMetrics()
        self._state = _NoRouterState()

    def current(self) -> _NoRouterState:
        """The fixed pseudo-phase ``no-router``."""
        return self._state

    def upsert(self, records: Sequence[dict[str, Any]]) -> None:
        """Upsert dict records ({id, vector, document, metadata}) into the source."""
        rows = list(records)
        vectors = {
            v.name: np.asarray([r[v.name] for r in rows], dtype=np.float32).reshape(-1, v.dim)
            for v in self.schema.vectors
        }
        batch = build_batch(
            self.schema,
            [r["id"] for r in rows],
            vectors,
            documents=[r.get("document") for r in rows] if self.schema.has_document else None,
            metadata=[r.get("metadata") for r in rows],
        )
        self.conn.upsert(self.collection, batch)

    def delete(self, ids: Sequence[Any]) -> None:
        """Delete ids from the source."""
        self.conn.delete(self.collection, list(ids))

    def search(
        self, vectors: np.ndarray, k: int, filter: Any = None, *, key: str | None = None
    ) -> tuple[list[list[Any]], list[list[float]]]:
        """Top-k ids and scores from the source."""
        found: tuple[list[list[Any]], list[list[float]]] = self.conn.search(
            self.collection, vectors, k, filter=filter
        )
        return found

    def fetch(self, ids: Sequence[Any], *, key: str | None = None) -> pa.RecordBatch:
        """Records by id from the source (each id once)."""
        batch: pa.RecordBatch = self.conn.fetch(self.collection, list(dict.fromkeys(ids)))
        return batch

    def drain(self, timeout: float) -> bool:
        """Nothing is ever queued."""
        return True

    def publish(self) -> None:
        """No shadow totals to store."""

    def close(self) -> None:
        """Close the source connection."""
        self.conn.close()


def create_app(router: MigrationRouter | DirectSource, outage: Outage | None = None) -> FastAPI:
    """The application: four data endpoints, metrics, and test-only admin endpoints."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # a bounded worker pool: each worker thread holds its own engine connections
        anyio.to_thread.current_default_thread_limiter().total_tokens = 8
        yield

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(VecmigrateError)
    async def _engine_error(request: Request, exc: VecmigrateError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503)

    def _meta(extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"phase": router.current().label, **(extra or {})}

    @app.get("/health")
    def health() -> dict[str, Any]:
        return _meta()

    @app.post("/upsert")
    def upsert(body: dict[str, Any]) -> dict[str, Any]:
        router.upsert(body["records"])
        return _meta({"n": len(body["records"])})

    @app.post("/delete")
    def delete(body: dict[str, Any]) -> dict[str, Any]:
        router.delete(body["ids"])
        return _meta({"n": len(body["ids"])})

    @app.post("/search")
    def search(body: dict[str, Any]) -> dict[str, Any]:
        state = router.current()
        user = body.get("user")
        vec = np.asarray([body["vector"]], dtype=np.float32)
        ids, scores = router.search(vec, int(body.get("k", 10)), body.get("filter"), key=user)
        side = state.read_side(user)
        return {"phase": state.label, "side": side, "ids": ids[0], "scores": scores[0]}

    @app.post("/fetch")
    def fetch(body: dict[str, Any]) -> dict[str, Any]:
        state = router.current()
        batch = router.fetch(body["ids"], key=body.get("user"))
        docs = batch.column("document").to_pylist() if "document" in batch.schema.names else []
        return {
            "phase": state.label,
            "side": state.read_side(body.get("user")),
            "records": dict(zip(batch.column("id").to_pylist(), docs, strict=False)),
        }

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(router.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/outage")
    def set_outage(body: dict[str, Any]) -> dict[str, Any]:
        assert outage is not None
        (outage.down.set if body["down"] else outage.down.clear)()
        return {"down": outage.down.is_set(), "refused": outage.refused}

    @app.post("/admin/hang_writes")
    def hang_writes() -> dict[str, Any]:
        assert outage is not None
        outage.stuck.set()
        return _meta()

    @app.post("/admin/drain")
    def drain(body: dict[str, Any]) -> dict[str, Any]:
        ok = router.drain(float(body.get("timeout", 30)))
        router.publish()
        return {"drained": ok}

    @app.post("/admin/publish")
    def publish() -> dict[str, Any]:
        router.publish()
        return _meta()

    return app


def main() -> None:
    """Serve the app on 127.0.0.1 until terminated."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--target")
    ap.add_argument("--state")
    ap.add_argument("-c", "--collection", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--state-ttl", type=float, default=0.5)
    ap.add_argument("--replay-interval", type=float, default=0.1)
    ap.add_argument("--shadow-fraction", type=float, default=1.0)
    ap.add_argument(
        "--no-router",
        action="store_true",
        help="serve from the source connector directly (the baseline; no target, no state)",
    )
    args = ap.parse_args()
    if args.no_router:
        direct = DirectSource(connect(args.source), args.collection)
        try:
            uvicorn.run(create_app(direct), host="127.0.0.1", port=args.port, log_level="warning")
        finally:
            direct.close()
        return
    if args.target is None or args.state is None:
        ap.error("--target and --state are required unless --no-router is given")
    outage = Outage(connect(args.target))
    router = MigrationRouter(
        connect(args.source),
        outage,  # type: ignore[arg-type]
        args.collection,
        open_state(args.state),
        state_ttl=args.state_ttl,
        stats_interval=0.5,
        replay_interval=args.replay_interval,
        shadow_fraction=args.shadow_fraction,
    )
    try:
        uvicorn.run(
            create_app(router, outage),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
        )
    finally:
        router.close()


if __name__ == "__main__":
    main()
