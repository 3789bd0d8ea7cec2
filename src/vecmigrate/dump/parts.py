"""Reading a dump part safely: every value valid, the columns the schema's, and each
record conformed, or one error naming the part, row, record id and field."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.errors import DataError
from vecmigrate.model import CollectionSchema
from vecmigrate.records import conform, layout_problems


def invalid_rows(batch: pa.RecordBatch) -> list[tuple[int, str]]:
    """(row, column) of every value failing full Arrow validation (non-UTF-8 strings...).
    Cheap when the batch is valid: one vectorised validation, row by row only if not."""
    try:
        batch.validate(full=True)
        return []
    except pa.ArrowInvalid:
        pass
    found = []
    for row in range(batch.num_rows):
        one = batch.slice(row, 1)
        for col_name, col in zip(one.schema.names, one.columns, strict=True):
            try:
                col.validate(full=True)
            except pa.ArrowInvalid:
                found.append((row, col_name))
                break
    return found


def row_id(batch: pa.RecordBatch, row: int) -> Any:
    if "id" not in batch.schema.names:
        return None
    ids = batch.column("id").slice(row, 1)
    try:
        ids.validate(full=True)
        return ids[0].as_py()
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None


def validate_part_batch(batch: pa.RecordBatch, name: str, file: str, first_row: int) -> None:
    """Refuse a batch holding values Arrow itself considers invalid (non-UTF-8 strings),
    naming the part, row, record id and field instead of failing later in a client."""
    bad = invalid_rows(batch)
    if bad:
        row, column = bad[0]
        raise DataError(
            f"part {name}/{file} row {first_row + row}: {column} is not valid "
            f"(strings must be UTF-8); {len(bad)} such record(s) in this batch",
            collection=name,
            record_id=row_id(batch, row),
            field=column,
            hint="fix or drop the record at the source, or run `vecmigrate check` on the dump",
        )


def _vector_length_problem(
    batch: pa.RecordBatch, schema: CollectionSchema, row: int, field: str | None
) -> str | None:
    """A plain-words reason when ``field`` is a vector of the wrong length at ``row``."""
    vf = next((v for v in schema.vectors if v.name == field), None)
    if vf is None or field not in batch.schema.names:
        return None
    col = batch.column(field).slice(row, 1)
    if not (pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)):
        return None
    length = pc.list_value_length(col)[0].as_py()
    if length == vf.dim:
        return None
    return f"vector has {length} values; the collection is {vf.dim}-d"


def null_vector_row(batch: pa.RecordBatch, schema: CollectionSchema) -> tuple[int, str] | None:
    """(row, vector field) of the first null vector in ``batch``, if any."""
    for v in schema.vectors:
        if v.name in batch.schema.names:
            col = batch.column(v.name)
            if col.null_count:
                return int(pc.index(col.is_null(), True).as_py()), v.name
    return None


def check_part_layout(schema: pa.Schema, collection: CollectionSchema, file: str) -> None:
    """Refuse a part whose columns are not the schema's (a missing or undeclared column, a
    metadata struct with renamed, missing or extra fields), naming the part and column."""
    problems = layout_problems(schema, collection, strict=True)
    if problems:
        _, column, problem = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise DataError(
            f"part {collection.name}/{file} {problem}{more}",
            collection=collection.name,
            field=column,
            hint="the part was not written for this _schema.json; vecmigrate never guesses a "
            "missing, renamed or extra column: fix the schema or the part, or re-export",
        )


def conform_part_batch(
    batch: pa.RecordBatch, schema: CollectionSchema, file: str, first_row: int
) -> pa.RecordBatch:
    """``conform`` a batch read from a part; when it fails, name the first failing record
    (wrong vector length, an id of the wrong type...) and the part it is in."""
    validate_part_batch(batch, schema.name, file, first_row)
    check_part_layout(batch.schema, schema, file)
    null = null_vector_row(batch, schema)
    if null is not None:
        row, field = null
        raise DataError(
            f"part {schema.name}/{file} row {first_row + row}: vector is null",
            collection=schema.name,
            record_id=row_id(batch, row),
            field=field,
            hint="drop the record at the source, or run `vecmigrate check` on the dump",
        )
    try:
        return conform(batch, schema, strict=True)
    except DataError as whole:
        for row in range(batch.num_rows):
            try:
                conform(batch.slice(row, 1), schema, strict=True)
            except DataError as exc:
                reason = _vector_length_problem(batch, schema, row, exc.field) or exc.reason
                raise DataError(
                    f"part {schema.name}/{file} row {first_row + row}: {reason}",
                    collection=schema.name,
                    record_id=row_id(batch, row),
                    field=exc.field,
                    hint=exc.hint
                    or "fix the record at the source, or run `vecmigrate check` on the dump",
                ) from None
        raise whole
