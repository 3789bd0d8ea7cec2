"""Describing a RediSearch index another tool made, as its documents are laid out.

* records are the HASH or JSON documents under the index's key prefixes; the id is the
  key after its prefix (and the ``:`` separating them), or a field named by ``?id_field=``;
* every VECTOR field is carried (``?vector_field=a,b`` chooses, by field name or query
  attribute) with the ``DISTANCE_METRIC`` of its index;
* the text is a field named by ``?document_field=`` (indexed or not) or a TEXT field with
  a common name (``content``, ``text``, ``page_content`` ...: ``connectors/foreign``);
* other indexed fields are metadata (hashes: NUMERIC as float64, TAG/TEXT as string; JSON:
  types from up to 200 sampled documents).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from vecmigrate.connectors.foreign import DOCUMENT_NAMES, FieldsConfig, pick_column
from vecmigrate.connectors.redis._schema import (
    JSON_TOP,
    PORTABLE_METRIC,
    Layout,
    attribute_info,
    pairs,
    text,
)
from vecmigrate.errors import ConfigError
from vecmigrate.model import (
    CollectionSchema,
    IdType,
    IndexSpec,
    MetadataField,
    MetadataType,
    VectorField,
)
from vecmigrate.records import infer_metadata_fields

# Up to 200 (key, document) pairs under the layout's first prefix: JSON objects, or a
# hash's fields with their raw (bytes) values.
Sampler = Callable[[Layout], list[tuple[bytes, dict[str, Any]]]]
_INT = re.compile(rb"-?[0-9]+")


def _vector_field(name: str, ident: str, a: dict[str, Any]) -> VectorField:
    """A VECTOR attribute of index ``name`` as a vector field (FLOAT32 only)."""
    dtype = text(a.get("data_type", b"FLOAT32"))
    if dtype != "FLOAT32":
        raise ConfigError(
            f"vector field {ident!r} of {name!r} is {dtype}; vecmigrate moves FLOAT32"
        )
    algo = text(a.get("algorithm", b"FLAT"))
    params: dict[str, int | float | str] = (
        {"M": int(a["M"]), "ef_construction": int(a["ef_construction"])} if algo == "HNSW" else {}
    )
    distance = text(a["distance_metric"])
    metric = PORTABLE_METRIC.get(distance)
    if metric is None:
        raise ConfigError(
            f"vector field {ident!r} of {name!r} is searched with {distance}, "
            "which vecmigrate has no metric for"
        )
    index = IndexSpec(kind="hnsw" if algo == "HNSW" else "flat", params=params)
    source = f"the index's {algo} VECTOR field (DISTANCE_METRIC {distance})"
    return VectorField(
        name=ident, dim=int(a["dim"]), metric=metric, index=index, metric_source=source
    )


def _id_prefix(prefix: str, keys: list[bytes]) -> str:
    """The part of every sampled key before its id: the prefix, and the ``:`` after it
    when every key has one there (``FT.CREATE ... PREFIX 1 doc`` over ``doc:<id>``)."""
    rest = [k.decode(errors="replace")[len(prefix) :] for k in keys]
    if prefix and not prefix.endswith(":") and rest and all(r.startswith(":") for r in rest):
        return prefix + ":"
    return prefix


def _id_type(values: list[Any], kind: str | None) -> IdType:
    """INT when every sampled id value is an integer and no TAG/TEXT index reads it as text."""
    if not values or kind in ("TAG", "TEXT"):
        return IdType.STRING
    ints = all(
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, bytes) and _INT.fullmatch(v) is not None)
        for v in values
    )
    return IdType.INT if ints else IdType.STRING


def describe_index(
    name: str, info: dict[str, Any], sample: Sampler, config: FieldsConfig
) -> tuple[CollectionSchema, Layout]:
    """Schema and layout of another tool's index from its ``FT.INFO`` reply (as ``pairs``)."""
    definition = pairs(info["index_definition"])
    is_json = text(definition.get("key_type", b"HASH")) == "JSON"
    prefixes = [text(p) for p in definition.get("prefixes", [])] or [""]
    notes: dict[str, Any] = {"prefixes": prefixes}
    layout = Layout(prefixes, prefixes[0] if len(prefixes) == 1 else "", None, {}, {})
    layout.json = is_json
    docs = sample(layout)
    if layout.id_prefix:
        layout.id_prefix = _id_prefix(layout.id_prefix, [k for k, _ in docs])
    attrs: list[tuple[str, str, str, dict[str, Any], set[str]]] = []
    for raw in info["attributes"]:
        a, flags = attribute_info(raw)
        ident, attr, kind = text(a["identifier"]), text(a["attribute"]), text(a["type"])
        if is_json:  # JSON paths: only top-level members ($.x, $.x[*]) map to fields
            top = JSON_TOP.fullmatch(ident)
            if top is None:
                if kind == "VECTOR":
                    raise ConfigError(f"vector path {ident!r} of {name!r} is not top-level")
                notes[f"{ident}.filter"] = "nested JSON path: not filterable here"
                continue
            ident = top.group(1)
        attrs.append((ident, attr, kind, a, flags))
    vectors = _vectors(name, attrs, config, layout, notes)
    names = list(dict.fromkeys([a[0] for a in attrs] + [k for _, d in docs for k in d]))
    texts = [ident for ident, _, kind, _, _ in attrs if kind == "TEXT"]
    layout.doc_field = pick_column(
        name,
        "text",
        "document_field",
        config.document_field,
        DOCUMENT_NAMES,
        texts if config.document_field is None else names,
        required=False,
    )
    id_type = IdType.STRING
    if config.id_field is not None:
        id_type = _id_field(name, config.id_field, names, attrs, docs, layout, notes)
    taken = {layout.doc_field, layout.id_field, *layout.skip, *(v.name for v in vectors)}
    metadata: list[MetadataField] = []
    for ident, attr, kind, a, flags in attrs:
        if kind == "VECTOR" or ident in taken:
            continue
        mtype: MetadataType = "float64" if kind == "NUMERIC" else "string"
        metadata.append(MetadataField(name=ident, type=mtype, indexed=True))
        layout.fields[ident], layout.attrs[ident] = ident, (attr, kind)
        if "INDEXMISSING" in flags:
            layout.missing.add(attr)
        if kind == "TAG" and "CASESENSITIVE" not in flags:
            layout.nocase.add(attr)
        if kind == "TAG" and not is_json:  # 'a,b' is two tags: {f: 'a'} matches it
            notes[f"{ident}.separator"] = text(a.get("SEPARATOR", b","))
    if is_json:
        rows = [{k: v for k, v in d.items() if k not in taken} for _, d in docs]
        metadata = list(infer_metadata_fields(rows))
        layout.fields = {m.name: m.name for m in metadata}
        notes["types"] = "inferred from up to 200 JSON documents"
    if int(info.get("hash_indexing_failures", 0)):
        notes["hash_indexing_failures"] = int(info["hash_indexing_failures"])
    notes.setdefault(
        "types",
        "NUMERIC read as float64, TAG/TEXT as string; unindexed fields in metadata_extra",
    )
    notes["ids"] = (
        f"field {layout.id_field!r}" if layout.id_field else f"keys after {layout.id_prefix!r}"
    )
    schema = CollectionSchema(
        name=name, id_type=id_type, vectors=tuple(vectors), metadata=tuple(metadata),
        has_document=layout.doc_field is not None, engine="redis", engine_settings=notes,
    )  # fmt: skip
    return schema, layout


def _vectors(
    name: str,
    attrs: list[tuple[str, str, str, dict[str, Any], set[str]]],
    config: FieldsConfig,
    layout: Layout,
    notes: dict[str, Any],
) -> list[VectorField]:
    """The VECTOR fields carried (all, or those ``?vector_field=`` names)."""
    have = [(ident, attr) for ident, attr, kind, _, _ in attrs if kind == "VECTOR"]
    if not have:
        raise ConfigError(f"index {name!r} has no VECTOR field")
    wanted = set(config.vector_fields)
    known = {n for pair in have for n in pair}
    missing = sorted(wanted - known)
    if missing:
        raise ConfigError(
            f"index {name!r} has no VECTOR field {missing[0]!r} (vector_field={missing[0]})",
            hint=f"its vector fields: {', '.join(i for i, _ in have)}",
        )
    vectors = []
    for ident, attr, kind, a, _ in attrs:
        if kind != "VECTOR":
            continue
        if wanted and not {ident, attr} & wanted:
            layout.skip.add(ident)
            notes[f"{ident}.skipped"] = "vector field not carried (not named by vector_field)"
            continue
        vectors.append(_vector_field(name, ident, a))
        layout.vector_attrs[ident] = (attr, text(a.get("algorithm", b"FLAT")))
    return vectors


def _id_field(
    name: str,
    field: str,
    names: list[str],
    attrs: list[tuple[str, str, str, dict[str, Any], set[str]]],
    docs: list[tuple[bytes, dict[str, Any]]],
    layout: Layout,
    notes: dict[str, Any],
) -> IdType:
    """Record ids read from ``field`` (``?id_field=``): its id type; its query attribute
    is kept when it is indexed as TAG or NUMERIC, to find a record's key by its id."""
    by_ident = {ident: (attr, kind) for ident, attr, kind, _, _ in attrs}
    if field not in names:
        raise ConfigError(
            f"index {name!r} has no field {field!r} (id_field={field})",
            hint=f"its fields: {', '.join(names)}",
        )
    layout.id_field = field
    attr, kind = by_ident.get(field, ("", ""))
    if kind in ("TAG", "NUMERIC"):
        layout.id_attr = (attr, kind)
    else:
        notes["id.lookup"] = (
            f"{field!r} is not indexed as TAG or NUMERIC: a record with id X is looked for "
            f"at key {layout.id_prefix}X"
        )
    return _id_type([d[field] for _, d in docs if field in d], kind or None)
