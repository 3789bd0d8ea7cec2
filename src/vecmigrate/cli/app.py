"""The ``vecmigrate`` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import pyarrow.parquet as pq
import typer
from rich.markup import escape
from rich.table import Table

from vecmigrate import __version__
from vecmigrate.cli.cutover import cutover_app
from vecmigrate.cli.output import (
    EXIT_FAILED,
    console,
    emit_json,
    fail,
    progress_bar,
    setup_logging,
    user_errors,
)
from vecmigrate.cli.sync import sync as sync_command
from vecmigrate.connectors import Connector, connect
from vecmigrate.mapping import MappingSpec, build_mapping
from vecmigrate.model import CollectionSchema
from vecmigrate.pipeline import CopyOptions, CopyResult, copy_collection
from vecmigrate.pipeline.plan import plan_migration
from vecmigrate.verify.check import CheckReport, check_collection
from vecmigrate.verify.diff import diff_collections
from vecmigrate.verify.gates import VerifyConfig
from vecmigrate.verify.report import markdown, write_reports
from vecmigrate.verify.run import verify_migration

app = typer.Typer(
    name="vecmigrate",
    help="Move vector databases between engines and prove nothing was lost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document; no progress bar.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs and tracebacks.")]
CollectionOpt = Annotated[str | None, typer.Option("--collection", "-c", help="Collection name.")]
WorkersOpt = Annotated[int, typer.Option(help="Partitions copied concurrently.")]
ExecutorOpt = Annotated[
    str,
    typer.Option(help="Where partitions run: local (threads), ray (local Ray) or ray:ADDRESS."),
]
BatchOpt = Annotated[int, typer.Option("--batch-rows", help="Rows per read batch.")]
JobOpt = Annotated[Path | None, typer.Option("--job", help="Job state file (for --resume).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted job.")]
RestartOpt = Annotated[
    bool, typer.Option("--restart", help="Discard an interrupted job, start over.")
]
MapOpt = Annotated[Path | None, typer.Option("--map", help="Mapping file (YAML); see `plan`.")]
IfExistsOpt = Annotated[str, typer.Option("--if-exists", help="fail | reuse | replace the target.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vecmigrate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    """Move vector databases between engines and prove nothing was lost."""


def _collections(conn: Connector, collection: str | None) -> list[str]:
    names = [collection] if collection else conn.list_collections()
    if not names:
        fail(f"{conn.uri} has no collections")
    return names


# -- inspect ---------------------------------------------------------------------------------
def _schema_row(schema: CollectionSchema, count: int) -> dict[str, Any]:
    return {"count": count, **schema.model_dump(mode="json")}


@app.command()
def inspect(
    source: Annotated[str, typer.Argument(help="Connection URI, e.g. chroma:///data.")],
    collection: CollectionOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Collections, counts, dims, metric, id type, metadata schema and index settings."""
    setup_logging(verbose)
    with user_errors(verbose), connect(source) as conn:
        rows = [
            _schema_row(conn.describe(n), conn.count(n)) for n in _collections(conn, collection)
        ]
        if json_out:
            emit_json({"source": str(conn.uri), "collections": rows})
            return
        for r in rows:
            t = Table(
                title=f"{r['name']}  ({r['count']:,} records, ids: {r['id_type']})",
                title_justify="left",
            )
            t.add_column("field")
            t.add_column("type")
            t.add_column("details")
            for v in r["vectors"]:
                idx = v["index"] or {}
                t.add_row(
                    v["name"],
                    f"vector[{v['dim']}] {v['dtype']}",
                    f"metric={v['metric']} index={idx.get('kind', '-')} {idx.get('params', '')}",
                )
            if r["has_document"]:
                t.add_row("document", "string", "")
            for m in r["metadata"]:
                t.add_row(m["name"], m["type"], "indexed" if m["indexed"] else "")
            console.print(t)
            if r["engine_settings"]:
                console.print(f"[dim]engine settings: {r['engine_settings']}[/]")


# -- copy / export / import ------------------------------------------------------------------
def _run_copy(
    source: str,
    target: str,
    collection: str,
    target_collection: str | None,
    options: CopyOptions,
    json_out: bool,
    verify: bool,
) -> dict[str, Any]:
    with connect(source) as src, connect(target) as dst:
        with progress_bar(not json_out, f"{collection}") as (advance, set_total):
            result = copy_collection(
                src,
                dst,
                collection,
                target_collection=target_collection,
                options=options,
                progress=advance,
                on_plan=set_total,
            )
        out = result.to_json()
        checks = _verify_copy(src, dst, collection, result, options.mapping) if verify else []
        out["checks"] = checks
        out["verified"] = bool(checks) and all(c["passed"] for c in checks)
        return out


def _verify_copy(
    src: Connector,
    dst: Connector,
    collection: str,
    result: CopyResult,
    spec: MappingSpec | None,
) -> list[dict[str, Any]]:
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
        detail += (
            f"; {len(diff.missing)} missing, {len(diff.extra)} extra, "
            f"{len(diff.changed)} changed (e.g. {', '.join(named)}); run vecmigrate diff"
        )
    checks.append({"name": "content digest", "passed": passed, "detail": detail})
    return checks


def _only_refused(missing: list[str], diff: Any, result: CopyResult, same_ids: bool) -> bool:
    """Whether the only difference is the dead-lettered records (ids kept by the copy)."""
    if not same_ids or diff.extra or diff.changed or not result.dead_letter_dir:
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
        mapping=MappingSpec.load(mapping) if mapping else None,
    )


@app.command()
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
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Stream collections from SOURCE into TARGET: no intermediate files, resumable."""
    setup_logging(verbose)
    with user_errors(verbose):
        opts = _options(mapping, workers, batch_rows, job, resume, restart, if_exists, executor)
        with connect(source) as conn:
            names = _collections(conn, collection)
        if target_collection and len(names) > 1:
            fail("--target-collection needs a single --collection", code=2)
        results = [
            _run_copy(source, target, n, target_collection, opts, json_out, verify) for n in names
        ]
    _report_copy(results, json_out)


@app.command("export")
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
    target = f"dump://{output.resolve()}"
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
        json_out=json_out,
        verbose=verbose,
    )


@app.command("import")
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
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Import a dump: create schema and index on the target, batched idempotent upserts."""
    copy(
        source=dump if "://" in dump else f"dump://{Path(dump).resolve()}",
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
        json_out=json_out,
        verbose=verbose,
    )


# -- plan ------------------------------------------------------------------------------------
@app.command()
def plan(
    source: Annotated[str, typer.Argument(help="Source URI.")],
    target: Annotated[str, typer.Argument(help="Target URI.")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    target_collection: Annotated[str | None, typer.Option(help="Name on the target.")] = None,
    mapping: MapOpt = None,
    write_map: Annotated[
        Path | None, typer.Option(help="Write the (inferred) mapping here.")
    ] = None,
    sample: Annotated[int, typer.Option(help="Rows sampled for checks and rates.")] = 2000,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Dry run: schemas side by side, every decision and warning, estimates; writes nothing
    to the target but a scratch collection it drops (to measure the write rate)."""
    setup_logging(verbose)
    with user_errors(verbose):
        spec = MappingSpec.load(mapping)
        with connect(source) as src, connect(target) as dst:
            result = plan_migration(
                src, dst, collection, spec=spec, target_name=target_collection, sample_rows=sample
            )
        if write_map:
            header = "".join(f"# {d}\n" for d in [*result["decisions"], *result["warnings"]])
            write_map.write_text(header + MappingSpec.model_validate(result["mapping"]).to_yaml())
    if json_out:
        emit_json(result)
    else:
        _print_plan(result)
    if result["errors"]:
        raise typer.Exit(EXIT_FAILED)


def _print_plan(result: dict[str, Any]) -> None:
    src, tgt = result["source"]["schema"], result["target"]["schema"]
    t = Table(
        title=f"{result['source']['engine']} {src['name']} -> "
        f"{result['target']['engine']} {tgt['name']}",
        title_justify="left",
    )
    for col in ("", "source", "target"):
        t.add_column(col)
    t.add_row("ids", src["id_type"], tgt["id_type"])
    for a, b in zip(src["vectors"], tgt["vectors"], strict=True):
        t.add_row(
            a["name"],
            f"{a['dim']}-d {a['metric']} {(a['index'] or {}).get('kind', '')}",
            f"{b['name']} {b['dim']}-d {b['metric']} {(b['index'] or {}).get('kind', '')}",
        )
    targets = {m["name"]: m["type"] for m in tgt["metadata"]}
    for m in src["metadata"]:
        t.add_row(m["name"], m["type"], targets.get(m["name"], "(renamed or dropped)"))
    console.print(t)
    for d in result["decisions"]:
        console.print(f"  decision: {d}", highlight=False)
    for w in result["warnings"]:
        console.print(f"  [yellow]warning[/]: {w}", highlight=False)
    for e in result["errors"]:
        console.print(f"  [red]error[/]: {e}", highlight=False)
    for c in result["checks"]:
        console.print(
            f"  check {c['vector']}: {c['unit_length_fraction']:.1%} of {c['sampled']} "
            f"sampled vectors unit length (norms {c['norm_min']:.4g}..{c['norm_max']:.4g})",
            highlight=False,
        )
    e = result["estimate"]
    console.print(
        f"  estimate: {e['rows']:,} rows, {e['bytes'] / 2**20:,.1f} MiB, "
        f"~{e['seconds']}s (scan {e['scan_rows_per_second']} rows/s, write "
        f"{e['write_rows_per_second']} rows/s), {e['refused_rows']:,} refused",
        highlight=False,
    )


# -- check -----------------------------------------------------------------------------------
def _print_check(report: CheckReport) -> None:
    status = "[green]ok[/]" if report.ok else "[red]FAILED[/]"
    console.print(f"[bold]{report.collection}[/]: {report.rows:,} records, {status}")
    for f in report.findings.values():
        color = "red" if f.severity == "error" else "yellow"
        ids = ", ".join(map(repr, f.ids[:8])) + (" ..." if f.count > 8 else "")
        where = f" - {f.count} record(s): {ids}" if f.count else ""
        console.print(
            f"  [{color}]{f.severity}[/] {f.code} field={f.field}: {escape(f.message + where)}",
            highlight=False,
        )
    for name, n in report.norms.items():
        console.print(
            f"  norms of {name}: min {n['min']:.4g} mean {n['mean']:.4g} "
            f"max {n['max']:.4g}, {n['unit_fraction']:.1%} unit length",
            highlight=False,
        )


@app.command()
def check(
    source: Annotated[str, typer.Argument(help="Dump directory or connection URI.")],
    collection: CollectionOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Validate an export: dims, NaN/Inf, zero vectors, duplicate or missing ids, type drift."""
    setup_logging(verbose)
    uri = source if "://" in source else f"dump://{Path(source).resolve()}"
    with user_errors(verbose), connect(uri) as conn:
        reports = [check_collection(conn, n) for n in _collections(conn, collection)]
    if json_out:
        emit_json({"ok": all(r.ok for r in reports), "collections": [r.to_json() for r in reports]})
    else:
        for r in reports:
            _print_check(r)
    if not all(r.ok for r in reports):
        raise typer.Exit(EXIT_FAILED)


# -- verify / diff ----------------------------------------------------------------------------
@app.command()
def verify(
    source: Annotated[str, typer.Argument(help="Source URI.")],
    target: Annotated[str, typer.Argument(help="Target URI.")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    target_collection: Annotated[str | None, typer.Option(help="Name on the target.")] = None,
    config: Annotated[Path | None, typer.Option(help="Migration config (YAML).")] = None,
    queries: Annotated[int | None, typer.Option(help="Sampled corpus queries.")] = None,
    k: Annotated[int | None, typer.Option(help="k of recall@k gates.")] = None,
    report_dir: Annotated[Path, typer.Option(help="Where report.{json,md,html} go.")] = Path(
        "vecmigrate-report"
    ),
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Data parity + recall parity against exact ground truth; exit 1 when a gate fails."""
    setup_logging(verbose)
    with user_errors(verbose):
        cfg = VerifyConfig.load(config)
        updates = {"queries": queries, "k": k}
        cfg = cfg.model_copy(update={n: v for n, v in updates.items() if v is not None})
        with connect(source) as src, connect(target) as dst:
            report = verify_migration(
                src, dst, collection, target_name=target_collection, config=cfg
            )
        paths = write_reports(report, report_dir)
    if json_out:
        emit_json({**report, "latency_ms": None, "reports": {n: str(p) for n, p in paths.items()}})
    else:
        console.print(markdown(report), highlight=False, markup=False)
        console.print(f"reports: {paths['html']} {paths['markdown']} {paths['json']}")
    if not report["passed"]:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def diff(
    source: Annotated[str, typer.Argument(help="Source URI.")],
    target: Annotated[str, typer.Argument(help="Target URI.")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    target_collection: Annotated[str | None, typer.Option(help="Name on the target.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write ids to this Parquet file.")] = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Missing, extra and changed ids (and which fields changed); exit 1 when any."""
    setup_logging(verbose)
    with user_errors(verbose), connect(source) as src, connect(target) as dst:
        result = diff_collections(src, dst, collection, target_name=target_collection)
    data = result.to_json()
    if output:
        pq.write_table(result.to_table(), output)
    if json_out:
        emit_json(data)
    else:
        console.print(
            f"source {result.source_count:,} records, target {result.target_count:,}: "
            f"{len(result.missing)} missing, {len(result.extra)} extra, "
            f"{len(result.changed)} changed",
            highlight=False,
        )
        for kind in ("missing", "extra"):
            for i in data[kind][:50]:
                console.print(f"  {kind:8} {i}", highlight=False)
        for c in result.changed[:50]:
            console.print(f"  changed  {c.id}: {', '.join(c.fields)}", highlight=False)
    if not result.equal:
        raise typer.Exit(EXIT_FAILED)


app.command("sync")(sync_command)
app.add_typer(cutover_app, name="cutover")


def main() -> None:
    """Console-script entry point."""
    app()
