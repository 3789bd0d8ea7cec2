"""turbopuffer's API as the official Python client describes it, for the protocol double.

The ``turbopuffer`` package ships the API's generated types: request parameters as
TypedDicts (``NamespaceWriteParams``, ``NamespaceQueryParams``, ...), the filter and
ranking grammars as tuple unions (``types.custom.Filter``, ``RankBy``, ``AggregateBy``) and
responses as pydantic models (``NamespaceMetadata``, ``NamespaceWriteResponse``, ...).
This module routes a request to its endpoint and checks the body the double received and
the body it is about to send against those types, so neither the double nor the connector
can drift from what the client (and so the API) defines:

* a request member the params type does not declare, or a value outside its type
  (pydantic, strict JSON validation), is a violation;
* ``filters`` / ``*_condition`` / ``delete_by_filter`` are matched against the
  ``Filter`` union, ``rank_by`` against ``RankBy``, ``aggregate_by`` against ``AggregateBy``
  (the client types ``rank_by`` as ``object``; the unions are recursive, which pydantic
  cannot build on Python 3.11, so they are matched structurally from their definitions);
* a response is validated with the response model (required fields, types, literals)
  and may carry no top-level field the model does not declare.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from typing import Any, ForwardRef

import pydantic
from turbopuffer import pagination
from turbopuffer.types import (
    NamespaceDeleteAllResponse,
    NamespaceMetadata,
    NamespaceQueryResponse,
    NamespaceSummary,
    NamespaceWriteResponse,
    client_namespaces_params,
    custom,
    namespace_query_params,
    namespace_write_params,
)
from turbopuffer.types.attribute_schema_config import AttributeSchemaConfig

_NS = r"(?P<namespace>[^/]+)"


class Endpoint(typing.NamedTuple):
    """One API operation: the client method that calls it, its params and response types."""

    op: str
    method: str
    path: re.Pattern[str]
    params: type | None  # a TypedDict of the body (POST) or the query string (GET)
    response: Callable[[Any], list[str]]


def _model(model: type[pydantic.BaseModel], extra_ok: bool = False) -> Callable[[Any], list[str]]:
    def check(payload: Any) -> list[str]:
        if not isinstance(payload, dict):
            return [f"{model.__name__}: not a JSON object"]
        problems = []
        if not extra_ok:
            known = {f.alias or name for name, f in model.model_fields.items()}
            problems += [
                f"{model.__name__}: undeclared field {k!r}" for k in payload if k not in known
            ]
        try:
            model.model_validate(_with_client_timings(payload))
        except pydantic.ValidationError as exc:
            problems += [
                f"{model.__name__}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            ]
        return problems

    return check


# ``ClientPerformance`` fields the client measures and sets itself after the response.
_CLIENT_TIMINGS = (
    "client_total_ms", "client_compress_ms", "client_response_ms", "client_body_read_ms",
    "client_deserialize_ms",
)  # fmt: skip


def _with_client_timings(payload: dict[str, Any]) -> dict[str, Any]:
    perf = payload.get("performance")
    if not isinstance(perf, dict):
        return payload
    return {**payload, "performance": {**perf, **dict.fromkeys(_CLIENT_TIMINGS, 0.0)}}


def _schema_response(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["NamespaceSchemaResponse: not a JSON object"]
    return [p for v in payload.values() for p in _model(AttributeSchemaConfig)(v)]


_PAGE = pagination.SyncNamespacePage[NamespaceSummary]

ENDPOINTS = (
    Endpoint(
        "namespaces", "GET", re.compile(r"^/v1/namespaces$"),
        client_namespaces_params.ClientNamespacesParams, _model(_PAGE),
    ),
    Endpoint(
        "metadata", "GET", re.compile(rf"^/v2/namespaces/{_NS}/metadata$"), None,
        _model(NamespaceMetadata),
    ),
    Endpoint(
        "schema", "GET", re.compile(rf"^/v1/namespaces/{_NS}/schema$"), None, _schema_response
    ),
    Endpoint(
        "write", "POST", re.compile(rf"^/v2/namespaces/{_NS}$"),
        namespace_write_params.NamespaceWriteParams, _model(NamespaceWriteResponse),
    ),
    Endpoint(
        "query", "POST", re.compile(rf"^/v2/namespaces/{_NS}/query$"),
        namespace_query_params.NamespaceQueryParams, _model(NamespaceQueryResponse),
    ),
    Endpoint(
        "delete_all", "DELETE", re.compile(rf"^/v2/namespaces/{_NS}$"), None,
        _model(NamespaceDeleteAllResponse),
    ),
)  # fmt: skip


def route(method: str, path: str) -> tuple[Endpoint, dict[str, str]] | None:
    """The endpoint serving ``method path`` and its path parameters."""
    for ep in ENDPOINTS:
        m = ep.path.match(path)
        if ep.method == method and m:
            return ep, m.groupdict()
    return None


# -- requests ----------------------------------------------------------------------------------
def _members(td: type) -> dict[str, tuple[Any, dict[str, Any]]]:
    """A TypedDict's members: (annotation, namespace to resolve it in), bases included."""
    out: dict[str, tuple[Any, dict[str, Any]]] = {}
    for klass in reversed(td.__mro__):
        module = sys.modules.get(klass.__module__)
        ns = {**vars(custom), **(vars(module) if module else {})}
        for key, ann in inspect.get_annotations(klass).items():
            out[key] = (ann, ns)
    return out


def _resolve(ann: Any, ns: dict[str, Any]) -> Any:
    if isinstance(ann, ForwardRef):
        ann = ann.__forward_arg__
    if isinstance(ann, str):
        return eval(ann, ns)  # the client's own annotation text, in its own module
    return ann


_CUSTOM = vars(custom)


def conforms(value: Any, tp: Any, ns: dict[str, Any] = _CUSTOM, depth: int = 0) -> bool:
    """``value`` (decoded JSON) has type ``tp`` of the client's grammar: Union, Literal,
    Tuple (a JSON array of that length), sequences, mappings, TypedDicts, primitives."""
    if depth > 64:
        return False
    tp = _resolve(tp, ns)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return True
    if origin is typing.Required or origin is typing.NotRequired:
        return conforms(value, args[0], ns, depth + 1)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a, ns, depth + 1) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is tuple:
        return (
            isinstance(value, list)
            and len(value) == len(args)
            and all(conforms(v, a, ns, depth + 1) for v, a in zip(value, args, strict=True))
        )
    if origin in (list, Sequence, Iterable, typing.Sequence, typing.Iterable) or (
        getattr(tp, "__name__", "") == "SequenceNotStr"
    ):
        item = args[0] if args else Any
        return isinstance(value, list) and all(conforms(v, item, ns, depth + 1) for v in value)
    if origin in (dict, Mapping, typing.Mapping, typing.Dict):  # noqa: UP006
        vt = args[1] if len(args) == 2 else Any
        return isinstance(value, dict) and all(
            isinstance(k, str) and conforms(v, vt, ns, depth + 1) for k, v in value.items()
        )
    if isinstance(tp, type) and typing.is_typeddict(tp):
        if not isinstance(value, dict):
            return False
        members = _members(tp)
        if set(value) - set(members) or not tp.__required_keys__ <= set(value):  # type: ignore[attr-defined]
            return False
        return all(conforms(value[k], members[k][0], members[k][1], depth + 1) for k in value)
    if tp is str:
        return isinstance(value, str)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is type(None) or tp is None:
        return value is None
    return False


_GRAMMAR = {
    "filters": custom.Filter,
    "delete_by_filter": custom.Filter,
    "delete_condition": custom.Filter,
    "patch_condition": custom.Filter,
    "upsert_condition": custom.Filter,
    "rank_by": custom.RankBy,
    "aggregate_by": typing.Dict[str, custom.AggregateBy],  # noqa: UP006
}


@cache
def _adapter(td: type, key: str) -> pydantic.TypeAdapter[Any]:
    ann, ns = _members(td)[key]
    return pydantic.TypeAdapter(_resolve(ann, ns))


def request_violations(td: type, body: Any) -> list[str]:
    """How ``body`` breaks the params TypedDict ``td`` (empty: it does not)."""
    name = td.__name__
    if not isinstance(body, dict):
        return [f"{name}: the body is not a JSON object"]
    members = _members(td)
    problems = [
        f"{name}: undeclared member {k!r}" for k in body if k not in members or k == "namespace"
    ]
    problems += [f"{name}: missing required member {k!r}" for k in td.__required_keys__ - set(body)]  # type: ignore[attr-defined]
    for key, value in body.items():
        if key not in members or key == "namespace":
            continue
        if key in _GRAMMAR:
            if not conforms(value, _GRAMMAR[key]):
                problems.append(f"{name}.{key}: {json.dumps(value)[:200]} is no {key} of the API")
            continue
        try:
            _adapter(td, key).validate_json(json.dumps(value), strict=True)
        except pydantic.ValidationError as exc:
            problems += [
                f"{name}.{key}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            ]
    return problems


def query_violations(td: type, query: dict[str, list[str]]) -> list[str]:
    """How a query string breaks ``td`` (values arrive as text: ints must parse)."""
    members = _members(td)
    problems = [
        f"{td.__name__}: undeclared query parameter {k!r}" for k in query if k not in members
    ]
    for key, values in query.items():
        if key in members and len(values) != 1:
            problems.append(f"{td.__name__}.{key}: given {len(values)} times")
        elif key in members:
            try:
                _adapter(td, key).validate_python(values[0])
            except pydantic.ValidationError as exc:
                problems.append(f"{td.__name__}.{key}: {exc.errors()[0]['msg']}")
    return problems
