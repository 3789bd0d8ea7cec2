"""Partition helpers for connectors: the common ways to split a collection into disjoint
slices that cover it (offset ranges, key ranges, balanced groups of units)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pyarrow as pa

from vecmigrate.errors import TransientError
from vecmigrate.model import Partition, ResumeToken

T = TypeVar("T")


def offset_partitions(total: int, n: int, *, min_rows: int = 1000) -> list[Partition]:
    """Split ``[0, total)`` into at most ``n`` contiguous offset ranges of >= ``min_rows``.

    For engines whose only scan is offset/limit over a stable internal order (stable while
    the collection is not written, which holds for a migration source).
    """
    n = max(1, min(n, total // min_rows + 1))
    bounds = [total * i // n for i in range(n + 1)]
    # The last range is open: it reads to the end of the collection as it is then (rows
    # added since the count are read, rows deleted since do not fail the scan).
    return [
        Partition(
            id=f"offsets-{i}",
            spec={"start": a, "end": None if i == n - 1 else b},
            estimated_rows=b - a,
        )
        for i, (a, b) in enumerate(itertools.pairwise(bounds))
    ]


def scan_offsets(
    engine: str,
    name: str,
    partition: Partition,
    resume: ResumeToken | None,
    batch_rows: int,
    read: Callable[[int, int], pa.RecordBatch],
) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
    """Scan an ``offset_partitions`` range: ``read(offset, limit)`` returns the rows there.

    Each batch's token (``{"next": offset}``) resumes after it. A read that returns no
    rows before a closed range ends means the collection changed under the scan: that is
    a TransientError, never a silently shorter scan. The open last range (``end`` None)
    ends where the collection does.
    """
    start = json.loads(resume)["next"] if resume else partition.spec["start"]
    end = partition.spec["end"]
    while end is None or start < end:
        limit = batch_rows if end is None else min(batch_rows, end - start)
        batch = read(start, limit)
        if not batch.num_rows:
            if end is None:
                return
            raise TransientError(
                f"{engine} returned no rows at offset {start} of {name!r}; was it written to?"
            )
        start += batch.num_rows
        yield batch, json.dumps({"next": start})


def balanced_groups(items: Sequence[T], weight: Callable[[T], int], n: int) -> list[list[T]]:
    """``items`` in at most ``n`` groups (at least one, maybe empty) of similar total weight.

    Largest first onto the (first) lightest group: the classic greedy that keeps
    partitions of unevenly sized units (files, namespaces) balanced.
    """
    groups: list[list[T]] = [[] for _ in range(max(1, min(n, len(items))))]
    sizes = [0] * len(groups)
    for item in sorted(items, key=lambda x: -weight(x)):
        i = sizes.index(min(sizes))
        groups[i].append(item)
        sizes[i] += weight(item)
    return groups


def key_range_partitions(cuts: Sequence[Any], total: int) -> list[Partition]:
    """Key ranges ``(after, upto]`` split at ``cuts`` (ascending keys), outer ends open so
    rows outside the sampled range are covered too. Scans take ``spec["after"/"upto"]``."""
    bounds: list[Any] = [None, *cuts, None]
    return [
        Partition(
            id=f"keys-{i}", spec={"after": lo, "upto": hi}, estimated_rows=total // (len(cuts) + 1)
        )
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds))
    ]
