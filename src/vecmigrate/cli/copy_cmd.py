"""``vecmigrate copy``, ``export`` and ``import``: run a copy, verify it, report it."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from vecmigrate.cli.options import (
    BatchOpt,
    CollectionsOpt,
    DryRunOpt,
    ExcludeOpt,
    ExecutorOpt,
    FilterOpt,
    IdsFileOpt,
    IfExists,
    IfExistsOpt,
    IncludeOpt,
    JobOpt,
    JsonOpt,
    LimitOpt,
    MapOpt,
    NoVerifyOpt,
    QuietOpt,
    RestartOpt,
    ResumeOpt,
    StateDirOpt,
    TargetCollectionOpt,
    VerboseOpt,
    VerifyOpt,
    WorkersOpt,
    YesOpt,
    load_mapping,
    mapping_hint,
)
from vecmigrate.cli.output import (
    EXIT_FAILED,
    command,
    emit_json,
    err,
    out,
    progress_bar,
)
from vecmigrate.errors import ConfigError, DataError, ReplaceNotConfirmed
from vecmigrate.uri import redact

if TYPE_CHECKING:
    # Imported where a command runs (they bring pyarrow, numpy and pydantic), so that
    # --help stays fast.
    from vecmigrate import api
    from vecmigrate.api import CopyReport
    from vecmigrate.connectors import Connector
    from vecmigrate.pipeline import CopyOptions
    from vecmigrate.verify.copycheck import VerifyMode


def _run_copy(
    source: str,
    target: str,
    collection: str,
    target_collection: str | None,
    options: CopyOptions,
    json_out: bool,
    verify: bool | VerifyMode,
    state_dir: Path | None = None,
) -> dict[str, Any]:
    from vecmigrate import api

    if state_dir is not None and options.job_path is None:
        job = api.job_path(
            source, target, collection, target_collection, options.mapping, state_dir
        )
        options = replace(options, job_path=job)

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
        asking = not json_out and sys.stdin.isatty() and err().is_terminal
        if not asking or not typer.confirm(f"{exc.message}. Drop it?", err=True):
            raise
        return run(api.confirmed(options)).to_json()


_SUMMED = ("rows_read", "rows_written", "rows_total", "dead_letters", "retries", "partitions")


def copy_json(source: str, target: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The one JSON shape of copy, export and import, for one collection or many: the
    totals, every check and target collection (each naming its collection), and each
    collection's own result under ``collections``."""
    seconds = sum(r["seconds"] for r in results)
    written = sum(r["rows_written"] for r in results)
    return {
        "source": redact(source),
        "target": redact(target),
        "ok": all(r["ok"] for r in results),
        "verified": bool(results) and all(r["verified"] for r in results),
        "resumed": any(r["resumed"] for r in results),
        **{k: sum(r[k] for r in results) for k in _SUMMED},
        "seconds": round(seconds, 3),
        "rows_per_second": round(written / seconds, 1) if seconds > 0 else 0.0,
        "checks": [{**c, "collection": r["collection"]} for r in results for c in r["checks"]],
        "target_collections": [t for r in results for t in r["target_collections"]],
        "decisions": [d for r in results for d in r["decisions"]],
        "warnings": [w for r in results for w in r["warnings"]],
        "collections": results,
    }


def _report_copy(source: str, target: str, results: list[dict[str, Any]], json_out: bool) -> None:
    from vecmigrate.pipeline.selection import describe_selection

    if json_out:
        emit_json(copy_json(source, target, results))
        return
    console = out()
    for r in results:
        console.print(
            f"[bold]{escape(r['collection'])}[/] -> {escape(r['target_collection'])}: "
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
        if r.get("selection"):
            text = describe_selection(r["selection"])
            console.print(f"  selection: {text}", highlight=False, markup=False)
        if r.get("ids_missing"):
            # The same line is in the JSON's warnings; on stderr so that it is seen.
            shown = ", ".join(r["ids_missing_examples"])
            more = " ..." if r["ids_missing"] > len(r["ids_missing_examples"]) else ""
            err().print(
                f"warning: {r['ids_missing']:,} ids of --ids-file are not in "
                f"{r['collection']!r} and were not copied: {shown}{more}",
                highlight=False,
                markup=False,
            )
        if r["dead_letters"]:
            console.print(f"[red]refused records are in {escape(str(r['dead_letter_dir']))}[/]")
        for c in r["checks"]:
            mark = "[green]pass[/]" if c["passed"] else "[red]FAIL[/]"
            console.print(f"  {mark} {escape(c['name'])}: {escape(c['detail'])}", highlight=False)


def _report_dry_run(report: api.DryRunReport, json_out: bool) -> None:
    if json_out:
        emit_json(report.to_json())
        return
    console = out()
    console.print(
        f"dry run: {redact(report.source)} -> {redact(report.target)}; nothing was changed",
        highlight=False,
        markup=False,
    )
    for c in report.collections:
        for t in c["target_collections"]:
            verb = {
                "create": "would create",
                "reuse": "would write into",
                "replace": f"would drop ({t['rows_now']:,} records) and recreate",
                "fail": "exists:",
            }
            console.print(
                f"{c['collection']} -> {t['name']}: {verb[t['action']]} {t['name']!r}, "
                f"{c['rows']:,} records to write",
                highlight=False,
                markup=False,
            )
        if c.get("selection_text"):
            console.print(f"  selection: {c['selection_text']}", highlight=False, markup=False)
        for line in c["decisions"]:
            console.print(f"  decision: {line}", highlight=False, markup=False)
        for line in c["warnings"]:
            console.print(f"  warning: {line}", highlight=False, markup=False)
        if c["error"]:
            console.print(f"  [red]would fail:[/] {escape(c['error'])}", highlight=False)


def _failed(results: list[dict[str, Any]]) -> bool:
    return any(not r["ok"] or (r["checks"] and not r["verified"]) for r in results)


def _options(
    mapping: Path | None,
    workers: int,
    batch_rows: int,
    job: Path | None,
    resume: bool,
    restart: bool,
    if_exists: IfExists,
    executor: str = "local",
    yes: bool = False,
    limit: int | None = None,
    filter_text: str | None = None,
    ids_file: Path | None = None,
) -> CopyOptions:
    from vecmigrate import api
    from vecmigrate.pipeline import CopyOptions

    if executor not in ("local", "ray") and not executor.startswith("ray:"):
        raise ConfigError(
            f"--executor must be local, ray or ray:ADDRESS, not {executor!r}",
            hint="local runs partitions in threads; ray starts a local Ray; ray:HOST:PORT "
            "joins a cluster",
        )
    if resume and restart:
        raise ConfigError(
            "--resume and --restart exclude each other",
            hint="--resume continues the interrupted job; --restart discards it",
        )
    return api.check_copy_options(
        CopyOptions(
            workers=workers,
            executor=executor,
            batch_rows=batch_rows,
            job_path=job,
            resume=resume,
            restart=restart,
            if_exists=if_exists,
            replace_confirmed=yes,
            mapping=load_mapping(mapping),
            selection=api.selection_of(limit=limit, filter=filter_text, ids_file=ids_file),
        )
    )


def _chosen(
    source: str,
    collection: list[str] | None,
    include: list[str] | None,
    exclude: list[str] | None,
    target_collection: str | None,
    options: CopyOptions,
) -> list[str]:
    """The collections to copy, with the selection checked against each one's schema
    before anything is created anywhere."""
    from vecmigrate import api

    with api.opened(source, read_only=True) as conn:
        names = api.select_collections(
            conn, collection or [], include=include or [], exclude=exclude or []
        )
        if len(names) > 1:
            _refuse_undescribable(conn, names)
        if options.selection is not None:
            for name in names:
                options.selection.check(conn.describe(name))
    if target_collection and len(names) > 1:
        raise ConfigError(
            f"--target-collection needs a single --collection ({len(names)} collections "
            f"would be copied: "
            f"{', '.join(names[:10])}{' ...' if len(names) > 10 else ''})",
            hint="pass one -c NAME, or leave --target-collection out to keep each name",
        )
    return names


def _refuse_undescribable(conn: Connector, names: list[str]) -> None:
    """Refuse, before anything is written, a run of several collections of which some
    cannot be described (an empty Chroma collection has no dimension yet), naming each
    with why and the option that leaves them out: not half a run, then an error."""
    problems = {}
    for name in names:
        try:
            conn.describe(name)
        except (ConfigError, DataError) as exc:
            problems[name] = exc.message
    if problems:
        raise ConfigError(
            f"{len(problems)} of the {len(names)} collections cannot be copied: "
            + "; ".join(f"{n}: {why}" for n, why in problems.items()),
            hint="leave them out: " + " ".join(f"--exclude {n}" for n in problems),
        )


def copy(
    source: Annotated[str, typer.Argument(help="Source URI.")],
    target: Annotated[str, typer.Argument(help="Target URI.")],
    collection: CollectionsOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    limit: LimitOpt = None,
    filter_text: FilterOpt = None,
    ids_file: IdsFileOpt = None,
    target_collection: TargetCollectionOpt = None,
    mapping: MapOpt = None,
    verify: VerifyOpt = "sampled",
    no_verify: NoVerifyOpt = False,
    workers: WorkersOpt = 2,
    executor: ExecutorOpt = "local",
    batch_rows: BatchOpt = 2000,
    job: JobOpt = None,
    resume: ResumeOpt = False,
    restart: RestartOpt = False,
    if_exists: IfExistsOpt = "fail",
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    state_dir: StateDirOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Stream collections from SOURCE into TARGET: no intermediate files, resumable."""
    from vecmigrate import api

    hint = mapping_hint() if mapping else None
    with command(verbose=verbose, quiet=quiet, json_out=json_out, config_hint=hint):
        opts = _options(
            mapping,
            workers,
            batch_rows,
            job,
            resume,
            restart,
            if_exists,
            executor,
            yes,
            limit,
            filter_text,
            ids_file,
        )
        names = _chosen(source, collection, include, exclude, target_collection, opts)
        check: bool | VerifyMode = False if no_verify or verify == "none" else verify
        if dry_run:
            report = api.dry_run(
                source,
                target,
                names,
                target_collection=target_collection,
                options=opts,
                state_dir=state_dir,
            )
            _report_dry_run(report, json_out)
        else:
            results = [
                _run_copy(source, target, n, target_collection, opts, json_out, check, state_dir)
                for n in names
            ]
            _report_copy(source, target, results, json_out)
    if dry_run:
        if not report.ok:
            raise typer.Exit(EXIT_FAILED)
        return
    if _failed(results):
        raise typer.Exit(EXIT_FAILED)


def export_(
    source: Annotated[str, typer.Argument(help="Source URI.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Dump directory.")],
    collection: CollectionsOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    limit: LimitOpt = None,
    filter_text: FilterOpt = None,
    ids_file: IdsFileOpt = None,
    workers: WorkersOpt = 2,
    executor: ExecutorOpt = "local",
    batch_rows: BatchOpt = 2000,
    job: JobOpt = None,
    resume: ResumeOpt = False,
    restart: RestartOpt = False,
    if_exists: IfExistsOpt = "fail",
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    state_dir: StateDirOpt = None,
    verify: VerifyOpt = "sampled",
    no_verify: NoVerifyOpt = False,
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
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Export collections to a portable, checksummed dump (Parquet + schema + manifest)."""
    from vecmigrate import api

    with command(verbose=verbose, quiet=quiet, json_out=json_out):
        target = api.export_uri(output, encrypt_key)
    copy(
        source=source,
        target=target,
        collection=collection,
        include=include,
        exclude=exclude,
        limit=limit,
        filter_text=filter_text,
        ids_file=ids_file,
        workers=workers,
        executor=executor,
        batch_rows=batch_rows,
        job=job,
        resume=resume,
        restart=restart,
        if_exists=if_exists,
        yes=yes,
        dry_run=dry_run,
        state_dir=state_dir,
        verify=verify,
        no_verify=no_verify,
        json_out=json_out,
        quiet=quiet,
        verbose=verbose,
    )


def import_(
    dump: Annotated[
        str,
        typer.Argument(help="Dump directory, or dump:///dir?key=env:NAME when encrypted."),
    ],
    target: Annotated[str, typer.Argument(help="Target URI.")],
    collection: CollectionsOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    limit: LimitOpt = None,
    filter_text: FilterOpt = None,
    ids_file: IdsFileOpt = None,
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
    dry_run: DryRunOpt = False,
    state_dir: StateDirOpt = None,
    verify: VerifyOpt = "sampled",
    no_verify: NoVerifyOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Import a dump: create schema and index on the target, batched idempotent upserts."""
    from vecmigrate import api

    with command(verbose=verbose, quiet=quiet, json_out=json_out):
        source = api.dump_uri(dump)
    copy(
        source=source,
        target=target,
        collection=collection,
        include=include,
        exclude=exclude,
        limit=limit,
        filter_text=filter_text,
        ids_file=ids_file,
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
        dry_run=dry_run,
        state_dir=state_dir,
        verify=verify,
        no_verify=no_verify,
        json_out=json_out,
        quiet=quiet,
        verbose=verbose,
    )
