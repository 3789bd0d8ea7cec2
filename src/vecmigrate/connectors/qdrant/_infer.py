"""Describing a Qdrant collection: the metric of every vector is the distance its vector
params say (per named vector, or of the one unnamed vector), and a collection another
tool wrote is read as its payload is laid out (``_layout.Payload``): the text under
``?document_field=`` or a common key (``page_content``, ``text``, ``document`` ...), a
nested metadata object (``metadata`` or ``?metadata_field=``) expanded to typed fields,
the other payload keys as typed fields, int and UUID point ids as they are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qdrant_client import models

from vecmigrate.connectors.foreign import (
    DOCUMENT_NAMES,
    METADATA_NAMES,
    FieldsConfig,
    pick_column,
)
from vecmigrate.connectors.qdrant._layout import LAYOUT_KEY, Payload
from vecmigrate.connectors.qdrant._records import (
    DOC_KEY,
    ID_KEY,
    NS_KEY,
    POINT_IDS_SETTING,
    RESERVED_KEYS,
    canonical_uuid,
)
from vecmigrate.errors import ConfigError
from vecmigrate.model import (
    CollectionSchema,
    IdType,
    IndexSpec,
    MetadataField,
    Metric,
    SparseField,
    VectorField,
)
from vecmigrate.records import infer_metadata_fields

DISTANCE = {
    Metric.COSINE: models.Distance.COSINE,
    Metric.DOT: models.Distance.DOT,
    Metric.L2: models.Distance.EUCLID,
}
_METRIC = {v: k for k, v in DISTANCE.items()}


def vector_params(info: Any) -> dict[str, Any]:
    """The collection's dense vector params by name (``""``: its one unnamed vector)."""
    params = info.config.params.vectors
    return dict(params) if isinstance(params, dict) else {"": params}


def hnsw_index(info: Any, params: Any) -> IndexSpec:
    """A vector's HNSW settings (its own over the collection's), under portable names;
    ``m = 0`` builds no graph: every search scans (flat)."""
    base, own = info.config.hnsw_config, getattr(params, "hnsw_config", None)
    m = own.m if own is not None and own.m is not None else base.m
    ef = own.ef_construct if own is not None and own.ef_construct is not None else base.ef_construct
    if m == 0:
        return IndexSpec(kind="flat")
    return IndexSpec(kind="hnsw", params={"M": int(m), "ef_construction": int(ef)})


# The payload index Qdrant keeps for a metadata field of each portable type (a list is
# indexed by its elements' type); a JSON field has none.
PAYLOAD_INDEX: dict[str, str] = {
    "string": "keyword",
    "list<string>": "keyword",
    "int64": "integer",
    "list<int64>": "integer",
    "float64": "float",
    "list<float64>": "float",
    "bool": "bool",
}


def indexed_payload(schema: CollectionSchema, indexed: set[str]) -> CollectionSchema:
    """``schema``'s metadata fields marked indexed where a payload index (``indexed``: the
    payload key paths Qdrant has one on) serves filters on them; the index that is there
    is the truth."""
    keys = (Payload.of(schema.engine_settings) or Payload()).keys()
    metadata = tuple(
        m.model_copy(update={"indexed": keys.get(m.name, m.name) in indexed})
        for m in schema.metadata
    )
    return schema.replace(metadata=metadata)


def _metric(name: str, vector: str, distance: Any) -> tuple[Metric, str]:
    served = _METRIC.get(distance)
    if served is None:
        raise ConfigError(
            f"Qdrant collection {name!r} searches {vector or 'its vector'!r} with "
            f"{distance} distance, which vecmigrate has no metric for"
        )
    which = f"vector {vector!r}" if vector else "the unnamed vector"
    value = getattr(distance, "value", distance)
    return served, f"the collection's vector params ({which}: distance {value})"


def _idf(params: Any) -> bool:
    """Whether a sparse vector's params weight it by IDF (``Modifier.IDF``)."""
    return getattr(getattr(params, "modifier", None), "value", None) == "idf"


def served_metrics(schema: CollectionSchema, info: Any) -> CollectionSchema:
    """``schema`` (as vecmigrate recorded it) with each vector's metric as the collection
    is configured to search (a collection recreated with the recorded schema but another
    distance searches with that one); a disagreement is noted in ``engine_settings``."""
    named = vector_params(info)
    unnamed = schema.engine_settings.get("unnamed_vector")
    settings = dict(schema.engine_settings)
    vectors = []
    for v in schema.vectors:
        got = named.get("" if unnamed else v.name)
        if got is None:
            vectors.append(v)
            continue
        served, _ = _metric(schema.name, v.name, got.distance)
        if served is not v.metric:
            settings[f"{v.name}.metric"] = (
                f"{served.value} from the collection's vector config; vecmigrate recorded "
                f"{v.metric.value} (the collection was changed outside vecmigrate)"
            )
            v = v.model_copy(update={"metric": served})
        vectors.append(v)
    return schema.replace(engine="qdrant", vectors=tuple(vectors), engine_settings=settings)


def _kinds(payloads: list[dict[str, Any]]) -> dict[str, str]:
    """Each top-level payload key: ``text`` (strings only), ``json`` (objects only) or
    ``other``."""
    seen: dict[str, set[str]] = {}
    for p in payloads:
        for k, v in p.items():
            if v is not None:
                kind = "text" if isinstance(v, str) else "json" if isinstance(v, dict) else "x"
                seen.setdefault(k, set()).add(kind)
            else:
                seen.setdefault(k, set())
    return {k: next(iter(s)) if len(s) == 1 else "other" for k, s in seen.items()}


def _layout(
    name: str, payloads: list[dict[str, Any]], config: FieldsConfig
) -> tuple[Payload, tuple[MetadataField, ...]]:
    """The payload layout of a foreign collection and its typed metadata fields."""
    if config.id_field is not None:
        raise ConfigError(
            f"Qdrant collection {name!r}: records are keyed by their point ids "
            f"(id_field={config.id_field} cannot name a payload key)",
            hint="drop id_field",
        )
    if not payloads:  # empty: only what the URI says
        return Payload(document=config.document_field, metadata=config.metadata_field), ()
    kinds = {k: v for k, v in _kinds(payloads).items() if k not in RESERVED_KEYS}
    names = list(kinds)
    texts = [k for k in names if kinds[k] == "text"]
    doc = pick_column(
        name,
        "text",
        "document_field",
        config.document_field,
        DOCUMENT_NAMES,
        texts if config.document_field is None else names,
        required=False,
    )
    objects = [k for k in names if kinds[k] == "json"]
    meta = pick_column(
        name,
        "metadata",
        "metadata_field",
        config.metadata_field,
        METADATA_NAMES,
        objects if config.metadata_field is None else names,
        required=False,
    )
    if meta is not None and kinds[meta] != "json":
        raise ConfigError(
            f"Qdrant collection {name!r} payload key {meta!r} (metadata_field={meta}) "
            "does not hold objects"
        )
    tops = [{k: v for k, v in p.items() if k in kinds and k not in (doc, meta)} for p in payloads]
    typed = list(infer_metadata_fields(tops))
    fields: list[tuple[str, str | None, str]] = [(m.name, None, m.name) for m in typed]
    if meta is not None:
        taken = {m.name for m in typed}
        nested: list[dict[str, Any]] = [
            p[meta] if isinstance(p.get(meta), dict) else {} for p in payloads
        ]
        for m in infer_metadata_fields(nested):
            fname = f"{meta}.{m.name}" if m.name in taken else m.name
            typed.append(m.model_copy(update={"name": fname}))
            fields.append((fname, meta, m.name))
    return Payload(document=doc, metadata=meta, fields=tuple(fields)), tuple(typed)


def _id_type(points: list[Any], payloads: Sequence[Mapping[str, Any]]) -> tuple[IdType, bool]:
    """(id type, whether record ids are the point ids themselves)."""
    # A point without vecmigrate's original-id key (or whose key repeats its own id)
    # holds its record under its own id: hashing that id again would address a point
    # that does not exist. Only collections vecmigrate filled alone hash every id.
    rids = [pl.get(ID_KEY, p.id) for p, pl in zip(points, payloads, strict=True)]
    own = [r == p.id for r, p in zip(rids, points, strict=True)]
    native = not points or any(own)
    if all(isinstance(r, int) for r in rids) and all(own):
        return IdType.INT, native
    if native and all(canonical_uuid(r) for r in rids):
        return IdType.UUID, native
    return IdType.STRING, native


def infer_schema(name: str, info: Any, points: list[Any], config: FieldsConfig) -> CollectionSchema:
    """Describe a collection vecmigrate did not create from its config and up to 1000
    sampled points (module doc)."""
    named = vector_params(info)
    chosen = list(config.vector_fields) or list(named)
    settings: dict[str, Any] = {"unnamed_vector": "" in named}
    vectors = []
    uncarried = {}
    for n in chosen:
        if n not in named:
            raise ConfigError(
                f"Qdrant collection {name!r} has no vector {n!r} (vector_field={n})",
                hint=f"its vectors: {', '.join(repr(k) for k in named)}",
            )
        multi = getattr(named[n], "multivector_config", None)
        if multi is not None:  # a list of vectors per point, scored by late interaction
            comparator = getattr(multi.comparator, "value", multi.comparator)
            uncarried[n or "vector"] = (
                f"a Qdrant multivector ({named[n].size}-d vectors, several per point, scored "
                f"by {comparator}: late interaction such as ColBERT); the portable model "
                "carries one vector per field"
            )
            continue
        metric, source = _metric(name, n, named[n].distance)
        vectors.append(
            VectorField(
                name=n or "vector",
                dim=named[n].size,
                metric=metric,
                index=hnsw_index(info, named[n]),
                metric_source=source,
            )
        )
    for n in named:
        if n not in chosen:
            settings[f"{n}.skipped"] = "vector not carried (not named by vector_field)"
    payloads = [dict(p.payload or {}) for p in points]
    layout, metadata = _layout(name, payloads, config)
    namespaces = sorted({p[NS_KEY] for p in payloads if NS_KEY in p})
    id_type, native = _id_type(points, payloads)
    if native:
        settings[POINT_IDS_SETTING] = "native"
    settings[LAYOUT_KEY] = layout.settings()
    has_doc = layout.document is not None or any(DOC_KEY in p for p in payloads)
    return CollectionSchema(
        name=name,
        id_type=id_type,
        vectors=tuple(vectors),
        sparse=tuple(
            SparseField(name=n, modifier="idf" if _idf(p) else None)
            for n, p in (info.config.params.sparse_vectors or {}).items()
        ),
        metadata=metadata,
        has_document=has_doc,
        namespaces=tuple(namespaces) if namespaces else None,
        engine="qdrant",
        engine_settings=settings,
        uncarried=uncarried,
    )


def reuse_schema(schema: CollectionSchema, have: CollectionSchema) -> CollectionSchema:
    """What records described by ``schema`` are written into an existing collection
    described as ``have`` with: a collection vecmigrate made, as it is; another tool's,
    ``schema`` in the collection's own vectors (one unnamed vector takes the records' one
    vector, whatever its name) and payload layout. ConfigError, before the first write,
    naming each vector that does not fit."""
    if LAYOUT_KEY not in have.engine_settings:
        return have
    theirs = {v.name: v for v in have.vectors}
    unnamed = bool(have.engine_settings.get("unnamed_vector"))
    problems = []
    if unnamed and len(schema.vectors) != 1:
        problems.append(f"it holds one unnamed vector, the records {len(schema.vectors)}")
    for v in schema.vectors:
        got = have.vectors[0] if unnamed else theirs.get(v.name)
        if got is None:
            problems.append(f"no vector {v.name!r} (it has {', '.join(map(repr, theirs))})")
        elif got.dim != v.dim:
            problems.append(f"vector {got.name!r} holds {got.dim} dimensions, not {v.dim}")
        elif got.metric is not v.metric:
            problems.append(
                f"vector {got.name!r} is searched with {got.metric.value}, "
                f"the records' {v.name!r} with {v.metric.value}"
            )
    sparse = {s.name for s in have.sparse}
    problems += [f"no sparse vector {s.name!r}" for s in schema.sparse if s.name not in sparse]
    if problems:
        raise ConfigError(
            f"Qdrant collection {have.name!r} cannot take these records as it is: "
            f"{'; '.join(problems)}; nothing was written",
            hint="rename or map the vectors in a mapping file, or copy into a new collection",
        )
    return schema.replace(name=have.name, engine="qdrant", engine_settings=have.engine_settings)
