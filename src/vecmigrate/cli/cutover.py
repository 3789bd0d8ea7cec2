"""``vecmigrate cutover status|advance|rollback``: the phases of a live migration.

The application's ``MigrationRouter`` instances read the phase from the state store;
these commands change it, after checking the gates (``advance``) or not (``rollback``),
and every change is an audited event.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from vecmigrate.cli.options import JsonOpt, NameOpt, QuietOpt, VerboseOpt
from vecmigrate.cli.output import EXIT_FAILED, command, emit_json, err, out
from vecmigrate.errors import ConfigError

if TYPE_CHECKING:
    # vecmigrate.live and the API are imported where a command runs (they bring the
    # connectors, pyarrow and numpy), so that --help stays fast.
    from rich.console import Console

    from vecmigrate.connectors import Connector
    from vecmigrate.live.cutover_gates import GateFailedError, GateResult
    from vecmigrate.live.phases import Phase
    from vecmigrate.live.state import PhaseEvent

cutover_app = typer.Typer(
    name="cutover",
    help="Phases of a live migration: status, advance (gated), rollback, reconcile.",
    no_args_is_help=True,
)

StateOpt = Annotated[
    str,
    typer.Option(
        "--state",
        envvar="VECMIGRATE_STATE",
        help="State store: sqlite:///path/state.db, postgresql://user@host/db or "
        "redis://host:6379/0.",
    ),
]
SourceArg = Annotated[str | None, typer.Argument(help="Source URI (for the data gate).")]
TargetArg = Annotated[str | None, typer.Argument(help="Target URI (for the data gate).")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Phase to move to.")]
PercentOpt = Annotated[
    float | None, typer.Option("--percent", min=0.0, max=100.0, help="Canary percentage.")
]
NoteOpt = Annotated[str | None, typer.Option("--note", help="Recorded in the audit event.")]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who (default user@host).")]


def _status(state_uri: str, collection: str, events: int) -> dict[str, Any]:
    from vecmigrate.live.state import open_state
    from vecmigrate.live.status import cutover_status

    with open_state(state_uri) as state:
        return cutover_status(state, collection, events)


@cutover_app.command()
def status(
    state: StateOpt,
    collection: NameOpt,
    events: Annotated[int, typer.Option(min=0, help="Audit events to list.")] = 20,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """The phase, outbox backlog, shadow-read totals and the audit trail."""
    with command(verbose=verbose, quiet=quiet, json_out=json_out):
        data = _status(state, collection, events)
        if json_out:
            emit_json(data)
        else:
            _print_status(collection, data)


def _print_status(collection: str, data: dict[str, Any]) -> None:
    console = out()
    console.print(
        f"[bold]{escape(collection)}[/]: {escape(data['label'])} (version {data['version']})"
    )
    for side, d in data["outbox"].items():
        console.print(
            f"  outbox -> {side}: {d['pending']} pending, oldest {d['oldest_age_s']}s, "
            f"{d['dead']} dead",
            highlight=False,
        )
    for name, i in data["instances"].items():
        flag = "" if i["routes_by_current_phase"] else " [yellow]routes by an older phase[/]"
        flag += " [red]silent[/]" if i["silent"] else ""
        console.print(
            f"  instance {escape(name)}: phase version {i['version']}, "
            f"seen {i['seen_s_ago']}s ago{flag}",
            highlight=False,
        )
    s = data["shadow"]
    if s["comparisons"] or s["dropped"]:
        console.print(
            f"  shadow reads: {s['comparisons']} compared, mean overlap "
            f"{s['mean_overlap']:.3f}, {s['missing']} missing ids, {s['violations']} filter "
            f"violations, {s['dropped']} dropped, {s['errors']} errors",
            highlight=False,
        )
    if data["events"]:
        t = Table(title="audit trail", title_justify="left")
        for col in ("at", "actor", "action", "from", "to", "gates", "note"):
            t.add_column(col)
        for e in data["events"]:
            gates = ", ".join(
                f"{g['gate']}:{'skip' if g['skipped'] else 'ok' if g['passed'] else 'FAIL'}"
                for g in e["gates"]
            )
            t.add_row(e["at"], e["actor"], e["action"], e["from"], e["to"], gates, e["note"] or "")
        console.print(t)


def _print_gates(results: list[GateResult], console: Console | None = None) -> None:
    for r in results:
        mark = "[dim]skip[/]" if r.skipped else "[green]pass[/]" if r.passed else "[red]FAIL[/]"
        (console or out()).print(f"  {mark} {escape(r.gate)}: {escape(r.detail)}", highlight=False)


def _event_out(event: PhaseEvent, results: list[GateResult] | None, json_out: bool) -> None:
    if json_out:
        emit_json({"ok": True, "event": event.to_json()})
        return
    out().print(
        f"[bold]{event.collection}[/]: {event.before.label} -> [bold]{event.after.label}[/] "
        f"({event.action} by {event.actor}, version {event.after.version})",
        highlight=False,
    )
    if results:
        _print_gates(results)


def _phase(name: str | None) -> Phase | None:
    from vecmigrate.live.phases import parse_phase

    return parse_phase(name) if name else None


@cutover_app.command("advance")
def advance_cmd(
    state: StateOpt,
    collection: NameOpt,
    source: SourceArg = None,
    target: TargetArg = None,
    target_collection: Annotated[str | None, typer.Option(help="Name on the target.")] = None,
    to: ToOpt = None,
    percent: PercentOpt = None,
    max_diff: Annotated[int, typer.Option(min=0, help="Missing+extra+changed ids allowed.")] = 0,
    max_outbox: Annotated[int, typer.Option(min=0, help="Pending secondary writes allowed.")] = 0,
    max_outbox_age: Annotated[
        float, typer.Option(min=0.0, help="Oldest pending write, seconds.")
    ] = 30.0,
    max_outbox_lag: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Any number pending passes while the oldest waits at most this (seconds): "
            "the outbox keeps up with live writes.",
        ),
    ] = 2.0,
    min_overlap: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Mean shadow overlap@k required (only without SOURCE)."
        ),
    ] = 0.9,
    max_recall_drop: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Target recall@k below the source's allowed on sampled shadow queries.",
        ),
    ] = 0.02,
    max_shadow_errors: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of shadow reads allowed to fail.")
    ] = 0.01,
    max_report_age: Annotated[
        float, typer.Option(min=0.0, help="Oldest --verify-report accepted, seconds.")
    ] = 900.0,
    min_shadow_reads: Annotated[int, typer.Option(min=0, help="Shadow reads required.")] = 20,
    max_violations: Annotated[
        int, typer.Option(min=0, help="Shadow filter violations allowed.")
    ] = 0,
    verify_report: Annotated[
        Path | None, typer.Option(help="A `verify` report.json (or its folder) that must pass.")
    ] = None,
    skip_gate: Annotated[
        list[str] | None, typer.Option(help="Skip a gate (recorded): data|outbox|verify|shadow.")
    ] = None,
    actor: ActorOpt = None,
    note: NoteOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check the gates, then move to the next phase (or a larger canary); exit 1 if refused."""
    from vecmigrate import api
    from vecmigrate.live.cutover_gates import GateConfig, GateFailedError, advance
    from vecmigrate.live.state import open_state

    with command(verbose=verbose, quiet=quiet, json_out=json_out):
        if (source is None) != (target is None):
            raise ConfigError(
                "give both SOURCE and TARGET, or neither",
                hint="the data gate compares the two; without them it is skipped",
            )
        cfg = GateConfig(
            max_diff=max_diff,
            max_outbox=max_outbox,
            max_outbox_age=max_outbox_age,
            max_outbox_lag=max_outbox_lag,
            min_overlap=min_overlap,
            min_shadow_reads=min_shadow_reads,
            max_violations=max_violations,
            verify_report=verify_report,
            max_report_age=max_report_age,
            max_shadow_errors=max_shadow_errors,
            max_recall_drop=max_recall_drop,
            skip=frozenset(skip_gate or ()),
        )
        with ExitStack() as stack:
            store = stack.enter_context(open_state(state))
            src: Connector | None = (
                stack.enter_context(api.opened(source, read_only=False)) if source else None
            )
            dst: Connector | None = (
                stack.enter_context(api.opened(target, read_only=False)) if target else None
            )
            try:
                event, results = advance(
                    store,
                    collection,
                    source=src,
                    target=dst,
                    target_collection=target_collection,
                    config=cfg,
                    to=_phase(to),
                    percent=percent,
                    actor=actor,
                    note=note,
                )
            except GateFailedError as exc:
                _refused(exc, json_out)
                raise typer.Exit(EXIT_FAILED) from None
        _event_out(event, results, json_out)


def _refused(exc: GateFailedError, json_out: bool) -> None:
    """A refused advance is reported like an error: on stderr (the gates that failed
    with it), and under --json as the result object on stdout."""
    if json_out:
        emit_json({"ok": False, "reason": exc.message, "gates": [r.to_json() for r in exc.results]})
    err().print(f"[bold red]refused:[/] {escape(exc.message)}", highlight=False)
    if not json_out:
        _print_gates(exc.results, err())


@cutover_app.command("rollback")
def rollback_cmd(
    state: StateOpt,
    collection: NameOpt,
    to: ToOpt = None,
    percent: PercentOpt = None,
    actor: ActorOpt = None,
    note: Annotated[str | None, typer.Option("--reason", "--note", help="Why (audited).")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Step back to the previous phase (or --to an earlier one); no gates."""
    from vecmigrate.live.cutover_gates import rollback
    from vecmigrate.live.state import open_state

    with command(verbose=verbose, quiet=quiet, json_out=json_out), open_state(state) as store:
        event = rollback(store, collection, to=_phase(to), percent=percent, actor=actor, note=note)
        _event_out(event, None, json_out)


@cutover_app.command("reconcile")
def reconcile_cmd(
    state: StateOpt,
    collection: NameOpt,
    source: Annotated[str, typer.Argument(help="Source URI.")],
    target: Annotated[str, typer.Argument(help="Target URI.")],
    target_collection: Annotated[str | None, typer.Option(help="Name on the target.")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Queue the primary's current version of every id `diff` finds different for the
    secondary, through the outbox: safe while the application keeps writing."""
    from vecmigrate import api
    from vecmigrate.live.reconcile import reconcile_collection
    from vecmigrate.live.state import open_state

    with (
        command(verbose=verbose, quiet=quiet, json_out=json_out),
        open_state(state) as store,
        api.opened(source, read_only=False) as src,
        api.opened(target, read_only=False) as dst,
    ):
        result = reconcile_collection(
            store, collection, src, dst, target_collection=target_collection
        )
    if json_out:
        emit_json(result)
    else:
        out().print(
            f"[bold]{collection}[/] ({result['phase']}): {result['missing']} missing, "
            f"{result['extra']} extra, {result['changed']} changed -> {result['queued']} ids "
            f"queued for the {result['secondary']}",
            highlight=False,
        )
