"""An unchanged ``qdrant_client.QdrantClient`` (REST) through ``vecmigrate proxy --dialect
qdrant`` over a whole cutover.

Source: a LanceDB table with 500 MiniLM records (integer point ids, cosine); target: a
pgvector database; state: SQLite. The proxy runs as its own process (the CLI command), and
this test is both the application (the official Qdrant client, unmodified, making its
normal calls) and the operator (``vecmigrate copy`` / ``cutover advance|reconcile`` as
subprocesses). After every phase (source-only, dual-write, shadow-read, a 50% canary with
one user on each side, target-primary, target-only) the client's answers through the proxy
equal what the same client gets from a Qdrant local-mode instance holding the same points
and given the same writes: ids, payloads, vectors (as directions: Qdrant stores cosine
vectors normalised), scores within 1e-4. During the canary the target is killed (its
database role loses LOGIN and its sessions are terminated): reads fall back to the
source, writes queue in the outbox, and the failed shadow reads hold the canary (the
operator goes back to shadow reads and runs it again); later a rollback from
target-primary to the canary.
No request fails, and the target ends holding exactly the reference's points.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import require_module
from tests.e2e.helpers import run_cli
from tests.e2e.test_proxy_chroma import (
    GATES,
    KEY,
    SEED,
    Data,
    Requests,
    Target,
    _await,
    _cutover,
    _direct,
    _metric,
    _proxy,
    _status,
)
from tests.engines.common import free_port
from vecmigrate.connectors import connect
from vecmigrate.live import canary_bucket, open_state
from vecmigrate.model import CollectionSchema, IdType, MetadataField, VectorField
from vecmigrate.records import build_batch, metadata_rows

META = (
    MetadataField(name="module", type="string"),
    MetadataField(name="package", type="string"),
    MetadataField(name="words", type="int64"),
    MetadataField(name="score", type="float64"),
    MetadataField(name="has_example", type="bool"),
    MetadataField(name="tags", type="list<string>"),
)
FILTERS: list[dict[str, Any] | None] = [
    None,
    {"must": [{"key": "package", "match": {"value": "asyncio"}}]},
    {"must": [{"key": "tags", "match": {"any": ["short", "example"]}}]},
    {"must_not": [{"key": "has_example", "match": {"value": True}}]},
    {"must": [{"key": "words", "range": {"gte": 20, "lt": 120}}]},
]


def _payload(data: Data, n: int, document: str | None = None) -> dict[str, Any]:
    return {**data.metas[n], "document": document or data.docs[n]}


def _unit(v: Any) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def _seed_source(uri: str, name: str, data: Data) -> None:
    schema = CollectionSchema(
        name=name,
        id_type=IdType.INT,
        vectors=(VectorField(dim=384),),
        has_document=True,
        metadata=META,
    )
    with connect(uri) as conn:
        conn.create(schema)
        batch = build_batch(
            schema,
            pa.array(range(SEED), pa.int64()),
            {"vector": data.vectors[:SEED]},
            documents=data.docs[:SEED],
            metadata=data.metas[:SEED],
        )
        conn.upsert(name, batch)


def _same_points(got: list[Any], want: list[Any], what: str) -> None:
    """Same ids at each rank with the same payloads and scores (within 1e-4); where ids
    differ at a rank, a near tie: the two scores within 1e-4."""
    assert len(got) == len(want), f"{what}: {len(got)} != {len(want)} points"
    w = {p.id: p for p in want}
    for rank, (g, wp) in enumerate(zip(got, want, strict=True)):
        if g.id in w:
            assert g.payload == w[g.id].payload, f"{what}: payload of {g.id}"
            assert abs(g.score - w[g.id].score) <= 1e-4, f"{what}: score of {g.id}"
        if g.id != wp.id:
            assert abs(g.score - wp.score) <= 1e-4, f"{what}: rank {rank}: {g.id} != {wp.id}"


def _same_records(got: list[Any], want: list[Any], what: str, vectors: bool = False) -> None:
    assert [p.id for p in got] == [p.id for p in want], what
    for g, wp in zip(got, want, strict=True):
        assert g.payload == wp.payload, f"{what}: payload of {g.id}"
        if vectors:
            assert np.abs(_unit(g.vector) - _unit(wp.vector)).max() <= 1e-5, f"{what}: {g.id}"


class Workload:
    """The application's calls, made through the proxy and on the reference alike."""

    def __init__(self, data: Data, name: str, ref: Any, call: Requests) -> None:
        self.data, self.name, self.ref, self.call = data, name, ref, call
        self.spare = iter(range(SEED, len(data.ids)))
        self.alive = list(range(SEED))
        self.rng = np.random.default_rng(16)
        rows = [3, 77, 150, 250, 420]
        self.queries = data.vectors[rows] + 0.01 * self.rng.normal(size=(len(rows), 384))

    def write(self, client: Any, phase: str) -> None:
        """New points, edited points (whole upserts), a payload change, deletes by id."""
        from qdrant_client import models

        d = self.data
        new = [next(self.spare) for _ in range(3)]
        edited = [int(self.alive[i]) for i in self.rng.choice(len(self.alive), 2, replace=False)]
        donors = self.rng.choice(SEED, 2, replace=False)
        moved = d.vectors[donors] + 0.05 * self.rng.normal(size=(2, 384))
        points = [
            models.PointStruct(id=n, vector=d.vectors[n].tolist(), payload=_payload(d, n))
            for n in new
        ] + [
            models.PointStruct(
                id=i,
                vector=v.tolist(),
                payload={
                    **_payload(d, i, f"{d.docs[i]} [edited in {phase}]"),
                    "words": d.metas[i]["words"] + 1,
                },
            )
            for i, v in zip(edited, moved, strict=True)
        ]
        doomed = [i for i in self.alive if i not in edited][-2:]
        self.alive = [i for i in self.alive if i not in doomed]
        for c, call in ((client, self.call), (self.ref, _direct)):
            call(c.upsert, self.name, points=points, wait=True)
            call(c.set_payload, self.name, payload={"score": 0.5}, points=[edited[0]], wait=True)
            call(c.delete, self.name, points_selector=models.PointIdsList(points=doomed))
        self.alive += new

    def compare(self, client: Any, what: str) -> None:
        """collection info, count, query_points with and without filters, retrieve, scroll."""
        from qdrant_client import models

        info = self.call(client.get_collection, self.name)
        assert info.config.params.vectors.size == 384, what
        assert info.config.params.vectors.distance == models.Distance.COSINE, what
        assert info.points_count == self.ref.count(self.name).count, what
        got_n = self.call(client.count, self.name, exact=True).count
        assert got_n == self.ref.count(self.name, exact=True).count, what
        for flt in FILTERS:
            qf = models.Filter(**flt) if flt else None
            for n, q in enumerate(self.queries):
                args = {"query": q.tolist(), "limit": 10, "with_payload": True}
                got = self.call(client.query_points, self.name, query_filter=qf, **args).points
                want = self.ref.query_points(self.name, query_filter=qf, **args).points
                _same_points(got, want, f"{what} query {n} {flt}")
        ids = [*self.alive[:6], *self.alive[-6:], *range(SEED - 3, SEED + 30)]
        ids = list(dict.fromkeys(ids))
        kw = {"with_payload": True, "with_vectors": True}
        _same_records(
            sorted(self.call(client.retrieve, self.name, ids, **kw), key=lambda p: p.id),
            sorted(self.ref.retrieve(self.name, ids, **kw), key=lambda p: p.id),
            f"{what} retrieve",
            vectors=True,
        )
        offset: Any = None
        for page in range(2):
            flt = models.Filter(
                must=[models.FieldCondition(key="words", range=models.Range(gte=30))]
            )
            got, got_next = self.call(
                client.scroll, self.name, scroll_filter=flt, limit=40, offset=offset
            )
            want, want_next = self.ref.scroll(self.name, scroll_filter=flt, limit=40, offset=offset)
            _same_records(got, want, f"{what} scroll page {page}")
            assert got_next == want_next, f"{what} scroll page {page}"
            offset = got_next


def test_qdrant_client_through_a_whole_cutover(tmp_path: Path, postgres: Any) -> None:
    require_module("qdrant_client")
    for module in ("starlette", "uvicorn", "prometheus_client", "psycopg", "lancedb"):
        require_module(module)
    from qdrant_client import QdrantClient, models

    name = f"pq_{uuid.uuid4().hex[:8]}"
    data = Data()
    src_uri = f"lancedb://{tmp_path / 'source'}"
    _seed_source(src_uri, name, data)
    target = Target(postgres, name)
    state_uri = f"sqlite://{tmp_path}/state.db"
    ref = QdrantClient(path=str(tmp_path / "reference"))
    ref.create_collection(
        name, vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE)
    )
    ref.upsert(
        name,
        points=[
            models.PointStruct(id=n, vector=data.vectors[n].tolist(), payload=_payload(data, n))
            for n in range(SEED)
        ],
    )
    port = free_port()
    args = ["--dialect", "qdrant", "--source", src_uri, "--target", target.uri]
    args += ["--state", state_uri, "--collection", name, "--state-ttl", "0.2"]
    args += ["--api-key", "env:PROXY_TEST_KEY", "--drain-timeout", "20"]
    log = tmp_path / "proxy.log"
    call = Requests()
    work = Workload(data, name, ref, call)
    users = [f"user-{i}" for i in range(100)]
    to_target = next(u for u in users if canary_bucket(u) < 5000)
    to_source = next(u for u in users if canary_bucket(u) >= 5000)
    url = f"http://127.0.0.1:{port}"
    with _proxy(args, log, port) as proc:

        def client(user: str | None = None) -> Any:
            headers = {"X-Vecmigrate-Key": user} if user else None
            return QdrantClient(
                url=url, prefer_grpc=False, api_key=KEY, headers=headers, timeout=60
            )

        with pytest.warns(UserWarning, match="insecure"):
            app = client()

        def drained() -> bool:
            out = _status(port, name)["outbox"]
            return all(side["pending"] == 0 and side["dead"] == 0 for side in out.values())

        def moved(ran: dict[str, Any]) -> None:
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

        phase("source-only", [app])
        unkeyed = QdrantClient(url=url, prefer_grpc=False, check_compatibility=False)
        with pytest.raises(Exception, match=r"401|API key|Unauthorized"):
            unkeyed.count(name)

        run_cli("copy", src_uri, target.uri, "-c", name, "--json", cwd=tmp_path, check=True)
        target.exact()
        moved(_cutover(tmp_path, "advance", "--state", state_uri, "-c", name, src_uri, target.uri))
        _cutover(tmp_path, "reconcile", "--state", state_uri, "-c", name, src_uri, target.uri)
        phase("dual-write", [app])

        step = ["--state", state_uri, "-c", name, src_uri, target.uri, *GATES]
        moved(_cutover(tmp_path, "advance", *step))
        phase("shadow-read", [app])
        shadowed()
        moved(_cutover(tmp_path, "advance", *step, "--percent", "50"))
        canary = [client(to_target), client(to_source), app]
        before = _metric(port, "vecmigrate_live_reads_total", side="target", outcome="ok")
        phase("canary:50", canary)
        assert _metric(port, "vecmigrate_live_reads_total", side="target", outcome="ok") > before

        # the target dies during the canary: its user's reads fall back to the source,
        # writes queue for the target, no request fails
        fallbacks = _metric(port, "vecmigrate_live_reads_total", side="source", outcome="fallback")
        target.kill()
        try:
            work.write(canary[0], "canary, target down")
            for i, c in enumerate(canary):
                work.compare(c, f"canary, target down (client {i})")
            after = _metric(port, "vecmigrate_live_reads_total", side="source", outcome="fallback")
            assert after > fallbacks
            assert _status(port, name)["outbox"]["target"]["pending"] > 0
        finally:
            target.revive()
        _await("outbox drained after the outage", drained)
        phase("canary:50", canary)
        # the shadow reads that failed meanwhile hold the canary: the gate refuses, the
        # operator goes back to shadow reads and runs the canary again
        refused = run_cli("cutover", "advance", *step, "--json", cwd=tmp_path)
        assert refused.returncode != 0 and "errors" in refused.stdout + refused.stderr
        outage = ["--to", "shadow-read", "--reason", "target outage"]
        moved(_cutover(tmp_path, "rollback", "--state", state_uri, "-c", name, *outage))
        phase("shadow-read", [app])
        shadowed()
        moved(_cutover(tmp_path, "advance", *step, "--percent", "50"))
        phase("canary:50", canary)
        shadowed()
        moved(_cutover(tmp_path, "advance", *step))
        phase("target-primary", [app])

        # a rollback from target-primary to the canary, and forward again
        back = ["--to", "canary", "--percent", "50", "--reason", "drill"]
        moved(_cutover(tmp_path, "rollback", "--state", state_uri, "-c", name, *back))
        phase("canary:50", canary)
        shadowed()
        moved(_cutover(tmp_path, "advance", *step))
        phase("target-primary", [app])
        shadowed()
        moved(_cutover(tmp_path, "advance", *step))
        phase("target-only", [app])

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0

    assert call.failed == [], call.failed
    assert call.ok > 100
    assert KEY not in log.read_text(errors="replace")
    # the target holds exactly the reference's points (the ledger of every acknowledged write)
    want = {p.id: p.payload for p in ref.scroll(name, limit=10_000, with_payload=True)[0]}
    with connect(target.uri) as tgt:
        batch = tgt.fetch(name, list(want))
        assert tgt.count(name) == len(want)
        schema = tgt.describe(name)
    got = {
        i: {**m, "document": d}
        for i, d, m in zip(
            batch.column("id").to_pylist(),
            batch.column("document").to_pylist(),
            metadata_rows(batch, schema),
            strict=True,
        )
    }
    assert got == want
    ref.close()
    print(f"\nproxy (qdrant): {call.ok} client requests through every phase, 0 failed")
