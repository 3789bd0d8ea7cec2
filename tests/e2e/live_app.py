"""A small FastAPI application that reads and writes through ``MigrationRouter``.

Run as its own process (``python -m tests.e2e.live_app --source URI --target URI --state
URI -c NAME --port P``) so that the test drives the phase from outside, as an operator
would, and the app picks it up from the shared state store. ``/admin/*`` endpoints exist
for the test only: planting an outage of the target, draining, publishing totals.
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


class Outage:
    """Wraps a real connector; while ``down`` is set its writes raise TransientError (the
    engine stays real: this plants an unavailability window, nothing else)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = threading.Event()
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _check(self) -> None:
        if self.down.is_set():
            self.refused += 1
            raise TransientError("injected outage: target unavailable")

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        self._check()
        self.inner.upsert(name, batch)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        self._check()
        self.inner.delete(name, ids)


def create_app(router: MigrationRouter, outage: Outage | None = None) -> FastAPI:
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
    ap.add_argument("--target", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("-c", "--collection", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--state-ttl", type=float, default=0.5)
    args = ap.parse_args()
    outage = Outage(connect(args.target))
    router = MigrationRouter(
        connect(args.source),
        outage,  # type: ignore[arg-type]
        args.collection,
        open_state(args.state),
        state_ttl=args.state_ttl,
        stats_interval=0.5,
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
