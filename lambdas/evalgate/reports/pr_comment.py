"""The pull-request comment: the verdict in words, what regressed, baseline vs candidate answers, cost, links.

One comment per pull request, found again by ``MARKER`` and updated in place on every push. The text is
Markdown from ``evalgate.reports.markdown``'s escaping (model output never becomes a link, an image or HTML).
"""

from __future__ import annotations

from typing import Any

from evalgate.core.results import CaseResult, RunResult, answer_or_error, excerpt
from evalgate.reports.common import fmt_usd, worst_cases
from evalgate.reports.markdown import VERDICT_ICONS, md_text, table

MARKER = "<!-- evalgate:pull-request-comment -->"
MAX_CHARS = 60_000  # GitHub refuses comment bodies over 65,536 characters
CHANGED_CASES = 8
ANSWER_CHARS = 240

VERDICT_WORDS = {
    "PASS": "passes the quality gate",
    "FAIL": "fails the quality gate: merging it would block the release",
    "REVIEW": "needs a person's review before it can ship",
    "ERROR": "could not be evaluated: the gate could not decide",
}


def changed_cases(result: RunResult, baseline: RunResult | None) -> list[tuple[CaseResult, CaseResult | None]]:
    """Cases that got worse than the baseline (passing there, not here) first, then the other failing cases."""
    worse: list[tuple[CaseResult, CaseResult | None]] = []
    if baseline is not None:
        for case in result.cases:
            before = baseline.case(case.id)
            if before is not None and before.status == "pass" and case.status != "pass":
                worse.append((case, before))
    seen = {c.id for c, _ in worse}
    rest = [(c, baseline.case(c.id) if baseline else None) for c in worst_cases(result, k=CHANGED_CASES)]
    return (worse + [(c, b) for c, b in rest if c.id not in seen])[:CHANGED_CASES]


def fixed_count(result: RunResult, baseline: RunResult | None) -> int:
    if baseline is None:
        return 0
    return sum(
        1
        for case in result.cases
        if case.status == "pass" and (b := baseline.case(case.id)) is not None and b.status != "pass"
    )


def render_comment(
    result: RunResult,
    baseline: RunResult | None = None,
    *,
    report_url: str | None = None,
    commit: str | None = None,
    tickets: list[dict[str, Any]] | None = None,
) -> str:
    v = result.verdict
    icon = VERDICT_ICONS.get(v.verdict, "")
    lines = [MARKER, f"## {icon} evalgate: {v.verdict} — this change {VERDICT_WORDS.get(v.verdict, '')}", ""]
    where = f"commit `{md_text(commit[:12])}` · " if commit else ""
    lines.append(
        f"{where}tier `{md_text(result.tier)}` · {len(result.cases)} cases · cost {fmt_usd(result.usage.cost_usd)} "
        f"({result.usage.model_calls} model calls, {result.usage.cache_hits} from cache)"
    )
    lines += ["", "**Why**", ""] + [f"- {md_text(r)}" for r in v.reasons[:8]]
    changed = changed_cases(result, baseline)
    if baseline is not None:
        worse = sum(1 for c, b in changed if b is not None and b.status == "pass")
        lines += [
            "",
            f"Against the approved baseline: **{worse}** case(s) now fail, {fixed_count(result, baseline)} fixed.",
        ]
    if changed:
        lines += ["", "**Cases to look at**", ""]
        rows = [
            [
                md_text(c.id),
                md_text(f"{c.suite} / {c.category}"),
                md_text(f"{b.status} → {c.status}" if b is not None else c.status),
                md_text(excerpt(answer_or_error(b), ANSWER_CHARS)) if b is not None else "—",
                md_text(excerpt(answer_or_error(c), ANSWER_CHARS)),
                md_text(excerpt("; ".join(c.failures), ANSWER_CHARS)),
            ]
            for c, b in changed
        ]
        lines += table(["case", "suite / category", "status", "baseline answer", "candidate answer", "why"], rows)
    if tickets:
        lines += ["", "**Known errors (tickets)**", ""]
        lines += [
            f"- {md_text(t.get('title', ''))}: {md_text(t.get('id', ''))} ({md_text(t.get('state', ''))})"
            for t in tickets
        ]
    if result.warnings:
        lines += ["", "**Warnings**", ""] + [f"- {md_text(w)}" for w in result.warnings]
    if report_url:
        lines += ["", f"Full report: {md_text(report_url)}"]
    body = "\n".join(lines) + "\n"
    if len(body) > MAX_CHARS:
        body = body[: MAX_CHARS - 80].rsplit("\n", 1)[0] + "\n\n_(comment shortened; the full report has everything)_\n"
    return body


def status_for(result: RunResult) -> tuple[str, str]:
    """Commit status state and description (GitHub: success | failure | error | pending)."""
    v = result.verdict.verdict
    state = {"PASS": "success", "FAIL": "failure", "REVIEW": "failure", "ERROR": "error"}.get(v, "error")
    first = result.verdict.reasons[0] if result.verdict.reasons else ""
    return state, excerpt(f"{v}: {first}", 140)
