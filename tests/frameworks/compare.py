"""What the framework-layout acceptance tests share: the filtered queries, comparing the
hits a framework's retriever returns on the source and on the target, ``vecmigrate copy``
then ``vecmigrate verify`` through the CLI, and fresh PostgreSQL databases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from tests.conftest import require_module
from tests.e2e.helpers import cli
from tests.frameworks import kit

TIE = 1e-5  # hits whose exact similarities are this close are a tie
FILTER_KEYS = ("package", "module", "words")

Hit = kit.Hit
Query = tuple[str, int, kit.Where]


def require_kinds(*kinds: str) -> None:
    """Skip unless the modules of every store kind in ``kinds`` import."""
    for kind in kinds:
        for module in kit.MODULES[kind]:
            require_module(module)


def text_vectors() -> dict[str, np.ndarray]:
    """Each text of the parquet file -> its vector (float64, for exact similarities)."""
    return {t.document: np.asarray(t.vector, dtype=np.float64) for t in kit.texts()}


def filtered_queries(
    store: kit.Store, n: int, count: int, k: int, first: int, step: int
) -> list[Query]:
    """``count`` texts of the parquet file (rows ``first``, ``first + step``, ...), each
    with one metadata equality filter on a value one of the ``n`` stored records has."""
    rows = kit.texts()
    out: list[Query] = []
    for j in range(count):
        text = rows[first + step * j].document
        key = FILTER_KEYS[j % len(FILTER_KEYS)]
        value = store.rows[(j * 13) % n].metadata[key]
        out.append((text, k, {key: value}))
    return out


def canonical(metadata: dict[str, Any]) -> str:
    """Metadata as a comparable string (key order aside)."""
    return json.dumps(metadata, sort_keys=True)


def assert_same_hits(
    source: list[Hit],
    target: list[Hit],
    query: str,
    vectors: dict[str, np.ndarray],
    seen: dict[str, str],
) -> None:
    """Same top-k documents and metadata, in the same order but for ties: hits whose exact
    cosine similarity to the query is within TIE of each other are compared as sets, but
    for the group tied at the k-th place (either side may return any of a tie there): its
    target hits need only be as close, with the metadata the source returns for them
    (``seen``: text -> metadata over every source hit)."""
    q = vectors[query]
    assert len(target) == len(source), (query, len(source), len(target))
    sims_a = [float(q @ vectors[t]) for t, _, _ in source]
    sims_b = [float(q @ vectors[t]) for t, _, _ in target]
    for i, (a, b) in enumerate(zip(sims_a, sims_b, strict=True)):
        assert abs(a - b) <= TIE, (query, i, source[i][0][:40], target[i][0][:40], a, b)
    start = 0
    while start < len(source):
        end = start + 1
        while end < len(source) and abs(sims_a[end] - sims_a[start]) <= TIE:
            end += 1
        want = {(t, canonical(md)) for t, md, _ in source[start:end]}
        got = {(t, canonical(md)) for t, md, _ in target[start:end]}
        if end < len(source):
            assert got == want, (query, start, want ^ got)
        else:
            for t, md in got:
                assert seen.get(t, md) == md, (query, t)
        start = end


def assert_hits_agree(
    queries: Sequence[Query],
    before: list[list[Hit]],
    after: list[list[Hit]],
    vectors: dict[str, np.ndarray],
    at_least: int,
) -> None:
    """Source and target hits the same for every query (see :func:`assert_same_hits`),
    every target hit passing the query's filter, and at least ``at_least`` hits in all (the
    filters let something through)."""
    seen = {t: canonical(md) for hits in before for t, md, _ in hits}
    returned = 0
    for (text, _, where), a, b in zip(queries, before, after, strict=True):
        assert_same_hits(a, b, text, vectors, seen)
        assert all(md[k] == v for _, md, _ in b for k, v in (where or {}).items())
        returned += len(b)
    assert returned >= at_least


def copy_and_verify(
    source: str, target: str, options: Sequence[str], report_dir: str = "verify-report"
) -> dict[str, Any]:
    """``vecmigrate copy`` then ``vecmigrate verify`` (both with ``options``), each exiting
    0, the verify report passing with equal parity; returns the copy's JSON summary."""
    ran = cli("copy", source, target, *options, "--json")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    copied: dict[str, Any] = ran.json()
    checked = cli("verify", source, target, *options, "--json", "--report-dir", report_dir)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
    report = checked.json()
    assert report["passed"], [g for g in report["gates"] if not g["passed"]]
    assert report["parity"]["equal"], report["parity"]
    return copied


def fresh_databases(dsn: str, prefix: str) -> Iterator[Callable[[], str]]:
    """For a fixture: yields a function making a fresh database (with the vector extension)
    on the server of ``dsn`` and returning its URL; drops them all afterwards."""
    import psycopg

    made: list[str] = []

    def make() -> str:
        name = f"{prefix}{uuid.uuid4().hex[:10]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url: str = dsn.rsplit("/", 1)[0] + "/" + name
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        made.append(name)
        return url

    yield make
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in made:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
