"""docs/engines.md shows the capabilities the connectors actually declare."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_capability_table_in_docs_is_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "capabilities_table", ROOT / "scripts" / "capabilities_table.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    doc = (ROOT / "docs" / "engines.md").read_text()
    shown = doc.split(module.BEGIN)[1].split(module.END)[0].strip()
    assert shown == module.capability_table(), (
        "regenerate: .venv/bin/python scripts/capabilities_table.py (docs/engines.md)"
    )
