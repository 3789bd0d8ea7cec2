"""Azure AI Search's REST API as the official Python client describes it, for the double.

``azure-search-documents`` 12.x ships the API's generated models (``models._models``,
``indexes.models._models``): each a ``Model`` whose ``rest_field``s name the JSON members
(``_attr_to_rest_field``), whose annotations type them (a non-``Optional`` annotation is a
required member), with ``visibility`` marking what the service alone writes and
discriminated subclasses (``__mapping__``) for polymorphic members. This module routes a
request to its endpoint and checks the body the double received and the body it is about
to send against those models, so neither the double nor the connector can drift:

* a member the model does not declare (outside the open document models, whose extra
  members are document fields), a missing required member, a value outside its type, an
  enum value the model does not know, or a read-only member in a request, is a violation;
* a polymorphic member (vector queries, vector search algorithms) is checked against the
  subclass its discriminator (``kind``) names; an unknown discriminator is a violation.
"""

from __future__ import annotations

import datetime
import enum
import re
import sys
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from azure.search.documents.indexes.models import _models as index_models
from azure.search.documents.models import _models as doc_models

# Models whose undeclared members are document fields (checked by the double's index).
OPEN_MODELS = {"IndexAction", "SearchResult", "LookupDocument"}


@cache
def _hints(cls: type) -> dict[str, Any]:
    module = sys.modules[cls.__module__]
    ns = dict(vars(module))
    ns["_models"] = sys.modules[cls.__module__.rsplit(".", 1)[0]]
    return typing.get_type_hints(cls, globalns=ns)


# Wire encodings of list members (``rest_field(format=...)``): one delimited string.
DELIMITED = {"commaDelimited": ",", "pipeDelimited": "|", "spaceDelimited": " ",
             "newlineDelimited": "\n"}  # fmt: skip


@cache
def _fields(cls: type) -> dict[str, tuple[str, Any, list[str] | None, str | None]]:
    """rest name -> (attribute, annotation, visibility, format) of a generated model."""
    cls.__new__(cls)  # the model base computes its rest fields on first construction
    hints = _hints(cls)
    return {
        rf._rest_name: (attr, hints.get(attr, Any), rf._visibility, rf._format)
        for attr, rf in cls._attr_to_rest_field.items()  # type: ignore[attr-defined]
    }


def split(value: Any, fmt: str | None) -> Any:
    """A delimited-string member as the list it encodes (others unchanged)."""
    if fmt in DELIMITED and isinstance(value, str):
        return [] if value == "" else value.split(DELIMITED[fmt])
    return value


def _optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation) or annotation is Any


def _concrete(cls: type, payload: dict[str, Any], path: str) -> tuple[type, list[str]]:
    """The subclass a discriminated model's payload names."""
    mapping = getattr(cls, "__mapping__", None)
    if not mapping:
        return cls, []
    disc = cls._get_discriminator([])  # type: ignore[attr-defined]
    if disc is None:
        return cls, []
    value = payload.get(disc._rest_name)
    if value not in mapping:
        return cls, [f"{path}.{disc._rest_name}: unknown {cls.__name__} kind {value!r}"]
    return mapping[value], []


def check(cls: type, payload: Any, path: str, *, request: bool) -> list[str]:
    """Violations of ``payload`` against generated model ``cls`` (``request``: a body the
    client sent, so read-only members are violations too)."""
    if not isinstance(payload, dict):
        return [f"{path}: {cls.__name__} must be a JSON object, not {type(payload).__name__}"]
    cls, problems = _concrete(cls, payload, path)
    fields = _fields(cls)
    for name, value in payload.items():
        if name not in fields:
            if cls.__name__ not in OPEN_MODELS:
                problems.append(f"{path}: {cls.__name__} has no member {name!r}")
            continue
        _, annotation, visibility, fmt = fields[name]
        if request and visibility == ["read"]:
            problems.append(f"{path}.{name}: read-only in {cls.__name__}, sent in a request")
        if fmt in DELIMITED:
            if not isinstance(value, str):
                problems.append(f"{path}.{name}: expected a {fmt} string")
                continue
            value = split(value, fmt)
        problems += _value(annotation, value, f"{path}.{name}", request=request)
    for name, (_, annotation, _, _) in fields.items():
        if name not in payload and not _optional(annotation):
            if request and fields[name][2] == ["read"]:
                continue
            problems.append(f"{path}: {cls.__name__} requires {name!r}")
    return problems


def _value(annotation: Any, value: Any, path: str, *, request: bool) -> list[str]:
    if annotation is Any:
        return []
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return [] if type(None) in args else [f"{path}: null is not allowed"]
        branches = [a for a in args if a is not type(None)]
        enums = [a for a in branches if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums and isinstance(value, str):
            known = {e.value for en in enums for e in en}
            if any(en.__name__ == "SearchFieldDataType" for en in enums):
                # The client spells collection types with its Collection() helper.
                inner = re.fullmatch(r"Collection\((.+)\)", value)
                value = inner.group(1) if inner else value
            return [] if value in known else [f"{path}: {value!r} is none of {sorted(known)}"]
        results = [_value(a, value, path, request=request) for a in branches]
        return [] if any(not r for r in results) else min(results, key=len)
    if value is None:
        return [f"{path}: null is not allowed"]
    if origin is typing.Literal:
        allowed = [a.value if isinstance(a, enum.Enum) else a for a in args]
        return [] if value in allowed else [f"{path}: {value!r} is not {allowed}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [
            p
            for i, v in enumerate(value)
            for p in _value(args[0], v, f"{path}.{i}", request=request)
        ]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        return [
            p for k, v in value.items() for p in _value(args[1], v, f"{path}.{k}", request=request)
        ]
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            known = {e.value for e in annotation}
            return [] if value in known else [f"{path}: {value!r} is none of {sorted(known)}"]
        if hasattr(annotation, "_attr_to_rest_field") or hasattr(annotation, "__mapping__"):
            return check(annotation, value, path, request=request)
        if annotation is bool:
            return [] if isinstance(value, bool) else [f"{path}: expected a boolean"]
        if annotation is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            return [] if ok else [f"{path}: expected an integer"]
        if annotation is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            return [] if ok else [f"{path}: expected a number"]
        if annotation in (str, datetime.datetime, datetime.timedelta, bytes):
            return [] if isinstance(value, str) else [f"{path}: expected a string"]
        if issubclass(annotation, doc_models._Model):  # type: ignore[attr-defined]
            return check(annotation, value, path, request=request)
    return []


# -- endpoints ----------------------------------------------------------------------------------
def _list_of(cls: type) -> Callable[[Any], list[str]]:
    def check_list(payload: Any) -> list[str]:
        if not isinstance(payload, dict) or set(payload) - {"value"}:
            return [f"list of {cls.__name__}: expected exactly {{'value': [...]}}"]
        return _value(list[cls], payload.get("value"), "value", request=False)  # type: ignore[valid-type]

    return check_list


def _model(cls: type) -> Callable[[Any], list[str]]:
    return lambda payload: check(cls, payload, cls.__name__, request=False)


def _count(payload: Any) -> list[str]:
    ok = isinstance(payload, int) and not isinstance(payload, bool) and payload >= 0
    return [] if ok else ["$count: expected a non-negative integer"]


class Endpoint(typing.NamedTuple):
    """One operation: its method and path, the request model and the response check."""

    op: str
    method: str
    path: re.Pattern[str]
    request: type | None
    response: Callable[[Any], list[str]]


_NAME = r"\('(?P<index>[^']*)'\)"
ENDPOINTS = [
    Endpoint("list_indexes", "GET", re.compile(r"^/indexes$"), None,
             _list_of(index_models.SearchIndexResponse)),
    Endpoint("create_index", "POST", re.compile(r"^/indexes$"), index_models.SearchIndex,
             _model(index_models.SearchIndexResponse)),
    Endpoint("get_index", "GET", re.compile(rf"^/indexes{_NAME}$"), None,
             _model(index_models.SearchIndexResponse)),
    Endpoint("delete_index", "DELETE", re.compile(rf"^/indexes{_NAME}$"), None, lambda _: []),
    Endpoint("count", "GET", re.compile(rf"^/indexes{_NAME}/docs/\$count$"), None, _count),
    Endpoint("search", "POST", re.compile(rf"^/indexes{_NAME}/docs/search\.post\.search$"),
             doc_models.SearchRequest, _model(doc_models.SearchDocumentsResult)),
    Endpoint("index", "POST", re.compile(rf"^/indexes{_NAME}/docs/search\.index$"),
             doc_models.IndexDocumentsBatch, _model(doc_models.IndexDocumentsResult)),
    Endpoint("get_document", "GET", re.compile(rf"^/indexes{_NAME}/docs\('(?P<key>[^']*)'\)$"),
             None, _model(doc_models.LookupDocument)),
]  # fmt: skip


def route(method: str, path: str) -> tuple[Endpoint, dict[str, str]] | None:
    """The endpoint of a request and its path parameters (None: not an endpoint the double
    implements)."""
    for ep in ENDPOINTS:
        m = ep.path.match(path)
        if ep.method == method and m:
            return ep, m.groupdict()
    return None


def error_violations(payload: Any) -> list[str]:
    """An error body checked against the client's ``ErrorResponse``."""
    return check(doc_models.ErrorResponse, payload, "ErrorResponse", request=False)
