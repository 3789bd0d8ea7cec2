"""Finding documents of an index another tool made, used only by ``connectors/redis``:
sampling them to describe the index, the key of each record when its id lives in a
field (``?id_field=``) rather than in the key, and which filters the index can answer
only case-folded (TAG fields without CASESENSITIVE, as LangChain and redisvl make them)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vecmigrate.connectors.redis._client import execute as _exec
from vecmigrate.connectors.redis._filters import _Query, id_query
from vecmigrate.connectors.redis._schema import Layout, match_pattern, pairs
from vecmigrate.filters import Bool, Node
from vecmigrate.model import CollectionSchema, IdType

if TYPE_CHECKING:
    from vecmigrate.connectors.redis import RedisConnector


def sample(
    conn: RedisConnector, layout: Layout, n: int = 200
) -> list[tuple[bytes, dict[str, Any]]]:
    """Up to ``n`` (key, document) pairs under the first prefix: JSON objects, or the
    fields of hashes with their raw values."""
    keys: list[bytes] = []
    pattern = match_pattern(layout.prefixes[0])
    for _, page in conn._scan_from("sampling", pattern, 0, "TYPE", layout.key_type):
        keys += page
        if len(keys) >= n:
            break
    keys = keys[:n]
    if not keys:
        return []
    if layout.json:
        docs = [json.loads(d) for d in conn._cmd("sampling", "JSON.MGET", *keys, "$")]
        got = [(k, d[0]) for k, d in zip(keys, docs, strict=True) if d]
    else:
        pipe = conn.client.pipeline(transaction=False)
        for key in keys:
            _exec(pipe, "HGETALL", key)
        replies = conn._execute(pipe, "", "sampling")
        got = [(k, pairs(h)) for k, h in zip(keys, replies, strict=True)]
    return [(k, d) for k, d in got if isinstance(d, dict)]


def key_of(layout: Layout, schema: CollectionSchema, rid: Any) -> bytes:
    """``<id_prefix><id>``: where a record is (or is written) when nothing else says."""
    return (layout.id_prefix + str(int(rid) if schema.id_type is IdType.INT else rid)).encode()


def record_keys(
    conn: RedisConnector, name: str, schema: CollectionSchema, layout: Layout, ids: Sequence[Any]
) -> list[bytes]:
    """The key of each record: ``key_of``, or where an indexed id field says the record
    is (a record not found there gets ``key_of``)."""
    found: dict[str, bytes] = {}
    if layout.id_attr is not None and layout.id_field is not None:
        attr, kind = layout.id_attr
        wanted = [i for i in ids if kind == "TAG" or isinstance(i, int | float)]
        for start in range(0, len(wanted), 100):
            chunk = list(wanted[start : start + 100])
            q = _Query()
            query = id_query(attr, kind, chunk, q)
            keys = conn._search(name, query, q.params, "NOCONTENT", "LIMIT", 0, 4 * len(chunk))
            values = id_values(conn, name, layout, keys[1:])
            for key, value in zip(keys[1:], values, strict=True):
                found.setdefault(str(value), key)
    return [found.get(str(i)) or key_of(layout, schema, i) for i in ids]


def id_values(conn: RedisConnector, name: str, layout: Layout, keys: list[bytes]) -> list[Any]:
    """What the id field (``?id_field=``) of each record holds (None: nothing)."""
    if not keys:
        return []
    pipe = conn.client.pipeline(transaction=False)
    for key in keys:
        if layout.json:
            _exec(pipe, "JSON.GET", key, f"$.{layout.id_field}")
        else:
            _exec(pipe, "HGET", key, layout.id_field)
    out = []
    for raw in conn._execute(pipe, name, f"reading ids of {name!r}"):
        got = json.loads(raw) if layout.json and raw else [raw]
        value = got[0] if got else None
        out.append(value.decode() if isinstance(value, bytes) else value)
    return out


def case_superset(node: Node, layout: Layout) -> Layout | None:
    """For a framework's index (``?layout=``) and a filter using TAG fields created
    without CASESENSITIVE only in equalities
    (``$eq`` / ``$in``, under no negation): ``layout`` with those fields taken as they
    are, whose query then matches a superset of the records (``News`` also finds
    ``news``) that the caller narrows by evaluating the filter exactly. None when the
    filter uses no such field, or uses one where a superset would not be one."""
    if layout.framework is None:
        # Other tools' indexes refuse such filters (``_filters``); a framework's default
        # TAGs are case-folded, and its users filter on them, so they are narrowed.
        return None
    uses, exact = _case_folded(node, layout, negated=False)
    if not uses or not exact:
        return None
    return dataclasses.replace(layout, nocase=set())


def _case_folded(node: Node, layout: Layout, *, negated: bool) -> tuple[bool, bool]:
    """(whether ``node`` filters a case-folded TAG, whether only as a positive equality)."""
    if isinstance(node, Bool):
        flip = negated != (node.op == "$not")
        found = [_case_folded(c, layout, negated=flip) for c in node.children]
        return any(u for u, _ in found), all(e for _, e in found)
    attr = layout.attrs.get(node.field.name, ("", ""))[0]
    if attr not in layout.nocase or node.op == "$exists":
        return False, True
    return True, not negated and node.op in ("$eq", "$in")
