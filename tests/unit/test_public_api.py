"""The public Python API: a sorted, importable ``__all__`` and docs/python-api.md run as is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import vecmigrate as vm
from tests.conftest import require_module

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"


def test_all_is_sorted_and_every_name_exists() -> None:
    assert vm.__all__ == sorted(vm.__all__)
    missing = [n for n in vm.__all__ if not hasattr(vm, n)]
    assert not missing
    for verb in ("connect", "inspect", "export", "import_", "copy", "verify", "diff", "sync"):
        assert verb in vm.__all__ and callable(getattr(vm, verb))


def test_the_python_api_page_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    require_module("lancedb")
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 4
    scope: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), scope)
    out = capsys.readouterr().out
    assert "refused: source and target are the same collection 'docs'" in out
    assert "would drop 'docs_v2' (500 records)" in out
    assert not Path("new_store").exists()  # plan wrote nothing
