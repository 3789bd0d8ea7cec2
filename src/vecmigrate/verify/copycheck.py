"""The checks ``copy`` runs after copying (``verify=True``), for CLI and Python users alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from vecmigrate.connectors.base import Connector
from vecmigrate.mapping import MappingSpec, build_mapping
from vecmigrate.pipeline.fanout import fan_out_spec
from vecmigrate.pipeline.options import CopyResult
from vecmigrate.verify.diff import diff_collections
from vecmigrate.verify.split import verify_split


@dataclass(frozen=True)
class Check:
    """One check after a copy: its name, whether it passed, and what it compared."""

    name: str
    passed: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def check_copy(
    src: Connector,
    dst: Connector,
    collection: str,
    result: CopyResult,
    spec: MappingSpec | None,
) -> list[Check]:
    """What ``copy`` checks after copying: row counts (source minus refused = target)
    and content digests (the target equals what the mapping makes of the source)."""
    if spec is not None and fan_out_spec(spec):  # one check per target collection
        return [Check(**c) for c in verify_split(src, dst, collection, result, spec)]
    expected = src.count(collection) - result.dead_letters
    got = dst.count(result.target_collection)
    checks = [
        Check(
            "row count",
            got == expected,
            f"source {expected + result.dead_letters:,} - refused "
            f"{result.dead_letters:,} = {expected:,}; target {got:,}",
        )
    ]
    tol = max(src.capabilities.vector_tolerance, dst.capabilities.vector_tolerance)
    # A mapped copy is compared with what the mapping makes of the source.
    mapping = (
        build_mapping(
            src.describe(collection), dst.capabilities, spec, name=result.target_collection
        )
        if spec
        else None
    )
    transform = mapping if mapping and not mapping.is_identity else None
    diff = diff_collections(
        src, dst, collection, target_name=result.target_collection, transform=transform
    )
    detail = f"{diff.source_digest} vs {diff.target_digest}; vectors within {tol:g}"
    passed = diff.equal
    if not diff.equal and only_refused(diff.missing, diff, result, transform is None):
        # The refusals are counted (and fail the command) already; the rest is identical.
        passed = True
        detail += f"; identical but for the {len(diff.missing)} refused record(s)"
    elif not diff.equal:
        named = [*diff.missing[:3], *diff.extra[:3], *(c.id for c in diff.changed[:3])]
        named += [d.id for d in diff.duplicates[:3]]
        detail += (
            f"; source {diff.source_count:,} records, target {diff.target_count:,}: "
            f"{len(diff.missing)} missing, {len(diff.extra)} extra, "
            f"{len(diff.changed)} changed, {len(diff.duplicates)} duplicate ids"
            f" (e.g. {', '.join(named)}); run vecmigrate diff"
        )
    checks.append(Check("content digest", passed, detail))
    return checks


def only_refused(missing: list[str], diff: Any, result: CopyResult, same_ids: bool) -> bool:
    """Whether the only difference is the dead-lettered records (ids kept by the copy)."""
    if not same_ids or diff.extra or diff.changed or diff.duplicates or not result.dead_letter_dir:
        return False
    if diff.target_count != diff.source_count - len(missing):  # something else is off too
        return False
    folder = Path(result.dead_letter_dir)
    if not folder.is_dir():
        return False
    try:
        ids = pq.read_table(folder, columns=["id"]).column("id").to_pylist()
    except (OSError, ValueError):  # pyarrow's errors derive from these
        return False
    return set(missing) == {str(i) for i in ids}
