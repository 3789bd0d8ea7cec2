"""The data model every piece shares: collection schema, capabilities, partitions.

A batch that flows through vecmigrate is a ``pyarrow.RecordBatch`` laid out as
``CollectionSchema.arrow_schema()`` says:

* ``id``              string (ids of type string or uuid) or int64
* ``namespace``       string, only when the collection has namespaces/tenants
* ``document``        string, only when the collection stores documents
* ``<vector field>``  ``FixedSizeList<float32>[dim]``, one column per (named) vector
* ``<sparse field>``  ``struct<indices: list<uint32>, values: list<float32>>``
* ``metadata``        ``struct<...>`` with one typed child per metadata field
* ``metadata_extra``  string: JSON object of values that did not fit their field's type,
                      kept losslessly rather than coerced (null for most rows)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, TypeAlias

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from vecmigrate.errors import ConfigError

FORMAT_VERSION = 1
RESERVED_COLUMNS = frozenset({"id", "namespace", "document", "metadata", "metadata_extra"})

ResumeToken: TypeAlias = str
"""Opaque, JSON-encoded position inside one partition; ``scan`` resumes after it."""


class Metric(str, Enum):
    """Distance metric, by its portable name. Connectors map engine names and aliases."""

    COSINE = "cosine"
    DOT = "dot"
    L2 = "l2"


class IdType(str, Enum):
    """How record ids are typed."""

    STRING = "string"
    INT = "int"
    UUID = "uuid"


# Portable metadata types and their Arrow types. "json" holds nested objects or
# heterogeneous lists as canonical JSON text.
METADATA_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "list<string>": pa.list_(pa.string()),
    "list<int64>": pa.list_(pa.int64()),
    "list<float64>": pa.list_(pa.float64()),
    "json": pa.string(),
}
MetadataType = Literal[
    "string", "int64", "float64", "bool", "list<string>", "list<int64>", "list<float64>", "json"
]


def is_text(t: pa.DataType) -> bool:
    """Whether Arrow type ``t`` holds UTF-8 text (string, large_string, string_view)."""
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def is_list_like(t: pa.DataType) -> bool:
    """Whether Arrow type ``t`` is a list of any layout (list, large, fixed size, view)."""
    return bool(
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list_view(t)
        or pa.types.is_large_list_view(t)
    )


def is_jsonable(t: pa.DataType) -> bool:
    """Whether every value of Arrow type ``t`` has an exact JSON form (text, bool, integers,
    floats, and lists / structs / maps of those); dates, decimals and bytes do not."""
    if is_text(t) or pa.types.is_boolean(t) or pa.types.is_null(t):
        return True
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return True
    if is_list_like(t):
        return is_jsonable(t.value_type)
    if pa.types.is_struct(t):
        return all(is_jsonable(f.type) for f in t)
    if pa.types.is_map(t):
        return is_text(t.key_type) and is_jsonable(t.item_type)
    if pa.types.is_dictionary(t):
        return is_jsonable(t.value_type)
    return False


def portable_type(t: pa.DataType) -> MetadataType | None:
    """The portable metadata type holding every value of Arrow type ``t`` exactly, or None.

    Integers of any width become int64 (an unsigned 64-bit value above 2**63-1 does not fit
    and travels in ``metadata_extra``, exact); float16/32 widen to float64 exactly; lists
    of text or numbers keep their element kind; anything else JSON can carry is "json".
    """
    if pa.types.is_dictionary(t):
        return portable_type(t.value_type)
    if is_text(t):
        return "string"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int64"
    if pa.types.is_floating(t):
        return "float64"
    if is_list_like(t):
        inner = portable_type(t.value_type)
        if inner in ("string", "int64", "float64"):
            return f"list<{inner}>"  # type: ignore[return-value]
    return "json" if is_jsonable(t) and not pa.types.is_null(t) else None


METRIC_UNKNOWN = "unknown"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


IndexKind = Literal["flat", "hnsw", "ivf_flat", "ivf_pq", "auto", "none"]


class IndexSpec(_Model):
    """An ANN index: kind plus portable parameters (M, ef_construction, nlist, ...)."""

    kind: IndexKind = "auto"
    params: dict[str, int | float | str] = Field(default_factory=dict)


class VectorField(_Model):
    """A dense vector field."""

    name: str = "vector"
    dim: int = Field(gt=0)
    metric: Metric = Metric.COSINE
    dtype: Literal["float32"] = "float32"
    normalized: bool | None = None
    index: IndexSpec | None = None
    # Where ``metric`` was read on a collection vecmigrate did not lay out (an index's
    # operator class, the engine's default, sampled unit vectors); METRIC_UNKNOWN when
    # nothing says, and a copy then needs the mapping's ``vectors.<name>.metric``.
    metric_source: str | None = None
    # Read with values wider than float32 (float64) rounded to the nearest float32, as the
    # mapping allowed (``round_to_float32``); otherwise such values are refused.
    rounded: bool = False

    @property
    def metric_known(self) -> bool:
        """The metric was read, not a placeholder."""
        return self.metric_source != METRIC_UNKNOWN

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_COLUMNS:
            raise ValueError(f"vector field name {v!r} is reserved")
        return v


class SparseField(_Model):
    """A sparse vector field (indices + values).

    ``dim`` is the size of the index space when the source records one (pgvector's
    ``sparsevec(N)``); None means unbounded (uint32 indices), as in Qdrant or Milvus.
    """

    name: str
    metric: Metric = Metric.DOT
    dim: int | None = Field(default=None, gt=0)
    # "idf": the engine weights each index by its inverse document frequency in the
    # collection when scoring (Qdrant's sparse modifier, how BM25 is set up there).
    modifier: Literal["idf"] | None = None
    # As ``VectorField.metric_source``: METRIC_UNKNOWN when nothing records the metric
    # (a pgvector ``sparsevec`` column without an index), and a copy then needs the
    # mapping's ``vectors.<name>.metric``.
    metric_source: str | None = None

    @property
    def metric_known(self) -> bool:
        """The metric was read, not a placeholder."""
        return self.metric_source != METRIC_UNKNOWN


class MetadataField(_Model):
    """A metadata (payload, property) field with its portable type."""

    name: str
    type: MetadataType
    nullable: bool = True
    indexed: bool = False

    @property
    def arrow_type(self) -> pa.DataType:
        """Arrow type of this field inside the ``metadata`` struct."""
        return METADATA_TYPES[self.type]


class EmbeddingProvenance(_Model):
    """What produced a vector field, when known."""

    vector_field: str = "vector"
    model: str | None = None
    version: str | None = None
    dim: int | None = None
    normalized: bool | None = None


class FullTextField(_Model):
    """Full-text search the engine computes from the text (Milvus 2.5's BM25 function, a
    LanceDB FTS index, a PostgreSQL tsvector generated from the text or a GIN index on
    ``to_tsvector``): never read or written as data; recreated on a target whose engine
    computes it (``Capabilities.full_text``)."""

    name: str  # the field the engine fills (the function's output), or the index's name
    over: str = "document"  # the text it is computed from: the record's document
    analyzer: dict[str, Any] | None = None  # the engine's tokenizer settings, as read
    # The engine's own settings: BM25 scoring (bm25_k1, bm25_b...), PostgreSQL's
    # stored (a generated column) and index (its access method).
    params: dict[str, Any] = Field(default_factory=dict)
    function: str | None = None  # the engine's name of the function, when it has one


class CollectionSchema(_Model):
    """Everything needed to recreate a collection deliberately on another engine."""

    name: str
    id_type: IdType = IdType.STRING
    vectors: tuple[VectorField, ...] = ()
    sparse: tuple[SparseField, ...] = ()
    metadata: tuple[MetadataField, ...] = ()
    has_document: bool = False
    namespaces: tuple[str, ...] | None = None
    embedding: tuple[EmbeddingProvenance, ...] = ()
    engine: str | None = None
    engine_settings: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, str] = Field(default_factory=dict)
    # Vector fields the source has and the portable model cannot carry, with why (a
    # Qdrant multivector, a sparse field Milvus computes with a BM25 function and never
    # returns): not read, and a copy refuses until the mapping drops each by name.
    uncarried: dict[str, str] = Field(default_factory=dict)
    # Full-text search fields the engine computes from the documents (not data).
    full_text: tuple[FullTextField, ...] = ()

    @property
    def vector(self) -> VectorField:
        """The first (default) vector field."""
        if not self.vectors:
            raise ConfigError(f"collection {self.name!r} has no vector field")
        return self.vectors[0]

    def vector_field(self, name: str | None) -> VectorField:
        """The named vector field, or the default one when ``name`` is None."""
        if name is None:
            return self.vector
        for v in self.vectors:
            if v.name == name:
                return v
        raise ConfigError(f"collection {self.name!r} has no vector field {name!r}")

    def metadata_field(self, name: str) -> MetadataField | None:
        """The metadata field called ``name``, if declared."""
        return next((m for m in self.metadata if m.name == name), None)

    def id_arrow_type(self) -> pa.DataType:
        """Arrow type of the ``id`` column."""
        return pa.int64() if self.id_type is IdType.INT else pa.string()

    def metadata_struct_type(self) -> pa.StructType:
        """Arrow struct type of the ``metadata`` column."""
        return pa.struct([pa.field(m.name, m.arrow_type) for m in self.metadata])

    def arrow_schema(self) -> pa.Schema:
        """Arrow schema of every batch of this collection (see module docstring)."""
        fields = [pa.field("id", self.id_arrow_type(), nullable=False)]
        if self.namespaces is not None:
            fields.append(pa.field("namespace", pa.string()))
        if self.has_document:
            fields.append(pa.field("document", pa.string()))
        for v in self.vectors:
            fields.append(pa.field(v.name, pa.list_(pa.float32(), v.dim)))
        for s in self.sparse:
            fields.append(pa.field(s.name, SPARSE_TYPE))
        if self.metadata:
            fields.append(pa.field("metadata", self.metadata_struct_type()))
        fields.append(pa.field("metadata_extra", pa.string()))
        return pa.schema(fields)

    def to_json(self) -> str:
        """Stable JSON form, as stored in a dump's ``schema.json``."""
        return json.dumps(
            {"format_version": FORMAT_VERSION, **self.model_dump(mode="json")}, indent=2
        )

    @classmethod
    def from_json(cls, text: str) -> CollectionSchema:
        """Parse ``to_json`` output; refuses unknown format versions."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ConfigError(
                f"a collection schema must be a JSON object, not a {type(data).__name__}",
                hint="restore schema.json from the dump's origin, or export the dump again",
            )
        version = data.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise ConfigError(
                f"schema format version {version!r} is not supported (expected {FORMAT_VERSION})",
                hint="upgrade vecmigrate to read this dump",
            )
        return cls.model_validate(data)

    def replace(self, **changes: Any) -> CollectionSchema:
        """A copy with some attributes changed."""
        return self.model_copy(update=changes)


SPARSE_TYPE = pa.struct(
    [pa.field("indices", pa.list_(pa.uint32())), pa.field("values", pa.list_(pa.float32()))]
)


class Capabilities(_Model):
    """What an engine can store and do: declared data, never probed at run time."""

    id_types: frozenset[IdType]
    metrics: frozenset[Metric]
    named_vectors: bool = False
    sparse_vectors: bool = False
    # The metrics sparse vectors can be searched with (Milvus and Qdrant: dot only); a
    # store that searches nothing (a dump, a file) keeps any.
    sparse_metrics: frozenset[Metric] = frozenset(Metric)
    # Sparse modifiers the engine applies when scoring (Qdrant: idf); a store that
    # searches nothing keeps any (``SparseField.modifier``).
    sparse_modifiers: frozenset[str] = frozenset({"idf"})
    # Can recreate a ``FullTextField`` (the engine computes it from the documents, or a
    # store keeps the schema that says so).
    full_text: bool = False
    documents: bool = True
    namespaces: bool = False
    metadata_types: frozenset[str] = frozenset(METADATA_TYPES)
    stores_null_metadata: bool = True
    filter_ops: frozenset[str] = frozenset()
    max_batch_rows: int = 1000
    max_batch_bytes: int = 32 * 1024 * 1024
    max_metadata_bytes: int | None = None
    mutable: bool = True
    normalizes_cosine: bool = False
    vector_tolerance: float = 0.0
    index_kinds: frozenset[str] = frozenset({"flat"})


@dataclass(frozen=True)
class Partition:
    """A disjoint slice of a collection that can be scanned independently."""

    id: str
    spec: dict[str, Any] = field(default_factory=dict)
    estimated_rows: int | None = None

    def to_json(self) -> str:
        """JSON form stored in job state."""
        return json.dumps({"id": self.id, "spec": self.spec, "estimated_rows": self.estimated_rows})

    @classmethod
    def from_json(cls, text: str) -> Partition:
        """Inverse of ``to_json``."""
        d = json.loads(text)
        return cls(id=d["id"], spec=d["spec"], estimated_rows=d.get("estimated_rows"))
