"""``vecmigrate verify`` and ``diff``: proving a migration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pyarrow.parquet as pq
import typer

from vecmigrate import api
from vecmigrate.cli.options import (
    JsonOpt,
    NameOpt,
    TargetCollectionOpt,
    VerboseOpt,
)
from vecmigrate.cli.output import (
    EXIT_FAILED,
    console,
    emit_json,
    setup_logging,
    user_errors,
)
from vecmigrate.verify.gates import VerifyConfig
from vecmigrate.verify.report import markdown, write_reports


# -- verify / diff ----------------------------------------------------------------------------
def verify(
    source: Annotated[str, typer.Argument(help="Source URI.")],
    target: Annotated[str, typer.Argument(help="Target URI.")],
    collection: NameOpt,
    target_collection: TargetCollectionOpt = None,
    config: Annotated[
        Path | None, typer.Option(envvar="VECMIGRATE_CONFIG", help="Migration config (YAML).")
    ] = None,
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


def diff(
    source: Annotated[str, typer.Argument(help="Source URI.")],
    target: Annotated[str, typer.Argument(help="Target URI.")],
    collection: NameOpt,
    target_collection: TargetCollectionOpt = None,
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
