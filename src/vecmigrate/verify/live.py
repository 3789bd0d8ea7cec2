"""``verify --live``: judging retrieval while the application keeps writing.

A verify under live writes reads the records it judges with at other moments than the
engines answered: a record rewritten in between fails a filter it passed when it was
returned, or is not found by the vector it had when it was sampled. Those are the
writes', not the engines', so here a violation counts only when the query, asked again
and judged on records fetched after, still returns the same record failing its filter
(a target that replays the source's writes a moment late returns a record's previous
value meanwhile: judged on the source's newer one, it fails once, not every round); and
a sampled record missed by its own vector counts only when the source still holds that
vector. Data parity settles the same way (``verify.diff.settle_in_flight``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from vecmigrate.connectors.base import Connector
from vecmigrate.model import CollectionSchema
from vecmigrate.records import vectors_to_numpy
from vecmigrate.verify.recall import QuerySet, ReturnedFacts, SystemRun, returned_facts, run_queries

PAUSES = (0.5, 1.0, 2.0)  # seconds before each round of asking again: writes land meanwhile


def _violating(runs: dict[str, SystemRun], facts: ReturnedFacts) -> list[int]:
    """Queries whose answer on either side holds an id failing the query's filter."""
    return [
        qi
        for qi, bad in enumerate(facts.failing)
        if bad and any(bad & set(run.ids[qi]) for run in runs.values())
    ]


def rejudge_violations(
    sides: dict[str, tuple[Connector, str]],
    schema: CollectionSchema,
    queries: QuerySet,
    runs: dict[str, SystemRun],
    facts: ReturnedFacts,
    k: int,
) -> int:
    """Ask the violating queries again (both sides, once per ``PAUSES``) and judge their
    new answers on records fetched after them; a returned record counts as failing only
    if it failed in every round so far. ``runs`` and ``facts`` are updated in place for
    those queries. Returns how many queries were asked again."""
    source, name = sides["source"]
    asked: set[int] = set()
    for pause in PAUSES:
        bad = _violating(runs, facts)
        if not bad:
            break
        asked.update(bad)
        time.sleep(pause)
        subset = QuerySet(
            queries.vectors[bad],
            [queries.groups[i] for i in bad],
            [queries.filters[i] for i in bad],
        )
        again = {side: run_queries(conn, coll, subset, k) for side, (conn, coll) in sides.items()}
        judged = returned_facts(source, name, schema, subset, list(again.values()))
        for j, qi in enumerate(bad):
            for side, run in again.items():
                runs[side].ids[qi] = run.ids[j]
            facts.scores[qi] = judged.scores[j]
            facts.failing[qi] = facts.failing[qi] & judged.failing[j]
    return len(asked)


def rewritten_since_sampled(
    source: Connector,
    name: str,
    schema: CollectionSchema,
    ids: list[Any],
    vectors: np.ndarray,
    tolerance: float,
) -> set[str]:
    """Of the sampled ``ids`` (with the ``vectors`` they had when sampled), those the
    source no longer holds with that vector (rewritten or deleted since)."""
    if not ids:
        return set()
    got = source.fetch(name, ids, schema=schema)
    now = dict(
        zip(
            map(str, got.column("id").to_pylist()),
            vectors_to_numpy(got.column(schema.vector.name)),
            strict=True,
        )
    )
    gone = set()
    for rid, vector in zip(map(str, ids), vectors, strict=True):
        current = now.get(rid)
        if current is None or not np.allclose(current, vector, atol=max(tolerance, 1e-6)):
            gone.add(rid)
    return gone
