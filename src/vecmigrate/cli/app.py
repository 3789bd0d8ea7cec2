"""The ``vecmigrate`` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pyarrow.parquet as pq
import typer
from rich.markup import escape
from rich.table import Table

from vecmigrate import __version__, api
from vecmigrate.cli.copy_cmd import copy, export_, import_
from vecmigrate.cli.cutover import cutover_app
from vecmigrate.cli.options import (
    CollectionOpt,
    JsonOpt,
    MapOpt,
    VerboseOpt,
)
from vecmigrate.cli.output import (
    EXIT_FAILED,
    console,
    emit_json,
    fail,
    setup_logging,
    user_errors,
)
from vecmigrate.cli.sync import sync as sync_command
from vecmigrate.mapping import MappingSpec
from vecmigrate.uri import redact
from vecmigrate.verify.check import CheckReport
from vecmigrate.verify.gates import VerifyConfig
from vecmigrate.verify.report import markdown, write_reports

app = typer.Typer(
    name="vecmigrate",
    help="Move vector databases between engines and prove nothing was lost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vecmigrate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    """Move vector databases between engines and prove nothing was lost."""


# -- inspect ---------------------------------------------------------------------------------
@app.command()
def inspect(
    source: Annotated[str, typer.Argument(help="Connection URI, e.g. chroma:///data.")],
    collection: CollectionOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Collections, counts, dims, metric, id type, metadata schema and index settings."""
    setup_logging(verbose)
    with user_errors(verbose):
        rows = [info.to_json() for info in api.inspect(source, collection)]
        if not rows:
            fail(f"{redact(source)} has no collections")
        if json_out:
            emit_json({"source": redact(source), "collections": rows})
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
app.command()(copy)
app.command("export")(export_)
app.command("import")(import_)


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
    measure_writes: Annotated[
        bool,
        typer.Option(
            "--measure-writes",
            help="Measure the target's write rate by loading the sample into a scratch "
            "collection (<name>__vecmigrate_plan), dropped afterwards.",
        ),
    ] = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Dry run: schemas side by side, every decision and warning, estimates. Reads only:
    the target is not created or changed (except the scratch of --measure-writes)."""
    setup_logging(verbose)
    with user_errors(verbose):
        spec = MappingSpec.load(mapping)
        result = api.plan(
            source,
            target,
            collection,
            mapping=spec,
            target_collection=target_collection,
            sample_rows=sample,
            measure_writes=measure_writes,
        ).to_json()
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
    for c in result["target_collections"]:
        console.print(
            f"  target collection: {c['name']} (namespace {c['namespace']!r})", markup=False
        )
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
    with user_errors(verbose):
        reports = api.check(source, collection)
        if not reports:
            fail(f"{redact(source)} has no collections")
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
        report = api.verify(
            source, target, collection, target_collection=target_collection, config=cfg
        ).to_json()
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
    with user_errors(verbose):
        result = api.diff(source, target, collection, target_collection=target_collection)
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
