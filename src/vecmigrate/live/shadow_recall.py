"""Recall of both sides on the application's own shadow queries, against exact ground truth.

Overlap between two approximate indexes cannot tell which one is right: a target that
finds the true neighbours more often than the source overlaps less with it, yet is the
better migration. So the shadow gate computes, for the searches the routers sampled
(``ShadowReader.take_samples``), the exact top-k over the source's data (one scan, each
query's filter applied exactly) and compares each side's recall@k with it; an answer as
close as the k-th true neighbour counts as found (ties are equally right).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector
from vecmigrate.exact import TopK, similarity
from vecmigrate.filters import evaluate, parse
from vecmigrate.live.outbox import decode_batch
from vecmigrate.live.state import StateStore
from vecmigrate.records import vectors_to_numpy
from vecmigrate.retry import scan_resuming


@dataclass(frozen=True)
class ShadowRecall:
    """Mean recall@k of each side over the sampled shadow queries."""

    queries: int
    source: float
    target: float


def _samples(state: StateStore, collection: str, version: int) -> pa.Table | None:
    batches = [decode_batch(p) for p in state.shadow_queries(collection, version)]
    batches = [b for b in batches if b.num_rows]
    return pa.Table.from_batches(batches).combine_chunks() if batches else None


def shadow_recall(
    state: StateStore, collection: str, version: int, source: Connector, name: str
) -> ShadowRecall | None:
    """Recall of both sides on the sampled queries of phase ``version`` (None: none kept)."""
    table = _samples(state, collection, version)
    if table is None:
        return None
    schema = source.describe(name)
    field = schema.vectors[0]  # the router searches the default vector field
    rows = table.to_pylist()
    k_max = max(int(r["k"]) for r in rows)
    groups: dict[str | None, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[r["filter"]].append(i)
    tops = {
        f: TopK(np.asarray([rows[i]["vector"] for i in idx], np.float32), k_max, field.metric)
        for f, idx in groups.items()
    }
    nodes = {f: parse(json.loads(f), schema) if f else None for f in groups}
    # The answers' own similarities, so that an answer tied with the k-th true neighbour
    # counts as a hit (two records with one vector are equally right).
    answered = {
        f: {x for i in idx for x in (*rows[i]["served"], *rows[i]["shadow"])}
        for f, idx in groups.items()
    }
    sims: dict[str | None, dict[str, np.ndarray]] = {f: {} for f in groups}
    for part in source.partitions(name, 1):
        for batch, _ in scan_resuming(source, name, part, schema=schema, batch_rows=5000):
            ids = [str(i) for i in batch.column("id").to_pylist()]
            vectors = vectors_to_numpy(batch.column(field.name))
            for f, top in tops.items():
                node = nodes[f]
                mask = None if node is None else np.asarray(evaluate(node, batch), dtype=bool)
                top.add(ids, vectors, mask=mask)
                hit = [j for j, x in enumerate(ids) if x in answered[f]]
                if hit:
                    col = similarity(top.q, vectors[hit], field.metric)
                    for c, j in enumerate(hit):
                        sims[f][ids[j]] = col[:, c]
    recall: dict[str, list[float]] = {"source": [], "target": []}
    for f, idx in groups.items():
        truth = tops[f].result()
        for pos, i in enumerate(idx):
            r = rows[i]
            k = int(r["k"])
            found = truth.scores[pos][:k]
            found = found[np.isfinite(found)]
            if not len(found):
                continue
            kth = float(found[-1]) - 1e-5 * max(1.0, abs(float(found[-1])))
            answers = {r["served_side"]: r["served"], _other(r["served_side"]): r["shadow"]}
            for side in ("source", "target"):
                good = sum(1 for x in answers[side][:k] if x in sims[f] and sims[f][x][pos] >= kth)
                recall[side].append(min(1.0, good / len(found)))
    if not recall["source"]:
        return None
    return ShadowRecall(
        len(recall["source"]),
        float(np.mean(recall["source"])),
        float(np.mean(recall["target"])),
    )


def _other(side: str) -> str:
    return "target" if side == "source" else "source"
