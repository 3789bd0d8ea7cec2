"""A connector from another package: installed like a user would install it (pip, an
entry point in ``vecmigrate.connectors``), then held to the shipped conformance suite."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import cli, make_dump
from vecmigrate.connectors import Connector, connect, registry
from vecmigrate.model import IdType
from vecmigrate.testing import ConnectorConformance

PACKAGE = Path(__file__).parent / "example_connector"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """pip-install the example package into a folder put on sys.path (the venv is left
    as it was); vecmigrate then finds it through its entry point."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PACKAGE)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    sys.path.insert(0, str(target))
    registry._plugins.cache_clear()
    yield
    sys.path.remove(str(target))
    registry._plugins.cache_clear()


class TestTablefileStringIds(ConnectorConformance):
    @pytest.fixture
    def connector(self, installed: None, tmp_path: Path) -> Iterator[Connector]:
        with connect(f"tablefile://{tmp_path / 'store'}") as conn:
            yield conn


class TestTablefileIntIds(TestTablefileStringIds):
    id_type = IdType.INT


def test_the_cli_copies_into_and_out_of_the_plugin(
    installed: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    make_dump(tmp_path / "dump", 300, dim=8)
    assert cli("import", "dump", "tablefile:./store", "-c", "docs").returncode == 0
    out = cli("copy", "tablefile:./store", "dump:./back", "-c", "docs", "--json")
    assert out.returncode == 0 and out.json()["verified"], out.stderr
    # Unknown parameters and self-copies are refused for plug-ins too.
    assert cli("inspect", "tablefile:./store?bogus=1").returncode == 2
    same = cli("copy", "tablefile:./store", "tablefile:./store/../store", "-c", "docs")
    assert same.returncode == 2 and "same collection" in same.stderr
