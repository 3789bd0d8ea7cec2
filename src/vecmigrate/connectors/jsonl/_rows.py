"""JSON Lines records: which key holds the id, the text, the vectors and the metadata, and
how a run of lines becomes a batch (bad lines become records the copy dead-letters)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.connectors.foreign import METADATA_NAMES, foreign_columns
from vecmigrate.connectors.tabular import (
    LAYOUT_KEY,
    SOURCE_ERROR_KEY,
    VECTOR_NAMES,
    FileConfig,
    placeholder_id,
    vector_field,
    wrong_length,
)
from vecmigrate.errors import ConfigError
from vecmigrate.model import CollectionSchema, IdType, MetadataField
from vecmigrate.records import build_batch, encode_json, infer_metadata_fields, metadata_rows

_orjson: Any
try:  # optional: several times faster on long vectors; comes with several engine clients
    import orjson as _orjson  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover
    _orjson = None


@dataclass(frozen=True)
class RowLayout:
    """Where a JSON object keeps each part of a record. ``fields``: (metadata field, key,
    key inside the metadata object or None for a top-level key)."""

    id: str
    id_kind: Literal["int", "text"]
    document: str | None
    vectors: tuple[str, ...]
    metadata: str | None = None
    fields: tuple[tuple[str, str, str | None], ...] = ()
    # vecmigrate's own layout: every key as ``CollectionSchema.arrow_schema`` names it.
    native: bool = False
    excluded: frozenset[str] = frozenset()

    def settings(self) -> dict[str, Any]:
        """The layout as noted in ``engine_settings``."""
        return {
            "id": self.id,
            "document": self.document,
            "vectors": list(self.vectors),
            "metadata": self.metadata,
            "fields": {f: k if sub is None else f"{k}.{sub}" for f, k, sub in self.fields},
        }


def native_layout(schema: CollectionSchema) -> RowLayout:
    """The layout vecmigrate writes: ``{"id", "namespace", "document", <vectors>,
    <sparse>, "metadata": {...}}``."""
    return RowLayout(
        id="id",
        id_kind="int" if schema.id_type is IdType.INT else "text",
        document="document" if schema.has_document else None,
        vectors=tuple(v.name for v in schema.vectors),
        metadata="metadata",
        fields=tuple((m.name, "metadata", m.name) for m in schema.metadata),
        native=True,
    )


_NUMBER_TYPES = frozenset({int, float})


def loads(raw: bytes) -> Any:
    """One JSON text: orjson when it is installed (several times faster on long vectors),
    else (and for what orjson refuses: NaN literals, integers beyond 64 bits) the standard
    library, which decides what is JSON."""
    if _orjson is not None:
        try:
            return _orjson.loads(raw)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def _is_vector(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 1 and _NUMBER_TYPES.issuperset(map(type, v))


def infer_layout(
    name: str, rows: Sequence[dict[str, Any]], config: FileConfig
) -> tuple[CollectionSchema, RowLayout]:
    """Describe JSON Lines another tool wrote from sampled objects (see ``tabular``)."""
    if not rows:
        raise ConfigError(f"jsonl collection {name!r} holds no JSON object to read a layout from")
    excluded = config.excluded
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in excluded]

    def values(key: str) -> list[Any]:
        return [r[key] for r in rows if r.get(key) is not None]

    # Keys most of whose values are lists of numbers (the rest are read as bad records).
    candidates = [k for k in keys if sum(map(_is_vector, values(k))) * 2 > len(values(k)) > 0]
    stated = list(config.vector_fields)
    for v in stated:
        if v not in candidates:
            raise ConfigError(
                f"jsonl collection {name!r} has no key {v!r} holding vectors (vector_field={v})",
                hint=f"keys holding vectors: {', '.join(candidates) or 'none'}",
            )
    named = [c for c in VECTOR_NAMES if c in candidates]
    chosen = stated or (candidates if len(candidates) == 1 else named[:1])
    if not chosen:
        if not candidates:
            raise ConfigError(
                f"jsonl collection {name!r} has no key holding vectors (lists of numbers)",
                hint=f"name it with ?vector_field=NAME (keys: {', '.join(keys)})",
            )
        raise ConfigError(
            f"jsonl collection {name!r} could keep its vectors in any of {candidates}",
            hint="say which with ?vector_field=NAME (several: ?vector_field=a,b)",
        )
    kinds: dict[str, str] = {}
    for k in keys:
        if k in chosen:
            continue
        vs = values(k)
        if vs and all(isinstance(v, str) for v in vs):
            kinds[k] = "text"
        elif vs and all(isinstance(v, dict) for v in vs):
            kinds[k] = "json"
        elif vs and all(isinstance(v, int) and not isinstance(v, bool) for v in vs):
            kinds[k] = "id"
        elif k in METADATA_NAMES and vs and all(isinstance(v, str) for v in vs):
            kinds[k] = "text"
        else:
            kinds[k] = "other"
    cols = foreign_columns(name, config, kinds)
    id_values = values(cols.id)
    if id_values and all(isinstance(v, int) and not isinstance(v, bool) for v in id_values):
        id_kind: Literal["int", "text"] = "int"
    elif all(isinstance(v, str) for v in id_values):
        id_kind = "text"
    else:
        raise ConfigError(
            f"jsonl collection {name!r} keeps ids in {cols.id!r}, which holds neither only "
            "integers nor only text",
            hint="name another key with ?id_field=NAME",
        )
    if cols.document and kinds.get(cols.document) not in ("text", None):
        raise ConfigError(
            f"jsonl collection {name!r} key {cols.document!r} "
            f"(document_field={cols.document}) is not text"
        )
    if cols.metadata and kinds.get(cols.metadata) != "json":
        raise ConfigError(
            f"jsonl collection {name!r} key {cols.metadata!r} "
            f"(metadata_field={cols.metadata}) does not hold JSON objects"
        )
    taken = {cols.id, cols.document, cols.metadata, *chosen}
    tops = [k for k in keys if k not in taken]
    fields: list[tuple[str, str, str | None]] = [(k, k, None) for k in tops]
    flat = []
    for r in rows:
        obj = {k: r[k] for k in tops if k in r}
        meta = r.get(cols.metadata) if cols.metadata else None
        if isinstance(meta, dict):
            for key, value in meta.items():
                obj[f"{cols.metadata}.{key}" if key in tops else key] = value
        flat.append(obj)
    if cols.metadata:
        inner = {k for r in rows for k in (r.get(cols.metadata) or {})}
        fields += [
            (f"{cols.metadata}.{k}" if k in tops else k, cols.metadata, k)
            for k in sorted(inner)
            if f"{cols.metadata}.{k}" not in excluded
        ]
    metadata: tuple[MetadataField, ...] = infer_metadata_fields(flat)
    known = {f for f, _, _ in fields}
    metadata = tuple(m for m in metadata if m.name in known)
    layout = RowLayout(
        id=cols.id,
        id_kind=id_kind,
        document=cols.document,
        vectors=tuple(chosen),
        metadata=cols.metadata,
        fields=tuple(fields),
        excluded=excluded,
    )
    notes: dict[str, Any] = {LAYOUT_KEY: layout.settings()}
    vectors = []
    for v in chosen:
        good = [x for x in values(v) if _is_vector(x)]
        lengths = [len(x) for x in good]
        dim = max(set(lengths), key=lengths.count)
        sample = np.array([x for x in good if len(x) == dim], dtype=np.float64)
        vectors.append(vector_field(v, dim, sample, config, "jsonl", notes))
    schema = CollectionSchema(
        name=name,
        id_type=IdType.INT if id_kind == "int" else IdType.STRING,
        vectors=tuple(vectors),
        metadata=metadata,
        has_document=cols.document is not None,
        engine="jsonl",
        engine_settings=notes,
    )
    return schema, layout


def rows_to_batch(
    lines: Sequence[tuple[int, bytes]],
    layout: RowLayout,
    schema: CollectionSchema,
    where: str,
) -> pa.RecordBatch:
    """Lines (number, bytes) as a batch in ``schema``'s layout; a line no engine could take
    becomes a NaN-vector record saying why (``connectors/tabular``)."""
    n = len(lines)
    ids: list[Any] = [None] * n
    docs: list[str | None] = [None] * n
    metas: list[dict[str, Any] | None] = [None] * n
    namespaces: list[str | None] = [None] * n
    sparse: dict[str, list[Any]] = {s.name: [None] * n for s in schema.sparse}
    matrices = {v.name: np.full((n, v.dim), np.nan, dtype=np.float32) for v in schema.vectors}
    bad: dict[int, str] = {}
    where_field = {f: (k, sub) for f, k, sub in layout.fields}
    by_inner: dict[str, str] = {}
    for f, (k, sub) in where_field.items():
        if k == layout.metadata and sub is not None:
            by_inner[sub] = f
    tops = {k: f for f, (k, sub) in where_field.items() if sub is None}
    for i, (number, raw) in enumerate(lines):
        error = _read_line(raw, layout, schema, i, ids, docs, metas, namespaces, sparse, matrices)
        if error is None and ids[i] is None:
            error = f"{layout.id}: no id"
        if error is not None:
            bad[i] = f"{where} line {number}: {error}"
            if ids[i] is None:
                ids[i] = _recover_id(raw, layout)
            if ids[i] is None:
                ids[i] = placeholder_id(layout.id_kind == "int", f"{where} line {number}")
            metas[i] = None
            docs[i] = None
            for v in schema.vectors:
                matrices[v.name][i] = np.nan
        elif not layout.native and metas[i] is not None:
            obj = metas[i] or {}
            moved: dict[str, Any] = {}
            for key, value in obj.items():
                if key in layout.excluded:
                    continue
                if key in tops:
                    moved[tops[key]] = value
                elif key == layout.metadata and isinstance(value, dict):
                    for inner, item in value.items():
                        name = str(inner)  # JSON object keys are text
                        moved[by_inner.get(name, name)] = item
                else:
                    moved[key] = value
            metas[i] = moved
    batch = build_batch(
        schema,
        pa.array(ids, schema.id_arrow_type()),
        matrices,
        documents=docs if schema.has_document else None,
        metadata=metas,
        namespaces=namespaces if schema.namespaces is not None else None,
        sparse=sparse or None,
        explicit_nulls=layout.native,
    )
    if not bad:
        return batch
    extra = batch.column("metadata_extra").to_pylist()
    for row, error in bad.items():
        obj = json.loads(extra[row]) if extra[row] else {}
        obj[SOURCE_ERROR_KEY] = error
        extra[row] = encode_json(obj)
    index = batch.schema.get_field_index("metadata_extra")
    return batch.set_column(index, "metadata_extra", pa.array(extra, pa.string()))


def _recover_id(raw: bytes, layout: RowLayout) -> Any:
    """The id of a line that is not valid JSON, when its id key is still readable."""
    key = re.escape(json.dumps(layout.id))
    value = r'"(?:[^"\\]|\\.)*"' if layout.id_kind == "text" else r"-?[0-9]+(?![0-9.eE])"
    found = re.search(key.encode() + rb"\s*:\s*(" + value.encode() + rb")", raw)
    if found is None:
        return None
    try:
        rid = json.loads(found.group(1))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if layout.id_kind == "int" and not -(2**63) <= rid < 2**63:
        return None
    return rid


def _read_line(
    raw: bytes,
    layout: RowLayout,
    schema: CollectionSchema,
    i: int,
    ids: list[Any],
    docs: list[str | None],
    metas: list[dict[str, Any] | None],
    namespaces: list[str | None],
    sparse: dict[str, list[Any]],
    matrices: dict[str, np.ndarray],
) -> str | None:
    """Fill row ``i`` from one line; the reason when no engine could take it."""
    try:
        obj = loads(raw)
    except UnicodeDecodeError as exc:
        return f"not UTF-8 ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc})"
    if not isinstance(obj, dict):
        return f"not a JSON object but {type(obj).__name__}"
    rid = obj.pop(layout.id, None)
    if rid is not None:
        if layout.id_kind == "int":
            if not isinstance(rid, int) or isinstance(rid, bool) or not -(2**63) <= rid < 2**63:
                return f"id {rid!r} is not an integer like the others ({layout.id})"
        elif not isinstance(rid, str):
            return f"id {rid!r} is not text like the others ({layout.id})"
    ids[i] = rid
    for v in schema.vectors:
        value = obj.pop(v.name, None)
        if value is None:
            return f"{v.name}: no vector"
        if not isinstance(value, list) or not _NUMBER_TYPES.issuperset(map(type, value)):
            return f"{v.name}: not a list of numbers"
        if len(value) != v.dim:
            return f"{v.name}: {wrong_length(len(value), v.dim)}"
        try:
            matrices[v.name][i] = value
        except OverflowError:
            return f"{v.name}: a value is out of range"
    if layout.document:
        doc = obj.pop(layout.document, None)
        if doc is not None and not isinstance(doc, str):
            return f"{layout.document}: not text"
        docs[i] = doc
    if layout.native:
        ns = obj.pop("namespace", None)
        if ns is not None and not isinstance(ns, str):
            return "namespace: not text"
        namespaces[i] = ns
        for s in schema.sparse:
            sparse[s.name][i] = obj.pop(s.name, None)
        meta = obj.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            return "metadata: not a JSON object"
        metas[i] = meta
        return None
    for key in layout.vectors:
        obj.pop(key, None)
    metas[i] = obj
    return None


def _vector_texts(col: pa.Array) -> list[str]:
    """Each vector as JSON text, values in their shortest float32 form."""
    flat = col.flatten()
    text = flat.cast(pa.string())
    for arrow_text, json_text in (("-0", "-0.0"), ("nan", "NaN"), ("inf", "Infinity")):
        text = pc.if_else(pc.equal(text, arrow_text), json_text, text)
    text = pc.if_else(pc.equal(text, "-inf"), "-Infinity", text)
    dim = col.type.list_size
    offsets = pa.array(np.arange(0, len(flat) + 1, dim, dtype=np.int32)) if dim else None
    assert offsets is not None
    lists = pa.ListArray.from_arrays(offsets, text)
    joined = pc.binary_join(lists, ",").to_pylist()
    nulls = col.is_null().to_pylist()
    return ["null" if null else f"[{j}]" for j, null in zip(joined, nulls, strict=True)]


def encode_lines(batch: pa.RecordBatch, schema: CollectionSchema) -> list[str]:
    """A batch in the collection's layout as JSON Lines (no newlines), in vecmigrate's
    layout: ids, documents and metadata as JSON, vectors as shortest float32 text."""
    n = batch.num_rows
    names = batch.schema.names
    ids = batch.column("id").to_pylist()
    parts: list[list[str]] = [[f'"id":{json.dumps(rid, ensure_ascii=False)}'] for rid in ids]
    if "namespace" in names:
        for p, ns in zip(parts, batch.column("namespace").to_pylist(), strict=True):
            p.append(f'"namespace":{json.dumps(ns, ensure_ascii=False)}')
    if schema.has_document:
        for p, doc in zip(parts, batch.column("document").to_pylist(), strict=True):
            p.append(f'"document":{json.dumps(doc, ensure_ascii=False)}')
    for v in schema.vectors:
        key = json.dumps(v.name)
        for p, text in zip(parts, _vector_texts(batch.column(v.name)), strict=True):
            p.append(f"{key}:{text}")
    for s in schema.sparse:
        key = json.dumps(s.name)
        for p, value in zip(parts, batch.column(s.name).to_pylist(), strict=True):
            p.append(f"{key}:{json.dumps(value)}")
    metas = metadata_rows(batch, schema) if n else []
    for p, meta in zip(parts, metas, strict=True):
        p.append(f'"metadata":{json.dumps(meta, ensure_ascii=False, sort_keys=True)}')
    return ["{" + ",".join(p) + "}" for p in parts]
