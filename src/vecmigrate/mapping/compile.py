"""Compiling a mapping: source schema + mapping file + target capabilities -> the target
schema and every decision with its reason (SchemaMismatchError when one is needed)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from vecmigrate.errors import SchemaMismatchError
from vecmigrate.mapping.embed import Embedder, SentenceTransformerEmbedder
from vecmigrate.mapping.reshape import namespace_fields, reshape_fields
from vecmigrate.mapping.spec import MappingSpec
from vecmigrate.mapping.transform import Mapping
from vecmigrate.mapping.vectors import (
    index_decision,
    metric_decision,
    sparse_decision,
    stated_metric,
)
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    EmbeddingProvenance,
    FullTextField,
    IdType,
    MetadataField,
    VectorField,
)


def _dropped(spec: MappingSpec, name: str) -> bool:
    """The mapping leaves vector (or sparse, full-text, uncarried) field ``name`` behind."""
    vspec = spec.vectors.get(name)
    return bool(vspec and vspec.drop)


def refuse_uncarried(source: CollectionSchema, spec: MappingSpec, mapping: Mapping) -> None:
    """Refuse a field the source has and no copy can carry (``CollectionSchema.uncarried``)
    unless the mapping drops it by name: leaving it behind is the user's decision."""
    kept = [n for n in source.uncarried if not _dropped(spec, n)]
    if kept:
        name = kept[0]
        raise SchemaMismatchError(
            f"{source.name!r}: vector field {name!r} cannot be carried: {source.uncarried[name]}",
            hint=f"leave it behind explicitly: vectors: {{{name}: {{drop: true}}}} in the mapping",
        )
    left = source.uncarried.items()
    mapping.decisions += [f"{n}: left behind (mapping): {why}" for n, why in left]


def reading_schema(source: CollectionSchema, spec: MappingSpec | None) -> CollectionSchema:
    """``source`` as a copy reads it: the vector fields whose wider values (float64) the
    mapping lets it round to float32 (``round_to_float32``) marked ``rounded``."""
    if spec is None or not any(v.round_to_float32 for v in spec.vectors.values()):
        return source
    vectors = tuple(
        v.model_copy(update={"rounded": True})
        if v.name in spec.vectors and spec.vectors[v.name].round_to_float32
        else v
        for v in source.vectors
    )
    return source.replace(vectors=vectors)


def full_text_fields(
    source: CollectionSchema, capabilities: Capabilities, spec: MappingSpec, mapping: Mapping
) -> tuple[FullTextField, ...]:
    """The source's full-text search fields the target recreates (its engine computes
    them from the documents); one it cannot recreate is refused unless the mapping
    leaves it behind by name, as the application's keyword search would stop working."""
    kept = []
    for f in source.full_text:
        if _dropped(spec, f.name):
            mapping.decisions.append(f"{f.name}: full-text search over {f.over} left behind")
            continue
        if not capabilities.full_text:
            raise SchemaMismatchError(
                f"{source.name!r}: field {f.name!r} is full-text search the engine "
                f"computes from the {f.over}; the target cannot recreate it",
                hint=f"leave it behind explicitly: vectors: {{{f.name}: {{drop: true}}}} in "
                "the mapping (and search keywords some other way there)",
            )
        kept.append(f)
        mapping.decisions.append(
            f"{f.name}: full-text search over the {f.over} recreated by the target (its "
            "own keyword scoring over the documents, nothing of it copied; another engine's "
            "analyzer settings give way to the target's own)"
        )
    return tuple(kept)


def build_mapping(
    source: CollectionSchema,
    capabilities: Capabilities,
    spec: MappingSpec | None = None,
    *,
    name: str | None = None,
    source_engine: str = "",
    source_uri: str = "",
    embedder: Embedder | None = None,
    sample: list[dict[str, Any]] | None = None,
    fan_out: bool = False,
) -> Mapping:
    """Compile a mapping; SchemaMismatchError when a decision is needed and not given.
    ``fan_out``: the caller routes records to one collection per namespace (copy with
    ``namespaces: {to: collections}``); ``target`` is then the schema each of them gets
    (without namespaces), named here for the pattern's ``{collection}``."""
    spec = spec or MappingSpec()
    mapping = Mapping(source, source, spec)
    tname = name or spec.target_collection or source.name
    id_type = _id_type(source, capabilities, spec, mapping)
    reshaped, flat = reshape_fields(source, spec, mapping.decisions, sample)
    if flat is not None:
        spec = mapping.spec = spec.model_copy(update={"flatten": flat})
    fields = _fields(source.replace(metadata=reshaped), spec, mapping)
    namespaces, metadata = namespace_fields(
        source, capabilities, spec, tuple(fields), mapping.decisions, mapping.warnings, fan_out
    )
    vectors = []
    vector_names = [v.name for v in source.vectors] + [s.name for s in source.sparse]
    if spec.reembed:
        vector_names.append(spec.reembed.field)
    refuse_uncarried(source, spec, mapping)
    full_text = full_text_fields(source, capabilities, spec, mapping)
    named = {*vector_names, *source.uncarried, *(f.name for f in source.full_text)}
    unknown_vectors = sorted(set(spec.vectors) - named)
    if unknown_vectors:
        raise SchemaMismatchError(
            f"the mapping names vector fields {unknown_vectors} that {source.name!r} lacks",
            hint=f"its vector fields: {', '.join(vector_names) or 'none'}",
        )
    for v in source.vectors:
        if spec.reembed and v.name == spec.reembed.replace:
            mapping.decisions.append(f"{v.name}: replaced by a re-embedding ({spec.reembed.model})")
            continue
        vspec = spec.vectors.get(v.name)
        if vspec and vspec.drop:
            mapping.decisions.append(f"{v.name}: dropped (mapping)")
            continue
        if not v.metric_known:
            why = "and its vectors are not unit length"
            v = stated_metric(source.name, v, vspec.metric if vspec else None, "vector field", why)
        want = vspec.metric if vspec and vspec.metric else v.metric
        text, unit = metric_decision(v, want, bool(vspec and vspec.force_metric), capabilities)
        if unit and not (vspec and vspec.normalize):
            mapping.unit_required.add(v.name)
        mapping.decisions.append(text)
        if vspec and vspec.round_to_float32:
            mapping.decisions.append(
                f"{v.name}: values wider than float32 rounded to the nearest float32 (mapping)"
            )
        index, text, warning = index_decision(v, vspec.index if vspec else None, capabilities)
        mapping.decisions.append(text)
        if warning:
            mapping.warnings.append(warning)
        vectors.append(
            v.model_copy(
                update={
                    "name": (vspec.rename if vspec and vspec.rename else v.name),
                    "metric": want,
                    "index": index,
                    "normalized": True if vspec and vspec.normalize else v.normalized,
                    "rounded": False,  # the target holds float32
                }
            )
        )
    embedding = _provenance(source, spec, mapping)
    if spec.reembed:
        new, provenance_entry = _reembed(source, spec, mapping, embedder)
        vectors.append(new)
        embedding += (provenance_entry,)
    if len(vectors) > 1 and not capabilities.named_vectors:
        raise SchemaMismatchError(
            f"{source.name!r} has {len(vectors)} vector fields; the target stores one",
            hint="keep one: drop the others with vectors: {NAME: {drop: true}} "
            "(copy again with another kept to fill a second collection)",
        )
    kept = [s for s in source.sparse if not _dropped(spec, s.name)]
    mapping.decisions += [
        f"{s.name}: sparse field dropped (mapping)" for s in source.sparse if s not in kept
    ]
    if kept and not capabilities.sparse_vectors:
        raise SchemaMismatchError(
            f"the target cannot store the sparse vectors of {source.name!r} "
            f"({', '.join(s.name for s in kept)})",
            hint="drop them explicitly with vectors: {NAME: {drop: true}}",
        )
    sparse = []
    for sp in kept:
        field, text = sparse_decision(source.name, sp, spec.vectors.get(sp.name), capabilities)
        sparse.append(field)
        mapping.decisions.append(text)
    provenance = dict(source.provenance) or {
        "source_engine": source_engine,
        "source_uri": source_uri,
        "source_collection": source.name,
        "copied_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    mapping.target = source.replace(
        name=tname,
        id_type=id_type,
        metadata=tuple(metadata),
        namespaces=namespaces,
        vectors=tuple(vectors),
        sparse=tuple(sparse),
        provenance=provenance,
        embedding=embedding,
        uncarried={},
        full_text=full_text,
    )
    return mapping


def _provenance(
    source: CollectionSchema, spec: MappingSpec, mapping: Mapping
) -> tuple[EmbeddingProvenance, ...]:
    """What made each kept vector field, under its target name (a re-embedded or dropped
    field's entry goes), each named in the decisions: queries must be embedded alike."""
    out = []
    for e in source.embedding:
        if _dropped(spec, e.vector_field) or (
            spec.reembed and e.vector_field == spec.reembed.replace
        ):
            continue
        vspec = spec.vectors.get(e.vector_field)
        name = vspec.rename if vspec and vspec.rename else e.vector_field
        out.append(e.model_copy(update={"vector_field": name}))
        if e.model:
            mapping.decisions.append(
                f"{name}: vectors made by {e.model}; the application's queries must be "
                "embedded with it (kept as provenance)"
            )
    return tuple(out)


def _reembed(
    source: CollectionSchema, spec: MappingSpec, mapping: Mapping, embedder: Embedder | None
) -> tuple[VectorField, EmbeddingProvenance]:
    assert spec.reembed is not None
    r = spec.reembed
    if not source.has_document:
        raise SchemaMismatchError(f"{source.name!r} stores no documents to re-embed")
    if r.field != r.replace and any(v.name == r.field for v in source.vectors):
        raise SchemaMismatchError(
            f"re-embedding into {r.field!r} would overwrite an existing vector",
            hint=f"set replace: {r.field} or choose another field name",
        )
    mapping.embedder = embedder or SentenceTransformerEmbedder(r.model, batch_size=r.batch_size)
    e = mapping.embedder
    mapping.decisions.append(
        f"{r.field}: re-embedded from documents with {e.name} ({e.dim}-d, "
        f"{r.metric.value}); records without text are refused and reported"
    )
    field_ = VectorField(name=r.field, dim=e.dim, metric=r.metric, normalized=True)
    return field_, EmbeddingProvenance(
        vector_field=r.field, model=e.name, version=e.version, dim=e.dim, normalized=True
    )


def _id_type(
    source: CollectionSchema, caps: Capabilities, spec: MappingSpec, mapping: Mapping
) -> IdType:
    strategy = spec.id.strategy
    if strategy in ("uuid5", "hash64") and not spec.id.original_field:
        raise SchemaMismatchError(
            f"id strategy {strategy} needs original_field to keep the original ids"
        )
    target_type = {
        "keep": source.id_type,
        "string": IdType.STRING,
        "uuid5": IdType.UUID,
        "hash64": IdType.INT,
    }[strategy]
    if target_type not in caps.id_types:
        if strategy == "keep" and source.id_type is IdType.INT and IdType.STRING in caps.id_types:
            mapping.spec = spec.model_copy(
                update={"id": spec.id.model_copy(update={"strategy": "string"})}
            )
            mapping.decisions.append("ids: int -> string (the target has no int ids; lossless)")
            return IdType.STRING
        raise SchemaMismatchError(
            f"the target cannot store {target_type.value} ids",
            hint="choose an id strategy (uuid5, hash64) in a mapping file",
        )
    mapping.decisions.append(
        f"ids: {strategy} ({source.id_type.value} -> {target_type.value})"
        + (f", originals in metadata.{spec.id.original_field}" if spec.id.original_field else "")
    )
    return target_type


def _fields(source: CollectionSchema, spec: MappingSpec, mapping: Mapping) -> list[MetadataField]:
    unknown = set(spec.fields) - {m.name for m in source.metadata}
    if unknown:
        raise SchemaMismatchError(
            f"the mapping names fields {sorted(unknown)} that {source.name!r} lacks",
            hint=f"its fields: {', '.join(m.name for m in source.metadata) or 'none'}",
        )
    out = []
    for m in source.metadata:
        fspec = spec.fields.get(m.name)
        if fspec and fspec.drop:
            mapping.decisions.append(f"metadata.{m.name}: dropped")
            continue
        cast = fspec.cast if fspec else None
        if cast in ("date", "timestamp"):
            if m.type not in ("string", "int64"):
                raise SchemaMismatchError(
                    f"metadata.{m.name}: cast {cast} needs ISO text or an int64 epoch, not {m.type}"
                )
            cast = "int64" if m.type == "string" else "string"
        new = m.model_copy(
            update={
                "name": (fspec.rename if fspec and fspec.rename else m.name),
                "type": cast or m.type,
            }
        )
        if fspec:
            mapping.decisions.append(f"metadata.{m.name}: {m.type} -> {new.name} {new.type}")
        out.append(new)
    if spec.id.original_field:
        out.append(MetadataField(name=spec.id.original_field, type="string"))
    names = [m.name for m in out]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise SchemaMismatchError(
            f"the mapping gives several fields the name(s) {clashes}",
            hint="rename or drop one of them",
        )
    return out
