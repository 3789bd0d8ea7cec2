"""A compiled mapping: the target schema, every decision with its reason, and the batch
transform the copy pipeline applies (refusing records, never coercing them silently)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.errors import SchemaMismatchError
from vecmigrate.mapping.casts import CastRefused, cast_value, epoch_to_iso, iso_to_epoch
from vecmigrate.mapping.columns import NeedsRows, map_metadata, needs_rows
from vecmigrate.mapping.embed import Embedder, SentenceTransformerEmbedder
from vecmigrate.mapping.reshape import (
    FieldRefused,
    flatten_row,
    namespace_fields,
    reshape_fields,
    unflatten_row,
)
from vecmigrate.mapping.spec import MappingSpec
from vecmigrate.mapping.vectors import index_decision, metric_decision
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    EmbeddingProvenance,
    IdType,
    MetadataField,
    VectorField,
)
from vecmigrate.records import metadata_rows, numpy_to_vectors, vectors_to_numpy
from vecmigrate.values import metadata_to_arrow

UNIT_TOLERANCE = 1e-3  # |norm - 1| below this counts as unit length


@dataclass
class Refusal:
    """A record the mapping cannot carry, and why."""

    row: int
    field: str
    reason: str


@dataclass
class Mapping:
    """Source schema + spec + target capabilities, compiled."""

    source: CollectionSchema
    target: CollectionSchema
    spec: MappingSpec
    decisions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unit_required: set[str] = field(default_factory=set)
    embedder: Embedder | None = None
    _hashes: dict[int, str] = field(default_factory=dict)

    @property
    def is_identity(self) -> bool:
        """Batches pass through unchanged (only a lossless layout cast at the end)."""
        s = self.spec
        return (
            s.id.strategy in ("keep", "string")
            and not s.fields
            and not self.unit_required
            and s.reembed is None
            and s.flatten is None
            and s.unflatten is None
            and not (s.namespaces and (s.namespaces.to == "field" or s.namespaces.from_))
            and not any(v.normalize or v.rename or v.drop for v in s.vectors.values())
        )

    # -- the transform ---------------------------------------------------------------------
    def apply(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[Refusal]]:
        """The batch in the target's layout, plus the rows it refused (left out).

        Columns are mapped whole (``columns.py``); a batch whose metadata must be
        reshaped record by record takes ``_metadata_rows``.
        """
        if self.is_identity:
            return batch, []
        refusals: list[Refusal] = []
        ids = self._map_ids(batch.column("id"), refusals)
        id_refusals = len(refusals)
        try:
            if needs_rows(self, batch):
                raise NeedsRows("layout")
            meta, extra, namespaces = map_metadata(self, batch, refusals)
        except NeedsRows:
            del refusals[id_refusals:]
            meta, extra, namespaces = self._metadata_rows(batch, refusals)
        vectors = self._vectors(batch, refusals)
        if self.spec.reembed and self.embedder:
            vectors[self.spec.reembed.field] = self._embed(batch, refusals)
        n, names = batch.num_rows, batch.schema.names
        arrays: list[pa.Array] = []
        for f in self.target.arrow_schema():
            if f.name == "id":
                column = ids
            elif f.name == "metadata":
                column = meta
            elif f.name == "metadata_extra":
                column = extra
            elif f.name == "namespace":
                column = namespaces
            elif f.name in vectors:
                column = vectors[f.name]
            else:  # document and sparse vectors pass through
                column = batch.column(f.name) if f.name in names else None
            arrays.append(pa.nulls(n, f.type) if column is None else column.cast(f.type))
        out = pa.RecordBatch.from_arrays(arrays, schema=self.target.arrow_schema())
        refusals.sort(key=lambda r: r.row)  # stable: per record, ids, metadata, vectors
        bad = sorted({r.row for r in refusals})
        if bad:
            keep = np.ones(batch.num_rows, bool)
            keep[bad] = False
            out = out.filter(pa.array(keep))
        return out, refusals

    def _metadata_rows(
        self, batch: pa.RecordBatch, refusals: list[Refusal]
    ) -> tuple[pa.Array | None, pa.Array, pa.Array | None]:
        """(metadata, metadata_extra, namespaces) mapped record by record."""
        metas = self._reshape(metadata_rows(batch, self.source), refusals)
        metas = self._map_metadata(metas, refusals)
        names = batch.schema.names
        namespaces = batch.column("namespace").to_pylist() if "namespace" in names else None
        nspec = self.spec.namespaces
        if nspec and nspec.to == "field" and namespaces is not None:
            for meta, ns in zip(metas, namespaces, strict=True):
                if ns is not None:
                    meta[str(nspec.field)] = ns
        elif nspec and nspec.from_ == "field":
            namespaces = [meta.pop(str(nspec.field), None) for meta in metas]
        if self.spec.id.original_field:
            for meta, orig in zip(metas, batch.column("id").to_pylist(), strict=True):
                meta[self.spec.id.original_field] = str(orig)
        # The rows came from metadata_rows: a None there is an explicit null.
        struct, extra = metadata_to_arrow(metas, self.target, explicit_nulls=True)
        return struct, extra, None if namespaces is None else pa.array(namespaces, pa.string())

    def _vectors(self, batch: pa.RecordBatch, refusals: list[Refusal]) -> dict[str, pa.Array]:
        """The kept vector columns under their target names: normalised where the
        mapping says so, rows refused where the target metric needs unit length."""
        vectors = {}
        kept = [
            v
            for v in self.source.vectors
            if not (self.spec.reembed and v.name == self.spec.reembed.replace)
            and not ((vs := self.spec.vectors.get(v.name)) and vs.drop)
        ]
        for src_field, tgt_field in zip(kept, self.target.vectors, strict=False):
            column = batch.column(src_field.name)
            vspec = self.spec.vectors.get(src_field.name)
            normalize = bool(vspec and vspec.normalize)
            if normalize:
                m = vectors_to_numpy(column)
                norms = np.linalg.norm(m, axis=1)
                column = numpy_to_vectors(m / np.where(norms > 0, norms, 1)[:, None])
            elif src_field.name in self.unit_required:
                norms = np.linalg.norm(vectors_to_numpy(column), axis=1)
                for row in np.flatnonzero(np.abs(norms - 1) > UNIT_TOLERANCE):
                    refusals.append(
                        Refusal(
                            int(row),
                            src_field.name,
                            f"norm {norms[row]:.4f} is not 1: {src_field.metric.value} -> "
                            f"{tgt_field.metric.value} needs unit vectors",
                        )
                    )
            vectors[tgt_field.name] = column
        return vectors

    def _embed(self, batch: pa.RecordBatch, refusals: list[Refusal]) -> pa.Array:
        assert self.embedder is not None
        docs = batch.column("document").to_pylist() if "document" in batch.schema.names else []
        docs = docs or [None] * batch.num_rows
        rows = [i for i, d in enumerate(docs) if d and d.strip()]
        for i in sorted(set(range(batch.num_rows)) - set(rows)):
            refusals.append(Refusal(i, "document", "no text to embed"))
        m = np.zeros((batch.num_rows, self.embedder.dim), np.float32)
        if rows:
            m[rows] = self.embedder.embed([docs[i] for i in rows])
        return numpy_to_vectors(m)

    def _reshape(self, rows: list[dict[str, Any]], refusals: list[Refusal]) -> list[dict[str, Any]]:
        flat, unflat = self.spec.flatten, self.spec.unflatten
        if flat is None and unflat is None:
            return rows
        out = []
        for row, meta in enumerate(rows):
            try:
                if flat is not None:
                    meta = flatten_row(meta, set(flat.fields or ()), flat.sep)
                if unflat is not None:
                    meta = unflatten_row(meta, unflat.sep)
            except FieldRefused as exc:
                refusals.append(Refusal(row, exc.field, exc.reason))
            out.append(meta)
        return out

    def map_ids(self, ids: Sequence[Any]) -> list[Any]:
        """The ids these source records get on the target (the id strategy)."""
        return list(ids) if self.is_identity else self._map_ids(pa.array(list(ids)), []).to_pylist()

    def _map_ids(self, column: pa.Array, refusals: list[Refusal]) -> pa.Array:
        strategy = self.spec.id.strategy
        if strategy == "keep":
            return column
        if strategy == "string":
            return pc.cast(column, pa.string())
        ids = column.to_pylist()
        if strategy == "uuid5":
            ns = uuid.UUID(self.spec.id.namespace)
            return pa.array([str(uuid.uuid5(ns, f"{self.source.name}/{i}")) for i in ids])
        out = []
        for row, original in enumerate(ids):
            digest = hashlib.blake2b(str(original).encode(), digest_size=8).digest()
            h = int.from_bytes(digest, "big") & (2**63 - 1)
            seen = self._hashes.setdefault(h, str(original))
            if seen != str(original):
                refusals.append(Refusal(row, "id", f"hash64 collision with id {seen!r}"))
            out.append(h)
        return pa.array(out, pa.int64())

    def _map_metadata(
        self, rows: list[dict[str, Any]], refusals: list[Refusal]
    ) -> list[dict[str, Any]]:
        if not self.spec.fields:
            return rows
        out = []
        for row, meta in enumerate(rows):
            mapped: dict[str, Any] = {}
            for key, value in meta.items():
                fspec = self.spec.fields.get(key)
                if fspec is None:
                    mapped[key] = value
                    continue
                if fspec.drop:
                    continue
                if fspec.cast:
                    try:
                        value = self._cast(key, value, fspec.cast, fspec.unit)
                    except CastRefused as exc:
                        refusals.append(Refusal(row, key, f"cannot cast to {fspec.cast}: {exc}"))
                mapped[fspec.rename or key] = value
            out.append(mapped)
        return out

    def _cast(self, key: str, value: Any, to: str, unit: str) -> Any:
        if to not in ("date", "timestamp"):
            return cast_value(value, to)  # type: ignore[arg-type]
        if value is None:
            return None
        target = self.target.metadata_field(self.spec.fields[key].rename or key)
        if target is not None and target.type == "int64":
            return iso_to_epoch(value, to, unit)
        return epoch_to_iso(value, to, unit)


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
    for v in source.vectors:
        if spec.reembed and v.name == spec.reembed.replace:
            mapping.decisions.append(f"{v.name}: replaced by a re-embedding ({spec.reembed.model})")
            continue
        vspec = spec.vectors.get(v.name)
        if vspec and vspec.drop:
            mapping.decisions.append(f"{v.name}: dropped (mapping)")
            continue
        want = vspec.metric if vspec and vspec.metric else v.metric
        text, unit = metric_decision(v, want, bool(vspec and vspec.force_metric), capabilities)
        if unit and not (vspec and vspec.normalize):
            mapping.unit_required.add(v.name)
        mapping.decisions.append(text)
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
                }
            )
        )
    embedding = tuple(
        e for e in source.embedding if not spec.reembed or e.vector_field != spec.reembed.replace
    )
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
    sparse = []
    for sp in source.sparse:
        if (sspec := spec.vectors.get(sp.name)) and sspec.drop:
            mapping.decisions.append(f"{sp.name}: sparse field dropped (mapping)")
        else:
            sparse.append(sp)
    if sparse and not capabilities.sparse_vectors:
        raise SchemaMismatchError(
            f"the target cannot store the sparse vectors of {source.name!r} "
            f"({', '.join(s.name for s in sparse)})",
            hint="drop them explicitly with vectors: {NAME: {drop: true}}",
        )
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
    )
    return mapping


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
            f"the mapping names fields {sorted(unknown)} that {source.name!r} lacks"
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
