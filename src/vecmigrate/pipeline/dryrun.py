"""``plan``: a dry run. Every mapping decision, checked against a sample of the data, and
estimates of rows, bytes, duration and target storage from measured scan and write rates."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors import connect, connector_class, scheme_info
from vecmigrate.connectors.base import Connector
from vecmigrate.mapping import Mapping, MappingSpec, VectorSpec, build_mapping, reading_schema
from vecmigrate.mapping.transform import UNIT_TOLERANCE
from vecmigrate.model import Capabilities, CollectionSchema
from vecmigrate.pipeline.fanout import collection_name, fan_out_spec
from vecmigrate.pipeline.selection import Selection, select_reading
from vecmigrate.records import conform, metadata_rows, vectors_to_numpy
from vecmigrate.uri import ConnectionURI


def _sample(
    source: Connector, name: str, rows: int, schema: CollectionSchema | None = None
) -> tuple[pa.Table, float]:
    schema = schema or source.describe(name)
    part = source.partitions(name, 1)[0]
    t0 = time.perf_counter()
    batches = []
    got = 0
    for batch, _ in source.scan(name, part, schema=schema, batch_rows=min(rows, 2000)):
        batches.append(batch)
        got += batch.num_rows
        if got >= rows:
            break
    seconds = time.perf_counter() - t0
    return pa.Table.from_batches(batches, schema=schema.arrow_schema()).slice(0, rows), seconds


def metadata_sample(
    source: Connector, name: str, spec: MappingSpec | None, rows: int = 2000
) -> list[dict[str, Any]] | None:
    """Metadata of the first ``rows`` records when the mapping infers types from data
    (flatten without declared types); None otherwise."""
    if spec is None or spec.flatten is None or spec.flatten.types:
        return None
    schema = source.describe(name)
    table, _ = _sample(source, name, rows)
    return [m for b in table.to_batches() for m in metadata_rows(b, schema)]


@dataclass(frozen=True)
class AbsentTarget:
    """A target whose storage does not exist yet: planned from its engine's declared
    capabilities, without creating anything."""

    uri: ConnectionURI
    engine: str
    capabilities: Capabilities


@contextmanager
def open_plan_target(uri: str, measure_writes: bool) -> Iterator[Connector | AbsentTarget]:
    """The target of a plan, opened read-only (or stood in for when it does not exist);
    opened for writing only when ``measure_writes`` asks to load a scratch collection."""
    parsed = ConnectionURI.parse(uri)
    local = scheme_info(parsed.scheme).storage == "path"
    if not measure_writes and local and not parsed.local_path.exists():
        cls = connector_class(parsed.scheme)
        yield AbsentTarget(parsed, cls.schemes[0], cls.capabilities)
        return
    with connect(parsed, read_only=not measure_writes) as conn:
        yield conn


def plan_migration(
    source: Connector,
    target: Connector | AbsentTarget,
    name: str,
    *,
    spec: MappingSpec | None = None,
    target_name: str | None = None,
    sample_rows: int = 2000,
    measure_write: bool = False,
) -> dict[str, Any]:
    """The plan as JSON-able data; SchemaMismatchError when a decision is missing.
    ``target_collections``: the collections a ``namespaces: {to: collections}`` copy
    creates up front, one per declared namespace (empty otherwise). Reads only, unless
    ``measure_write`` loads the sample into a scratch collection on the target."""
    schema = reading_schema(source.describe(name), spec)
    fan = fan_out_spec(spec)
    mapping = build_mapping(
        schema,
        target.capabilities,
        spec,
        name=target_name,
        source_engine=source.engine,
        source_uri=str(source.uri),
        sample=metadata_sample(source, name, spec, sample_rows),
        fan_out=fan is not None,
    )
    fanned = [
        {"namespace": ns, "name": collection_name(fan.pattern, mapping.target.name, ns)}
        for ns in (schema.namespaces or ())
        if fan
    ]
    total = source.count(name)
    sample, scan_seconds = _sample(source, name, sample_rows, schema)
    n = sample.num_rows
    checks = []
    for v in schema.vectors:
        norms = (
            np.linalg.norm(vectors_to_numpy(sample.column(v.name)), axis=1) if n else np.zeros(0)
        )
        unit = float(np.mean(np.abs(norms - 1) <= UNIT_TOLERANCE)) if n else 0.0
        checks.append(
            {
                "vector": v.name,
                "sampled": n,
                "unit_length_fraction": round(unit, 4),
                "norm_min": float(norms.min()) if n else None,
                "norm_max": float(norms.max()) if n else None,
                "unit_required": v.name in mapping.unit_required,
            }
        )
    refused = 0
    mapped_bytes = 0
    write_seconds = None
    if n:
        batch = sample.combine_chunks().to_batches()[0]
        mapped, refusals = mapping.apply(batch)
        refused = len({r.row for r in refusals})
        converted = conform(mapped, mapping.target)
        mapped_bytes = converted.nbytes
        if measure_write and isinstance(target, Connector):
            write_seconds = _measure_write(target, mapping.target, converted)
    per_row = mapped_bytes / max(1, n - refused)
    scan_rate = n / scan_seconds if scan_seconds > 0 else None
    write_rate = (n - refused) / write_seconds if write_seconds else None
    rates = [r for r in (scan_rate, write_rate) if r]
    errors = [
        f"{c['vector']}: only {c['unit_length_fraction']:.1%} of sampled vectors are unit length"
        for c in checks
        if c["unit_required"]
        and c["unit_length_fraction"] < 1.0
        and mapping.spec.on_invalid == "fail"
    ]
    return {
        "source": {
            "uri": str(source.uri),
            "engine": source.engine,
            "schema": schema.model_dump(mode="json"),
        },
        "target": {
            "uri": str(target.uri),
            "engine": target.engine,
            "schema": mapping.target.model_dump(mode="json"),
        },
        "decisions": mapping.decisions,
        "warnings": mapping.warnings,
        "target_collections": fanned,
        "errors": errors,
        "checks": checks,
        "sample": {"rows": n, "refused": refused},
        "estimate": {
            "rows": total,
            "refused_rows": round(total * refused / n) if n else 0,
            "bytes_per_row": round(per_row),
            "bytes": round(per_row * total),
            "scan_rows_per_second": round(scan_rate) if scan_rate else None,
            "write_rows_per_second": round(write_rate) if write_rate else None,
            "seconds": round(total / min(rates), 1) if rates else None,
            "target_storage_bytes": round(per_row * total),
        },
        "mapping": _explicit(mapping).model_dump(mode="json", exclude_none=True, by_alias=True),
    }


def _explicit(mapping: Mapping) -> MappingSpec:
    """The spec with every vector decision spelled out, for a reviewer to edit."""
    vectors = dict(mapping.spec.vectors)
    for src, tgt in zip(mapping.source.vectors, mapping.target.vectors, strict=True):
        given = vectors.get(src.name) or VectorSpec()
        vectors[src.name] = given.model_copy(update={"metric": tgt.metric, "index": tgt.index})
    return mapping.spec.model_copy(
        update={"vectors": vectors, "target_collection": mapping.target.name}
    )


def _measure_write(target: Connector, schema: Any, batch: pa.RecordBatch) -> float | None:
    """Write the sample into a scratch collection on the target, timed, then drop it.
    The scratch name is reserved: one left by a plan that was killed is dropped first."""
    if not target.capabilities.mutable or batch.num_rows == 0:
        return None
    scratch = schema.replace(name=f"{schema.name}__vecmigrate_plan")
    target.drop(scratch.name)
    try:
        target.create(scratch, if_exists="fail")
        t0 = time.perf_counter()
        for start in range(0, batch.num_rows, target.capabilities.max_batch_rows):
            target.upsert(scratch.name, batch.slice(start, target.capabilities.max_batch_rows))
        return time.perf_counter() - t0
    finally:
        target.drop(scratch.name)


def dry_run_copy(
    source: Connector,
    target: Connector | AbsentTarget,
    collection: str,
    *,
    target_collection: str | None = None,
    spec: MappingSpec | None = None,
    if_exists: str = "fail",
    job: str | None = None,
    selection: Selection | None = None,
) -> dict[str, Any]:
    """What ``copy`` would do, without doing it: the target collection(s) it would create
    (or reuse, or replace and how many records that drops), the records it would write
    (those ``selection`` takes: ``selection`` says which) and the mapping decisions;
    ``error`` names what would stop it (None: nothing). Reads only: no job file, no
    target collection, no dead-letter directory. An invalid selection: ConfigError."""
    tgt = target_collection or (spec.target_collection if spec else None) or collection
    # Validates the selection first; reads rounded vectors as the copy would.
    selected, schema = select_reading(source, collection, selection, spec)
    fan = fan_out_spec(spec)
    mapping = build_mapping(
        schema,
        target.capabilities,
        spec,
        name=tgt,
        source_engine=source.engine,
        source_uri=str(source.uri),
        sample=metadata_sample(source, collection, spec),
        fan_out=fan is not None,
    )
    names = (
        [collection_name(fan.pattern, mapping.target.name, ns) for ns in schema.namespaces or ()]
        if fan
        else [mapping.target.name]
    )
    existing = set(target.list_collections()) if isinstance(target, Connector) else set()
    targets: list[dict[str, Any]] = []
    error = None
    for name in names:
        exists = name in existing
        rows = target.count(name) if exists and isinstance(target, Connector) else 0
        action = if_exists if exists else "create"
        if exists and if_exists == "fail":
            error = f"{name!r} already exists on {target.uri} (--if-exists fail)"
        targets.append(
            {
                "name": name,
                "exists": exists,
                "action": action,
                "rows_now": rows,
                "rows_dropped": rows if action == "replace" else 0,
            }
        )
    return {
        "collection": collection,
        "target_collection": mapping.target.name,
        "rows": selected.count(collection),
        "selection": None if selection is None or selection.empty else selection.to_json(),
        "selection_text": None if selection is None or selection.empty else selection.describe(),
        "target_collections": targets,
        "schema": mapping.target.model_dump(mode="json"),
        "decisions": mapping.decisions,
        "warnings": mapping.warnings,
        "job": job,
        "error": error,
    }
