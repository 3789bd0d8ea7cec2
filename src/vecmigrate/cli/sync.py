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
from typing import Annotated, Any

import typer

from vecmigrate.cli.options import BatchOpt, NameOpt, TargetCollectionOpt, VerboseOpt
from vecmigrate.cli.output import EXIT_FAILED, console, emit_json, fail, setup_logging, user_errors
from vecmigrate.connectors import connect
from vecmigrate.mapping import MappingSpec
from vecmigrate.pipeline.sync import SyncOptions, SyncResult, feed_of, sync_collection, watch


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
    console.print(line, highlight=False, markup=False)
    if r.dead_letters:
        console.print(f"  [red]refused records are in {r.dead_letter_dir}[/]", highlight=False)
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
    mapping: Annotated[
        Path | None, typer.Option("--map", help="Mapping file used by the copy.")
    ] = None,
    mode: Annotated[str, typer.Option(help="auto | generic | changes.")] = "auto",
    install_capture: Annotated[
        bool, typer.Option("--install-capture", help="Install change capture on SOURCE; exit.")
    ] = False,
    remove_capture: Annotated[
        bool, typer.Option("--remove-capture", help="Remove change capture from SOURCE; exit.")
    ] = False,
    watch_: Annotated[bool, typer.Option("--watch", help="Repeat until stopped.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between --watch rounds.")] = 5.0,
    max_rounds: Annotated[int | None, typer.Option(help="Stop --watch after N rounds.")] = None,
    prune: Annotated[bool, typer.Option(help="Delete applied changes (changes mode).")] = False,
    max_delete: Annotated[
        int | None,
        typer.Option(
            help="Most records one round may delete (default: any number short of emptying "
            "the target)."
        ),
    ] = None,
    verify: Annotated[bool, typer.Option(help="Check counts + digests after each round.")] = True,
    state: Annotated[
        Path | None, typer.Option("--state", help="Sync state file (position, last result).")
    ] = None,
    batch_rows: BatchOpt = 2000,
    json_out: Annotated[bool, typer.Option("--json", help="JSON (one line per round).")] = False,
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
    """
    setup_logging(verbose)
    if not collection:
        fail("--collection/-c is required", code=2)
    if install_capture or remove_capture:
        _capture(source, collection, install_capture, json_out, verbose)
        return
    if target is None:
        fail("TARGET is required (except with --install-capture/--remove-capture)", code=2)
    if mode not in ("auto", "generic", "changes"):
        fail(f"--mode must be auto, generic or changes, not {mode!r}", code=2)
    outcome_ok = True
    with user_errors(verbose), _stop_on_signals() as stop:
        opts = SyncOptions(
            mode=mode,  # type: ignore[arg-type]
            mapping=MappingSpec.load(mapping) if mapping else None,
            batch_rows=batch_rows,
            state_path=state,
            verify=verify,
            prune=prune,
            max_delete=max_delete,
        )
        with connect(source) as src, connect(target) as dst:
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
                outcome_ok = outcome.ok
            else:
                result = sync_collection(
                    src,
                    dst,
                    collection,
                    target_collection=target_collection,
                    options=opts,
                    stop=stop,
                )
                if json_out:
                    emit_json(result.to_json())
                else:
                    _print_round(result)
                outcome_ok = result.ok and not result.interrupted
    if not outcome_ok:
        raise typer.Exit(EXIT_FAILED)


def _emit(result: SyncResult, json_out: bool) -> None:
    if json_out:
        sys.stdout.write(json.dumps(result.to_json(), default=str) + "\n")
        sys.stdout.flush()
    else:
        _print_round(result)


def _capture(source: str, collection: str, install: bool, json_out: bool, verbose: bool) -> None:
    with user_errors(verbose), connect(source) as src:
        feed = feed_of(src)
        if feed is None:
            fail(
                f"{src.engine} has no change feed",
                hint="sync it with --mode generic (digests; works on every engine)",
                code=2,
            )
        out: dict[str, Any] = {"source": str(src.uri), "collection": collection}
        if install:
            out["change_table"] = feed.install_change_capture(collection)
            out["installed"] = True
        else:
            feed.remove_change_capture(collection)
            out["installed"] = False
    if json_out:
        emit_json(out)
    elif install:
        console.print(
            f"change capture installed on {collection}: writes are recorded in "
            f"{out['change_table']}. The next sync runs one generic pass, then applies "
            "only recorded changes.",
            highlight=False,
        )
    else:
        console.print(f"change capture removed from {collection}", highlight=False)
