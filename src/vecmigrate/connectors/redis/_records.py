"""Arrow batches to and from Redis hashes / JSON documents, used only by ``connectors/redis.py``.

Hash fields hold text: bools as ``true``/``false``, numbers as their shortest repr, lists
joined with U+001F (the TAG separator), json metadata as JSON text, vectors as FLOAT32 bytes
(little endian, as RediSearch reads them). Values that do not fit a field's type go to
``__vm_extra`` as JSON. JSON documents (other tools' indexes) keep native JSON types.

RediSearch trims whitespace around TAG values and splits them at the separator, so a
string (or list element) with surrounding whitespace, the separator, or an empty list
element could not be matched exactly by a filter: such records are refused by name.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.redis._schema import EXTRA, SEP, Layout, pairs
from vecmigrate.errors import DataError
from vecmigrate.model import CollectionSchema, IdType, MetadataField
from vecmigrate.records import build_batch, encode_json, metadata_rows, vectors_to_numpy

_TRIMMED = " \t\n\v\f\r"  # what RediSearch strips around TAG values


def hash_rows(
    name: str, schema: CollectionSchema, layout: Layout, batch: pa.RecordBatch
) -> list[list[Any]]:
    """Each record of a conformed batch as flat ``[field, value, ...]`` HSET arguments."""
    ids = batch.column("id").to_pylist()
    rows: list[list[Any]] = [[] for _ in ids]
    if schema.has_document and layout.doc_field:
        for row, doc in zip(rows, batch.column("document").to_pylist(), strict=True):
            if doc is not None:
                row += [layout.doc_field, doc.encode()]
    for v in schema.vectors:
        m = np.ascontiguousarray(vectors_to_numpy(batch.column(v.name)), dtype="<f4")
        blob, width = m.tobytes(), 4 * v.dim
        for i, row in enumerate(rows):
            row += [v.name, blob[i * width : (i + 1) * width]]
    typed = {m.name: m for m in schema.metadata}
    for i, meta in enumerate(metadata_rows(batch, schema)):
        extra: dict[str, Any] = {}
        for key, value in meta.items():
            f = typed.get(key)
            if f is None or key not in layout.fields or value is None:
                extra[key] = value  # an explicit null too: a hash field cannot hold one
                continue
            text = _encode(value, f, name, ids[i])
            rows[i] += [layout.fields[key], text]
            if not _same(_decode(text, f.type, name, ids[i], key), value):
                extra[key] = value  # e.g. an int in a float64 field: indexed, and kept as is
        if extra:
            rows[i] += [EXTRA, encode_json(extra)]
    return rows


def json_bodies(
    name: str, schema: CollectionSchema, layout: Layout, batch: pa.RecordBatch
) -> list[str]:
    """Each record of a conformed batch as a whole JSON document (vectors as number arrays)."""
    ids = batch.column("id").to_pylist()
    docs = batch.column("document").to_pylist() if schema.has_document else [None] * len(ids)
    vectors = {v.name: vectors_to_numpy(batch.column(v.name)).tolist() for v in schema.vectors}
    bodies = []
    for i, meta in enumerate(metadata_rows(batch, schema)):
        body = {**meta, **{n: vs[i] for n, vs in vectors.items()}}
        if layout.id_field is not None:
            body[layout.id_field] = ids[i]
        if docs[i] is not None and layout.doc_field:
            body[layout.doc_field] = docs[i]
        try:
            bodies.append(json.dumps(body, allow_nan=False))
        except ValueError:
            raise DataError("NaN or infinity in JSON", collection=name, record_id=ids[i]) from None
    return bodies


def records_to_batch(
    name: str, schema: CollectionSchema, layout: Layout, keys: list[bytes], raws: list[Any]
) -> pa.RecordBatch:
    """HGETALL / JSON.GET replies of ``keys`` as one batch; empty replies are skipped."""
    ids: list[Any] = []
    docs: list[str | None] = []
    metas: list[dict[str, Any]] = []
    vecs: dict[str, list[bytes]] = {v.name: [] for v in schema.vectors}
    cut = len(layout.id_prefix.encode())
    types = {m.name: m.type for m in schema.metadata}
    for key, raw in zip(keys, raws, strict=True):
        if not raw:
            continue  # missing (fetch) or deleted since SCAN listed it
        h = json.loads(raw) if layout.json else pairs(raw)
        if not isinstance(h, dict):
            raise DataError("not a JSON object", collection=name, record_id=key.decode())
        rid: Any = key[cut:].decode()
        if layout.id_field is not None:
            rid = h.pop(layout.id_field, None)
            rid = rid.decode(errors="replace") if isinstance(rid, bytes) else rid
            if rid is None:
                raise DataError(
                    f"no id field {layout.id_field!r}", collection=name, record_id=key.decode()
                )
            rid = rid if schema.id_type is IdType.INT else str(rid)
        for skipped in layout.skip:
            h.pop(skipped, None)
        if schema.id_type is IdType.INT:
            try:
                rid = int(rid)
            except ValueError:
                raise DataError(
                    "key does not end in an int id", collection=name, record_id=rid
                ) from None
        for v in schema.vectors:
            blob = h.pop(v.name, None)
            if layout.json and isinstance(blob, list) and len(blob) == v.dim:
                blob = np.asarray(blob, dtype="<f4").tobytes()
            if not isinstance(blob, bytes) or len(blob) != 4 * v.dim:
                got = "no vector" if blob is None else f"{str(blob)[:40]}"
                raise DataError(
                    f"{got}: expected {v.dim} FLOAT32 values",
                    collection=name,
                    record_id=rid,
                    field=v.name,
                )
            vecs[v.name].append(blob)
        doc = h.pop(layout.doc_field, None) if layout.doc_field else None
        ids.append(rid)
        if layout.json:  # typed already; build_batch files what does not fit as extra
            docs.append(doc if isinstance(doc, str) or doc is None else encode_json(doc))
            metas.append(h)
            continue
        extra: dict[str, Any] = json.loads(h.pop(EXTRA)) if EXTRA in h else {}
        meta: dict[str, Any] = {}
        for mname, hfield in layout.fields.items():
            if hfield in h:
                meta[mname] = _decode(h.pop(hfield), types[mname], name, rid, mname)
        for leftover, value in h.items():  # fields no schema names: kept, never dropped
            meta[leftover] = _decode(value, "string", name, rid, leftover)
        meta.update(extra)  # the value as written where the hash field could not say it
        docs.append(None if doc is None else _decode(doc, "string", name, rid, "document"))
        metas.append(meta)
    arrays = {
        v.name: np.frombuffer(b"".join(vecs[v.name]), dtype="<f4").reshape(len(ids), v.dim)
        for v in schema.vectors
    }
    return build_batch(
        schema,
        ids,
        arrays,
        documents=docs if schema.has_document else None,
        metadata=metas,
        explicit_nulls=True,  # a null is kept (JSON null, or in the extra field of a hash)
    )


def _same(a: Any, b: Any) -> bool:
    """Equal in value and in type (3 is not 3.0, True is not 1), lists element-wise."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _encode(value: Any, f: MetadataField, name: str, rid: Any) -> bytes:
    """A typed metadata value as hash field text; refuses what TAG indexing would alter."""
    if f.type == "json":
        return encode_json(value).encode()
    if f.type == "bool":
        return b"true" if value else b"false"
    if f.type == "int64":
        return str(int(value)).encode()
    if f.type == "float64":
        if value != value:  # RediSearch leaves a document with a NaN NUMERIC out of the index
            raise DataError(
                "NaN cannot be indexed as NUMERIC", collection=name, record_id=rid, field=f.name
            )
        return repr(float(value)).encode()
    items = value if f.type.startswith("list<") else [value]
    if f.type == "list<int64>":
        items = [str(int(x)) for x in items]
    elif f.type == "list<float64>":
        items = [repr(float(x)) for x in items]
    for x in items:
        if SEP in x or x != x.strip(_TRIMMED) or (x == "" and f.type.startswith("list<")):
            raise DataError(
                "RediSearch TAG values cannot start or end with whitespace, contain U+001F, "
                "or be empty list elements (filters could not match them exactly)",
                collection=name,
                record_id=rid,
                field=f.name,
                hint="strip the value with a mapping, or map the field to json",
            )
    return SEP.join(items).encode()


def _decode(raw: bytes, mtype: str, name: str, rid: Any, fname: str) -> Any:
    """Hash field text as a value of metadata type ``mtype`` (the inverse of ``_encode``)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise DataError(
            "hash field is not UTF-8 text", collection=name, record_id=rid, field=fname
        ) from None
    if mtype == "string":
        return text
    if mtype == "json":
        return json.loads(text)
    if mtype == "bool":
        return text == "true"
    if mtype == "int64":
        return int(text)
    if mtype == "float64":
        return float(text)
    parts = text.split(SEP) if text else []
    if mtype == "list<int64>":
        return [int(x) for x in parts]
    if mtype == "list<float64>":
        return [float(x) for x in parts]
    return parts
