"""Describing a LanceDB table: a foreign table's layout (which column holds the id, the text,
the vectors and the metadata: URI parameters, else common names; a framework's table with
``?layout=``, see ``_frameworks``) and every vector's metric as the engine searches it (its
index's distance type; un-indexed, LanceDB's default l2 where the sampled vectors are unit
length, so every metric ranks alike, else unknown: the application's queries choose it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.foreign import (
    ID_NAMES,
    METADATA_NAMES,
    FieldsConfig,
    foreign_columns,
    sampled_metric,
)
from vecmigrate.connectors.lancedb import _frameworks
from vecmigrate.connectors.lancedb._layout import LAYOUT_KEY, ROW_ID, Layout
from vecmigrate.connectors.lancedb._schema import foreign_type
from vecmigrate.errors import ConfigError
from vecmigrate.model import (
    METRIC_UNKNOWN,
    CollectionSchema,
    IdType,
    IndexKind,
    IndexSpec,
    MetadataField,
    Metric,
    VectorField,
    is_text,
)
from vecmigrate.records import infer_metadata_fields

METRIC_NAMES = {Metric.COSINE: "cosine", Metric.DOT: "dot", Metric.L2: "l2"}
DEFAULT_METRIC = "LanceDB default for an un-indexed table (l2)"
ROW_ID_NOTE = (
    "no id column: records keyed by LanceDB's row ids, which change when rows are updated "
    "or the table is compacted (unless it keeps stable row ids)"
)
_INDEX_KINDS: dict[str, IndexKind] = {
    "IVF_PQ": "ivf_pq",
    "IVF_FLAT": "ivf_flat",
    "IVF_HNSW_SQ": "hnsw",
    "IVF_HNSW_PQ": "hnsw",
    "IVF_HNSW_FLAT": "hnsw",
}
# The first values of a column (to tell JSON-object text from other text).
Sampler = Callable[[str], list[Any]]
# The first rows of a vector column, as a (rows, dim) matrix (to tell unit vectors).
VectorSampler = Callable[[str], np.ndarray]


def is_vector(t: pa.DataType) -> bool:
    """A column LanceDB searches: a fixed-size list of floats."""
    return bool(pa.types.is_fixed_size_list(t) and pa.types.is_floating(t.value_type))


def is_multivector(t: pa.DataType) -> bool:
    """A column LanceDB searches by late interaction (ColBERT): a list of vectors per row."""
    return bool((pa.types.is_list(t) or pa.types.is_large_list(t)) and is_vector(t.value_type))


def _id_kind(t: pa.DataType) -> str | None:
    if isinstance(t, pa.BaseExtensionType):
        return "uuid" if t.extension_name == "arrow.uuid" else None
    if pa.types.is_integer(t):
        return "int"
    if is_text(t):
        return "text"
    if pa.types.is_fixed_size_binary(t):
        return "uuid" if t.byte_width == 16 else "hex"
    return None


def _json_objects(values: list[Any]) -> list[dict[str, Any]] | None:
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


def infer_schema(
    name: str, arrow: pa.Schema, config: FieldsConfig, sample: Sampler
) -> CollectionSchema:
    """Describe a table vecmigrate did not create, reading its layout as it is (the
    framework's, with ``?layout=``); the layout is recorded in
    ``engine_settings[LAYOUT_KEY]`` and every change of form noted."""
    framework = getattr(config, "layout", None)
    if framework:
        return _frameworks.describe_table(name, arrow, config, framework, sample)
    notes: dict[str, Any] = {}
    vector_cols = [f.name for f in arrow if is_vector(f.type)]
    chosen = list(config.vector_fields) or vector_cols
    for v in chosen:
        if v not in vector_cols:
            raise ConfigError(
                f"LanceDB table {name!r} has no vector column {v!r} (vector_field={v})",
                hint=f"its vector columns: {', '.join(vector_cols) or 'none'}",
            )
    for v in vector_cols:
        if v not in chosen:
            notes[f"{v}.skipped"] = "vector column not carried (not named by vector_field)"
    # Read as JSON metadata, such a column would arrive as text: the target's application
    # could no longer search it, so it is refused until the mapping leaves it behind.
    uncarried = {
        f.name: f"a LanceDB multivector column ({f.type.value_type.list_size}-d vectors, "
        "several per row, searched by late interaction such as ColBERT); the portable "
        "model carries one vector per field"
        for f in arrow
        if is_multivector(f.type)
    }
    kinds: dict[str, str] = {}
    json_rows: dict[str, list[dict[str, Any]]] = {}
    for f in arrow:
        if f.name in vector_cols or f.name in uncarried:
            continue
        if pa.types.is_struct(f.type):
            kinds[f.name] = "json"
        elif is_text(f.type) and f.name in (*METADATA_NAMES, config.metadata_field):
            rows = _json_objects(sample(f.name))
            kinds[f.name] = "text" if rows is None else "json"
            if rows is not None:
                json_rows[f.name] = rows
        elif is_text(f.type):
            kinds[f.name] = "text"
        else:
            kinds[f.name] = "id" if _id_kind(f.type) else "other"
    if config.id_field == ROW_ID:
        kinds[ROW_ID] = "id"
        notes["id"] = ROW_ID_NOTE
    elif config.id_field is None and not any(c in ID_NAMES for c in kinds):
        raise ConfigError(
            f"LanceDB table {name!r} has no column recognisable as its id",
            hint=f"name it with ?id_field=NAME (columns: {', '.join(kinds) or 'none'}), or "
            f"?id_field={ROW_ID} to key the records by LanceDB's row ids (they change when "
            "rows are updated or the table is compacted)",
        )
    cols = foreign_columns(name, config, kinds)
    id_kind = "int" if cols.id == ROW_ID else _id_kind(arrow.field(cols.id).type)
    if id_kind is None:
        raise ConfigError(
            f"LanceDB table {name!r} keeps ids in {cols.id!r} of type "
            f"{arrow.field(cols.id).type}; ids must be integers, text or UUIDs",
            hint="name another column with ?id_field=NAME",
        )
    if id_kind in ("uuid", "hex"):
        notes["id.type"] = f"{arrow.field(cols.id).type} read as {id_kind} text"
    if cols.document and not is_text(arrow.field(cols.document).type):
        raise ConfigError(
            f"LanceDB table {name!r} column {cols.document!r} "
            f"(document_field={cols.document}) is {arrow.field(cols.document).type}, not text"
        )
    if cols.metadata and kinds.get(cols.metadata) != "json":
        raise ConfigError(
            f"LanceDB table {name!r} column {cols.metadata!r} "
            f"(metadata_field={cols.metadata}) is neither a struct nor JSON-object text"
        )
    extra = "metadata_extra" if kinds.get("metadata_extra") == "text" else None
    taken = {cols.id, cols.document, cols.metadata, extra, *vector_cols, *uncarried}
    metadata: list[MetadataField] = []
    fields: list[tuple[str, str, str | None]] = []

    def add(field: str, column: str, key: str | None, t: pa.DataType | None) -> None:
        where = column if key is None else f"{column}.{key}"
        if t is None:  # a key of JSON text: typed from the sampled values
            metadata.append(typed[key or ""].model_copy(update={"name": field}))
        else:
            mtype, note = foreign_type(name, where, t)
            if note:
                notes[f"{field}.type"] = note
            metadata.append(MetadataField(name=field, type=mtype))
        fields.append((field, column, key))

    typed: dict[str, MetadataField] = {}
    tops = [f.name for f in arrow if f.name not in taken]
    for column in tops:
        add(column, column, None, arrow.field(column).type)
    fmt = None
    if cols.metadata:
        meta_type = arrow.field(cols.metadata).type
        if pa.types.is_struct(meta_type):
            fmt, keys = "struct", [(c.name, c.type) for c in meta_type]
        else:
            fmt = "json"
            typed = {m.name: m for m in infer_metadata_fields(json_rows[cols.metadata])}
            keys = [(k, None) for k in typed]
        for key, t in keys:
            field = f"{cols.metadata}.{key}" if key in tops else key
            add(field, cols.metadata, key, t)
    layout = Layout(
        id=cols.id,
        id_kind=id_kind,
        document=cols.document,
        metadata=cols.metadata,
        metadata_format=fmt,
        fields=tuple(fields),
        vectors=tuple(chosen),
        extra=extra,
    )
    notes[LAYOUT_KEY] = layout.settings()
    vectors = tuple(
        VectorField(
            name=v,
            dim=arrow.field(v).type.list_size,
            metric=Metric.L2,
            index=IndexSpec(kind="flat"),
            metric_source=DEFAULT_METRIC,
        )
        for v in chosen
    )
    return CollectionSchema(
        name=name,
        id_type=IdType.INT if id_kind == "int" else IdType.STRING,
        vectors=vectors,
        metadata=tuple(metadata),
        has_document=cols.document is not None,
        engine="lancedb",
        engine_settings=notes,
        uncarried=uncarried,
    )


def served_indexes(
    table: Any, schema: CollectionSchema, sample: VectorSampler, *, recorded: bool
) -> CollectionSchema:
    """``schema`` with each vector's metric read from the index that serves its searches
    (an index rebuilt outside vecmigrate outranks what vecmigrate recorded, and the
    disagreement is noted); an un-indexed foreign table's from its vectors
    (``unindexed_metric``). The index is noted in ``engine_settings`` and the metric's
    origin in ``metric_source``."""
    indices = table.list_indices()
    configs = {c.columns[0]: c for c in indices if len(c.columns) == 1}
    settings = dict(schema.engine_settings)
    layout = Layout.of(settings)
    # A framework's table: the metric vecmigrate noted there, else the framework's l2.
    framework = isinstance(layout, _frameworks.FrameworkLayout)
    vectors = []
    for v in schema.vectors:
        settings.pop(f"{v.name}.index", None)  # a note copied from another engine
        column = layout.vector_column(v.name) if layout else v.name
        stats = table.index_stats(configs[column].name) if column in configs else None
        if stats is None or stats.distance_type is None:
            if not recorded and not framework:  # a flat scan: the query names the metric
                metric, source = unindexed_metric(sample(column))
                settings[f"{v.name}.metric"] = source
                v = v.model_copy(update={"metric": metric, "metric_source": source})
            vectors.append(v)
            continue
        settings[f"{v.name}.index"] = (
            f"{stats.index_type} ({stats.distance_type}), {stats.num_indexed_rows} rows indexed"
        )
        served = next((m for m, n in METRIC_NAMES.items() if n == stats.distance_type), None)
        if served is None:
            raise ConfigError(
                f"the {stats.index_type} index on {schema.name}.{v.name} serves "
                f"{stats.distance_type} distance, which vecmigrate has no metric for"
            )
        source = f"the {stats.index_type} index {configs[column].name!r} ({stats.distance_type})"
        note = f"{served.value} from {source}"
        if served is not v.metric and recorded:
            note += f"; vecmigrate recorded {v.metric.value} (index rebuilt outside vecmigrate)"
        if served is not v.metric or not recorded:
            settings[f"{v.name}.metric"] = note
            update: dict[str, Any] = {"metric": served, "metric_source": source}
            if not recorded:
                kind = _INDEX_KINDS.get(stats.index_type, "flat")
                details = getattr(configs[column], "index_details", None) or {}
                update["index"] = IndexSpec(kind=kind, params=index_params(details))
            v = v.model_copy(update=update)
        vectors.append(v)
    metadata = _indexed_fields(schema, layout, indices)
    return schema.replace(vectors=tuple(vectors), metadata=metadata, engine_settings=settings)


def _queries_choose(v: VectorField) -> bool:
    """No index fixes the column's metric: each query names its own."""
    return not v.metric_known or (v.metric_source or "").startswith(DEFAULT_METRIC)


def unindexed_metric(vectors: np.ndarray) -> tuple[Metric, str]:
    """(metric, its source) of an un-indexed vector column: each query names its metric
    (l2 when it names none), so the table cannot say which the application uses. Unit
    vectors rank alike under every metric: LanceDB's default l2. Others: unknown, and a
    copy asks the mapping to state it rather than assume the default."""
    if sampled_metric(vectors)[1] == METRIC_UNKNOWN:
        return Metric.L2, METRIC_UNKNOWN
    if len(vectors) == 0:
        return Metric.L2, DEFAULT_METRIC
    return Metric.L2, (
        f"{DEFAULT_METRIC}; the {len(vectors)} vectors sampled are unit length, "
        "so cosine, dot and l2 rank alike"
    )


# LanceDB's scalar indexes that serve filters (its FTS/inverted index is full-text search).
_FILTER_INDEXES = frozenset({"BTREE", "BITMAP", "LABELLIST", "NGRAM"})


def field_path(layout: Layout | None, field: str) -> str | None:
    """The column path a scalar index on metadata ``field`` is on: ``metadata.<field>`` in
    vecmigrate's tables, the field's own column in another tool's (None: a key inside a
    JSON text column, or a framework's layout)."""
    if layout is None:
        return f"metadata.{field}"
    if isinstance(layout, _frameworks.FrameworkLayout):
        return None
    column, key = layout.where().get(field, ("", None))
    return column if column and key is None else None


def _indexed_fields(
    schema: CollectionSchema, layout: Layout | None, configs: list[Any]
) -> tuple[MetadataField, ...]:
    """``schema``'s metadata, each marked indexed when a scalar index serves filters on
    it (the index that is there is the truth, as for vectors)."""
    served = {
        c.columns[0]
        for c in configs
        if len(c.columns) == 1 and str(c.index_type).upper().replace("_", "") in _FILTER_INDEXES
    }
    return tuple(
        m.model_copy(update={"indexed": field_path(layout, m.name) in served})
        for m in schema.metadata
    )


def index_params(details: dict[str, Any]) -> dict[str, int | float | str]:
    """A LanceDB vector index's parameters (``IndexConfig.index_details``) under portable
    names: HNSW's M and ef_construction, PQ's sub-vectors (m) and bits (nbits). The IVF
    partition count is not reported: a target sizes its own."""
    params: dict[str, int | float | str] = {}
    hnsw, compression = details.get("hnsw") or {}, details.get("compression") or {}
    if "max_connections" in hnsw:
        params["M"] = int(hnsw["max_connections"])
    if "construction_ef" in hnsw:
        params["ef_construction"] = int(hnsw["construction_ef"])
    if compression.get("type") == "pq" and "num_sub_vectors" in compression:
        params["m"] = int(compression["num_sub_vectors"])
        params["nbits"] = int(compression.get("num_bits", 8))
    return params


_WIDENS = {("int64", "float64"), ("list<int64>", "list<float64>")}


def reuse_problems(schema: CollectionSchema, have: CollectionSchema) -> list[str]:
    """Why a foreign table described as ``have`` cannot take ``schema``'s records (one
    entry per column); empty for a table vecmigrate laid out, which takes what it holds."""
    layout = Layout.of(have.engine_settings)
    if layout is None:
        return []
    if isinstance(layout, _frameworks.FrameworkLayout):
        return _frameworks.reuse_problems(layout, schema, have)
    if layout.row_ids:
        return [f"it has no id column (read by LanceDB's row ids, {ROW_ID}, which no write sets)"]
    problems = []
    if schema.id_type is not have.id_type:
        problems.append(
            f"its id column {layout.id!r} holds {have.id_type.value} ids, "
            f"the records have {schema.id_type.value} ids"
        )
    vectors = {v.name: v for v in have.vectors}
    for v in schema.vectors:
        got = vectors.get(v.name)
        if got is None:
            problems.append(f"no vector column {v.name!r} (it has {', '.join(vectors) or 'none'})")
        elif got.dim != v.dim:
            problems.append(f"vector column {v.name!r} holds {got.dim} dimensions, not {v.dim}")
        elif got.metric is not v.metric and not _queries_choose(got):
            problems.append(
                f"{v.name!r} is searched with {got.metric.value} ({got.metric_source}), "
                f"the records with {v.metric.value}"
            )
    if schema.has_document and not have.has_document:
        problems.append("no text column for the documents (name one with ?document_field=)")
    if layout.json:
        return problems  # any other key has a place in the JSON text
    fields = {m.name: m for m in have.metadata}
    for m in schema.metadata:
        f = fields.get(m.name)
        if f is None:
            problems.append(f"no column for metadata field {m.name!r}")
        elif f.type != m.type and (m.type, f.type) not in _WIDENS and f.type != "json":
            problems.append(f"metadata field {m.name!r} is {m.type}, its column {f.type}")
    return problems


def with_json_keys(have: CollectionSchema, schema: CollectionSchema) -> CollectionSchema:
    """``have`` (a foreign table with JSON-text metadata) with ``schema``'s metadata fields
    it lacks added as keys of that JSON: the text holds any key, so records written into
    the table keep theirs (the table's sample may not show a key, or the table be empty)."""
    layout = Layout.of(have.engine_settings)
    if isinstance(layout, _frameworks.FrameworkLayout):
        return _frameworks.reused(layout, schema, have)
    if layout is None or not layout.json or layout.metadata is None:
        return have
    known = {m.name for m in have.metadata}
    added = [m for m in schema.metadata if m.name not in known]
    if not added:
        return have
    layout = replace(
        layout, fields=layout.fields + tuple((m.name, layout.metadata, m.name) for m in added)
    )
    settings = {**have.engine_settings, LAYOUT_KEY: layout.settings()}
    return have.replace(metadata=have.metadata + tuple(added), engine_settings=settings)
