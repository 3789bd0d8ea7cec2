"""Describing pgvector tables from the PostgreSQL catalog, used only by ``connectors/pgvector*.py``.

Tables vecmigrate created carry their CollectionSchema as JSON in the table's COMMENT, so
they round-trip exactly. Tables made by other tools are inferred: ``id`` is the key; the
first text column named ``document``/``content``/``text`` is the document; each ``vector``
column is a vector field (dim from its type modifier, metric from its index's operator
class, cosine assumed without one), each ``sparsevec`` column a sparse field (likewise,
dot assumed; no dimension when the column declares none); other columns map to portable
types (unknown types are read as JSON through ``to_jsonb``). What was assumed is noted in
``engine_settings``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vecmigrate.connectors.pgvector._sparse import SPARSE_OPS
from vecmigrate.connectors.pgvector._sql import OPS, regclass
from vecmigrate.errors import ConfigError
from vecmigrate.model import (
    CollectionSchema,
    IdType,
    IndexKind,
    IndexSpec,
    MetadataField,
    MetadataType,
    Metric,
    SparseField,
    VectorField,
)

# ``query(sql, params)``: the connector's one-transaction query, returning all rows.
Query = Callable[[Any, Any], list[tuple[Any, ...]]]

_METRIC_OF_OPS = {v: k for k, v in OPS.items()}
_METRIC_OF_SPARSE_OPS = {v: k for k, v in SPARSE_OPS.items()}
_PORTABLE_OF_SQL: dict[str, MetadataType] = {
    "text": "string",
    "character varying": "string",
    "bigint": "int64",
    "integer": "int64",
    "smallint": "int64",
    "double precision": "float64",
    "real": "float64",
    "boolean": "bool",
    "text[]": "list<string>",
    "character varying[]": "list<string>",
    "bigint[]": "list<int64>",
    "integer[]": "list<int64>",
    "double precision[]": "list<float64>",
    "real[]": "list<float64>",
    "jsonb": "json",
    "json": "json",
}
_DOC_COLUMNS = ("document", "content", "text")


def vector_tables(query: Query, namespace: str) -> list[str]:
    """Tables in ``namespace`` with at least one ``vector`` or ``sparsevec`` column, sorted."""
    rows = query(
        "SELECT DISTINCT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE n.nspname = %s AND c.relkind = 'r' AND t.typname IN ('vector', 'sparsevec') "
        "AND NOT a.attisdropped",
        (namespace,),
    )
    return sorted(r[0] for r in rows)


def columns(query: Query, namespace: str, name: str) -> list[tuple[str, str, int]]:
    """(column, type name without modifier, type modifier) of table ``name``, in order."""
    return [
        (r[0], r[1], r[2])
        for r in query(
            "SELECT a.attname, format_type(a.atttypid, NULL), a.atttypmod FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (regclass(namespace, name),),
        )
    ]


def describe_table(query: Query, namespace: str, name: str) -> CollectionSchema:
    """The schema of an existing table: from its COMMENT when vecmigrate made it, else inferred."""
    comment = query(
        "SELECT obj_description(%s::regclass, 'pg_class')", (regclass(namespace, name),)
    )[0][0]
    if comment and comment.startswith("{"):
        return CollectionSchema.from_json(comment).replace(name=name, engine="pgvector")
    return _infer(query, namespace, name)


def _infer(query: Query, namespace: str, name: str) -> CollectionSchema:
    cols = columns(query, namespace, name)
    types = {c: t for c, t, _ in cols}
    if "id" not in types:
        raise ConfigError(f"table {name!r} has no 'id' column", hint="rename its key column to id")
    indexes = {
        r[0]: (r[1], r[2])
        for r in query(
            "SELECT a.attname, am.amname, oc.opcname FROM pg_index i "
            "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam "
            "JOIN pg_opclass oc ON oc.oid = i.indclass[0] "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE i.indrelid = %s::regclass",
            (regclass(namespace, name),),
        )
    }
    vectors, sparse, metadata = [], [], []
    notes: dict[str, Any] = {}
    doc = next((c for c in _DOC_COLUMNS if types.get(c) == "text"), None)
    for col, typ, mod in cols:
        if col in ("id", doc, "metadata_extra"):
            continue
        if typ == "vector":
            am, ops = indexes.get(col, ("", ""))
            metric = _METRIC_OF_OPS.get(ops, Metric.COSINE)
            if not ops:
                notes[f"{col}.metric"] = "assumed cosine: no vector index on this column"
            kind: IndexKind = {"hnsw": "hnsw", "ivfflat": "ivf_flat"}.get(am, "flat")  # type: ignore[assignment]
            vectors.append(
                VectorField(name=col, dim=mod, metric=metric, index=IndexSpec(kind=kind))
            )
        elif typ == "sparsevec":
            ops = indexes.get(col, ("", ""))[1]
            if not ops:
                notes[f"{col}.metric"] = "assumed dot: no sparsevec index on this column"
            sparse.append(
                SparseField(
                    name=col,
                    metric=_METRIC_OF_SPARSE_OPS.get(ops, Metric.DOT),
                    dim=mod if mod > 0 else None,  # -1: declared without a dimension
                )
            )
        else:
            metadata.append(MetadataField(name=col, type=_PORTABLE_OF_SQL.get(typ, "json")))
            if typ not in _PORTABLE_OF_SQL:
                notes[f"{col}.type"] = f"{typ} read as JSON (to_jsonb)"
    if doc:
        notes["document_column"] = doc
    if "metadata_extra" not in types:
        notes["metadata_extra"] = False
    id_type = IdType.INT if types["id"] in ("bigint", "integer", "smallint") else IdType.STRING
    return CollectionSchema(
        name=name,
        id_type=id_type,
        vectors=tuple(vectors),
        sparse=tuple(sparse),
        metadata=tuple(metadata),
        has_document=doc is not None,
        engine="pgvector",
        engine_settings=notes,
    )


def doc_column(schema: CollectionSchema) -> str:
    """The column holding documents (``document`` unless another tool named it otherwise)."""
    return str(schema.engine_settings.get("document_column", "document"))


def has_extra(schema: CollectionSchema) -> bool:
    """Tables vecmigrate created have metadata_extra; other tables may not."""
    return bool(schema.engine_settings.get("metadata_extra", True))
