"""``vecmigrate engines``: every URI scheme, installed or the extra that installs it, its
storage kind and each URI parameter with its type (from the connector's ``Config``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vecmigrate.cli.options import JsonOpt, QuietOpt, VerboseOpt
from vecmigrate.cli.output import command, emit_json, out

if TYPE_CHECKING:
    from vecmigrate import api


def _param_line(p: api.EngineParam) -> str:
    default = "required" if p.required else f"default {p.default!r}"
    if p.default is None and not p.required:
        default = "optional"
    note = f": {p.description}" if p.description else ""
    return f"    ?{p.name}= {p.type}, {default}{note}"


def engines(
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """List every engine scheme: installed (or the pip extra), storage, URI parameters."""
    from vecmigrate import api

    with command(verbose=verbose, quiet=quiet, json_out=json_out):
        found = api.engines()
        if json_out:
            emit_json({"engines": [e.to_json() for e in found]})
            return
        console = out()
        for e in found:
            state = "installed" if e.installed else f"not installed: {e.install or e.missing}"
            port = f", default port {e.default_port}" if e.default_port else ""
            console.print(
                f"{e.scheme}://  {state}; {e.storage}{port}", highlight=False, markup=False
            )
            if e.params is None:
                console.print("    (parameters: unknown until it is installed)", markup=False)
            elif not e.params:
                console.print("    (no parameters)", markup=False)
            for p in e.params or ():
                console.print(_param_line(p), highlight=False, markup=False)
