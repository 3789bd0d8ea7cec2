"""Pinecone's bulk-import API model, as a validator for the protocol double.

The official client (10.x) decodes the import responses into its own ``msgspec`` models
(``pinecone.models.imports.model``: ``StartImportResponse``, ``ImportModel``; the list
envelope in ``pinecone._internal.adapters.imports_adapter``); the double's responses are
decoded with exactly those, strictly, and also refused when they carry a member the
models do not know (the client would drop it silently, so a double that invented one
would pass unnoticed). The client builds the request bodies from dicts, so the request
model here is the API reference's ``StartImportRequest`` (``uri`` 1-1500 characters,
required; ``integrationId`` at most 1000; ``errorMode.onError`` ``continue`` or
``abort``), with unknown members refused. The documented constraints the msgspec models
do not carry are checked too: ``status`` is one of the five documented values, the id is
1-1000 characters and ``percentComplete`` is within 0-100.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

STATUSES = ("Pending", "InProgress", "Failed", "Completed", "Cancelled")


class ErrorMode(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """``ImportErrorMode``: what an import does with a record it cannot read."""

    on_error: Literal["abort", "continue"] | None = None


class StartImportRequest(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """The body of ``POST /bulk/imports``."""

    uri: Annotated[str, msgspec.Meta(min_length=1, max_length=1500)]
    integration_id: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    error_mode: ErrorMode | None = None


def _client_models() -> dict[str, type[Any]]:
    from pinecone._internal.adapters.imports_adapter import _ImportListEnvelope
    from pinecone.models.imports.model import ImportModel, StartImportResponse

    return {"start": StartImportResponse, "describe": ImportModel, "list": _ImportListEnvelope}


def _known(struct: type[Any]) -> set[str]:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.encode_name for f in info.fields}


def request_violations(body: Any) -> list[str]:
    """Every way a ``start_import`` request body breaks the documented model."""
    try:
        msgspec.convert(body, StartImportRequest, strict=True)
    except msgspec.ValidationError as exc:
        return [f"StartImportRequest: {exc}"]
    return []


def _import_violations(where: str, value: Any) -> list[str]:
    out: list[str] = []
    if not isinstance(value, dict):
        return [f"{where}: not an object"]
    unknown = set(value) - _known(_client_models()["describe"])
    if unknown:
        out.append(f"{where}: members the client's ImportModel does not have: {sorted(unknown)}")
    if value.get("status") not in STATUSES:
        out.append(f"{where}.status: {value.get('status')!r} is not one of {STATUSES}")
    if not isinstance(value.get("id"), str) or not 1 <= len(value["id"]) <= 1000:
        out.append(f"{where}.id: must be 1-1000 characters")
    pct = value.get("percentComplete")
    if pct is not None and not 0 <= pct <= 100:
        out.append(f"{where}.percentComplete: {pct} is outside 0-100")
    return out


def response_violations(op: str, body: Any) -> list[str]:
    """Every way a response of ``op`` (``start``, ``describe``, ``list``) breaks the
    client's model (decoded strictly, unknown members refused)."""
    model = _client_models()[op]
    try:
        msgspec.json.decode(msgspec.json.encode(body), type=model, strict=True)
    except msgspec.ValidationError as exc:
        return [f"{model.__name__}: {exc}"]
    if op == "start":
        unknown = set(body) - _known(model)
        return [f"StartImportResponse: unknown members {sorted(unknown)}"] if unknown else []
    if op == "describe":
        return _import_violations("ImportModel", body)
    out = [f"ImportList: unknown members {sorted(set(body) - {'data', 'pagination'})}"]
    out = out if set(body) - {"data", "pagination"} else []
    for i, item in enumerate(body.get("data", [])):
        out += _import_violations(f"ImportList.data[{i}]", item)
    return out
