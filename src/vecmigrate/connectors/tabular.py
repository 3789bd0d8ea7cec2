"""What the file connectors (``parquet:``, ``jsonl:``, ``csv:``, ``npy:``, ``hf:``) share.

A URI names one collection (a file, or a folder holding one data set) or a directory of
them. Files other tools wrote are read as they are laid out, like a foreign table of an
engine (``connectors/foreign.py``): ``?id_field=&vector_field=&document_field=&metadata_field=``
name the columns, else common names decide; every other column is a typed metadata field
(``?exclude_fields=a,b`` leaves columns out); ``?metric=`` states the metric, else unit-length
vectors are read as cosine and anything else as unknown (a copy then needs the mapping's).

A collection is read in *units* (a row group, an Arrow file, a byte range of lines, a
block of rows), grouped into partitions; a resume token is (unit, rows done in it). No
unit is read whole into memory: each yields batches of at most ``batch_rows`` records.

Records a file holds but no engine could take (a vector of the wrong length, a line that
is not JSON, vector text that is not numbers) are not dropped and do not stop the scan:
they travel as records whose vectors are NaN, which the copy's validation refuses into the
dead letters, counted; ``metadata_extra`` of such a record says where and why
(``SOURCE_ERROR_KEY``), e.g. ``jsonl docs.jsonl line 7: not JSON (...)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.files import os_error
from vecmigrate.connectors.foreign import (
    METADATA_NAMES,
    FieldsConfig,
    foreign_columns,
    sampled_metric,
)
from vecmigrate.connectors.partitions import balanced_groups
from vecmigrate.errors import ConfigError, DataError, VecmigrateError
from vecmigrate.exact import TopK
from vecmigrate.filters import ALL_OPS, NAMESPACE_KEY, evaluate
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    IndexSpec,
    MetadataField,
    MetadataType,
    Metric,
    Partition,
    ResumeToken,
    VectorField,
    is_list_like,
    is_text,
    portable_type,
)
from vecmigrate.records import (
    build_batch,
    conform,
    encode_json,
    infer_metadata_fields,
    metadata_to_arrow,
    table_to_batch,
    vectors_to_numpy,
)

# Where a record the file holds but no engine could take says what is wrong with it.
SOURCE_ERROR_KEY = "vecmigrate.source_error"
# The engine_settings key noting where a file keeps each part of a record (a note for
# ``inspect``: the connector keeps the layout itself; stripped from schemas it stores).
LAYOUT_KEY = "file.layout"
# Names a vector column is recognised by when several columns hold lists of floats.
VECTOR_NAMES = ("vector", "embedding", "embeddings", "emb", "vec", "values")
SAMPLE_ROWS = 1000
# Collections this small (as Arrow) are kept in memory for exact search and fetch.
CACHE_BYTES = 128 * 1024 * 1024
IdKind = Literal["int", "text", "int_text"]
_INT_TEXT = re.compile(r"-?(0|[1-9][0-9]*)")
_ISO_NOTE = "read as ISO-8601 text"

READ_ONLY_CAPABILITIES = Capabilities(
    filter_ops=ALL_OPS,
    id_types=frozenset({IdType.STRING, IdType.INT}),
    metrics=frozenset(Metric),
    named_vectors=True,
    mutable=False,
    max_batch_rows=20_000,
    index_kinds=frozenset({"flat"}),
)
WRITABLE_CAPABILITIES = Capabilities(
    filter_ops=ALL_OPS | {NAMESPACE_KEY},
    id_types=frozenset(IdType),
    metrics=frozenset(Metric),
    named_vectors=True,
    sparse_vectors=True,
    namespaces=True,
    # Append-only, like the dump: ``finalize`` keeps the last copy of each id.
    mutable=False,
    max_batch_rows=20_000,
    max_batch_bytes=128 * 1024 * 1024,
    index_kinds=frozenset({"flat"}),
)


@dataclass(frozen=True)
class FileConfig(FieldsConfig):
    """The columns of a file (``connectors/foreign.py``), its metric, columns to leave out."""

    # cosine, l2 or dot: what the application searches these vectors with.
    metric: str | None = None
    # Comma-separated columns not carried (e.g. image bytes no portable type holds).
    exclude_fields: str | None = None

    @property
    def excluded(self) -> frozenset[str]:
        """The columns named by ``exclude_fields``."""
        return frozenset(c.strip() for c in (self.exclude_fields or "").split(",") if c.strip())

    def stated_metric(self, engine: str) -> Metric | None:
        """The metric ``?metric=`` states (None: not stated); ConfigError for another name."""
        if self.metric is None:
            return None
        try:
            return Metric(self.metric.lower())
        except ValueError:
            raise ConfigError(
                f"{engine}:// parameter metric={self.metric!r} is not a metric",
                hint="use metric=cosine, metric=l2 or metric=dot",
            ) from None


def vector_field(
    name: str,
    dim: int,
    sample: np.ndarray,
    config: FileConfig,
    engine: str,
    notes: dict[str, Any],
) -> VectorField:
    """A vector field whose metric is ``?metric=``, else read from sampled vectors."""
    stated = config.stated_metric(engine)
    if stated is not None:
        metric, source = stated, f"stated by ?metric={stated.value}"
    else:
        finite = sample[np.isfinite(sample).all(axis=1)] if len(sample) else sample
        metric, source = sampled_metric(finite)
    notes[f"{name}.metric"] = source
    return VectorField(
        name=name, dim=dim, metric=metric, index=IndexSpec(kind="flat"), metric_source=source
    )


# -- reading columns of other tools' files -------------------------------------------------------
def is_float_list(t: pa.DataType) -> bool:
    """A column that can hold vectors: a list (any layout) of floats."""
    return bool(is_list_like(t) and pa.types.is_floating(t.value_type))


def parse_vector_text(text: str) -> list[float]:
    """``[0.1, 0.2]`` (JSON), ``0.1 0.2`` or ``0.1,0.2`` as floats; ValueError otherwise."""
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    parts = [p for p in re.split(r"[\s,;]+", body.strip()) if p]
    if not parts:
        raise ValueError("no numbers")
    return [float(p) for p in parts]


def _text_vector_list(col: pa.Array) -> tuple[pa.Array, dict[int, str]]:
    """Vector text parsed to ``list<float32>`` (decimal text read as the nearest float32);
    rows that are not a list of numbers become null, with their reason."""
    col = col.cast(pa.string()) if not col.type.equals(pa.string()) else col
    stripped = pc.utf8_trim(col, characters="[] \t\r\n")
    try:
        pieces = pc.split_pattern_regex(stripped, pattern=r"[\s,;]+")
        return pieces.cast(pa.list_(pa.float32())), {}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values: list[list[float] | None] = []
    bad: dict[int, str] = {}
    for i, text in enumerate(col.to_pylist()):
        if text is None:
            values.append(None)
            continue
        try:
            values.append(parse_vector_text(text))
        except ValueError:
            shown = text if len(text) <= 40 else text[:37] + "..."
            bad[i] = f"vector text {shown!r} is not a list of numbers"
            values.append(None)
    return pa.array(values, pa.list_(pa.float32())), bad


def fixed_vectors(
    col: pa.Array, dim: int, *, text: bool = False
) -> tuple[pa.FixedSizeListArray, dict[int, str]]:
    """A vector column as ``FixedSizeList<float>[dim]`` in its own float type (the copy
    refuses float64 values float32 cannot hold exactly); rows with no vector of ``dim``
    values become NaN vectors, with their reason."""
    bad: dict[int, str] = {}
    if text:
        col, bad = _text_vector_list(col)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    value_type = col.type.value_type
    if pa.types.is_float16(value_type):
        col = col.cast(pa.list_(pa.float32()))
        value_type = pa.float32()
    if pa.types.is_fixed_size_list(col.type) and col.type.list_size == dim and not col.null_count:
        return col, bad
    lengths = pc.list_value_length(col).fill_null(-1).to_numpy(zero_copy_only=False)
    nulls = col.is_null().to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(lengths != dim).tolist():
        if i in bad:
            continue
        bad[i] = "vector is null" if nulls[i] else wrong_length(int(lengths[i]), dim)
    np_type = np.float64 if pa.types.is_float64(value_type) else np.float32
    matrix = np.full((len(col), dim), np.nan, dtype=np_type)
    good = np.flatnonzero(lengths == dim)
    if len(good):
        kept = col.take(pa.array(good))
        values = pc.list_flatten(kept).to_numpy(zero_copy_only=False)
        matrix[good] = np.asarray(values, dtype=np_type).reshape(len(good), dim)
    arrow_type = pa.float64() if np_type is np.float64 else pa.float32()
    flat = pa.array(matrix.reshape(-1), type=arrow_type)
    return pa.FixedSizeListArray.from_arrays(flat, dim), bad


def wrong_length(n: int, dim: int) -> str:
    """Why a vector of ``n`` values does not fit a ``dim``-d field."""
    return f"vector has {n} value{'' if n == 1 else 's'}, the collection's are {dim}-d"


def portable_column(col: pa.Array) -> pa.Array:
    """A column's values in a form a portable type holds: dictionaries decoded, dates and
    timestamps as ISO-8601 text; other types as they are (``conform`` widens or refiles)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if pa.types.is_dictionary(t):
        return portable_column(col.dictionary_decode())
    if pa.types.is_date(t):
        return pc.strftime(col.cast(pa.timestamp("s")), format="%Y-%m-%d")
    if pa.types.is_timestamp(t):
        if t.tz is None:
            return pc.strftime(col, format="%Y-%m-%dT%H:%M:%S")
        return pc.strftime(col.cast(pa.timestamp(t.unit, tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return col.cast(pa.string())
    return col


def column_type(engine: str, name: str, column: str, t: pa.DataType) -> tuple[MetadataType, str]:
    """The portable type of a file's column (with a note when values change form);
    ConfigError naming the column and ``exclude_fields`` when none holds it exactly."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return "string", f"{t} {_ISO_NOTE}"
    found = portable_type(t)
    if found is None:
        raise ConfigError(
            f"{engine} collection {name!r} column {column!r} is {t}, which has no exact "
            "portable type",
            hint=f"leave it out with ?exclude_fields={column}, or convert it to text, a "
            "number, a bool or a list of those",
        )
    return found, ""


def _json_objects(values: Sequence[Any]) -> list[dict[str, Any]] | None:
    """The values as JSON objects, or None when one is not JSON-object text."""
    rows = []
    for v in values:
        if v is None or v == "":
            continue
        try:
            obj = json.loads(v)
        except (TypeError, json.JSONDecodeError):
            return None
        if not isinstance(obj, dict):
            return None
        rows.append(obj)
    return rows


def id_kind(t: pa.DataType, sample: Sequence[Any], *, text_ids_may_be_ints: bool) -> IdKind | None:
    """How a column holds ids: integers, text, or (CSV) text that is canonical integers."""
    if pa.types.is_integer(t):
        return "int"
    if is_text(t) or (pa.types.is_dictionary(t) and is_text(t.value_type)):
        present = [v for v in sample if v is not None]
        if text_ids_may_be_ints and present and all(_INT_TEXT.fullmatch(v) for v in present):
            return "int_text"
        return "text"
    return None


@dataclass(frozen=True)
class ArrowLayout:
    """Where a columnar file another tool wrote keeps each part of a record. ``fields``:
    (metadata field, column, key inside the metadata column or None for a column)."""

    id: str
    id_kind: IdKind
    document: str | None
    vectors: tuple[str, ...]
    metadata: str | None = None
    metadata_format: Literal["struct", "json"] | None = None
    fields: tuple[tuple[str, str, str | None], ...] = ()
    extra: str | None = None
    vector_text: bool = False  # CSV: vectors are text to parse

    def settings(self) -> dict[str, Any]:
        """The layout as noted in ``engine_settings`` (readable by ``inspect``)."""
        return {
            "id": self.id,
            "document": self.document,
            "vectors": list(self.vectors),
            "metadata": self.metadata,
            "fields": {f: c if k is None else f"{c}.{k}" for f, c, k in self.fields},
        }

    def columns(self) -> list[str]:
        """Every column this layout reads."""
        cols = [self.id, self.document, self.metadata, self.extra, *self.vectors]
        cols += [c for _, c, _ in self.fields]
        return list(dict.fromkeys(c for c in cols if c))


Sampler = Callable[[], pa.Table]


def infer_arrow_layout(
    engine: str,
    name: str,
    arrow: pa.Schema,
    config: FileConfig,
    sample: Sampler,
    *,
    text_vectors: bool = False,
) -> tuple[CollectionSchema, ArrowLayout]:
    """Describe a columnar file another tool wrote (Parquet, Arrow, CSV) as it is laid
    out: columns named by the URI or by common names, every other column a typed field."""
    rows = sample()
    excluded = config.excluded
    arrow = pa.schema([f for f in arrow if f.name not in excluded])
    notes: dict[str, Any] = {}
    vectors = _vector_columns(engine, name, arrow, rows, config, text_vectors)
    kinds: dict[str, str] = {}
    json_rows: dict[str, list[dict[str, Any]]] = {}
    for f in arrow:
        if f.name in vectors:
            continue
        t = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        if pa.types.is_struct(t):
            kinds[f.name] = "json"
        elif is_text(t) and f.name in (*METADATA_NAMES, config.metadata_field):
            objs = _json_objects(rows.column(f.name).to_pylist())
            kinds[f.name] = "text" if objs is None else "json"
            if objs is not None:
                json_rows[f.name] = objs
        elif is_text(t):
            kinds[f.name] = "text"
        else:
            kinds[f.name] = "id" if pa.types.is_integer(t) else "other"
    cols = foreign_columns(name, config, kinds)
    kind = id_kind(
        arrow.field(cols.id).type,
        rows.column(cols.id).to_pylist() if rows.num_rows else [],
        text_ids_may_be_ints=text_vectors,
    )
    if kind is None:
        raise ConfigError(
            f"{engine} collection {name!r} keeps ids in {cols.id!r} of type "
            f"{arrow.field(cols.id).type}; ids must be integers or text",
            hint="name another column with ?id_field=NAME",
        )
    if kind == "int_text":
        notes["id.type"] = "text ids that are all integers: read as int"
    if cols.document:
        t = arrow.field(cols.document).type
        if not (is_text(t) or (pa.types.is_dictionary(t) and is_text(t.value_type))):
            raise ConfigError(
                f"{engine} collection {name!r} column {cols.document!r} "
                f"(document_field={cols.document}) is {t}, not text"
            )
    if cols.metadata and kinds.get(cols.metadata) != "json":
        raise ConfigError(
            f"{engine} collection {name!r} column {cols.metadata!r} "
            f"(metadata_field={cols.metadata}) is neither a struct nor JSON-object text"
        )
    extra = "metadata_extra" if kinds.get("metadata_extra") == "text" else None
    taken = {cols.id, cols.document, cols.metadata, extra, *vectors}
    metadata: list[MetadataField] = []
    fields: list[tuple[str, str, str | None]] = []
    tops = [f.name for f in arrow if f.name not in taken]
    for column in tops:
        mtype, note = column_type(engine, name, column, arrow.field(column).type)
        if note:
            notes[f"{column}.type"] = note
        metadata.append(MetadataField(name=column, type=mtype))
        fields.append((column, column, None))
    fmt: Literal["struct", "json"] | None = None
    if cols.metadata:
        meta_type = arrow.field(cols.metadata).type
        if pa.types.is_struct(meta_type):
            fmt = "struct"
            for child in meta_type:
                if f"{cols.metadata}.{child.name}" in excluded:
                    continue
                field = f"{cols.metadata}.{child.name}" if child.name in tops else child.name
                where = f"{cols.metadata}.{child.name}"
                mtype, note = column_type(engine, name, where, child.type)
                if note:
                    notes[f"{field}.type"] = note
                metadata.append(MetadataField(name=field, type=mtype))
                fields.append((field, cols.metadata, child.name))
        else:
            fmt = "json"
            for m in infer_metadata_fields(json_rows[cols.metadata]):
                field = f"{cols.metadata}.{m.name}" if m.name in tops else m.name
                metadata.append(m.model_copy(update={"name": field}))
                fields.append((field, cols.metadata, m.name))
    layout = ArrowLayout(
        id=cols.id,
        id_kind=kind,
        document=cols.document,
        vectors=tuple(vectors),
        metadata=cols.metadata,
        metadata_format=fmt,
        fields=tuple(fields),
        extra=extra,
        vector_text=text_vectors,
    )
    notes[LAYOUT_KEY] = layout.settings()
    fields_v = []
    for v, dim in vectors.items():
        if rows.num_rows:
            matrix, bad = fixed_vectors(rows.column(v).combine_chunks(), dim, text=text_vectors)
            sample_m = vectors_to_numpy_any(matrix)
            if bad:
                sample_m = np.delete(sample_m, list(bad), axis=0)
        else:
            sample_m = np.empty((0, dim), dtype=np.float32)
        fields_v.append(vector_field(v, dim, sample_m, config, engine, notes))
    schema = CollectionSchema(
        name=name,
        id_type=IdType.STRING if kind == "text" else IdType.INT,
        vectors=tuple(fields_v),
        metadata=tuple(metadata),
        has_document=cols.document is not None,
        engine=engine,
        engine_settings=notes,
    )
    return schema, layout


def vectors_to_numpy_any(col: pa.FixedSizeListArray) -> np.ndarray:
    """(n, dim) float64 view of a fixed-size list column of any float type (sampling)."""
    values = col.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64).reshape(len(col), col.type.list_size)


def _vector_columns(
    engine: str,
    name: str,
    arrow: pa.Schema,
    rows: pa.Table,
    config: FileConfig,
    text_vectors: bool,
) -> dict[str, int]:
    """{vector column: dimension}: the ones ``vector_field`` names, else fixed-size float
    lists, else the one float list (or the one with a common vector name)."""

    def parses(column: str) -> bool:
        """Most sampled values are vector text (the rest are read as bad records)."""
        values = [v for v in rows.column(column).to_pylist() if v not in (None, "")]
        good = 0
        for v in values:
            try:
                good += len(parse_vector_text(v)) > 1
            except ValueError:
                continue
        return good * 2 > len(values)

    candidates = [f.name for f in arrow if is_float_list(f.type)]
    if text_vectors:
        candidates += [f.name for f in arrow if is_text(f.type) and parses(f.name)]
    stated = list(config.vector_fields)
    for v in stated:
        if v not in arrow.names:
            raise ConfigError(
                f"{engine} collection {name!r} has no column {v!r} (vector_field={v})",
                hint=f"its columns: {', '.join(arrow.names)}",
            )
        if v not in candidates:
            raise ConfigError(
                f"{engine} collection {name!r} column {v!r} (vector_field={v}) holds "
                f"{arrow.field(v).type}, not vectors",
                hint=f"columns holding vectors: {', '.join(candidates) or 'none'}",
            )
    fixed = [c for c in candidates if pa.types.is_fixed_size_list(arrow.field(c).type)]
    named = [c for c in VECTOR_NAMES if c in candidates]
    chosen = stated or fixed or (candidates if len(candidates) == 1 else named[:1])
    if not chosen:
        if not candidates:
            raise ConfigError(
                f"{engine} collection {name!r} has no column holding vectors (lists of floats"
                + (", or their text" if text_vectors else "")
                + ")",
                hint=f"name it with ?vector_field=NAME (columns: {', '.join(arrow.names)})",
            )
        raise ConfigError(
            f"{engine} collection {name!r} could keep its vectors in any of {candidates}",
            hint="say which with ?vector_field=NAME (several: ?vector_field=a,b)",
        )
    dims: dict[str, int] = {}
    for c in chosen:
        t = arrow.field(c).type
        if pa.types.is_fixed_size_list(t):
            dims[c] = t.list_size
            continue
        col = rows.column(c).combine_chunks()
        if text_vectors and is_text(t):
            col, _ = _text_vector_list(col)
        lengths = [n for n in pc.list_value_length(col).to_pylist() if n]
        if not lengths:
            raise ConfigError(
                f"{engine} collection {name!r} column {c!r} has no vector in its first "
                f"{rows.num_rows} rows to read the dimension from"
            )
        dims[c] = max(set(lengths), key=lengths.count)  # the most common length
    return dims


def read_arrow_batch(
    raw: pa.RecordBatch | pa.Table,
    layout: ArrowLayout,
    schema: CollectionSchema,
    where: Callable[[int], str],
) -> pa.RecordBatch:
    """Rows of a foreign columnar file as a batch in ``schema``'s layout; records no engine
    could take become NaN-vector records saying why (module docstring)."""
    batch = raw if isinstance(raw, pa.RecordBatch) else table_to_batch(raw)
    names, n = batch.schema.names, batch.num_rows
    bad: dict[int, str] = {}
    ids = _ids(batch.column(names.index(layout.id)), layout, bad)
    if ids.null_count:
        int_ids = schema.id_type is IdType.INT
        values = ids.to_pylist()
        for i in np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False)).tolist():
            bad.setdefault(i, f"{layout.id}: no id")
            values[i] = placeholder_id(int_ids, where(i))
        ids = pa.array(values, ids.type)
    cols: dict[str, pa.Array] = {"id": ids}
    if schema.has_document and layout.document:
        cols["document"] = portable_column(batch.column(names.index(layout.document)))
    for v in schema.vectors:
        vec, why = fixed_vectors(batch.column(names.index(v.name)), v.dim, text=layout.vector_text)
        cols[v.name] = vec
        for row, reason in why.items():
            bad.setdefault(row, f"{v.name}: {reason}")
    extra = (
        portable_column(batch.column(names.index(layout.extra)))
        if layout.extra
        else pa.nulls(n, pa.string())
    )
    if schema.metadata:
        struct, extra = _metadata(batch, layout, schema, extra, bad)
        cols["metadata"] = struct
    cols["metadata_extra"] = _with_errors(extra, bad, where)
    if bad:  # every vector of a bad record is NaN, so the copy refuses the record
        rows = np.array(sorted(bad), dtype=np.int64)
        for v in schema.vectors:
            cols[v.name] = _nan_rows(cols[v.name], rows)
    return conform(pa.RecordBatch.from_pydict(cols), schema)


def _nan_rows(col: pa.FixedSizeListArray, rows: np.ndarray) -> pa.FixedSizeListArray:
    dim, value_type = col.type.list_size, col.type.value_type
    values = np.array(col.flatten().to_numpy(zero_copy_only=False)).reshape(len(col), dim)
    values[rows] = np.nan
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), value_type), dim)


def _ids(col: pa.Array, layout: ArrowLayout, bad: dict[int, str]) -> pa.Array:
    col = portable_column(col)
    if layout.id_kind == "int":
        return col.cast(pa.int64())
    if layout.id_kind == "text":
        return col
    try:
        return col.cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values: list[int | None] = []
    for i, v in enumerate(col.to_pylist()):
        if v is None or _INT_TEXT.fullmatch(v.strip()) is None:
            if v is not None:
                bad.setdefault(i, f"id {v!r} is not an integer like the others")
            values.append(None)
        else:
            values.append(int(v))
    return pa.array(values, pa.int64())


def _metadata(
    batch: pa.RecordBatch,
    layout: ArrowLayout,
    schema: CollectionSchema,
    extra: pa.Array,
    bad: dict[int, str],
) -> tuple[pa.Array, pa.Array]:
    names, n = batch.schema.names, batch.num_rows

    def source(column: str, key: str | None) -> pa.Array | None:
        if column not in names:
            return None
        col = batch.column(names.index(column))
        if key is not None:
            if not pa.types.is_struct(col.type) or col.type.get_field_index(key) < 0:
                return None
            col = col.flatten()[col.type.get_field_index(key)]
        return portable_column(col)

    where = {f: (c, k) for f, c, k in layout.fields}
    if layout.metadata_format != "json":
        children = []
        for m in schema.metadata:
            got = source(*where[m.name]) if m.name in where else None
            children.append(pa.nulls(n, m.arrow_type) if got is None else got)
        return pa.StructArray.from_arrays(children, names=[m.name for m in schema.metadata]), extra
    # JSON text: values filed by metadata_to_arrow (what does not fit its field, and keys
    # no field names, go to metadata_extra unchanged).
    assert layout.metadata is not None
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    by_key: dict[str, str] = {}
    for f, (c, k) in where.items():
        if c == layout.metadata and k is not None:
            by_key[k] = f
    for f, (c, k) in where.items():
        if k is None and (col := source(c, None)) is not None:
            for i, value in enumerate(col.to_pylist()):
                if value is not None:
                    rows[i][f] = value
    texts = batch.column(names.index(layout.metadata)).to_pylist()
    for i, text in enumerate(texts):
        if text in (None, ""):
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            bad.setdefault(i, f"{layout.metadata}: not JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            bad.setdefault(i, f"{layout.metadata}: not a JSON object")
            continue
        for key, value in obj.items():
            name = str(key)  # JSON object keys are text
            rows[i][by_key.get(name, name)] = value
    for i, raw in enumerate(extra.to_pylist()):
        if raw:
            rows[i].update(json.loads(raw))
    struct, new_extra = metadata_to_arrow(rows, schema)
    assert struct is not None
    return struct, new_extra


def _with_errors(extra: pa.Array, bad: Mapping[int, str], where: Callable[[int], str]) -> pa.Array:
    """``metadata_extra`` with ``SOURCE_ERROR_KEY`` set on the records read as bad."""
    if not bad:
        return extra
    values = extra.to_pylist()
    for row, reason in bad.items():
        obj = json.loads(values[row]) if values[row] else {}
        obj[SOURCE_ERROR_KEY] = f"{where(row)}: {reason}"
        values[row] = encode_json(obj)
    return pa.array(values, pa.string())


def placeholder_id(int_ids: bool, where: str) -> Any:
    """The id of a bad record whose own id cannot be read (a line that is not JSON, a null
    id): ``<where>`` as text, or for integer ids a negative number derived from it. The
    same on every scan, so the refused record is matched by verification."""
    if not int_ids:
        return f"<{where}>"
    return -(int.from_bytes(hashlib.sha256(where.encode()).digest()[:7], "big") + 1)


def rebatch(
    batches: Iterable[pa.RecordBatch], skip: int, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """``batches`` without their first ``skip`` rows, re-cut to at most ``batch_rows``."""
    pending: list[pa.RecordBatch] = []
    size = 0
    for b in batches:
        if skip:
            if b.num_rows <= skip:
                skip -= b.num_rows
                continue
            b, skip = b.slice(skip), 0
        if b.num_rows == 0:
            continue
        if not pending and b.num_rows == batch_rows:
            yield b
            continue
        pending.append(b)
        size += b.num_rows
        if size >= batch_rows:
            whole = table_to_batch(pa.Table.from_batches(pending))
            cut = size - size % batch_rows
            for start in range(0, cut, batch_rows):
                yield whole.slice(start, batch_rows)
            pending = [whole.slice(cut)] if cut < size else []
            size -= cut
    if size:
        yield table_to_batch(pa.Table.from_batches(pending))


def row_namer(template: str, base: int) -> Callable[[int], str]:
    """``where`` for ``read_arrow_batch``: row ``i`` of a batch as ``template`` names it,
    numbered from ``base`` (``"parquet a.parquet row {}"``)."""
    return lambda i: template.format(base + i)


def bad_batch(
    schema: CollectionSchema, ids: Sequence[Any], errors: Sequence[str]
) -> pa.RecordBatch:
    """Records the file holds but no engine could take (a CSV line with too many fields),
    in ``schema``'s layout: NaN vectors, ``metadata_extra`` saying where and why."""
    n = len(ids)
    vectors = {v.name: np.full((n, v.dim), np.nan, dtype=np.float32) for v in schema.vectors}
    batch = build_batch(schema, pa.array(list(ids), schema.id_arrow_type()), vectors)
    extra = pa.array([encode_json({SOURCE_ERROR_KEY: e}) for e in errors], pa.string())
    return batch.set_column(batch.schema.get_field_index("metadata_extra"), "metadata_extra", extra)


# -- where a URI's collections are -----------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """A slice of a collection read in one go: a row group, a file, a line range."""

    key: Any  # JSON: what the format needs to find it again
    rows: int


class FileConnector(Connector):
    """A file format as a connector: collections found on disk, scanned in units,
    counted, fetched, filtered and searched exactly (there is no index)."""

    Config: ClassVar[type[FileConfig]] = FileConfig
    config: FileConfig
    storage: ClassVar[Literal["path", "server", "service"]] = "path"
    capabilities = READ_ONLY_CAPABILITIES
    # Name endings of this format's files (the first is what a write makes).
    suffixes: ClassVar[tuple[str, ...]] = ()
    # A folder can itself be one collection (Parquet data sets, saved HF data sets).
    folders: ClassVar[bool] = False

    def __init__(self, uri: Any) -> None:
        super().__init__(uri)
        self.root: Path = uri.local_path.expanduser()
        # Converted batches of one small collection, for exact search, fetch and filtered
        # counts (``verify`` asks each query on its own: one scan each otherwise).
        self._cache: tuple[Any, list[pa.RecordBatch]] | None = None
        self._cache_lock = threading.Lock()

    # -- finding collections -----------------------------------------------------------------
    def stem(self, path: Path) -> str:
        """The collection name of a file or folder: its name without the format's ending."""
        for suffix in self.suffixes:
            if path.name.lower().endswith(suffix) and len(path.name) > len(suffix):
                return path.name[: -len(suffix)]
        return path.stem if path.is_file() else path.name

    def is_collection(self, path: Path) -> bool:
        """``path`` is one collection of this format (a file; a folder for some formats)."""
        return path.is_file()

    def members(self, folder: Path) -> dict[str, Path]:
        """The collections inside a folder that is not one itself."""
        out: dict[str, Path] = {}
        for p in sorted(folder.iterdir()):
            if p.name.startswith((".", "_")):
                continue
            if (p.is_file() and p.name.lower().endswith(self.suffixes)) or (
                self.folders and p.is_dir() and self.is_collection(p)
            ):
                out.setdefault(self.stem(p), p)
        return out

    def collections(self) -> dict[str, Path]:
        """{name: file or folder} of every collection the URI names."""
        root = self.root
        try:
            if not root.exists():
                return {}
            if self.is_collection(root):
                return {self.stem(root): root}
            if root.is_dir():
                return self.members(root)
        except OSError as exc:
            raise os_error(exc, f"{self.engine} {root}") from None
        raise ConfigError(
            f"{self.uri} is neither a {self.engine} file nor a folder of them",
            hint=f"name a file ending in {' or '.join(self.suffixes)}, or a folder of them",
        )

    def path_of(self, name: str) -> Path:
        """Where collection ``name`` is; ConfigError naming the ones there are."""
        found = self.collections().get(name)
        if found is None:
            known = ", ".join(sorted(self.collections())) or "none"
            raise ConfigError(
                f"{self.engine} at {self.uri} has no collection {name!r}",
                hint=f"its collections: {known}",
            )
        return found

    def list_collections(self) -> list[str]:
        return sorted(self.collections())

    # -- the format's part ---------------------------------------------------------------------
    def describe(self, name: str) -> CollectionSchema:
        schema = self.read_schema(name)
        self._schemas[name] = schema
        return schema

    def read_schema(self, name: str) -> CollectionSchema:
        """The schema of ``name``, read or inferred from the file."""
        raise NotImplementedError

    def units(self, name: str) -> list[Unit]:
        """Every unit of ``name``, in order."""
        raise NotImplementedError

    def read_unit(
        self, name: str, schema: CollectionSchema, key: Any, skip: int, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        """The records of one unit after the first ``skip``, in ``schema``'s layout, in
        batches of at most ``batch_rows``."""
        raise NotImplementedError

    # -- reading ---------------------------------------------------------------------------------
    def count(self, name: str, filter: Filter | None = None) -> int:
        schema = self._schema(name)
        node = self._filter(schema, filter)
        if node is None:
            return sum(u.rows for u in self.units(name))
        return sum(int(evaluate(node, b).sum()) for b in self._all_batches(name, schema))

    def partitions(self, name: str, n: int) -> list[Partition]:
        units = list(enumerate(self.units(name)))
        groups = balanced_groups(units, lambda u: u[1].rows, n)
        return [
            Partition(
                id=f"units-{i}",
                spec={"units": [u.key for _, u in sorted(g, key=lambda x: x[0])]},
                estimated_rows=sum(u.rows for _, u in g),
            )
            for i, g in enumerate(groups)
        ]

    def scan(
        self,
        name: str,
        partition: Partition,
        resume: ResumeToken | None = None,
        *,
        schema: CollectionSchema | None = None,
        batch_rows: int = 1000,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        schema = schema or self._schema(name)
        keys = partition.spec["units"]
        start, done = (0, 0)
        if resume:
            pos = json.loads(resume)
            start, done = pos["unit"], pos["row"]
        for ui in range(start, len(keys)):
            row = done if ui == start else 0
            for batch in self.read_unit(name, schema, keys[ui], row, max(1, batch_rows)):
                if batch.num_rows == 0:
                    continue
                row += batch.num_rows
                yield batch, json.dumps({"unit": ui, "row": row})

    def signature(self, name: str) -> tuple[Any, ...]:
        """What changes when the collection's files change (name, size, mtime of each)."""
        path = self.path_of(name)
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
        return tuple((p.name, st.st_size, st.st_mtime_ns) for p in files for st in [p.stat()])

    def _all_batches(self, name: str, schema: CollectionSchema) -> Iterator[pa.RecordBatch]:
        """Every record, in batches: from the cache when the collection is small
        (``CACHE_BYTES``) and its files unchanged, else scanned (and cached when small)."""
        key = (name, schema.to_json(), self.signature(name))
        cached = self._cache
        if cached is not None and cached[0] == key:
            yield from cached[1]
            return
        kept: list[pa.RecordBatch] | None = []
        size = 0
        for part in self.partitions(name, 1):
            for batch, _ in self.scan(name, part, schema=schema, batch_rows=10_000):
                if kept is not None:
                    size += batch.nbytes
                    if size <= CACHE_BYTES:
                        kept.append(batch)
                    else:
                        kept = None
                yield batch
        if kept is not None:
            with self._cache_lock:
                self._cache = (key, kept)

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        schema = schema or self._schema(name)
        want = schema.id_arrow_type()
        wanted = []
        for i in ids:  # an id of another type matches nothing
            try:
                wanted.append(pa.scalar(i, type=want).as_py())
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
                continue
        keys = pa.array(wanted, type=want)
        found = [
            b.filter(pc.is_in(b.column("id"), value_set=keys))
            for b in self._all_batches(name, schema)
        ]
        return table_to_batch(pa.Table.from_batches(found, schema=schema.arrow_schema()))

    def search(
        self,
        name: str,
        vectors: np.ndarray,
        k: int,
        *,
        filter: Filter | None = None,
        params: dict[str, Any] | None = None,
        vector_field: str | None = None,
    ) -> tuple[list[list[Any]], list[list[float]]]:
        """Exact search over every record (files have no index): the ground truth."""
        schema = self._schema(name)
        node = self._filter(schema, filter)
        field = schema.vector_field(vector_field)
        top = TopK(np.asarray(vectors, dtype=np.float32), k, field.metric)
        for batch in self._all_batches(name, schema):
            matrix = vectors_to_numpy(batch.column(field.name))
            keep = np.isfinite(matrix).all(axis=1)
            if node is not None:
                keep &= np.asarray(evaluate(node, batch), dtype=bool)
            mask = None if keep.all() else np.broadcast_to(keep, (len(vectors), batch.num_rows))
            top.add(batch.column("id").to_pylist(), np.where(keep[:, None], matrix, 0), mask)
        truth = top.result()
        return truth.ids, [
            [float(s) for s in row[: len(ids)]]
            for row, ids in zip(truth.scores, truth.ids, strict=True)
        ]

    # -- writing: read-only unless a format says otherwise ---------------------------------------
    def _read_only(self) -> VecmigrateError:
        return ConfigError(
            f"{self.engine} files are read-only for vecmigrate: {self.uri} cannot be a target",
            hint="copy into an engine, or into parquet:///path or jsonl:///path.jsonl",
        )

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        raise self._read_only()

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        raise self._read_only()

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        raise self._read_only()

    def drop(self, name: str) -> None:
        if name in self.collections():  # missing is a no-op, as for every engine
            raise self._read_only()

    @classmethod
    def translate_error(cls, exc: Exception, what: str) -> VecmigrateError | None:
        if isinstance(exc, OSError):
            return os_error(exc, what)
        if isinstance(exc, pa.ArrowInvalid | pa.ArrowNotImplementedError | pa.ArrowTypeError):
            return DataError(f"{what}: {exc}")
        return None


def stored_schema(text: str, name: str, engine: str) -> CollectionSchema:
    """A schema vecmigrate stored beside a file it wrote, as this collection's: named
    ``name``, without notes about where another engine kept things."""
    schema = CollectionSchema.from_json(text)
    settings = {k: v for k, v in schema.engine_settings.items() if k != LAYOUT_KEY}
    return schema.replace(name=name, engine=engine, engine_settings=settings)


class WritableFileConnector(FileConnector):
    """A format vecmigrate also writes (Parquet, JSON Lines): append-only like the dump.

    ``upsert`` appends; a copy job sends each id once, and the only repeats are the
    batches a resumed job re-sends, so ``finalize`` keeps the last copy of each id and the
    result is what idempotent upserts give. ``delete`` (and so ``sync``) is refused
    (``capabilities.mutable`` is False). Files vecmigrate did not write are never
    replaced, appended to or deleted.
    """

    capabilities = WRITABLE_CAPABILITIES
    strict_layout = True

    def collection_location(self, name: str) -> str | None:
        try:
            return os.path.realpath(self.write_path(name))
        except ConfigError:  # the URI is another collection's file: not this one's place
            return None

    def write_path(self, name: str) -> Path:
        """Where ``create`` puts collection ``name``: the URI's path when it is named after
        it (``parquet:///out/docs`` for ``docs``), else a member of the URI's folder."""
        found = self.collections().get(name)
        if found is not None:
            return found
        root, stem = self.root, self.stem(self.root)
        suffixed = root.name.lower().endswith(self.suffixes)
        if root.exists() and self.is_collection(root):
            raise ConfigError(
                f"{self.uri} is the collection {stem!r}; it cannot hold {name!r} too",
                hint=f"pass --target-collection {stem}, or name a folder to hold {name!r}",
            )
        empty = not root.exists() or (root.is_dir() and not any(root.iterdir()))
        if empty and (suffixed or self.folders) and stem == name:
            return root
        if suffixed and not root.is_dir():
            raise ConfigError(
                f"{self.uri} names the collection {stem!r}, not {name!r}",
                hint=f"pass --target-collection {stem}, or name a folder to hold {name!r}",
            )
        return root / (name if self.folders else name + self.suffixes[0])

    def is_ours(self, path: Path) -> bool:
        """vecmigrate wrote the collection at ``path`` (its schema is stored beside it)."""
        raise NotImplementedError

    def not_ours(self, path: Path, doing: str) -> VecmigrateError:
        """ConfigError: ``doing`` would change files another tool wrote."""
        return ConfigError(
            f"{self.engine} {path} was not written by vecmigrate; it will not {doing} it",
            hint="write to a new path (or remove the file yourself first)",
        )

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        raise ConfigError(
            f"{self.engine} files are append-only; they cannot delete records",
            hint="copy again, or apply deletes on an engine with vecmigrate sync",
        )


def int_or_text_ids(values: Sequence[str]) -> IdKind:
    """``int`` when every id is a canonical integer in int64 range, else ``text``."""
    for v in values:
        if _INT_TEXT.fullmatch(v) is None or not -(2**63) <= int(v) < 2**63:
            return "text"
    return "int" if values else "text"
