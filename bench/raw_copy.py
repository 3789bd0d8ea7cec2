"""The baseline: the same move written directly against the engines' official clients.

Deliberately minimal but not naive: pages of 2,000 rows, Arrow tables for LanceDB, binary
COPY for pgvector, and the same index vecmigrate builds (pgvector HNSW with the source
collection's M and ef_construction; LanceDB IVF_HNSW_SQ), since recreating the index
is part of the move.
Usage: raw_copy.py PAIR SOURCE TARGET   (PAIR: chroma-lancedb | chroma-pgvector |
pgvector-lancedb | dump-lancedb | dump-pgvector | dump-milvus_lite). From a dump
(``bench/scale.py``) no index is built on either side: that benchmark measures the data
movement alone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

PAGE = 2000
DIM = 384


# HNSW settings of the source, carried to the target like a careful engineer would.
HNSW = {"m": 16, "ef_construction": 64}
BUILD_INDEX = True


def dump_pages(
    folder: str,
) -> Iterator[tuple[list[str], np.ndarray, list[str], list[dict[str, Any]]]]:
    """Pages of a vecmigrate dump's Parquet parts, read with pyarrow alone."""
    import pyarrow.dataset as ds

    for batch in ds.dataset(folder, format="parquet").to_batches(batch_size=PAGE):
        vecs = batch.column("vector").flatten().to_numpy().reshape(-1, DIM)
        yield (
            batch.column("id").to_pylist(),
            vecs,
            batch.column("document").to_pylist(),
            batch.column("metadata").to_pylist(),
        )


def chroma_pages(
    path: str,
) -> Iterator[tuple[list[str], np.ndarray, list[str], list[dict[str, Any]]]]:
    import chromadb

    col = chromadb.PersistentClient(path=path).get_collection("docs", embedding_function=None)
    hnsw = (col.configuration or {}).get("hnsw") or {}
    HNSW.update(m=hnsw.get("max_neighbors", 16), ef_construction=hnsw.get("ef_construction", 64))
    total = col.count()
    for offset in range(0, total, PAGE):
        got = col.get(limit=PAGE, offset=offset, include=["embeddings", "documents", "metadatas"])
        yield (
            got["ids"],
            np.asarray(got["embeddings"], np.float32),
            got["documents"],
            got["metadatas"],
        )


def pgvector_pages(
    dsn: str,
) -> Iterator[tuple[list[str], np.ndarray, list[str], list[dict[str, Any]]]]:
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        with conn.cursor(name="scan") as cur:
            cur.itersize = PAGE
            cur.execute("SELECT id, document, vector, metadata FROM docs")
            while rows := cur.fetchmany(PAGE):
                ids, docs, vecs, metas = zip(*rows, strict=True)
                yield list(ids), np.stack([v.to_numpy() for v in vecs]), list(docs), list(metas)


def to_lancedb(path: str, pages: Iterator[Any]) -> int:
    import lancedb

    db = lancedb.connect(path)
    table = None
    n = 0
    for ids, vecs, docs, metas in pages:
        data = pa.table(
            {
                "id": ids,
                "document": docs,
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), DIM),
                "metadata": pa.array(metas),
            }
        )
        if table is None:
            table = db.create_table("docs", data, mode="overwrite")
        else:
            table.add(data)
        n += len(ids)
    # The same deliberate index vecmigrate recreates from the source's HNSW settings.
    if BUILD_INDEX and table is not None and n >= 5000:
        table.create_index(metric="cosine", vector_column_name="vector", index_type="IVF_HNSW_SQ")
    return n


def to_pgvector(dsn: str, pages: Iterator[Any]) -> int:
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg.types.json import Jsonb

    n = 0
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS docs")
        conn.execute(
            f"CREATE TABLE docs (id text PRIMARY KEY, document text, vector vector({DIM}), "
            "metadata jsonb)"
        )
        with conn.cursor() as cur:
            for ids, vecs, docs, metas in pages:
                with cur.copy(
                    "COPY docs (id, document, vector, metadata) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["text", "text", "vector", "jsonb"])
                    for row in zip(ids, docs, vecs, metas, strict=True):
                        copy.write_row((row[0], row[1], row[2], Jsonb(row[3])))
                n += len(ids)
            if BUILD_INDEX:
                cur.execute(
                    "CREATE INDEX ON docs USING hnsw (vector vector_cosine_ops) "
                    f"WITH (m = {HNSW['m']}, ef_construction = {HNSW['ef_construction']})"
                )
        conn.commit()
    return n


def to_milvus_lite(path: str, pages: Iterator[Any]) -> int:
    """Rows inserted through pymilvus's ``MilvusClient`` into a milvus-lite file (FLAT: no
    index build, like vecmigrate's copy of a dump)."""
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=path)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("document", DataType.VARCHAR, max_length=65_535)
    schema.add_field("metadata", DataType.JSON)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="COSINE")
    client.create_collection("docs", schema=schema, index_params=index)
    n = 0
    for ids, vecs, docs, metas in pages:
        rows = [
            {"id": i, "vector": v, "document": d, "metadata": m}
            for i, v, d, m in zip(ids, vecs, docs, metas, strict=True)
        ]
        client.insert("docs", rows)
        n += len(ids)
    client.close()
    return n


def main() -> None:
    pair, source, target = sys.argv[1:4]
    src, dst = pair.split("-")
    global BUILD_INDEX
    BUILD_INDEX = src != "dump"
    readers = {"chroma": chroma_pages, "pgvector": pgvector_pages, "dump": dump_pages}
    pages = readers[src](source)
    writers = {"lancedb": to_lancedb, "pgvector": to_pgvector, "milvus_lite": to_milvus_lite}
    rows = writers[dst](target, pages)
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
