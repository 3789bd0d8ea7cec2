"""CSV files as a source (read-only): ``csv:///path/docs.csv`` (one collection, named after
the file) or ``csv:///dir`` (every ``*.csv`` / ``*.tsv`` in it).

The first line names the columns; ``?delimiter=`` (default ``,``, tab for ``.tsv``). A
vector column holds each vector as text: a JSON list (``"[0.1, 0.2]"``) or numbers
separated by spaces, commas or semicolons, read as the nearest float32. Columns are named
by ``?id_field=&vector_field=``... or recognised (``connectors/tabular/``); the other
columns are typed metadata fields, their types inferred by pyarrow from the first block
(1 MiB) of the file and kept for the rest. Ids are read as text; ids that are all
canonical integers are int ids. An empty cell is an absent value.

Streamed with ``pyarrow.csv.open_csv`` block by block. A line with more or fewer fields
than the header, and vector text that is not numbers or not ``dim`` of them, become
records with a NaN vector that the copy dead-letters, their ``metadata_extra`` naming
the line (or record) and the reason; a value of another type than its column's first
block decided stops the read with a message naming the column.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from vecmigrate.connectors.tabular import (
    SAMPLE_ROWS,
    ArrowLayout,
    FileConfig,
    FileConnector,
    Unit,
    bad_batch,
    id_kind,
    infer_arrow_layout,
    placeholder_id,
    read_arrow_batch,
    rebatch,
    row_namer,
)
from vecmigrate.errors import ConfigError
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.uri import ConnectionURI

BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class CsvConfig(FileConfig):
    """The columns of a CSV file (``connectors/tabular/``) and its field separator."""

    # One character (``tab`` or ``\\t`` for a tab); default ``,`` (a tab for .tsv).
    delimiter: str | None = None


class CsvConnector(FileConnector):
    """CSV files with a vector column; read-only."""

    Config = CsvConfig
    config: CsvConfig
    schemes = ("csv",)
    suffixes = (".csv", ".tsv")

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self._layouts: dict[str, tuple[ArrowLayout, dict[str, pa.DataType]]] = {}
        self._units: dict[tuple[str, int, int], list[Unit]] = {}

    def _delimiter(self, path: Path) -> str:
        d = self.config.delimiter
        if d is None:
            return "\t" if path.name.lower().endswith(".tsv") else ","
        if d.lower() in ("tab", "\\t"):
            return "\t"
        if len(d) != 1:
            raise ConfigError(
                f"csv:// parameter delimiter={d!r} is not one character",
                hint="e.g. delimiter=; or delimiter=tab",
            )
        return d

    def _open(
        self,
        path: Path,
        types: dict[str, pa.DataType] | None = None,
        invalid: list[Any] | None = None,
    ) -> pacsv.CSVStreamingReader:
        def handler(row: Any) -> str:
            if invalid is not None:
                invalid.append(row)
            return "skip"

        return pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(
                delimiter=self._delimiter(path), invalid_row_handler=handler
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=types or {}, strings_can_be_null=True
            ),
        )

    @staticmethod
    def _head(reader: pacsv.CSVStreamingReader) -> pa.Table:
        batches, rows = [], 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            if rows >= SAMPLE_ROWS:
                break
        table = pa.Table.from_batches(batches, schema=reader.schema)
        return table.slice(0, SAMPLE_ROWS)

    # -- schema ----------------------------------------------------------------------------------
    def read_schema(self, name: str) -> CollectionSchema:
        path = self.path_of(name)
        reader = self._open(path)
        arrow = reader.schema
        head = self._head(reader)
        schema, layout = infer_arrow_layout(
            "csv", name, arrow, self.config, lambda: head, text_vectors=True
        )
        # Read ids and vectors as text: "007" stays "007", vector text is parsed by us.
        types = {f.name: f.type for f in arrow}
        types.update({c: pa.string() for c in (layout.id, *layout.vectors)})
        ids = self._head(self._open(path, types)).column(layout.id).to_pylist()
        kind = id_kind(pa.string(), ids, text_ids_may_be_ints=True)
        assert kind is not None
        layout = replace(layout, id_kind=kind)
        settings = dict(schema.engine_settings)
        settings.pop("id.type", None)
        if kind == "int_text":
            settings["id.type"] = "ids are all integers: int ids"
        schema = schema.replace(
            id_type=IdType.INT if kind == "int_text" else IdType.STRING, engine_settings=settings
        )
        self._layouts[name] = (layout, types)
        return schema

    def _layout(self, name: str) -> tuple[ArrowLayout, dict[str, pa.DataType]]:
        if name not in self._layouts:
            self.describe(name)
        return self._layouts[name]

    # -- reading ---------------------------------------------------------------------------------
    def units(self, name: str) -> list[Unit]:
        """One unit (a CSV file cannot be split safely: quoted fields hold newlines)."""
        path = self.path_of(name)
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._units:
            _, types = self._layout(name)
            invalid: list[Any] = []
            rows = sum(b.num_rows for b in self._open(path, types, invalid))
            self._units = {key: [Unit([0], rows + len(invalid))]}
        return self._units[key]

    def read_unit(
        self, name: str, schema: CollectionSchema, key: Any, skip: int, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        path = self.path_of(name)
        layout, types = self._layout(name)
        int_ids = schema.id_type is IdType.INT

        def converted() -> Iterator[pa.RecordBatch]:
            invalid: list[Any] = []
            done = 0
            for raw in self._open(path, types, invalid):
                base = done
                done += raw.num_rows
                where = row_namer(f"csv {path.name} record {{}}", base + 1)
                yield read_arrow_batch(raw.select(layout.columns()), layout, schema, where)
                if invalid:
                    yield self._invalid(schema, path, invalid, int_ids)
                    invalid.clear()
            if invalid:
                yield self._invalid(schema, path, invalid, int_ids)

        yield from rebatch(converted(), skip, batch_rows)

    @staticmethod
    def _invalid(
        schema: CollectionSchema, path: Path, rows: list[Any], int_ids: bool
    ) -> pa.RecordBatch:
        ids, errors = [], []
        for r in rows:
            where = f"csv {path.name} line {r.number}"
            ids.append(placeholder_id(int_ids, where))
            errors.append(
                f"{where}: {r.actual_columns} fields, the header has {r.expected_columns}"
            )
        return bad_batch(schema, ids, errors)


__all__ = ["CsvConfig", "CsvConnector"]
