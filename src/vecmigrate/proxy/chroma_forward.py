"""The Chroma dialect's pass-through: while a phase sends every request to one side alone
(``MigrationRouter.sole_side``: source-only, target-only) and that side is a Chroma server
(``chroma+http://``), a record call's body goes to the server as the application sent it,
and the server's status and body come back as they are. No model, no conversion, no
distance recomputed: the answer is exactly the one the application would get from the
server directly, at the cost of one pooled HTTP round trip.

Reads go through the router's read path (``READ_RETRY``, read metrics); writes through
``MigrationRouter.write_single`` (the ids' locks, the outbox backlog first, write retries
and metrics, the fence for a phase change racing the write). A write without ``ids`` (a
delete by ``where``) and every request of any other phase take the normal path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from starlette.responses import Response

from vecmigrate.live.phases import PhaseState, Side
from vecmigrate.proxy.service import ProxyCollection

if TYPE_CHECKING:  # the proxy imports no engine client it does not use
    from vecmigrate.connectors.chroma._native import Answer, ChromaHTTP

READS = frozenset({"query", "get", "count"})
WRITES = frozenset({"add", "upsert", "update", "delete"})


class ChromaForward:
    """The pass-through of one served collection's record calls."""

    def __init__(self, c: ProxyCollection, forwarded: Counter) -> None:
        self.c = c
        self.forwarded = forwarded
        self.natives: dict[Side, ChromaHTTP | None] = {
            side: _native(conn) for side, conn in c.router.conns.items()
        }
        c.passes_to = self.side

    def side(self, state: PhaseState) -> Side | None:
        """The side requests are passed through to in ``state``, if they are."""
        side = self.c.router.sole_side(state)
        return side if side is not None and self.natives[side] is not None else None

    def read(self, op: str, body: bytes) -> Response | None:
        """A query, get or count passed through, or None when this phase does not."""
        state = self.c.phase()
        side = self.side(state)
        if side is None:
            return None
        router = self.c.router

        def call(s: Side) -> Answer:
            return self._native(s).send(router.names[s], op, body)

        _, answer = router._read(state, side, op, call)
        return self._passed(op, answer)

    def write(self, op: str, body: bytes, parsed: Any) -> Response | None:
        """An add, upsert, update or delete by ids passed through, or None when this
        phase does not or the request names no ids (the normal path then answers it)."""
        state = self.c.phase()
        side = self.side(state)
        raw_ids = parsed.get("ids") if isinstance(parsed, dict) else None
        if side is None or not isinstance(raw_ids, list) or not raw_ids:
            return None
        ids = [self.c.typed_id(i) for i in raw_ids]
        router = self.c.router
        answers: list[Answer] = []

        def apply(s: Side) -> None:
            answers.append(self._native(s).send(router.names[s], op, body))

        # Counted in flight (a shutdown waits for it) and serialised with the normal path's
        # read-modify-writes of the same ids.
        with self.c.writing(ids):
            if not router.write_single(side, ids, apply, op):
                return None  # the phase moved on: a secondary now needs the records
        return self._passed(op, answers[-1])

    def _native(self, side: Side) -> ChromaHTTP:
        native = self.natives[side]
        assert native is not None  # side() chose a side that has one
        return native

    def _passed(self, op: str, answer: Answer) -> Response:
        self.forwarded.labels(self.c.name, op).inc()
        return Response(
            answer.body, status_code=answer.status, headers={"content-type": answer.content_type}
        )


def _native(conn: Any) -> ChromaHTTP | None:
    """A connector's pass-through to its Chroma server, if it is one."""
    if conn.engine != "chroma":
        return None
    native: ChromaHTTP | None = conn.native_http()
    return native
