"""A tiny HTTP server answering every GET with one status, and the error-mapping checks the
connectors' unit tests run against it (and against a refused connection): real client
exceptions over real HTTP, with the request's credential echoed in the body so a leaked key
would show in the message."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import Message
from typing import Any

import pytest

from tests.protocol.httpdouble import QuietHandler, close, listen
from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError, TransientError

# Nothing listens on port 1 of loopback: the connection is refused at once.
UNREACHABLE = "http://127.0.0.1:1"


class StatusServer:
    """Answers every GET with ``self.status`` and the JSON body ``body(request headers)``."""

    def __init__(self, body: Callable[[Message], Any]) -> None:
        self.status = 200
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                data = json.dumps(body(self.headers)).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.http = listen(Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"

    def stop(self) -> None:
        """Shut the listener down."""
        close(self.http)


@contextmanager
def running_status_server(body: Callable[[Message], Any]) -> Iterator[StatusServer]:
    """A :class:`StatusServer`, stopped on exit."""
    server = StatusServer(body)
    try:
        yield server
    finally:
        server.stop()


def check_unreachable_is_transient(uri: str, secret: str) -> None:
    """Listing on a refused connection is a TransientError naming the host, never the key."""
    conn = connect(uri)
    try:
        with pytest.raises(TransientError) as err:
            conn.list_collections()
        assert "127.0.0.1:1" in str(err.value)
        assert secret not in str(err.value) and secret not in repr(conn)
    finally:
        conn.close()


def check_auth_status_is_config_error(uri: str, status: int, secret: str) -> None:
    """An auth refusal (401/403) is a ConfigError naming the status and ``api_key``, but
    not the key the server echoed."""
    with connect(uri) as conn, pytest.raises(ConfigError) as err:
        conn.list_collections()
    text = f"{err.value} {err.value.hint}"
    assert f"HTTP {status}" in text and "api_key" in text
    assert secret not in text  # the server echoed it; the message does not


def check_status_is_transient(uri: str, status: int) -> None:
    """Throttling and server errors are TransientErrors naming the status."""
    with connect(uri) as conn, pytest.raises(TransientError, match=f"HTTP {status}"):
        conn.list_collections()
