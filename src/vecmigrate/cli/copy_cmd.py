"""``vecmigrate copy``, ``export`` and ``import``: run a copy, verify it, report it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vecmigrate import api
from vecmigrate.api import CopyReport
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
    TargetCollectionOpt,
    VerboseOpt,
    WorkersOpt,
    YesOpt,
    collections_of,
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
from vecmigrate.connectors import connect
from vecmigrate.errors import ReplaceNotConfirmed
from vecmigrate.mapping import MappingSpec
from vecmigrate.pipeline import CopyOptions


def _run_copy(
    source: str,
    target: str,
    collection: str,
    target_collection: str | None,
    options: CopyOptions,
    json_out: bool,
    verify: bool,
) -> dict[str, Any]:
    def run(opts: CopyOptions) -> CopyReport:
        with progress_bar(not json_out, collection) as (advance, set_total):
            return api.copy(
                source,
                target,
                collection,
                target_collection=target_collection,
                options=opts,
                verify=verify,
                progress=advance,
                on_plan=set_total,
            )

    try:
        return run(options).to_json()
    except ReplaceNotConfirmed as exc:
        if json_out or not sys.stdin.isatty() or not typer.confirm(f"{exc.message}. Drop it?"):
            raise
        return run(api.confirmed(options)).to_json()


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
    target_collection: TargetCollectionOpt = None,
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
    with user_errors(verbose):
        target = api.export_uri(output, encrypt_key)
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
    target_collection: TargetCollectionOpt = None,
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
        source=api.dump_uri(dump),
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
