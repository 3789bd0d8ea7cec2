"""Elasticsearch's and OpenSearch's error mappings (``connectors/search/_client``) and
constructors that make no request: real client exceptions, a real refused connection."""

from __future__ import annotations

import pytest

from tests.conftest import require_module
from vecmigrate.connectors import connect
from vecmigrate.errors import TerminalError, TransientError

SECRET = "search-unit-secret-3f7a"
# Port 1 on loopback: nothing listens there, the connection is refused at once.
URIS = {
    "elasticsearch": "elasticsearch://127.0.0.1:1?api_key=env:VM_SEARCH_UNIT_KEY",
    "opensearch": "opensearch://127.0.0.1:1?user=admin&password=env:VM_SEARCH_UNIT_KEY",
}
CLIENTS = {"elasticsearch": "elasticsearch", "opensearch": "opensearchpy"}


@pytest.fixture(params=sorted(URIS))
def uri(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    require_module(CLIENTS[request.param])
    monkeypatch.setenv("VM_SEARCH_UNIT_KEY", SECRET)
    return URIS[request.param]


def test_unreachable_server_connects_then_fails_transiently(uri: str) -> None:
    conn = connect(uri)  # no request yet
    try:
        with pytest.raises(TransientError) as err:
            conn.list_collections()
        assert "127.0.0.1:1" in str(err.value)
        assert SECRET not in str(err.value) and SECRET not in repr(conn)
    finally:
        conn.close()


def test_close_opens_no_client(uri: str) -> None:
    conn = connect(uri)
    conn.close()
    assert conn._client is None  # type: ignore[attr-defined]


def _es_error(status: int, kind: str) -> Exception:
    from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
    from elasticsearch import ApiError

    meta = ApiResponseMeta(status, "1.1", HttpHeaders(), 0.0, NodeConfig("http", "h", 9200))
    return ApiError(kind, meta, {"error": {"type": kind, "reason": "no"}})


def test_elasticsearch_statuses_are_classified() -> None:
    require_module("elasticsearch")
    from vecmigrate.connectors.search.elasticsearch import ElasticsearchConnector

    translate = ElasticsearchConnector.translate_error
    refused = translate(_es_error(400, "mapper_parsing_exception"), "creating 'docs'")
    assert isinstance(refused, TerminalError) and not isinstance(refused, TransientError)
    assert str(refused) == "creating 'docs': HTTP 400 mapper_parsing_exception: no"
    busy = translate(_es_error(429, "es_rejected_execution_exception"), "x")
    assert isinstance(busy, TransientError) and "HTTP 429" in str(busy)


def test_opensearch_statuses_are_classified() -> None:
    require_module("opensearchpy")
    from opensearchpy import RequestError, TransportError

    from vecmigrate.connectors.search.opensearch import OpenSearchConnector

    translate = OpenSearchConnector.translate_error
    body = {"error": {"type": "illegal_argument_exception", "reason": "no"}}
    refused = translate(RequestError(400, "illegal_argument_exception", body), "creating 'docs'")
    assert isinstance(refused, TerminalError) and not isinstance(refused, TransientError)
    assert str(refused) == "creating 'docs': HTTP 400 illegal_argument_exception: no"
    busy = translate(TransportError(503, "unavailable", {}), "x")
    assert isinstance(busy, TransientError) and "HTTP 503" in str(busy)


def test_other_exceptions_are_not_the_clients() -> None:
    require_module("elasticsearch")
    require_module("opensearchpy")
    from vecmigrate.connectors.search._client import (
        translate_elasticsearch_error,
        translate_opensearch_error,
    )

    assert translate_elasticsearch_error(KeyError("id"), "x") is None
    assert translate_opensearch_error(KeyError("id"), "x") is None
