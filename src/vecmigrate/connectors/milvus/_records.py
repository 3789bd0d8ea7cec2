"""Milvus rows <-> Arrow batches for the Milvus connector (used only by it).

Reads turn query rows into batches in the caller's schema; writes turn a conformed batch
into Milvus rows in the collection's physical layout (``json`` or ``columns``, see
``milvus``), refusing, with the record named, what the engine would reject or lose.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.connectors.milvus import _frameworks
from vecmigrate.connectors.milvus import _sparse as milvus_sparse
from vecmigrate.connectors.milvus._filters import (
    DYNAMIC,
    DYNAMIC_KEY,
    JSON_KEY,
    field_places,
    key_range,
    layout,
    pk,
)
from vecmigrate.connectors.milvus._schema import DOC_KEY, MAX_VARCHAR
from vecmigrate.errors import DataError
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.records import build_batch, vectors_to_numpy

_INT64_MAX = 2**63 - 1
PAGE = 16384  # Milvus caps offset + limit of one query at 16384
# A strongly consistent query: (filter, output fields, limit=) -> rows.
Query = Callable[..., list[dict[str, Any]]]


def output_fields(schema: CollectionSchema) -> list[str]:
    """The fields a scan or fetch reads."""
    if _frameworks.framework(schema):
        return _frameworks.output_fields(schema)
    fields = [pk(schema), *(v.name for v in schema.vectors), *(s.name for s in schema.sparse)]
    if layout(schema) == "json":
        return [*fields, "document", "metadata", "metadata_extra", "metadata_present"]
    doc = schema.engine_settings.get(DOC_KEY)
    places = [c or k for c, k in field_places(schema).values()]
    containers = [schema.engine_settings.get(JSON_KEY), *places]
    if schema.engine_settings.get(DYNAMIC_KEY):
        containers.append(DYNAMIC)  # keys the sample did not show come along too
    return list(dict.fromkeys([*fields, *([doc] if doc else []), *(c for c in containers if c)]))


def _foreign_metadata(row: dict[str, Any], schema: CollectionSchema) -> dict[str, Any]:
    """The metadata of one row of a ``columns`` collection: fields of their own, the keys
    of its JSON metadata field and its dynamic fields (keys no field names kept too: they
    travel in ``metadata_extra``)."""
    places = field_places(schema)
    meta: dict[str, Any] = {}
    by_key: dict[tuple[str | None, str], str] = {p: f for f, p in places.items()}
    physical = {pk(schema), schema.engine_settings.get(DOC_KEY)}
    physical |= {v.name for v in schema.vectors} | {s.name for s in schema.sparse}
    json_field = schema.engine_settings.get(JSON_KEY)
    for field, (container, key) in places.items():
        if container is None:
            physical.add(key)
            if key in row:
                meta[field] = _plain(row[key])
    if json_field:
        physical.add(json_field)
        obj = row.get(json_field)
        if isinstance(obj, dict):
            for key, value in obj.items():
                meta[by_key.get((json_field, key), f"{json_field}.{key}")] = value
        elif obj is not None:
            meta[json_field] = obj  # not an object: kept whole (in metadata_extra)
    if schema.engine_settings.get(DYNAMIC_KEY):
        for key, value in row.items():
            if key not in physical:
                meta[by_key.get((DYNAMIC, key), key)] = value
    return meta


def rows_to_batch(rows: list[dict[str, Any]], schema: CollectionSchema) -> pa.RecordBatch:
    """Milvus query/get rows -> a batch in ``schema``'s layout."""
    if _frameworks.framework(schema):
        return _frameworks.rows_to_batch(rows, schema, _rows_to_batch)
    return _rows_to_batch(rows, schema)


def _rows_to_batch(rows: list[dict[str, Any]], schema: CollectionSchema) -> pa.RecordBatch:
    vectors = {
        v.name: np.asarray([r[v.name] for r in rows], dtype=np.float32).reshape(len(rows), v.dim)
        for v in schema.vectors
    }
    meta: list[dict[str, Any]] = []
    docs: list[str | None] = []
    if layout(schema) == "json":
        for r in rows:
            present = r.get("metadata_present") or {}
            docs.append(r.get("document") if present.get("document", True) else None)
            m = dict(r.get("metadata") or {})
            if r.get("metadata_extra"):
                m.update(json.loads(r["metadata_extra"]))
            meta.append(m)
    else:
        doc = schema.engine_settings.get(DOC_KEY)
        for r in rows:
            docs.append(r.get(doc) if doc else None)
            meta.append(_foreign_metadata(r, schema))
    key = pk(schema)
    json_layout = layout(schema) == "json"
    return build_batch(
        schema,
        [r[key] for r in rows],
        vectors,
        documents=docs if schema.has_document else None,
        metadata=meta,
        sparse={s.name: milvus_sparse.read_column(rows, s, json_layout) for s in schema.sparse},
    )


def _plain(value: Any) -> Any:
    """ARRAY values arrive as protobuf repeated containers; make them Python lists."""
    if value is None or isinstance(value, str | bytes | int | float | bool | dict | list):
        return value
    return list(value)


def typed_metadata(batch: pa.RecordBatch, schema: CollectionSchema) -> list[dict[str, Any]]:
    """Typed metadata per record (nulls omitted); json-typed values decoded to objects."""
    out: list[dict[str, Any]] = [{} for _ in range(batch.num_rows)]
    if "metadata" not in batch.schema.names:
        return out
    json_fields = {f.name for f in schema.metadata if f.type == "json"}
    struct = batch.column(batch.schema.names.index("metadata"))
    for child_field, child in zip(struct.type, struct.flatten(), strict=True):
        is_json = child_field.name in json_fields
        for i, v in enumerate(child.to_pylist()):
            if v is not None:
                out[i][child_field.name] = json.loads(v) if is_json else v
    return out


def check_ids(
    name: str,
    schema: CollectionSchema,
    ids: pa.Array,
    *,
    lite: bool,
    version: tuple[int, int] | None,
) -> None:
    """Refuse, naming the record, ids the engine would reject for the whole batch (or
    store but never return: Milvus 2.3.5 hides the key 2**63 - 1). Column-wise, for the
    upsert path and the bulk insert's staging alike."""
    if ids.null_count:
        raise DataError("a record has no id", collection=name, field="id")
    if schema.id_type is IdType.INT:
        if version is not None and version < (2, 5) and pc.any(pc.equal(ids, _INT64_MAX)).as_py():
            raise DataError(
                f"Milvus {'.'.join(map(str, version))} stores the id "
                f"{_INT64_MAX} but never returns it (seen on 2.3.5; milvus-lite 2.5 returns it)",
                collection=name,
                record_id=_INT64_MAX,
                field="id",
            )
        return
    max_len = int(schema.engine_settings.get("milvus.id_max_length", 512))
    row = first_true(pc.greater(pc.binary_length(ids), max_len))
    if row is not None:
        raise DataError(
            f"id is longer than the key's {max_len} bytes",
            collection=name,
            record_id=ids[row].as_py(),
            field="id",
        )
    row = first_true(pc.match_substring(ids, "'")) if lite else None
    if row is not None:
        raise DataError(
            "milvus-lite cannot store ids containing a single quote "
            "(its upsert fails with 'internal error')",
            collection=name,
            record_id=ids[row].as_py(),
            field="id",
        )


def first_true(mask: pa.Array) -> int | None:
    """The index of the first true value of ``mask``; None when there is none."""
    hits = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    return int(hits[0]) if len(hits) else None


def _foreign_row(
    typed: dict[str, Any], extra: str | None, schema: CollectionSchema
) -> tuple[dict[str, Any], list[str]]:
    """The fields of one row of a ``columns`` collection: each metadata value in its own
    field, as a key of the JSON metadata field or as a dynamic field; values that did not
    fit their type (``metadata_extra``) go back where they came from. Also returns the
    keys no field can hold (the collection has neither a JSON metadata field nor dynamic
    fields)."""
    values = {**typed, **(json.loads(extra) if extra else {})}
    places = field_places(schema)
    json_field = schema.engine_settings.get(JSON_KEY)
    dynamic = bool(schema.engine_settings.get(DYNAMIC_KEY))
    row: dict[str, Any] = {}
    obj: dict[str, Any] = {}
    homeless: list[str] = []
    for m in schema.metadata:
        container, key = places.get(m.name, (None, m.name))
        if container is None:
            row[key] = values.pop(m.name, None)
    for name, value in values.items():
        container, key = places.get(name, (None, name))
        if container == json_field and json_field is not None:
            obj[key] = value
        elif container == DYNAMIC:
            row[key] = value
        elif json_field is not None and container is None:
            obj[name.removeprefix(f"{json_field}.")] = value  # a key no field names
        elif dynamic and container is None:
            row[name] = value
        elif value is not None:
            homeless.append(name)
    if json_field is not None:
        row[json_field] = obj
    return row, homeless


def batch_to_rows(
    name: str, schema: CollectionSchema, data: pa.RecordBatch, ids: list[Any]
) -> list[dict[str, Any]]:
    """Milvus rows for one batch in the collection's physical layout."""
    if _frameworks.framework(schema):
        return _frameworks.batch_to_rows(name, schema, data, ids)
    n = data.num_rows
    vectors = {v.name: vectors_to_numpy(data.column(v.name)) for v in schema.vectors}
    docs = data.column("document").to_pylist() if schema.has_document else [None] * n
    typed = typed_metadata(data, schema)
    extra = data.column("metadata_extra").to_pylist()
    key, doc_field = pk(schema), schema.engine_settings.get(DOC_KEY)
    json_layout = layout(schema) == "json"
    sparse = {
        s.name: milvus_sparse.to_rows(name, s, data.column(s.name), ids) for s in schema.sparse
    }
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {key: ids[i]}
        for vname, matrix in vectors.items():
            row[vname] = matrix[i]
        for sname, values in sparse.items():
            if values[i] is None and not json_layout:
                raise DataError(
                    "the collection's sparse field cannot tell a missing vector from an "
                    "empty one (Milvus vector fields are not nullable)",
                    collection=name,
                    record_id=ids[i],
                    field=sname,
                )
            row[sname] = values[i] if values[i] is not None else {}
        if json_layout:
            row["document"] = docs[i] or ""
            row["metadata"] = typed[i]
            row["metadata_extra"] = extra[i] or ""
            row["metadata_present"] = {
                "fields": {m.name: m.name in typed[i] for m in schema.metadata},
                "document": docs[i] is not None,
                "sparse": {k: v[i] is not None for k, v in sparse.items()},
            }
            too_long = [
                f for f in ("document", "metadata_extra") if len(row[f].encode()) > MAX_VARCHAR
            ]
        else:
            if doc_field:
                row[doc_field] = docs[i] if docs[i] is not None else ""
            fields, homeless = _foreign_row(typed[i], extra[i], schema)
            if homeless:
                raise DataError(
                    f"the collection has no field for metadata {homeless[0]!r} (and neither "
                    "a JSON metadata field nor dynamic fields)",
                    collection=name,
                    record_id=ids[i],
                    field=homeless[0],
                    hint="map or drop the field in a mapping file",
                )
            row.update(fields)
            too_long = []
        if too_long:
            raise DataError(
                f"{too_long[0]} is longer than Milvus' {MAX_VARCHAR}-byte VARCHAR",
                collection=name,
                record_id=ids[i],
                field=too_long[0],
            )
        rows.append(row)
    return rows


def pages(
    query: Query,
    schema: CollectionSchema,
    after: Any,
    upto: Any,
    batch_rows: int,
    fields: list[str],
) -> Iterator[list[dict[str, Any]]]:
    """Rows in primary-key order, ``after < pk <= upto``, ``batch_rows`` at a time.

    A query with a limit returns the smallest matching keys (segments' results are
    merged by key, which pymilvus' query_iterator relies on too); paging by key rather
    than through query_iterator gives exact, resumable ranges.
    """
    key = pk(schema)
    limit = max(1, min(batch_rows, PAGE))
    while True:
        rows = query(key_range(schema, after, upto), fields, limit=limit)
        if not rows:
            return
        page = sorted(rows, key=lambda r: r[key])
        after = page[-1][key]
        yield page
        if len(page) < limit:
            return
