"""An unchanged ``chromadb.HttpClient`` through ``vecmigrate proxy`` over a whole cutover.

Source: an embedded Chroma store (``chroma://``) with 500 MiniLM records; target: a
pgvector database; state: SQLite. The proxy runs as its own process (the CLI command),
and this test is both the application (the official Chroma client, unmodified, making its
normal calls) and the operator (``vecmigrate copy`` / ``cutover advance|reconcile|
rollback`` as subprocesses). After every phase the client's answers through the proxy
equal what the same client gets from a real Chroma server (``chroma run``) holding the
same records and given the same writes: ids, documents, metadata, distances within 1e-4.

The target is killed during dual write for real: its database role loses LOGIN and every
session it has is terminated (the PostgreSQL server keeps serving the other tests), so
the proxy's outbox replay fails until the role is restored; no client request fails.

Only subprocesses open the embedded source store: a second process that had it open
(with Chroma's in-process caches) could read stale state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import VECMIGRATE, run_cli
from tests.engines.common import free_port, stop_group, wait_until
from vecmigrate.connectors import connect
from vecmigrate.live import canary_bucket, open_state
from vecmigrate.records import metadata_rows

DATA = Path(__file__).resolve().parent.parent / "data" / "minilm-600.parquet"
SEED = 500
KEY = "proxy-test-key-5b1f"  # the clients' API key, given to the proxy as env:PROXY_TEST_KEY
# Search is exact on every side, so that one answer is right: both Chroma stores search
# with ef_search >= their size, and the target's HNSW index is dropped after the backfill
# (approximate search is verify's subject, not the proxy's).
EXACT = {"hnsw": {"space": "cosine", "ef_search": 500}}
GATES = ["--max-diff", "0", "--max-outbox", "0", "--min-shadow-reads", "5", "--min-overlap", "0.9"]
# Seeds the source in a subprocess: this process never opens the embedded store.
_SEED = """
import sys
import chromadb, pyarrow.parquet as pq
path, name, data, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t = pq.read_table(data).slice(0, n)
vectors = t.column("vector").combine_chunks().flatten().to_numpy().reshape(n, -1)
col = chromadb.PersistentClient(path=path).create_collection(
    name, embedding_function=None, configuration={"hnsw": {"space": "cosine", "ef_search": 500}}
)
col.add(ids=t.column("id").to_pylist(), embeddings=vectors,
        documents=t.column("document").to_pylist(), metadatas=t.column("metadata").to_pylist())
"""


class Data:
    """The MiniLM records: the first 500 seed both stores, the rest are written later."""

    def __init__(self) -> None:
        t = pq.read_table(DATA)
        self.ids: list[str] = t.column("id").to_pylist()
        self.docs: list[str] = t.column("document").to_pylist()
        self.metas: list[dict[str, Any]] = t.column("metadata").to_pylist()
        self.vectors = (
            t.column("vector").combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1)
        )
        self.row = {i: n for n, i in enumerate(self.ids)}


class Requests:
    """Every call the application makes through the proxy, counted; a failure is kept."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed: list[str] = []

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:
            self.failed.append(f"{getattr(fn, '__name__', fn)}: {type(exc).__name__}: {exc}")
            raise
        self.ok += 1
        return out


class Target:
    """A pgvector database owned by a role of its own, so it can be killed alone."""

    def __init__(self, postgres: Any, name: str) -> None:
        import psycopg

        self.postgres, self.name = postgres, name
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{name}" LOGIN')
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
        dsn = f"postgresql://postgres@{postgres.host}:{postgres.port}/{name}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        self.uri = f"pgvector://{name}@{postgres.host}:{postgres.port}/{name}"

    def _admin(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(self.postgres.dsn, autocommit=True) as conn:
            for s in statements:
                conn.execute(s)

    def kill(self) -> None:
        """No new session may log in, and every open one is terminated."""
        self._admin(
            f'ALTER ROLE "{self.name}" NOLOGIN',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{self.name}'",
        )

    def exact(self) -> None:
        """Drop the HNSW index the backfill made: every search is exact (a sequential scan)."""
        import psycopg

        dsn = f"postgresql://postgres@{self.postgres.host}:{self.postgres.port}/{self.name}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT schemaname, indexname FROM pg_indexes WHERE indexdef ILIKE '%using hnsw%'"
            ).fetchall()
            for schema, index in rows:
                conn.execute(f'DROP INDEX "{schema}"."{index}"')
        assert rows, "the backfill made no HNSW index"

    def revive(self) -> None:
        self._admin(f'ALTER ROLE "{self.name}" LOGIN')


@contextmanager
def _proxy(args: list[str], log: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PROXY_TEST_KEY": KEY}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [VECMIGRATE, "proxy", "--listen", f"127.0.0.1:{port}", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        wait_until(lambda: _ready(port), 60, "vecmigrate proxy", log)
        yield proc
    finally:
        stop_group(proc, grace=40)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _status(port: int, name: str) -> dict[str, Any]:
    r = httpx.get(f"http://127.0.0.1:{port}/vecmigrate/status", timeout=10)
    r.raise_for_status()
    status: dict[str, Any] = r.json()["collections"][name]
    return status


def _metric(port: int, name: str, **labels: str) -> float:
    """Sum of a metric's samples with these labels, from the proxy's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _await(what: str, ready: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _cutover(tmp: Path, *args: str) -> dict[str, Any]:
    ran = run_cli("cutover", *args, "--json", cwd=tmp)
    assert ran.returncode == 0, f"cutover {args[0]}: {ran.stdout}\n{ran.stderr}"
    out: dict[str, Any] = json.loads(ran.stdout)
    return out


def _same_query(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    """Same ids in the same order with the same documents, metadata and distances (within
    1e-4). Where the ids at a rank differ, their distances must be within 1e-4: a near
    tie, which float noise decides either way on each system (also at rank k)."""
    for n, (gi, wi) in enumerate(zip(got["ids"], want["ids"], strict=True)):
        gd, wd = got["distances"][n], want["distances"][n]
        w = {
            i: (doc, meta, dist)
            for i, doc, meta, dist in zip(
                wi, want["documents"][n], want["metadatas"][n], wd, strict=True
            )
        }
        where = f"{what}, query {n}"
        for rank, (i, doc, meta, dist) in enumerate(
            zip(gi, got["documents"][n], got["metadatas"][n], gd, strict=True)
        ):
            if i in w:
                assert (doc, meta) == w[i][:2], f"{where}: record {i}"
                assert abs(dist - w[i][2]) <= 1e-4, f"{where}: distance of {i} {dist} {w[i][2]}"
            if i != wi[rank]:
                assert abs(dist - wd[rank]) <= 1e-4, f"{where}: rank {rank}: {gi} {gd} != {wi} {wd}"


def _same_get(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    g = {i: (d, m) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)}
    w = {
        i: (d, m) for i, d, m in zip(want["ids"], want["documents"], want["metadatas"], strict=True)
    }
    assert g == w, what
    ge = dict(zip(got["ids"], np.asarray(got["embeddings"]), strict=True))
    we = dict(zip(want["ids"], np.asarray(want["embeddings"]), strict=True))
    for i, v in we.items():
        assert np.abs(ge[i] - v).max() <= 1e-5, f"{what}: embedding of {i}"


class Workload:
    """The application's calls, made through the proxy and on the reference alike."""

    def __init__(self, data: Data, name: str, ref: Any, call: Requests) -> None:
        self.data, self.name, self.ref, self.call = data, name, ref, call
        self.spare = iter(range(SEED, len(data.ids)))  # records not written yet
        self.alive = list(data.ids[:SEED])  # seed records not deleted, in order
        self.rng = np.random.default_rng(16)
        rows = [3, 77, 150, 250, 420]
        self.queries = data.vectors[rows] + 0.01 * self.rng.normal(size=(len(rows), 384))

    def write(self, collection: Any, phase: str) -> None:
        """New records, edited records (same keys, new vector, document and values), an
        ``update``, an ``add`` of an existing id (ignored), deletes by id and by filter."""
        d, ref = self.data, self.ref.get_collection(self.name, embedding_function=None)
        new = [next(self.spare) for _ in range(3)]
        edited = [self.alive[i] for i in self.rng.choice(len(self.alive), 2, replace=False)]
        donors = self.rng.choice(SEED, 2, replace=False)
        edits = {
            "ids": edited,
            # another record's vector, moved a little: no two records share a vector, so no
            # exact tie in a ranking (which either engine may order either way)
            "embeddings": d.vectors[donors] + 0.05 * self.rng.normal(size=(2, 384)),
            "documents": [f"{d.docs[d.row[i]]} [edited in {phase}]" for i in edited],
            "metadatas": [
                {**d.metas[d.row[i]], "words": d.metas[d.row[i]]["words"] + 1} for i in edited
            ],
        }
        doomed = [i for i in self.alive if i not in edited][-2:]
        self.alive = [i for i in self.alive if i not in doomed]
        for col, call in ((collection, self.call), (ref, _direct)):
            call(
                col.upsert,
                ids=[d.ids[n] for n in new],
                embeddings=d.vectors[new],
                documents=[d.docs[n] for n in new],
                metadatas=[d.metas[n] for n in new],
            )
            call(col.upsert, **edits)
            call(col.update, ids=[edited[0], "no-such-id"], metadatas=[{"score": 0.5}, {"x": 1}])
            call(col.add, ids=[edited[1]], embeddings=d.vectors[:1], documents=["ignored"])
            call(col.delete, ids=[*doomed, "no-such-id"])
        self.alive += [d.ids[n] for n in new]

    def compare(self, collection: Any, what: str) -> None:
        """count, query (with and without a where filter), get by ids with include."""
        ref = self.ref.get_collection(self.name, embedding_function=None)
        assert self.call(collection.count) == ref.count(), what
        for where in (None, {"package": "asyncio"}, {"tags": {"$contains": "short"}}):
            args: dict[str, Any] = {"query_embeddings": self.queries, "n_results": 10}
            if where:
                args["where"] = where
            _same_query(self.call(collection.query, **args), ref.query(**args), f"{what} {where}")
        some = [*self.alive[:6], *self.alive[-6:], *self.data.ids[SEED - 3 : SEED + 30]]
        ids = [*dict.fromkeys(some), "no-such-id"]
        include = ["documents", "metadatas", "embeddings"]
        _same_get(
            self.call(collection.get, ids=ids, include=include),
            ref.get(ids=ids, include=include),
            f"{what} get",
        )


def _direct(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def test_chroma_client_through_a_whole_cutover(
    tmp_path: Path, postgres: Any, chroma_server: Any
) -> None:
    chromadb = require_module("chromadb")
    for module in ("starlette", "uvicorn", "prometheus_client", "psycopg"):
        require_module(module)
    name = f"px_{uuid.uuid4().hex[:8]}"
    data = Data()
    src_uri = f"chroma://{tmp_path / 'source'}"
    subprocess.run(
        [sys.executable, "-c", _SEED, str(tmp_path / "source"), name, str(DATA), str(SEED)],
        check=True,
        capture_output=True,
    )
    target = Target(postgres, name)
    state_uri = f"sqlite://{tmp_path}/state.db"
    ref_client = chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)
    ref = _seeded(ref_client, name, data, SEED)
    port = free_port()
    args = ["--dialect", "chroma", "--source", src_uri, "--target", target.uri]
    args += ["--state", state_uri, "--collection", name, "--state-ttl", "0.2"]
    args += ["--api-key", "env:PROXY_TEST_KEY", "--drain-timeout", "20"]
    log = tmp_path / "proxy.log"
    call = Requests()
    work = Workload(data, name, ref_client, call)
    # canary keys: one user the 50% canary serves from the target, one from the source
    users = [f"user-{i}" for i in range(100)]
    to_target = next(u for u in users if canary_bucket(u) < 5000)
    to_source = next(u for u in users if canary_bucket(u) >= 5000)
    with _proxy(args, log, port) as proc:

        def client(user: str | None = None) -> Any:
            headers = {"X-Chroma-Token": KEY}
            if user:
                headers["X-Vecmigrate-Key"] = user
            c = chromadb.HttpClient(host="127.0.0.1", port=port, headers=headers)
            return call(c.get_collection, name, embedding_function=None)

        app = client()
        version = 0

        def drained() -> bool:
            out = _status(port, name)["outbox"]
            return all(side["pending"] == 0 and side["dead"] == 0 for side in out.values())

        def moved(ran: dict[str, Any]) -> None:
            nonlocal version
            version = int(ran["event"]["version"])
            _await(f"phase {version}", lambda: _status(port, name)["version"] == version)

        def shadowed(n: int = 5) -> None:
            with open_state(state_uri) as st:
                _await(
                    "shadow reads",
                    lambda: st.shadow_totals(name, st.get(name).version).comparisons >= n,
                )

        def phase(label: str, clients: list[Any]) -> None:
            work.write(app, label)
            _await("outbox drained", drained)
            for i, c in enumerate(clients):
                work.compare(c, f"{label} (client {i})")
            assert _status(port, name)["label"] == label

        # 0. the proxy takes the application's traffic, source only
        phase("source-only", [app])
        with pytest.raises(chromadb.errors.ChromaError, match="API key"):
            chromadb.HttpClient(host="127.0.0.1", port=port).get_collection(name)

        # 1. backfill, then dual write; reconcile what the application wrote meanwhile
        run_cli("copy", src_uri, target.uri, "-c", name, "--json", cwd=tmp_path, check=True)
        target.exact()
        moved(_cutover(tmp_path, "advance", "--state", state_uri, "-c", name, src_uri, target.uri))
        _cutover(tmp_path, "reconcile", "--state", state_uri, "-c", name, src_uri, target.uri)
        phase("dual-write", [app])

        # 2. the target dies during dual write: requests keep succeeding, writes queue up
        target.kill()
        try:
            work.write(app, "dual-write, target down")
            work.compare(app, "dual-write, target down")
            _await(
                "failed replays",
                lambda: _metric(port, "vecmigrate_live_outbox_replay_failures_total") > 0,
            )
            assert _status(port, name)["outbox"]["target"]["pending"] > 0
        finally:
            target.revive()
        _await("outbox drained after the outage", drained)
        phase("dual-write", [app])

        # 3. shadow reads, then a 50% canary (one user on each side), then target-primary
        step = ["--state", state_uri, "-c", name, src_uri, target.uri, *GATES]
        moved(_cutover(tmp_path, "advance", *step))
        phase("shadow-read", [app])
        shadowed()
        moved(_cutover(tmp_path, "advance", *step, "--percent", "50"))
        canary = [client(to_target), client(to_source), app]
        before = _metric(port, "vecmigrate_live_reads_total", side="target", outcome="ok")
        phase("canary:50", canary)
        assert _metric(port, "vecmigrate_live_reads_total", side="target", outcome="ok") > before
        shadowed()
        moved(_cutover(tmp_path, "advance", *step))
        phase("target-primary", [app])

        # 4. a rollback from target-primary, and forward again
        back = ["--to", "canary", "--percent", "50", "--reason", "drill"]
        moved(_cutover(tmp_path, "rollback", "--state", state_uri, "-c", name, *back))
        phase("canary:50", canary)
        shadowed()
        moved(_cutover(tmp_path, "advance", *step))
        phase("target-primary", [app])
        shadowed()
        moved(_cutover(tmp_path, "advance", *step))
        phase("target-only", [app])

        # 5. a graceful stop: SIGTERM drains and exits 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0

    assert call.failed == [], call.failed
    assert call.ok > 100
    assert KEY not in log.read_text(errors="replace")
    # the target holds exactly what the reference holds (the ledger of every acknowledged write)
    want = ref.get(include=["documents", "metadatas"])
    with connect(target.uri) as tgt:
        batch = tgt.fetch(name, want["ids"])
        assert tgt.count(name) == len(want["ids"])
        schema = tgt.describe(name)
    got = dict(
        zip(
            batch.column("id").to_pylist(),
            zip(batch.column("document").to_pylist(), metadata_rows(batch, schema), strict=True),
            strict=True,
        )
    )
    assert got == dict(
        zip(want["ids"], zip(want["documents"], want["metadatas"], strict=True), strict=True)
    )
    print(f"\nproxy: {call.ok} client requests through every phase, {len(call.failed)} failed")


@pytest.mark.parametrize("space", ["l2", "cosine", "ip"])
def test_distances_are_chromas(chroma_server: Any, space: str) -> None:
    """The proxy's Chroma distances, from the query and the returned vectors, equal a Chroma
    server's own for each space."""
    chromadb = require_module("chromadb")
    require_module("starlette")
    from vecmigrate.proxy.chroma_api import distances

    data = Data()
    client = chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)
    col = client.create_collection(
        f"dist_{space}_{uuid.uuid4().hex[:6]}",
        embedding_function=None,
        configuration={"hnsw": {"space": space}},
    )
    col.add(ids=data.ids[:200], embeddings=data.vectors[:200] * 1.5)
    queries = data.vectors[[5, 50, 500]] * 0.7
    got = col.query(query_embeddings=queries, n_results=10, include=["distances", "embeddings"])
    for q, dists, vectors in zip(queries, got["distances"], got["embeddings"], strict=True):
        ours = distances(q, np.asarray(vectors), space)
        assert np.abs(ours - np.asarray(dists)).max() <= 1e-4


def test_target_outage_at_canary(tmp_path: Path, postgres: Any, chroma_server: Any) -> None:
    """The target dies during a 50% canary: the canary user's reads are answered by the
    source (the router's fallback), writes queue for the target, no client request fails;
    once the target is back the outbox drains and every answer equals the reference again."""
    chromadb = require_module("chromadb")
    for module in ("starlette", "uvicorn", "prometheus_client", "psycopg"):
        require_module(module)
    name = f"pxc_{uuid.uuid4().hex[:8]}"
    data = Data()
    src_uri = f"chroma://{tmp_path / 'source'}"
    subprocess.run(
        [sys.executable, "-c", _SEED, str(tmp_path / "source"), name, str(DATA), str(SEED)],
        check=True,
        capture_output=True,
    )
    target = Target(postgres, name)
    state_uri = f"sqlite://{tmp_path}/state.db"
    ref_client = chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)
    ref = ref_client.create_collection(name, embedding_function=None, configuration=EXACT)
    ref.add(
        ids=data.ids[:SEED],
        embeddings=data.vectors[:SEED],
        documents=data.docs[:SEED],
        metadatas=data.metas[:SEED],
    )
    port = free_port()
    args = ["--dialect", "chroma", "--source", src_uri, "--target", target.uri]
    args += ["--state", state_uri, "--collection", name, "--state-ttl", "0.2"]
    args += ["--api-key", "env:PROXY_TEST_KEY", "--drain-timeout", "20", "--read-timeout", "2"]
    log = tmp_path / "proxy.log"
    call = Requests()
    work = Workload(data, name, ref_client, call)
    users = [f"user-{i}" for i in range(100)]
    to_target = next(u for u in users if canary_bucket(u) < 5000)
    to_source = next(u for u in users if canary_bucket(u) >= 5000)
    with _proxy(args, log, port) as proc:

        def client(user: str | None = None) -> Any:
            headers = {"X-Chroma-Token": KEY}
            if user:
                headers["X-Vecmigrate-Key"] = user
            c = chromadb.HttpClient(host="127.0.0.1", port=port, headers=headers)
            return call(c.get_collection, name, embedding_function=None)

        app = client()

        def drained() -> bool:
            out = _status(port, name)["outbox"]
            return all(side["pending"] == 0 and side["dead"] == 0 for side in out.values())

        def moved(ran: dict[str, Any]) -> None:
            version = int(ran["event"]["version"])
            _await(f"phase {version}", lambda: _status(port, name)["version"] == version)

        def phase(label: str, clients: list[Any]) -> None:
            work.write(app, label)
            _await("outbox drained", drained)
            for i, c in enumerate(clients):
                work.compare(c, f"{label} (client {i})")
            assert _status(port, name)["label"] == label

        run_cli("copy", src_uri, target.uri, "-c", name, "--json", cwd=tmp_path, check=True)
        target.exact()
        moved(_cutover(tmp_path, "advance", "--state", state_uri, "-c", name, src_uri, target.uri))
        _cutover(tmp_path, "reconcile", "--state", state_uri, "-c", name, src_uri, target.uri)
        phase("dual-write", [app])
        step = ["--state", state_uri, "-c", name, src_uri, target.uri, *GATES]
        moved(_cutover(tmp_path, "advance", *step))
        phase("shadow-read", [app])
        with open_state(state_uri) as st:
            _await(
                "shadow reads",
                lambda: st.shadow_totals(name, st.get(name).version).comparisons >= 5,
            )
        moved(_cutover(tmp_path, "advance", *step, "--percent", "50"))
        canary = [client(to_target), client(to_source), app]
        phase("canary:50", canary)

        # the target dies: the canary user's reads fall back to the source, writes queue
        fallbacks = _metric(port, "vecmigrate_live_reads_total", side="source", outcome="fallback")
        target.kill()
        try:
            work.write(canary[0], "canary, target down")
            for i, c in enumerate(canary):
                work.compare(c, f"canary, target down (client {i})")
            assert (
                _metric(port, "vecmigrate_live_reads_total", side="source", outcome="fallback")
                > fallbacks
            )
            _await(
                "failed replays",
                lambda: _metric(port, "vecmigrate_live_outbox_replay_failures_total") > 0,
            )
            assert _status(port, name)["outbox"]["target"]["pending"] > 0
            assert _status(port, name)["label"] == "canary:50"
        finally:
            target.revive()
        _await("outbox drained after the outage", drained)
        phase("canary:50", canary)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0

    assert call.failed == [], call.failed
    assert KEY not in log.read_text(errors="replace")
    want = ref.get(include=["documents", "metadatas"])
    with connect(target.uri) as tgt:
        batch = tgt.fetch(name, want["ids"])
        assert tgt.count(name) == len(want["ids"])
        schema = tgt.describe(name)
    got = dict(
        zip(
            batch.column("id").to_pylist(),
            zip(batch.column("document").to_pylist(), metadata_rows(batch, schema), strict=True),
            strict=True,
        )
    )
    assert got == dict(
        zip(want["ids"], zip(want["documents"], want["metadatas"], strict=True), strict=True)
    )
    print(f"\nproxy, target down at canary: {call.ok} client requests, {len(call.failed)} failed")


def test_an_unread_upsert_raced_by_a_phase_change_reaches_the_new_secondary(
    tmp_path: Path, chroma_server: Any
) -> None:
    """In source-only a whole-record upsert is written unread (Chroma merges the metadata
    keys itself). If the phase moves to dual-write between that decision and the write,
    the router queues the partial record for the target: the primary's merged record must
    follow it, so the target ends equal to the source. The control (the same partial
    upsert routed as a plain one) leaves the target different: the check can fail."""
    chromadb = require_module("chromadb")
    require_module("starlette")
    from vecmigrate.live.phases import next_state
    from vecmigrate.proxy.service import Record

    data = Data()
    name = f"race_{uuid.uuid4().hex[:8]}"
    client = chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)
    _seeded(client, name, data, 100)
    ids = data.ids[:100]
    proxy = _proxy_to_lancedb(tmp_path, chroma_server, name)
    pc = proxy.collections[name]
    try:
        outcome = {}
        for case, n in (("unread", 3), ("plain", 4)):
            used = pc.phase()
            assert pc.merges_upserts(used) == (case == "unread")
            meta = {k: v for k, v in data.metas[n].items() if v is not None}
            partial = Record(ids[n], data.vectors[n] + 0.01, data.docs[n] + " [x]", {"words": 7})
            if used.secondary() is None:  # the phase moves on before the router writes
                pc.router.state.transition(name, used, next_state(used), actor="t", action="t")
            if case == "unread":
                pc.upsert_unread([partial], used)
            else:
                pc.upsert([partial])
            assert pc.router.drain(30)
            sides = []
            for side in ("source", "target"):
                conn, schema = pc.router.conns[side], pc.router.schema_of(side)
                row = metadata_rows(conn.fetch(name, [ids[n]], schema=schema), pc.schema)[0]
                sides.append({k: v for k, v in row.items() if v is not None})
            assert sides[0] == {**meta, "words": 7}  # the source merged, as Chroma does
            outcome[case] = sides[1] == sides[0]
        assert outcome == {"unread": True, "plain": False}
    finally:
        proxy.shutdown()


# -- the pass-through (source-only / target-only on a Chroma server) ------------------------
DB = "/api/v2/tenants/default_tenant/databases/default_database"


def _plain(value: Any) -> Any:
    """A chromadb client's answer with numpy arrays as lists, for exact comparison."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _same_answer(got: httpx.Response, want: httpx.Response, what: str) -> None:
    """The same status and body. Chroma itself writes a record's metadata keys in a
    different order from one answer to the next (seen on chroma run 1.x: two identical
    requests, two byte strings), so a body holding metadata is compared parsed (exactly:
    the same text parses to the same floats); any other byte for byte."""
    assert got.status_code == want.status_code, what
    if got.status_code == 200 and b'"metadatas":[' in want.content:
        assert got.json() == want.json(), what
    else:
        assert got.content == want.content, what


def _forwarded(port: int, name: str) -> float:
    return _metric(port, "vecmigrate_proxy_forwarded_total", collection=name)


def _seeded(client: Any, name: str, data: Data, n: int) -> Any:
    col = client.create_collection(name, embedding_function=None, configuration=EXACT)
    col.add(
        ids=data.ids[:n],
        embeddings=data.vectors[:n],
        documents=data.docs[:n],
        metadatas=data.metas[:n],
    )
    return col


def _proxy_to_lancedb(tmp_path: Path, chroma_server: Any, name: str) -> Any:
    """An in-process proxy (no HTTP server) of ``name`` on the Chroma server, copied first
    to a LanceDB target."""
    from vecmigrate.proxy.server import ProxyConfig, build

    target = f"lancedb://{tmp_path / 'target'}"
    copied = run_cli("copy", chroma_server.uri, target, "-c", name, cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    state = f"sqlite://{tmp_path}/state.db"
    proxy, _ = build(ProxyConfig(chroma_server.uri, target, state, [name], state_ttl=0))
    return proxy


def test_source_only_passes_chroma_requests_through(tmp_path: Path, chroma_server: Any) -> None:
    """Source-only on a Chroma server: every record call through the proxy is the server's
    own answer, byte for byte (raw requests, a 4xx included) and value for value (the
    official client), and is counted as forwarded. In dual-write the same calls take the
    normal path (the counter stays put) and the writes reach both sides."""
    chromadb = require_module("chromadb")
    for module in ("starlette", "uvicorn", "prometheus_client", "lancedb"):
        require_module(module)
    data = Data()
    name, twin = f"pxf_{uuid.uuid4().hex[:8]}", f"pxt_{uuid.uuid4().hex[:8]}"
    server = chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)
    direct, ref = _seeded(server, name, data, 200), _seeded(server, twin, data, 200)
    target = f"lancedb://{tmp_path / 'target'}"
    state_uri = f"sqlite://{tmp_path}/state.db"
    port = free_port()
    args = ["--dialect", "chroma", "--source", chroma_server.uri, "--target", target]
    args += ["--state", state_uri, "--collection", name, "--state-ttl", "0.2"]
    base = f"http://127.0.0.1:{port}{DB}/collections/{name}"
    straight = f"http://{chroma_server.host}:{chroma_server.port}{DB}/collections/{direct.id}"
    rng = np.random.default_rng(7)
    queries = data.vectors[[4, 90, 170]] + 0.01 * rng.normal(size=(3, 384))
    reads: list[tuple[str, dict[str, Any]]] = [
        (
            "query",
            {
                "query_embeddings": queries.tolist(),
                "n_results": 7,
                "where": {"package": "asyncio"},
                "include": ["documents", "metadatas", "embeddings", "distances"],
            },
        ),
        (
            "query",
            {
                "query_embeddings": queries[:1].tolist(),
                "n_results": 5,
                "where_document": {"$contains": "the"},
                "include": ["distances"],
            },
        ),
        ("get", {"limit": 6, "offset": 3, "include": ["documents", "metadatas", "embeddings"]}),
        ("get", {"ids": [data.ids[9], data.ids[2], "no-such-id"], "include": ["metadatas"]}),
        ("query", {"query_embeddings": [[0.1, 0.2, 0.3]], "n_results": 3}),  # a 400
    ]

    def raw_reads() -> None:
        statuses = []
        with httpx.Client(timeout=30) as http:
            for op, body in reads:
                got = http.post(f"{base}/{op}", json=body)
                want = http.post(f"{straight}/{op}", json=body)
                _same_answer(got, want, f"{op} {body.get('include')}")
                statuses.append(got.status_code)
            got, want = http.get(f"{base}/count"), http.get(f"{straight}/count")
            assert (got.status_code, got.content) == (want.status_code, want.content)
        assert statuses == [200, 200, 200, 200, 400]

    def client_calls(via: Any, on: Any, label: str) -> None:
        """The same reads through the official client, exactly equal."""
        q = {
            "query_embeddings": queries,
            "n_results": 8,
            "where": {"words": {"$gt": 12}},
            "where_document": {"$contains": "a"},
            "include": ["documents", "metadatas", "embeddings", "distances"],
        }
        assert _plain(via.query(**q)) == _plain(on.query(**q)), label
        g = {"limit": 5, "offset": 10, "include": ["documents", "metadatas", "embeddings"]}
        assert _plain(via.get(**g)) == _plain(on.get(**g)), label
        assert via.count() == on.count(), label

    def writes(col: Any, first: int) -> list[str]:
        """add, upsert (new and existing), update, delete by ids; the ids written."""
        new = data.ids[first : first + 3]
        col.add(
            ids=new,
            embeddings=data.vectors[first : first + 3],
            documents=data.docs[first : first + 3],
            metadatas=data.metas[first : first + 3],
        )
        col.upsert(
            ids=[data.ids[5], data.ids[first + 3]],
            embeddings=data.vectors[[6, first + 3]] + 0.01,
            documents=["upserted", data.docs[first + 3]],
            metadatas=[{"words": 1}, data.metas[first + 3]],
        )
        col.update(ids=[data.ids[7]], metadatas=[{"score": 0.25, "module": "updated"}])
        col.delete(ids=[data.ids[8], "no-such-id"])
        return [*new, data.ids[first + 3], data.ids[5], data.ids[7], data.ids[8]]

    with _proxy(args, tmp_path / "proxy.log", port):
        app = chromadb.HttpClient(host="127.0.0.1", port=port).get_collection(name)
        assert _status(port, name)["forwarding"] is True
        assert _status(port, name)["forwarding_to"] == "source"

        # (a) source-only: the server's own answers
        before = _forwarded(port, name)
        raw_reads()
        client_calls(app, direct, "source-only reads")
        assert _forwarded(port, name) - before == len(reads) + 1 + 3
        with httpx.Client(timeout=30) as http:  # a raw write answered as the server answers
            body = {
                "ids": [data.ids[200]],
                "embeddings": [data.vectors[200].tolist()],
                "documents": [data.docs[200]],
                "metadatas": [data.metas[200]],
            }
            got = http.post(f"{base}/add", json=body)
            server_url = f"http://{chroma_server.host}:{chroma_server.port}"
            want = http.post(f"{server_url}{DB}/collections/{ref.id}/add", json=body)
            assert (got.status_code, got.content) == (want.status_code, want.content)
            bad = {"ids": ["x"], "embeddings": [[1.0, 2.0]]}
            got = http.post(f"{base}/upsert", json=bad)
            want = http.post(f"{straight}/upsert", json=bad)
            assert got.status_code == want.status_code == 400
            assert got.content == want.content
        written = writes(app, 201)
        assert writes(ref, 201) == written
        assert _metric(port, "vecmigrate_proxy_forwarded_total", collection=name, op="update") == 1
        include = ["documents", "metadatas", "embeddings"]
        assert _plain(app.get(ids=written, include=include)) == _plain(
            ref.get(ids=written, include=include)
        )
        client_calls(app, ref, "source-only after writes")  # the twin took the same writes
        client_calls(app, direct, "source-only after writes (same collection)")
        assert app.get(ids=[data.ids[8]])["ids"] == []
        # a delete by where alone takes the normal path, and still deletes
        before = _forwarded(port, name)
        assert app.count() == ref.count()
        app.delete(where={"module": data.metas[150]["module"]})
        ref.delete(where={"module": data.metas[150]["module"]})
        assert app.count() == ref.count() < 200
        assert _forwarded(port, name) - before == 2  # the two counts

        # (b) dual-write: the normal path; writes reach both sides
        copied = run_cli("copy", chroma_server.uri, target, "-c", name, cwd=tmp_path)
        assert copied.returncode == 0, copied.stderr
        ran = _cutover(
            tmp_path, "advance", "--state", state_uri, "-c", name, chroma_server.uri, target
        )
        version = int(ran["event"]["version"])
        _await("dual-write", lambda: _status(port, name)["version"] == version)
        assert _status(port, name)["forwarding"] is False
        before = _forwarded(port, name)
        app.query(query_embeddings=queries, n_results=5)
        app.get(limit=3)
        app.count()
        written = writes(app, 300)
        assert _forwarded(port, name) == before
        _await(
            "outbox drained",
            lambda: all(
                s["pending"] == 0 and s["dead"] == 0 for s in _status(port, name)["outbox"].values()
            ),
        )
    with connect(target) as tgt:
        schema = tgt.describe(name)
        batch = tgt.fetch(name, written, schema=schema)
    on_target = dict(zip(batch.column("id").to_pylist(), metadata_rows(batch, schema), strict=True))
    on_source = direct.get(ids=written, include=["metadatas"])
    assert set(on_target) == set(on_source["ids"]) == set(written) - {data.ids[8]}
    for i, meta in zip(on_source["ids"], on_source["metadatas"], strict=True):
        assert {k: v for k, v in on_target[i].items() if v is not None} == meta, i


def test_a_forwarded_write_raced_by_a_phase_change_reaches_the_new_secondary(
    tmp_path: Path, chroma_server: Any
) -> None:
    """A write passed through under source-only whose phase moves to dual-write before it
    lands is fenced: the router queues the source's record for the target, which ends
    equal. The control (the phase moves only after the write returned) leaves the target
    without the record, which is reconcile's job: the check can fail. Once the phase has a
    secondary, nothing is passed through and the write is left to the normal path."""
    chromadb = require_module("chromadb")
    require_module("starlette")
    require_module("lancedb")
    from vecmigrate.live.phases import next_state, rollback_state
    from vecmigrate.proxy.chroma_api import ChromaDialect

    data = Data()
    name = f"fence_{uuid.uuid4().hex[:8]}"
    client = chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)
    col = _seeded(client, name, data, 100)
    proxy = _proxy_to_lancedb(tmp_path, chroma_server, name)
    pc = proxy.collections[name]
    forward = ChromaDialect(proxy).forward[name]
    router, store = pc.router, pc.router.state
    native = forward.natives["source"]
    assert native is not None

    def body(n: int) -> bytes:
        return json.dumps(
            {
                "ids": [data.ids[n]],
                "embeddings": [data.vectors[n].tolist()],
                "documents": [data.docs[n]],
                "metadatas": [data.metas[n]],
            }
        ).encode()

    def on_target(n: int) -> dict[str, Any] | None:
        conn, schema = router.conns["target"], router.schema_of("target")
        batch = conn.fetch(name, [data.ids[n]], schema=schema)
        if not batch.num_rows:
            return None
        meta = metadata_rows(batch, pc.schema)[0]
        return {k: v for k, v in meta.items() if v is not None}

    def advance() -> None:
        store.transition(name, pc.phase(), next_state(pc.phase()), actor="t", action="t")

    try:
        # the race: the phase moves on between the router's decision and the write
        used = pc.phase()
        assert forward.side(used) == "source"

        def racing(side: str) -> None:
            advance()
            native.send(router.names["source"], "upsert", body(100))

        assert router.write_single("source", [data.ids[100]], racing, "upsert")
        assert pc.phase().secondary() == "target"
        assert router.drain(30)
        assert on_target(100) == data.metas[100]
        assert col.get(ids=[data.ids[100]])["ids"] == [data.ids[100]]

        # dual-write: nothing is passed through
        assert forward.side(pc.phase()) is None
        assert not router.write_single("source", [data.ids[102]], racing, "upsert")
        assert col.get(ids=[data.ids[102]])["ids"] == []

        # the control: back to source-only, a forwarded write, then dual-write
        cur = pc.phase()
        store.transition(name, cur, rollback_state(cur), actor="t", action="t")
        answer = forward.write("upsert", body(101), json.loads(body(101)))
        assert answer is not None and answer.status_code == 200
        advance()
        assert router.drain(30)
        assert col.get(ids=[data.ids[101]])["ids"] == [data.ids[101]]
        assert on_target(101) is None  # missed: only the fence (or reconcile) carries it
    finally:
        proxy.shutdown()
