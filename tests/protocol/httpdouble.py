"""HTTP scaffolding shared by the protocol test doubles in this package: a quiet keep-alive
request handler, a threaded listener on 127.0.0.1, and the bookkeeping every double keeps
(request log, model violations, injected failures)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps test output clean (no access log)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class DoubleHandler(QuietHandler):
    """A keep-alive handler that sends each GET/POST/DELETE to :meth:`_serve` (a double's
    subclass adds the other verbs it serves)."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # peer's delayed ACK add ~40 ms to every keep-alive response.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self, method: str) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


def listen(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A listener on a free port of 127.0.0.1, already serving from a daemon thread."""
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return http


def close(http: ThreadingHTTPServer) -> None:
    """Stop serving and release the port."""
    http.shutdown()
    http.server_close()


class HttpDouble:
    """One double on one port: the lock, the request log and the model violations.

    A subclass sets its own state, then calls ``super().__init__()`` (which starts
    serving), and implements :meth:`_handler`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._failures: list[list[Any]] = []
        self.requests: list[Any] = []
        # Every way a request received or a response sent broke the vendor's model.
        self.model_violations: list[str] = []
        self.http = listen(self._handler())

    @property
    def url(self) -> str:
        """The base URL the client is pointed at."""
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    def stop(self) -> None:
        """Shut the listener down."""
        close(self.http)

    def take_violations(self) -> list[str]:
        """The model violations recorded so far (and forget them)."""
        with self.lock:
            out, self.model_violations = self.model_violations, []
        return out

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError


class StatusFailureDouble(HttpDouble):
    """A double whose injected failures are HTTP statuses for the next N requests."""

    def fail(self, status: int, times: int = 1, op: str = "") -> None:
        """Answer the next ``times`` requests for ``op`` (every operation when empty) with
        HTTP ``status``."""
        with self.lock:
            self._failures.append([status, op, times])

    def clear_failures(self) -> list[tuple[int, str, int]]:
        """Drop every injected failure; returns the ones left unused."""
        with self.lock:
            left = [(f[0], f[1], f[2]) for f in self._failures]
            self._failures.clear()
        return left

    def _injected(self, op: str) -> int | None:
        with self.lock:
            hit = next((f for f in self._failures if not f[1] or f[1] == op), None)
            if hit is None:
                return None
            hit[2] -= 1
            if hit[2] <= 0:
                self._failures.remove(hit)
            return int(hit[0])
