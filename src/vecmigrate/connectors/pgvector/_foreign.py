"""Tables vecmigrate did not create, used only by ``connectors/pgvector*.py``: which column
holds the key, the text, the vectors and the metadata, and which metric the vectors are
searched with, read from the catalog and a sample of rows (never by asking for a rename).

* key: the primary key (one column of type integer, bigint, smallint, text, varchar or
  uuid), else ``?id_field=``, else a column with a common id name, else the one unique
  column; a composite primary key needs ``?id_field=``.
* document: ``?document_field=`` or a text column with a common name (``foreign.py``).
* metadata: ``?metadata_field=`` or a json/jsonb column with a common name; its keys become
  typed fields (types from a sample of rows); every other scalar column is a typed field.
* vectors: every ``vector`` / ``sparsevec`` column, or those ``?vector_field=`` names; the
  metric from the operator class of the column's index, else sampled (``sampled_metric``)
  for ``vector`` and unknown for ``sparsevec`` (a copy then needs it in the mapping).

Where each part lives is recorded in ``engine_settings["layout"]`` (see ``_schema.Layout``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg import sql

from vecmigrate.connectors.foreign import (
    ID_NAMES,
    SAMPLE_ROWS,
    FieldsConfig,
    foreign_columns,
    pick_column,
    sampled_metric,
)
from vecmigrate.connectors.pgvector._fulltext import read_text_search
from vecmigrate.connectors.pgvector._sparse import SPARSE_OPS
from vecmigrate.connectors.pgvector._sql import OPS, Query, regclass, unquote
from vecmigrate.errors import ConfigError
from vecmigrate.model import (
    METRIC_UNKNOWN,
    CollectionSchema,
    IdType,
    IndexSpec,
    MetadataField,
    MetadataType,
    Metric,
    SparseField,
    VectorField,
)
from vecmigrate.values import infer_metadata_fields

INT_TYPES = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}
TEXT_TYPES = frozenset({"text", "character varying", "character", "citext"})
JSON_TYPES = frozenset({"json", "jsonb"})
KEY_TYPES = frozenset({*INT_TYPES, *TEXT_TYPES, "uuid"})
# ``?id_field=ctid``: a table without a column that identifies its rows, keyed by their
# physical location (read only: it changes when a row is updated or the table rewritten).
ROW_ID = "ctid"
ROW_ID_HINT = (
    f"?id_field={ROW_ID} to key the rows by their physical location (it changes when a "
    "row is updated or the table rewritten)"
)
VECTOR_TYPES = frozenset({"vector", "halfvec", "sparsevec"})
PORTABLE_OF_SQL: dict[str, MetadataType] = {
    "text": "string",
    "character varying": "string",
    "character": "string",
    "citext": "string",
    "uuid": "string",
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
    "smallint[]": "list<int64>",
    "double precision[]": "list<float64>",
    "real[]": "list<float64>",
    "jsonb": "json",
    "json": "json",
}
_METRIC_OF_OPS = {
    **{v: k for k, v in OPS.items()},
    **{v.replace("vector_", "halfvec_"): k for k, v in OPS.items()},
}
_METRIC_OF_SPARSE_OPS = {v: k for k, v in SPARSE_OPS.items()}


@dataclass(frozen=True)
class Column:
    """One column: ``type`` is the base type without modifier (a domain's base type),
    ``full`` the declared type, ``oid`` the type binary COPY sends."""

    name: str
    type: str
    full: str
    typmod: int
    oid: int
    notnull: bool
    default: bool  # a default, an identity or a generated value fills it when omitted
    writable: bool  # not GENERATED ALWAYS (identity or expression)


ROW_ID_COLUMN = Column(ROW_ID, "tid", "tid (the row's location)", -1, 27, True, True, False)


# ``pg_get_expr`` of an index on one column cast to half precision: (embedding)::halfvec(3072)
_CAST_INDEX = re.compile(r'\(?(?P<column>"(?:[^"]|"")+"|\w+)\)?::(?P<type>halfvec\(\d+\))')
# ... and of an index on one key of a JSON column: (metadata ->> 'source'::text), possibly
# cast: ((metadata ->> 'page'::text))::integer
_JSON_KEY_INDEX = re.compile(
    r"\(*(?P<column>\"(?:[^\"]|\"\")+\"|\w+) ->> '(?P<key>(?:[^']|'')+)'::text\)*(?:::[a-z ]+)?"
)
# Access methods of an index that serves filters on a scalar (or array) column.
FILTER_INDEXES = frozenset({"btree", "hash", "gin", "gist", "brin"})


@dataclass(frozen=True)
class TableInfo:
    """What the catalog says about a table."""

    name: str
    columns: dict[str, Column]
    primary: tuple[str, ...]
    unique: frozenset[str]  # columns with a one-column, non-partial unique index
    indexes: dict[str, tuple[str, str, str]]  # column -> (index, access method, opclass)
    comment: str | None
    # column -> the type its index is built on (an index on ``(embedding::halfvec(3072))``,
    # pgvector's way to index more than 2,000 dimensions): searched as that expression.
    casts: dict[str, str] = dataclasses.field(default_factory=dict)
    # index -> its storage parameters (WITH (m = 32, ef_construction = 128), lists = 100)
    options: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    # (JSON column, key) pairs with an index on that key: filters on it are served
    json_indexes: frozenset[tuple[str, str]] = frozenset()

    def vector_columns(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.type in VECTOR_TYPES]

    def with_row_id(self) -> TableInfo:
        """The table with its rows' location as a column (``?id_field=ctid``)."""
        return dataclasses.replace(self, columns={**self.columns, ROW_ID: ROW_ID_COLUMN})

    def key_repeats(
        self, query: Query, table: sql.Composed, key: str
    ) -> tuple[int, list[str]] | None:
        """(rows without ``key``, up to 3 values in several rows), read from the rows where
        no primary key vouches for it (None: one does)."""
        if self.primary == (key,) or key == ROW_ID:
            return None
        k = sql.Identifier(key)
        repeats = (
            sql.SQL("ARRAY[]::text[]")
            if key in self.unique
            else sql.SQL(
                "ARRAY(SELECT {}::text FROM {} WHERE {} IS NOT NULL GROUP BY {} "
                "HAVING count(*) > 1 LIMIT 3)"
            ).format(k, table, k, k)
        )
        ((nulls, repeated),) = query(
            sql.SQL("SELECT (SELECT count(*) FROM {} WHERE {} IS NULL), {}").format(
                table, k, repeats
            ),
            None,
        )
        return int(nulls), list(repeated)


def table_info(query: Query, namespace: str, name: str) -> TableInfo:
    """Columns, keys, vector indexes and COMMENT of table ``name``."""
    rel = regclass(namespace, name)
    cols = {
        r[0]: Column(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])
        for r in query(
            "SELECT a.attname, CASE WHEN b.typname IN ('vector', 'sparsevec', 'halfvec') "
            "THEN b.typname::text ELSE format_type(b.oid, NULL) END, "
            "format_type(a.atttypid, a.atttypmod), a.atttypmod, b.oid::int, a.attnotnull, "
            "a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '', "
            "a.attidentity <> 'a' AND a.attgenerated = '' "
            "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype "
            "ELSE t.oid END "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (rel,),
        )
    }
    primary: tuple[str, ...] = ()
    unique = set()
    for is_primary, names, whole in query(
        "SELECT i.indisprimary, ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) "
        "WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = k.n ORDER BY k.o), i.indpred IS NULL AND i.indexprs IS NULL "
        "FROM pg_index i WHERE i.indrelid = %s::regclass AND i.indisunique",
        (rel,),
    ):
        if is_primary:
            primary = tuple(names)
        if whole and len(names) == 1:
            unique.add(names[0])
    options: dict[str, dict[str, str]] = {}  # index -> its storage parameters
    indexes = {}
    for column, index, am, ops, reloptions in query(
        "SELECT a.attname, ic.relname, am.amname, oc.opcname, ic.reloptions FROM pg_index i "
        "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam "
        "JOIN pg_opclass oc ON oc.oid = i.indclass[0] "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "WHERE i.indrelid = %s::regclass ORDER BY ic.relname",
        (rel,),
    ):
        indexes[column] = (index, am, ops)
        options[index] = _storage_parameters(reloptions)
    casts: dict[str, str] = {}
    json_indexes = set()
    for index, am, ops, expr, reloptions in query(
        "SELECT ic.relname, am.amname, oc.opcname, pg_get_expr(i.indexprs, i.indrelid), "
        "ic.reloptions FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
        "JOIN pg_am am ON am.oid = ic.relam JOIN pg_opclass oc ON oc.oid = i.indclass[0] "
        "WHERE i.indrelid = %s::regclass AND i.indkey[0] = 0 ORDER BY ic.relname",
        (rel,),
    ):
        options[index] = _storage_parameters(reloptions)
        key = _JSON_KEY_INDEX.fullmatch(expr or "")
        if key is not None and am in FILTER_INDEXES:
            json_indexes.add((unquote(key["column"]), str(key["key"]).replace("''", "'")))
        cast = _CAST_INDEX.fullmatch(expr or "")
        if cast is None:
            continue
        column = unquote(cast["column"])
        if column in cols and column not in indexes:
            indexes[column] = (index, am, ops)
            casts[column] = str(cast["type"])
    comment = query("SELECT obj_description(%s::regclass, 'pg_class')", (rel,))[0][0]
    return TableInfo(
        name,
        cols,
        primary,
        frozenset(unique),
        indexes,
        comment,
        casts,
        options,
        frozenset(json_indexes),
    )


def _storage_parameters(reloptions: list[str] | None) -> dict[str, str]:
    """An index's ``WITH (...)`` as ``pg_class.reloptions`` lists it: ``["m=32", ...]``."""
    return dict(str(o).split("=", 1) for o in reloptions or ())


@dataclass(frozen=True)
class Roles:
    """Which columns hold the key, the document, the metadata object and the vectors."""

    key: str
    document: str | None
    metadata: str | None
    vectors: tuple[str, ...]
    fields: tuple[str, ...]  # other columns, each a typed metadata field
    extra: bool  # a metadata_extra jsonb column


def index_spec(am: str, options: dict[str, str]) -> IndexSpec:
    """The portable index of a pgvector index (access method, storage parameters), its
    parameters under portable names (M, ef_construction, nlist); pgvector's defaults where
    the index was created without them: what it was built with."""
    if am == "hnsw":
        m, efc = int(options.get("m", 16)), int(options.get("ef_construction", 64))
        return IndexSpec(kind="hnsw", params={"M": m, "ef_construction": efc})
    if am == "ivfflat":
        return IndexSpec(kind="ivf_flat", params={"nlist": int(options.get("lists", 100))})
    return IndexSpec(kind="flat")


def _kind(column: Column) -> str:
    if column.type in TEXT_TYPES:
        return "text"
    if column.type in JSON_TYPES:
        return "json"
    return "id" if column.type in KEY_TYPES else column.type


def roles(info: TableInfo, config: FieldsConfig) -> Roles:
    """The role of each column of a table another tool made (ConfigError naming the URI
    parameter when a choice cannot be made from the table)."""
    name, cols = info.name, info.columns
    key = config.id_field
    if key is None and len(info.primary) > 1:
        raise ConfigError(
            f"table {name!r} has a composite primary key ({', '.join(info.primary)}): "
            "name the one column that identifies a record with ?id_field=NAME",
            hint=f"a column with unique values, e.g. ?id_field={info.primary[0]} if it is",
        )
    key = key or (info.primary[0] if info.primary else None)
    scalar = {c: _kind(col) for c, col in cols.items() if col.type not in VECTOR_TYPES}
    if key is None and not any(n in scalar for n in ID_NAMES) and len(info.unique) == 1:
        key = next(iter(info.unique))
    if key is None and not any(n in scalar for n in ID_NAMES):
        raise ConfigError(
            f"table {name!r} has no column recognisable as its id",
            hint=f"name it with ?id_field=NAME (columns: {', '.join(scalar) or 'none'}), "
            f"or {ROW_ID_HINT}",
        )
    found = foreign_columns(name, dataclasses.replace(config, id_field=key), scalar)
    key_col = cols[found.id]
    if key_col.type not in KEY_TYPES and found.id != ROW_ID:
        raise ConfigError(
            f"table {name!r}: key column {found.id!r} is {key_col.full}; vecmigrate reads keys "
            "of type integer, bigint, smallint, text, varchar or uuid",
            hint="name a unique column of one of those types with ?id_field=NAME",
        )
    if found.document and cols[found.document].type not in TEXT_TYPES:
        raise ConfigError(
            f"table {name!r}: document column {found.document!r} is {cols[found.document].full}",
            hint="name a text column with ?document_field=NAME",
        )
    if found.metadata and cols[found.metadata].type not in JSON_TYPES:
        raise ConfigError(
            f"table {name!r}: metadata column {found.metadata!r} is "
            f"{cols[found.metadata].full}, not json or jsonb",
            hint="name a json or jsonb column with ?metadata_field=NAME",
        )
    vectors = info.vector_columns()
    for v in config.vector_fields:
        pick_column(name, "vector", "vector_field", v, (), vectors, required=True)
    chosen = tuple(v for v in vectors if not config.vector_fields or v in config.vector_fields)
    taken = {found.id, found.document, found.metadata, "metadata_extra"}
    fields = tuple(c for c, col in cols.items() if c not in taken and col.type not in VECTOR_TYPES)
    extra = cols.get("metadata_extra")
    return Roles(
        found.id,
        found.document,
        found.metadata,
        chosen,
        fields,
        extra is not None and extra.type == "jsonb",
    )


def describe_foreign(
    query: Query, namespace: str, info: TableInfo, config: FieldsConfig
) -> CollectionSchema:
    """The schema of a table another tool made, with its layout in ``engine_settings``."""
    r = roles(info, config)
    table = sql.SQL("{}.{}").format(sql.Identifier(namespace), sql.Identifier(info.name))
    # A tsvector the table computes is its full-text search (or not carried), not data.
    text = read_text_search(query, regclass(namespace, info.name), r.document)
    notes: dict[str, Any] = {}
    vectors, sparse = [], []
    for name in r.vectors:
        col = info.columns[name]
        index, am, ops = info.indexes.get(name, ("", "", ""))
        if col.type == "sparsevec":
            if ops in _METRIC_OF_SPARSE_OPS:
                metric, source = _METRIC_OF_SPARSE_OPS[ops], f"index {index} ({ops})"
            else:  # pgvector searches sparsevec by l2, inner product or cosine alike
                metric, source = Metric.DOT, METRIC_UNKNOWN
                notes[f"{name}.metric"] = (
                    f"unknown: no sparsevec index; state vectors.{name}.metric in a mapping"
                )
            dim = col.typmod if col.typmod > 0 else None  # -1: declared without one
            sparse.append(SparseField(name=name, metric=metric, dim=dim, metric_source=source))
            continue
        dim = col.typmod if col.typmod > 0 else _rows_dim(query, table, info.name, name, notes)
        if col.type == "halfvec":
            notes[f"{name}.type"] = f"{col.full}: float16 values, read exactly as float32"
        if ops in _METRIC_OF_OPS:
            metric, source = _METRIC_OF_OPS[ops], f"index {index} ({ops})"
        else:
            metric, source = _sampled(query, table, name, dim)
            notes[f"{name}.metric"] = (
                "unknown: no vector index, and the sampled vectors are not unit length; "
                f"state vectors.{name}.metric in a mapping"
                if source == METRIC_UNKNOWN
                else source
            )
        vectors.append(
            VectorField(
                name=name,
                dim=dim,
                metric=metric,
                index=index_spec(am, info.options.get(index, {})),
                metric_source=source,
            )
        )
    metadata = []
    types = {}
    for name in (f for f in r.fields if f not in text.computed):
        col = info.columns[name]
        types[name] = col.type
        indexed = info.indexes.get(name, ("", "", ""))[1] in FILTER_INDEXES
        portable = PORTABLE_OF_SQL.get(col.type, "json")
        metadata.append(MetadataField(name=name, type=portable, indexed=indexed))
        if col.type not in PORTABLE_OF_SQL:
            notes[f"{name}.type"] = f"{col.full} read as JSON (to_jsonb)"
    json_keys: dict[str, str] = {}
    if r.metadata:
        taken = {m.name for m in metadata}
        for f in infer_metadata_fields(_json_sample(query, table, r.metadata)):
            field = f.name if f.name not in taken else f"{r.metadata}.{f.name}"
            json_keys[field] = f.name
            indexed = (r.metadata, f.name) in info.json_indexes
            metadata.append(f.model_copy(update={"name": field, "indexed": indexed}))
    key_type = info.columns[r.key].type
    layout = {
        "key": r.key,
        "key_type": key_type,
        "document": r.document,
        "metadata": r.metadata,
        "json_keys": json_keys,
        "types": types,
        "extra": r.extra,
        "half": [n for n in r.vectors if info.columns[n].type == "halfvec"],
        "casts": {n: info.casts[n] for n in r.vectors if n in info.casts},
    }
    notes["layout"] = layout
    if r.document:
        notes["document_column"] = r.document
    id_type = (
        IdType.INT
        if key_type in INT_TYPES
        else IdType.UUID
        if key_type == "uuid"
        else IdType.STRING
    )
    return CollectionSchema(
        name=info.name,
        id_type=id_type,
        vectors=tuple(vectors),
        sparse=tuple(sparse),
        metadata=tuple(metadata),
        has_document=r.document is not None,
        engine="pgvector",
        engine_settings=notes,
        uncarried=text.uncarried,
        full_text=text.full_text,
    )


def _rows_dim(
    query: Query, table: sql.Composed, name: str, column: str, notes: dict[str, Any]
) -> int:
    """The one dimension the vectors of a ``vector`` column declared without one have."""
    dims = sorted(
        int(r[0])
        for r in query(
            sql.SQL(
                "SELECT DISTINCT vector_dims(v) FROM (SELECT {}::vector AS v FROM {} "
                "WHERE {} IS NOT NULL LIMIT {}) s"
            ).format(
                sql.Identifier(column), table, sql.Identifier(column), sql.Literal(SAMPLE_ROWS)
            ),
            None,
        )
    )
    if len(dims) != 1:
        held = f"vectors of {len(dims)} dimensions ({dims[:5]})" if dims else "no vectors"
        raise ConfigError(
            f"table {name!r}: column {column!r} declares no dimension and holds {held}",
            hint="declare it (ALTER TABLE ... TYPE vector(N)) or leave it out with "
            "?vector_field=OTHER",
        )
    notes[f"{column}.dim"] = f"vector without a dimension: {dims[0]} read from the rows"
    return dims[0]


def _sampled(query: Query, table: sql.Composed, column: str, dim: int) -> tuple[Metric, str]:
    """The metric a sample of the column's vectors implies (``sampled_metric``)."""
    rows = query(
        sql.SQL("SELECT vector_send({}::vector) FROM {} WHERE {} IS NOT NULL LIMIT {}").format(
            sql.Identifier(column), table, sql.Identifier(column), sql.Literal(SAMPLE_ROWS)
        ),
        None,
    )
    raw = [r[0] for r in rows if len(r[0]) == 4 + 4 * dim]
    matrix = np.frombuffer(b"".join(raw), dtype=">f4").reshape(len(raw), dim + 1)[:, 1:]
    return sampled_metric(matrix.astype(np.float32))


def _json_sample(query: Query, table: sql.Composed, column: str) -> list[dict[str, Any]]:
    """JSON objects of a sample of the metadata column (other JSON values are skipped)."""
    rows = query(
        sql.SQL("SELECT {} FROM {} WHERE {} IS NOT NULL LIMIT {}").format(
            sql.Identifier(column), table, sql.Identifier(column), sql.Literal(SAMPLE_ROWS)
        ),
        None,
    )
    return [r[0] for r in rows if isinstance(r[0], dict)]
