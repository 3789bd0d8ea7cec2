"""``vecmigrate plan``: the dry run of a copy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from vecmigrate.cli.options import (
    JsonOpt,
    MapOpt,
    NameOpt,
    QuietOpt,
    SampleOpt,
    TargetCollectionOpt,
    VerboseOpt,
    load_mapping,
    mapping_hint,
)
from vecmigrate.cli.output import EXIT_FAILED, command, emit_json, out
from vecmigrate.errors import ConfigError


# -- plan ------------------------------------------------------------------------------------
def plan(
    source: Annotated[str, typer.Argument(help="Source URI.")],
    target: Annotated[str, typer.Argument(help="Target URI.")],
    collection: NameOpt,
    target_collection: TargetCollectionOpt = None,
    mapping: MapOpt = None,
    write_map: Annotated[
        Path | None, typer.Option(help="Write the (inferred) mapping here.")
    ] = None,
    sample: SampleOpt = 2000,
    measure_writes: Annotated[
        bool,
        typer.Option(
            "--measure-writes",
            help="Measure the target's write rate by loading the sample into a scratch "
            "collection (<name>__vecmigrate_plan), dropped afterwards.",
        ),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Dry run: schemas side by side, every decision and warning, estimates. Reads only:
    the target is not created or changed (except the scratch of --measure-writes)."""
    from vecmigrate import api
    from vecmigrate.mapping import MappingSpec

    hint = mapping_hint() if mapping else None
    with command(verbose=verbose, quiet=quiet, json_out=json_out, config_hint=hint):
        if write_map is not None and not write_map.parent.is_dir():
            raise ConfigError(
                f"--write-map {write_map}: the directory {write_map.parent} does not exist",
                hint="create it first, or write the mapping elsewhere",
            )
        spec = load_mapping(mapping) or MappingSpec()
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
    console = out()
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
        console.print(f"  decision: {d}", highlight=False, markup=False)
    for c in result["target_collections"]:
        console.print(
            f"  target collection: {c['name']} (namespace {c['namespace']!r})", markup=False
        )
    for w in result["warnings"]:
        console.print(f"  [yellow]warning[/]: {escape(w)}", highlight=False)
    for e in result["errors"]:
        console.print(f"  [red]error[/]: {escape(e)}", highlight=False)
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
