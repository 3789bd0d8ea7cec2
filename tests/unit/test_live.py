"""Live cutover pieces: phase rules, canary stickiness, state stores (SQLite, a real
PostgreSQL, a real Redis), outbox ordering through failures, shadow dropping, the router's
catch-up."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import require_module
from tests.e2e.live_app import Outage
from vecmigrate.connectors import connect
from vecmigrate.errors import ConfigError, DataError, TransientError
from vecmigrate.live import Phase, PhaseState, ShadowTotals, StateStore, canary_bucket, open_state
from vecmigrate.live.outbox import encode_batch, ids_batch, replay
from vecmigrate.live.phases import next_state, rollback_state
from vecmigrate.live.state import PhaseConflictError
from vecmigrate.model import CollectionSchema, MetadataField, VectorField
from vecmigrate.records import build_batch

SCHEMA = CollectionSchema(
    name="docs",
    vectors=(VectorField(dim=4),),
    has_document=True,
    metadata=(MetadataField(name="genre", type="string"),),
)


def _dual_write_state(tmp_path: Path) -> StateStore:
    """A SQLite state store whose collection ``docs`` is in dual-write."""
    state = open_state(f"sqlite:///{tmp_path}/state.db")
    s = state.get("docs")
    state.transition("docs", s, next_state(s), actor="t", action="advance")
    return state


def _chroma_pair(tmp_path: Path) -> tuple[Any, Any]:
    """Two embedded Chroma stores (src, tgt) each holding an empty ``docs`` collection."""
    source, target = connect(f"chroma://{tmp_path}/src"), connect(f"chroma://{tmp_path}/tgt")
    source.create(SCHEMA)
    target.create(SCHEMA)
    return source, target


def _batch(ids: list[str], doc: str) -> pa.RecordBatch:
    vecs = np.arange(len(ids) * 4, dtype=np.float32).reshape(len(ids), 4) + 1
    return build_batch(
        SCHEMA,
        ids,
        {"vector": vecs},
        documents=[f"{i} {doc}" for i in ids],
        metadata=[{"genre": "a"}] * len(ids),
    )


# -- phases ---------------------------------------------------------------------------------
def test_routing_per_phase() -> None:
    expected = {
        Phase.SOURCE_ONLY: ("source", None, "source", None),
        Phase.DUAL_WRITE: ("source", "target", "source", None),
        Phase.SHADOW_READ: ("source", "target", "source", "target"),
        Phase.TARGET_PRIMARY: ("target", "source", "target", "source"),
        Phase.TARGET_ONLY: ("target", None, "target", None),
    }
    for phase, (primary, secondary, read, shadow) in expected.items():
        s = PhaseState(phase)
        assert (s.primary(), s.secondary(), s.read_side("u1")) == (primary, secondary, read)
        assert s.shadow_side(read) == shadow
    canary = PhaseState(Phase.CANARY, 30)
    assert (canary.primary(), canary.secondary()) == ("source", "target")
    assert canary.read_side(None) == "source"  # no key: the system of record
    for user in ("u1", "u2", "u3"):
        side = canary.read_side(user)
        assert canary.shadow_side(side) == ("source" if side == "target" else "target")


def test_advance_and_rollback_rules() -> None:
    s = PhaseState()
    labels = []
    for kw in ({}, {}, {"percent": 10.0}, {"percent": 50.0}, {}, {}):
        s = next_state(s, **kw)  # type: ignore[arg-type]
        labels.append(s.label)
    assert labels == [
        "dual-write",
        "shadow-read",
        "canary:10",
        "canary:50",
        "target-primary",
        "target-only",
    ]
    assert s.version == 6
    with pytest.raises(ConfigError, match="complete"):
        next_state(s)
    with pytest.raises(ConfigError, match="target-only cannot be rolled back"):
        rollback_state(s)
    with pytest.raises(ConfigError, match="not skipped"):
        next_state(PhaseState(Phase.DUAL_WRITE), to=Phase.CANARY)
    with pytest.raises(ConfigError, match="larger percent"):
        next_state(PhaseState(Phase.CANARY, 50), percent=10)
    back = rollback_state(PhaseState(Phase.CANARY, 50, 4))
    assert (back.phase, back.version) == (Phase.SHADOW_READ, 5)
    lowered = rollback_state(PhaseState(Phase.CANARY, 50, 4), percent=10)
    assert lowered.label == "canary:10"
    far = rollback_state(PhaseState(Phase.TARGET_PRIMARY, 0, 7), to=Phase.SOURCE_ONLY)
    assert far.phase is Phase.SOURCE_ONLY
    with pytest.raises(ConfigError):
        rollback_state(PhaseState())


# -- canary ---------------------------------------------------------------------------------
def test_canary_is_sticky_monotone_and_proportional() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    buckets = [canary_bucket(u) for u in users]
    assert buckets == [canary_bucket(u) for u in users]  # same key, same bucket
    at10 = {u for u in users if PhaseState(Phase.CANARY, 10).read_side(u) == "target"}
    at50 = {u for u in users if PhaseState(Phase.CANARY, 50).read_side(u) == "target"}
    assert at10 < at50  # raising the percentage keeps the users already moved
    assert 0.08 < len(at10) / len(users) < 0.12
    assert 0.47 < len(at50) / len(users) < 0.53
    # another process (another hash seed) puts every key in the same bucket
    code = (
        "from vecmigrate.live import canary_bucket; "
        "print([canary_bucket(f'user-{i}') for i in range(200)])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    ).stdout
    assert out.strip() == str(buckets[:200])


# -- state stores -----------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        s = open_state(f"sqlite://{tmp_path}/state.db")
    elif request.param == "redis":
        require_module("redis")
        rs = request.getfixturevalue("redis_server")
        s = open_state(f"redis://{rs.host}:{rs.port}/0")
    else:
        require_module("psycopg")
        pg = request.getfixturevalue("postgres")
        s = open_state(f"postgresql://postgres@{pg.host}:{pg.port}/postgres")
    yield s
    s.close()


def test_state_store_cas_events_and_shadow_totals(store: StateStore) -> None:
    name = f"c{uuid.uuid4().hex[:8]}"
    s0 = store.get(name)
    assert s0 == PhaseState()
    s1 = next_state(s0)
    event = store.transition(
        name,
        s0,
        s1,
        actor="ann@host",
        action="advance",
        gates=[{"gate": "data", "passed": True}],
        note="go",
    )
    assert store.get(name) == s1
    assert (event.before.label, event.after.label, event.actor) == (
        "source-only",
        "dual-write",
        "ann@host",
    )
    with pytest.raises(PhaseConflictError):  # a second operator acting on a stale view
        store.transition(name, s0, s1, actor="bob@host", action="advance")
    store.transition(name, s1, next_state(s1), actor="bob@host", action="advance")
    assert [e.after.label for e in store.events(name)] == ["dual-write", "shadow-read"]
    assert store.events(name)[0].gates == [{"gate": "data", "passed": True}]
    store.record_shadow(name, "i1", 2, ShadowTotals(10, 9.0, 0.5, 3, 1, 0, 2))
    store.record_shadow(name, "i1", 2, ShadowTotals(20, 19.0, 0.5, 3, 1, 0, 2))  # replaces
    store.record_shadow(name, "i2", 2, ShadowTotals(10, 10.0, 1.0, 0, 0, 1, 0))
    store.record_shadow(name, "i2", 1, ShadowTotals(99, 0.0, 0.0, 0, 0, 0, 0))  # other phase
    t = store.shadow_totals(name, 2)
    assert (t.comparisons, t.missing, t.violations, t.errors, t.dropped) == (30, 3, 1, 1, 2)
    assert t.mean_overlap == pytest.approx(29 / 30)
    assert t.min_overlap == 0.5


def test_sqlite_state_reads_do_not_wait_for_another_instances_write(tmp_path: Path) -> None:
    """Under WAL a read takes no lock: an instance re-reads the phase while another one
    holds the file's write lock, instead of queueing behind it (up to its 30 s timeout)."""
    import sqlite3

    store = open_state(f"sqlite:///{tmp_path}/state.db")
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    got: list[PhaseState] = []
    reader = threading.Thread(target=lambda: got.append(store.get("docs")), daemon=True)
    try:
        reader.start()
        reader.join(timeout=10)
        assert got == [PhaseState()], "the read waited for the other instance's write lock"
    finally:
        other.execute("ROLLBACK")
        other.close()
        reader.join(timeout=60)  # a read still in SQLite must end before its store closes
        store.close()


def test_outbox_order_leases_and_depth(store: StateStore) -> None:
    name = f"c{uuid.uuid4().hex[:8]}"
    ob = store.outbox
    seqs = [
        ob.append(name, "target", "upsert", encode_batch(_batch(["a"], f"v{i}"))) for i in range(3)
    ]
    ob.append(name, "source", "delete", encode_batch(ids_batch(["z"], pa.string())))
    assert seqs == sorted(seqs) and ob.last_seq(name) > seqs[-1]
    pending = ob.pending(name, "target")
    assert [e.seq for e in pending] == seqs
    assert pending[2].batch().column("document").to_pylist() == ["a v2"]
    depth = ob.depth(name)
    assert (depth["target"].pending, depth["source"].pending) == (3, 1)
    assert ob.acquire_lease(name, "target", "me", 5)
    assert not ob.acquire_lease(name, "target", "other", 5)
    assert ob.acquire_lease(name, "source", "other", 5)  # leases are per side
    ob.release_lease(name, "target", "me")
    assert ob.acquire_lease(name, "target", "other", 5)
    held = ob.append(name, "target", "upsert", encode_batch(_batch(["h"], "v")), held=True)
    assert ob.pending(name, "target")[-1].held and ob.held(name, 0)[0].seq == held
    ob.mark_ready(held)
    assert not ob.pending(name, "target")[-1].held and ob.held(name, 0) == []
    ob.rewrite(held, "delete", encode_batch(ids_batch(["h"], pa.string())))
    assert ob.pending(name, "target")[-1].op == "delete"
    ob.complete([held])
    ob.retry_later(seqs[0], "boom")
    ob.dead_letter(seqs[1], "refused")
    ob.complete([seqs[2]])
    assert [e.seq for e in ob.pending(name, "target")] == [seqs[0]]
    assert ob.pending(name, "target")[0].attempts == 1
    assert ob.depth(name)["target"].dead == 1


# -- replay ----------------------------------------------------------------------------------
def test_replay_keeps_each_ids_last_write_through_failures(tmp_path: Path) -> None:
    require_module("chromadb")
    store = open_state(f"sqlite://{tmp_path}/state.db")
    target = Outage(connect(f"chroma://{tmp_path}/chroma"))
    target.create(SCHEMA)
    ob = store.outbox
    ops: list[tuple[str, Any]] = [
        ("upsert", _batch(["a", "b"], "v1")),
        ("delete", ["a"]),
        ("upsert", _batch(["c"], "v1")),
        ("upsert", _batch(["a"], "v2")),
        ("delete", ["b", "c"]),
        ("upsert", _batch(["c"], "v3")),
        ("delete", ["d"]),
        ("upsert", _batch(["d", "e"], "v4")),
    ]
    for op, payload in ops:
        body = payload if op == "upsert" else ids_batch(payload, pa.string())
        ob.append("docs", "target", op, encode_batch(body))
    target.down.set()
    failed = replay(ob, "docs", "target", target, "docs", SCHEMA, window=3)  # type: ignore[arg-type]
    assert failed.applied == 0 and failed.error and "outage" in failed.error
    assert len(ob.pending("docs", "target")) == len(ops)  # nothing skipped, order intact
    target.down.clear()
    done = replay(ob, "docs", "target", target, "docs", SCHEMA, window=3)  # type: ignore[arg-type]
    assert (done.applied, done.dead, done.error) == (len(ops), 0, None)
    got = target.fetch("docs", ["a", "b", "c", "d", "e"])
    docs = dict(zip(got.column("id").to_pylist(), got.column("document").to_pylist(), strict=True))
    assert docs == {"a": "a v2", "c": "c v3", "d": "d v4", "e": "e v4"}
    store.close()


class _Refuses(Outage):
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        if "bad" in batch.column("id").to_pylist():
            raise DataError("refused by the engine", collection=name, record_id="bad")
        super().upsert(name, batch)


def test_replay_dead_letters_only_the_refused_entry(tmp_path: Path) -> None:
    require_module("chromadb")
    store = open_state(f"sqlite://{tmp_path}/state.db")
    target = _Refuses(connect(f"chroma://{tmp_path}/chroma"))
    target.create(SCHEMA)
    for ids in (["x"], ["bad"], ["y"]):
        store.outbox.append("docs", "target", "upsert", encode_batch(_batch(ids, "v")))
    result = replay(store.outbox, "docs", "target", target, "docs", SCHEMA)  # type: ignore[arg-type]
    assert (result.applied, result.dead) == (2, 1)
    assert sorted(target.fetch("docs", ["x", "y", "bad"]).column("id").to_pylist()) == ["x", "y"]
    assert store.outbox.depth("docs")["target"].dead == 1
    store.close()


# -- shadow pool ------------------------------------------------------------------------------
def test_shadow_pool_drops_and_counts_instead_of_blocking() -> None:
    require_module("prometheus_client")
    from vecmigrate.live.metrics import RouterMetrics
    from vecmigrate.live.shadow import ShadowReader, overlap_at_k

    assert overlap_at_k(["a", "b", "c"], ["a", "c", "d"], 3) == pytest.approx(2 / 3)
    assert overlap_at_k([], [], 10) == 1.0 and overlap_at_k([], ["a"], 10) == 0.0
    metrics = RouterMetrics("docs")
    reader = ShadowReader(metrics, "docs", workers=1, queue=0)
    release = threading.Event()
    assert reader.submit(1, lambda: (release.wait(5), ShadowTotals(comparisons=1))[1])
    started = time.perf_counter()
    assert not reader.submit(1, lambda: ShadowTotals(comparisons=1))
    assert time.perf_counter() - started < 0.05
    release.set()
    reader.close()
    totals = reader.snapshot()[1]
    assert (totals.comparisons, totals.dropped) == (1, 1)
    assert "vecmigrate_live_shadow_total" in metrics.exposition().decode()


def test_a_shadow_fraction_shadows_that_share_of_reads_at_random() -> None:
    require_module("prometheus_client")
    from vecmigrate.live.metrics import RouterMetrics
    from vecmigrate.live.shadow import ShadowReader

    metrics = RouterMetrics("docs")
    assert all(ShadowReader(metrics, "docs").wanted() for _ in range(100))
    reader = ShadowReader(metrics, "docs", fraction=0.25, seed=3)
    picks = [reader.wanted() for _ in range(4000)]
    assert 900 < sum(picks) < 1100  # binomial(4000, 0.25): mean 1000, sd 27
    assert 60 < sum(picks[:2000:4]) < 190  # not every fourth read, as a counter would pick
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="shadow fraction"):
            ShadowReader(metrics, "docs", fraction=bad)


def test_a_shadow_read_raced_once_is_asked_again_not_counted_as_an_error() -> None:
    require_module("prometheus_client")
    from vecmigrate.live.metrics import RouterMetrics
    from vecmigrate.live.router import READ_RETRY
    from vecmigrate.live.shadow import ShadowReader

    reader = ShadowReader(RouterMetrics("docs"), "docs", workers=1, retry=READ_RETRY)
    raced = iter([True, False, True, True, True])

    def compare() -> ShadowTotals:
        if next(raced):
            raise TransientError("injected: a concurrent write raced the read")
        return ShadowTotals(comparisons=1)

    assert reader.submit(1, compare)  # raced once, then compared
    assert reader.submit(1, compare)  # raced on every try: an error
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        totals = reader.snapshot().get(1)
        if totals is not None and totals.comparisons + totals.errors == 2:
            break
        time.sleep(0.05)
    reader.close()
    totals = reader.snapshot()[1]
    assert (totals.comparisons, totals.errors) == (1, 1)


# -- router ----------------------------------------------------------------------------------
def test_router_outbox_absorbs_outage_and_catches_up_on_primary_switch(tmp_path: Path) -> None:
    require_module("chromadb")
    require_module("prometheus_client")
    from vecmigrate.live.router import MigrationRouter

    source = connect(f"chroma://{tmp_path}/src")
    target = Outage(connect(f"chroma://{tmp_path}/tgt"))
    source.create(SCHEMA)
    target.create(SCHEMA)
    state = _dual_write_state(tmp_path)
    router = MigrationRouter(source, target, "docs", state, state_ttl=0, start=False)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"4-d vector.*id='x'.*field='vector'"):
        router.upsert([{"id": "x", "vector": [1.0, 2.0]}])
    router.upsert([{"id": "d", "vector": [1, 2, 3, 4], "document": "d", "metadata": {}}])
    router.delete(["d"])
    target.down.set()
    router.upsert(_batch(["a", "b"], "v1"))  # succeeds: the target's failure is queued
    router.delete(["b"])
    assert state.outbox.depth("docs")["target"].pending == 4
    assert target.fetch("docs", ["a"]).num_rows == 0
    target.down.clear()
    # switch the primary to the target with its backlog still queued (as after a rollback)
    for _ in range(3):
        s = state.get("docs")
        state.transition(
            "docs",
            s,
            next_state(s, percent=10.0 if s.phase is Phase.SHADOW_READ else None),
            actor="t",
            action="advance",
        )
    assert state.get("docs").phase is Phase.TARGET_PRIMARY
    router.upsert(_batch(["a"], "v2"))  # applies the backlog first, then the new write
    got = target.fetch("docs", ["a", "b"])
    assert got.column("document").to_pylist() == ["a v2"]
    assert state.outbox.depth("docs")["target"].pending == 0
    assert state.outbox.depth("docs")["source"].pending == 1  # now the source is secondary
    ids, _ = router.search(np.ones((1, 4), np.float32), 5)
    assert ids[0] == ["a"]
    # drift made behind the router's back is repaired through the outbox
    target.upsert("docs", _batch(["stray"], "v"))
    target.upsert("docs", _batch(["a"], "drifted"))
    source.upsert("docs", _batch(["lonely"], "v"))
    assert router.reconcile(["stray", "a", "lonely"]) == 3
    router._replay_side("source", block=True)
    assert _docs(source, ["stray", "a", "lonely"]) == {"stray": "stray v", "a": "a drifted"}
    text = router.metrics.exposition().decode()
    assert 'vecmigrate_live_outbox_replayed_total{collection="docs",side="target"} 4.0' in text
    router.close()
    state.close()


class _Crash(BaseException):
    """Stands for the process dying: nothing after it runs (not even ``except Exception``)."""


class _AppliesThenFails(Outage):
    """The primary applies the write, then the call fails: with ``crash`` as if the
    process died right after, otherwise as an ambiguous timeout (TransientError)."""

    crash = False
    armed = False

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        self.inner.upsert(name, batch)
        if self.armed:
            self.armed = False
            if self.crash:
                raise _Crash()
            raise TransientError("timeout after the write was applied")


def _dual_write_router(
    tmp_path: Path, state: StateStore | None = None, **kw: Any
) -> tuple[Any, Any, Any, StateStore]:
    require_module("chromadb")
    require_module("prometheus_client")
    from vecmigrate.live.router import MigrationRouter

    source = _AppliesThenFails(connect(f"chroma://{tmp_path}/src"))
    target = connect(f"chroma://{tmp_path}/tgt")
    source.create(SCHEMA)
    target.create(SCHEMA)
    state = state or open_state(f"sqlite://{tmp_path}/state.db")
    s = state.get("docs")
    state.transition("docs", s, next_state(s), actor="t", action="advance")
    router = MigrationRouter(source, target, "docs", state, state_ttl=0, start=False, **kw)  # type: ignore[arg-type]
    return router, source, target, state


def _docs(conn: Any, ids: list[str], name: str = "docs") -> dict[str, str]:
    got = conn.fetch(name, ids)
    return dict(zip(got.column("id").to_pylist(), got.column("document").to_pylist(), strict=True))


def test_a_transient_primary_failure_is_retried_within_the_budget(tmp_path: Path) -> None:
    router, source, target, state = _dual_write_router(tmp_path)
    source.armed = True  # the first attempt applies, then times out; the second succeeds
    router.upsert(_batch(["a"], "v1"))  # the application sees no error
    router._replay_side("target", block=True)
    assert _docs(target, ["a"]) == _docs(source.inner, ["a"]) == {"a": "a v1"}
    router.close()
    state.close()


def test_ambiguous_primary_failure_still_ends_equal(tmp_path: Path) -> None:
    from vecmigrate.retry import RetryPolicy

    router, source, target, state = _dual_write_router(tmp_path, write_retry=RetryPolicy(1))
    source.armed = True
    with pytest.raises(TransientError):
        router.upsert(_batch(["a"], "v1"))  # the caller sees a failure; the source has it
    assert _docs(source.inner, ["a"]) == {"a": "a v1"}
    router.upsert(_batch(["b"], "v1"))
    router._replay_side("target", block=True)
    assert _docs(target, ["a", "b"]) == _docs(source.inner, ["a", "b"])
    router.close()
    state.close()


def test_writer_dying_between_primary_and_release_is_recovered(
    tmp_path: Path, store: StateStore
) -> None:
    """On both state stores (SQLite and a real PostgreSQL)."""
    router, source, target, state = _dual_write_router(tmp_path, store, held_timeout=0.0)
    source.armed, source.crash = True, True
    with pytest.raises(_Crash):
        router.upsert(_batch(["a"], "v1"))  # applied on the source, entry left held
    router.upsert(_batch(["b"], "v1"))
    head = state.outbox.pending("docs", "target")
    assert [e.held for e in head] == [True, False]
    router._replay_side("target", block=True)
    assert _docs(target, ["a", "b"]) == {}  # nothing overtakes the held entry
    router._recover_held()  # (a restarted instance does this after held_timeout)
    router._replay_side("target", block=True)
    assert _docs(target, ["a", "b"]) == {"a": "a v1", "b": "b v1"}
    assert state.outbox.depth("docs")["target"].pending == 0
    router.close()
    state.close()


def _report(
    tmp_path: Path,
    *,
    passed: bool = True,
    gates: list[dict[str, Any]] | None = None,
    age: float = 0.0,
    source: str = "src",
    target: str = "tgt",
) -> str:
    """A verify report.json as ``vecmigrate verify`` writes it."""
    from datetime import datetime, timedelta, timezone

    created = datetime.now(timezone.utc) - timedelta(seconds=age)
    return json.dumps(
        {
            "created": created.isoformat(timespec="seconds"),
            "source": {
                "uri": f"chroma://{tmp_path}/{source}",
                "engine": "chroma",
                "collection": "docs",
            },
            "target": {
                "uri": f"chroma://{tmp_path}/{target}",
                "engine": "chroma",
                "collection": "docs",
            },
            "passed": passed,
            "gates": gates or [],
        }
    )


def test_verify_gate_refuses_a_stale_self_or_foreign_report_and_shadow_errors(
    tmp_path: Path,
) -> None:
    from vecmigrate.live import GateConfig, GateFailedError, advance

    state = _dual_write_state(tmp_path)
    src, tgt = connect(f"chroma://{tmp_path}/src"), connect(f"chroma://{tmp_path}/tgt")
    report = tmp_path / "report.json"
    cfg = GateConfig(skip=frozenset({"data"}), verify_report=report)
    for text, reason in [
        (_report(tmp_path, age=25 * 60), "made 25 min ago"),
        (_report(tmp_path, target="src"), "with itself"),
        (_report(tmp_path, target="other"), "its target is 'docs' on"),
        (json.dumps({"passed": True, "gates": []}), "not a vecmigrate verify report"),
    ]:
        report.write_text(text)
        with pytest.raises(GateFailedError, match=reason):
            advance(state, "docs", source=src, target=tgt, config=cfg)
    report.write_text(_report(tmp_path))
    event, _ = advance(state, "docs", source=src, target=tgt, config=cfg)
    # shadow reads that failed count against the gate (a target outage is not a pass)
    state.record_shadow("docs", "i1", event.after.version, ShadowTotals(50, 50.0, 1.0, errors=9))
    with pytest.raises(GateFailedError, match=r"9 errors \(15\.3% of shadow reads"):
        advance(state, "docs", config=GateConfig(skip=frozenset({"data", "verify"})), percent=5)
    state.close()


def test_gates_verify_report_outbox_shadow_and_skips(tmp_path: Path) -> None:
    from vecmigrate.live import GateConfig, GateFailedError, advance

    state = _dual_write_state(tmp_path)
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.json").write_text(
        _report(tmp_path, passed=False, gates=[{"gate": "recall@10 target", "passed": False}])
    )
    no_data = GateConfig(skip=frozenset({"data"}), verify_report=report)
    state.outbox.append("docs", "target", "delete", encode_batch(ids_batch(["a"], pa.string())))
    with pytest.raises(GateFailedError) as refused:
        advance(state, "docs", config=no_data)
    by_gate = {r.gate: r for r in refused.value.results}
    assert not by_gate["verify"].passed and "recall@10 target" in by_gate["verify"].detail
    assert not by_gate["outbox"].passed and "1 pending" in by_gate["outbox"].detail
    assert by_gate["data"].skipped and by_gate["shadow"].skipped  # dual-write has no shadow
    assert state.get("docs").phase is Phase.DUAL_WRITE  # refused: nothing changed
    (report / "report.json").write_text(_report(tmp_path))
    state.outbox.complete([e.seq for e in state.outbox.pending("docs", "target")])
    event, _ = advance(state, "docs", config=no_data, actor="ann", note="verified")
    assert event.after.phase is Phase.SHADOW_READ
    recorded = {g["gate"]: g for g in state.events("docs")[-1].gates}
    assert recorded["data"]["skipped"] and recorded["verify"]["passed"]
    # in shadow-read, too few shadow reads (then too low an overlap) refuse the canary
    state.record_shadow("docs", "i1", event.after.version, ShadowTotals(5, 5.0, 1.0))
    with pytest.raises(GateFailedError, match="5 shadow reads"):
        advance(state, "docs", config=no_data)
    state.record_shadow("docs", "i1", event.after.version, ShadowTotals(50, 35.0, 0.2))
    with pytest.raises(GateFailedError, match=r"mean overlap 0\.700"):
        advance(state, "docs", config=no_data)
    state.record_shadow("docs", "i1", event.after.version, ShadowTotals(50, 49.0, 0.9))
    event, _ = advance(state, "docs", config=no_data, percent=5)
    assert event.after.label == "canary:5"
    state.close()


class _PhaseMovesDuringWrite(Outage):
    """The operator advances source-only -> dual-write while a write is in flight (a
    request that read the phase, then was slow to reach the primary)."""

    state: StateStore | None = None

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        if self.state is not None:
            s = self.state.get("docs")
            self.state.transition("docs", s, next_state(s), actor="op", action="advance")
            self.state = None
        self.inner.upsert(name, batch)


def test_write_routed_by_a_phase_that_changed_before_it_landed_still_reaches_the_target(
    tmp_path: Path,
) -> None:
    require_module("chromadb")
    require_module("prometheus_client")
    from vecmigrate.live.router import MigrationRouter

    source = _PhaseMovesDuringWrite(connect(f"chroma://{tmp_path}/src"))
    target = connect(f"chroma://{tmp_path}/tgt")
    source.create(SCHEMA)
    target.create(SCHEMA)
    state = open_state(f"sqlite://{tmp_path}/state.db")
    router = MigrationRouter(source, target, "docs", state, state_ttl=0, start=False)  # type: ignore[arg-type]
    router.upsert(_batch(["a"], "v0"))  # source-only, phase unchanged: nothing queued
    assert not state.outbox.has_pending("docs", "target")
    source.state = state
    router.upsert(_batch(["a", "b"], "v1"))  # routed source-only, landed in dual-write
    assert state.get("docs").phase is Phase.DUAL_WRITE
    router._replay_side("target", block=True)
    assert _docs(target, ["a", "b"]) == {"a": "a v1", "b": "b v1"}
    router.close()
    state.close()


class _ReadOutage(Outage):
    """Reads fail (``down``) or hang for ``hang`` seconds, like a target being restarted."""

    hang = 0.0

    def _read(self) -> None:
        self._check()
        if self.hang:
            time.sleep(self.hang)

    def search(self, *a: Any, **kw: Any) -> Any:
        self._read()
        return self.inner.search(*a, **kw)

    def fetch(self, *a: Any, **kw: Any) -> Any:
        self._read()
        return self.inner.fetch(*a, **kw)


@pytest.mark.parametrize("phase_steps", [3, 4])  # canary:100, target-primary
def test_reads_fall_back_to_the_source_when_the_target_fails_or_hangs(
    tmp_path: Path, phase_steps: int
) -> None:
    require_module("chromadb")
    require_module("prometheus_client")
    from vecmigrate.live.router import MigrationRouter

    source = connect(f"chroma://{tmp_path}/src")
    target = _ReadOutage(connect(f"chroma://{tmp_path}/tgt"))
    source.create(SCHEMA)
    target.create(SCHEMA)
    state = open_state(f"sqlite://{tmp_path}/state.db")
    for _ in range(phase_steps):
        s = state.get("docs")
        pct = 100.0 if s.phase is Phase.SHADOW_READ else None
        state.transition("docs", s, next_state(s, percent=pct), actor="t", action="advance")
    router = MigrationRouter(
        source,
        target,
        "docs",
        state,
        state_ttl=0,
        start=False,
        read_timeout=0.5,  # type: ignore[arg-type]
    )
    router.upsert(_batch(["a", "b"], "v1"))
    router._replay_side(state.get("docs").secondary() or "target", block=True)
    assert state.get("docs").read_side("user-1") == "target"
    got = router.fetch(["a", "a", "b"], key="user-1")  # a duplicated id comes back once
    assert sorted(got.column("id").to_pylist()) == ["a", "b"]
    target.down.set()
    ids, _ = router.search(np.ones((1, 4), np.float32), 2, key="user-1")
    assert sorted(ids[0]) == ["a", "b"]
    assert router.fetch(["a"], key="user-1").column("document").to_pylist() == ["a v1"]
    target.down.clear()
    target.hang = 3.0
    started = time.perf_counter()
    ids, _ = router.search(np.ones((1, 4), np.float32), 2, key="user-1")
    assert sorted(ids[0]) == ["a", "b"] and time.perf_counter() - started < 2.0
    text = router.metrics.exposition().decode()
    assert 'side="source"' in text and "fallback" in text and "timeout" in text
    router.close()
    state.close()


@pytest.mark.parametrize("kind", ["postgresql", "redis"])
def test_state_stores_start_concurrently_on_a_fresh_database(
    request: pytest.FixtureRequest, kind: str
) -> None:
    """Four instances opening the store at once on an empty database all succeed."""
    opener = (
        "import sys; from vecmigrate.live import open_state; "
        "s = open_state(sys.argv[1]); s.get(sys.argv[2]); s.close()"
    )
    for trial in range(3):
        name = f"c{uuid.uuid4().hex[:8]}"
        if kind == "redis":
            require_module("redis")
            rs = request.getfixturevalue("redis_server")
            uri = f"redis://{rs.host}:{rs.port}/{1 + trial}"
        else:
            psycopg = pytest.importorskip("psycopg")
            pg = request.getfixturevalue("postgres")
            db = f"state_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(
                host=pg.host, port=pg.port, user="postgres", dbname="postgres", autocommit=True
            ) as conn:
                conn.execute(f"CREATE DATABASE {db}")
            uri = f"postgresql://postgres@{pg.host}:{pg.port}/{db}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", opener, uri, name], stderr=subprocess.PIPE, text=True
            )
            for _ in range(4)
        ]
        errors = [p.communicate(timeout=60)[1] for p in procs if p.wait(timeout=60) != 0]
        assert not errors, f"trial {trial}: {errors[0][-500:]}"


def test_a_dead_writers_held_entry_does_not_stall_writes_after_rollback(
    tmp_path: Path, store: StateStore
) -> None:
    """Instance A dies between its primary write (target-primary) and the release of the
    source's held entry; after a rollback, instance B writes at once: A's entry is
    resolved as soon as A's heartbeat expires, not after held_timeout."""
    require_module("chromadb")
    require_module("prometheus_client")
    from vecmigrate.live.router import MigrationRouter

    source = connect(f"chroma://{tmp_path}/src")
    target = _AppliesThenFails(connect(f"chroma://{tmp_path}/tgt"))
    name = f"c{uuid.uuid4().hex[:8]}"  # the PostgreSQL and Redis stores are shared
    source.create(SCHEMA.replace(name=name))
    target.create(SCHEMA.replace(name=name))
    for _ in range(4):  # dual-write, shadow-read, canary, target-primary
        s = store.get(name)
        pct = 10.0 if s.phase is Phase.SHADOW_READ else None
        store.transition(name, s, next_state(s, percent=pct), actor="t", action="advance")
    kw: dict[str, Any] = {"state_ttl": 0, "start": False, "held_timeout": 60.0}
    a = MigrationRouter(source, target, name, store, alive_ttl=0.5, **kw)  # type: ignore[arg-type]
    target.armed, target.crash = True, True
    with pytest.raises(_Crash):
        a.upsert(_batch(["x"], "v1"))  # on the target; the source's entry stays held
    assert [e.held for e in store.outbox.pending(name, "source")] == [True]
    s = store.get(name)
    store.transition(name, s, rollback_state(s), actor="t", action="rollback")
    b = MigrationRouter(source, target, name, store, **kw)  # type: ignore[arg-type]
    time.sleep(0.6)  # A's heartbeat expires (A never renews it: it is dead)
    started = time.perf_counter()
    b.upsert(_batch(["x"], "v2"))  # the source is primary again: catch-up resolves A's entry
    assert time.perf_counter() - started < 3.0
    assert _docs(source, ["x"], name) == {"x": "x v2"}
    b._replay_side("target", block=True)
    assert _docs(target.inner, ["x"], name) == {"x": "x v2"}
    b.close()


@pytest.mark.parametrize("first", ["old phase", "new phase"])
def test_a_write_on_the_old_primary_cannot_overtake_one_after_the_switch(
    tmp_path: Path, first: str
) -> None:
    """Around a primary switch instances disagree for up to a state TTL. B still routes by
    target-primary (target primary, source secondary), A by canary after a rollback
    (source primary, target secondary). Both pass their catch-up with nothing queued, then
    queue their entries (in either order) and write: the write with the later entry must
    end on both sides. Before the catch-up ran up to the write's own entry, the later
    write's primary was overwritten by the earlier entry's replay (found by
    bench/live_load: stale acknowledged writes after a rollback from target-primary)."""
    require_module("chromadb")
    require_module("prometheus_client")
    from vecmigrate.live.router import MigrationRouter

    source, target = _chroma_pair(tmp_path)
    store = open_state(f"sqlite:///{tmp_path}/state.db")
    for _ in range(4):  # dual-write, shadow-read, canary, target-primary
        s = store.get("docs")
        pct = 10.0 if s.phase is Phase.SHADOW_READ else None
        store.transition("docs", s, next_state(s, percent=pct), actor="t", action="advance")
    kw: dict[str, Any] = {"start": False, "alive_ttl": 600}  # no heartbeat thread here
    b = MigrationRouter(source, target, "docs", store, state_ttl=3600, **kw)  # cached phase
    s = store.get("docs")
    store.transition("docs", s, rollback_state(s), actor="t", action="rollback")
    a = MigrationRouter(source, target, "docs", store, state_ttl=0, **kw)
    assert (b.current().primary(), a.current().primary()) == ("target", "source")
    # Both writes queue their entries only once both have passed their catch-up, in the
    # order the case asks: the second entry is the later write.
    queued, append = threading.Barrier(2), store.outbox.append
    order = [b.instance, a.instance] if first == "old phase" else [a.instance, b.instance]
    turn = threading.Condition()

    def in_order(collection: str, side: str, op: Any, payload: bytes, held: bool = False) -> int:
        me = a.instance if side == "target" else b.instance  # A queues for the target
        queued.wait(10)
        with turn:
            turn.wait_for(lambda: order[0] == me, 10)
            seq = append(collection, side, op, payload, held=held)
            order.pop(0)
            turn.notify_all()
        return seq

    store.outbox.append = in_order  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def write(router: Any, doc: str) -> None:
        try:
            router.upsert(_batch(["x"], doc))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(b, "old")),
        threading.Thread(target=write, args=(a, "new")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    store.outbox.append = append  # type: ignore[method-assign]
    # A side's replay lease outlives the pass that took it: B took the target's when its
    # catch-up found A's entry queued, so replay with both instances (one holds each lease).
    for router in (a, b):
        for side in ("target", "source"):
            router._replay_side(side, block=True)
    assert not any(store.outbox.has_pending("docs", side) for side in ("target", "source"))
    last = "x new" if first == "old phase" else "x old"
    assert (_docs(source, ["x"]), _docs(target, ["x"])) == ({"x": last}, {"x": last})
    a.close()
    b.close()


class _SlowWrites(Outage):
    """Writes take ``delay`` seconds, like a target that stalls while it catches up."""

    delay = 0.0

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        time.sleep(self.delay)
        self.inner.upsert(name, batch)


def test_an_instance_stays_alive_while_its_replayer_is_busy(tmp_path: Path) -> None:
    """Other instances resolve the held entries of an instance whose heartbeat lapsed, as a
    dead writer's, from the primary; a live writer's entry resolved before its primary
    write lands leaves the secondary without that write. The heartbeat used to be renewed
    by the replayer between passes, and a pass under steady writes (or one slow engine
    call) outlived it (found by bench/live_load: a live instance's writes resolved as a
    dead one's, ids missing on the target). Replay passes are also bounded in time, so a
    pass cannot outlive the side's replay lease."""
    require_module("chromadb")
    require_module("prometheus_client")
    from vecmigrate.live.router import MigrationRouter

    source, inner = _chroma_pair(tmp_path)
    target = _SlowWrites(inner)
    store = _dual_write_state(tmp_path)
    kw: dict[str, Any] = {"stats_interval": 0.1, "alive_ttl": 0.5, "replay_interval": 0.02}
    router = MigrationRouter(source, target, "docs", store, **kw)  # type: ignore[arg-type]
    other = MigrationRouter(source, target, "docs", store, start=False, **kw)  # type: ignore[arg-type]
    try:
        target.delay = 1.5  # the replayer's next engine call takes 3 heartbeat TTLs
        router.upsert(_batch(["a"], "v1"))
        deadline = time.monotonic() + 1.4
        while time.monotonic() < deadline:
            assert other._writer_alive(router.instance), "a live instance looked dead"
            time.sleep(0.05)
        target.delay = 0.0
        assert router.drain(10)
        assert _docs(inner, ["a"]) == {"a": "a v1"}
    finally:
        router.close()
        other.close()


class _ResolvedFirst(Outage):
    """Before the primary write, another instance resolves the writer's held entry (it took
    the writer for dead: a stalled process whose heartbeat lapsed)."""

    other: Any = None

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        if self.other is not None:
            entry = self.other.state.outbox.held(name, 0)[0]
            ids = entry.batch().column("id").to_pylist()
            assert self.other._resolve(entry.seq, "target", ids)  # from the source: "v0"
            self.other = None
        self.inner.upsert(name, batch)


def test_a_live_writers_entry_resolved_by_another_instance_is_queued_again(
    tmp_path: Path,
) -> None:
    """If another instance resolves a live writer's held entry (a sync of the primary's
    value, read before the write lands), the writer finds its entry no longer held when it
    releases it and queues the primary's value again: both sides end with its write."""
    require_module("chromadb")
    require_module("prometheus_client")
    from vecmigrate.live.router import MigrationRouter

    inner, target = _chroma_pair(tmp_path)
    source = _ResolvedFirst(inner)
    store = _dual_write_state(tmp_path)
    kw: dict[str, Any] = {"start": False}
    writer = MigrationRouter(source, target, "docs", store, **kw)  # type: ignore[arg-type]
    other = MigrationRouter(source, target, "docs", store, **kw)  # type: ignore[arg-type]
    try:
        writer.upsert(_batch(["a"], "v0"))
        writer._replay_side("target", block=True)
        source.other = other
        writer.upsert(_batch(["a"], "v1"))
        writer._replay_side("target", block=True)
        assert (_docs(inner, ["a"]), _docs(target, ["a"])) == ({"a": "a v1"}, {"a": "a v1"})
    finally:
        writer.close()
        other.close()


def test_a_replay_pass_ends_within_its_time_budget(tmp_path: Path) -> None:
    """Under steady writes the outbox never empties: a pass stops after ``max_seconds``
    (the caller's lease must outlast it) with what it applied so far applied."""
    require_module("chromadb")
    _, inner = _chroma_pair(tmp_path)
    target = _SlowWrites(inner)
    target.delay = 0.1
    store = open_state(f"sqlite:///{tmp_path}/state.db")
    for i in range(20):
        payload = encode_batch(_batch([f"id{i}"], "v1"))
        store.outbox.append("docs", "target", "upsert", payload)
    started = time.monotonic()
    result = replay(
        store.outbox, "docs", "target", target, "docs", SCHEMA, max_seconds=0.25, window=2
    )  # type: ignore[arg-type]
    took = time.monotonic() - started
    assert 0 < result.applied < 20 and took < 1.0, (result, took)
    assert len(store.outbox.pending("docs", "target", limit=100)) == 20 - result.applied


class _Jitter(Outage):
    """Writes reach the engine after 0-4 ms, as over a network: requests of two
    instances overtake each other."""

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        time.sleep(random.random() * 0.004)
        self.inner.upsert(name, batch)

    def delete(self, name: str, ids: Any) -> None:
        time.sleep(random.random() * 0.004)
        self.inner.delete(name, ids)


@pytest.mark.parametrize("steps", [1, 4])  # dual-write (source primary), target-primary
def test_instances_writing_the_same_ids_leave_both_sides_equal(tmp_path: Path, steps: int) -> None:
    """Four router instances (own ids, own locks) write 8 hot ids at random at once; after
    the outbox drains, both sides hold the same value for every id."""
    require_module("chromadb")
    require_module("prometheus_client")
    from vecmigrate.live.router import MigrationRouter

    source = _Jitter(connect(f"chroma://{tmp_path}/src"))
    target = _Jitter(connect(f"chroma://{tmp_path}/tgt"))
    source.create(SCHEMA)
    target.create(SCHEMA)
    state = open_state(f"sqlite://{tmp_path}/state.db")
    for _ in range(steps):
        s = state.get("docs")
        pct = 10.0 if s.phase is Phase.SHADOW_READ else None
        state.transition("docs", s, next_state(s, percent=pct), actor="t", action="advance")
    routers = [
        MigrationRouter(source, target, "docs", state, state_ttl=0, replay_interval=0.01)
        for _ in range(4)
    ]
    hot = [f"h{i}" for i in range(8)]
    rounds = threading.Barrier(4, timeout=60)

    def writer(n: int) -> None:
        rng, shared = random.Random(n), random.Random(0)
        for k in range(25):  # each round, every instance writes the same ids at once
            ids = shared.sample(hot, shared.randint(1, 3))
            delete = shared.random() < 0.15 and n % 2 == 0
            rounds.wait()
            time.sleep(rng.random() * 0.002)
            for _ in range(50):  # an application retries a transient failure
                try:
                    if delete:
                        routers[n].delete(ids)
                    else:
                        routers[n].upsert(_batch(ids, f"w{n}-{k}"))
                    break
                except TransientError:
                    time.sleep(0.01)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.drain(30) for r in routers)
    assert _docs(source.inner, hot) == _docs(target.inner, hot)
    for r in routers:
        r.close()
    state.close()


def test_data_gate_counts_only_ids_that_stay_different(tmp_path: Path) -> None:
    """Ids a scan under writes reported (in flight, or skipped by a shifted offset) are
    read again by id: equal ones drop out, ids that really differ stay."""
    require_module("chromadb")
    from vecmigrate.live.drift import Drift, _settle

    source, target = _chroma_pair(tmp_path)
    source.upsert("docs", _batch(["same", "lost", "edited"], "v1"))
    target.upsert("docs", _batch(["same", "edited", "stray"], "v1"))
    target.upsert("docs", _batch(["edited"], "v2"))
    scanned = Drift(3, 3, missing=["same", "lost"], extra=["stray"], changed=["edited"])
    settled = _settle(scanned, source, target, "docs", "docs", pause=0.0)
    assert (settled.missing, settled.extra, settled.changed) == (["lost"], ["stray"], ["edited"])
    assert "document" in settled.sample_fields["edited"]


def test_an_id_the_application_keeps_rewriting_is_in_flight_not_different(
    tmp_path: Path,
) -> None:
    """A hot id rewritten on the source between every re-read (its writes still on their
    way to the target) does not count; one the source holds unchanged while the target
    differs does."""
    require_module("chromadb")
    import threading

    from vecmigrate.verify.diff import persistent_differences

    source, target = _chroma_pair(tmp_path)
    source.upsert("docs", _batch(["hot", "stale"], "v1"))
    target.upsert("docs", _batch(["hot", "stale"], "v0"))
    stop = threading.Event()

    def writer() -> None:
        n = 2
        while not stop.is_set():
            source.upsert("docs", _batch(["hot"], f"v{n}"))
            n += 1
            time.sleep(0.02)

    t = threading.Thread(target=writer)
    t.start()
    try:
        kept = persistent_differences(source, target, "docs", ["hot", "stale"], pause=0.2)
    finally:
        stop.set()
        t.join()
    assert list(kept) == ["stale"] and "document" in kept["stale"]


def test_data_gate_treats_ids_queued_in_the_outbox_as_in_flight(tmp_path: Path) -> None:
    """An id that differs while its write waits in the outbox for the lagging side is in
    flight (the outbox gate judges the lag); the same difference with nothing queued
    fails the gate."""
    require_module("chromadb")
    from vecmigrate.live.cutover_gates import GateConfig, evaluate_gates
    from vecmigrate.live.outbox import encode_batch

    source, target = _chroma_pair(tmp_path)
    source.upsert("docs", _batch(["a", "b"], "v2"))
    target.upsert("docs", _batch(["a", "b"], "v1"))
    state = open_state(f"sqlite://{tmp_path}/state.db")
    s = state.get("docs")
    state.transition("docs", s, next_state(s), actor="t", action="advance")
    cfg = GateConfig(max_diff=0, skip=frozenset({"outbox", "verify", "shadow"}))

    def data_gate() -> Any:
        now = state.get("docs")
        results = evaluate_gates(state, "docs", now, source=source, target=target, config=cfg)
        return next(r for r in results if r.gate == "data")

    failed = data_gate()
    assert not failed.passed and failed.actual["changed"] == 2
    state.outbox.append("docs", "target", "upsert", encode_batch(_batch(["a"], "v2")))
    gate = data_gate()
    assert not gate.passed and gate.actual["changed"] == 1  # b: nothing on its way
    state.outbox.append("docs", "target", "upsert", encode_batch(_batch(["b"], "v2")))
    assert data_gate().passed
    state.close()


class _RacedReads(Outage):
    """Its first ``races`` searches fail as a scan raced by a write does (transiently)."""

    races = 2

    def search(self, name: str, vectors: Any, k: int, **kw: Any) -> Any:
        if self.races:
            self.races -= 1
            raise TransientError("injected: a concurrent write raced the read")
        return self.inner.search(name, vectors, k, **kw)


def test_a_read_with_no_side_to_fall_back_to_is_retried_when_transient(tmp_path: Path) -> None:
    """In source-only nothing can answer for the source: a search raced by a write is
    asked again instead of failing the application's request."""
    require_module("chromadb")
    require_module("prometheus_client")
    from vecmigrate.live.router import READ_RETRY, MigrationRouter

    source = _RacedReads(connect(f"chroma://{tmp_path}/src"))
    target = connect(f"chroma://{tmp_path}/tgt")
    source.create(SCHEMA)
    target.create(SCHEMA)
    source.upsert("docs", _batch(["a", "b"], "v1"))
    state = open_state(f"sqlite://{tmp_path}/state.db")
    router = MigrationRouter(source, target, "docs", state, state_ttl=0, start=False)  # type: ignore[arg-type]
    ids, _ = router.search(np.ones((1, 4), np.float32), 2)
    assert sorted(ids[0]) == ["a", "b"] and source.races == 0
    source.races = READ_RETRY.attempts  # past the budget: the application sees the error
    with pytest.raises(TransientError, match="still failing"):
        router.search(np.ones((1, 4), np.float32), 2)
    router.close()
    state.close()


class _Approximate(Outage):
    """An index that misses about ``miss`` of the true neighbours (replaced by far ids)."""

    miss = 0.3

    def search(self, name: str, vectors: Any, k: int, **kw: Any) -> Any:
        ids, scores = self.inner.search(name, vectors, k, **kw)
        rng = random.Random(len(ids[0]) + int(float(np.asarray(vectors).sum()) * 1000))
        far = [f"r{i}" for i in range(1500, 2000)]
        return [
            [rng.choice(far) if rng.random() < self.miss else i for i in row] for row in ids
        ], scores


@pytest.mark.parametrize("worse", ["source", "target"])
def test_shadow_gate_judges_recall_against_exact_ground_truth(tmp_path: Path, worse: str) -> None:
    """Overlap with an approximate source says nothing about the target: a target that finds
    the true neighbours more often passes although it overlaps little; a worse one fails."""
    require_module("chromadb")
    require_module("prometheus_client")
    from vecmigrate.live import GateConfig, GateFailedError, advance
    from vecmigrate.live.router import MigrationRouter

    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(2000, 4)).astype(np.float32)
    ids = [f"r{i}" for i in range(2000)]
    batch = build_batch(
        SCHEMA, ids, {"vector": vectors}, documents=ids, metadata=[{"genre": "a"}] * 2000
    )
    plain = {s: connect(f"chroma://{tmp_path}/{s}") for s in ("source", "target")}
    for conn in plain.values():
        conn.create(SCHEMA)
        conn.upsert("docs", batch)
    sides = {s: _Approximate(c) if s == worse else c for s, c in plain.items()}
    state = open_state(f"sqlite://{tmp_path}/state.db")
    for _ in range(2):  # dual-write, shadow-read
        s = state.get("docs")
        state.transition("docs", s, next_state(s), actor="t", action="advance")
    router = MigrationRouter(
        sides["source"], sides["target"], "docs", state, state_ttl=0, start=False, shadow_queue=500
    )  # type: ignore[arg-type]
    for q in rng.normal(size=(100, 4)).astype(np.float32):
        router.search(q[None, :], 10)
    router.shadow.close()
    router.publish()
    cfg = GateConfig(skip=frozenset({"data", "verify", "outbox"}))
    if worse == "source":
        _, results = advance(state, "docs", source=plain["source"], config=cfg, percent=10)
        shadow = {r.gate: r for r in results}["shadow"]
        assert shadow.actual["recall"]["target"] > shadow.actual["recall"]["source"] + 0.2
        assert shadow.actual["mean_overlap"] < 0.9  # the old overlap rule would have refused
    else:
        with pytest.raises(
            GateFailedError, match=r"recall@k on \d+ sampled shadow queries: target 0\.[0-7]"
        ):
            advance(state, "docs", source=plain["source"], config=cfg, percent=10)
    router.close()
    state.close()


def test_state_store_instances_and_sampled_queries(store: StateStore) -> None:
    """Per-instance routed phase versions, and capped sampled shadow queries, on every store."""
    from vecmigrate.live.state import SHADOW_QUERY_BATCHES

    name = f"c{uuid.uuid4().hex[:8]}"
    store.record_instance(name, "app-1", 3)
    store.record_instance(name, "app-2", 2)
    store.record_instance(name, "app-2", 3)
    seen = store.instances(name)
    assert {i: v for i, (v, _) in seen.items()} == {"app-1": 3, "app-2": 3}
    assert all(abs(t - time.time()) < 60 for _, t in seen.values())
    for n in range(SHADOW_QUERY_BATCHES + 5):
        store.record_shadow_queries(name, 7, f"batch-{n}".encode())
    kept = store.shadow_queries(name, 7)
    assert len(kept) == SHADOW_QUERY_BATCHES and kept[0] == b"batch-0"
    assert store.shadow_queries(name, 8) == []


def test_cutover_reconcile_applies_what_it_queues_without_a_router(tmp_path: Path) -> None:
    require_module("chromadb")
    from vecmigrate.live import reconcile_collection

    source, target = _chroma_pair(tmp_path)
    source.upsert("docs", _batch(["a", "b"], "v1"))
    target.upsert("docs", _batch(["a", "stray"], "v1"))
    state = _dual_write_state(tmp_path)
    result = reconcile_collection(state, "docs", source, target, wait=5)
    assert (result["queued"], result["applied"]) == (2, "applied")
    assert _docs(target, ["a", "b", "stray"]) == _docs(source, ["a", "b", "stray"])
    assert state.outbox.depth("docs")["target"].pending == 0
    state.close()
