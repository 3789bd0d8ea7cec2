"""scripts/lower_bounds.py: the constraints `make test-min` installs, from a pyproject text."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]

PYPROJECT = """
[project]
name = "demo-pkg"
dependencies = [
  "pyarrow>=16",
  "numpy >=1.26, <3",
  "PyYAML~=6.0",
  "click",
  "rich>13",
  "tomli>=2; python_version < '3.11'",
]

[project.optional-dependencies]
lance = ["lancedb>=0.26", "numpy>=2.0"]
pg = ["psycopg[binary]>=3.1.19,<4", "pgvector>=0.3"]
pinned = ["milvus-lite==2.5.1", "setuptools<81"]
both = ["demo_pkg[lance,pg]"]
"""


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lower_bounds", ROOT / "scripts" / "lower_bounds.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve the module's annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lb = _load()


def _pins(result: object) -> dict[str, str]:
    return {pin.name: pin.version for pin in result.pins}  # type: ignore[attr-defined]


def test_core_lower_bounds_become_exact_pins_and_the_rest_is_reported() -> None:
    result = lb.lower_bounds(PYPROJECT)
    assert _pins(result) == {"pyarrow": "16", "numpy": "1.26", "PyYAML": "6.0", "tomli": "2"}
    assert [s.split(" (")[0] for s in result.skipped] == ["click", "rich>13"]
    assert "no lower bound" in result.skipped[0] and "exclusive bound" in result.skipped[1]
    text = result.text()
    assert "numpy==1.26  # core\n" in text
    assert "tomli==2; python_version < '3.11'  # core\n" in text
    assert "click" in text and "# skipped:" in text


def test_extras_add_their_pins_and_a_shared_package_keeps_the_highest_bound() -> None:
    pins = _pins(lb.lower_bounds(PYPROJECT, ["lance", "pg"]))
    assert pins["lancedb"] == "0.26" and pins["pgvector"] == "0.3"
    # Constraints files cannot carry extras: psycopg[binary] pins psycopg.
    assert pins["psycopg"] == "3.1.19"
    assert pins["numpy"] == "2.0"  # core says >=1.26, [lance] >=2.0: both must hold


def test_an_extra_naming_the_project_expands_to_those_extras() -> None:
    assert _pins(lb.lower_bounds(PYPROJECT, ["both"])) == _pins(
        lb.lower_bounds(PYPROJECT, ["lance", "pg"])
    )


def test_exact_pins_stay_and_upper_bounds_alone_are_skipped() -> None:
    result = lb.lower_bounds(PYPROJECT, ["pinned"])
    assert _pins(result)["milvus-lite"] == "2.5.1"
    assert "setuptools" not in _pins(result)
    assert any(s.startswith("setuptools<81 ([pinned])") for s in result.skipped)


def test_version_order_is_numeric_not_textual() -> None:
    pins = _pins(
        lb.lower_bounds('[project]\ndependencies = ["a>=0.9", "a>=0.10", "b>=2", "b>=2.0.0"]')
    )
    assert pins == {"a": "0.10", "b": "2"}


def test_an_unknown_extra_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(lb.LowerBoundError, match=r"extra 'nope'.*known: both, lance, pg, pinned"):
        lb.lower_bounds(PYPROJECT, ["nope"])


def test_a_url_requirement_is_refused_by_name() -> None:
    with pytest.raises(lb.LowerBoundError, match=r"pkg @ https://x/pkg\.whl"):
        lb.lower_bounds('[project]\ndependencies = ["pkg @ https://x/pkg.whl"]')


def test_the_command_writes_the_file_and_reports_skips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(PYPROJECT)
    out = tmp_path / "constraints.txt"
    assert lb.main(["--pyproject", str(pyproject), "--extras", "lance", "-o", str(out)]) == 0
    lines = [x for x in out.read_text().splitlines() if not x.startswith("#")]
    assert lines[0] == "pyarrow==16  # core"
    assert "lancedb==0.26  # [lance]" in lines
    assert "numpy==2.0  # core, [lance]" in lines
    assert "skipped click" in capsys.readouterr().err
    assert lb.main(["--pyproject", str(tmp_path / "missing.toml")]) == 2


def test_the_projects_own_pyproject_pins_the_test_min_extras() -> None:
    result = lb.lower_bounds((ROOT / "pyproject.toml").read_text(), ["lancedb", "pgvector"])
    names = {lb.normalize(pin.name) for pin in result.pins}
    assert {"pyarrow", "numpy", "pydantic", "lancedb", "psycopg", "pgvector"} <= names
    assert not result.skipped
