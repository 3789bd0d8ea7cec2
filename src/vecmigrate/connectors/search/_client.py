"""The one mapping of each search engine client's errors to vecmigrate's.

Elasticsearch and OpenSearch raise different exception types; both become the same errors:
no status (connection refused, timeout) or 429/502/503/504 is transient, a TLS failure
and any other status terminal. Messages carry the server's error ``type: reason``, never
the request (which may hold data) nor credentials. Each engine's client is imported only
by its own function, so one engine works without the other's client installed.
"""

from __future__ import annotations

from typing import Any

from vecmigrate.connectors.search._filters import TRANSIENT_STATUS, tls_refused
from vecmigrate.errors import TerminalError, TransientError, VecmigrateError


def status_error(what: str, status: int | None, reason: str) -> VecmigrateError:
    """The error of a failed call: ``status`` None means the server was not reached."""
    if status is None:
        return TransientError(f"{what}: {reason}")
    if status in TRANSIENT_STATUS:
        return TransientError(f"{what}: HTTP {status} {reason}")
    return TerminalError(f"{what}: HTTP {status} {reason}")


def _body_reason(body: Any) -> str:
    """``type: reason`` from an error body."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{error.get('type')}: {error.get('reason')}"
    return str(error or "no error body")


# -- Elasticsearch ---------------------------------------------------------------------------
def translate_elasticsearch_error(exc: Exception, what: str) -> VecmigrateError | None:
    """The ``elasticsearch`` / ``elastic_transport`` exception as a vecmigrate error."""
    from elastic_transport import TlsError, TransportError
    from elasticsearch import ApiError

    if isinstance(exc, ApiError):
        return status_error(what, int(exc.meta.status), _body_reason(exc.body))
    if isinstance(exc, TlsError):
        return tls_refused("Elasticsearch")
    if isinstance(exc, TransportError):  # connection refused, timeout
        return status_error(what, None, f"cannot reach Elasticsearch ({type(exc).__name__})")
    return None


# -- OpenSearch ------------------------------------------------------------------------------
def translate_opensearch_error(exc: Exception, what: str) -> VecmigrateError | None:
    """The ``opensearch-py`` exception as a vecmigrate error."""
    from opensearchpy import SSLError, TransportError

    if isinstance(exc, SSLError):
        return tls_refused("OpenSearch")
    if not isinstance(exc, TransportError):
        return None
    status = exc.status_code
    if not isinstance(status, int):  # "N/A": connection refused, timeout, TLS
        return status_error(what, None, f"cannot reach OpenSearch ({type(exc).__name__})")
    return status_error(what, status, _body_reason(exc.info))
