"""Fixtures shared by the conformance modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    """A monkeypatch that lasts the module (for a module-scoped server's credentials)."""
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
