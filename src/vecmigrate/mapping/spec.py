"""The mapping file: every decision a migration makes about ids, fields, metric and index.

YAML, validated with pydantic; ``MappingSpec.model_json_schema()`` is the published
JSON schema (``vecmigrate plan --json-schema``). Example::

    target_collection: docs_v2
    id: {strategy: uuid5, original_field: source_id}
    fields:
      year: {cast: int64}
      internal_notes: {drop: true}
      title: {rename: headline}
    on_invalid: dead_letter          # or fail
    vectors:
      vector: {metric: dot, index: {kind: hnsw, params: {M: 32, ef_construction: 200}}}
    reembed: {model: all-MiniLM-L6-v2, field: minilm}   # a new named vector from documents
    namespaces: {to: field, field: tenant}   # or {from: field, field: tenant}, {to: drop}
    flatten: {sep: "."}                     # json objects -> dotted scalar fields
    # fields: {published: {cast: timestamp, unit: ms}}  # ISO-8601 text <-> int64 epoch
"""

from __future__ import annotations

from pathlib import Path
from string import Formatter
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vecmigrate.errors import ConfigError
from vecmigrate.model import IndexSpec, MetadataType, Metric


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdSpec(_Spec):
    """How ids are carried: kept, or mapped deterministically with the original kept."""

    strategy: Literal["keep", "string", "uuid5", "hash64"] = "keep"
    original_field: str | None = Field(
        default=None, description="metadata field that keeps the original id (uuid5, hash64)"
    )
    namespace: str = Field(
        default="6ba7b811-9dad-11d1-80b4-00c04fd430c8", description="uuid5 namespace"
    )


class FieldSpec(_Spec):
    """What happens to one metadata field.

    ``cast: date`` / ``cast: timestamp`` convert between ISO-8601 text (canonical UTC
    form: ``2024-05-01``, ``2024-05-01T12:30:00Z``, with ``.123`` for ms) and an int64
    epoch in ``unit``; the direction follows the source type (string -> int64 -> string).
    """

    rename: str | None = None
    drop: bool = False
    cast: MetadataType | Literal["date", "timestamp"] | None = None
    unit: Literal["s", "ms"] = Field(default="s", description="epoch unit of date/timestamp")


class NamespaceSpec(_Spec):
    """Where namespaces (tenants) go when the target cannot store them, or come from.

    ``{to: field, field: tenant}``: each record's namespace becomes a string metadata field;
    ``{from: field, field: tenant}``: a string metadata field becomes the namespace;
    ``{to: collections, pattern: "{collection}__{namespace}"}``: one target collection per
    namespace, named by the pattern (``{collection}``: the target name, ``{namespace}``:
    the namespace; no other placeholders or format specs, ``{namespace}`` required);
    ``{to: drop}``: namespaces are dropped (only when written)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: Literal["field", "collections", "drop"] | None = None
    from_: Literal["field"] | None = Field(default=None, alias="from")
    field: str | None = Field(default=None, description="the metadata field (to/from field)")
    pattern: str = Field(
        default="{collection}__{namespace}",
        description="target collection names (to: collections): {collection}, {namespace}",
    )

    @model_validator(mode="after")
    def _one_direction(self) -> NamespaceSpec:
        if (self.to is None) == (self.from_ is None):
            raise ValueError("give exactly one of to: (field|collections|drop) or from: field")
        if (self.to == "field" or self.from_ == "field") and not self.field:
            raise ValueError("to/from field needs field: NAME")
        if self.to == "collections":
            check_pattern(self.pattern)
        return self


def check_pattern(pattern: str) -> None:
    """A ``to: collections`` pattern uses ``{collection}`` and ``{namespace}`` only, with
    ``{namespace}`` present (else every namespace would land in one collection)."""
    try:
        parts = list(Formatter().parse(pattern))
    except ValueError as exc:
        raise ValueError(f"pattern {pattern!r}: {exc}") from None
    names = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in ("collection", "namespace") or spec or conversion:
            raise ValueError(
                f"pattern {pattern!r}: only {{collection}} and {{namespace}} may appear, "
                f"not {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}}"
            )
        names.append(name)
    if "namespace" not in names:
        raise ValueError(f"pattern {pattern!r} must contain {{namespace}}")


class FlattenSpec(_Spec):
    """json objects -> one scalar field per leaf (``author.name``), or back (unflatten)."""

    sep: str = Field(default=".", min_length=1)
    fields: list[str] | None = Field(
        default=None, description="json fields to flatten (default: every json field)"
    )
    types: dict[str, MetadataType] = Field(
        default_factory=dict,
        description="type of each flattened field; inferred from a sample when empty",
    )


class VectorSpec(_Spec):
    """Target metric and index for one vector field (dense or sparse), or its removal."""

    rename: str | None = None
    drop: bool = Field(
        default=False,
        description="leave this vector (or sparse) field out of the target, e.g. for a "
        "target that stores one vector per record",
    )
    metric: Metric | None = None
    normalize: bool = Field(
        default=False, description="normalise vectors to unit length on the way"
    )
    force_metric: bool = Field(
        default=False, description="allow a metric change the data does not support"
    )
    index: IndexSpec | None = None
    round_to_float32: bool = Field(
        default=False,
        description="round wider source values (float64) to the nearest float32 on the way "
        "(each value changes by at most half a float32 step); without it they are refused",
    )


class ReembedSpec(_Spec):
    """Compute a vector field from each record's document with a local model."""

    model: str = Field(default="all-MiniLM-L6-v2", description="model name or directory")
    field: str = Field(default="vector", description="the vector field to write")
    replace: str | None = Field(
        default=None, description="vector field it replaces (default: none)"
    )
    metric: Metric = Metric.COSINE
    batch_size: int = Field(default=64, gt=0)


class MappingSpec(_Spec):
    """A whole mapping file."""

    target_collection: str | None = None
    id: IdSpec = Field(default_factory=IdSpec)
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    vectors: dict[str, VectorSpec] = Field(default_factory=dict)
    reembed: ReembedSpec | None = None
    namespaces: NamespaceSpec | None = None
    flatten: FlattenSpec | None = None
    unflatten: FlattenSpec | None = Field(
        default=None, description="dotted fields -> json objects (sep; fields and types unused)"
    )
    on_invalid: Literal["fail", "dead_letter"] = Field(
        default="dead_letter",
        description="a record a cast or check refuses: stop, or dead-letter it",
    )

    @classmethod
    def load(cls, path: Path | None) -> MappingSpec:
        """Read and validate a YAML mapping file (no file: the empty mapping)."""
        if path is None:
            return cls()
        try:
            data: Any = yaml.safe_load(path.read_text()) or {}
            return cls.model_validate(data)
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read mapping file {path}: {exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise ConfigError(f"{path}: {where}: {first['msg']}") from None

    def to_yaml(self) -> str:
        """The mapping as YAML, defaults included, for review."""
        return yaml.safe_dump(
            self.model_dump(mode="json", exclude_none=True, by_alias=True), sort_keys=False
        )
