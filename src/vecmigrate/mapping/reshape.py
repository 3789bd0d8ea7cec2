"""Reshaping a record's metadata and namespace: nested json objects <-> dotted scalar
fields, and namespaces <-> a metadata field. Each transform is exactly invertible on what
it accepts and refuses (naming the field) what it could not carry back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vecmigrate.errors import SchemaMismatchError
from vecmigrate.mapping.spec import FlattenSpec, MappingSpec
from vecmigrate.model import Capabilities, CollectionSchema, MetadataField, MetadataType

NAMESPACE_OPTIONS = (
    "namespaces: {to: field, field: tenant} (each record's namespace in a string field), "
    'namespaces: {to: collections, pattern: "{collection}__{namespace}"} (one collection '
    "per namespace) or namespaces: {to: drop}"
)


class FieldRefused(ValueError):
    """A record's field that a reshape cannot carry losslessly."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


# -- flatten / unflatten ----------------------------------------------------------------------
def _leaf_type(value: Any) -> MetadataType:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64" if -(2**63) <= value < 2**63 else "json"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    kinds = {type(x) for x in value}
    if kinds == {str}:
        return "list<string>"
    if kinds == {int} and all(-(2**63) <= x < 2**63 for x in value):
        return "list<int64>"
    if kinds == {float}:
        return "list<float64>"
    return "json"  # a mixed list or a list of booleans: kept as JSON text, exactly


def flatten_value(name: str, value: Any, sep: str) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` in field ``m`` -> ``{"m.a.b": 1}``; FieldRefused for what the
    dotted form cannot give back: keys containing ``sep`` or empty, empty objects, explicit
    nulls, and lists holding objects or lists."""
    if not isinstance(value, dict):
        raise FieldRefused(name, f"{type(value).__name__} value is not an object to flatten")
    out: dict[str, Any] = {}

    def walk(prefix: str, obj: dict[str, Any]) -> None:
        if not obj:
            raise FieldRefused(prefix, "an empty object has no flat form")
        for key, v in obj.items():
            if not key or sep in key:
                raise FieldRefused(prefix, f"key {key!r} is empty or contains {sep!r}")
            path = f"{prefix}{sep}{key}"
            if isinstance(v, dict):
                walk(path, v)
            elif v is None:
                raise FieldRefused(path, "an explicit null has no flat form")
            elif isinstance(v, list) and any(isinstance(x, dict | list) or x is None for x in v):
                raise FieldRefused(path, "a list holding objects, lists or nulls cannot flatten")
            else:
                out[path] = v

    walk(name, value)
    return out


def flatten_row(meta: dict[str, Any], fields: set[str], sep: str) -> dict[str, Any]:
    """One record's metadata with the named json fields flattened."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if key in fields:
            out.update(flatten_value(key, value, sep))
        else:
            out[key] = value
    return out


def unflatten_row(meta: dict[str, Any], sep: str) -> dict[str, Any]:
    """Dotted keys folded back into nested objects; FieldRefused when keys collide
    (``a`` and ``a.b``, ``a.b`` and ``a.b.c``) or a path has an empty part."""
    out: dict[str, Any] = {k: v for k, v in meta.items() if sep not in k}
    nested: set[str] = set()
    for key in sorted(k for k in meta if sep in k):
        parts = key.split(sep)
        if not all(parts):
            raise FieldRefused(key, f"an empty part between {sep!r} has no nested form")
        if parts[0] in out and parts[0] not in nested:
            raise FieldRefused(key, f"field {parts[0]!r} exists too")
        nested.add(parts[0])
        node = out.setdefault(parts[0], {})
        for part in parts[1:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise FieldRefused(key, f"{part!r} is both a value and an object")
        if parts[-1] in node:
            raise FieldRefused(key, f"{parts[-1]!r} is both a value and an object")
        node[parts[-1]] = meta[key]
    return out


def flat_types(
    rows: Sequence[dict[str, Any]], fields: set[str], sep: str
) -> dict[str, MetadataType]:
    """The type of each flattened field seen in sample rows (rows that cannot flatten are
    skipped: copy refuses them); mixed types become json, which keeps each value exactly."""
    seen: dict[str, set[MetadataType]] = {}
    for meta in rows:
        try:
            flat = flatten_row({k: v for k, v in meta.items() if k in fields}, fields, sep)
        except FieldRefused:
            continue
        for key, value in flat.items():
            kinds = seen.setdefault(key, set())
            if not (isinstance(value, list) and not value):  # [] fits any list type
                kinds.add(_leaf_type(value))
    out: dict[str, MetadataType] = {}
    for key in sorted(seen):
        kinds = seen[key]
        out[key] = next(iter(kinds)) if len(kinds) == 1 else "list<string>" if not kinds else "json"
    return out


def reshape_fields(
    source: CollectionSchema,
    spec: MappingSpec,
    decisions: list[str],
    sample: Sequence[dict[str, Any]] | None,
) -> tuple[tuple[MetadataField, ...], FlattenSpec | None]:
    """Metadata fields after flatten/unflatten, and the flatten spec with its types."""
    fields = source.metadata
    flat = spec.flatten
    if flat is not None:
        json_fields = {m.name for m in fields if m.type == "json"}
        chosen = set(flat.fields) if flat.fields is not None else json_fields
        if chosen - json_fields:
            raise SchemaMismatchError(
                f"flatten names {sorted(chosen - json_fields)}, not json fields of {source.name!r}"
            )
        dotted = [m.name for m in fields if flat.sep in m.name]
        if dotted:
            raise SchemaMismatchError(
                f"fields {dotted} already contain {flat.sep!r}: flattening would be ambiguous",
                hint="choose another flatten sep",
            )
        types = dict(flat.types) or flat_types(sample or [], chosen, flat.sep)
        flat = flat.model_copy(update={"fields": sorted(chosen), "types": types})
        fields = tuple(m for m in fields if m.name not in chosen) + tuple(
            MetadataField(name=k, type=t) for k, t in types.items()
        )
        decisions.append(
            f"metadata {sorted(chosen)}: flattened with {flat.sep!r} into {len(types)} fields"
            " (objects that cannot flatten losslessly are refused)"
        )
    if spec.unflatten is not None:
        sep = spec.unflatten.sep
        tops = sorted({m.name.split(sep)[0] for m in fields if sep in m.name})
        clash = [m.name for m in fields if m.name in tops]
        if clash:
            raise SchemaMismatchError(f"unflatten: fields {clash} also have dotted children")
        fields = tuple(m for m in fields if sep not in m.name) + tuple(
            MetadataField(name=t, type="json") for t in tops
        )
        decisions.append(f"metadata: dotted fields folded into json objects {tops}")
    return fields, flat


# -- namespaces --------------------------------------------------------------------------------
def namespace_fields(
    source: CollectionSchema,
    caps: Capabilities,
    spec: MappingSpec,
    fields: tuple[MetadataField, ...],
    decisions: list[str],
    warnings: list[str],
    fan_out: bool = False,
) -> tuple[tuple[str, ...] | None, tuple[MetadataField, ...]]:
    """The target's namespaces and metadata fields under the namespace decision; an
    error, never a silent drop, when the source has namespaces the target cannot store.
    ``fan_out``: the caller writes one collection per namespace (``to: collections``)."""
    ns = spec.namespaces
    has = source.namespaces is not None
    if ns is None:
        if has and not caps.namespaces:
            raise SchemaMismatchError(
                f"{source.name!r} has namespaces {list(source.namespaces or ())[:5]} and the "
                "target cannot store namespaces",
                hint=f"decide in the mapping: {NAMESPACE_OPTIONS}",
            )
        if has:
            decisions.append(f"namespaces: kept ({len(source.namespaces or ())} namespaces)")
        return source.namespaces, fields
    if ns.from_ == "field":
        found = next((m for m in fields if m.name == ns.field), None)
        if has or not caps.namespaces:
            raise SchemaMismatchError(
                "namespaces from a field needs a source without and a target with namespaces"
            )
        if found is None or found.type != "string":
            raise SchemaMismatchError(f"namespaces from field: {ns.field!r} is not a string field")
        decisions.append(f"namespaces: from metadata.{ns.field} (the field is removed)")
        return (), tuple(m for m in fields if m.name != ns.field)
    if not has:
        raise SchemaMismatchError(f"namespaces: to {ns.to}, but {source.name!r} has none")
    if ns.to == "collections":
        if not fan_out:
            raise SchemaMismatchError(
                "namespaces to collections is supported by copy, import and plan only",
                hint="use namespaces: {to: field, field: tenant} here",
            )
        declared = list(source.namespaces or ())
        decisions.append(
            f"namespaces: to collections named {ns.pattern!r}, one per namespace "
            f"({len(declared)} declared: {', '.join(declared[:5])}"
            f"{', ...' if len(declared) > 5 else ''}); the namespace column is removed, "
            "records without a namespace are refused"
        )
        return None, fields
    if ns.to == "drop":
        decisions.append("namespaces: DROPPED (as the mapping says)")
        warnings.append(f"the namespaces of {source.name!r} are not carried to the target")
        return None, fields
    decisions.append(f"namespaces: to metadata.{ns.field} (string)")
    return None, (*fields, MetadataField(name=str(ns.field), type="string"))
