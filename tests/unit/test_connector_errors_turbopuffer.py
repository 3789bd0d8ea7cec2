"""turbopuffer's one error mapping (``connectors/turbopuffer/_client.translate_error``) and
a constructor that makes no request: real client exceptions over real HTTP — a refused
connection, and a tiny server answering every request with one status (echoing the
``Authorization`` header, so a leaked key would show)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import require_module
from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError, DataError, TerminalError, TransientError

SECRET = "tpuf-unit-secret-93ad"


class _StatusServer:
    """Answers every request with ``self.status`` and a body echoing the request's
    Authorization header."""

    def __init__(self) -> None:
        self.status = 200
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                body = json.dumps(
                    {"status": "error", "error": f"refused {self.headers.get('Authorization')}"}
                ).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    require_module("turbopuffer")
    monkeypatch.setenv("VM_TPUF_UNIT_KEY", SECRET)


@pytest.fixture
def status_server(secret_env: None) -> Iterator[_StatusServer]:
    server = _StatusServer()
    yield server
    server.stop()


def _uri(base_url: str) -> str:
    return f"turbopuffer://api?base_url={base_url}&api_key=env:VM_TPUF_UNIT_KEY&max_retries=0"


@pytest.mark.usefixtures("secret_env")
def test_unreachable_host_is_transient_and_named() -> None:
    conn = connect(_uri("http://127.0.0.1:1"))  # nothing listens on port 1: refused at once
    try:
        with pytest.raises(TransientError) as err:
            conn.list_collections()
        assert "127.0.0.1:1" in str(err.value)
        assert SECRET not in str(err.value) and SECRET not in repr(conn)
    finally:
        conn.close()


def test_401_is_a_config_error_without_the_key(status_server: _StatusServer) -> None:
    status_server.status = 401
    with connect(_uri(status_server.url)) as conn, pytest.raises(ConfigError) as err:
        conn.list_collections()
    text = f"{err.value} {err.value.hint}"
    assert "HTTP 401" in text and "api_key" in text
    assert SECRET not in text  # the server echoed it; the message does not


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_throttling_and_server_errors_are_transient(
    status_server: _StatusServer, status: int
) -> None:
    status_server.status = status
    with (
        connect(_uri(status_server.url)) as conn,
        pytest.raises(TransientError, match=f"HTTP {status}"),
    ):
        conn.list_collections()


def test_403_and_404_are_config_errors(status_server: _StatusServer) -> None:
    status_server.status = 403
    with connect(_uri(status_server.url)) as conn:
        with pytest.raises(ConfigError, match="HTTP 403"):
            conn.list_collections()
        status_server.status = 404
        with pytest.raises(ConfigError, match="HTTP 404"):
            conn.list_collections()


def test_client_refusals_are_classified() -> None:
    require_module("turbopuffer")
    import httpx2
    from turbopuffer import BadRequestError, TurbopufferError

    from vecmigrate.connectors.turbopuffer._client import translate_error

    request = httpx2.Request("POST", "http://127.0.0.1:9/v2/namespaces/docs")
    response = httpx2.Response(400, request=request)
    refused = BadRequestError("bad", response=response, body={"error": "bad vector"})
    on_write = translate_error(refused, "turbopuffer upsert 'docs'")
    assert isinstance(on_write, DataError)
    assert str(on_write) == "turbopuffer upsert 'docs': HTTP 400: bad vector"
    on_read = translate_error(refused, "turbopuffer count 'docs'")
    assert isinstance(on_read, TerminalError) and not isinstance(on_read, DataError)
    assert isinstance(translate_error(TurbopufferError("no api_key"), "x"), ConfigError)
    assert translate_error(KeyError("id"), "x") is None


@pytest.mark.usefixtures("secret_env")
def test_uri_parameters_are_checked_and_no_request_is_made() -> None:
    with pytest.raises(ConfigError, match="must reference a secret"):
        connect(f"turbopuffer://api?region=gcp-us-central1&api_key={SECRET}")
    with pytest.raises(ConfigError, match=r"needs \?region="):
        connect("turbopuffer://api?api_key=env:VM_TPUF_UNIT_KEY")
    with pytest.raises(ConfigError, match="not both"):
        connect("turbopuffer://api?region=r&base_url=http://x&api_key=env:VM_TPUF_UNIT_KEY")
    with pytest.raises(ConfigError, match="names no host or path"):
        connect("turbopuffer://somewhere/else?region=r&api_key=env:VM_TPUF_UNIT_KEY")
    conn = connect("turbopuffer://api?region=gcp-us-central1&api_key=env:VM_TPUF_UNIT_KEY")
    conn.close()
    assert conn._client is None  # type: ignore[attr-defined]


def test_storage_identity_is_region_base_url_and_prefix() -> None:
    from vecmigrate.connectors.identity import storage_identity

    a = storage_identity("turbopuffer://api?region=gcp-us-central1&api_key=env:A")
    assert a == storage_identity("turbopuffer://api?region=gcp-us-central1&timeout=5")
    assert a != storage_identity("turbopuffer://api?region=aws-us-east-1")
    assert a != storage_identity("turbopuffer://api?region=gcp-us-central1&prefix=team-")
