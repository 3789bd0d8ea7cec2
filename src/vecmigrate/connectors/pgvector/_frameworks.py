"""Framework layouts on pgvector (``?layout=langchain`` / ``llamaindex`` / ``haystack``), used
only by ``connectors/pgvector``: the tables LangChain's PGVector, LlamaIndex's PGVectorStore
and Haystack's PgvectorDocumentStore keep, read and written as the framework does
(docs/frameworks-layouts.md).

* **langchain**: every collection is a row of ``langchain_pg_collection`` (its ``name``),
  its records the rows of ``langchain_pg_embedding`` with that ``collection_id``. Both
  implementations are read: langchain-community's (``uuid`` key, the application's id in
  ``custom_id``) and langchain-postgres' (the id is the ``id`` varchar key). Missing tables
  are created as langchain-postgres makes them (LangChain's current package; the other
  variant's class cannot read them, nor can langchain-postgres read that variant);
  existing ones are written in their own variant.
* **llamaindex**: collection ``x`` is table ``data_x`` (LlamaIndex lower-cases it): a
  ``bigserial`` key, ``text``, ``metadata_`` json, ``node_id`` (the record id), ``embedding``.
* **haystack**: collection ``x`` is table ``x`` as PgvectorDocumentStore(table_name="x")
  creates it (``haystack_documents`` by default): ``id`` varchar(128) key (the Document
  id), ``embedding``, ``content``, ``meta`` jsonb, and ``blob_data`` / ``blob_meta`` /
  ``blob_mime_type``, which are not carried: a table holding a blob is refused.

The record-level rules (text, metadata, LlamaIndex's ``_node_content``) are
``connectors.frameworks``'. No framework keeps a metric: all three search with cosine by
default, which is what a collection is described with. A copy of l2 or dot vectors into
one records that metric in a ``vecmigrate:`` table COMMENT (with the vector field's name
and the id type when they are not the defaults) and refuses vectors that are not unit
length, the ones cosine would rank otherwise.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
from psycopg import sql
from psycopg.types.json import Json, Jsonb

from vecmigrate.connectors import frameworks as fw
from vecmigrate.connectors.base import IF_EXISTS_HINT, IfExists
from vecmigrate.connectors.foreign import SAMPLE_ROWS
from vecmigrate.connectors.partitions import key_range_partitions
from vecmigrate.connectors.pgvector._foreign import TableInfo, table_info
from vecmigrate.connectors.pgvector._fulltext import TextSearch, config_of, read_text_search
from vecmigrate.connectors.pgvector._records import vector_bytes
from vecmigrate.connectors.pgvector._sql import OPERATOR, json_key_sql, knn, regclass, where_sql
from vecmigrate.connectors.pgvector._write import _copy
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.filters import Node
from vecmigrate.layout import conform
from vecmigrate.model import (
    CollectionSchema,
    IdType,
    IndexKind,
    IndexSpec,
    MetadataField,
    Metric,
    Partition,
    ResumeToken,
    VectorField,
)
from vecmigrate.records import build_batch, metadata_rows, vectors_to_numpy
from vecmigrate.values import infer_metadata_fields

LC_COLLECTION = "langchain_pg_collection"
LC_EMBEDDING = "langchain_pg_embedding"
LI_PREFIX = "data_"
LI_TEXT_SEARCH_CONFIG = "english"  # PGVectorStore's text_search_config default
LI_COLUMNS = frozenset({"id", "text", "metadata_", "node_id", "embedding"})
HS_COLUMNS = frozenset(
    {"id", "embedding", "content", "meta", "blob_data", "blob_meta", "blob_mime_type"}
)
HS_ID_CHARS = 128  # Haystack's id column is VARCHAR(128)
NOTE = "vecmigrate: "  # a table COMMENT vecmigrate wrote (never "{": that is a schema)
BYTEA = 17


class Host(Protocol):
    """What this module needs of ``PgvectorConnector``."""

    namespace: str

    def _query(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]: ...
    def _conn(self) -> Any: ...
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any: ...
    def _table(self, name: str) -> sql.Composed: ...


@dataclass(frozen=True)
class Place:
    """Where the records of one framework collection live."""

    variant: str  # "langchain-community" | "langchain-postgres" | "llamaindex" | "haystack"
    table: str
    key: str  # the unique column scans page on
    key_type: str  # uuid | text | bigint
    rid: sql.Composable  # the record id, as text
    document: str
    metadata: str
    metadata_type: str  # json | jsonb
    dim: int | None  # the embedding column's declared dimension
    index: IndexKind
    collection_id: uuid.UUID | None = None  # langchain: the collection's row
    # The embedding column is halfvec (LlamaIndex's use_halfvec, Haystack's
    # vector_type="halfvec"): read widened to vector (exact), searched as halfvec.
    half: bool = False

    def scope(self) -> tuple[sql.Composable, list[Any]]:
        """The predicate selecting this collection's rows, and its parameters."""
        if self.collection_id is None:
            return sql.SQL("true"), []
        return sql.SQL("collection_id = %s"), [self.collection_id]

    def key_sql(self) -> sql.Composable:
        key = sql.Identifier(self.key)
        return sql.SQL("{}::text").format(key) if self.key_type == "uuid" else key

    def key_param(self) -> sql.Composable:
        return sql.SQL("%s::{}").format(sql.SQL(self.key_type))


def _physical(layout: str, name: str) -> str:
    if layout == fw.HAYSTACK:
        return name  # PgvectorDocumentStore(table_name=name) uses the name as it is
    return LC_EMBEDDING if layout == fw.LANGCHAIN else LI_PREFIX + name.lower()


_WHAT = {
    fw.LANGCHAIN: "LangChain's PGVector",
    fw.LLAMAINDEX: "LlamaIndex's PGVectorStore",
    fw.HAYSTACK: "Haystack's PgvectorDocumentStore",
}


def _dim_of(info: TableInfo) -> int | None:
    col = info.columns.get("embedding")
    return col.typmod if col is not None and col.typmod > 0 else None


def _half(info: TableInfo) -> bool:
    col = info.columns.get("embedding")
    return col is not None and col.type == "halfvec"


def _index_of(info: TableInfo) -> IndexKind:
    am = info.indexes.get("embedding", ("", "", ""))[1]
    kind: IndexKind = "hnsw" if am == "hnsw" else "ivf_flat" if am == "ivfflat" else "flat"
    return kind


class FrameworkTables:
    """The collections of one framework's tables in one PostgreSQL schema."""

    def __init__(self, host: Host, layout: str) -> None:
        self.host = host
        self.layout = layout
        self.default_metric, self.default_source = fw.search_metric(layout, "pgvector")
        self._places: dict[str, Place] = {}
        # What ``create`` was given: the layout batches arrive in for ``upsert``.
        self.written: dict[str, CollectionSchema] = {}

    # -- catalog -------------------------------------------------------------------------
    def _exists(self, table: str) -> bool:
        where = regclass(self.host.namespace, table)
        return bool(self.host._query("SELECT to_regclass(%s) IS NOT NULL", (where,))[0][0])

    def _info(self, table: str) -> TableInfo:
        return table_info(self.host._query, self.host.namespace, table)

    def list_collections(self) -> list[str]:
        if self.layout == fw.LANGCHAIN:
            if not (self._exists(LC_COLLECTION) and self._exists(LC_EMBEDDING)):
                return []
            rows = self.host._query(
                sql.SQL("SELECT DISTINCT name FROM {} WHERE name IS NOT NULL").format(
                    self.host._table(LC_COLLECTION)
                )
            )
            return sorted(r[0] for r in rows)
        if self.layout == fw.HAYSTACK:
            rows = self.host._query(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                "AND NOT a.attisdropped WHERE n.nspname = %s AND c.relkind = 'r' "
                "GROUP BY c.relname HAVING array_agg(a.attname::text) @> %s",
                (self.host.namespace, sorted(HS_COLUMNS)),
            )
            return sorted(r[0] for r in rows)
        rows = self.host._query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE 'data\\_%%' "
            "GROUP BY c.relname HAVING array_agg(a.attname::text) @> %s",
            (self.host.namespace, sorted(LI_COLUMNS)),
        )
        return sorted(r[0][len(LI_PREFIX) :] for r in rows)

    def place(self, name: str) -> Place:
        """Where collection ``name`` lives; ConfigError when it does not exist."""
        if name in self._places:
            return self._places[name]
        if self.layout == fw.LANGCHAIN:
            place = self._langchain_place(name)
        elif self.layout == fw.HAYSTACK:
            place = self._haystack_place(name)
        else:
            table = _physical(self.layout, name)
            if not self._exists(table):
                raise ConfigError(
                    f"{self.host.namespace} has no LlamaIndex table {table!r} (collection "
                    f"{name!r}, layout=llamaindex)",
                    hint=f"collections there: {', '.join(self.list_collections()) or 'none'}",
                )
            info = self._info(table)
            missing = sorted(LI_COLUMNS - set(info.columns))
            if missing:
                raise ConfigError(
                    f"table {table!r} is not LlamaIndex PGVectorStore's: it has no "
                    f"{', '.join(missing)} column",
                    hint="read it without ?layout= (as a table)",
                )
            place = Place(
                "llamaindex",
                table,
                "id",
                "bigint",
                sql.SQL("coalesce(node_id, id::text)"),
                "text",
                "metadata_",
                info.columns["metadata_"].type,
                _dim_of(info),
                _index_of(info),
                half=_half(info),
            )
        self._places[name] = place
        return place

    def _haystack_place(self, name: str) -> Place:
        if not self._exists(name):
            raise ConfigError(
                f"{self.host.namespace} has no Haystack table {name!r} (layout=haystack)",
                hint=f"collections there: {', '.join(self.list_collections()) or 'none'}",
            )
        info = self._info(name)
        missing = sorted(HS_COLUMNS - set(info.columns))
        if missing:
            raise ConfigError(
                f"table {name!r} is not Haystack PgvectorDocumentStore's: it has no "
                f"{', '.join(missing)} column",
                hint="read it without ?layout= (as a table)",
            )
        return Place(
            "haystack",
            name,
            "id",
            "text",
            sql.SQL("id"),
            "content",
            "meta",
            info.columns["meta"].type,
            _dim_of(info),
            _index_of(info),
            half=_half(info),
        )

    def _refuse_blobs(self, place: Place, name: str) -> None:
        """DataError naming the first Document that holds a blob: bytes the portable model
        has no field for, which a copy would lose."""
        rows = self.host._query(
            sql.SQL(
                "SELECT id FROM {} WHERE blob_data IS NOT NULL OR blob_meta IS NOT NULL "
                "OR blob_mime_type IS NOT NULL ORDER BY id LIMIT 1"
            ).format(self.host._table(place.table))
        )
        if rows:
            raise DataError(
                "the Document has a blob (blob_data / blob_meta / blob_mime_type): "
                "layout=haystack carries id, content, meta and the embedding only",
                collection=name,
                record_id=rows[0][0],
                field="blob_data",
                hint="copy the table without ?layout= (every column as it is), or clear the "
                "blobs first",
            )

    def _langchain_variant(self) -> tuple[str, TableInfo]:
        info = self._info(LC_EMBEDDING)
        if {"custom_id", "uuid"} <= set(info.columns):
            return "langchain-community", info
        if "id" in info.columns:
            return "langchain-postgres", info
        raise ConfigError(
            f"{LC_EMBEDDING} has neither langchain-community's columns (uuid, custom_id) "
            "nor langchain-postgres' (id)",
            hint="read it without ?layout= (as a table)",
        )

    def _langchain_place(self, name: str) -> Place:
        absent = ConfigError(
            f"{self.host.namespace} has no LangChain collection {name!r} (layout=langchain)",
            hint=f"collections there: {', '.join(self.list_collections()) or 'none'}",
        )
        if not (self._exists(LC_COLLECTION) and self._exists(LC_EMBEDDING)):
            raise absent
        rows = self.host._query(
            sql.SQL("SELECT uuid FROM {} WHERE name = %s").format(self.host._table(LC_COLLECTION)),
            (name,),
        )
        if not rows:
            raise absent
        if len(rows) > 1:
            raise ConfigError(
                f"{LC_COLLECTION} has {len(rows)} rows named {name!r}: LangChain reads "
                "whichever the database returns first",
                hint="delete the extra rows (and their records) so one collection has the name",
            )
        variant, info = self._langchain_variant()
        community = variant == "langchain-community"
        return Place(
            variant,
            LC_EMBEDDING,
            "uuid" if community else "id",
            "uuid" if community else "text",
            sql.SQL("coalesce(custom_id, uuid::text)" if community else "id"),
            "document",
            "cmetadata",
            info.columns["cmetadata"].type,
            _dim_of(info),
            _index_of(info),
            rows[0][0],
        )

    # -- the shape vecmigrate wrote --------------------------------------------------------
    def _note_table(self, name: str) -> str:
        return LC_COLLECTION if self.layout == fw.LANGCHAIN else _physical(self.layout, name)

    def _notes(self, table: str) -> dict[str, Any] | None:
        """The ``vecmigrate:`` COMMENT of ``table`` ({} when it has none; None when the
        comment is someone else's)."""
        rel = regclass(self.host.namespace, table)
        raw = self.host._query("SELECT obj_description(%s::regclass, 'pg_class')", (rel,))[0][0]
        if not raw:
            return {}
        if not raw.startswith(NOTE):
            return None
        try:
            notes = json.loads(raw[len(NOTE) :])
        except ValueError:
            return None
        return notes if isinstance(notes, dict) else None

    def _shape(self, name: str) -> dict[str, Any]:
        notes = self._notes(self._note_table(name)) or {}
        if self.layout == fw.LANGCHAIN:
            notes = notes.get("collections", {}).get(name, {})
        return notes if isinstance(notes, dict) else {}

    def _record_shape(self, name: str, shape: dict[str, Any]) -> None:
        table = self._note_table(name)
        notes = self._notes(table)
        if notes is None:
            return  # the application's own comment: left as it is
        if self.layout == fw.LANGCHAIN:
            collections = dict(notes.get("collections", {}))
            collections.pop(name, None)
            if shape:
                collections[name] = shape
            notes = {"collections": collections} if collections else {}
        else:
            notes = shape
        text = NOTE + json.dumps(notes, sort_keys=True) if notes else None
        self.host._query(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(self.host._table(table), sql.Literal(text))
        )

    # -- describe --------------------------------------------------------------------------
    def describe(self, name: str) -> CollectionSchema:
        place = self.place(name)
        if self.layout == fw.HAYSTACK:
            self._refuse_blobs(place, name)
        shape = self._shape(name)
        table = self.host._table(place.table)
        scope, params = place.scope()
        dim = place.dim or self._rows_dim(place, name)
        metric_name = shape.get("metric")
        if metric_name:
            metric = Metric(metric_name)
            source = (
                f"{metric.value}, as vecmigrate copied it (its note on {self._note_table(name)}); "
                f"{self.default_source}, which ranks these unit-length vectors alike"
            )
        else:
            metric, source = self.default_metric, self.default_source
        rows = self.host._query(
            sql.SQL("SELECT {}, {} FROM {} WHERE {} ORDER BY {} LIMIT {}").format(
                sql.Identifier(place.document),
                sql.Identifier(place.metadata),
                table,
                scope,
                sql.Identifier(place.key),
                sql.Literal(SAMPLE_ROWS),
            ),
            params,
        )
        metas = [self._read(text, meta)[1] for text, meta in rows]
        vname = str(shape.get("vector", fw.VECTOR))
        vector = VectorField(
            name=vname,
            dim=dim,
            metric=metric,
            index=IndexSpec(kind=place.index),
            metric_source=source,
        )
        framework = {
            "layout": self.layout,
            "variant": place.variant,
            "table": f"{self.host.namespace}.{place.table}",
        }
        # LlamaIndex's hybrid search: its text_search_tsv over the text (full-text search).
        # (Haystack's store makes its keyword index whether the application searches with
        # it or not, and makes it again on any Haystack table: not read as full-text.)
        text = TextSearch()
        if self.layout == fw.LLAMAINDEX:
            rel = regclass(self.host.namespace, place.table)
            text = read_text_search(self.host._query, rel, place.document)
        return CollectionSchema(
            name=name,
            id_type=IdType.INT if shape.get("id_type") == "int" else IdType.STRING,
            vectors=(vector,),
            metadata=infer_metadata_fields(metas),
            has_document=bool(shape.get("has_document", True)),
            engine="pgvector",
            engine_settings={"pgvector.framework": framework, f"{vname}.metric": source},
            full_text=text.full_text,
            uncarried=text.uncarried,
        )

    def _rows_dim(self, place: Place, name: str) -> int:
        scope, params = place.scope()
        rows = self.host._query(
            sql.SQL(
                "SELECT DISTINCT vector_dims(embedding) FROM (SELECT embedding FROM {} WHERE {} "
                "AND embedding IS NOT NULL LIMIT {}) s"
            ).format(self.host._table(place.table), scope, sql.Literal(SAMPLE_ROWS)),
            params,
        )
        dims = sorted(int(r[0]) for r in rows)
        if len(dims) != 1:
            held = f"vectors of {len(dims)} dimensions ({dims[:5]})" if dims else "no vectors"
            raise ConfigError(
                f"{self.layout} collection {name!r}: the embedding column declares no "
                f"dimension and the collection holds {held}",
                hint="a collection with records of one dimension can be read",
            )
        return dims[0]

    def _read(self, text: Any, stored: Any) -> tuple[str | None, dict[str, Any]]:
        meta = stored if isinstance(stored, dict) else {}
        if self.layout == fw.LANGCHAIN:
            doc, out = fw.langchain_read(text, meta)
        elif self.layout == fw.HAYSTACK:
            doc, out = fw.haystack_read(text, meta)
        else:
            doc, out = fw.llamaindex_read(meta, text)
        if stored is not None and not isinstance(stored, dict):
            out[self._meta_column()] = stored  # not an object: kept as it is
        return doc, out

    def _meta_column(self) -> str:
        if self.layout == fw.HAYSTACK:
            return "meta"
        return "cmetadata" if self.layout == fw.LANGCHAIN else "metadata_"

    # -- reading ---------------------------------------------------------------------------
    def _field_sql(self, place: Place) -> Any:
        def field(f: MetadataField) -> tuple[sql.Composable, str]:
            key = f.name if self.layout != fw.LLAMAINDEX else fw.llamaindex_top_key(f.name)
            if key is None:
                return sql.SQL("NULL::jsonb"), "jsonb"
            expr, typ = json_key_sql(place.metadata, key, f)
            if self.layout == fw.LLAMAINDEX and key == fw.REF_DOC_ID and f.type == "string":
                # LlamaIndex writes "None" for a node without a source: no ref_doc_id here.
                return sql.SQL("NULLIF({}, {})").format(expr, sql.Literal(fw.NO_SOURCE)), typ
            return expr, typ

        return field

    def _where(self, place: Place, node: Node | None) -> tuple[sql.Composable, list[Any]]:
        scope, params = place.scope()
        if node is None:
            return scope, params
        cond, more = where_sql(node, self._field_sql(place))
        return sql.SQL("{} AND {}").format(scope, cond), [*params, *more]

    def count(self, name: str, node: Node | None) -> int:
        place = self.place(name)
        where, params = self._where(place, node)
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
            self.host._table(place.table), where
        )
        return int(self.host._query(query, params)[0][0])

    def partitions(self, name: str, n: int) -> list[Partition]:
        place = self.place(name)
        total = self.count(name, None)
        n = max(1, min(n, total // 1000 + 1))
        if n == 1:
            return key_range_partitions([], total)
        scope, params = place.scope()
        key = sql.Identifier(place.key)
        uppers = [
            r[0]
            for r in self.host._query(
                sql.SQL(
                    "SELECT DISTINCT ON (b) k FROM (SELECT {} AS k, ntile({}) OVER (ORDER BY {}) "
                    "AS b FROM {} WHERE {}) s ORDER BY b, k DESC"
                ).format(
                    place.key_sql(), sql.Literal(n), key, self.host._table(place.table), scope
                ),
                params,
            )
        ]
        return key_range_partitions(uppers[:-1], total)

    def _select(self, place: Place) -> sql.Composed:
        embedding = "embedding::vector" if place.half else "embedding"  # float16 widens exactly
        return sql.SQL("{}, {}, {}, {}, vector_send({})").format(
            place.key_sql(),
            place.rid,
            sql.Identifier(place.document),
            sql.Identifier(place.metadata),
            sql.SQL(embedding),
        )

    def scan(
        self,
        name: str,
        schema: CollectionSchema,
        partition: Partition,
        resume: ResumeToken | None,
        batch_rows: int,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        place = self.place(name)
        after = json.loads(resume)["after"] if resume else partition.spec["after"]
        upto = partition.spec["upto"]
        key = sql.Identifier(place.key)
        while True:
            where, params = self._where(place, None)
            conds = [where]
            if after is not None:
                conds.append(sql.SQL("{} > {}").format(key, place.key_param()))
                params.append(after)
            if upto is not None:
                conds.append(sql.SQL("{} <= {}").format(key, place.key_param()))
                params.append(upto)
            rows = self.host._query(
                sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {}").format(
                    self._select(place),
                    self.host._table(place.table),
                    sql.SQL(" AND ").join(conds),
                    key,
                    sql.Literal(batch_rows),
                ),
                params,
            )
            if not rows:
                return
            after = rows[-1][0]
            yield self._batch(name, schema, rows), json.dumps({"after": after})
            if len(rows) < batch_rows:
                return

    def fetch(self, name: str, schema: CollectionSchema, ids: Sequence[Any]) -> pa.RecordBatch:
        place = self.place(name)
        where, params = self._where(place, None)
        rows = self.host._query(
            sql.SQL("SELECT {} FROM {} WHERE {} AND {} = ANY(%s::text[]) ORDER BY {}").format(
                self._select(place),
                self.host._table(place.table),
                where,
                place.rid,
                sql.Identifier(place.key),
            ),
            [*params, [str(i) for i in ids]],
        )
        return self._batch(name, schema, rows)

    def _batch(
        self, name: str, schema: CollectionSchema, rows: list[tuple[Any, ...]]
    ) -> pa.RecordBatch:
        v = schema.vector
        ids: list[Any] = []
        docs: list[str | None] = []
        metas: list[dict[str, Any]] = []
        raw: list[bytes] = []
        for _, rid, text, stored, vec in rows:
            if vec is None or len(vec) != 4 + 4 * v.dim:
                held = "no embedding" if vec is None else f"{(len(vec) - 4) // 4} dimensions"
                raise DataError(
                    f"record has {held}; the collection's vectors have {v.dim}",
                    collection=name,
                    record_id=rid,
                    field="embedding",
                )
            if schema.id_type is IdType.INT:
                try:
                    rid = int(rid)
                except ValueError:
                    raise DataError(
                        "id is not an integer (vecmigrate wrote the collection's ids as ones)",
                        collection=name,
                        record_id=rid,
                        field="id",
                    ) from None
            doc, meta = self._read(text, stored)
            ids.append(rid)
            docs.append(doc)
            metas.append(meta)
            raw.append(bytes(vec))
        matrix = np.frombuffer(b"".join(raw), dtype=">f4").reshape(len(rows), v.dim + 1)
        vectors = matrix[:, 1:].astype(np.float32)
        return build_batch(
            schema,
            ids,
            {v.name: vectors},
            documents=docs if schema.has_document else None,
            metadata=metas,
            explicit_nulls=True,
        )

    # -- writing ---------------------------------------------------------------------------
    def create(self, schema: CollectionSchema, if_exists: IfExists) -> None:
        name = schema.name
        what = _WHAT[self.layout]
        if len(schema.vectors) != 1 or schema.sparse:
            raise ConfigError(
                f"{what} keeps one dense embedding per record; {name!r} has "
                f"{len(schema.vectors)} vector and {len(schema.sparse)} sparse field(s)",
                hint="keep one vector field: drop the others in a mapping "
                "(vectors: {NAME: {drop: true}})",
            )
        v = schema.vector
        shape: dict[str, Any] = {}
        if v.name != fw.VECTOR:
            shape["vector"] = v.name
        if v.metric is not self.default_metric:
            shape["metric"] = v.metric.value
        if schema.id_type is IdType.INT:
            shape["id_type"] = "int"
        if not schema.has_document:
            shape["has_document"] = False
        if schema.full_text and (self.layout == fw.LANGCHAIN or len(schema.full_text) > 1):
            raise ConfigError(
                f"{what} keeps {'no' if self.layout == fw.LANGCHAIN else 'one'} full-text "
                f"search; {name!r} has {', '.join(f.name for f in schema.full_text)}",
                hint="leave it behind in a mapping (vectors: "
                f"{{{schema.full_text[-1].name}: {{drop: true}}}})",
            )
        self._places.pop(name, None)
        if self.layout == fw.LANGCHAIN:
            self._create_langchain(schema, if_exists)
        elif self.layout == fw.HAYSTACK:
            self._create_haystack(schema, if_exists)
        else:
            self._create_llamaindex(schema, if_exists)
        self._places.pop(name, None)
        place = self.place(name)
        if place.half:
            raise ConfigError(
                f"{place.table}.embedding is halfvec (float16): writing into it is not built; "
                "nothing was written",
                hint="copy into a new table (another --target-collection): it gets vector "
                "columns, which hold every float32 exactly",
            )
        if place.dim is not None and place.dim != v.dim:
            raise ConfigError(
                f"{place.table}.embedding is vector({place.dim}); {name!r} has {v.dim} "
                "dimensions: nothing was written",
                hint="copy into another schema (?schema=) or database",
            )
        self._record_shape(name, shape)
        self.written[name] = schema

    def _records(self, place: Place) -> int:
        scope, params = place.scope()
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
            self.host._table(place.table), scope
        )
        return int(self.host._query(query, params)[0][0])

    def _existing(self, name: str, if_exists: IfExists, what: str) -> Place | None:
        """The place of an existing collection to keep (reuse, or empty), None when there
        is none or ``replace`` empties it; ConfigError for ``fail`` on records."""
        try:
            place = self.place(name)
        except ConfigError:
            return None
        held = self._records(place)
        if held and if_exists == "fail":
            raise ConfigError(
                f"{what} {name!r} already exists ({held} records)", hint=IF_EXISTS_HINT
            )
        return place

    def _create_langchain(self, schema: CollectionSchema, if_exists: IfExists) -> None:
        name, dim = schema.name, schema.vector.dim
        have = (self._exists(LC_COLLECTION), self._exists(LC_EMBEDDING))
        if have == (False, False):
            # As langchain-postgres' PGVector creates them (its SQLAlchemy models, with
            # embedding_length and use_jsonb=True): LangChain's current package, which
            # cannot read langchain-community's variant (no ``id`` column) - nor can that
            # one read these (no ``custom_id``): its users create their tables first.
            coll, emb = self.host._table(LC_COLLECTION), self.host._table(LC_EMBEDDING)
            self._run(
                sql.SQL(
                    "CREATE TABLE {} (uuid UUID NOT NULL, name VARCHAR NOT NULL, cmetadata JSON, "
                    "PRIMARY KEY (uuid), UNIQUE (name))"
                ).format(coll),
                sql.SQL(
                    "CREATE TABLE {} (id VARCHAR NOT NULL, collection_id UUID, "
                    "embedding VECTOR({}), document VARCHAR, cmetadata JSONB, PRIMARY KEY (id), "
                    "FOREIGN KEY(collection_id) REFERENCES {} (uuid) ON DELETE CASCADE)"
                ).format(emb, sql.Literal(dim), coll),
                sql.SQL(
                    "CREATE INDEX ix_cmetadata_gin ON {} USING gin (cmetadata jsonb_path_ops)"
                ).format(emb),
            )
        elif not all(have):
            present = LC_COLLECTION if have[0] else LC_EMBEDDING
            raise ConfigError(
                f"{self.host.namespace}.{present} exists without its companion table: "
                "not LangChain's PGVector tables",
                hint="copy into another schema (?schema=) or database",
            )
        held = _dim_of(self._info(LC_EMBEDDING))
        if held is not None and held != dim:
            raise ConfigError(
                f"{LC_EMBEDDING}.embedding is vector({held}), shared by every LangChain "
                f"collection there; {name!r} has {dim} dimensions: nothing was written",
                hint="copy into another schema (?schema=) or database",
            )
        place = self._existing(name, if_exists, "LangChain collection")
        if place is None:
            self.host._query(
                sql.SQL("INSERT INTO {} (name, cmetadata, uuid) VALUES (%s, NULL, %s)").format(
                    self.host._table(LC_COLLECTION)
                ),
                (name, uuid.uuid4()),
            )
        elif if_exists == "replace":
            # The collection row (and the application's collection metadata) stays.
            self.host._query(
                sql.SQL("DELETE FROM {} WHERE collection_id = %s").format(
                    self.host._table(LC_EMBEDDING)
                ),
                (place.collection_id,),
            )

    def _create_llamaindex(self, schema: CollectionSchema, if_exists: IfExists) -> None:
        name, dim = schema.name, schema.vector.dim
        table = _physical(self.layout, name)
        if self._exists(table) and not set(self._info(table).columns) >= LI_COLUMNS:
            raise ConfigError(
                f"{self.host.namespace}.{table} exists and is not a LlamaIndex table: "
                "vecmigrate neither writes into it nor replaces it",
                hint="choose another target collection (--target-collection)",
            )
        place = self._existing(name, if_exists, "LlamaIndex table")
        if place is not None and if_exists != "replace":
            at = regclass(self.host.namespace, table)
            if schema.full_text and not read_text_search(self.host._query, at, "text").full_text:
                raise ConfigError(
                    f"{table!r} has no hybrid search (text_search_tsv); {name!r} has full-text "
                    f"search ({schema.full_text[0].name}): its records would be missing from "
                    "the application's keyword search",
                    hint="create the store with hybrid_search=True, or leave it behind in a "
                    f"mapping (vectors: {{{schema.full_text[0].name}: {{drop: true}}}})",
                )
            return
        rel = self.host._table(table)
        index = sql.Identifier(f"{name.lower()}_idx_1"[:63])
        # As LlamaIndex's PGVectorStore creates it (use_jsonb=False), with hybrid search
        # (hybrid_search=True) where the source has full-text search: its configuration,
        # else LlamaIndex's default.
        hybrid = [
            sql.SQL(
                ", text_search_tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector({}, text)) STORED"
            ).format(sql.Literal(config_of(f, LI_TEXT_SEARCH_CONFIG)))
            for f in schema.full_text
        ]
        gin = [
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (text_search_tsv)").format(
                sql.Identifier(f"{name.lower()}_idx"[:63]), rel
            )
            for _ in schema.full_text
        ]
        self._run(
            sql.SQL("DROP TABLE IF EXISTS {}").format(rel),
            sql.SQL(
                "CREATE TABLE {} (id BIGSERIAL NOT NULL, text VARCHAR NOT NULL, metadata_ JSON, "
                "node_id VARCHAR, embedding VECTOR({}){}, PRIMARY KEY (id))"
            ).format(rel, sql.Literal(dim), sql.Composed(hybrid)),
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} USING btree ((metadata_ ->> 'ref_doc_id'))"
            ).format(index, rel),
            *gin,
        )

    def _create_haystack(self, schema: CollectionSchema, if_exists: IfExists) -> None:
        name, dim = schema.name, schema.vector.dim
        if self._exists(name) and not set(self._info(name).columns) >= HS_COLUMNS:
            raise ConfigError(
                f"{self.host.namespace}.{name} exists and is not a Haystack table: "
                "vecmigrate neither writes into it nor replaces it",
                hint="choose another target collection (--target-collection)",
            )
        place = self._existing(name, if_exists, "Haystack table")
        if place is not None and if_exists != "replace":
            return
        rel = self.host._table(name)
        # PgvectorDocumentStore's CREATE_TABLE_STATEMENT (vector type, its defaults); the
        # keyword index and an HNSW index are the store's to create when it opens the
        # table (create_table=True, search_strategy=...): it checks for them by name.
        self._run(
            sql.SQL("DROP TABLE IF EXISTS {}").format(rel),
            sql.SQL(
                "CREATE TABLE {} (id VARCHAR(128) PRIMARY KEY, embedding VECTOR({}), "
                "content TEXT, blob_data BYTEA, blob_meta JSONB, blob_mime_type VARCHAR(255), "
                "meta JSONB)"
            ).format(rel, sql.Literal(dim)),
        )

    def _run(self, *statements: sql.Composable) -> None:
        def run(conn: Any) -> None:
            with conn.transaction(), conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)

        self.host._call(f"create {self.layout} tables", run, self.host._conn())

    def upsert(self, name: str, schema: CollectionSchema, batch: pa.RecordBatch) -> None:
        schema = self.written.get(name, schema)
        batch = conform(batch, schema)
        place = self.place(name)
        v = schema.vector
        ids = [str(i) for i in batch.column("id").to_pylist()]
        docs = batch.column("document").to_pylist() if schema.has_document else [None] * len(ids)
        metas = metadata_rows(batch, schema)
        column = batch.column(v.name)
        if v.metric is not self.default_metric:
            unit = fw.unit_length(vectors_to_numpy(column))
            if not unit.all():
                i = int(np.flatnonzero(~unit)[0])
                raise DataError(
                    f"vector is not unit length: {self.default_source}, which ranks it "
                    f"differently than {v.metric.value} (the metric it was copied for)",
                    collection=name,
                    record_id=ids[i],
                    field=v.name,
                    hint="normalise the vectors (mapping: vectors: {NAME: {normalize: true}}) "
                    "or search the application's store with the source's metric",
                )
        vecs = vector_bytes(column, v.dim)
        wrap = Jsonb if place.metadata_type == "jsonb" else Json
        rows: list[tuple[Any, ...]] = []
        if self.layout == fw.LANGCHAIN:
            for rid, doc, meta, vec in zip(ids, docs, metas, vecs, strict=True):
                text, stored = fw.langchain_write(doc, meta)
                if place.variant == "langchain-community":
                    assert place.collection_id is not None
                    row_uuid = uuid.uuid5(place.collection_id, rid)
                    rows.append((place.collection_id, vec, text, wrap(stored), rid, row_uuid))
                else:
                    rows.append((rid, place.collection_id, vec, text, wrap(stored)))
            if place.variant == "langchain-community":
                names = ["collection_id", "embedding", "document", "cmetadata", "custom_id", "uuid"]
                types: list[int | str] = [
                    "uuid",
                    BYTEA,
                    "text",
                    place.metadata_type,
                    "text",
                    "uuid",
                ]
                match = sql.SQL("collection_id = %s AND custom_id = ANY(%s)")
                params: list[Any] = [place.collection_id, ids]
            else:
                names = ["id", "collection_id", "embedding", "document", "cmetadata"]
                types = ["text", "uuid", BYTEA, "text", place.metadata_type]
                # langchain-postgres' id is the table's key across collections: its upsert
                # moves an id written into another collection, and so does this one.
                match = sql.SQL("id = ANY(%s)")
                params = [ids]
        elif self.layout == fw.HAYSTACK:
            for rid, doc, meta, vec in zip(ids, docs, metas, vecs, strict=True):
                if len(rid) > HS_ID_CHARS:
                    raise DataError(
                        f"id has {len(rid)} characters; Haystack's id column is "
                        f"varchar({HS_ID_CHARS})",
                        collection=name,
                        record_id=rid,
                        field="id",
                        hint="map ids with the uuid5 strategy",
                    )
                content, stored = fw.haystack_write(doc, meta)
                rows.append((rid, vec, content, wrap(stored)))
            names = ["id", "embedding", "content", "meta"]
            types = ["text", BYTEA, "text", place.metadata_type]
            match = sql.SQL("id = ANY(%s)")
            params = [ids]
        else:
            for rid, doc, meta, vec in zip(ids, docs, metas, vecs, strict=True):
                if doc is None and schema.has_document:
                    raise DataError(
                        "record has no document: LlamaIndex keeps a text for every node "
                        "(a collection without documents is written with empty texts)",
                        collection=name,
                        record_id=rid,
                        field="document",
                    )
                text, stored = fw.llamaindex_write(rid, doc, meta, text_in_node=False)
                rows.append((text, wrap(stored), rid, vec))
            names = ["text", "metadata_", "node_id", "embedding"]
            types = ["text", place.metadata_type, "text", BYTEA]
            match = sql.SQL("node_id = ANY(%s)")
            params = [ids]
        table = self.host._table(place.table)

        def write(conn: Any) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(sql.SQL("DELETE FROM {} WHERE {}").format(table, match), params)
                _copy(cur, table, [sql.Identifier(c) for c in names], types, rows)

        self.host._call(f"upsert into {name!r}", write, self.host._conn())

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        place = self.place(name)
        where, params = self._where(place, None)
        self.host._query(
            sql.SQL("DELETE FROM {} WHERE {} AND {} = ANY(%s::text[])").format(
                self.host._table(place.table), where, place.rid
            ),
            [*params, [str(i) for i in ids]],
        )

    def drop(self, name: str) -> None:
        self.written.pop(name, None)
        try:
            place = self.place(name)
        except ConfigError:
            return
        finally:
            self._places.pop(name, None)
        if self.layout == fw.LANGCHAIN:
            self._record_shape(name, {})
            self._run(
                sql.SQL("DELETE FROM {} WHERE collection_id = {}").format(
                    self.host._table(LC_EMBEDDING), sql.Literal(str(place.collection_id))
                ),
                sql.SQL("DELETE FROM {} WHERE uuid = {}").format(
                    self.host._table(LC_COLLECTION), sql.Literal(str(place.collection_id))
                ),
            )
        else:
            self.host._query(
                sql.SQL("DROP TABLE IF EXISTS {}").format(self.host._table(place.table))
            )

    # -- querying --------------------------------------------------------------------------
    def search(
        self,
        name: str,
        schema: CollectionSchema,
        vectors: np.ndarray,
        k: int,
        node: Node | None,
        ef: int,
    ) -> tuple[list[list[Any]], list[list[float]]]:
        place = self.place(name)
        where, params = self._where(place, node)
        op = sql.SQL(OPERATOR[schema.vector.metric])
        bound = sql.SQL("%s::halfvec" if place.half else "%s")  # as the application searches
        query = sql.SQL(
            "SELECT {}, embedding {} {} AS d FROM {} WHERE {} ORDER BY embedding {} {} LIMIT {}"
        ).format(
            place.rid, op, bound, self.host._table(place.table), where, op, bound, sql.Literal(k)
        )
        ids, scores = self.host._call(
            f"search in {name!r}", knn, self.host._conn(), query, params, vectors, ef
        )
        if schema.id_type is IdType.INT:
            ids = [[int(i) for i in row] for row in ids]
        return ids, scores
