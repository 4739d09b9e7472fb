"""``evalgate history``: a static site of every run — trends per gated metric, and any two runs compared.

Reads ``results.json`` files from a folder (recursively) or an ``s3://`` prefix (the pipeline's ``runs/``), in
the order they started, and writes ``index.html``: a table of runs (verdict: approved runs — PASS — and rejected
ones — FAIL/ERROR — marked, REVIEW runs as waiting for a person, each linked to its report), one trend chart per
gated metric (the value with its interval, the threshold, each point coloured by its run's verdict), and a
"compare two runs" panel (cases whose status or answer changed between any two runs, answers side by side).
``--compare A B`` also writes ``compare-A-B.html``: the full case explorer of run B against run A. Self-contained:
no request leaves the page; the one inline script is allowed by its hash.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalgate.core.errors import InputError, Problem
from evalgate.core.results import RunResult, load_result

VERDICT_COLOURS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "REVIEW": "#9a6700", "ERROR": "#6639ba"}
VERDICT_WORDS = {"PASS": "approved", "FAIL": "rejected", "ERROR": "rejected", "REVIEW": "waiting for review"}
ANSWER_CHARS = 400


@dataclass
class Run:
    result: RunResult
    source: str  # where it was read from
    report: str | None  # a link to its report.html, relative to the site when local


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


# ------------------------------------------------------------------------------------------------ reading


def _parse(text: str, source: str) -> RunResult:
    from evalgate.core.dataset import parse_json_model

    try:
        return parse_json_model(text, RunResult, "results file")
    except ValueError as exc:
        raise InputError.single(source, None, str(exc)) from None


def load_runs(source: str, client: Any = None) -> tuple[list[Run], list[Problem]]:
    """Every readable results.json under ``source``; unreadable ones are problems, not crashes."""
    runs: list[Run] = []
    problems: list[Problem] = []
    if source.startswith("s3://"):
        from evalgate.adapters.s3 import split_s3_url

        if client is None:
            from evalgate.adapters.aws import make_client

            client = make_client("s3")
        bucket, prefix = split_s3_url(source)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if not key.endswith("/results.json"):
                    continue
                shown = f"s3://{bucket}/{key}"
                try:
                    text = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
                    console = f"https://console.aws.amazon.com/s3/object/{bucket}?prefix="
                    runs.append(Run(_parse(text, shown), shown, console + key.replace("results.json", "report.html")))
                except (InputError, UnicodeDecodeError) as exc:
                    problems.append(Problem(shown, None, f"skipped: {exc}"))
    else:
        root = Path(source)
        if not root.is_dir():
            raise InputError.single(source, None, "runs folder not found (a folder or an s3:// prefix)")
        for path in sorted(root.rglob("results.json")):
            try:
                result = load_result(path, "run's results.json")
            except InputError as exc:
                problems.append(Problem(str(path), None, f"skipped: {'; '.join(p.message for p in exc.problems)}"))
                continue
            page = path.with_name("report.html")
            runs.append(Run(result, str(path), page.resolve().as_uri() if page.is_file() else None))
    runs.sort(key=lambda r: (r.result.started_at, r.result.run_id))
    return runs, problems


# ------------------------------------------------------------------------------------------------ trends


def trends(runs: list[Run]) -> dict[str, list[dict[str, Any]]]:
    """``suite.metric`` -> one point per run that gated it (value, interval, threshold, verdict)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for i, run in enumerate(runs):
        for agg in run.result.aggregates:
            if agg.threshold is None or agg.value is None:
                continue
            out.setdefault(f"{agg.suite}.{agg.metric}", []).append(
                {
                    "run": i,
                    "value": agg.value,
                    "low": agg.ci_low,
                    "high": agg.ci_high,
                    "threshold": agg.threshold,
                    "direction": agg.direction,
                    "status": agg.status,
                    "verdict": run.result.verdict.verdict,
                }
            )
    return dict(sorted(out.items()))


def trend_svg(name: str, points: list[dict[str, Any]], n_runs: int, width: int = 560, height: int = 150) -> str:
    pad_l, pad_r, pad_t, pad_b = 44, 12, 12, 22
    values = [v for p in points for v in (p["value"], p["low"], p["high"], p["threshold"]) if v is not None]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    span = hi - lo
    lo, hi = lo - 0.05 * span, hi + 0.05 * span

    def x(i: int) -> float:
        return pad_l + (width - pad_l - pad_r) * (i / max(1, n_runs - 1) if n_runs > 1 else 0.5)

    def y(v: float) -> float:
        return float(pad_t + (height - pad_t - pad_b) * (1 - (v - lo) / (hi - lo)))

    parts = [
        f'<svg class="trend" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"<title>{esc(name)}</title>",
        f'<text x="4" y="{y(hi) + 8:.1f}" font-size="10" fill="#57606a">{hi:.2f}</text>',
        f'<text x="4" y="{y(lo):.1f}" font-size="10" fill="#57606a">{lo:.2f}</text>',
    ]
    thresholds = sorted({p["threshold"] for p in points})
    for t in thresholds:
        parts.append(
            f'<line class="threshold" x1="{pad_l}" x2="{width - pad_r}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
            f'stroke="#cf222e" stroke-dasharray="4 3"/>'
        )
    line = " ".join(f"{x(p['run']):.1f},{y(p['value']):.1f}" for p in points)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#8c959f"/>')
    for p in points:
        cx, colour = x(p["run"]), VERDICT_COLOURS.get(p["verdict"], "#57606a")
        if p["low"] is not None and p["high"] is not None:
            parts.append(
                f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(p["low"]):.1f}" y2="{y(p["high"]):.1f}" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
        parts.append(
            f'<circle class="point" cx="{cx:.1f}" cy="{y(p["value"]):.1f}" r="4" fill="{colour}">'
            f"<title>run {p['run'] + 1}: {p['value']:.3f} ({esc(p['verdict'])}, {esc(p['status'])})</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------------------------ compare data


def compare_data(runs: list[Run]) -> list[dict[str, Any]]:
    """What the in-page comparison needs of each run: per case its status, answer excerpt and metric values."""
    from evalgate.core.results import answer_or_error

    out = []
    for run in runs:
        cases = {
            c.id: {
                "s": c.status,
                "a": answer_or_error(c)[:ANSWER_CHARS],
                "m": {k: (None if m.value is None else round(m.value, 3)) for k, m in sorted(c.metrics.items())},
            }
            for c in run.result.cases
        }
        out.append({"id": run.result.run_id, "verdict": run.result.verdict.verdict, "cases": cases})
    return out


COMPARE_JS = r"""
(function () {
  var data = JSON.parse(document.getElementById('runs-data').textContent);
  var a = document.getElementById('cmp-a'), b = document.getElementById('cmp-b');
  var out = document.getElementById('cmp-out');
  function cell(text, cls) {
    var td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }
  function metrics(m) {
    return Object.keys(m).map(function (k) { return k + ' ' + (m[k] === null ? 'unscored' : m[k]); }).join(', ');
  }
  function render() {
    var ra = data[a.value], rb = data[b.value];
    while (out.firstChild) out.removeChild(out.firstChild);
    var ids = Object.keys(rb.cases).filter(function (id) {
      var x = ra.cases[id], y = rb.cases[id];
      return !x || x.s !== y.s || x.a !== y.a;
    }).sort(function (p, q) { return (rb.cases[p].s === 'pass') - (rb.cases[q].s === 'pass') || (p < q ? -1 : 1); });
    document.getElementById('cmp-count').textContent = ids.length + ' of ' + Object.keys(rb.cases).length +
      ' cases changed between ' + ra.id + ' (' + ra.verdict + ') and ' + rb.id + ' (' + rb.verdict + ')';
    ids.forEach(function (id) {
      var x = ra.cases[id] || {s: '—', a: '', m: {}}, y = rb.cases[id], tr = document.createElement('tr');
      tr.className = 'cmp-row';
      tr.appendChild(cell(id, 'cid'));
      tr.appendChild(cell(x.s + ' → ' + y.s, y.s === 'pass' ? 'ok' : 'bad'));
      tr.appendChild(cell(x.a));
      tr.appendChild(cell(y.a));
      tr.appendChild(cell(metrics(x.m) + ' → ' + metrics(y.m), 'small'));
      out.appendChild(tr);
    });
  }
  a.addEventListener('change', render);
  b.addEventListener('change', render);
  render();
})();
"""

CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1f2328; }
main { max-width: 1200px; margin: 0 auto; padding: 0 1.2rem 3rem; }
header { background: #24292f; color: #fff; padding: 1rem 1.6rem; } header h1 { margin: 0; font-size: 1.6rem; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .25rem; margin-top: 1.6rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } .charts { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem; }
figcaption { font-size: 12px; color: #57606a; } .muted { color: #57606a; }
.v-PASS { color: #1a7f37; font-weight: 600; } .v-FAIL, .v-ERROR { color: #cf222e; font-weight: 600; }
.v-REVIEW { color: #9a6700; font-weight: 600; } .bad { color: #cf222e; } .ok { color: #1a7f37; }
.cid { font-family: ui-monospace, monospace; } .small { font-size: 12px; color: #57606a; }
"""


def _hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def render_site(runs: list[Run]) -> str:
    rows = []
    for i, run in enumerate(runs):
        r = run.result
        v = r.verdict.verdict
        link = f'<a href="{esc(run.report)}">report</a>' if run.report else '<span class="muted">—</span>'
        rows.append(
            f'<tr><td>{i + 1}</td><td class="cid">{esc(r.run_id)}</td><td>{esc(r.started_at)}</td>'
            f'<td class="cid">{esc((r.commit or "")[:12])}</td><td>{esc(r.tier)}</td>'
            f'<td class="v-{esc(v)}">{esc(v)} ({esc(VERDICT_WORDS.get(v, ""))})</td><td>{link}</td></tr>'
        )
    charts = "".join(
        f"<figure>{trend_svg(name, pts, len(runs))}<figcaption>{esc(name)} — threshold "
        f"{esc((pts[-1]['direction'] == 'max' and '≤') or '≥')} {pts[-1]['threshold']:g}; points coloured by the "
        "run's verdict, bars are intervals</figcaption></figure>"
        for name, pts in trends(runs).items()
    )
    options = "".join(
        f'<option value="{i}">{i + 1}: {esc(r.result.run_id)} ({esc(r.result.verdict.verdict)})</option>'
        for i, r in enumerate(runs)
    )
    data = json.dumps(compare_data(runs), separators=(",", ":")).replace("<", "\\u003c")  # inert in HTML
    last = max(0, len(runs) - 1)
    prev = max(0, len(runs) - 2)
    select_b = options.replace(f'<option value="{last}">', f'<option value="{last}" selected>')
    select_a = options.replace(f'<option value="{prev}">', f'<option value="{prev}" selected>')
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
        f"script-src '{_hash(COMPARE_JS)}'"
    )
    span = f"{runs[0].result.started_at} to {runs[-1].result.started_at}" if runs else "no runs"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f"<title>evalgate history — {len(runs)} runs</title><style>{CSS}</style></head><body>"
        f"<header><h1>evalgate history</h1><p>{len(runs)} runs, {esc(span)}</p></header><main>"
        f'<section><h2>Trends of the gated metrics</h2><div class="charts">{charts or "<p>No gated metric.</p>"}'
        "</div></section>"
        "<section><h2>Compare two runs</h2>"
        f'<label>from <select id="cmp-a">{select_a}</select></label> '
        f'<label>to <select id="cmp-b">{select_b}</select></label> <span id="cmp-count" class="muted"></span>'
        "<table><thead><tr><th>case</th><th>status</th><th>answer (from)</th><th>answer (to)</th>"
        '<th>metrics</th></tr></thead><tbody id="cmp-out"></tbody></table>'
        '<p class="muted">Every case of either run in full: <code>evalgate history --compare A B</code> writes the '
        "case explorer of B against A.</p></section>"
        "<section><h2>Runs</h2><table><tr><th>#</th><th>run</th><th>started</th><th>commit</th><th>tier</th>"
        f"<th>verdict</th><th>report</th></tr>{''.join(reversed(rows))}</table></section>"
        f'</main><script type="application/json" id="runs-data">{data}</script>'
        f"<script>{COMPARE_JS}</script></body></html>\n"
    )


def compare_page(runs: list[Run], first: str, second: str) -> str:
    """The case explorer of run ``second`` against run ``first`` (ids or 1-based positions)."""
    from evalgate.reports.html import render_html

    def pick(key: str) -> RunResult:
        for i, run in enumerate(runs):
            if run.result.run_id == key or (key.isdigit() and int(key) == i + 1):
                return run.result
        raise InputError.single("--compare", None, f"no run {key!r} (give a run id or a position 1..{len(runs)})")

    return render_html(pick(second), baseline=pick(first))


def write_site(runs: list[Run], out: str, compare: tuple[str, str] | None = None, client: Any = None) -> list[str]:
    """Write index.html (and the comparison page) into a folder or an s3:// prefix; returns where."""
    pages = {"index.html": render_site(runs)}
    if compare is not None:
        name = "compare-" + "-".join(re.sub(r"[^A-Za-z0-9._-]", "_", c) for c in compare) + ".html"
        pages[name] = compare_page(runs, *compare)
    written = []
    if out.startswith("s3://"):
        from evalgate.adapters.s3 import split_s3_url

        if client is None:
            from evalgate.adapters.aws import make_client

            client = make_client("s3")
        bucket, prefix = split_s3_url(out)
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        for name, text in pages.items():
            client.put_object(Bucket=bucket, Key=prefix + name, Body=text.encode(), ContentType="text/html")
            written.append(f"s3://{bucket}/{prefix}{name}")
        return written
    from evalgate.core.inputs import write_lines_atomic

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError.single(out, None, "--out must be a folder")
    for name, text in pages.items():
        write_lines_atomic(folder / name, [text])
        written.append(str(folder / name))
    return written
