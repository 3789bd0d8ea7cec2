"""Print the engine capability matrix (Markdown) from each connector's declared
``Capabilities``; docs/engines.md embeds it and a test keeps it current.
Run: ``.venv/bin/python scripts/capabilities_table.py``."""

from __future__ import annotations

from vecmigrate.connectors import REGISTRY, connector_class
from vecmigrate.filters import ALL_OPS

BEGIN = "<!-- capabilities:begin -->"
END = "<!-- capabilities:end -->"


def _yes(flag: bool) -> str:
    return "yes" if flag else "—"


def capability_table() -> str:
    """One row per connector class (schemes sharing a class share a row)."""
    rows: dict[type, list[str]] = {}
    for scheme in REGISTRY:
        rows.setdefault(connector_class(scheme), []).append(scheme)
    lines = [
        "| schemes | metrics | named vectors | sparse | namespaces | filter operators missing "
        "| rows / request | mutable |",
        "|---|---|---|---|---|---|---:|---|",
    ]
    for cls, schemes in rows.items():
        caps = cls.capabilities
        missing = sorted(ALL_OPS - caps.filter_ops) or ["none"]
        lines.append(
            f"| {', '.join(f'`{s}`' for s in schemes)} "
            f"| {', '.join(sorted(m.value for m in caps.metrics))} "
            f"| {_yes(caps.named_vectors)} | {_yes(caps.sparse_vectors)} "
            f"| {_yes(caps.namespaces)} | {', '.join(missing)} "
            f"| {caps.max_batch_rows:,} | {_yes(caps.mutable)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(BEGIN)
    print(capability_table())
    print(END)
