"""``report.html``: one self-contained file (inline CSS, inline SVG drawn here), readable without JavaScript.

Every piece of text that did not come from this module goes through ``esc`` (``html.escape``): answers can
hold markup and injection payloads. A Content-Security-Policy meta tag forbids scripts and remote loads as a
second line of defence. The only links are ``https://`` links the run record itself carries (console URLs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from evalgate.core.results import (
    Aggregate,
    Comparison,
    Diversity,
    Drift,
    HallucinationItem,
    RunResult,
    excerpt,
    hallucination_items,
)
from evalgate.reports.common import (
    NotRunItem,
    UnscoredSummary,
    agreement_text,
    case_metric_names,
    confidence_label,
    digits_for,
    disagreement_text,
    finding_source,
    fmt_ci,
    fmt_int,
    fmt_num,
    fmt_pct,
    fmt_usd,
    grounding_agreement,
    hallucination_checked,
    identity_rows,
    is_gated,
    is_number,
    judge_trust_lines,
    lower_is_better,
    mean,
    metric_values,
    not_run_items,
    threshold_text,
    unscored_summary,
    usage_cell,
)
from evalgate.reports.explorer import EXPLORER_CSS, esc, explorer_section, script_hash, what_broke_section

VERDICT_COLOURS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "REVIEW": "#9a6700", "ERROR": "#6639ba"}
STATUS_COLOURS = {
    "pass": "#1a7f37",
    "fail": "#cf222e",
    "borderline": "#9a6700",
    "insufficient": "#9a6700",
    "not_run": "#6e7781",
    "not_gated": "#57606a",
    "error": "#6639ba",
    "unscored": "#9a6700",
}
CANDIDATE_COLOUR = "#0969da"
BASELINE_COLOUR = "#57606a"
THRESHOLD_COLOUR = "#cf222e"
COLLAPSED = '<span class="bad">yes: answers became much less varied than the baseline\'s</span>'

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1f2328; }
main { max-width: 1200px; margin: 0 auto; padding: 0 1.2rem 3rem; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .25rem; margin-top: 2rem; }
.banner { color: #fff; padding: 1.2rem 1.6rem; }
.banner h1 { margin: 0; font-size: 2.2rem; letter-spacing: .02em; }
.banner p { margin: .3rem 0 0; opacity: .95; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.status { font-weight: 600; white-space: nowrap; }
.chip { display: inline-block; border: 1px solid #d0d7de; border-radius: 1em; padding: 0 .5em; margin: 1px;
  font-size: 12px; white-space: nowrap; }
.chip.bad { border-color: #cf222e; color: #cf222e; font-weight: 600; }
.chip.unscored { border-color: #9a6700; color: #9a6700; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem; }
figcaption { font-size: 12px; color: #57606a; }
pre { white-space: pre-wrap; word-break: break-word; background: #f6f8fa; padding: .5rem; margin: .2rem 0; }
details summary { cursor: pointer; color: #0969da; }
tr.detail td { background: #fbfcfd; border-top: none; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.kv dt { font-weight: 600; }
dl.kv dd { margin: 0; word-break: break-word; }
.muted { color: #57606a; }
.warn { color: #9a6700; font-weight: 600; }
.bad { color: #cf222e; font-weight: 600; }
"""


# --------------------------------------------------------------------------------------------------- escaping


def safe_link(value: object) -> str:
    """A plain ``https://`` link (e.g. a console URL in the run record); anything else is escaped text."""
    s = str(value)
    if s.startswith("https://") and not any(ch.isspace() for ch in s):
        return f'<a href="{esc(s)}" rel="noreferrer noopener">{esc(s)}</a>'
    return esc(s)


def cls_status(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#57606a")
    return f'<span class="status" style="color:{colour}">{esc(status.replace("_", " "))}</span>'


# --------------------------------------------------------------------------------------------------- svg


@dataclass(frozen=True)
class Scale:
    lo: float
    hi: float
    x0: float
    x1: float

    def __call__(self, v: float) -> float:
        v = min(max(v, self.lo), self.hi)
        return self.x0 + (v - self.lo) / (self.hi - self.lo) * (self.x1 - self.x0)


def finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and is_number(v)]


def domain(values: Iterable[float | None], symmetric: bool = False) -> tuple[float, float]:
    """[0, 1] for scores and rates; the padded data range otherwise; symmetric around 0 for differences."""
    vals = finite(values)
    if symmetric:
        m = max((abs(v) for v in vals), default=0.0)
        m = m * 1.15 if m > 0 else 0.05
        return -m, m
    if not vals or all(0.0 <= v <= 1.0 for v in vals):
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if math.isclose(lo, hi):
        return lo - max(abs(lo) * 0.1, 1.0), hi + max(abs(hi) * 0.1, 1.0)
    pad = (hi - lo) * 0.08
    return (0.0 if lo >= 0 and lo - pad < 0 else lo - pad), hi + pad


def f1(x: float) -> str:
    return f"{x:.1f}"


def svg_text(x: float, y: float, text: str, anchor: str = "middle", size: int = 10, fill: str = "#57606a") -> str:
    return f'<text x="{f1(x)}" y="{f1(y)}" text-anchor="{anchor}" font-size="{size}" fill="{fill}">{esc(text)}</text>'


def svg_open(css_class: str, width: int, height: int, title: str) -> str:
    return (
        f'<svg class="{css_class}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"<title>{esc(title)}</title>"
    )


def whisker_svg(
    value: float | None,
    low: float | None,
    high: float | None,
    reference: float | None,
    bounds: tuple[float, float],
    colour: str,
    title: str,
) -> str:
    """A CI whisker: the interval as a line with caps, the point estimate as a dot, the threshold as a dashed line."""
    width, height, axis_y = 240, 34, 13
    sc = Scale(bounds[0], bounds[1], 8, width - 8)
    d = digits_for([bounds[0], bounds[1]])
    parts = [
        svg_open("ci-chart", width, height, title),
        f'<line x1="{sc.x0}" y1="{axis_y}" x2="{sc.x1}" y2="{axis_y}" stroke="#d0d7de"/>',
        svg_text(sc.x0, 31, fmt_num(bounds[0], d), "start", 9),
        svg_text(sc.x1, 31, fmt_num(bounds[1], d), "end", 9),
    ]
    if reference is not None and is_number(reference):
        x = f1(sc(reference))
        parts.append(
            f'<line class="threshold" x1="{x}" y1="2" x2="{x}" y2="24" stroke="{THRESHOLD_COLOUR}" '
            f'stroke-dasharray="3,2" stroke-width="1.5"/>'
        )
    if low is not None and high is not None and is_number(low) and is_number(high):
        xl, xh = f1(sc(low)), f1(sc(high))
        parts.append(f'<line x1="{xl}" y1="{axis_y}" x2="{xh}" y2="{axis_y}" stroke="{colour}" stroke-width="2.5"/>')
        for x in (xl, xh):
            parts.append(
                f'<line x1="{x}" y1="{axis_y - 5}" x2="{x}" y2="{axis_y + 5}" stroke="{colour}" stroke-width="2"/>'
            )
    if value is not None and is_number(value):
        parts.append(f'<circle cx="{f1(sc(value))}" cy="{axis_y}" r="4.5" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Bins:
    edges: list[float]
    labels: list[str]


def make_bins(values: Sequence[float]) -> Bins:
    """Two bins for 0/1 metrics, ten over [0, 1] for scores, twelve over the data range otherwise."""
    if values and all(v in (0.0, 1.0) for v in values):
        return Bins([-0.5, 0.5, 1.5], ["0", "1"])
    lo, hi = domain(values)
    n = 10 if (lo, hi) == (0.0, 1.0) else 12
    edges = [lo + (hi - lo) * i / n for i in range(n + 1)]
    return Bins(edges, [])


def shares(values: Sequence[float], bins: Bins) -> list[float]:
    counts = [0] * (len(bins.edges) - 1)
    for v in values:
        i = next((k for k in range(len(counts)) if v < bins.edges[k + 1]), len(counts) - 1)
        counts[max(i, 0)] += 1
    return [c / len(values) if values else 0.0 for c in counts]


def histogram_svg(
    metric: str, candidate: Sequence[float], baseline: Sequence[float] | None, thresholds: list[float]
) -> str:
    """Per-case score distribution: candidate as filled bars, baseline as outlined bars on the same bins."""
    width, height = 440, 200
    left, right, top, bottom = 40, 10, 34, 26
    bins = make_bins(list(candidate) + list(baseline or []))
    sc = Scale(bins.edges[0], bins.edges[-1], left, width - right)
    cand_shares = shares(candidate, bins)
    base_shares = shares(baseline, bins) if baseline else []
    ymax = max(cand_shares + base_shares + [0.01])
    plot_h = height - top - bottom

    def y(share: float) -> float:
        return top + plot_h * (1 - share / ymax)

    title = f"{metric}: candidate n={len(candidate)}, mean {fmt_num(mean(candidate))}" + (
        f"; baseline n={len(baseline)}, mean {fmt_num(mean(baseline))}" if baseline is not None else ""
    )
    parts = [
        svg_open("dist-chart", width, height, title),
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#8c959f"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#8c959f"/>',
        svg_text(left - 4, top + 4, f"{100 * ymax:.0f}%", "end", 9),
        svg_text(left - 4, height - bottom, "0%", "end", 9),
    ]
    for i, share in enumerate(cand_shares):
        if share == 0:
            continue
        x0, x1 = sc(bins.edges[i]), sc(bins.edges[i + 1])
        parts.append(
            f'<rect class="bar-candidate" x="{f1(x0 + 1)}" y="{f1(y(share))}" width="{f1(max(x1 - x0 - 2, 1))}" '
            f'height="{f1(height - bottom - y(share))}" fill="{CANDIDATE_COLOUR}" fill-opacity="0.55">'
            f"<title>candidate {100 * share:.0f}%</title></rect>"
        )
    for i, share in enumerate(base_shares):
        if share == 0:
            continue
        x0, x1 = sc(bins.edges[i]), sc(bins.edges[i + 1])
        parts.append(
            f'<rect class="bar-baseline" x="{f1(x0 + 1)}" y="{f1(y(share))}" width="{f1(max(x1 - x0 - 2, 1))}" '
            f'height="{f1(height - bottom - y(share))}" fill="none" stroke="{BASELINE_COLOUR}" stroke-width="1.5" '
            f'stroke-dasharray="4,2"><title>baseline {100 * share:.0f}%</title></rect>'
        )
    parts += _x_labels(bins, sc, height - bottom + 14)
    parts += _mean_marks(candidate, baseline, sc, top, height - bottom)
    for t in thresholds:
        x = f1(sc(t))
        parts.append(
            f'<line class="threshold" x1="{x}" y1="{top - 4}" x2="{x}" y2="{height - bottom}" '
            f'stroke="{THRESHOLD_COLOUR}" stroke-dasharray="3,2"><title>threshold {fmt_num(t)}</title></line>'
        )
    parts += _legend(len(candidate), mean(candidate), baseline, width)
    parts.append("</svg>")
    return "".join(parts)


def _x_labels(bins: Bins, sc: Scale, y: float) -> list[str]:
    if bins.labels:
        return [
            svg_text((sc(bins.edges[i]) + sc(bins.edges[i + 1])) / 2, y, label) for i, label in enumerate(bins.labels)
        ]
    lo, hi = bins.edges[0], bins.edges[-1]
    d = digits_for([lo, hi])
    return [svg_text(sc(v), y, fmt_num(v, d)) for v in (lo, (lo + hi) / 2, hi)]


def _mean_marks(
    candidate: Sequence[float], baseline: Sequence[float] | None, sc: Scale, y0: float, y1: float
) -> list[str]:
    marks = []
    for values, colour, dash in ((candidate, CANDIDATE_COLOUR, ""), (baseline or [], BASELINE_COLOUR, "1,2")):
        m = mean(values)
        if m is not None and len(set(values)) > 2:  # a mean line on a 0/1 chart says nothing the bars do not
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            marks.append(
                f'<line x1="{f1(sc(m))}" y1="{y0}" x2="{f1(sc(m))}" y2="{y1}" stroke="{colour}" stroke-width="2"'
                f"{dash_attr}><title>mean {fmt_num(m)}</title></line>"
            )
    return marks


def _legend(n: int, m: float | None, baseline: Sequence[float] | None, width: int) -> list[str]:
    parts = [
        f'<rect x="{width - 250}" y="6" width="10" height="10" fill="{CANDIDATE_COLOUR}" fill-opacity="0.55"/>',
        svg_text(width - 236, 15, f"candidate n={n}, mean {fmt_num(m)}", "start", 10, "#1f2328"),
    ]
    if baseline is not None:
        parts += [
            (
                f'<rect x="{width - 250}" y="20" width="10" height="10" fill="none" stroke="{BASELINE_COLOUR}" '
                'stroke-dasharray="4,2"/>'
            ),
            svg_text(width - 236, 29, f"baseline n={len(baseline)}, mean {fmt_num(mean(baseline))}", "start", 10),
        ]
    return parts


# --------------------------------------------------------------------------------------------------- sections


def banner(result: RunResult) -> str:
    v = result.verdict
    colour = VERDICT_COLOURS.get(v.verdict, "#57606a")
    suites = ", ".join(result.suites) or "—"
    return (
        f'<header class="banner verdict-{esc(v.verdict.lower())}" style="background:{colour}">'
        f"<h1>{esc(v.verdict)} <small>exit code {v.exit_code}</small></h1>"
        f"<p>run {esc(result.run_id)} · tier {esc(result.tier)} · suites {esc(suites)} · repeats {result.repeats} · "
        f"{esc(result.started_at)} → {esc(result.finished_at)} · evalgate {esc(result.tool_version)}</p></header>"
    )


def reasons_section(result: RunResult) -> str:
    items = "".join(f"<li>{esc(r)}</li>" for r in result.verdict.reasons) or "<li>(the gate gave no reasons)</li>"
    warn = "".join(f"<li>{esc(w)}</li>" for w in result.warnings)
    more = f"<h2>Warnings</h2><ul>{warn}</ul>" if warn else ""
    tickets = "".join(f"<li>{esc(t.get('title', ''))}: {esc(t.get('id', ''))}</li>" for t in result.tickets)
    more += f"<h2>Known errors (tickets)</h2><ul>{tickets}</ul>" if tickets else ""
    return f"<section><h2>Why</h2><ul>{items}</ul>{more}</section>"


def aggregate_row(agg: Aggregate) -> str:
    bounds = domain([agg.value, agg.ci_low, agg.ci_high, agg.threshold])
    colour = STATUS_COLOURS.get(agg.status, "#57606a")
    title = f"{agg.suite}.{agg.metric} {fmt_ci(agg.value, agg.ci_low, agg.ci_high)}; threshold {threshold_text(agg)}"
    chart = (
        whisker_svg(agg.value, agg.ci_low, agg.ci_high, agg.threshold, bounds, colour, title)
        if agg.value is not None
        else '<span class="muted">no value</span>'
    )
    return (
        f"<tr><td>{esc(agg.metric)}</td><td>{esc(agg.suite)}</td>"
        f'<td class="num">{esc(fmt_ci(agg.value, agg.ci_low, agg.ci_high))}</td><td>{chart}</td>'
        f'<td class="num">{esc(threshold_text(agg))}</td><td>{cls_status(agg.status)}</td>'
        f'<td class="num">{agg.n}</td><td class="num">{agg.n_unscored}</td><td>{esc(agg.note)}</td></tr>'
    )


def aggregates_section(result: RunResult) -> str:
    ci = confidence_label(result)
    head = (
        f"<tr><th>metric</th><th>suite</th><th>value [{esc(ci)}]</th><th>interval vs threshold</th>"
        "<th>threshold</th><th>status</th><th>n</th><th>unscored</th><th>note</th></tr>"
    )
    order = {"fail": 0, "insufficient": 1, "borderline": 2, "pass": 3}
    gated = sorted((a for a in result.aggregates if is_gated(a)), key=lambda a: order.get(a.status, 4))
    other = [a for a in result.aggregates if not is_gated(a) and a.status != "not_run"]  # not run: one line below
    body = (
        f"<table>{head}{''.join(aggregate_row(a) for a in gated)}</table>" if gated else "<p>No gated aggregates.</p>"
    )
    if other:
        body += (
            f"<h3>Other measurements (not gated)</h3><table>{head}{''.join(aggregate_row(a) for a in other)}</table>"
        )
    legend = (
        '<p class="muted">Dot: point estimate; bar: confidence interval; '
        f'<span style="color:{THRESHOLD_COLOUR}">dashed line</span>: threshold.</p>'
    )
    return f"<section><h2>Gated aggregates</h2>{legend}{body}</section>"


def distributions_section(result: RunResult, baseline: RunResult | None) -> str:
    charts = []
    for metric in case_metric_names(result.cases):
        cand = metric_values(result.cases, metric)
        base = metric_values(baseline.cases, metric) if baseline is not None else None
        if not cand and not base:
            continue
        if set(cand) | set(base or []) <= {0.0, 1.0}:
            continue  # a 0/1 metric: its rate is in the aggregates; a histogram of two bars says nothing more
        thresholds = sorted({a.threshold for a in result.aggregates if a.metric == metric and a.threshold is not None})
        svg = histogram_svg(metric, cand, base, thresholds)
        caption = f"{metric} per case" + (" — baseline (outlined) vs candidate (filled)" if base is not None else "")
        charts.append(f'<figure class="dist">{svg}<figcaption>{esc(caption)}</figcaption></figure>')
    what = "baseline vs candidate" if baseline is not None else "candidate (no baseline run given)"
    body = f'<div class="charts">{"".join(charts)}</div>' if charts else "<p>No per-case scores to plot.</p>"
    return f"<section><h2>Per-case score distributions — {esc(what)}</h2>{body}</section>"


def comparison_row(c: Comparison) -> str:
    worse = lower_is_better(c.metric)
    colour = THRESHOLD_COLOUR if c.worse or c.exceeds else CANDIDATE_COLOUR
    bounds = domain([c.diff, c.ci_low, c.ci_high], symmetric=True)
    title = f"{c.suite}.{c.metric} diff {fmt_ci(c.diff, c.ci_low, c.ci_high, signed=True)} (0 = no change)"
    flag = (
        '<span class="bad">exceeds max regression</span>'
        if c.exceeds
        else ('<span class="warn">worse</span>' if c.worse else "")
    )
    if c.evidence():
        flag += f' <span class="muted">{esc(c.evidence())}</span>'
    return (
        f'<tr><td>{esc(c.label)}</td><td>{esc(c.suite)}</td><td class="num">{c.n_paired}</td>'
        f'<td class="num">{fmt_num(c.baseline)}</td><td class="num">{fmt_num(c.candidate)}</td>'
        f'<td class="num">{esc(fmt_ci(c.diff, c.ci_low, c.ci_high, signed=True))}</td>'
        f"<td>{whisker_svg(c.diff, c.ci_low, c.ci_high, 0.0, bounds, colour, title)}</td>"
        f"<td>{'lower' if worse else 'higher'} is better</td><td>{flag}</td></tr>"
    )


def comparisons_section(result: RunResult, baseline: RunResult | None) -> str:
    parts = ["<section><h2>Baseline comparison and drift</h2>"]
    if result.baseline:
        parts.append(f"<p>Baseline: {identity_html(result.baseline)}</p>")
    if baseline is not None:
        parts.append(
            f"<p>Baseline run {esc(baseline.run_id)} ({esc(baseline.finished_at)}, tier {esc(baseline.tier)}, "
            f"verdict {esc(baseline.verdict.verdict)})</p>"
        )
    if result.comparisons:
        ci = esc(confidence_label(result))
        parts.append(
            "<table><tr><th>metric</th><th>suite</th><th>paired n</th><th>baseline</th><th>candidate</th>"
            f"<th>diff [{ci}]</th><th>diff vs 0</th><th>direction</th><th>flag</th></tr>"
            + "".join(comparison_row(c) for c in result.comparisons)
            + "</table>"
        )
    elif not result.baseline and baseline is None:
        parts.append("<p>No baseline was given: nothing to compare against.</p>")
    parts.append(drift_html(result.drift))
    parts.append(diversity_html(result.diversity))
    parts.append("</section>")
    return "".join(parts)


def drift_html(drift: Drift | None) -> str:
    if drift is None:
        return ""
    state = "needs review" if drift.review else ("significant" if drift.significant else "within noise")
    noise = "measured between repeats" if drift.noise_measured else "NOT measured: run with two or more repeats"
    bounds = domain([drift.score, drift.ci_low, drift.ci_high, drift.threshold])
    chart = whisker_svg(
        drift.score,
        drift.ci_low,
        drift.ci_high,
        drift.threshold,
        bounds,
        THRESHOLD_COLOUR if drift.review or drift.significant else CANDIDATE_COLOUR,
        f"drift {fmt_ci(drift.score, drift.ci_low, drift.ci_high)}; threshold {fmt_num(drift.threshold)}",
    )
    return (
        "<h3>Drift of answers vs the baseline's</h3>"
        f'<dl class="kv"><dt>drift score</dt><dd>{esc(fmt_ci(drift.score, drift.ci_low, drift.ci_high))} '
        f"{chart}</dd><dt>threshold</dt><dd>{fmt_num(drift.threshold)} → <strong>{state}</strong></dd>"
        f"<dt>raw change (1 − cos)</dt><dd>{fmt_num(drift.raw)}</dd>"
        f"<dt>run-to-run noise</dt><dd>{fmt_num(drift.noise)} ({esc(noise)})</dd>"
        f"<dt>paired answers</dt><dd>{drift.n_paired}</dd></dl>"
    )


def diversity_html(div: Diversity | None) -> str:
    if div is None:
        return ""
    return (
        "<h3>Output diversity</h3>"
        f'<dl class="kv"><dt>distinct-1 / distinct-2</dt><dd>{fmt_num(div.distinct_1)} / {fmt_num(div.distinct_2)} '
        f"(baseline distinct-2 {fmt_num(div.baseline_distinct_2)})</dd>"
        f"<dt>dispersion</dt><dd>{fmt_num(div.dispersion)} (baseline {fmt_num(div.baseline_dispersion)})</dd>"
        f"<dt>collapsed</dt><dd>{COLLAPSED if div.collapsed else 'no'}</dd>"
        + (f"<dt>note</dt><dd>{esc(div.note)}</dd>" if div.note else "")
        + "</dl>"
    )


def hallucination_li(h: HallucinationItem, source: str = "judge") -> str:
    claims = "".join(f"<li>{esc(c)}</li>" for c in h.claims)
    return (
        f'<li><a href="#case-{esc(h.case_id)}">{esc(h.case_id)}</a> ({esc(h.suite)} / {esc(h.category)})'
        + (f"<ul>{claims}</ul>" if claims else "")
        + (f"<div>{esc(source)}: {esc(h.reason)}</div>" if h.reason else "")
        + (f'<div class="muted">answer: “{esc(excerpt(h.answer))}”</div>' if h.answer else "")
        + "</li>"
    )


def hallucinations_section(result: RunResult) -> str:
    items = hallucination_items(result)
    if not items:
        note = "none detected" if hallucination_checked(result) else "not checked in this tier (see Not run)"
        return f"<section><h2>Hallucinations</h2><p>{note}.</p></section>"
    title = (
        "Hallucinations found (review even though the run passed)"
        if result.verdict.verdict == "PASS"
        else "Hallucinations found"
    )
    lis = "".join(hallucination_li(h, finding_source(result)) for h in items)
    return f'<section><h2 class="bad">{title} — {len(items)}</h2><ol>{lis}</ol></section>'


def judge_trust_section(result: RunResult) -> str:
    lines = judge_trust_lines(result)
    if not lines:
        return ""
    lis = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return f"<section><h2>Judge and stability</h2><ul>{lis}</ul></section>"


def grounding_section(result: RunResult) -> str:
    """The guardrail's contextual grounding check against the judge, each disagreeing case linked."""
    pairs = grounding_agreement(result)
    if not pairs:
        return ""
    items = []
    for a in pairs:
        cases = "".join(
            f'<li><a href="#case-{esc(d.case_id)}">{esc(d.case_id)}</a>: {esc(disagreement_text(a, d))}</li>'
            for d in a.disagreements
        )
        items.append(f"<li>{esc(agreement_text(a))}" + (f"<ul>{cases}</ul>" if cases else "") + "</li>")
    return f"<section><h2>Guardrail grounding vs the judge</h2><ul>{''.join(items)}</ul></section>"


def not_run_section(items: list[NotRunItem]) -> str:
    if not items:
        return '<p class="muted">Every configured metric was computed in this tier.</p>'
    lis = "".join(
        f"<li><strong>{esc(i.metric)}</strong>{f' ({esc(i.suite)})' if i.suite else ''}: "
        f"{esc(i.reason or 'no reason given')}</li>"
        for i in items
    )
    names = sorted({i.metric for i in items})
    more = ", ..." if len(names) > 6 else ""
    line = (
        f"Not run in this tier: {len(items)} measurement(s) ({esc(', '.join(names[:6]))}{more}); "
        "a judged tier with AWS credentials (--tier full) runs them"
    )
    return f'<details class="notrun"><summary>{line}</summary><ul>{lis}</ul></details>'


def unscored_section(summary: UnscoredSummary) -> str:
    budget = fmt_pct(summary.budget) if summary.budget is not None else "not set"
    state = '<span class="bad">over budget: the run cannot pass</span>' if summary.over_budget else "within budget"
    return (
        f"<section><h2>Unscored</h2><p>{summary.count} of {summary.total} cases unscored "
        f"({fmt_pct(summary.rate)}); budget {budget} → {state}.</p></section>"
    )


def usage_section(result: RunResult) -> str:
    u = result.usage
    table = (
        "<table><tr><th>model calls</th><th>cache hits</th><th>input tokens</th><th>output tokens</th>"
        "<th>cost</th></tr>"
        f'<tr><td class="num">{fmt_int(u.model_calls)}</td><td class="num">{fmt_int(u.cache_hits)}</td>'
        f'<td class="num">{fmt_int(u.input_tokens)}</td><td class="num">{fmt_int(u.output_tokens)}</td>'
        f'<td class="num">{fmt_usd(u.cost_usd)}</td></tr></table>'
    )
    if u.by_model:
        keys = sorted({k for stats in u.by_model.values() for k in stats})
        head = "<tr><th>model</th>" + "".join(f"<th>{esc(k)}</th>" for k in keys) + "</tr>"
        rows = "".join(
            f"<tr><td>{esc(model)}</td>"
            + "".join(f'<td class="num">{esc(usage_cell(k, stats.get(k)))}</td>' for k in keys)
            + "</tr>"
            for model, stats in u.by_model.items()
        )
        table += f"<table>{head}{rows}</table>"
    return f"<section><h2>Usage</h2>{table}</section>"


def identity_html(ident: dict[str, Any]) -> str:
    return ", ".join(f"{esc(k)}={_identity_value(v)}" for k, v in ident.items()) or "—"


def _identity_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + identity_html(v) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_identity_value(x) for x in v) + "]"
    return safe_link(v)


def identities_section(result: RunResult) -> str:
    rows = "".join(f"<dt>{esc(label)}</dt><dd>{identity_html(ident)}</dd>" for label, ident in identity_rows(result))
    return f'<section><h2>What was evaluated</h2><dl class="kv">{rows}</dl></section>'


# --------------------------------------------------------------------------------------------------- document

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
    f"script-src '{script_hash()}'"  # only the case explorer's own inline script
)


def render_html(result: RunResult, baseline: RunResult | None = None) -> str:
    """The full report. ``baseline`` (the approved run) adds its per-case distributions to the charts."""
    sections = [
        what_broke_section(result, baseline),
        reasons_section(result),
        aggregates_section(result),
        not_run_section(not_run_items(result)),
        hallucinations_section(result),
        judge_trust_section(result),
        grounding_section(result),
        comparisons_section(result, baseline),
        distributions_section(result, baseline),
        unscored_section(unscored_summary(result)),
        explorer_section(result, baseline),
        usage_section(result),
        identities_section(result),
    ]
    title = f"evalgate {result.verdict.verdict} — {result.run_id}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}{EXPLORER_CSS}</style></head>"
        f"<body>{banner(result)}<main>{''.join(sections)}</main></body></html>\n"
    )
