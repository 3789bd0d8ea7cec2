"""A compiled mapping: the target schema, every decision with its reason, and the batch
transform the copy pipeline applies (refusing records, never coercing them silently)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.mapping.casts import CastRefused, cast_value, epoch_to_iso, iso_to_epoch
from vecmigrate.mapping.columns import NeedsRows, map_metadata, needs_rows
from vecmigrate.mapping.embed import Embedder
from vecmigrate.mapping.reshape import (
    FieldRefused,
    flatten_row,
    unflatten_row,
)
from vecmigrate.mapping.spec import MappingSpec
from vecmigrate.model import (
    CollectionSchema,
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
