"""Amazon S3 Vectors' machine-readable API model, as a validator for the protocol double.

botocore ships the service model (``botocore/data/s3vectors/<version>/service-2.json``):
every operation's HTTP binding and its input, output and error shapes with their
constraints. The double (``s3vectors_server.py``) routes requests with it and checks
every request body it receives and every response body it sends against the shapes —
required members, unknown members, types, enums, string / list / map lengths, integer
ranges, patterns, unions — so a double that drifted from the real API (a member the API
does not have, a missing required one, an out-of-range value) fails the tests instead of
passing them unnoticed.

The checks follow Smithy's constraint traits as botocore exposes them: ``min``/``max``
are lengths for strings (Unicode code points), lists and maps and bounds for numbers;
``pattern`` is searched, not anchored (Smithy patterns are ECMA-262 and unanchored).
Timestamps in rest-json bodies are epoch seconds. Documents (``Document``,
``VectorMetadata``) are any JSON value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote

import botocore.session  # type: ignore[import-untyped]
from botocore.model import (  # type: ignore[import-untyped]
    ListShape,
    MapShape,
    OperationModel,
    ServiceModel,
    Shape,
    StringShape,
    StructureShape,
)

SERVICE = "s3vectors"


@cache
def service_model() -> ServiceModel:
    """The s3vectors model of the installed botocore."""
    return botocore.session.get_session().get_service_model(SERVICE)


def _compile_pattern(pattern: str) -> Callable[[str], Any]:
    """A searcher for a Smithy pattern; ``\\p{..}`` classes need the ``regex`` module
    (approximated with ranges when it is not installed)."""
    try:
        import regex  # type: ignore[import-untyped]

        return regex.compile(pattern).search  # type: ignore[no-any-return]
    except ImportError:
        approx = (
            pattern.replace(r"\p{L}", "A-Za-z\u00c0-\u024f\u0370-\u1fff\u3040-\u9fff")
            .replace(r"\p{N}", "0-9")
            .replace(r"\p{Z}", " \u00a0\u2000-\u200a\u2028\u2029\u202f\u205f\u3000")
        )
        return re.compile(approx).search


@cache
def _pattern(pattern: str) -> Callable[[str], Any]:
    return _compile_pattern(pattern)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def violations(shape: Shape, value: Any, path: str = "") -> list[str]:
    """Every way ``value`` (parsed JSON) breaks ``shape``; empty when it conforms."""
    out: list[str] = []
    _check(shape, value, path or shape.name, out)
    return out


def _check(shape: Shape, value: Any, path: str, out: list[str]) -> None:
    where = f"{path} ({shape.name})"
    kind = shape.type_name
    if kind == "structure" and shape.metadata.get("document"):
        return  # a Smithy document: any JSON value
    if value is None:
        out.append(f"{where}: null is not a {kind}")
        return
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        _check_structure(shape, value, path, out)
    elif kind == "list":
        assert isinstance(shape, ListShape)
        if not isinstance(value, list):
            out.append(f"{where}: expected an array, got {_kind(value)}")
            return
        _check_length(shape, len(value), "items", where, out)
        for i, item in enumerate(value):
            _check(shape.member, item, f"{path}[{i}]", out)
    elif kind == "map":
        assert isinstance(shape, MapShape)
        if not isinstance(value, dict):
            out.append(f"{where}: expected an object, got {_kind(value)}")
            return
        _check_length(shape, len(value), "entries", where, out)
        for k, v in value.items():
            _check(shape.key, k, f"{path} key {k!r}", out)
            _check(shape.value, v, f"{path}[{k!r}]", out)
    elif kind == "string":
        if not isinstance(value, str):
            out.append(f"{where}: expected a string, got {_kind(value)}")
            return
        _check_length(shape, len(value), "characters", where, out)
        assert isinstance(shape, StringShape)
        if shape.enum and value not in shape.enum:
            out.append(f"{where}: {value!r} is not one of {shape.enum}")
        pattern = shape.metadata.get("pattern")
        if pattern and not _pattern(pattern)(value):
            out.append(f"{where}: {value!r} does not match the pattern {pattern!r}")
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            out.append(f"{where}: expected an integer, got {_kind(value)} {value!r}")
            return
        _check_range(shape, value, where, out)
    elif kind in ("float", "double"):
        special = isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity")
        if not special and (not isinstance(value, int | float) or isinstance(value, bool)):
            out.append(f"{where}: expected a number, got {_kind(value)} {value!r}")
            return
        if not special and not math.isfinite(value):
            out.append(f"{where}: {value!r} is not finite JSON")
    elif kind == "boolean":
        if not isinstance(value, bool):
            out.append(f"{where}: expected a boolean, got {_kind(value)} {value!r}")
    elif kind == "timestamp":
        # rest-json's default timestamp format is epoch seconds.
        if not isinstance(value, int | float) or isinstance(value, bool):
            out.append(f"{where}: expected epoch seconds, got {_kind(value)} {value!r}")
    elif kind == "blob":
        if not isinstance(value, str):
            out.append(f"{where}: expected base64 text, got {_kind(value)}")
    else:  # pragma: no cover - a shape type this validator does not know
        out.append(f"{where}: shape type {kind!r} is not checked by this validator")


def _check_structure(shape: StructureShape, value: Any, path: str, out: list[str]) -> None:
    where = f"{path} ({shape.name})"
    if not isinstance(value, dict):
        out.append(f"{where}: expected an object, got {_kind(value)}")
        return
    members = shape.members
    for key in value:
        if key not in members:
            out.append(f"{where}: {key!r} is not a member (members: {sorted(members)})")
    for req in shape.required_members:
        if req not in value:
            out.append(f"{where}: required member {req!r} is missing")
    if shape.metadata.get("union"):
        set_members = [k for k in value if k in members and value[k] is not None]
        if len(set_members) != 1:
            out.append(f"{where}: a union takes exactly one member, got {set_members}")
    for key, item in value.items():
        if key in members:
            _check(members[key], item, f"{path}.{key}", out)


def _check_length(shape: Shape, n: int, unit: str, where: str, out: list[str]) -> None:
    lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
    if lo is not None and n < lo:
        out.append(f"{where}: {n} {unit}, fewer than the minimum {lo}")
    if hi is not None and n > hi:
        out.append(f"{where}: {n} {unit}, more than the maximum {hi}")


def _check_range(shape: Shape, v: int, where: str, out: list[str]) -> None:
    lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
    if lo is not None and v < lo:
        out.append(f"{where}: {v} is below the minimum {lo}")
    if hi is not None and v > hi:
        out.append(f"{where}: {v} is above the maximum {hi}")


# -- operations: routing and the three checks -------------------------------------------------
@dataclass(frozen=True)
class Route:
    """One operation's HTTP binding: method and requestUri as a regex with its labels."""

    op: OperationModel
    method: str
    regex: re.Pattern[str]


@cache
def routes() -> tuple[Route, ...]:
    model = service_model()
    out = []
    for name in model.operation_names:
        op = model.operation_model(name)
        uri = op.http["requestUri"].split("?")[0]
        rx = re.sub(
            r"\\\{([A-Za-z0-9_]+)(\\\+)?\\\}",
            lambda m: f"(?P<{m[1]}>.+)" if m[2] else f"(?P<{m[1]}>[^/]+)",
            re.escape(uri),
        )
        out.append(Route(op, op.http["method"].upper(), re.compile(f"^{rx}$")))
    return tuple(out)


def route(method: str, path: str) -> tuple[OperationModel, dict[str, str]] | None:
    """The operation a request is for and its URI labels (percent-decoded), or None."""
    for r in routes():
        m = r.regex.match(path)
        if m and r.method == method.upper():
            return r.op, {k: unquote(v) for k, v in m.groupdict().items()}
    return None


def request_params(
    op: OperationModel, labels: dict[str, str], query: dict[str, list[str]], body: Any
) -> tuple[dict[str, Any], list[str]]:
    """The operation's input as one dict (body members plus URI and query-string members)
    and every way it breaks the input shape."""
    shape = op.input_shape
    if shape is None:
        return {}, [] if not body else [f"{op.name} takes no input, got a body"]
    assert isinstance(shape, StructureShape)
    params: dict[str, Any] = {}
    problems: list[str] = []
    if body is not None and not isinstance(body, dict):
        problems.append(f"{op.name}: the body is {_kind(body)}, not a JSON object")
        body = {}
    body = body or {}
    for key, value in body.items():
        member = shape.members.get(key)
        if member is not None and member.serialization.get("location"):
            problems.append(f"{shape.name}.{key}: sent in the body, but it is bound to the URI")
        params[key] = value
    for key, member in shape.members.items():
        loc = member.serialization.get("location")
        wire = member.serialization.get("name", key)
        if loc == "uri" and wire in labels:
            params[key] = labels[wire]
        elif loc == "querystring" and wire in query:
            params[key] = query[wire] if member.type_name == "list" else query[wire][0]
    problems += violations(shape, params, shape.name)
    return params, problems


def check_output(op: OperationModel, body: Any) -> list[str]:
    """Every way a response body breaks the operation's output shape."""
    shape = op.output_shape
    if shape is None:
        return [] if not body else [f"{op.name} has no output, but the response has a body"]
    return violations(shape, body if body is not None else {}, shape.name)


def error_shape(code: str) -> StructureShape | None:
    """The modeled error called ``code`` (None: not an error of this service's model)."""
    for shape in service_model().error_shapes:
        if shape.name == code:
            return shape
    return None


def check_error(op: OperationModel | None, code: str, status: int, body: Any) -> list[str]:
    """An error response: a modeled error shape, its HTTP status, its body; and, when the
    operation is known, an error the operation declares (or a common one)."""
    shape = error_shape(code)
    if shape is None:
        return [f"error code {code!r} is not an error shape of the s3vectors model"]
    problems = violations(shape, body, shape.name)
    want = shape.metadata.get("error", {}).get("httpStatusCode", 400)
    if want != status:
        problems.append(f"{code} is HTTP {want} in the model, the response said {status}")
    if op is not None and op.error_shapes and code not in {e.name for e in op.error_shapes}:
        problems.append(f"{op.name} does not declare the error {code}")
    return problems
