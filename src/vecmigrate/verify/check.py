"""Export validation: find what would break or silently degrade an import, per record.

Reads a dump's parts as written (not conformed to the schema), so a part with vectors of
the wrong length or a column of the wrong type is reported record by record.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.connectors.base import Connector
from vecmigrate.dump import Dump, invalid_rows, row_id
from vecmigrate.errors import DataError
from vecmigrate.layout import widens
from vecmigrate.model import CollectionSchema, MetadataField, Metric, is_jsonable, is_text
from vecmigrate.records import layout_problems, value_fits
from vecmigrate.retry import scan_resuming

MAX_EXAMPLES = 20
# Arrow's names for the float types, as numpy and the schema spell them.
_FLOAT_NAMES = {"double": "float64", "halffloat": "float16"}


@dataclass
class Finding:
    """One kind of defect, how often, and example record ids."""

    code: str
    severity: str  # "error" | "warning"
    field: str | None
    message: str
    count: int = 0
    ids: list[Any] = dataclasses.field(default_factory=list)

    def add(self, ids: list[Any]) -> None:
        """Count records and keep the first few ids."""
        self.count += len(ids)
        room = MAX_EXAMPLES - len(self.ids)
        if room > 0:
            self.ids.extend(ids[:room])


@dataclass
class CheckReport:
    """Everything ``vecmigrate check`` found in one collection."""

    collection: str
    rows: int = 0
    findings: dict[str, Finding] = field(default_factory=dict)
    norms: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No error-level finding."""
        return not any(f.severity == "error" for f in self.findings.values())

    def finding(self, code: str, severity: str, fld: str | None, message: str) -> Finding:
        """The finding for (code, field), created on first use."""
        key = f"{code}:{fld}"
        if key not in self.findings:
            self.findings[key] = Finding(code, severity, fld, message)
        return self.findings[key]

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {
            "collection": self.collection,
            "rows": self.rows,
            "ok": self.ok,
            "findings": [f.__dict__ for f in self.findings.values()],
            "norms": self.norms,
        }


def _raw_batches(
    connector: Connector, name: str, schema: CollectionSchema
) -> Iterator[tuple[str | None, pa.RecordBatch]]:
    """(part file or None, batch): a dump's parts as written, other engines' scans."""
    dump: Dump | None = getattr(connector, "dump", None)
    if isinstance(dump, Dump):
        for part in dump.listed_parts(name):
            pf = dump.open_part(name, part.file, part.sha256)
            for batch in pf.iter_batches(batch_size=10_000):
                yield part.file, batch
        return
    for p in connector.partitions(name, 1):
        for batch, _ in scan_resuming(connector, name, p, schema=schema, batch_rows=5_000):
            yield None, batch


def _vector_matrix(col: pa.Array, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(matrix of right-length rows, mask of rows whose length is wrong or null)."""
    if pa.types.is_fixed_size_list(col.type) and col.type.list_size == dim:
        bad = col.is_null().to_numpy(zero_copy_only=False)
        filled = col.fill_null(pa.scalar([0.0] * dim, col.type)) if bad.any() else col
        return np.asarray(filled.flatten().to_numpy(zero_copy_only=False), np.float64).reshape(
            -1, dim
        ), bad
    lengths = pc.list_value_length(col).fill_null(-1).to_numpy(zero_copy_only=False)
    bad = lengths != dim
    m = np.zeros((len(col), dim))
    good = np.flatnonzero(~bad)
    if len(good):
        m[good] = np.asarray(
            pc.take(col, pa.array(good)).flatten().to_numpy(zero_copy_only=False), np.float64
        ).reshape(-1, dim)
    return m, bad


def check_collection(connector: Connector, name: str) -> CheckReport:
    """Scan a collection once and report every defect with the records it affects."""
    schema = connector.describe(name)
    report = CheckReport(collection=name)
    seen: set[Any] = set()
    norms: dict[str, list[float]] = {v.name: [np.inf, -np.inf, 0.0, 0.0] for v in schema.vectors}
    checked_parts: set[str] = set()
    try:
        for file, batch in _reading(_raw_batches(connector, name, schema)):
            if file is not None and file not in checked_parts:
                checked_parts.add(file)
                for code, column, problem in layout_problems(batch.schema, schema, strict=True):
                    report.finding(code, "error", column, f"part {name}/{file} {problem}").add([])
            _check_batch(batch, schema, report, seen, norms)
    except DataError as exc:
        report.finding("unreadable", "error", None, exc.message).add([])
    for vname, (lo, hi, total, unit) in norms.items():
        if report.rows:
            report.norms[vname] = {
                "min": float(lo),
                "max": float(hi),
                "mean": float(total / report.rows),
                "unit_fraction": float(unit / report.rows),
            }
    return report


def _reading(
    it: Iterator[tuple[str | None, pa.RecordBatch]],
) -> Iterator[tuple[str | None, pa.RecordBatch]]:
    """Iterate, turning Arrow read errors into DataError (a truncated part, say)."""
    try:
        yield from it
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read data: {exc}") from None


def _check_batch(
    batch: pa.RecordBatch,
    schema: CollectionSchema,
    report: CheckReport,
    seen: set[Any],
    norms: dict[str, list[float]],
) -> None:
    bad = invalid_rows(batch)
    if bad:
        # Report, then check the rest: Python cannot even decode these values.
        for row, column in bad:
            rid = row_id(batch, row)
            report.finding(
                "invalid_value", "error", column, "value is not valid (e.g. non-UTF-8 text)"
            ).add([rid if rid is not None else f"row {report.rows + row}"])
        report.rows += len(bad)
        keep = np.ones(batch.num_rows, dtype=bool)
        keep[[r for r, _ in bad]] = False
        batch = batch.filter(pa.array(keep))
    names = batch.schema.names
    ids = batch.column("id").to_pylist() if "id" in names else [None] * batch.num_rows
    report.rows += batch.num_rows
    if "id" in names:
        _check_id_type(batch.column("id"), schema, ids, report)
    missing = [i for i, x in enumerate(ids) if x is None or x == ""]
    if missing:
        report.finding("missing_id", "error", "id", "record has no id").add(
            [f"row {report.rows - batch.num_rows + i}" for i in missing]
        )
    dups = []
    for x in ids:
        if x is None:
            continue
        if x in seen:
            dups.append(x)
        seen.add(x)
    if dups:
        report.finding("duplicate_id", "error", "id", "id appears more than once").add(dups)
    for v in schema.vectors:
        if v.name not in names:
            report.finding("missing_vector_column", "error", v.name, "vector column absent").add([])
            continue
        col = batch.column(v.name)
        null = col.is_null().to_numpy(zero_copy_only=False)
        if null.any():
            report.finding("null_vector", "error", v.name, "vector is null").add(
                [ids[i] for i in np.flatnonzero(null)]
            )
        m, wrong = _vector_matrix(col, v.dim)  # null rows count as wrong: left out below
        _check_precision(col, m, ~wrong, v.name, ids, report)
        if (wrong & ~null).any():
            report.finding("wrong_dimension", "error", v.name, f"vector is not {v.dim}-d").add(
                [ids[i] for i in np.flatnonzero(wrong & ~null)]
            )
        finite = np.isfinite(m).all(axis=1)
        if (~finite & ~wrong).any():
            report.finding("non_finite", "error", v.name, "vector contains NaN or Inf").add(
                [ids[i] for i in np.flatnonzero(~finite & ~wrong)]
            )
        ok = finite & ~wrong
        n = np.linalg.norm(np.where(ok[:, None], m, 0.0), axis=1)
        zero = ok & (n == 0)
        if zero.any():
            sev = "error" if v.metric is Metric.COSINE else "warning"
            report.finding(
                "zero_vector", sev, v.name, f"zero vector (undefined under {v.metric.value})"
            ).add([ids[i] for i in np.flatnonzero(zero)])
        if ok.any():
            st = norms[v.name]
            st[0], st[1] = min(st[0], n[ok].min()), max(st[1], n[ok].max())
            st[2] += float(n[ok].sum())
            st[3] += float((np.abs(n[ok] - 1) < 1e-3).sum())
    _check_metadata(batch, schema, ids, report)


def _check_precision(
    col: pa.Array, m: np.ndarray, ok: np.ndarray, field: str, ids: list[Any], report: CheckReport
) -> None:
    """Vectors stored wider than float32 whose values float32 would change (import refuses
    them rather than round silently); ``m`` holds the values of the rows in ``ok``."""
    value_type = col.type.value_type
    if value_type.equals(pa.float32()) or not pa.types.is_floating(value_type):
        return
    narrowed = m.astype(np.float32).astype(np.float64)
    same = (narrowed == m) | (np.isnan(narrowed) & np.isnan(m))
    bad = np.flatnonzero(ok & ~same.all(axis=1))
    if len(bad):
        report.finding(
            "vector_precision",
            "error",
            field,
            f"vector is {_FLOAT_NAMES.get(str(value_type), value_type)}, not exactly float32",
        ).add([ids[i] for i in bad])


def _reads_back(col: pa.Array, want: pa.DataType) -> bool:
    """Whether ``col`` casts to ``want`` and back to the same values ("007" does not)."""
    try:
        return bool(col.cast(want, safe=True).cast(col.type, safe=True).equals(col))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return False


def _check_id_type(
    col: pa.Array, schema: CollectionSchema, ids: list[Any], report: CheckReport
) -> None:
    """Ids that cannot be read as the schema's id type exactly ("four" or "007" among int
    ids)."""
    want = schema.id_arrow_type()
    if col.type.equals(want) or _reads_back(col, want):
        return
    bad = [rid for i, rid in enumerate(ids) if not _reads_back(col.slice(i, 1), want)]
    report.finding("id_type", "error", "id", f"id is not a valid {schema.id_type.value} id").add(
        bad
    )


def _check_metadata(
    batch: pa.RecordBatch, schema: CollectionSchema, ids: list[Any], report: CheckReport
) -> None:
    names = batch.schema.names
    if names.count("metadata") == 1 and pa.types.is_struct(batch.schema.field("metadata").type):
        struct = batch.column(names.index("metadata"))
        children = dict(zip([c.name for c in struct.type], struct.flatten(), strict=False))
        for f in schema.metadata:
            child = children.get(f.name)
            if child is not None and not widens(child.type, f.arrow_type):
                _check_child(child, f, ids, report)
    if "metadata_extra" not in names:
        return
    for rid, raw in zip(ids, batch.column("metadata_extra").to_pylist(), strict=True):
        if not raw:
            continue
        for key, value in json.loads(raw).items():
            declared = schema.metadata_field(key)
            if declared is None:
                report.finding("undeclared_field", "warning", key, "field not in the schema").add(
                    [rid]
                )
            elif not value_fits(value, declared):
                kind = type(value).__name__
                report.finding(
                    "type_drift", "error", key, f"values of type {kind} in a {declared.type} field"
                ).add([rid])


def _check_child(child: pa.Array, f: MetadataField, ids: list[Any], report: CheckReport) -> None:
    """A metadata column stored as another type than its field's: records whose values do
    not fit the field (import keeps them unchanged in ``metadata_extra``), or a type with no
    portable form at all (import refuses it)."""
    if not is_jsonable(child.type):
        report.finding(
            "unsupported_type",
            "error",
            f.name,
            f"column is {child.type}, which has no portable type (schema says {f.type})",
        ).add([])
        return
    decode = f.type == "json" and is_text(child.type)
    bad = []
    for rid, value in zip(ids, child.to_pylist(), strict=True):
        if value is None:
            continue
        try:
            fits = value_fits(json.loads(value) if decode else value, f)
        except json.JSONDecodeError:
            fits = False
        if not fits:
            bad.append(rid)
    if bad:
        report.finding(
            "type_drift", "error", f.name, f"column is {child.type}, schema says {f.type}"
        ).add(bad)
