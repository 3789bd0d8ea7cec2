"""``vecmigrate ls URI``: the collections of a store with their record counts (read-only),
one per line as ``rclone ls`` prints files: the count right-aligned, then the name."""

from __future__ import annotations

from typing import Annotated

import typer

from vecmigrate.cli.options import JsonOpt, QuietOpt, VerboseOpt
from vecmigrate.cli.output import command, emit_json, out


def ls(
    source: Annotated[str, typer.Argument(help="Store URI.")],
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """List the collections of a store with their record counts (reads only)."""
    from vecmigrate import api

    with command(verbose=verbose, quiet=quiet, json_out=json_out):
        listing = api.ls(source)
        if json_out:
            emit_json(listing.to_json())
            return
        console = out()
        for name, count in listing.collections:
            console.print(f"{count:>12} {name}", highlight=False, markup=False)
