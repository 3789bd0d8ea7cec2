"""Which ids differ between source and target, while the application keeps writing.

The cutover needs only the ids, so ``diff_collections`` runs without fetching records to
name fields; Chroma's offset scans fail outright while the collection is written, so
the whole diff is taken again when writes get in its way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import ConnectorError
from vecmigrate.model import IdType
from vecmigrate.verify.diff import changed_fields, diff_collections

SAMPLE = 3


@dataclass
class Drift:
    """Ids missing from the target, extra on it, or with different content."""

    source_count: int
    target_count: int
    missing: list[Any] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)
    changed: list[Any] = field(default_factory=list)
    sample_fields: dict[str, list[str]] = field(default_factory=dict)
    """For the first few changed ids: which fields differ (read again after the scan)."""

    @property
    def ids(self) -> list[Any]:
        """Every differing id (typed as the collection's ids)."""
        return [*self.missing, *self.extra, *self.changed]

    @property
    def size(self) -> int:
        """How many ids differ."""
        return len(self.missing) + len(self.extra) + len(self.changed)


def _drift_once(source: Connector, target: Connector, name: str, target_name: str) -> Drift:
    diff = diff_collections(source, target, name, target_name=target_name, name_fields=False)
    int_ids = source.describe(name).id_type is IdType.INT

    def typed(ids: list[str]) -> list[Any]:
        return [int(i) for i in ids] if int_ids else list(ids)

    drift = Drift(
        diff.source_count,
        diff.target_count,
        typed(diff.missing),
        typed(diff.extra),
        typed([c.id for c in diff.changed]),
    )
    if diff.changed:  # so a refused gate says what differs, not only which ids
        sample = [c.id for c in diff.changed[:SAMPLE]]
        drift.sample_fields = changed_fields(source, target, name, sample, target_name=target_name)
    return drift


def live_drift(
    source: Connector,
    target: Connector,
    name: str,
    target_name: str | None = None,
    *,
    attempts: int = 5,
) -> Drift:
    """Differing ids between the two sides; retried when concurrent writes break a scan."""
    for attempt in range(attempts):
        try:
            return _drift_once(source, target, name, target_name or name)
        except ConnectorError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
