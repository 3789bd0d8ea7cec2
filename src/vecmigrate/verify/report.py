"""Verify reports: JSON (the data), Markdown (the summary) and one self-contained HTML file
with inline SVG charts - no script, no network, opens anywhere."""

from __future__ import annotations

import html
import json
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

COLORS = {"source": "#1f77b4", "target": "#d62728"}
W, H, PAD = 520, 260, 44


def write_reports(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.json, report.md and report.html into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "markdown": out_dir / "report.md",
        "html": out_dir / "report.html",
    }
    paths["json"].write_text(json.dumps(report, indent=2))
    paths["markdown"].write_text(markdown(report))
    paths["html"].write_text(render_html(report))
    return paths


def _verdict(report: dict[str, Any]) -> str:
    return "PASSED" if report["passed"] else "FAILED"


def _md_gate(g: dict[str, Any]) -> str:
    verdict = "pass" if g["passed"] else "**FAIL**"
    return f"| {g['gate']} | {g['threshold']} | {g['actual']} | {verdict} |"


def markdown(report: dict[str, Any]) -> str:
    """Human summary: verdict, gates, recall table, parity."""
    k = report["k"]
    src, tgt = report["systems"]["source"], report["systems"]["target"]
    p = report["parity"]
    lines = [
        f"# vecmigrate verify: {_verdict(report)}",
        "",
        f"{report['source']['engine']} `{report['source']['collection']}` -> "
        f"{report['target']['engine']} `{report['target']['collection']}`, "
        f"{report['queries']['total']} queries, k={k}",
        "",
        "| gate | threshold | actual | |",
        "|---|---:|---:|---|",
        *[_md_gate(g) for g in report["gates"]],
        "",
        "| group | queries | "
        + " | ".join(f"recall@{kk} src / tgt" for kk in report["ks"])
        + " | p99 ms src / tgt |",
        "|---|---:|" + "---:|" * len(report["ks"]) + "---:|",
    ]
    for group, s in src.items():
        t = tgt[group]
        cells = " | ".join(
            f"{s[f'recall@{kk}']:.3f} / {t[f'recall@{kk}']:.3f}" for kk in report["ks"]
        )
        lines.append(
            f"| {group} | {s['queries']} | {cells} | "
            f"{s['latency']['p99_ms']:.2f} / {t['latency']['p99_ms']:.2f} |"
        )
    ns = report.get("namespaces")
    if ns:
        lines += ["", _md_namespaces(ns, src["all"], tgt["all"])]
    lines += ["", *_self_lines(report)]
    lines += [
        "",
        f"overlap@{k} source vs target: {report['overlap'][f'overlap@{k}']:.3f}; "
        f"rank-biased overlap: {report['rank_biased_overlap']:.3f}",
        "",
        f"Data parity: source {p['source_count']:,} / target {p['target_count']:,} records; "
        f"{len(p['missing'])} missing, {len(p['extra'])} extra, {len(p['changed'])} changed.",
    ]
    live = report.get("live")
    if live:
        lines.append(
            f"Read under live writes (--live): {live['in_flight_ids']} ids differed in the "
            "scans and were equal when read again by id (writes in flight; the counts are "
            f"two moments); {live['queries_asked_again']} queries whose answers failed "
            "their filter were asked again and judged on records fetched after; "
            f"{live['self_rewritten']} sampled records rewritten since were not asked for."
        )
    for kind in ("missing", "extra"):
        if p[kind]:
            lines.append(
                f"- {kind}: {', '.join(p[kind][:20])}{' ...' if len(p[kind]) > 20 else ''}"
            )
    for c in p["changed"][:20]:
        lines.append(f"- changed {c['id']}: {', '.join(c['fields'])}")
    return "\n".join(lines) + "\n"


def _axes(
    title: str,
    xlabel: str,
    ylabel: str,
    xticks: list[tuple[float, str]],
    yticks: list[tuple[float, str]],
) -> list[str]:
    out = [
        f'<text x="{W / 2}" y="16" text-anchor="middle" class="title">{html.escape(title)}</text>',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" class="axis"/>',
        f'<line x1="{PAD}" y1="24" x2="{PAD}" y2="{H - PAD}" class="axis"/>',
        f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle">{html.escape(xlabel)}</text>',
        f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" '
        f'text-anchor="middle">{html.escape(ylabel)}</text>',
    ]
    out += [
        f'<text x="{x:.1f}" y="{H - PAD + 14}" text-anchor="middle">{html.escape(lbl)}</text>'
        for x, lbl in xticks
    ]
    out += [
        f'<text x="{PAD - 4}" y="{y + 4:.1f}" text-anchor="end">{html.escape(lbl)}</text>'
        for y, lbl in yticks
    ]
    return out


def _polyline(side: str, color: str, pts: list[tuple[float, float]]) -> str:
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    return (
        f'<polyline class="series {side}" fill="none" stroke="{color}" '
        f'stroke-width="2" points="{points}"/>'
    )


def _legend() -> list[str]:
    return [
        f'<rect x="{W - 120}" y="{28 + 16 * i}" width="10" height="10" fill="{c}"/>'
        f'<text x="{W - 105}" y="{37 + 16 * i}">{side}</text>'
        for i, (side, c) in enumerate(COLORS.items())
    ]


def _svg(cls: str, body: list[str]) -> str:
    return (
        f'<svg class="chart {cls}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">'
        + "".join(body)
        + "</svg>"
    )


def recall_curve(report: dict[str, Any]) -> str:
    """recall@k vs k, both systems."""
    ks = report["ks"]

    def sx(i: int) -> float:
        return PAD + (W - PAD - 20) * (i / max(1, len(ks) - 1))

    lo: float = min(0.0, *(report["systems"][s]["all"][f"recall@{k}"] for s in COLORS for k in ks))

    def sy(v: float) -> float:
        return float((H - PAD) - (H - PAD - 30) * (v - lo) / max(1e-9, 1 - lo))

    body = _axes(
        "recall@k against exact ground truth",
        "k",
        "recall",
        [(sx(i), str(k)) for i, k in enumerate(ks)],
        [(sy(v), f"{v:.1f}") for v in np.linspace(lo, 1, 6)],
    )
    for side, color in COLORS.items():
        pts = [(sx(i), sy(report["systems"][side]["all"][f"recall@{k}"])) for i, k in enumerate(ks)]
        body.append(_polyline(side, color, pts))
        body += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in pts]
    return _svg("recall-curve", body + _legend())


def latency_chart(report: dict[str, Any]) -> str:
    """Empirical CDF of per-query latency, both systems."""
    lat = {s: np.sort(np.asarray(report["latency_ms"][s])) for s in COLORS}
    top = max(float(np.percentile(v, 99)) if len(v) else 1.0 for v in lat.values()) * 1.1 or 1.0
    top = float(top)

    def sx(v: float) -> float:
        return PAD + (W - PAD - 20) * min(v, top) / top

    def sy(f: float) -> float:
        return (H - PAD) - (H - PAD - 30) * f

    body = _axes(
        "latency per query (CDF)",
        "milliseconds",
        "fraction of queries",
        [(sx(v), f"{v:.1f}") for v in np.linspace(0, top, 5)],
        [(sy(f), f"{f:.2f}") for f in (0, 0.5, 0.9, 1)],
    )
    for side, color in COLORS.items():
        v = lat[side]
        pts = [(sx(x), sy((i + 1) / len(v))) for i, x in enumerate(v)]
        body.append(_polyline(side, color, pts))
    return _svg("latency", body + _legend())


def group_bars(report: dict[str, Any]) -> str:
    """recall@k per query group, source and target side by side."""
    k = report["k"]
    groups = list(report["systems"]["source"])
    slot = (W - PAD - 20) / max(1, len(groups))

    def sy(v: float) -> float:
        return (H - PAD) - (H - PAD - 30) * v

    body = _axes(
        f"recall@{k} per query group",
        "group",
        f"recall@{k}",
        [(PAD + slot * (i + 0.5), g) for i, g in enumerate(groups)],
        [(sy(v), f"{v:.1f}") for v in (0, 0.5, 1)],
    )
    for i, g in enumerate(groups):
        for j, (side, color) in enumerate(COLORS.items()):
            v = report["systems"][side][g][f"recall@{k}"]
            x = PAD + slot * i + slot * (0.15 + 0.35 * j)
            body.append(
                f'<rect class="bar {side}" x="{x:.1f}" y="{sy(v):.1f}" width="{slot * 0.3:.1f}" '
                f'height="{(H - PAD) - sy(v):.1f}" fill="{color}">'
                f"<title>{side} {g}: {v:.3f}</title></rect>"
            )
    return _svg("group-recall", body + _legend())


_PAGE = Template("""<!doctype html>
<html><head><meta charset="utf-8"><title>vecmigrate verify: $verdict</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
h1 .pass{color:#2a7} h1 .fail{color:#c22}
table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid #ccc;padding:4px 8px}
tr.fail td{background:#fdd} .charts{display:flex;flex-wrap:wrap;gap:1em}
svg text{font-size:11px} svg .title{font-size:13px;font-weight:600} svg .axis{stroke:#888}
</style></head><body>
<h1>vecmigrate verify: <span class="$verdict_class">$verdict</span></h1>
<p>$source &rarr; $target; $queries queries, k=$k, created $created</p>
<h2>Gates</h2>
<table id="gates"><tr><th>gate</th><th>threshold</th><th>actual</th><th></th></tr>$gates</table>
<h2>Retrieval</h2>
<div class="charts">$charts</div>
<p>overlap@$k: $overlap, rank-biased overlap $rbo</p>
<h2>Indexes</h2>
<ul id="self-retrieval">$selfcheck</ul>
<h2>Data parity</h2>
<p>source $source_count records, target $target_count; digests $digests</p>
<table id="diff"><tr><th>kind</th><th>count / id</th><th>ids / fields</th></tr>$diff</table>
</body></html>
""")


def _row(*cells: object, cls: str = "") -> str:
    tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
    return f"<tr class='{cls}'>{tds}</tr>" if cls else f"<tr>{tds}</tr>"


def describe_serving(side: dict[str, Any]) -> str:
    """One side's ``serving`` entry as text: dims, metric, index, where the metric came from."""
    index = side.get("served_index") or side["index"] or "not recorded"
    text = f"{side['dim']}-d {side['metric']}, index {index}"
    return text + (f" [{side['metric_note']}]" if "metric_note" in side else "")


def _self_lines(report: dict[str, Any]) -> list[str]:
    """What each side serves with, and how many sampled records found themselves."""
    out = [f"{side} serves {describe_serving(s)}" for side, s in report.get("serving", {}).items()]
    sr = report.get("self_retrieval")
    if sr:
        found = ", ".join(f"{side} {v['found']}/{v['asked']}" for side, v in sr["systems"].items())
        out.append(f"Self-retrieval (own vector in the top {sr['k']}): {found}.")
        out += [f"- not found by the target: {i}" for i in sr["regressions"][:20]]
    return out


def _md_namespaces(ns: dict[str, Any], src: dict[str, Any], tgt: dict[str, Any]) -> str:
    if "skipped" in ns:
        return f"Per-namespace groups NOT run: {ns['skipped']}."
    text = (
        f"Namespaces: {len(ns['queried'])} of {ns['namespaces']} queried; cross-namespace "
        f"leaks source {src.get('namespace_leaks', 0)} / target {tgt.get('namespace_leaks', 0)}"
    )
    for leak in ns.get("leaks", [])[:20]:
        text += f"\n- {leak['system']}: {leak['id']} returned for {leak['query_namespace']}"
    return text


def render_html(report: dict[str, Any]) -> str:
    """One self-contained page: verdict, gates, charts, parity."""
    p = report["parity"]
    k = report["k"]
    gates = "".join(
        _row(
            g["gate"],
            g["threshold"],
            g["actual"],
            "pass" if g["passed"] else "FAIL",
            cls="pass" if g["passed"] else "fail",
        )
        for g in report["gates"]
    )
    diff = "".join(
        _row(kind, len(p[kind]), ", ".join(map(str, p[kind][:20]))) for kind in ("missing", "extra")
    )
    diff += "".join(_row("changed", c["id"], ", ".join(c["fields"])) for c in p["changed"][:50])
    side = "{engine} <code>{collection}</code>"
    return _PAGE.substitute(
        verdict=_verdict(report),
        verdict_class="pass" if report["passed"] else "fail",
        source=side.format(**{k2: html.escape(v) for k2, v in report["source"].items()}),
        target=side.format(**{k2: html.escape(v) for k2, v in report["target"].items()}),
        queries=report["queries"]["total"],
        k=k,
        created=html.escape(report["created"]),
        gates=gates,
        charts=recall_curve(report) + group_bars(report) + latency_chart(report),
        overlap=f"{report['overlap'][f'overlap@{k}']:.3f}",
        rbo=f"{report['rank_biased_overlap']:.3f}",
        source_count=f"{p['source_count']:,}",
        target_count=f"{p['target_count']:,}",
        digests=html.escape(f"{p['source_digest']} / {p['target_digest']}"),
        diff=diff,
        selfcheck="".join(
            f"<li>{html.escape(line.removeprefix('- '))}</li>" for line in _self_lines(report)
        ),
    )
