"""The mapping applied to whole Arrow columns: renames, drops and namespace moves touch
no values, casts run over one column, and only refused records are handled one by one.

Batches whose ``metadata_extra`` holds a key the mapping touches (an explicit null or a
value kept apart from its typed field) take the per-record path in ``transform.py``, as
do ``flatten``/``unflatten``, which reshape each record's metadata.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.mapping.casts import CastRefused
from vecmigrate.model import MetadataField
from vecmigrate.values import value_fits

if TYPE_CHECKING:
    from vecmigrate.mapping.transform import Mapping, Refusal


class NeedsRows(Exception):
    """A cast gave a value its typed column cannot hold: it belongs in ``metadata_extra``,
    which the per-record path writes."""


def touched_keys(mapping: Mapping) -> set[str]:
    """Metadata keys whose values the mapping renames, drops, casts or moves."""
    spec = mapping.spec
    keys = set(spec.fields)
    keys |= {f.rename for f in spec.fields.values() if f.rename}
    if spec.id.original_field:
        keys.add(spec.id.original_field)
    if spec.namespaces and spec.namespaces.field:
        keys.add(spec.namespaces.field)
    return keys


def needs_rows(mapping: Mapping, batch: pa.RecordBatch) -> bool:
    """The batch must be mapped record by record (see the module docstring)."""
    spec = mapping.spec
    if spec.flatten is not None or spec.unflatten is not None:
        return True
    if any(f.cast == "json" or _source_type(mapping, k) == "json" for k, f in spec.fields.items()):
        return True
    if "metadata_extra" not in batch.schema.names:
        return False
    touched = touched_keys(mapping)
    extra = batch.column("metadata_extra")
    for raw in extra.filter(pc.is_valid(extra)).to_pylist():
        if raw and touched & set(json.loads(raw)):
            return True
    return False


def map_metadata(
    mapping: Mapping, batch: pa.RecordBatch, refusals: list[Refusal]
) -> tuple[pa.Array | None, pa.Array | None, pa.Array | None]:
    """(metadata struct, metadata_extra, namespaces) in the target's layout; NeedsRows
    when the batch must take the per-record path after all."""
    spec, target = mapping.spec, mapping.target
    n = batch.num_rows
    names = batch.schema.names
    struct = batch.column("metadata") if "metadata" in names else None
    children = (
        {f.name: struct.field(i) for i, f in enumerate(struct.type)} if struct is not None else {}
    )
    source_of = {f.rename or k: k for k, f in spec.fields.items() if not f.drop}
    nspec = spec.namespaces
    namespaces = batch.column("namespace") if "namespace" in names else None
    if nspec and nspec.from_ == "field" and nspec.field:
        namespaces = children.get(source_of.get(nspec.field, nspec.field))
    arrays, fields = [], []
    struct_type = target.arrow_schema().field("metadata").type if target.metadata else None
    for tf in target.metadata:
        assert struct_type is not None
        want = struct_type.field(tf.name).type
        if tf.name == spec.id.original_field:
            column: pa.Array = pc.cast(batch.column("id"), pa.string())
        elif nspec and nspec.to == "field" and tf.name == nspec.field and namespaces is not None:
            column = namespaces
        else:
            key = source_of.get(tf.name, tf.name)
            fspec = spec.fields.get(key)
            column = children.get(key, pa.nulls(n, want))
            if fspec and fspec.cast:
                column = _cast_column(mapping, key, column, tf, want, refusals)
        arrays.append(column.cast(want))
        fields.append(pa.field(tf.name, want))
    meta = pa.StructArray.from_arrays(arrays, fields=fields) if fields else None
    extra = batch.column("metadata_extra") if "metadata_extra" in names else None
    return meta, extra, namespaces


def _cast_column(
    mapping: Mapping,
    key: str,
    column: pa.Array,
    target: MetadataField,
    want: pa.DataType,
    refusals: list[Refusal],
) -> pa.Array:
    from vecmigrate.mapping.transform import Refusal

    fspec = mapping.spec.fields[key]
    assert fspec.cast is not None
    cast: Callable[[Any], Any] = lambda v: mapping._cast(key, v, str(fspec.cast), fspec.unit)  # noqa: E731
    out: list[Any] = []
    for row, value in enumerate(column.to_pylist()):
        try:
            value = cast(value)
        except CastRefused as exc:
            refusals.append(Refusal(row, key, f"cannot cast to {fspec.cast}: {exc}"))
            value = None
        if not value_fits(value, target):
            raise NeedsRows(key)
        out.append(value)
    return pa.array(out, want)


def _source_type(mapping: Mapping, key: str) -> str | None:
    field = mapping.source.metadata_field(key)
    return field.type if field is not None else None
