"""Qdrant Edge points and batches (used only by ``connectors.qdrant_edge``).

Payload layout, point ids and record ids are the Qdrant connector's (``qdrant._records``):
a collection moved between a Qdrant server and Edge keeps its points where they were.
Only the objects differ: Edge takes ``qdrant_edge.Point`` and returns UUID point ids as
``uuid.UUID``, read here as the canonical strings qdrant-client gives.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import qdrant_edge as qe

from vecmigrate.connectors.qdrant._records import (
    DOC_KEY,
    ID_KEY,
    NS_KEY,
    point_ids,
    points_to_batch,
)
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.records import metadata_rows, vectors_to_numpy


@dataclass(frozen=True)
class EdgePoint:
    """A point Edge returned, shaped as the Qdrant connector's readers expect."""

    id: int | str
    vector: Any
    payload: dict[str, Any]


def point_id(pid: Any) -> int | str:
    """An Edge point id (int, ``uuid.UUID`` or str) as qdrant-client spells it."""
    if isinstance(pid, uuid.UUID):
        return str(pid)
    return pid if isinstance(pid, int) else str(pid)


def read_points(records: Iterable[Any]) -> list[EdgePoint]:
    """Scrolled, retrieved or scored Edge points as ``EdgePoint``s."""
    return [EdgePoint(point_id(r.id), r.vector, dict(r.payload or {})) for r in records]


UNNAMED_FIELD = "unnamed_vector_field"


def unnamed_field(schema: CollectionSchema) -> str | None:
    """The vector field stored as the shard's unnamed vector (``""``), if any. Edge, unlike
    a Qdrant server, lets one shard hold an unnamed vector beside named ones."""
    if not schema.engine_settings.get("unnamed_vector"):
        return None
    return str(schema.engine_settings.get(UNNAMED_FIELD) or schema.vector.name)


def vector_key(schema: CollectionSchema, field: str) -> str:
    """The name Edge stores the vector field ``field`` under."""
    return "" if field == unnamed_field(schema) else field


def to_batch(records: Iterable[Any], schema: CollectionSchema) -> pa.RecordBatch:
    """Edge points in the batch layout (``qdrant._records.points_to_batch``); the unnamed
    vector is read as the field it stands for."""
    points = read_points(records)
    unnamed = unnamed_field(schema)
    if unnamed is not None:
        points = [
            EdgePoint(
                p.id,
                {**{k: v for k, v in p.vector.items() if k != ""}, unnamed: p.vector.get("")}
                if isinstance(p.vector, dict)
                else {unnamed: p.vector},
                p.payload,
            )
            for p in points
        ]
        settings = {k: v for k, v in schema.engine_settings.items() if k != "unnamed_vector"}
        schema = schema.replace(engine_settings=settings)
    return points_to_batch(points, schema)


def to_points(name: str, batch: pa.RecordBatch, schema: CollectionSchema) -> list[qe.Point]:
    """A batch as Edge points, with the payload ``qdrant._records.batch_to_points`` writes:
    metadata (explicit nulls kept) plus the reserved keys for the original id of a
    non-int record, its document and its namespace."""
    ids = batch.column("id").to_pylist()
    payloads = metadata_rows(batch, schema)
    names = batch.schema.names
    docs = batch.column("document").to_pylist() if "document" in names else None
    namespaces = batch.column("namespace").to_pylist() if "namespace" in names else None
    for i, payload in enumerate(payloads):
        if schema.id_type is not IdType.INT:
            payload[ID_KEY] = ids[i]
        if docs is not None and docs[i] is not None:
            payload[DOC_KEY] = docs[i]
        if namespaces is not None and namespaces[i] is not None:
            payload[NS_KEY] = namespaces[i]
    vectors = {v.name: vectors_to_numpy(batch.column(v.name)).tolist() for v in schema.vectors}
    sparse = {s.name: batch.column(s.name).to_pylist() for s in schema.sparse}
    keys = {k: vector_key(schema, k) for k in vectors}
    points = []
    for i, pid in enumerate(point_ids(name, schema, ids)):
        vector: dict[str, Any] = {keys[k]: v[i] for k, v in vectors.items()}
        for k, sv in sparse.items():
            if sv[i] is not None:
                vector[k] = qe.SparseVector(indices=sv[i]["indices"], values=sv[i]["values"])
        points.append(qe.Point(id=pid, vector=vector, payload=payloads[i]))
    return points
