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

Modules: ``_layout`` (configuration, recognised columns, the inferred layout),
``_columns`` (Arrow batches from other tools' columns), ``_connector`` (the base classes).
"""

from __future__ import annotations

from vecmigrate.connectors.tabular._columns import (
    bad_batch,
    placeholder_id,
    read_arrow_batch,
    rebatch,
    row_namer,
)
from vecmigrate.connectors.tabular._connector import (
    FileConnector,
    Unit,
    WritableFileConnector,
    int_or_text_ids,
    stored_schema,
)
from vecmigrate.connectors.tabular._layout import (
    LAYOUT_KEY,
    SAMPLE_ROWS,
    SOURCE_ERROR_KEY,
    VECTOR_NAMES,
    ArrowLayout,
    FileConfig,
    id_kind,
    infer_arrow_layout,
    vector_field,
    wrong_length,
)

__all__ = [
    "LAYOUT_KEY",
    "SAMPLE_ROWS",
    "SOURCE_ERROR_KEY",
    "VECTOR_NAMES",
    "ArrowLayout",
    "FileConfig",
    "FileConnector",
    "Unit",
    "WritableFileConnector",
    "bad_batch",
    "id_kind",
    "infer_arrow_layout",
    "int_or_text_ids",
    "placeholder_id",
    "read_arrow_batch",
    "rebatch",
    "row_namer",
    "stored_schema",
    "vector_field",
    "wrong_length",
]
