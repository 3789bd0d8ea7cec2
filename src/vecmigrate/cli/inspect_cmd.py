"""``vecmigrate inspect`` and ``check``: what a store holds, and whether a dump is sound."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from vecmigrate.cli.options import (
    CollectionOpt,
    JsonOpt,
    QuietOpt,
    VerboseOpt,
    no_collections,
)
from vecmigrate.cli.output import EXIT_FAILED, command, emit_json, out
from vecmigrate.uri import redact

if TYPE_CHECKING:
    from vecmigrate.verify.check import CheckReport


# -- inspect ---------------------------------------------------------------------------------
def inspect(
    source: Annotated[str, typer.Argument(help="Connection URI, e.g. chroma:///data.")],
    collection: CollectionOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Collections, counts, dims, metric, id type, metadata schema and index settings."""
    from vecmigrate import api

    with command(verbose=verbose, quiet=quiet, json_out=json_out):
        infos = api.inspect(source, collection)
        rows = [info.to_json() for info in infos]
        if not rows:
            raise no_collections(source)
        if json_out:
            emit_json({"source": redact(source), "collections": rows})
        else:
            _print(rows)
        if not all(info.ok for info in infos):
            raise typer.Exit(EXIT_FAILED)


def _print(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        if r.get("problem"):
            _print_problem(r)
        else:
            _print_collection(r)


def _print_problem(r: dict[str, Any]) -> None:
    count = "?" if r["count"] is None else f"{r['count']:,}"
    out().print(
        f"[bold]{escape(r['name'])}[/]  ({count} records): [red]cannot be described[/]: "
        f"{escape(r['problem'])}"
    )
    if r.get("hint"):
        out().print(f"  [dim]hint: {escape(r['hint'])}[/]")


def _print_collection(r: dict[str, Any]) -> None:
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
            f"metric={_metric(v)} index={idx.get('kind', '-')} {idx.get('params', '')}",
        )
    for sp in r.get("sparse", ()):
        t.add_row(sp["name"], f"sparse[{sp['dim'] or 'any'}]", f"metric={_metric(sp)}")
    for name, why in r.get("uncarried", {}).items():
        t.add_row(name, "NOT CARRIED", why)
    for ft in r.get("full_text", ()):
        how = "".join(f"{k}={ft[k]} " for k in ("function", "analyzer") if ft.get(k))
        t.add_row(
            ft["name"],
            "full-text",
            f"computed by the engine from the {ft['over']}; {how}params={ft['params']}",
        )
    if r["has_document"]:
        t.add_row("document", "string", "")
    for m in r["metadata"]:
        t.add_row(m["name"], m["type"], "indexed" if m["indexed"] else "")
    out().print(t)
    if r["engine_settings"]:
        out().print(f"[dim]engine settings: {escape(str(r['engine_settings']))}[/]")


def _metric(v: dict[str, Any]) -> str:
    from vecmigrate.model import METRIC_UNKNOWN

    source = v.get("metric_source")
    if source == METRIC_UNKNOWN:
        return f"UNKNOWN (state it: vectors.{v['name']}.metric in a mapping)"
    return f"{v['metric']} ({source})" if source else str(v["metric"])


# -- check -----------------------------------------------------------------------------------
def _print_check(report: CheckReport) -> None:
    console = out()
    status = "[green]ok[/]" if report.ok else "[red]FAILED[/]"
    console.print(f"[bold]{escape(report.collection)}[/]: {report.rows:,} records, {status}")
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


def check(
    source: Annotated[str, typer.Argument(help="Dump directory or connection URI.")],
    collection: CollectionOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Validate an export: dims, NaN/Inf, zero vectors, duplicate or missing ids, type drift."""
    from vecmigrate import api

    with command(verbose=verbose, quiet=quiet, json_out=json_out):
        reports = api.check(source, collection)
        if not reports:
            raise no_collections(api.dump_uri(source))
        if json_out:
            ok = all(r.ok for r in reports)
            emit_json({"ok": ok, "collections": [r.to_json() for r in reports]})
        else:
            for r in reports:
                _print_check(r)
    if not all(r.ok for r in reports):
        raise typer.Exit(EXIT_FAILED)
