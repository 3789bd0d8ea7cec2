"""Fault injection around a real connector: the engine work is real, the failures planted."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import DataError, TransientError


class FaultyTarget(Connector):
    """Delegates to ``inner``; fails some upserts transiently and refuses chosen ids."""

    def __init__(
        self,
        inner: Connector,
        *,
        refuse_ids: Sequence[Any] = (),
        transient_rate: float = 0.0,
        fail_after_write_rate: float = 0.0,
        healthy_calls: int | None = None,
        seed: int = 0,
    ) -> None:
        # Not Connector.__init__: the inner connector parsed its URI already.
        self.uri, self._schemas = inner.uri, {}
        self.inner = inner
        self.schemes = inner.schemes  # type: ignore[misc]
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self.refuse = set(refuse_ids)
        self.transient_rate = transient_rate
        self.fail_after_write_rate = fail_after_write_rate
        self.healthy_calls = healthy_calls  # upserts that succeed before every later one fails
        self.rng = random.Random(seed)
        self.upsert_calls = 0
        self.injected = 0
        self.injected_before = 0  # failed before the write reached the engine
        self.injected_after = 0  # failed after the engine applied the write

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        self.upsert_calls += 1
        bad = self.refuse.intersection(batch.column("id").to_pylist())
        if bad:
            raise DataError("refused by the engine", collection=name, record_id=sorted(bad)[0])
        outage = self.healthy_calls is not None and self.upsert_calls > self.healthy_calls
        if outage or self.rng.random() < self.transient_rate:
            self.injected += 1
            self.injected_before += 1
            raise TransientError("injected 503")
        self.inner.upsert(name, batch)
        if self.rng.random() < self.fail_after_write_rate:
            self.injected += 1
            self.injected_after += 1
            raise TransientError("injected timeout after the write was applied")

    def __getattribute__(self, item: str) -> Any:
        own = {
            "upsert",
            "inner",
            "refuse",
            "transient_rate",
            "fail_after_write_rate",
            "healthy_calls",
            "rng",
            "upsert_calls",
            "injected",
            "injected_before",
            "injected_after",
            "uri",
            "schemes",
            "capabilities",
            "engine",
        }
        if item in own or item.startswith("__"):
            return object.__getattribute__(self, item)
        return getattr(object.__getattribute__(self, "inner"), item)

    # The abstract methods are served by __getattribute__; these satisfy the ABC.
    list_collections = describe = count = partitions = scan = fetch = None  # type: ignore[assignment]
    create = delete = drop = search = None  # type: ignore[assignment]
