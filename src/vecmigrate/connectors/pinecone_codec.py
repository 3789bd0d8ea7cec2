"""Pinecone's data mapping, without the client: index names, ids, metadata, filters and
the stored schema. ``vecmigrate.connectors.pinecone`` documents what each choice keeps."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import zlib
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa

from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import Bool, Cond, Node
from vecmigrate.model import CollectionSchema, MetadataField

DOC_KEY = "_vecmigrate_document"
EXTRA_KEY = "_vecmigrate_extra"
SCHEMA_TAG = "vecmigrate-schema"
ID_ESCAPE = "~u:"
MAX_METADATA_BYTES = 40 * 1024
_VALID_INDEX = re.compile(r"^[a-z0-9]([a-z0-9-]{0,43}[a-z0-9])?$")
_NEGATE = {
    "$eq": "$ne", "$ne": "$eq", "$in": "$nin", "$nin": "$in",
    "$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt",
}  # fmt: skip


def index_name(collection: str) -> str:
    """The Pinecone index that holds ``collection`` (valid names are kept as they are)."""
    if _VALID_INDEX.match(collection):
        return collection
    base = re.sub(r"[^a-z0-9]+", "-", collection.lower()).strip("-")[:36].strip("-") or "c"
    return f"{base}-{hashlib.sha256(collection.encode()).hexdigest()[:8]}"


def index_url(described_host: str, control_plane: str | None) -> str:
    """The URL to open an index at, with an explicit scheme: the control plane's.

    The API describes an index by a bare host, which the client reads as https (its
    index model even writes ``https://`` in). Against a plain-http control plane
    (Pinecone Local, a test double) the indexes are plain http too, so the scheme is
    always decided here, from the connection URI, never left to the client's default."""
    bare = described_host.strip()
    for prefix in ("https://", "http://"):
        if bare.lower().startswith(prefix):
            bare = bare[len(prefix) :]
            break
    plain = (control_plane or "").strip().lower().startswith("http://")
    return ("http://" if plain else "https://") + bare


def to_pinecone_id(value: Any) -> str:
    """Record id as a Pinecone id: ASCII kept, anything else escaped reversibly."""
    text = str(value)
    if text.isascii() and "\x00" not in text and not text.startswith(ID_ESCAPE):
        return text
    return ID_ESCAPE + quote(text, safe="")


def from_pinecone_id(pid: str) -> str:
    """Inverse of ``to_pinecone_id``."""
    return unquote(pid[len(ID_ESCAPE) :]) if pid.startswith(ID_ESCAPE) else pid


def _list_token(field: MetadataField, value: Any) -> str:
    """A list<int64>/list<float64> element as the decimal text it is stored as."""
    if field.type == "list<int64>" and float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def compile_filter(node: Node, negate: bool = False) -> dict[str, Any]:
    """A portable filter as Pinecone's, keeping the portable semantics (see filters.py).

    ``$not`` is pushed down to the leaves; a negated comparison is "missing OR the opposite
    comparison", and ``$ne``/``$nin`` require the field to exist, because Pinecone leaves
    undocumented whether they match records lacking it.
    """
    if isinstance(node, Bool):
        if node.op == "$not":
            return compile_filter(node.children[0], not negate)
        op = node.op if not negate else ("$or" if node.op == "$and" else "$and")
        parts = [compile_filter(c, negate) for c in node.children]
        return parts[0] if len(parts) == 1 else {op: parts}
    return _leaf(node, negate)


def _leaf(c: Cond, negate: bool) -> dict[str, Any]:
    key, f = c.field.name, c.field
    if c.op == "$exists":
        return {key: {"$exists": bool(c.value) != negate}}
    op = _NEGATE[c.op] if negate else c.op
    value = c.value
    if f.type in ("list<int64>", "list<float64>"):
        value = (
            [_list_token(f, v) for v in value] if isinstance(value, list) else _list_token(f, value)
        )
    if f.type.startswith("list<") and op == "$ne":  # "does not contain", as Pinecone spells it
        op, value = "$nin", [value]
    cond = {key: {op: value}}
    if negate:
        return {"$or": [{key: {"$exists": False}}, cond]}
    if op in ("$ne", "$nin"):
        return {"$and": [{key: {"$exists": True}}, cond]}
    return cond


# -- schema in tags -------------------------------------------------------------------------
def schema_tags(schema: CollectionSchema) -> dict[str, str] | None:
    """The schema as up to 18 tags of 120 characters, or None when it does not fit."""
    blob = base64.b64encode(zlib.compress(schema.to_json().encode(), 9)).decode()
    chunks = [blob[i : i + 120] for i in range(0, len(blob), 120)]
    if len(chunks) > 18:
        return None
    return {f"{SCHEMA_TAG}-{i:02d}": c for i, c in enumerate(chunks)}


def schema_from_tags(tags: dict[str, str]) -> CollectionSchema | None:
    keys = sorted(k for k in tags if k.startswith(f"{SCHEMA_TAG}-"))
    if not keys:
        return None
    blob = "".join(tags[k] for k in keys)
    try:
        text = zlib.decompress(base64.b64decode(blob)).decode()
    except (ValueError, zlib.error) as exc:  # binascii.Error and UnicodeError are ValueErrors
        raise ConfigError(f"the vecmigrate schema in the index tags is unreadable: {exc}") from None
    return CollectionSchema.from_json(text)


# -- metadata codec -------------------------------------------------------------------------
def decode_value(f: MetadataField | None, value: Any) -> Any:
    """A stored value back to its portable type (left as is when it does not parse)."""
    if f is None:
        return value
    try:
        if f.type == "int64" and isinstance(value, float) and value.is_integer():
            return int(value)
        if f.type == "list<int64>" and isinstance(value, list):
            return [int(x) for x in value]
        if f.type == "list<float64>" and isinstance(value, list):
            return [float(x) for x in value]
        if f.type == "json" and isinstance(value, str):
            return json.loads(value)
    except ValueError:
        return value
    return value


def pop_extra(md: dict[str, Any]) -> dict[str, Any]:
    """Pop the JSON object vecmigrate keeps under EXTRA_KEY (another writer's value under
    that key stays an ordinary key)."""
    raw = md.get(EXTRA_KEY)
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return {}
    del md[EXTRA_KEY]
    return value


def _encode_value(f: MetadataField, value: Any, name: str, rid: Any) -> Any:
    if f.type == "int64" and abs(value) > 2**53:
        raise DataError(
            "Pinecone stores numbers as float64: this int would not round-trip",
            collection=name, record_id=rid, field=f.name,
        )  # fmt: skip
    if f.type == "float64" and not math.isfinite(value):
        raise DataError(
            "Pinecone metadata numbers must be finite", collection=name, record_id=rid, field=f.name
        )
    if f.type in ("list<int64>", "list<float64>"):
        return [_list_token(f, x) for x in value]
    return value  # str, bool, list<string>, and json (already JSON text)


def encode_metadata(
    batch: pa.RecordBatch, schema: CollectionSchema, doc_key: str, name: str, ids: list[Any]
) -> list[tuple[dict[str, Any], int]]:
    """Per record: the Pinecone metadata and its JSON size; DataError over 40 KB."""
    n = batch.num_rows
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    names = batch.schema.names
    if "metadata" in names:
        struct = batch.column(names.index("metadata"))
        by_name = {f.name: f for f in schema.metadata}
        for child_field, child in zip(struct.type, struct.flatten(), strict=True):
            f = by_name[child_field.name]
            for i, v in enumerate(child.to_pylist()):
                if v is not None:
                    rows[i][f.name] = _encode_value(f, v, name, ids[i])
    if "metadata_extra" in names:
        for i, raw in enumerate(batch.column(names.index("metadata_extra")).to_pylist()):
            if raw:
                rows[i][EXTRA_KEY] = raw
    if schema.has_document and "document" in names:
        for i, doc in enumerate(batch.column(names.index("document")).to_pylist()):
            if doc is not None:
                rows[i][doc_key] = doc
    out = []
    for i, md in enumerate(rows):
        size = len(json.dumps(md, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_METADATA_BYTES:
            big = max(md, key=lambda k: len(json.dumps(md[k], ensure_ascii=False).encode()))
            where = {doc_key: "document", EXTRA_KEY: "metadata_extra"}.get(big, big)
            raise DataError(
                f"metadata is {size:,} bytes; Pinecone stores at most {MAX_METADATA_BYTES:,} "
                f"bytes per record ({where!r} is the largest part)",
                collection=name, record_id=ids[i], field=where,
                hint="shorten or drop that field with a mapping",
            )  # fmt: skip
        out.append((md, size))
    return out
