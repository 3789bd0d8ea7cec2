"""How a file's columns are read as a collection: the configuration of the file URIs, the
recognised vector and metadata columns, and the layout inferred from a sample
(``infer_arrow_layout``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.connectors.foreign import (
    METADATA_NAMES,
    FieldsConfig,
    foreign_columns,
    sampled_metric,
)
from vecmigrate.errors import ConfigError
from vecmigrate.filters import ALL_OPS, NAMESPACE_KEY
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    IndexSpec,
    MetadataField,
    MetadataType,
    Metric,
    VectorField,
    is_list_like,
    is_text,
    portable_type,
)
from vecmigrate.records import (
    infer_metadata_fields,
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
