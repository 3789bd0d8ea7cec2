"""Which ids differ between source and target, while the application keeps writing.

The cutover needs only the ids, so ``diff_collections`` runs without fetching records to
name fields; Chroma's offset scans fail outright while the collection is written, so
the whole diff is taken again when writes get in its way. A scan taken under writes also
sees ids in flight (written on one side, queued for the other) or skips rows a concurrent
delete shifted, so the ids it reports are fetched again from both sides until the set is
stable: only ids that still differ after the outbox had time to apply them count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import ConnectorError
from vecmigrate.model import IdType
from vecmigrate.verify.diff import diff_collections, persistent_differences

SAMPLE = 20  # ids whose differing fields a refused gate can name


@dataclass
class Drift:
    """Ids missing from the target, extra on it, or with different content."""

    source_count: int
    target_count: int
    missing: list[Any] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)
    changed: list[Any] = field(default_factory=list)
    sample_fields: dict[str, list[str]] = field(default_factory=dict)
    """For the first few differing ids: what differs (read again after the scan)."""

    @property
    def ids(self) -> list[Any]:
        """Every differing id (typed as the collection's ids)."""
        return [*self.missing, *self.extra, *self.changed]

    @property
    def size(self) -> int:
        """How many ids differ."""
        return len(self.missing) + len(self.extra) + len(self.changed)

    def keeping(self, keep: Callable[[str], bool]) -> Drift:
        """This drift with only the ids (as strings) ``keep`` accepts."""
        return Drift(
            self.source_count,
            self.target_count,
            [i for i in self.missing if keep(str(i))],
            [i for i in self.extra if keep(str(i))],
            [i for i in self.changed if keep(str(i))],
            {k: v for k, v in self.sample_fields.items() if keep(k)},
        )


def _drift_once(source: Connector, target: Connector, name: str, target_name: str) -> Drift:
    diff = diff_collections(source, target, name, target_name=target_name, name_fields=False)
    int_ids = source.describe(name).id_type is IdType.INT

    def typed(ids: list[str]) -> list[Any]:
        return [int(i) for i in ids] if int_ids else list(ids)

    return Drift(
        diff.source_count,
        diff.target_count,
        typed(diff.missing),
        typed(diff.extra),
        typed([c.id for c in diff.changed]),
    )


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
            drift = _drift_once(source, target, name, target_name or name)
            return _settle(drift, source, target, name, target_name or name)
        except ConnectorError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _settle(
    drift: Drift,
    source: Connector,
    target: Connector,
    name: str,
    target_name: str,
    *,
    pause: float = 0.5,
) -> Drift:
    """Keep only the ids that differ in every re-read by id, ``pause`` seconds apart."""
    ids = {str(i): i for i in drift.ids}
    fields = persistent_differences(
        source, target, name, list(ids), target_name=target_name, pause=pause
    )
    kept = drift.keeping(fields.__contains__)
    kept.sample_fields = dict(list(fields.items())[:SAMPLE])
    return kept
