"""Qdrant payloads, point ids and filters (used only by ``connectors.qdrant``).

Reserved payload keys carry what Qdrant has no place for: the original id of a string-id
record (points take only unsigned ints and UUIDs), the document and the namespace.
Portable filters compile to Qdrant conditions with vecmigrate's exact semantics.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
from qdrant_client import models

from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import NAMESPACE_KEY, Bool, Cond, Node
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.records import (
    build_batch,
    encode_json,
    metadata_rows,
    numpy_to_vectors,
    vectors_to_numpy,
)

ID_KEY = "_vecmigrate_id"
DOC_KEY = "_vecmigrate_document"
NS_KEY = "_vecmigrate_namespace"
RESERVED_KEYS = (ID_KEY, DOC_KEY, NS_KEY)
# engine_settings key: "native" when UUID record ids are the point ids themselves.
POINT_IDS_SETTING = "point_ids"
_RANGE = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}


class PayloadLayout(Protocol):
    """Where a collection another tool wrote keeps text and metadata in its payloads
    (``_layout.Payload``, ``_frameworks.FrameworkPayload``)."""

    def keys(self) -> dict[str, str]:
        """field -> the payload key path filters on it read."""
        ...

    def read(self, payload: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """(text, metadata) of one point."""
        ...

    def write(
        self,
        rid: Any,
        doc: Any,
        meta: Mapping[str, Any],
        namespace: Any,
        string_id: bool,
        point_id: Any = None,
    ) -> dict[str, Any]:
        """The payload of one record, written at ``point_id``."""
        ...


def _condition(node: Node, keys: Mapping[str, str]) -> Any:
    """A portable filter node as a Qdrant condition, with vecmigrate's exact semantics."""
    if isinstance(node, Bool):
        parts = [_condition(c, keys) for c in node.children]
        if node.op == "$and":
            return models.Filter(must=parts)
        if node.op == "$or":
            return models.Filter(should=parts)
        return models.Filter(must_not=parts)
    return _leaf(node, keys)


def query_filter(node: Node | None, keys: Mapping[str, str] | None = None) -> models.Filter | None:
    """A parsed filter (or None: everything) as the top-level ``models.Filter`` calls take;
    ``keys``: the payload key (path) of each field named differently (foreign layouts)."""
    flt = _condition(node, keys or {}) if node else None
    if flt is not None and not isinstance(flt, models.Filter):
        flt = models.Filter(must=[flt])
    return flt


def _leaf(node: Cond, keys: Mapping[str, str]) -> Any:
    name = node.field.name
    key = NS_KEY if name == NAMESPACE_KEY else keys.get(name, name)
    empty = models.IsEmptyCondition(is_empty=models.PayloadField(key=key))
    is_list = node.field.type.startswith("list<")
    if node.op == "$exists":
        if is_list:  # IsEmpty also matches [], which is a present value
            raise ConfigError(f"Qdrant cannot tell an empty list from a missing {key!r}")
        return models.Filter(must_not=[empty]) if node.value else models.Filter(must=[empty])
    if node.op == "$eq":
        return models.FieldCondition(key=key, match=models.MatchValue(value=node.value))
    if node.op == "$in":
        return models.FieldCondition(key=key, match=models.MatchAny(any=node.value))
    if node.op in _RANGE:
        return models.FieldCondition(key=key, range=models.Range(**{_RANGE[node.op]: node.value}))
    # $ne / $nin: Qdrant's must_not alone also matches records without the field.
    match = (
        models.MatchValue(value=node.value) if node.op == "$ne" else models.MatchAny(any=node.value)
    )
    return models.Filter(must_not=[empty, models.FieldCondition(key=key, match=match)])


def _sparse_dict(vector: Any, name: str) -> dict[str, list[Any]] | None:
    got = vector.get(name) if isinstance(vector, dict) else None
    if got is None:
        return None
    return {"indices": list(got.indices), "values": list(got.values)}


def native_point_ids(schema: CollectionSchema) -> bool:
    """Whether a UUID record id is the point id as it is (collections made by other tools,
    and those vecmigrate makes for UUID ids), rather than hashed as older versions did."""
    return schema.engine_settings.get(POINT_IDS_SETTING) == "native"


def canonical_uuid(value: Any) -> str | None:
    """``value`` when it is a UUID spelt as Qdrant returns point ids (lower case, hyphens):
    used as a point id, scrolling gives back the same string."""
    if not isinstance(value, str):
        return None
    try:
        return value if str(uuid.UUID(value)) == value else None
    except ValueError:
        return None


def _hashed(name: str, value: Any) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{value}"))


def point_ids(name: str, schema: CollectionSchema, ids: Sequence[Any]) -> list[Any]:
    """Where records are written: int ids as they are (never negative); a canonical UUID as
    it is where ``native_point_ids``; any other id uuid5(name/id) (the original is kept in
    the payload under ``ID_KEY``)."""
    if schema.id_type is IdType.INT:
        bad = [i for i in ids if int(i) < 0]
        if bad:
            raise DataError(
                "Qdrant point ids cannot be negative",
                collection=name,
                record_id=bad[0],
                field="id",
                hint="map ids with the uuid5 strategy",
            )
        return [int(i) for i in ids]
    if not native_point_ids(schema):
        return [_hashed(name, i) for i in ids]
    return [own if (own := canonical_uuid(i)) is not None else _hashed(name, i) for i in ids]


def point_candidates(name: str, schema: CollectionSchema, ids: Sequence[Any]) -> list[Any]:
    """Every point id a record with one of ``ids`` may be stored at, whichever way it was
    written (its own UUID, or uuid5(name/id)); read them and keep the points whose
    ``record_id`` was asked for."""
    out = dict.fromkeys(point_ids(name, schema, ids))
    if schema.id_type is not IdType.INT:
        for i in ids:
            out.setdefault(_hashed(name, i))
            if (own := canonical_uuid(i)) is not None:
                out.setdefault(own)
    return list(out)


def record_id(point: Any, schema: CollectionSchema) -> Any:
    """The record id a scrolled or retrieved point holds (as ``points_to_batch`` reads it)."""
    got = (point.payload or {}).get(ID_KEY, point.id)
    return int(got) if schema.id_type is IdType.INT else str(got)


def points_to_batch(
    points: list[Any], schema: CollectionSchema, layout: PayloadLayout | None = None
) -> pa.RecordBatch:
    """Scrolled or retrieved points in the batch layout (reserved payload keys lifted out;
    with ``layout``, a foreign collection's text and nested metadata too)."""
    payloads = [dict(p.payload or {}) for p in points]
    ids: list[Any] = [pl.get(ID_KEY, p.id) for p, pl in zip(points, payloads, strict=True)]
    # A collection may mix unsigned-int and UUID point ids (Qdrant takes both): string ids
    # then, an int one as its decimal text (``record_id`` reads it so too).
    ids = [int(i) for i in ids] if schema.id_type is IdType.INT else [str(i) for i in ids]
    vectors: dict[str, np.ndarray | pa.Array] = {}
    for v in schema.vectors:
        key = "" if schema.engine_settings.get("unnamed_vector") else v.name
        # A point's vectors come as a dict whenever the collection has more than the
        # unnamed one (LangChain's hybrid stores: the unnamed dense one beside a sparse one).
        rows = [p.vector.get(key) if isinstance(p.vector, dict) else p.vector for p in points]
        vectors[v.name] = _dense(rows, v.dim)
    if layout is None:
        docs = [pl.get(DOC_KEY) for pl in payloads]
        metas = [{k: v for k, v in pl.items() if k not in RESERVED_KEYS} for pl in payloads]
    else:
        read = [layout.read(pl) for pl in payloads]
        docs, metas = [_text(d) for d, _ in read], [m for _, m in read]
    namespaces = [pl.get(NS_KEY) for pl in payloads] if schema.namespaces is not None else None
    sparse = {s.name: [_sparse_dict(p.vector, s.name) for p in points] for s in schema.sparse}
    # A payload key set to null is not a missing key: Qdrant keeps both apart, so do we.
    return build_batch(
        schema,
        ids,
        vectors,
        documents=docs if schema.has_document else None,
        metadata=metas,
        namespaces=namespaces,
        sparse=sparse,
        explicit_nulls=True,
    )


def _dense(rows: list[Any], dim: int) -> np.ndarray | pa.Array:
    """One named vector of each point; a point without it (Qdrant lets a point hold some
    of its collection's named vectors) has a null one, refused per record downstream."""
    missing = [r is None for r in rows]
    if not any(missing):
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), dim)
    filled = [[0.0] * dim if r is None else r for r in rows]
    return numpy_to_vectors(np.asarray(filled, dtype=np.float32).reshape(len(rows), dim), missing)


def batch_to_points(
    name: str, batch: pa.RecordBatch, schema: CollectionSchema, layout: PayloadLayout | None = None
) -> Any:
    """A batch as what ``client.upsert`` takes: payload = metadata + reserved keys (with
    ``layout``, text and metadata where a foreign collection keeps them); the vector of a
    collection with one unnamed vector is written unnamed."""
    ids = batch.column("id").to_pylist()
    payloads = metadata_rows(batch, schema)  # explicit nulls included: Qdrant stores them
    names = batch.schema.names
    docs = batch.column("document").to_pylist() if "document" in names else [None] * len(ids)
    namespaces = (
        batch.column("namespace").to_pylist() if "namespace" in names else [None] * len(ids)
    )
    string_ids = schema.id_type is not IdType.INT
    pids = point_ids(name, schema, ids)
    if layout is not None:
        payloads = [
            layout.write(ids[i], docs[i], meta, namespaces[i], string_ids, pids[i])
            for i, meta in enumerate(payloads)
        ]
    for i, payload in enumerate(payloads if layout is None else ()):
        if string_ids:
            payload[ID_KEY] = ids[i]
        if docs[i] is not None:
            payload[DOC_KEY] = docs[i]
        if namespaces[i] is not None:
            payload[NS_KEY] = namespaces[i]
    unnamed = bool(schema.engine_settings.get("unnamed_vector"))
    vectors: dict[str, list[Any]] = {
        "" if unnamed else v.name: vectors_to_numpy(batch.column(v.name)).tolist()
        for v in schema.vectors
    }
    points: Any
    if schema.sparse:
        sparse = {s.name: batch.column(s.name).to_pylist() for s in schema.sparse}
        points = [
            models.PointStruct(
                id=pid,
                payload=payloads[i],
                vector={
                    **{k: v[i] for k, v in vectors.items()},
                    **{
                        k: models.SparseVector(indices=v[i]["indices"], values=v[i]["values"])
                        for k, v in sparse.items()
                        if v[i] is not None
                    },
                },
            )
            for i, pid in enumerate(pids)
        ]
    elif unnamed:
        points = models.Batch(ids=pids, vectors=vectors[""], payloads=payloads)
    else:
        points = models.Batch(ids=pids, vectors=vectors, payloads=payloads)
    return points


def _text(value: Any) -> str | None:
    """A payload value read as the document: text as it is, anything else as JSON text."""
    return value if value is None or isinstance(value, str) else encode_json(value)
