"""The checks ``copy`` runs after copying (``verify=True``), for CLI and Python users alike.

Two ways to prove the content, both after the row count:

* **full** (``mode="full"``, ``--verify full``): both sides read back in full, concurrently,
  and digested (``verify.diff``); differences are named record by record.
* **sampled** (the default where the copy recorded what the target acknowledged, see
  ``verify.acknowledged``): the source is read and digested once more, and its digest must equal
  the digest of the batches the target acknowledged (the writer's batches, as conformed:
  nothing was lost or changed between the scan and the target); a random sample of the
  acknowledged records is read back from the target and compared exactly (the target
  stores what it acknowledged). The target is not read in full. Anything short of equal
  falls back to the full check, so a failure names records just the same; so do copies
  that did not record every acknowledged batch (resumed, remote executors, reused
  non-empty targets, fan-out).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from vecmigrate.connectors.base import Connector
from vecmigrate.mapping import MappingSpec, build_mapping
from vecmigrate.model import CollectionSchema, IdType
from vecmigrate.pipeline.fanout import fan_out_spec
from vecmigrate.pipeline.options import CopyResult
from vecmigrate.pipeline.selection import Selection, select_reading
from vecmigrate.records import vectors_to_numpy
from vecmigrate.verify.acknowledged import Acknowledged
from vecmigrate.verify.diff import diff_collections, vectors_differ
from vecmigrate.verify.digest import CollectionDigest, DigestBuilder, collection_digest
from vecmigrate.verify.split import verify_split

VerifyMode = Literal["sampled", "full", "live"]
VERIFY_MODES: tuple[VerifyMode, ...] = ("sampled", "full", "live")
_FETCH = 1000  # ids per fetch of the read-back


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
    *,
    mode: VerifyMode = "sampled",
    acknowledged: Acknowledged | None = None,
    selection: Selection | None = None,
) -> list[Check]:
    """What ``copy`` checks after copying: row counts (source minus refused = target)
    and content digests (the target equals what the mapping makes of the source). With
    ``acknowledged`` (recorded by ``acknowledging`` during the copy) and ``mode="sampled"``
    the target's digest is what it acknowledged plus an exact read-back of a sample;
    ``mode="full"`` (or nothing recorded) reads both sides back in full; ``mode="live"``
    (the application writes to the source meanwhile) judges the target against what it
    acknowledged, not against the moving source. With a ``selection`` the source is the
    records it selects, not the whole collection."""
    # Judged against the selected records only: the view counts, scans and fetches them.
    src, _ = select_reading(src, collection, selection, spec)
    if mode == "live":
        return _live_checks(src, dst, collection, result, acknowledged)
    if spec is not None and fan_out_spec(spec):  # one check per target collection
        return [Check(**c) for c in verify_split(src, dst, collection, result, spec)]
    expected = src.count(collection) - result.dead_letters
    got = dst.count(result.target_collection)
    side = "source" if selection is None or selection.empty else "selected"
    checks = [
        Check(
            "row count",
            got == expected,
            f"{side} {expected + result.dead_letters:,} - refused "
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
    sampled = None
    if mode == "sampled" and acknowledged is not None and got == expected:
        sampled = _sampled_check(src, dst, collection, result, transform, tol, acknowledged)
    checks.append(sampled or _full_check(src, dst, collection, result, transform, tol))
    return checks


def _full_check(
    src: Connector,
    dst: Connector,
    collection: str,
    result: CopyResult,
    transform: Any,
    tol: float,
    note: str = "",
) -> Check:
    """Both sides read back in full and compared record by record where they differ."""
    diff = diff_collections(
        src, dst, collection, target_name=result.target_collection, transform=transform
    )
    detail = f"{diff.source_digest} vs {diff.target_digest}; vectors within {tol:g}{note}"
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
    return Check("content digest", passed, detail)


def _sampled_check(
    src: Connector,
    dst: Connector,
    collection: str,
    result: CopyResult,
    transform: Any,
    tol: float,
    ack: Acknowledged,
) -> Check | None:
    """The source's digest against what the target acknowledged, plus an exact read-back
    of the sampled acknowledged records; None when that cannot settle it (then the full
    check runs): anything recorded incompletely, or any difference at all."""
    name = result.target_collection
    acked = ack.digest(name)
    if (
        acked is None
        or not ack.fresh
        or result.resumed
        or result.dead_letters
        or acked.count != result.rows_written
        or acked.grid_step != (tol if acked.projected else 0.0)
    ):
        return None
    sample, layout = ack.sample(name)
    if sample is None and ack.sample_size:
        return None
    schema = src.describe(collection)
    stored = None if transform else _stored_digest(src, collection, acked)
    with ThreadPoolExecutor(1) as pool:  # both sides at once
        back = pool.submit(read_back, dst, name, sample, layout, tol)
        want = stored or collection_digest(
            src,
            collection,
            schema=schema,
            transform=transform,
            tolerance=acked.grid_step,
            projections=acked.projected,
        )
        problems = back.result()
    if problems or not want.compare(acked, tolerance=tol).equal:
        return None
    size = sample.num_rows if sample is not None else 0
    return Check(
        "content digest",
        True,
        f"{want.content_hash} ({'the dump manifest' if stored else 'the source read again'})"
        f" vs {acked.content_hash} acknowledged by the target; "
        f"{size:,} sampled records read back identical; vectors within {tol:g} "
        "(--verify full reads the whole target back)",
    )


def _stored_digest(
    src: Connector, collection: str, acked: CollectionDigest
) -> CollectionDigest | None:
    """The source's own digest of ``collection`` (``Connector.stored_digest``) when it
    was hashed as ``acked`` was (version, grid step, projections): compared as it is, the
    source need not be read again."""
    data = src.stored_digest(collection)
    if data is None:
        return None
    try:
        stored = CollectionDigest.from_json(data)
    except (KeyError, TypeError, ValueError):
        return None  # an older or hand-made manifest: the source is read instead
    if (stored.version, stored.grid_step, stored.projected) != (
        acked.version,
        acked.grid_step,
        acked.projected,
    ):
        return None
    return stored


def read_back(
    dst: Connector,
    name: str,
    sample: pa.Table | None,
    layout: CollectionSchema | None,
    tol: float,
) -> list[str]:
    """Ids of ``sample`` (acknowledged records, in ``layout``) that the target does not
    hold as sent: missing, other content, or a vector off by more than ``tol``."""
    if sample is None or layout is None or not sample.num_rows:
        return []
    schema = dst.describe(name)
    sent = DigestBuilder(layout).signatures(sample.combine_chunks().to_batches()[0])
    wanted = dict(zip(sent.ids, sent.hashes, strict=True))
    raw_ids = sample.column("id").to_pylist()
    typed: list[Any] = [int(i) for i in raw_ids] if schema.id_type is IdType.INT else raw_ids
    vectors = {v.name: vectors_to_numpy(sample.column(v.name)) for v in layout.vectors}
    row_of = {rid: i for i, rid in enumerate(sent.ids)}
    builder = DigestBuilder(schema)
    problems: list[str] = []
    seen: set[str] = set()
    for start in range(0, len(typed), _FETCH):
        batch = dst.fetch(name, typed[start : start + _FETCH], schema=schema)
        if not batch.num_rows:
            continue
        sig = builder.signatures(batch)
        for i, rid in enumerate(sig.ids):
            seen.add(rid)
            if rid not in wanted or sig.hashes[i] != wanted[rid]:
                problems.append(rid)
                continue
        for v in layout.vectors:
            if v.name not in batch.schema.names:
                problems.extend(sig.ids)
                continue
            got = vectors_to_numpy(batch.column(v.name))
            for i, rid in enumerate(sig.ids):
                if rid in row_of and vectors_differ(
                    vectors[v.name][row_of[rid]], got[i], v.metric, tol
                ):
                    problems.append(rid)
    problems += [rid for rid in wanted if rid not in seen]
    return sorted(set(problems))


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


def _live_checks(
    src: Connector,
    dst: Connector,
    collection: str,
    result: CopyResult,
    ack: Acknowledged | None,
) -> list[Check]:
    """A copy taken while the application writes to the source: the source moves on, so
    the target is judged against what the copy read and the target acknowledged (its
    whole content read back and digested); how far the source moved since is reported,
    for dual write and ``cutover reconcile`` to bring over."""
    name = result.target_collection
    acked = ack.digest(name) if ack is not None else None
    now = src.count(collection)
    moved = Check(
        "source since the scan",
        True,
        f"the source holds {now:,} records now, the copy read {result.rows_read:,}: writes "
        "made meanwhile reach the target through dual write and cutover reconcile",
    )
    if acked is None or ack is None or not ack.fresh or result.resumed:
        if result.resumed:
            why = "it was resumed"
        elif ack is not None and not ack.fresh:
            why = "it wrote into an existing collection (--if-exists reuse)"
        else:
            why = "the target's acknowledgements were not recorded (a remote executor)"
        return [
            Check(
                "content digest",
                False,
                f"cannot judge a live copy of {collection!r}: {why}, so what the target holds "
                "is not only what this run acknowledged; run vecmigrate verify --live",
            ),
            moved,
        ]
    tol = max(src.capabilities.vector_tolerance, dst.capabilities.vector_tolerance)
    got = collection_digest(dst, name, tolerance=tol)
    cmp = got.compare(acked, tolerance=tol)
    # Without the source to re-read, a bucket whose vectors only moved on the tolerance
    # grid (sums within the engines' tolerance: noise at a cell boundary) cannot be
    # settled record by record; it is named, not failed.
    same = not cmp.differing_buckets
    noise = (
        f"; {len(cmp.unsettled_buckets)} bucket(s) moved on the {tol:g} grid only"
        if same and cmp.unsettled_buckets
        else ""
    )
    return [
        Check(
            "row count",
            got.count == acked.count,
            f"acknowledged {acked.count:,}; target {got.count:,}",
        ),
        Check(
            "content digest",
            same,
            f"{got.content_hash} read back vs {acked.content_hash} acknowledged by the "
            f"target; vectors within {tol:g}{noise}",
        ),
        moved,
    ]
