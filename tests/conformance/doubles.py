"""Scaffolding shared by the conformance tests that drive an official client against a
*protocol test double* from ``tests/protocol``: starting the double with its credentials in
the environment, the connection URI, and the conformance class wiring that checks, after
every test, that the double saw no request and sent no response breaking the vendor's
model."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest

from vecmigrate.connectors import Connector, connect
from vecmigrate.testing.suite import ConnectorConformance


@contextmanager
def serving(server: Any, mp: pytest.MonkeyPatch, env: Mapping[str, str]) -> Iterator[Any]:
    """``server`` (already listening) with ``env`` set; on a clean exit the double must hold
    no model violation (tests that provoke one take it themselves); always stopped."""
    for name, value in env.items():
        mp.setenv(name, value)
    try:
        yield server
        assert server.take_violations() == []
    finally:
        server.stop()


def double_uri(base: str, settings: Iterable[str], params: Mapping[str, str]) -> str:
    """``base?`` followed by the double's fixed ``settings`` and then ``params``."""
    query = "&".join([*settings, *(f"{k}={v}" for k, v in params.items())])
    return f"{base}?{query}"


@contextmanager
def connected(uri: str) -> Iterator[Connector]:
    """A connector for ``uri``, closed on exit."""
    conn = connect(uri)
    yield conn
    conn.close()


class DoubleConformance(ConnectorConformance):
    """The conformance suite on a module's ``shared_connector``; each test ends with the
    double in the fixture named ``server_fixture`` holding no model violation."""

    server_fixture: ClassVar[str]

    @pytest.fixture
    def connector(
        self, shared_connector: Connector, request: pytest.FixtureRequest
    ) -> Iterator[Connector]:
        server = request.getfixturevalue(self.server_fixture)
        yield shared_connector
        assert server.take_violations() == []
