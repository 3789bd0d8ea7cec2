"""A batch as the rows Milvus bulk insert imports, column by column (``_bulk`` stages it).

The staged table holds what an upsert of the batch would send (``batch_to_rows``), in the
layout Milvus 2.3.4+ imports from Parquet: one column per field, vectors as
``list<float32>`` (2.3 refuses ``fixed_size_list``), JSON fields as JSON text. It is built
from the batch's columns rather than from row dicts, and refuses what ``check_ids`` and
``batch_to_rows`` refuse, with the same typed errors. Repeated ids are found the same
way: set operations and Arrow kernels, no Python loop over the ids.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ujson

from vecmigrate.connectors.milvus._records import check_ids, first_true, typed_metadata
from vecmigrate.connectors.milvus._schema import MAX_VARCHAR
from vecmigrate.errors import DataError
from vecmigrate.idkeys import SeenKeys, id_keys
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.records import vectors_to_numpy


def staged_schema(schema: CollectionSchema) -> pa.Schema:
    """The Arrow schema of staged rows: one column per Milvus field."""
    key = pa.int64() if schema.id_type is IdType.INT else pa.string()
    return pa.schema(
        [
            pa.field("id", key, nullable=False),
            *(pa.field(v.name, pa.list_(pa.float32()), nullable=False) for v in schema.vectors),
            pa.field("document", pa.string(), nullable=False),
            pa.field("metadata", pa.string(), nullable=False),
            pa.field("metadata_extra", pa.string(), nullable=False),
            pa.field("metadata_present", pa.string(), nullable=False),
        ]
    )


def stage_table(
    name: str, schema: CollectionSchema, batch: pa.RecordBatch, version: tuple[int, int] | None
) -> pa.Table:
    """``batch`` (conformed to ``schema``, layout ``json``, no sparse fields) as staged rows
    of collection ``name`` on a server of ``version``; DataError naming the record and
    field for what an upsert would refuse."""
    arrow = staged_schema(schema)
    n = batch.num_rows
    ids = batch.column("id")
    check_ids(name, schema, ids, lite=False, version=version)  # bulk insert: a server
    ids = ids.cast(arrow.field("id").type)
    cols: list[pa.Array] = [ids]
    for v in schema.vectors:
        flat = vectors_to_numpy(batch.column(v.name)).reshape(-1)
        offsets = np.arange(0, n * v.dim + 1, v.dim, dtype=np.int32)
        cols.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)))
    if schema.has_document:
        docs = batch.column("document").cast(pa.string())
    else:
        docs = pa.nulls(n, pa.string())
    doc_text = docs.fill_null("")
    extra = batch.column("metadata_extra").cast(pa.string()).fill_null("")
    _check_lengths(name, ids, {"document": doc_text, "metadata_extra": extra})
    # The metadata values need JSON encoding one record at a time (what pymilvus'
    # convert_to_json does for an upsert); everything around it stays columnar.
    meta = [ujson.dumps(m, ensure_ascii=False) for m in typed_metadata(batch, schema)]
    cols += [doc_text, pa.array(meta, pa.string()), extra, _presence(batch, schema, docs)]
    return pa.Table.from_arrays(cols, schema=arrow)


def _check_lengths(name: str, ids: pa.Array, texts: dict[str, pa.Array]) -> None:
    """DataError for the first record with a text longer than a VARCHAR holds (its first
    such field, in the order given)."""
    found = [
        (row, field)
        for field, col in texts.items()
        if (row := first_true(pc.greater(pc.binary_length(col), MAX_VARCHAR))) is not None
    ]
    if found:
        row, field = min(found, key=lambda f: f[0])
        raise DataError(
            f"{field} is longer than Milvus' {MAX_VARCHAR}-byte VARCHAR",
            collection=name,
            record_id=ids[row].as_py(),
            field=field,
        )


def _presence(batch: pa.RecordBatch, schema: CollectionSchema, docs: pa.Array) -> pa.Array:
    """``metadata_present`` as JSON text: which metadata fields and whether the document
    are present (not null), per record, concatenated from the columns' validity."""
    valid: dict[str, pa.Array] = {}
    if "metadata" in batch.schema.names:
        struct = batch.column("metadata")
        valid = {f.name: c.is_valid() for f, c in zip(struct.type, struct.flatten(), strict=True)}
    n = batch.num_rows
    absent = pa.array(np.zeros(n, dtype=bool))
    pieces: list[Any] = ['{"fields": {']
    for k, m in enumerate(schema.metadata):
        pieces.append(("" if k == 0 else ", ") + json.dumps(m.name, ensure_ascii=False) + ": ")
        pieces.append(pc.if_else(valid.get(m.name, absent), "true", "false"))
    pieces += ['}, "document": ', pc.if_else(docs.is_valid(), "true", "false"), ', "sparse": {}}']
    return pc.binary_join_element_wise(*pieces, "")


def first_copies(ids: pa.ChunkedArray, seen: SeenKeys) -> pa.Array | None:
    """A mask of the ``ids`` not ``seen`` and not earlier in ``ids``, or None when that is
    all of them; ``seen`` gets them all. An id may be taken for a repeat when it is not
    (``SeenKeys``: flat memory at any row count): it is staged with the repeats, which are
    upserted after the import, so it still lands once."""
    first = seen.first_seen(id_keys(ids))
    return None if first.all() else pa.array(first)


def last_copies(ids: pa.ChunkedArray) -> pa.Array | None:
    """A mask keeping the last copy of every id (a batch may be staged twice: a retry
    after a failed call), or None when every id is there once."""
    unique = pc.unique(ids)
    if len(unique) == len(ids):
        return None
    keep = np.zeros(len(ids), dtype=bool)
    keep[len(ids) - 1 - _first_index(ids, unique, reverse=True)] = True
    return pa.array(keep)


def keep_last_copies(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with one row per ``id``, its last copy: Milvus (2.3 server, Lite) stores
    both copies of an id sent twice in one upsert."""
    keep = last_copies(pa.chunked_array([batch.column("id")]))
    return batch if keep is None else batch.filter(keep)


def _first_index(ids: pa.ChunkedArray, unique: pa.Array, reverse: bool = False) -> np.ndarray:
    """The position of each distinct id's first occurrence (counted from the end when
    ``reverse``)."""
    codes = np.asarray(pc.index_in(ids, value_set=unique))
    _, index = np.unique(codes[::-1] if reverse else codes, return_index=True)
    return np.asarray(index)
