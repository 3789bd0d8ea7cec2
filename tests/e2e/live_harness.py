"""The pieces of a live-cutover test: a seeded source, the app instances (``live_app.py``)
started as processes, their admin endpoints, the phase they route by, the ledger check.
Shared by test_live_cutover.py and test_live_playbook.py."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.e2e.live_load import Load
from tests.engines.common import free_port, wait_until
from vecmigrate.connectors import Connector
from vecmigrate.live import StateStore
from vecmigrate.model import CollectionSchema, MetadataField, VectorField
from vecmigrate.records import build_batch

ROOT = Path(__file__).resolve().parents[2]
DIM, ROWS = 32, 1500


def seed(conn: Connector, name: str) -> CollectionSchema:
    schema = CollectionSchema(
        name=name,
        vectors=(VectorField(dim=DIM),),
        has_document=True,
        metadata=(
            MetadataField(name="genre", type="string"),
            MetadataField(name="year", type="int64"),
        ),
    )
    conn.create(schema)
    rng = np.random.default_rng(7)
    ids = [f"doc-{i:05d}" for i in range(ROWS)]
    batch = build_batch(
        schema,
        ids,
        {"vector": rng.normal(size=(ROWS, DIM)).astype(np.float32)},
        documents=[f"{i} seed" for i in ids],
        metadata=[{"genre": "abc"[i % 3], "year": 2000 + i % 25} for i in range(ROWS)],
    )
    conn.upsert(name, batch)
    return schema


def admin(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    r = httpx.post(f"{base}/admin/{path}", json=body or {}, timeout=60)
    r.raise_for_status()
    return r.json()


def check_ledger(conn: Connector, name: str, load: Load) -> tuple[int, int]:
    """Every acknowledged upsert present with its last value, every delete absent."""
    ids = sorted(i for i in load.ledger if i not in load.uncertain)
    got = conn.fetch(name, ids)
    docs = dict(zip(got.column("id").to_pylist(), got.column("document").to_pylist(), strict=True))
    upserts = deletes = 0
    for i in ids:
        op, doc = load.ledger[i]
        if op == "upsert":
            upserts += 1
            assert docs.get(i) == doc, (
                f"{conn.engine}: {i} is {docs.get(i)!r}, last write was {doc!r}"
            )
        else:
            deletes += 1
            assert i not in docs, f"{conn.engine}: {i} was deleted (acknowledged) but is present"
    return upserts, deletes


def start_app(
    src_uri: str, tgt_uri: str, state_uri: str, name: str, log: Path
) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.live_app",
                "--source",
                src_uri,
                "--target",
                tgt_uri,
                "--state",
                state_uri,
                "-c",
                name,
                "--port",
                str(port),
                "--state-ttl",
                "0.5",
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return f"http://127.0.0.1:{port}", proc


def warm(bases: list[str]) -> None:
    """A few concurrent reads on every instance before the measured load starts."""
    body = {"vector": [0.1] * DIM, "k": 10, "filter": {"genre": "a"}}

    def hit(i: int) -> None:
        httpx.post(f"{bases[i % len(bases)]}/search", json=body, timeout=30).raise_for_status()
        ids = {"ids": [f"doc-{i:05d}"]}
        httpx.post(f"{bases[i % len(bases)]}/fetch", json=ids, timeout=30).raise_for_status()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(hit, range(40)))


def await_phase(bases: list[str], label: str, timeout: float = 30.0) -> None:
    """Return once every app instance reports ``label`` as the phase it routes by (each
    re-reads the state store after its TTL; a loaded machine may take longer than that)."""
    deadline = time.monotonic() + timeout
    for b in bases:
        while (seen := httpx.get(f"{b}/health", timeout=10).json()["phase"]) != label:
            assert time.monotonic() < deadline, f"{b} still routes by {seen}, not {label}"
            time.sleep(0.05)


def publish(bases: list[str]) -> None:
    """Have every instance store its shadow totals now (they also do every 0.5 s)."""
    for b in bases:
        admin(b, "publish")


def await_shadow_reads(
    state: StateStore, name: str, bases: list[str], n: int = 20, timeout: float = 60.0
) -> None:
    """Return once the instances' published shadow totals for the phase in force reach
    ``n`` comparisons (the shadow gate's minimum): a loaded machine serves fewer requests
    in a fixed pause than an idle one."""
    version = state.get(name).version

    def published() -> bool:
        publish(bases)
        return state.shadow_totals(name, version).comparisons >= n

    wait_until(published, timeout, f"{n} shadow reads in phase version {version}")


def up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def metric(text: str, name: str, label: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
