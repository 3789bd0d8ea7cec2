"""State store + outbox in Redis: application instances on many hosts share one server.

``redis://[user@]host:6379/0?password=env:NAME[&tls=true][&prefix=vecmigrate:live]``
(``rediss://`` also turns TLS on). Every operation that reads and then writes is one Lua
script, so it is atomic on the server without client-side locks or WATCH retries:

* phase: a hash per collection; ``transition`` compares the version and sets the new
  phase and appends the audit event (a list of ``seq:json``) in one script;
* outbox: one hash per entry (``entry:SEQ``: collection, side, op, payload, created,
  attempts, held, dead), a global ``INCR`` sequence (entries are addressed by seq alone),
  and per (collection, side) sorted sets scored by seq for pending and dead entries,
  plus one per collection for held entries; append, release, complete and dead-letter
  move an entry between them atomically;
* leases: a key per (collection, side) set with ``PX`` - the server's clock expires it;
* shadow totals: a hash per (collection, phase version), one JSON field per instance.

Needs a single Redis (or a primary with replicas): the scripts derive keys from the
entries they read, which Redis Cluster does not allow.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from vecmigrate.errors import ConfigError, TransientError
from vecmigrate.live.outbox import Op, Outbox, OutboxDepth, OutboxEntry, oldest_age
from vecmigrate.live.phases import PhaseState, parse_phase
from vecmigrate.live.state import (
    SHADOW_QUERY_BATCHES,
    PhaseConflictError,
    PhaseEvent,
    ShadowTotals,
    StateStore,
)
from vecmigrate.uri import ConnectionURI

# KEYS: phase hash, events list, event counter. ARGV: expected version, phase, percent,
# new version, now, event json. Returns the event's seq, or -1 on a version conflict.
_TRANSITION = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if cur ~= tonumber(ARGV[1]) then return -1 end
redis.call('HSET', KEYS[1], 'phase', ARGV[2], 'canary_percent', ARGV[3],
           'version', ARGV[4], 'updated', ARGV[5])
local seq = redis.call('INCR', KEYS[3])
redis.call('RPUSH', KEYS[2], seq .. ':' .. ARGV[6])
return seq
"""

# KEYS: seq counter. ARGV: prefix, collection, side, op, payload, created, held.
_APPEND = """
local seq = redis.call('INCR', KEYS[1])
local p, c, side = ARGV[1], ARGV[2], ARGV[3]
redis.call('HSET', p .. ':entry:' .. seq, 'collection', c, 'side', side, 'op', ARGV[4],
           'payload', ARGV[5], 'created', ARGV[6], 'attempts', 0, 'held', ARGV[7], 'dead', 0)
redis.call('ZADD', p .. ':' .. c .. ':pending:' .. side, seq, seq)
if ARGV[7] == '1' then redis.call('ZADD', p .. ':' .. c .. ':held', seq, seq) end
local last = p .. ':' .. c .. ':last'
if tonumber(redis.call('GET', last) or '0') < seq then redis.call('SET', last, seq) end
return seq
"""

# ARGV: prefix, seq, mode ('ready' | 'rewrite' | 'retry' | 'dead'), then its arguments.
_ENTRY = """
local p, seq, mode = ARGV[1], ARGV[2], ARGV[3]
local key = p .. ':entry:' .. seq
local c = redis.call('HGET', key, 'collection')
if not c then return 0 end
local side = redis.call('HGET', key, 'side')
local base = p .. ':' .. c
if mode == 'ready' then
  if redis.call('HGET', key, 'held') ~= '1' then return 0 end
  redis.call('HSET', key, 'held', 0)
  redis.call('ZREM', base .. ':held', seq)
elseif mode == 'rewrite' then
  redis.call('HSET', key, 'op', ARGV[4], 'payload', ARGV[5], 'held', 0)
  redis.call('ZREM', base .. ':held', seq)
elseif mode == 'retry' then
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'last_error', ARGV[4])
elseif mode == 'dead' then
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'last_error', ARGV[4], 'dead', 1)
  redis.call('ZREM', base .. ':pending:' .. side, seq)
  redis.call('ZREM', base .. ':held', seq)
  redis.call('ZADD', base .. ':dead:' .. side, seq, seq)
end
return 1
"""

# ARGV: prefix, seq... Removes applied entries (one round trip for a replay window).
_COMPLETE = """
local p = ARGV[1]
for i = 2, #ARGV do
  local seq = ARGV[i]
  local key = p .. ':entry:' .. seq
  local f = redis.call('HMGET', key, 'collection', 'side')
  if f[1] then
    local base = p .. ':' .. f[1]
    redis.call('ZREM', base .. ':pending:' .. f[2], seq)
    redis.call('ZREM', base .. ':dead:' .. f[2], seq)
    redis.call('ZREM', base .. ':held', seq)
    redis.call('DEL', key)
  end
end
return 1
"""

# KEYS: a sorted set of seqs. ARGV: prefix, limit. The first entries with their fields,
# read in one step so an entry is never seen half-rewritten.
_RANGE = """
local out = {}
for _, seq in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  local f = redis.call('HMGET', ARGV[1] .. ':entry:' .. seq,
                       'op', 'payload', 'created', 'attempts', 'held', 'side')
  if f[1] then table.insert(out, {seq, f[1], f[2], f[3], f[4], f[5], f[6]}) end
end
return out
"""

# KEYS: lease key. ARGV: owner, ttl in ms. Take it when free or already ours (renewal).
_LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStateStore(StateStore, Outbox):
    """Phase, audit trail, shadow totals and the outbox in one Redis database."""

    def __init__(self, uri: ConnectionURI) -> None:
        try:
            import redis
        except ImportError:
            raise ConfigError(
                "the Redis state store needs the redis client", hint="pip install 'redis>=5'"
            ) from None
        db = uri.path.strip("/") or "0"
        if not db.isdigit():
            raise ConfigError(f"{uri}: the path is the database number, e.g. /0")
        self.prefix = uri.params.get("prefix", "vecmigrate:live")
        self._redis = redis
        self.client = redis.Redis(
            host=uri.host or "127.0.0.1",
            port=uri.port or 6379,
            db=int(db),
            username=uri.user,
            password=uri.secret("password"),
            ssl=uri.scheme == "rediss" or uri.params.get("tls", "").lower() in ("1", "true"),
            socket_timeout=float(uri.params.get("timeout", 30)),
            socket_connect_timeout=10,
        )
        self._where = str(uri)  # redacted: never holds the password
        self._scripts = {
            name: self.client.register_script(src)
            for name, src in (
                ("transition", _TRANSITION),
                ("append", _APPEND),
                ("entry", _ENTRY),
                ("complete", _COMPLETE),
                ("range", _RANGE),
                ("lease", _LEASE),
                ("release", _RELEASE),
            )
        }
        self._call(self.client.ping)

    def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        """Run one client call; connection trouble becomes a TransientError (retry later)."""
        try:
            return fn(*args, **kw)
        except (self._redis.ConnectionError, self._redis.TimeoutError) as exc:
            raise TransientError(f"Redis state store {self._where}: {exc}") from None

    def _run(self, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return self._call(self._scripts[script], keys=list(keys), args=list(args))

    def _key(self, collection: str, *parts: str) -> str:
        return ":".join((self.prefix, collection, *parts))

    def close(self) -> None:
        self.client.close()

    # -- phase -----------------------------------------------------------------------------
    @property
    def outbox(self) -> Outbox:
        return self

    def get(self, collection: str) -> PhaseState:
        phase, pct, version = self._call(
            self.client.hmget, self._key(collection, "phase"), "phase", "canary_percent", "version"
        )
        if phase is None:
            return PhaseState()
        return PhaseState(parse_phase(_text(phase)), float(pct), int(version))

    def transition(
        self,
        collection: str,
        expected: PhaseState,
        new: PhaseState,
        *,
        actor: str,
        action: str,
        gates: list[dict[str, Any]] | None = None,
        note: str | None = None,
    ) -> PhaseEvent:
        now = time.time()
        before = PhaseState(expected.phase, expected.canary_percent, new.version - 1)
        body = {
            "at": now,
            "actor": actor,
            "action": action,
            "from": [before.phase.value, before.canary_percent],
            "to": [new.phase.value, new.canary_percent, new.version],
            "gates": gates or [],
            "note": note,
        }
        seq = int(
            self._run(
                "transition",
                [
                    self._key(collection, "phase"),
                    self._key(collection, "events"),
                    self._key(collection, "events-seq"),
                ],
                [
                    expected.version,
                    new.phase.value,
                    repr(float(new.canary_percent)),
                    new.version,
                    repr(now),
                    json.dumps(body, default=str),
                ],
            )
        )
        if seq < 0:
            raise PhaseConflictError(
                f"the phase of {collection!r} changed since version {expected.version}",
                hint="run `vecmigrate cutover status` and retry",
            )
        return PhaseEvent(
            seq=seq,
            collection=collection,
            at=now,
            actor=actor,
            action=action,
            before=before,
            after=new,
            gates=list(gates or []),
            note=note,
        )

    def events(self, collection: str, limit: int = 50) -> list[PhaseEvent]:
        out = []
        for raw in self._call(self.client.lrange, self._key(collection, "events"), -limit, -1):
            seq, _, text = _text(raw).partition(":")
            e = json.loads(text)
            (fp, fpct), (tp, tpct, version) = e["from"], e["to"]
            out.append(
                PhaseEvent(
                    seq=int(seq),
                    collection=collection,
                    at=float(e["at"]),
                    actor=e["actor"],
                    action=e["action"],
                    before=PhaseState(parse_phase(fp), float(fpct), int(version) - 1),
                    after=PhaseState(parse_phase(tp), float(tpct), int(version)),
                    gates=e["gates"],
                    note=e["note"],
                )
            )
        return out

    # -- shadow totals -----------------------------------------------------------------------
    def record_shadow(
        self, collection: str, instance: str, version: int, totals: ShadowTotals
    ) -> None:
        body = {**vars(totals), "updated": time.time()}
        self._call(
            self.client.hset,
            self._key(collection, "shadow", str(version)),
            instance,
            json.dumps(body),
        )

    def shadow_totals(self, collection: str, version: int) -> ShadowTotals:
        total = ShadowTotals()
        for raw in self._call(self.client.hvals, self._key(collection, "shadow", str(version))):
            d = json.loads(raw)
            d.pop("updated", None)
            total.add(ShadowTotals(**d))
        return total

    def record_instance(self, collection: str, instance: str, version: int) -> None:
        body = json.dumps({"version": version, "updated": time.time()})
        self._call(self.client.hset, self._key(collection, "instances"), instance, body)

    def instances(self, collection: str) -> dict[str, tuple[int, float]]:
        raw = self._call(self.client.hgetall, self._key(collection, "instances"))
        out = {}
        for k, v in raw.items():
            d = json.loads(v)
            out[k.decode() if isinstance(k, bytes) else str(k)] = (
                int(d["version"]),
                float(d["updated"]),
            )
        return out

    def record_shadow_queries(self, collection: str, version: int, payload: bytes) -> None:
        key = self._key(collection, "shadow-queries", str(version))
        if self._call(self.client.llen, key) < SHADOW_QUERY_BATCHES:
            self._call(self.client.rpush, key, payload)

    def shadow_queries(self, collection: str, version: int) -> list[bytes]:
        key = self._key(collection, "shadow-queries", str(version))
        return [bytes(b) for b in self._call(self.client.lrange, key, 0, -1)]

    # -- outbox ------------------------------------------------------------------------------
    def append(
        self, collection: str, side: str, op: Op, payload: bytes, *, held: bool = False
    ) -> int:
        args = [self.prefix, collection, side, op, payload, repr(time.time()), int(held)]
        return int(self._run("append", [f"{self.prefix}:outbox-seq"], args))

    def _entries(self, collection: str, key: str, limit: int) -> list[OutboxEntry]:
        rows = self._run("range", [key], [self.prefix, limit])
        return [
            OutboxEntry(
                seq=int(seq),
                collection=collection,
                side=_text(side),
                op=_text(op),  # type: ignore[arg-type]
                payload=bytes(payload),
                created=float(created),
                attempts=int(attempts),
                held=_text(held) == "1",
            )
            for seq, op, payload, created, attempts, held, side in rows
        ]

    def pending(self, collection: str, side: str, limit: int = 100) -> list[OutboxEntry]:
        return self._entries(collection, self._key(collection, "pending", side), limit)

    def held(self, collection: str, older_than: float) -> list[OutboxEntry]:
        cutoff = time.time() - older_than
        entries = self._entries(collection, self._key(collection, "held"), 1_000_000)
        return [e for e in entries if e.created < cutoff]

    def _entry(self, seq: int, mode: str, *args: Any) -> bool:
        return bool(int(self._run("entry", [], [self.prefix, seq, mode, *args])))

    def mark_ready(self, seq: int) -> bool:
        return self._entry(seq, "ready")

    def rewrite(self, seq: int, op: Op, payload: bytes) -> None:
        self._entry(seq, "rewrite", op, payload)

    def has_pending(self, collection: str, side: str) -> bool:
        return bool(self._call(self.client.zcard, self._key(collection, "pending", side)))

    def last_seq(self, collection: str) -> int:
        return int(self._call(self.client.get, self._key(collection, "last")) or 0)

    def complete(self, seqs: Sequence[int]) -> None:
        if seqs:
            self._run("complete", [], [self.prefix, *seqs])

    def retry_later(self, seq: int, error: str) -> None:
        self._entry(seq, "retry", error[:2000])

    def dead_letter(self, seq: int, error: str) -> None:
        self._entry(seq, "dead", error[:2000])

    def depth(self, collection: str) -> dict[str, OutboxDepth]:
        out = {}
        for side in ("source", "target"):
            head = self._entries(collection, self._key(collection, "pending", side), 1)
            pipe = self.client.pipeline(transaction=True)
            pipe.zcard(self._key(collection, "pending", side))
            pipe.zcard(self._key(collection, "dead", side))
            pending, dead = self._call(pipe.execute)
            out[side] = OutboxDepth(
                int(pending), oldest_age(head[0].created if head else None), int(dead)
            )
        return out

    def acquire_lease(self, collection: str, side: str, owner: str, ttl: float) -> bool:
        ms = max(1, int(ttl * 1000))
        return bool(self._run("lease", [self._key(collection, "lease", side)], [owner, ms]))

    def release_lease(self, collection: str, side: str, owner: str) -> None:
        self._run("release", [self._key(collection, "lease", side)], [owner])

    def lease_holder(self, collection: str, side: str) -> str | None:
        owner = self._call(self.client.get, self._key(collection, "lease", side))
        return owner.decode() if isinstance(owner, bytes) else owner
