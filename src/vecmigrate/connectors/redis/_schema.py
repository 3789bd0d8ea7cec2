"""Where a Redis collection's pieces live, used only by ``connectors/redis.py``.

Layout of a collection ``docs`` that vecmigrate creates:

* one HASH per record at key ``docs:<id>`` (int ids as decimal text); collection names
  containing ``:`` are refused, so no collection's key prefix covers another's;
* hash fields: ``document``; one field per vector holding its FLOAT32 bytes (little
  endian, as RediSearch reads them); one field per metadata value (nulls are absent);
  ``__vm_extra`` with the JSON of values that did not fit their field's type;
* the index ``docs`` (``FT.CREATE docs ON HASH PREFIX 1 docs: ...``): VECTOR HNSW/FLAT
  (TYPE FLOAT32, DIM, DISTANCE_METRIC COSINE/IP/L2, M, EF_CONSTRUCTION) per vector;
  strings, bools and lists as TAG (separator U+001F, CASESENSITIVE, INDEXMISSING, plus
  INDEXEMPTY for strings), int/float as NUMERIC INDEXMISSING; json values not indexed;
* the vecmigrate CollectionSchema as JSON at ``vecmigrate:schema:docs``, so ``describe``
  round-trips exactly.

Indexes made by other tools are described from ``FT.INFO`` (``_infer``): over HASH
documents (NUMERIC read as float64, TAG/TEXT as string, fields the index does not name
kept in ``metadata_extra``) or over JSON documents (top-level members; types inferred from
a sample; written back whole with ``JSON.SET``). Filters on their TAG fields need
CASESENSITIVE, and ``$ne``/``$nin``/``$exists`` on TAG need INDEXMISSING, or are refused.

``Layout`` records these places (prefixes, hash fields, query attributes and their flags)
for both kinds, so reading, writing and filtering need not know which kind a collection is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vecmigrate.errors import ConfigError
from vecmigrate.model import (
    CollectionSchema,
    Metric,
)

SEP = "\x1f"
EXTRA = "__vm_extra"
SCHEMA_KEY = "vecmigrate:schema:"
_METRIC = {Metric.COSINE: "COSINE", Metric.DOT: "IP", Metric.L2: "L2"}
PORTABLE_METRIC = {v: k for k, v in _METRIC.items()}
_SAFE_ATTR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
JSON_TOP = re.compile(r"\$\.([A-Za-z_][A-Za-z0-9_]*)(\[\*\])?")  # $.name or $.name[*]
_ATTR_KEYS = frozenset(
    {"identifier", "attribute", "type", "algorithm", "data_type", "dim", "distance_metric",
     "M", "ef_construction", "ef_runtime", "epsilon", "SEPARATOR", "WEIGHT", "initial_cap"}
)  # fmt: skip


def attribute(name: str) -> str:
    """Query attribute for a hash field: its name, or a hex alias when it needs escaping."""
    return name if _SAFE_ATTR.fullmatch(name) else "__f_" + name.encode().hex()


def text(v: Any) -> str:
    """A reply element (bytes under RESP2) as str."""
    return v.decode() if isinstance(v, bytes) else str(v)


def pairs(raw: Any) -> dict[str, Any]:
    """A flat ``[key, value, ...]`` reply (FT.INFO, RESP2 HGETALL) or a dict, keyed by str."""
    items = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=False)
    return {text(k): v for k, v in items}


def match_pattern(prefix: str) -> str:
    """A SCAN MATCH pattern for every key starting with ``prefix`` (glob characters escaped)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"


@dataclass
class Layout:
    """Where a collection's pieces live in Redis (own collections: derived from the schema)."""

    prefixes: list[str]
    id_prefix: str
    doc_field: str | None
    fields: dict[str, str]  # metadata name -> hash field
    attrs: dict[str, tuple[str, str]]  # metadata name -> (query attribute, TAG/NUMERIC/TEXT)
    missing: set[str] = field(default_factory=set)  # attributes with INDEXMISSING
    nocase: set[str] = field(default_factory=set)  # TAG attributes without CASESENSITIVE
    vector_attrs: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (attr, algo)
    json: bool = False  # JSON documents (other tools' indexes) instead of hashes
    # Other tools' indexes: the field holding the record id (None: the key after
    # ``id_prefix``), its query attribute and kind when indexed (to find a record's key),
    # and fields not carried (vectors ``?vector_field=`` left out).
    id_field: str | None = None
    id_attr: tuple[str, str] | None = None
    skip: set[str] = field(default_factory=set)
    # ``?layout=langchain`` (``_frameworks``): the framework whose records these are, the
    # hash field of each vector (portable name -> field), the TAG separator of each hash
    # field indexed as TAG, the hash fields indexed as NUMERIC.
    framework: str | None = None
    vector_fields: dict[str, str] = field(default_factory=dict)
    separators: dict[str, str] = field(default_factory=dict)
    numeric: set[str] = field(default_factory=set)

    @property
    def key_type(self) -> str:
        """The SCAN TYPE of this collection's records."""
        return "ReJSON-RL" if self.json else "hash"


def own_layout(schema: CollectionSchema) -> Layout:
    """The layout of a collection vecmigrate created (see ``create_args``)."""
    kinds = {"int64": "NUMERIC", "float64": "NUMERIC", "json": ""}
    attrs = {m.name: (attribute(m.name), kinds.get(m.type, "TAG")) for m in schema.metadata}
    algo = {
        v.name: "FLAT" if v.index and v.index.kind in ("flat", "none") else "HNSW"
        for v in schema.vectors
    }
    return Layout(
        prefixes=[f"{schema.name}:"],
        id_prefix=f"{schema.name}:",
        doc_field="document" if schema.has_document else None,
        fields={m.name: m.name for m in schema.metadata},
        attrs=attrs,
        missing={a for a, k in attrs.values() if k},
        vector_attrs={v.name: (attribute(v.name), algo[v.name]) for v in schema.vectors},
    )


def check_creatable(schema: CollectionSchema) -> None:
    """Refuse a schema this layout cannot hold (ConfigError naming the collection)."""
    name = schema.name
    if ":" in name or not name:
        raise ConfigError(f"redis collection name {name!r} must be non-empty and without ':'")
    if schema.sparse or schema.namespaces is not None:
        raise ConfigError(f"redis collections here have no sparse vectors or namespaces ({name!r})")
    reserved = {"document", EXTRA} | {v.name for v in schema.vectors}
    clash = [m.name for m in schema.metadata if m.name in reserved]
    if clash:
        raise ConfigError(
            f"metadata fields {clash} clash with hash fields of {name!r}",
            hint="rename them in a mapping file",
        )


def create_args(schema: CollectionSchema) -> list[Any]:
    """The ``FT.CREATE`` command for a new collection (the layout ``own_layout`` reads)."""
    name = schema.name
    args: list[Any] = ["FT.CREATE", name, "ON", "HASH", "PREFIX", 1, f"{name}:", "SCHEMA"]
    for v in schema.vectors:
        p = dict(v.index.params) if v.index else {}
        vec = ["TYPE", "FLOAT32", "DIM", v.dim, "DISTANCE_METRIC", _METRIC[v.metric]]
        if v.index and v.index.kind in ("flat", "none"):
            algo = "FLAT"
        else:
            algo = "HNSW"
            vec += [
                "M",
                int(p.get("M", p.get("m", 16))),
                "EF_CONSTRUCTION",
                int(p.get("ef_construction", 200)),
            ]
            if "ef_search" in p:
                vec += ["EF_RUNTIME", int(p["ef_search"])]
        args += [v.name, "AS", attribute(v.name), "VECTOR", algo, len(vec), *vec]
    for m in schema.metadata:
        if m.type in ("int64", "float64"):
            args += [m.name, "AS", attribute(m.name), "NUMERIC", "INDEXMISSING"]
        elif m.type != "json":
            # Strings also get INDEXEMPTY so that a filter on "" finds them.
            empty = ["INDEXEMPTY"] if m.type == "string" else []
            args += [m.name, "AS", attribute(m.name), "TAG", "SEPARATOR", SEP,
                     "CASESENSITIVE", "INDEXMISSING", *empty]  # fmt: skip
    return args


def has_vectors(info: dict[str, Any]) -> bool:
    """An ``FT.INFO`` reply (as ``pairs``) of an index over HASH or JSON with a VECTOR field."""
    kind = text(pairs(info["index_definition"]).get("key_type", b""))
    return kind in ("HASH", "JSON") and any(
        attribute_info(a)[0].get("type") == b"VECTOR" for a in info["attributes"]
    )


def attribute_info(raw: list[Any]) -> tuple[dict[str, Any], set[str]]:
    """One FT.INFO attribute: key/value pairs mixed with bare flags (SORTABLE, INDEXMISSING)."""
    values: dict[str, Any] = {}
    flags: set[str] = set()
    i = 0
    while i < len(raw):
        token = text(raw[i])
        if token in _ATTR_KEYS and i + 1 < len(raw):
            values[token] = raw[i + 1]
            i += 2
        else:
            flags.add(token)
            i += 1
    return values, flags
