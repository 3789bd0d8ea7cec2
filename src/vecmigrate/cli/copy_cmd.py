"""``vecmigrate copy``, ``export`` and ``import``: run a copy, verify it, report it."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import pyarrow.parquet as pq
import typer

from vecmigrate.cli.options import (
    BatchOpt,
    CollectionOpt,
    ExecutorOpt,
    IfExistsOpt,
    JobOpt,
    JsonOpt,
    MapOpt,
    RestartOpt,
    ResumeOpt,
    VerboseOpt,
    WorkersOpt,
    YesOpt,
    collections_of,
    dump_uri,
)
from vecmigrate.cli.output import (
    EXIT_FAILED,
    console,
    emit_json,
    fail,
    progress_bar,
    setup_logging,
    user_errors,
)
from vecmigrate.connectors import Connector, connect
from vecmigrate.errors import ReplaceNotConfirmed
from vecmigrate.mapping import MappingSpec, build_mapping
from vecmigrate.pipeline import CopyOptions, CopyResult, copy_collection
from vecmigrate.pipeline.fanout import fan_out_spec
from vecmigrate.uri import path_uri
from vecmigrate.verify.diff import diff_collections
from vecmigrate.verify.split import verify_split


def _run_copy(
    source: str,
    target: str,
    collection: str,
    target_collection: str | None,
    options: CopyOptions,
    json_out: bool,
    verify: bool,
) -> dict[str, Any]:
    with connect(source, read_only=True) as src, connect(target) as dst:
        try:
            result = _copy_with_progress(src, dst, collection, target_collection, options, json_out)
        except ReplaceNotConfirmed as exc:
            if json_out or not sys.stdin.isatty() or not typer.confirm(f"{exc.message}. Drop it?"):
                raise
            options = replace(options, replace_confirmed=True)
            result = _copy_with_progress(src, dst, collection, target_collection, options, json_out)
        out = result.to_json()
        checks = _verify_copy(src, dst, collection, result, options.mapping) if verify else []
        out["checks"] = checks
        out["verified"] = bool(checks) and all(c["passed"] for c in checks)
        return out


def _copy_with_progress(
    src: Connector,
    dst: Connector,
    collection: str,
    target_collection: str | None,
    options: CopyOptions,
    json_out: bool,
) -> CopyResult:
    with progress_bar(not json_out, f"{collection}") as (advance, set_total):
        return copy_collection(
            src,
            dst,
            collection,
            target_collection=target_collection,
            options=options,
            progress=advance,
            on_plan=set_total,
        )


def _verify_copy(
    src: Connector,
    dst: Connector,
    collection: str,
    result: CopyResult,
    spec: MappingSpec | None,
) -> list[dict[str, Any]]:
    if spec is not None and fan_out_spec(spec):  # one check per target collection
        return verify_split(src, dst, collection, result, spec)
    expected = src.count(collection) - result.dead_letters
    got = dst.count(result.target_collection)
    checks = [
        {
            "name": "row count",
            "passed": got == expected,
            "detail": f"source {expected + result.dead_letters:,} - refused "
            f"{result.dead_letters:,} = {expected:,}; target {got:,}",
        }
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
    if not diff.equal and _only_refused(diff.missing, diff, result, transform is None):
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
    checks.append({"name": "content digest", "passed": passed, "detail": detail})
    return checks


def _only_refused(missing: list[str], diff: Any, result: CopyResult, same_ids: bool) -> bool:
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


def _report_copy(results: list[dict[str, Any]], json_out: bool) -> None:
    if json_out:
        emit_json(results[0] if len(results) == 1 else {"collections": results})
    else:
        for r in results:
            console.print(
                f"[bold]{r['collection']}[/] -> {r['target_collection']}: "
                f"{r['rows_written']:,} rows written in {r['seconds']:.1f}s "
                f"({r['rows_per_second']:,.0f} rows/s), {r['dead_letters']} refused, "
                f"{r['retries']} retries{' (resumed)' if r['resumed'] else ''}",
                highlight=False,
            )
            for t in r["target_collections"]:
                console.print(
                    f"  namespace {t['namespace']!r} -> {t['name']}: {t['rows']:,} rows",
                    highlight=False,
                    markup=False,
                )
            if r["dead_letters"]:
                console.print(f"[red]refused records are in {r['dead_letter_dir']}[/]")
            for c in r["checks"]:
                mark = "[green]pass[/]" if c["passed"] else "[red]FAIL[/]"
                console.print(f"  {mark} {c['name']}: {c['detail']}", highlight=False)
    if any(not r["ok"] or (r["checks"] and not r["verified"]) for r in results):
        raise typer.Exit(EXIT_FAILED)


def _options(
    mapping: Path | None,
    workers: int,
    batch_rows: int,
    job: Path | None,
    resume: bool,
    restart: bool,
    if_exists: str,
    executor: str = "local",
    yes: bool = False,
) -> CopyOptions:
    if executor not in ("local", "ray") and not executor.startswith("ray:"):
        fail(f"--executor must be local, ray or ray:ADDRESS, not {executor!r}", code=2)
    if if_exists not in ("fail", "reuse", "replace"):
        fail(f"--if-exists must be fail, reuse or replace, not {if_exists!r}", code=2)
    if resume and restart:
        fail("--resume and --restart exclude each other", code=2)
    return CopyOptions(
        workers=workers,
        executor=executor,
        batch_rows=batch_rows,
        job_path=job,
        resume=resume,
        restart=restart,
        if_exists=if_exists,  # type: ignore[arg-type]
        replace_confirmed=yes,
        mapping=MappingSpec.load(mapping) if mapping else None,
    )


def copy(
    source: Annotated[str, typer.Argument(help="Source URI.")],
    target: Annotated[str, typer.Argument(help="Target URI.")],
    collection: CollectionOpt = None,
    target_collection: Annotated[str | None, typer.Option(help="Name on the target.")] = None,
    mapping: MapOpt = None,
    verify: Annotated[bool, typer.Option(help="Compare counts and content digests after.")] = True,
    workers: WorkersOpt = 2,
    executor: ExecutorOpt = "local",
    batch_rows: BatchOpt = 2000,
    job: JobOpt = None,
    resume: ResumeOpt = False,
    restart: RestartOpt = False,
    if_exists: IfExistsOpt = "fail",
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Stream collections from SOURCE into TARGET: no intermediate files, resumable."""
    setup_logging(verbose)
    with user_errors(verbose):
        opts = _options(
            mapping, workers, batch_rows, job, resume, restart, if_exists, executor, yes
        )
        with connect(source, read_only=True) as conn:
            names = collections_of(conn, collection)
        if target_collection and len(names) > 1:
            fail("--target-collection needs a single --collection", code=2)
        results = [
            _run_copy(source, target, n, target_collection, opts, json_out, verify) for n in names
        ]
    _report_copy(results, json_out)


def export_(
    source: Annotated[str, typer.Argument(help="Source URI.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Dump directory.")],
    collection: CollectionOpt = None,
    workers: WorkersOpt = 2,
    executor: ExecutorOpt = "local",
    batch_rows: BatchOpt = 2000,
    job: JobOpt = None,
    resume: ResumeOpt = False,
    restart: RestartOpt = False,
    if_exists: IfExistsOpt = "fail",
    yes: YesOpt = False,
    encrypt_key: Annotated[
        str | None,
        typer.Option(
            "--encrypt-key",
            help="Encrypt each part with AES-256-GCM; the key (32 bytes, hex or base64) is "
            "read from env:NAME or file:/path, never given literally. Encrypted parts are NOT "
            "readable by pandas/Polars/DuckDB directly: read them back with vecmigrate as "
            "dump:///dir?key=env:NAME.",
        ),
    ] = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Export collections to a portable, checksummed dump (Parquet + schema + manifest)."""
    target = path_uri("dump", output)
    if encrypt_key is not None:
        if not encrypt_key.startswith(("env:", "file:")):
            # Never echo the value: it may be the key itself.
            fail("--encrypt-key takes env:NAME or file:/path, not a key", code=2)
        target += f"?key={quote(encrypt_key, safe=':/')}"
    copy(
        source=source,
        target=target,
        collection=collection,
        workers=workers,
        executor=executor,
        batch_rows=batch_rows,
        job=job,
        resume=resume,
        restart=restart,
        if_exists=if_exists,
        yes=yes,
        json_out=json_out,
        verbose=verbose,
    )


def import_(
    dump: Annotated[
        str,
        typer.Argument(help="Dump directory, or dump:///dir?key=env:NAME when encrypted."),
    ],
    target: Annotated[str, typer.Argument(help="Target URI.")],
    collection: CollectionOpt = None,
    target_collection: Annotated[str | None, typer.Option(help="Name on the target.")] = None,
    mapping: MapOpt = None,
    workers: WorkersOpt = 2,
    executor: ExecutorOpt = "local",
    batch_rows: BatchOpt = 2000,
    job: JobOpt = None,
    resume: ResumeOpt = False,
    restart: RestartOpt = False,
    if_exists: IfExistsOpt = "fail",
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Import a dump: create schema and index on the target, batched idempotent upserts."""
    copy(
        source=dump_uri(dump),
        target=target,
        collection=collection,
        target_collection=target_collection,
        mapping=mapping,
        workers=workers,
        executor=executor,
        batch_rows=batch_rows,
        job=job,
        resume=resume,
        restart=restart,
        if_exists=if_exists,
        yes=yes,
        json_out=json_out,
        verbose=verbose,
    )
