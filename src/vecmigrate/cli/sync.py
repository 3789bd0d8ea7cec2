"""``vecmigrate sync``: keep a target up to date with its source after a backfill."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.markup import escape

from vecmigrate.cli.options import (
    BatchOpt,
    CopyMapOpt,
    NameOpt,
    QuietOpt,
    TargetCollectionOpt,
    VerboseOpt,
    load_mapping,
    mapping_hint,
)
from vecmigrate.cli.output import EXIT_FAILED, command, emit_json, err, out
from vecmigrate.errors import ConfigError

if TYPE_CHECKING:
    # The sync pipeline and the API are imported where the command runs (they bring the
    # connectors, pyarrow and numpy), so that --help stays fast.
    from vecmigrate.pipeline.sync import SyncOptions, SyncPlan, SyncResult


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT/SIGTERM: the round in flight stops at a safe point."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _print_round(r: SyncResult) -> None:
    line = (
        f"round {r.round} ({r.mode}{' + initial generic pass' if r.initial_generic else ''})"
        f" {r.collection} -> {r.target_collection}: {r.upserted:,} upserted, {r.deleted:,} "
        f"deleted, {r.dead_letters} refused in {r.seconds:.2f}s"
    )
    if r.mode == "generic" or r.initial_generic:
        line += (
            f"; {r.missing} missing, {r.changed} changed, {r.extra} extra "
            f"({r.dirty_buckets}/{r.buckets} buckets differed, {r.rows_scanned:,} rows scanned)"
        )
    if r.mode == "changes":
        line += (
            f"; {r.changes_read:,} changes read, {r.behind_seconds or 0:.1f}s behind at start, "
            f"lag now {r.lag_rows} changes / {r.lag_seconds or 0:.1f}s"
        )
    if r.interrupted:
        line += " (stopped early)"
    console = out()
    console.print(line, highlight=False, markup=False)
    if r.dead_letters:
        console.print(
            f"  [red]refused records are in {escape(str(r.dead_letter_dir))}[/]", highlight=False
        )
    if r.parity is not None:
        p = r.parity
        mark = "[green]parity[/]" if p["equal"] else "[red]NO parity[/]"
        console.print(
            f"  {mark}: source {p['source_count']:,} records {p['source_digest']}, "
            f"target {p['target_count']:,} records {p['target_digest']}",
            highlight=False,
        )


def sync(
    source: Annotated[str, typer.Argument(help="Source URI.")],
    target: Annotated[str | None, typer.Argument(help="Target URI.")] = None,
    collection: NameOpt = "",
    target_collection: TargetCollectionOpt = None,
    mapping: CopyMapOpt = None,
    mode: Annotated[
        Literal["auto", "generic", "changes"], typer.Option(help="auto | generic | changes.")
    ] = "auto",
    install_capture: Annotated[
        bool, typer.Option("--install-capture", help="Install change capture on SOURCE; exit.")
    ] = False,
    remove_capture: Annotated[
        bool, typer.Option("--remove-capture", help="Remove change capture from SOURCE; exit.")
    ] = False,
    watch_: Annotated[bool, typer.Option("--watch", help="Repeat until stopped.")] = False,
    interval: Annotated[float, typer.Option(min=0.0, help="Seconds between --watch rounds.")] = 5.0,
    max_rounds: Annotated[
        int | None, typer.Option(min=1, help="Stop --watch after N rounds.")
    ] = None,
    prune: Annotated[bool, typer.Option(help="Delete applied changes (changes mode).")] = False,
    max_delete: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Most records one round may delete (default: any number short of emptying "
            "the target).",
        ),
    ] = None,
    verify: Annotated[bool, typer.Option(help="Check counts + digests after each round.")] = True,
    state: Annotated[
        Path | None, typer.Option("--state", help="Sync state file (position, last result).")
    ] = None,
    batch_rows: BatchOpt = 2000,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Say what one round would upsert and delete on TARGET (counts and sample "
            "ids); touch nothing on either side (no target collection, no state file).",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="JSON (one line per round).")] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Bring TARGET up to date with SOURCE - inserts, updates and deletes - after a copy.

    Modes (--mode, default auto: changes when capture is installed on the source, else generic):

    generic: every engine. Bucketed digests of both sides find the missing, changed and extra
    ids; those are fetched from the source and upserted, extra ones deleted. Reads scan both
    sides (four scans when anything differs); writes and memory grow with the difference.

    changes: pgvector. First run `vecmigrate sync --install-capture SOURCE -c NAME` (a trigger
    records every write in a change table). The first sync after that takes a position, runs a
    generic sync (so writes made before the capture are not missed) and stores the position;
    later syncs apply only the changes recorded since, in pages, storing the position in the
    --state file only after the target acknowledged them (a crash re-applies one page).
    --prune deletes applied changes from the change table.

    Each round ends with a parity check (counts + content digests, --no-verify skips it).
    --watch repeats every --interval seconds until Ctrl-C/SIGTERM or --max-rounds; --json
    prints one JSON line per round. Exit 1 when records were refused (dead letters) or parity
    was not reached.

    --dry-run reads both sides as a round would and reports what it would upsert and delete
    (exit 1 when the round would be refused, e.g. by --max-delete); nothing is written.
    """
    if dry_run and (install_capture or remove_capture or watch_):
        with command(verbose=verbose, quiet=quiet, json_out=json_out):
            given = "--watch" if watch_ else "--install-capture/--remove-capture"
            raise ConfigError(
                f"--dry-run cannot be combined with {given}",
                hint="run --dry-run alone for one round: vecmigrate sync SOURCE TARGET -c NAME "
                "--dry-run",
            )
    if install_capture or remove_capture:
        _capture(source, collection, install_capture, json_out, quiet, verbose)
        return
    from vecmigrate import api
    from vecmigrate.pipeline.sync import SyncOptions, plan_sync

    outcome_ok = True
    hint = mapping_hint() if mapping else None
    with (
        command(verbose=verbose, quiet=quiet, json_out=json_out, config_hint=hint),
        _stop_on_signals() as stop,
    ):
        if not collection:
            raise ConfigError("--collection/-c is required", hint="name the collection: -c NAME")
        if target is None:
            raise ConfigError(
                "TARGET is required (except with --install-capture/--remove-capture)",
                hint="vecmigrate sync SOURCE TARGET -c NAME",
            )
        opts = SyncOptions(
            mode=mode,
            mapping=load_mapping(mapping),
            batch_rows=batch_rows,
            state_path=state,
            verify=verify,
            prune=prune,
            max_delete=max_delete,
        )
        api.refuse_writing_into_source(source, target, collection, target_collection, opts.mapping)
        if dry_run:
            with (
                api.opened(source, read_only=True) as src,
                api.plan_target(target, False) as planned,
            ):
                api.require_collection(src, collection)
                plan = plan_sync(
                    src, planned, collection, target_collection=target_collection, options=opts
                )
            if json_out:
                emit_json(plan.to_json())
            else:
                _print_plan(plan)
            outcome_ok = plan.ok
        else:
            outcome_ok = _sync(
                source,
                target,
                collection,
                target_collection,
                opts,
                stop,
                json_out,
                watch_,
                interval,
                max_rounds,
            )
    if not outcome_ok:
        raise typer.Exit(EXIT_FAILED)


def _sync(
    source: str,
    target: str,
    collection: str,
    target_collection: str | None,
    opts: SyncOptions,
    stop: threading.Event,
    json_out: bool,
    watch_: bool,
    interval: float,
    max_rounds: int | None,
) -> bool:
    """Run one round or ``--watch`` rounds, printing each; whether all went well."""
    from vecmigrate import api
    from vecmigrate.pipeline.sync import sync_collection, watch

    with (
        api.opened(source, read_only=False) as src,
        api.opened(target, read_only=False) as dst,
    ):
        if watch_:
            outcome = watch(
                src,
                dst,
                collection,
                interval=interval,
                max_rounds=max_rounds,
                target_collection=target_collection,
                options=opts,
                stop=stop,
                on_round=lambda r: _emit(r, json_out),
            )
            return outcome.ok
        result = sync_collection(
            src, dst, collection, target_collection=target_collection, options=opts, stop=stop
        )
    if json_out:
        emit_json(result.to_json())
    else:
        _print_round(result)
    return result.ok and not result.interrupted


def _print_plan(plan: SyncPlan) -> None:
    """The dry run as text: counts, then a sample of the ids on each side."""
    j = plan.to_json()
    up, dele = j["upsert"], j["delete"]
    split = (
        f" ({up['missing']:,} missing, {up['changed']:,} changed)"
        if up["missing"] is not None
        else ""
    )
    create = "" if plan.target_exists else f" (would create {plan.target_collection!r})"
    console = out()
    console.print(
        f"dry run ({plan.mode}{' + initial generic pass' if plan.initial_generic else ''}) "
        f"{plan.collection} -> {plan.target_collection}{create}: would upsert "
        f"{up['count']:,}{split} and delete {dele['count']:,}; nothing was changed",
        highlight=False,
        markup=False,
    )
    for verb, part in (("upsert", up), ("delete", dele)):
        if part["sample"]:
            more = part["count"] - len(part["sample"])
            ids = ", ".join(str(i) for i in part["sample"])
            console.print(
                f"  {verb}: {ids}{f' (and {more:,} more)' if more else ''}",
                highlight=False,
                markup=False,
            )
    if plan.error:
        err().print(f"[bold red]error:[/] {escape(plan.error)}", highlight=False)


def _emit(result: SyncResult, json_out: bool) -> None:
    if json_out:
        sys.stdout.write(json.dumps(result.to_json(), default=str) + "\n")
        sys.stdout.flush()
    else:
        _print_round(result)


def _capture(
    source: str, collection: str, install: bool, json_out: bool, quiet: bool, verbose: bool
) -> None:
    from vecmigrate import api
    from vecmigrate.pipeline.sync import feed_of

    with (
        command(verbose=verbose, quiet=quiet, json_out=json_out),
        api.opened(source, read_only=False) as src,
    ):
        if not collection:
            raise ConfigError("--collection/-c is required", hint="name the collection: -c NAME")
        feed = feed_of(src)
        if feed is None:
            raise ConfigError(
                f"{src.engine} has no change feed",
                hint="sync it with --mode generic (digests; works on every engine)",
            )
        done: dict[str, Any] = {"source": str(src.uri), "collection": collection}
        if install:
            done["change_table"] = feed.install_change_capture(collection)
            done["installed"] = True
        else:
            feed.remove_change_capture(collection)
            done["installed"] = False
    if json_out:
        emit_json(done)
    elif install:
        out().print(
            f"change capture installed on {collection}: writes are recorded in "
            f"{done['change_table']}. The next sync runs one generic pass, then applies "
            "only recorded changes.",
            highlight=False,
            markup=False,
        )
    else:
        out().print(f"change capture removed from {collection}", highlight=False, markup=False)
