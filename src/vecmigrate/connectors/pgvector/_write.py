"""Writing rows, used only by ``connectors/pgvector*.py``.

``write`` sends rows by binary COPY, straight into the table until a key repeats, then
through a staging table and ``INSERT ... ON CONFLICT (key) DO UPDATE``.

``WritePlan`` writes into a table another tool (the application) made, in its own column
types: ``plan_write`` checks before the first write that the table can hold what arrives
(a column per field of a type that can hold its values, the vector dimensions, NOT NULL
columns filled, a unique key for upserts) and names every column that does not fit;
``WritePlan.rows`` converts each value to its column's type exactly (``_values``), and a
value that does not fit (3.5 or 2**40 into an integer) is a DataError naming the record
and the column, so the pipeline dead-letters that record only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from vecmigrate.connectors.pgvector import _sparse as pgvector_sparse
from vecmigrate.connectors.pgvector._foreign import INT_TYPES, TEXT_TYPES, Column, Roles, TableInfo
from vecmigrate.connectors.pgvector._records import vector_bytes
from vecmigrate.connectors.pgvector._schema import LAYOUT_KEYS
from vecmigrate.connectors.pgvector._values import ACCEPTS, Misfit, to_column
from vecmigrate.errors import ConfigError, DataError
from vecmigrate.model import CollectionSchema, IdType, SparseField
from vecmigrate.records import metadata_rows

BYTEA = 17  # vectors travel as their binary form, passed untouched to the column's recv
_KEY_TYPES = {
    IdType.INT: frozenset(INT_TYPES),
    IdType.STRING: TEXT_TYPES | {"uuid"},
    IdType.UUID: TEXT_TYPES | {"uuid"},
}


@dataclass(frozen=True)
class WritePlan:
    """Where each part of a record of ``schema`` goes in table ``name``."""

    name: str
    schema: CollectionSchema  # the layout batches arrive in
    key: Column
    document: Column | None
    vectors: tuple[tuple[str, Column], ...]  # vector field -> column
    sparse: tuple[tuple[SparseField, Column], ...]
    columns: dict[str, Column]  # metadata key -> the column of its own
    json: Column | None  # the JSON metadata column: every other key
    extra: Column | None  # metadata_extra, when there is no JSON column

    def read_schema(self) -> CollectionSchema:
        """The table as this plan writes it: the fields of ``schema``, read back from their
        columns in the types they have in ``schema`` (``_sql.read_sql``), so a copy is
        compared with what it wrote, not with the application's other columns."""
        prefix = f"{self.json.name}." if self.json else ""
        layout = {
            "key": self.key.name,
            "key_type": self.key.type,
            "document": self.document.name if self.document else None,
            "metadata": self.json.name if self.json else None,
            "json_keys": {
                m.name: m.name.removeprefix(prefix)
                for m in self.schema.metadata
                if self.json and m.name not in self.columns
            },
            "types": {k: c.type for k, c in self.columns.items()},
            "columns": {f: c.name for f, c in self.vectors}
            | {s.name: c.name for s, c in self.sparse},
            "extra": self.extra is not None,
        }
        settings = {k: v for k, v in self.schema.engine_settings.items() if k not in LAYOUT_KEYS}
        return self.schema.replace(
            name=self.name, engine="pgvector", engine_settings={**settings, "layout": layout}
        )

    def names(self) -> list[str]:
        """The columns written, in COPY order."""
        return [c.name for c in self._targets()]

    def _targets(self) -> list[Column]:
        cols = [self.key] + ([self.document] if self.document else [])
        cols += [c for _, c in self.vectors] + [c for _, c in self.sparse]
        cols += list(self.columns.values())
        return cols + [c for c in (self.json, self.extra) if c is not None]

    def rows(self, batch: pa.RecordBatch) -> tuple[list[str], list[int], list[tuple[Any, ...]]]:
        """(columns, type oids, rows) of a batch conformed to ``schema``; DataError naming
        the record and column of the first value its column cannot hold exactly."""
        ids = batch.column("id").to_pylist()
        cols: list[Sequence[Any]] = [[self._value(i, i, self.key) for i in ids]]
        if self.document:
            docs = batch.column("document").to_pylist()
            cols.append([self._value(i, d, self.document) for i, d in zip(ids, docs, strict=True)])
        for field, _ in self.vectors:
            column = batch.column(field)
            cols.append(vector_bytes(column, int(column.type.list_size)))
        for s, col in self.sparse:
            dim = col.typmod if col.typmod > 0 else s.dim
            sized = s.model_copy(update={"dim": dim})
            cols.append(pgvector_sparse.encode(self.name, sized, batch.column(s.name), ids))
        meta = [
            self._metadata(i, m)
            for i, m in zip(ids, metadata_rows(batch, self.schema), strict=True)
        ]
        cols += list(zip(*meta, strict=True)) if meta else [()] * self._meta_width()
        oids = [BYTEA if c.type in ("vector", "sparsevec") else c.oid for c in self._targets()]
        return self.names(), oids, list(zip(*cols, strict=True))

    def _meta_width(self) -> int:
        return len(self.columns) + (self.json is not None) + (self.extra is not None)

    def _value(self, rid: Any, value: Any, col: Column) -> Any:
        try:
            return to_column(value, col)
        except Misfit as exc:
            raise DataError(
                f"{exc}: column {col.name!r} is {col.full}",
                collection=self.name,
                record_id=rid,
                field=col.name,
                hint="the record is left out; map the field or widen the column to keep it",
            ) from None

    def _metadata(self, rid: Any, meta: dict[str, Any]) -> tuple[Any, ...]:
        own: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        prefix = f"{self.json.name}." if self.json else ""
        for key, value in meta.items():
            if key in self.columns:
                own[key] = self._value(rid, value, self.columns[key])
            elif self.json or self.extra:
                rest[key.removeprefix(prefix)] = value
            else:
                raise DataError(
                    f"table {self.name!r} has no column for metadata key {key!r}",
                    collection=self.name,
                    record_id=rid,
                    field=key,
                )
        out = [own.get(k) for k in self.columns]
        col = self.json or self.extra
        if col is not None:
            out.append(self._value(rid, rest if rest or col.notnull else None, col))
        return tuple(out)


def plan_write(info: TableInfo, roles: Roles, schema: CollectionSchema) -> WritePlan:
    """How records of ``schema`` go into the application's table ``info``; ConfigError
    naming every column that cannot take them (nothing is written then)."""
    cols, problems = info.columns, []
    key = cols[roles.key]
    if key.name not in info.unique:
        problems.append(f"key column {key.name!r} has no primary key or unique index")
    if not key.writable:
        problems.append(f"key column {key.name!r} is GENERATED ALWAYS: the ids cannot go in")
    if key.type not in _KEY_TYPES[schema.id_type]:
        ids = schema.id_type.value
        problems.append(f"key column {key.name!r} is {key.full}; the ids are {ids}")
    doc = cols[roles.document] if roles.document and schema.has_document else None
    if schema.has_document and doc is None:
        problems.append("no column for the documents (name it with ?document_field=)")
    dense = [c for c in roles.vectors if cols[c].type == "vector"]
    sparse_cols = [c for c in roles.vectors if cols[c].type == "sparsevec"]
    vectors = []
    for v in schema.vectors:
        one = len(dense) == len(schema.vectors) == 1
        name = v.name if v.name in dense else dense[0] if one else None
        if name is None:
            half = ", ".join(c for c in roles.vectors if cols[c].type == "halfvec")
            problems.append(
                f"no vector column for vector field {v.name!r} (columns: {dense})"
                + (f"; writing into halfvec columns ({half}) is not built" if half else "")
            )
        elif cols[name].typmod > 0 and cols[name].typmod != v.dim:
            problems.append(
                f"column {name!r} is {cols[name].full}; vector field {v.name!r} has {v.dim} "
                "dimensions"
            )
        else:
            vectors.append((v.name, cols[name]))
    sparse = []
    for s in schema.sparse:
        one = len(sparse_cols) == len(schema.sparse) == 1
        name = s.name if s.name in sparse_cols else sparse_cols[0] if one else None
        if name is None:
            problems.append(f"no sparsevec column for sparse field {s.name!r}")
        elif 0 < cols[name].typmod < (s.dim or pgvector_sparse.MAX_DIM):
            problems.append(f"column {name!r} is {cols[name].full}; sparse field {s.name!r} is not")
        else:
            sparse.append((s, cols[name]))
    taken = {key.name, roles.document, roles.metadata, "metadata_extra"}
    taken |= {c.name for _, c in vectors} | {c.name for _, c in sparse}
    own = {}
    json_col = cols[roles.metadata] if roles.metadata else None
    extra = cols["metadata_extra"] if roles.extra and json_col is None else None
    for m in schema.metadata:
        col = cols.get(m.name) if m.name not in taken else None
        if col is None:
            if json_col is None and extra is None:
                problems.append(f"no column for metadata field {m.name!r} ({m.type})")
        elif not col.writable:
            problems.append(
                f"column {m.name!r} is generated by the table (it computes it): leave metadata "
                f"field {m.name!r} out with fields: {{{m.name}: {{drop: true}}}}"
            )
        elif col.type not in ACCEPTS[m.type]:
            problems.append(
                f"column {m.name!r} is {col.full}; metadata field {m.name!r} is {m.type}"
            )
        else:
            own[m.name] = col
    filled = {key.name, doc.name if doc else None, *own, *(c.name for _, c in vectors)}
    filled |= {c.name for _, c in sparse} | {c.name for c in (json_col, extra) if c}
    problems += [
        f"column {c.name!r} is NOT NULL without a default and {schema.name!r} has nothing for it"
        for c in cols.values()
        if c.notnull and not c.default and c.name not in filled
    ]
    if problems:
        raise ConfigError(
            f"table {info.name!r} cannot take {schema.name!r} as it is: {'; '.join(problems)}; "
            "nothing was written",
            hint="rename or drop fields in a mapping file (or change the table)",
        )
    return WritePlan(
        info.name, schema, key, doc, tuple(vectors), tuple(sparse), own, json_col, extra
    )


def write(
    conn: psycopg.Connection[Any],
    table: sql.Composed,
    key: str,
    names: list[str],
    types: Sequence[int | str],
    rows: list[tuple[Any, ...]],
    staged: bool,
) -> bool:
    """Write ``rows``: binary COPY into ``table`` unless ``staged`` (a key repeated before),
    else through a staging table and an upsert on ``key``. Returns whether it was staged."""
    ident = [sql.Identifier(c) for c in names]
    if not staged:
        # Fast path: straight COPY, atomic per batch. A re-sent batch (after a resume)
        # or an update violates the key; from then on this table goes through staging.
        try:
            with conn.transaction(), conn.cursor() as cur:
                _copy(cur, table, ident, types, rows)
            return False
        except psycopg.errors.UniqueViolation:
            pass
    stage = sql.Identifier(f"vm_stage_{abs(hash((table.as_string(conn), *names))) % 10**8}")
    rest = [c for c in ident if c != sql.Identifier(key)]
    action = (
        sql.SQL("DO UPDATE SET ")
        + sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(c) for c in rest)
        if rest
        else sql.SQL("DO NOTHING")
    )
    cols = sql.SQL(", ").join(ident)
    with conn.transaction(), conn.cursor() as cur:
        # Column types without the table's constraints (defaults apply on the INSERT).
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS "
                "SELECT {} FROM {} WITH NO DATA"
            ).format(stage, cols, table)
        )
        _copy(cur, stage, ident, types, rows)
        cur.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                table, cols, cols, stage, sql.Identifier(key), action
            )
        )
    return True


def _copy(
    cur: psycopg.Cursor[Any],
    table: sql.Composable,
    ident: list[sql.Identifier],
    types: Sequence[int | str],
    rows: list[tuple[Any, ...]],
) -> None:
    query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table, sql.SQL(", ").join(ident)
    )
    with cur.copy(query) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)
