"""``summary.md``: the verdict and the evidence behind it, for an email, a PR comment or a CodeBuild log.

All text that came from a model, a dataset or a config (answers, reasons, categories) goes through ``md_text``,
so a pipe cannot break a table and markup in an answer cannot become a link, an image or HTML.
"""

from __future__ import annotations

import re
from typing import Any

from evalgate.core.results import (
    Aggregate,
    CaseResult,
    Comparison,
    Diversity,
    Drift,
    HallucinationItem,
    RunResult,
    answer_or_error,
    excerpt,
    hallucination_items,
    one_line,
)
from evalgate.reports.common import (
    NotRunItem,
    UnscoredSummary,
    agreement_text,
    case_reasons,
    confidence_label,
    digits_for,
    disagreement_text,
    failing_metric,
    finding_source,
    fmt_ci,
    fmt_int,
    fmt_num,
    fmt_pct,
    fmt_usd,
    grounding_agreement,
    hallucination_checked,
    identity_rows,
    identity_text,
    is_gated,
    judge_trust_lines,
    not_run_items,
    threshold_text,
    unscored_summary,
    usage_cell,
    worst_cases,
)

VERDICT_ICONS = {"PASS": "✅", "FAIL": "❌", "REVIEW": "🟡", "ERROR": "🛑"}
STATUS_ICONS = {
    "pass": "✅ pass",
    "fail": "❌ fail",
    "borderline": "⚠️ borderline",
    "insufficient": "⚠️ insufficient data",
    "not_run": "⏭️ not run",
    "not_gated": "— not gated",
}
UNSCORED_IDS_SHOWN = 20
# Only what can change structure: pipes split table cells, "<" opens HTML and autolinks, a backtick opens a
# code span, and a backslash would escape whatever we put after it. Links and images need "](", which
# ``md_text`` breaks separately. Emphasis is left alone so plain-text readers (email) are not buried in backslashes.
_MD_SPECIAL = re.compile(r"([\\`<|])")


# --------------------------------------------------------------------------------------------------- escaping


def md_text(text: object) -> str:
    """User text on one line, with structural Markdown/HTML punctuation backslash-escaped (pipes included)."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(str(text))).replace("](", "]\\(")


def md_code(text: object) -> str:
    """An identifier in a code span (falls back to escaped text when it contains a backtick)."""
    s = one_line(str(text))
    return md_text(s) if "`" in s or "|" in s else f"`{s}`"


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out.extend("| " + " | ".join(cell or " " for cell in row) + " |" for row in rows)
    return out


# --------------------------------------------------------------------------------------------------- sections


def header_section(result: RunResult) -> list[str]:
    v = result.verdict
    title = " ".join(filter(None, [VERDICT_ICONS.get(v.verdict), v.verdict]))
    lines = [f"# {title} — exit code {v.exit_code}", ""]
    lines.append(
        f"Run {md_code(result.run_id)} · tier {md_code(result.tier)} · suites "
        f"{', '.join(md_text(s) for s in result.suites) or '—'} · repeats {result.repeats} · "
        f"{md_text(result.started_at)} → {md_text(result.finished_at)} · evalgate {md_text(result.tool_version)}"
    )
    lines += ["", "## Why", ""]
    lines += [f"- {md_text(r)}" for r in v.reasons] or ["- (the gate gave no reasons)"]
    if result.warnings:
        lines += ["", "## Warnings", ""] + [f"- ⚠️ {md_text(w)}" for w in result.warnings]
    if result.tickets:
        lines += ["", "## Known errors (tickets)", ""]
        lines += [
            f"- {md_text(t.get('title', ''))}: {md_text(t.get('id', ''))} ({ticket_state(t)})" for t in result.tickets
        ]
    return lines


def ticket_state(ticket: dict[str, object]) -> str:
    seen = f"seen {ticket.get('count', 1)}×"
    return f"new, {seen}" if ticket.get("created") else f"already open, {seen}"


def aggregate_row(agg: Aggregate) -> list[str]:
    return [
        md_code(agg.metric),
        md_text(agg.suite),
        fmt_ci(agg.value, agg.ci_low, agg.ci_high),
        threshold_text(agg),
        STATUS_ICONS.get(agg.status, agg.status),
        str(agg.n),
        str(agg.n_unscored),
        md_text(agg.note),
    ]


def aggregates_section(result: RunResult) -> list[str]:
    ci = confidence_label(result)
    headers = ["metric", "suite", f"value [{ci}]", "threshold", "status", "n", "unscored", "note"]
    gated = [a for a in result.aggregates if is_gated(a)]
    other = [a for a in result.aggregates if not is_gated(a)]
    lines = ["", "## Gated aggregates", ""]
    lines += table(headers, [aggregate_row(a) for a in gated]) if gated else ["No gated aggregates in this run."]
    if other:
        lines += ["", "### Other measurements (not gated)", ""]
        lines += table(headers, [aggregate_row(a) for a in other])
    methods = sorted({a.method for a in result.aggregates if a.method != "none"})
    if methods:
        lines += ["", f"Intervals: {ci}, {' / '.join(methods)}."]
    return lines


def comparison_row(c: Comparison) -> list[str]:
    flag = "❌ exceeds max regression" if c.exceeds else ("⚠️ worse" if c.worse else "")
    if c.evidence():
        flag = f"{flag} ({md_text(c.evidence())})" if flag else md_text(c.evidence())
    return [
        md_code(c.label),
        md_text(c.suite),
        str(c.n_paired),
        fmt_num(c.baseline),
        fmt_num(c.candidate),
        fmt_ci(c.diff, c.ci_low, c.ci_high, signed=True),
        flag,
    ]


def comparison_section(result: RunResult, baseline: RunResult | None) -> list[str]:
    if not result.comparisons and not result.baseline and baseline is None:
        return ["", "## Baseline comparison", "", "No baseline was given: nothing to compare against."]
    lines = ["", "## Baseline comparison", ""]
    if result.baseline:
        lines += [f"Baseline: {md_text(identity_text(result.baseline))}", ""]
    if baseline is not None:
        lines += [
            (
                f"Baseline run {md_code(baseline.run_id)} ({md_text(baseline.finished_at)}, "
                f"tier {md_code(baseline.tier)}, verdict {baseline.verdict.verdict})."
            ),
            "",
        ]
    headers = ["metric", "suite", "paired n", "baseline", "candidate", f"diff [{confidence_label(result)}]", "flag"]
    if result.comparisons:
        lines += table(headers, [comparison_row(c) for c in result.comparisons])
    else:
        lines.append("No paired comparisons were computed.")
    return lines


def drift_section(drift: Drift | None) -> list[str]:
    if drift is None:
        return []
    noise = (
        f"{fmt_num(drift.noise)} (measured between repeats)"
        if drift.noise_measured
        else f"{fmt_num(drift.noise)} (NOT measured: run with repeats > 1 to separate drift from noise)"
    )
    verdict = "needs review" if drift.review else ("significant" if drift.significant else "within noise")
    digits = digits_for([drift.score, drift.ci_low, drift.ci_high])
    return [
        "",
        "### Drift vs baseline answers",
        "",
        (
            f"- drift score: {fmt_ci(drift.score, drift.ci_low, drift.ci_high)} "
            f"(threshold {fmt_num(drift.threshold, digits)}) → **{verdict}**"
        ),
        f"- raw change (1 − cos): {fmt_num(drift.raw)}; run-to-run noise: {noise}",
        f"- paired answers: {drift.n_paired}",
    ]


def diversity_section(div: Diversity | None) -> list[str]:
    if div is None:
        return []
    lines = [
        "",
        "### Output diversity",
        "",
        f"- distinct-1 {fmt_num(div.distinct_1)}, distinct-2 {fmt_num(div.distinct_2)} "
        f"(baseline {fmt_num(div.baseline_distinct_2)}), dispersion {fmt_num(div.dispersion)} "
        f"(baseline {fmt_num(div.baseline_dispersion)})" + (" → **collapsed**" if div.collapsed else ""),
    ]
    if div.note:
        lines.append(f"- {md_text(div.note)}")
    return lines


def not_run_section(items: list[NotRunItem]) -> list[str]:
    lines = ["", "## Not run in this tier", ""]
    if not items:
        return [*lines, "Every configured metric was computed."]
    for i in items:
        where = f" ({md_text(i.suite)})" if i.suite else ""
        lines.append(f"- {md_code(i.metric)}{where}: {md_text(i.reason) or 'no reason given'}")
    return lines


def worst_case_row(case: CaseResult) -> list[str]:
    metric = failing_metric(case) if case.status == "fail" else None
    value = case.value(metric) if metric else None
    metric_cell = f"{md_code(metric)} = {fmt_num(value)}" if metric else md_text(case.status)
    return [
        md_code(case.id),
        md_text(f"{case.suite} / {case.category}"),
        metric_cell,
        md_text("; ".join(case_reasons(case))),
        md_text(excerpt(answer_or_error(case))),
    ]


def worst_cases_section(result: RunResult) -> list[str]:
    cases = worst_cases(result)
    if not cases:
        return ["", "## Worst cases", "", "Every case passed." if result.cases else "No cases were run."]
    failing = sum(c.status != "pass" for c in result.cases)
    lines = ["", f"## Worst cases ({len(cases)} of {failing} not passing)", ""]
    headers = ["case", "suite / category", "failing metric", "reasons", "answer (excerpt)"]
    return lines + table(headers, [worst_case_row(c) for c in cases])


def hallucination_line(h: HallucinationItem, source: str = "judge") -> str:
    parts = [f"- {md_code(h.case_id)} ({md_text(h.suite)} / {md_text(h.category)})"]
    if h.claims:
        parts.append("unsupported claims: " + "; ".join(f"“{md_text(c)}”" for c in h.claims))
    if h.reason:
        parts.append(f"{source}: {md_text(h.reason)}")
    if h.answer:
        parts.append(f"answer: “{md_text(excerpt(h.answer))}”")
    return " — ".join(parts)


def hallucinations_section(result: RunResult) -> list[str]:
    items = hallucination_items(result)
    if not items:
        note = "none detected" if hallucination_checked(result) else "not checked in this tier (see Not run)"
        return ["", "## Hallucinations", "", f"Hallucinations: {note}."]
    title = (
        "Hallucinations found (review even though the run passed)"
        if result.verdict.verdict == "PASS"
        else "Hallucinations found"
    )
    return ["", f"## {title} — {len(items)}", ""] + [hallucination_line(h, finding_source(result)) for h in items]


def unscored_section(result: RunResult, summary: UnscoredSummary) -> list[str]:
    budget = fmt_pct(summary.budget) if summary.budget is not None else "not set"
    state = "**over budget**: the run cannot pass" if summary.over_budget else "within budget"
    lines = [
        "",
        "## Unscored",
        "",
        f"{summary.count} of {summary.total} cases unscored ({fmt_pct(summary.rate)}); budget {budget} → {state}.",
    ]
    ids = [c.id for c in result.cases if c.status == "unscored"]
    if ids:
        shown = ", ".join(md_code(i) for i in ids[:UNSCORED_IDS_SHOWN])
        more = f" and {len(ids) - UNSCORED_IDS_SHOWN} more" if len(ids) > UNSCORED_IDS_SHOWN else ""
        lines.append(f"Unscored cases: {shown}{more}.")
    return lines


def usage_section(result: RunResult) -> list[str]:
    u = result.usage
    lines = ["", "## Usage", ""]
    totals = [fmt_int(u.model_calls), fmt_int(u.cache_hits), fmt_int(u.input_tokens), fmt_int(u.output_tokens)]
    lines += table(
        ["model calls", "cache hits", "input tokens", "output tokens", "cost"], [[*totals, fmt_usd(u.cost_usd)]]
    )
    if u.by_model:
        keys = sorted({k for stats in u.by_model.values() for k in stats})
        rows = [[md_code(model), *(usage_cell(k, stats.get(k)) for k in keys)] for model, stats in u.by_model.items()]
        lines += ["", *table(["model", *(md_text(k) for k in keys)], rows)]
    return lines


def judge_trust_section(result: RunResult) -> list[str]:
    lines = judge_trust_lines(result)
    if not lines:
        return []
    return ["", "## Judge and stability", "", *(f"- {md_text(line)}" for line in lines)]


FAULT_COLUMNS = (
    ("calls", "calls sent"),
    ("throttles", "throttled"),
    ("transient_errors", "5xx / timeouts"),
    ("retries", "retries"),
    ("malformed_retries", "judge replies asked again"),
    ("gave_up", "given up"),
    ("unscored", "unscored"),
    ("errors", "errors"),
)


def grounding_section(result: RunResult) -> list[str]:
    """The guardrail's contextual grounding check against the judge (only when the run has its scores)."""
    pairs = grounding_agreement(result)
    if not pairs:
        return []
    lines = ["", "## Guardrail grounding vs the judge", ""]
    for a in pairs:
        lines.append(f"- {md_text(agreement_text(a))}")
        for d in a.disagreements:
            lines.append(
                f"  - [{md_code(d.case_id)}](report.html#case-{d.case_id}): {md_text(disagreement_text(a, d))}"
            )
    return lines


def faults_section(result: RunResult) -> list[str]:
    """Throttles, retries, unscored and errors per model, and what the concurrency limit did (retry policy)."""
    faults = result.faults or {}
    models: dict[str, dict[str, Any]] = faults.get("models") or {}
    if not models:
        return []
    lines = ["", "## Faults and retries", ""]
    conc = faults.get("concurrency") or {}
    if conc:
        lines.append(
            f"Concurrency: at most {conc.get('max')}, floor {conc.get('floor')}, lowest {conc.get('lowest')}, "
            f"final {conc.get('final')} ({conc.get('decreases', 0)} decrease(s) after throttling); "
            f"time budget {faults.get('time_budget_s') or '—'} s."
        )
        lines.append("")
    rows = [
        [md_code(model), *(fmt_int(int(stats.get(key) or 0)) for key, _ in FAULT_COLUMNS)]
        for model, stats in models.items()
    ]
    lines += table(["model", *(label for _, label in FAULT_COLUMNS)], rows)
    last = [(m, s.get("last_error")) for m, s in models.items() if s.get("gave_up") and s.get("last_error")]
    lines += [f"- {md_code(m)} gave up: {md_text(str(e))}" for m, e in last]
    return lines


def identities_section(result: RunResult) -> list[str]:
    lines = ["", "## What was evaluated", ""]
    lines += [f"- **{label}**: {md_text(identity_text(ident)) or '—'}" for label, ident in identity_rows(result)]
    return lines


# --------------------------------------------------------------------------------------------------- document


def render_markdown(result: RunResult, baseline: RunResult | None = None) -> str:
    """The summary. Comparisons come from ``result``; ``baseline`` (the approved run) only names their source."""
    lines = header_section(result)
    lines += aggregates_section(result)
    lines += comparison_section(result, baseline)
    lines += drift_section(result.drift)
    lines += diversity_section(result.diversity)
    lines += judge_trust_section(result)
    lines += grounding_section(result)
    lines += not_run_section(not_run_items(result))
    lines += worst_cases_section(result)
    lines += hallucinations_section(result)
    lines += unscored_section(result, unscored_summary(result))
    lines += usage_section(result)
    lines += faults_section(result)
    lines += identities_section(result)
    return "\n".join(lines) + "\n"
