"""Weaviate semantics for the protocol test double (``weaviate_server.py``): class defaults
and validation, property values on the wire, and filter evaluation. Not Weaviate."""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from weaviate.proto.v1 import base_pb2, batch_pb2, properties_pb2

VERSION = "1.33.0"
MAX_RESULTS = 10_000
DEFAULT_LIMIT = 10
_CLASS_RE = re.compile(r"^[A-Z][_0-9A-Za-z]*$")
_PROP_RE = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,230}$")
_RESERVED_PROPS = {"_additional", "_id", "id"}
_HNSW_DEFAULTS = {
    "skip": False,
    "cleanupIntervalSeconds": 300,
    "maxConnections": 32,
    "efConstruction": 128,
    "ef": -1,
    "dynamicEfMin": 100,
    "dynamicEfMax": 500,
    "dynamicEfFactor": 8,
    "vectorCacheMaxObjects": 1_000_000_000_000,
    "flatSearchCutoff": 40_000,
    "distance": "cosine",
    "filterStrategy": "sweeping",
}
_FLAT_DEFAULTS = {"vectorCacheMaxObjects": 1_000_000_000_000, "distance": "cosine"}
Op = base_pb2.Filters


class WeaviateError(Exception):
    """An error the double reports: REST status + message, or a gRPC status."""

    def __init__(self, message: str, status: int = 422, code: Any = grpc.StatusCode.UNKNOWN):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class ClassState:
    config: dict[str, Any]
    tenants: dict[str | None, dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]]] = field(
        default_factory=dict
    )
    dims: dict[str, int] = field(default_factory=dict)

    @property
    def mt(self) -> bool:
        return bool(self.config["multiTenancyConfig"]["enabled"])

    def props(self) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.config["properties"]}

    def distance(self, target: str) -> str:
        vc = self.config.get("vectorConfig")
        cfg = vc[target]["vectorIndexConfig"] if vc else self.config["vectorIndexConfig"]
        return str(cfg["distance"])


def fill_defaults(body: dict[str, Any]) -> dict[str, Any]:
    """The class as Weaviate returns it: name capitalised, defaults filled, validated."""
    cfg = json.loads(json.dumps(body))
    name = str(cfg.get("class", ""))
    name = name[:1].upper() + name[1:]
    if not _CLASS_RE.match(name):
        raise WeaviateError(f"'{name}' is not a valid class name")
    cfg["class"] = name
    seen = set()
    for p in cfg.setdefault("properties", []):
        pname = p["name"] = p.get("name", "")[:1].lower() + p.get("name", "")[1:]
        if not _PROP_RE.match(pname) or pname in _RESERVED_PROPS:
            raise WeaviateError(f"'{pname}' is not a valid property name")
        if pname.lower() in seen:
            raise WeaviateError(f"class '{name}' has duplicate property name '{pname}'")
        seen.add(pname.lower())
        dtype = p["dataType"][0]
        p.setdefault("indexFilterable", True)
        p.setdefault("indexRangeFilters", False)
        p.setdefault("indexSearchable", dtype in ("text", "text[]"))
        if dtype in ("text", "text[]"):
            p.setdefault("tokenization", "word")
    inv = cfg.setdefault("invertedIndexConfig", {})
    inv.setdefault("bm25", {"b": 0.75, "k1": 1.2})
    inv.setdefault("cleanupIntervalSeconds", 60)
    inv.setdefault("stopwords", {"preset": "en", "additions": None, "removals": None})
    inv.setdefault("indexNullState", False)
    cfg.setdefault("multiTenancyConfig", {"enabled": False})
    cfg["multiTenancyConfig"].setdefault("autoTenantCreation", False)
    cfg.setdefault("replicationConfig", {"factor": 1, "deletionStrategy": "NoAutomatedResolution"})
    cfg.setdefault(
        "shardingConfig",
        {
            "virtualPerPhysical": 128,
            "desiredCount": 1,
            "actualCount": 1,
            "desiredVirtualCount": 128,
            "actualVirtualCount": 128,
            "key": "_id",
            "strategy": "hash",
            "function": "murmur3",
        },
    )
    targets = cfg.get("vectorConfig") or {}
    if not targets:  # legacy single vector index
        cfg.setdefault("vectorizer", "none")
        targets = {"": cfg}
    for vc in targets.values():
        kind = vc.setdefault("vectorIndexType", "hnsw")
        defaults = _HNSW_DEFAULTS if kind == "hnsw" else _FLAT_DEFAULTS
        vc["vectorIndexConfig"] = {**defaults, **vc.get("vectorIndexConfig", {})}
        if vc["vectorIndexConfig"]["distance"] not in ("cosine", "dot", "l2-squared"):
            raise WeaviateError(f"unsupported distance {vc['vectorIndexConfig']['distance']!r}")
    return cfg


# -- property values ------------------------------------------------------------------------
def coerce(dtype: str, value: Any, pname: str) -> Any:
    scalar = dtype.removesuffix("[]")
    values = value if dtype.endswith("[]") else [value]
    if not isinstance(values, list):
        raise WeaviateError(f"invalid {dtype} property '{pname}': not an array")
    out = []
    for v in values:
        if (scalar in ("text", "date", "uuid") and isinstance(v, str)) or (
            scalar == "boolean" and isinstance(v, bool)
        ):
            out.append(v)
        elif scalar == "int" and isinstance(v, int | float) and not isinstance(v, bool):
            if float(v) != int(v):
                raise WeaviateError(f"invalid integer property '{pname}': {v}")
            out.append(int(v))
        elif scalar == "number" and isinstance(v, int | float) and not isinstance(v, bool):
            out.append(float(v))
        else:
            raise WeaviateError(f"invalid {dtype} property '{pname}' value {v!r}")
    return out if dtype.endswith("[]") else out[0]


def props_from_grpc(p: batch_pb2.BatchObject.Properties) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    out: dict[str, Any] = dict(MessageToDict(p.non_ref_properties))
    for a in p.text_array_properties:
        out[a.prop_name] = list(a.values)
    for b in p.boolean_array_properties:
        out[b.prop_name] = list(b.values)
    for i in p.int_array_properties:
        out[i.prop_name] = list(i.values)
    for n in p.number_array_properties:
        vals = n.values_bytes
        out[n.prop_name] = list(struct.unpack(f"<{len(vals) // 8}d", vals)) or list(n.values)
    for name in p.empty_list_props:
        out[name] = []
    return out


def value_to_grpc(dtype: str, v: Any) -> properties_pb2.Value:
    if dtype == "text":
        return properties_pb2.Value(text_value=v)
    if dtype == "int":
        return properties_pb2.Value(int_value=v)
    if dtype == "number":
        return properties_pb2.Value(number_value=v)
    if dtype == "boolean":
        return properties_pb2.Value(bool_value=v)
    if dtype == "date":
        return properties_pb2.Value(date_value=v)
    if dtype == "uuid":
        return properties_pb2.Value(uuid_value=v)
    lv = properties_pb2.ListValue
    if dtype == "text[]":
        return properties_pb2.Value(list_value=lv(text_values=properties_pb2.TextValues(values=v)))
    if dtype == "int[]":
        ints = properties_pb2.IntValues(values=struct.pack(f"<{len(v)}q", *v))
        return properties_pb2.Value(list_value=lv(int_values=ints))
    if dtype == "number[]":
        nums = properties_pb2.NumberValues(values=struct.pack(f"<{len(v)}d", *v))
        return properties_pb2.Value(list_value=lv(number_values=nums))
    if dtype == "boolean[]":
        return properties_pb2.Value(list_value=lv(bool_values=properties_pb2.BoolValues(values=v)))
    raise WeaviateError(f"data type {dtype} is not served by this double")


# -- filters ----------------------------------------------------------------------------------
def _filter_values(f: base_pb2.Filters) -> list[Any]:
    kind = f.WhichOneof("test_value")
    if kind is None:
        raise WeaviateError("filter has no value", code=grpc.StatusCode.INVALID_ARGUMENT)
    v = getattr(f, kind)
    if kind.endswith("_array"):
        return list(v.values)
    return [v]


def matches(f: base_pb2.Filters, uid: str, props: dict[str, Any], cls: ClassState) -> bool:
    op = f.operator
    if op in (Op.OPERATOR_AND, Op.OPERATOR_OR):
        parts = (matches(c, uid, props, cls) for c in f.filters)
        return all(parts) if op == Op.OPERATOR_AND else any(parts)
    if op == Op.OPERATOR_NOT:
        return not matches(f.filters[0], uid, props, cls)
    name = f.target.property if f.HasField("target") else (f.on[0] if f.on else "")
    schema = cls.props()
    if name == "_id":
        dtype, value, tok = "uuid", uid, "field"
    elif name in schema:
        p = schema[name]
        dtype, value, tok = p["dataType"][0], props.get(name), p.get("tokenization")
        if not p["indexFilterable"]:
            raise WeaviateError(f"property '{name}' is not filterable")
    else:
        raise WeaviateError(
            f"no such prop with name '{name}' found in class '{cls.config['class']}'",
            code=grpc.StatusCode.INVALID_ARGUMENT,
        )
    items = value if isinstance(value, list) else ([] if value is None else [value])
    if op == Op.OPERATOR_IS_NULL:
        if name != "_id" and not cls.config["invertedIndexConfig"]["indexNullState"]:
            raise WeaviateError(
                "Nullstate must be indexed to be filterable! "
                "Add `indexNullState: true` to the invertedIndexConfig",
                code=grpc.StatusCode.INVALID_ARGUMENT,
            )
        # the null state counts an empty array and an empty string as null
        return (not items or items == [""]) == bool(f.value_boolean)

    def norm(x: Any) -> Any:
        if isinstance(x, str):
            if tok == "field":
                return x.strip()
            if tok in ("word", "lowercase"):
                return x.lower()
        return x

    items = [norm(x) for x in items]
    wanted = [norm(x) for x in _filter_values(f)]
    if dtype.startswith(("int", "number")) and any(isinstance(w, str) for w in wanted):
        raise WeaviateError(f"wrong value type for {dtype} property '{name}'")
    if op == Op.OPERATOR_EQUAL:
        return wanted[0] in items
    if op == Op.OPERATOR_NOT_EQUAL:
        return wanted[0] not in items
    if op == Op.OPERATOR_CONTAINS_ANY:
        return any(w in items for w in wanted)
    if op == Op.OPERATOR_CONTAINS_ALL:
        return all(w in items for w in wanted)
    if op == Op.OPERATOR_CONTAINS_NONE:
        return not any(w in items for w in wanted)
    cmp = {
        Op.OPERATOR_GREATER_THAN: lambda a, b: a > b,
        Op.OPERATOR_GREATER_THAN_EQUAL: lambda a, b: a >= b,
        Op.OPERATOR_LESS_THAN: lambda a, b: a < b,
        Op.OPERATOR_LESS_THAN_EQUAL: lambda a, b: a <= b,
    }.get(op)
    if cmp is None:
        raise WeaviateError(f"operator {op} is not served by this double")
    return any(cmp(x, wanted[0]) for x in items)
