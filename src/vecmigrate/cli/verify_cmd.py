"""``vecmigrate verify`` and ``diff``: proving a migration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vecmigrate.cli.options import (
    CopyMapOpt,
    JsonOpt,
    KOpt,
    NameOpt,
    QueriesOpt,
    QuietOpt,
    TargetCollectionOpt,
    VerboseOpt,
    config_hint,
    load_mapping,
    load_verify_config,
)
from vecmigrate.cli.output import EXIT_FAILED, command, emit_json, err, out
from vecmigrate.errors import ConfigError


# -- verify / diff ----------------------------------------------------------------------------
def verify(
    source: Annotated[str, typer.Argument(help="Source URI.")],
    target: Annotated[str, typer.Argument(help="Target URI.")],
    collection: NameOpt,
    target_collection: TargetCollectionOpt = None,
    config: Annotated[
        Path | None, typer.Option(envvar="VECMIGRATE_CONFIG", help="Migration config (YAML).")
    ] = None,
    mapping: CopyMapOpt = None,
    queries: QueriesOpt = None,
    k: KOpt = None,
    report_dir: Annotated[Path, typer.Option(help="Where report.{json,md,html} go.")] = Path(
        "vecmigrate-report"
    ),
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="The application writes meanwhile (a live cutover): ids that differ in the "
            "scans are read again by id, 3 times 0.5 s apart, and only those that stay "
            "different count.",
        ),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Data parity + recall parity against exact ground truth; exit 1 when a gate fails.

    The report (Markdown) is printed on stdout, so `verify ... > report.md` keeps it; the
    paths of report.{html,md,json} are logged on stderr."""
    from vecmigrate import api
    from vecmigrate.verify.report import markdown, write_reports

    with command(verbose=verbose, quiet=quiet, json_out=json_out, config_hint=config_hint()):
        if report_dir.exists() and not report_dir.is_dir():
            raise ConfigError(
                f"--report-dir {report_dir} is a file",
                hint="give a directory (created when missing) for report.{html,md,json}",
            )
        cfg = load_verify_config(config, queries=queries, k=k)
        if live:
            cfg = cfg.model_copy(update={"live": True})
        report = api.verify(
            source,
            target,
            collection,
            target_collection=target_collection,
            config=cfg,
            mapping=load_mapping(mapping),
        ).to_json()
        paths = write_reports(report, report_dir)
        if json_out:
            reports = {n: str(p) for n, p in paths.items()}
            emit_json({**report, "latency_ms": None, "reports": reports})
        else:
            out().print(markdown(report), highlight=False, markup=False)
            if not quiet:
                err().print(
                    f"reports: {paths['html']} {paths['markdown']} {paths['json']}",
                    highlight=False,
                    markup=False,
                )
    if not report["passed"]:
        raise typer.Exit(EXIT_FAILED)


def diff(
    source: Annotated[str, typer.Argument(help="Source URI.")],
    target: Annotated[str, typer.Argument(help="Target URI.")],
    collection: NameOpt,
    target_collection: TargetCollectionOpt = None,
    mapping: CopyMapOpt = None,
    output: Annotated[Path | None, typer.Option(help="Write ids to this Parquet file.")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Missing, extra and changed ids (and which fields changed); exit 1 when any."""
    import pyarrow.parquet as pq

    from vecmigrate import api

    with command(verbose=verbose, quiet=quiet, json_out=json_out):
        if output is not None and not output.parent.is_dir():
            raise ConfigError(
                f"--output {output}: the directory {output.parent} does not exist",
                hint="create it first, or write the ids elsewhere",
            )
        result = api.diff(
            source,
            target,
            collection,
            target_collection=target_collection,
            mapping=load_mapping(mapping),
        )
        data = result.to_json()
        if output:
            try:
                pq.write_table(result.to_table(), output)
            except OSError as exc:
                raise ConfigError(
                    f"cannot write --output {output}: {exc.strerror or exc}",
                    hint="give a writable file path",
                ) from None
        if json_out:
            emit_json(data)
        else:
            console = out()
            console.print(
                f"source {result.source_count:,} records, target {result.target_count:,}: "
                f"{len(result.missing)} missing, {len(result.extra)} extra, "
                f"{len(result.changed)} changed",
                highlight=False,
            )
            for kind in ("missing", "extra"):
                for i in data[kind][:50]:
                    console.print(f"  {kind:8} {i}", highlight=False, markup=False)
            for c in result.changed[:50]:
                console.print(
                    f"  changed  {c.id}: {', '.join(c.fields)}", highlight=False, markup=False
                )
    if not result.equal:
        raise typer.Exit(EXIT_FAILED)
