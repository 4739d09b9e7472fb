"""Shared, format-independent views of a ``RunResult`` used by the JUnit, Markdown and HTML renderers.

Everything here is pure: it reads a run record and returns plain values, so each renderer only decides how
things look, never what they mean.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from evalgate.core.config import GROUNDING_METRICS, THRESHOLD_DIRECTIONS
from evalgate.core.results import Aggregate, CaseResult, RunResult, first_value
from evalgate.core.stats import cohen_kappa, spearman

# Per-case metric names (and fragments of aggregate names) where a lower value is better.
LOWER_IS_BETTER_HINTS = ("hallucination", "injection", "latency", "error", "leak", "cost", "unscored", "toxic")
GATED_STATUSES = frozenset({"pass", "fail", "borderline", "insufficient"})
CASE_STATUS_RANK = {"fail": 0, "error": 1, "unscored": 2, "pass": 3}
WORST_CASES = 5


# --------------------------------------------------------------------------------------------------- numbers


def is_number(x: float | None) -> bool:
    return x is not None and not (isinstance(x, float) and (math.isnan(x) or math.isinf(x)))


def digits_for(values: Iterable[float | None]) -> int:
    """Decimals for a group shown together (a value and its interval): set by the largest magnitude, so
    ``0.91 [0.88, 0.94]``, ``0.021 [0.004, 0.038]`` and ``1450 ms`` all read naturally."""
    finite = [abs(v) for v in values if v is not None and is_number(v)]
    top = max(finite, default=1.0)
    if top >= 100:
        return 0
    if top >= 0.1 or top == 0:
        return 2
    return 3 if top >= 0.01 else 4


def fmt_num(x: float | None, digits: int | None = None) -> str:
    if x is None or not is_number(x):
        return "—"
    d = digits_for([x]) if digits is None else digits
    return f"{x:.{d}f}"


def fmt_signed(x: float | None, digits: int | None = None) -> str:
    if x is None or not is_number(x):
        return "—"
    d = digits_for([x]) if digits is None else digits
    return f"{x:+.{d}f}"


def fmt_ci(value: float | None, low: float | None, high: float | None, signed: bool = False) -> str:
    """``0.91 [0.88, 0.94]`` (or just the value when there is no interval)."""
    d = digits_for([value, low, high])
    fmt = fmt_signed if signed else fmt_num
    if low is None or high is None or not is_number(low) or not is_number(high):
        return fmt(value, d)
    return f"{fmt(value, d)} [{fmt(low, d)}, {fmt(high, d)}]"


def fmt_pct(x: float | None) -> str:
    return "—" if x is None or not is_number(x) else f"{100 * x:.1f}%"


def fmt_usd(x: float | None) -> str:
    return "—" if x is None or not is_number(x) else f"${x:,.4f}"


def fmt_int(x: float | None) -> str:
    return "—" if x is None else f"{int(x):,}"


def usage_cell(key: str, value: float | None) -> str:
    """One per-model usage figure: dollars for cost keys, integers for counts."""
    if value is None:
        return "—"
    if "cost" in key or "usd" in key:
        return fmt_usd(value)
    return fmt_int(value) if float(value).is_integer() else fmt_num(value)


def confidence_label(result: RunResult) -> str:
    gate = result.config.get("gate") if isinstance(result.config, dict) else None
    level = gate.get("confidence") if isinstance(gate, dict) else None
    if isinstance(level, (int, float)) and 0 < level < 1:
        return f"{100 * level:g}% CI"
    return "95% CI"


# --------------------------------------------------------------------------------------------------- metrics


def lower_is_better(metric: str, direction: str | None = None) -> bool:
    """True when smaller values of ``metric`` are better (rates of bad events, latency)."""
    if direction in ("min", "max"):
        return direction == "max"
    if metric in THRESHOLD_DIRECTIONS:
        return THRESHOLD_DIRECTIONS[metric] == "max"
    return any(h in metric for h in LOWER_IS_BETTER_HINTS)


def is_gated(agg: Aggregate) -> bool:
    return agg.threshold is not None or agg.status in GATED_STATUSES


def threshold_text(agg: Aggregate, digits: int | None = None) -> str:
    if agg.threshold is None:
        return "—"
    op = "≤" if lower_is_better(agg.metric, agg.direction) else "≥"
    d = digits if digits is not None else digits_for([agg.threshold, agg.value])
    return f"{op} {fmt_num(agg.threshold, d)}"


def badness(metric: str, value: float | None) -> float:
    """How bad one per-case value is, on [0, 1] (1 worst). Unscored counts as worst: fail closed."""
    if value is None or not is_number(value):
        return 1.0
    v = min(max(value, 0.0), 1.0)
    return v if lower_is_better(metric) else 1.0 - v


def case_metric_names(cases: Iterable[CaseResult]) -> list[str]:
    """Metric names in first-seen order."""
    names: dict[str, None] = {}
    for c in cases:
        for name in c.metrics:
            names.setdefault(name, None)
    return list(names)


def metric_values(cases: Iterable[CaseResult], metric: str) -> list[float]:
    out: list[float] = []
    for c in cases:
        v = c.value(metric)
        if v is not None and is_number(v):
            out.append(float(v))
    return out


@functools.lru_cache(maxsize=256)
def _named(metric: str) -> re.Pattern[str]:
    """The metric's name as a whole word (compiled once per name: reports ask for every failing case, often)."""
    return re.compile(rf"(?<![\w]){re.escape(metric)}(?![\w])")


def failing_metric(case: CaseResult) -> str | None:
    """The metric a failing case failed on: the first metric named in its first failure, else its worst metric."""
    scored = [n for n, m in case.metrics.items() if m.value is not None]
    for reason in case.failures:
        named = [n for n in case.metrics if _named(n).search(reason)]
        if named:
            return max(named, key=len)  # "hallucination_rate" over "hallucination"
    if not scored:
        return None
    return max(scored, key=lambda n: badness(n, case.value(n)))


def worst_cases(result: RunResult, k: int = WORST_CASES) -> list[CaseResult]:
    """Failing cases, worst first: failed before errored before unscored, then by how bad the failing metric is."""
    return worst_of(result.cases, k)


def worst_of(cases: Iterable[CaseResult], k: int = WORST_CASES) -> list[CaseResult]:
    def key(c: CaseResult) -> tuple[int, float, str]:
        metric = failing_metric(c)
        return (CASE_STATUS_RANK[c.status], -badness(metric, c.value(metric)) if metric else -1.0, c.id)

    return sorted((c for c in cases if c.status != "pass"), key=key)[:k]


def finding_source(result: RunResult) -> str:
    """Who flagged a hallucination: the judge in a judged tier, else the rule check on numbers."""
    return "judge" if result.judge else "rule check"


def cases_in_display_order(cases: Iterable[CaseResult]) -> list[CaseResult]:
    return sorted(cases, key=lambda c: (CASE_STATUS_RANK[c.status], c.suite, c.id))


def unscored_reasons(case: CaseResult) -> list[str]:
    reasons = [f"{n}: {m.reason or 'unscored'}" for n, m in case.metrics.items() if m.unscored or m.value is None]
    return reasons or list(case.failures) or ["no metric could be scored"]


def error_reasons(case: CaseResult) -> list[str]:
    errors = [f"repeat {g.repeat}: {g.error}" for g in case.generations if g.error]
    return list(case.failures) + errors or ["the candidate or the judge errored"]


def case_reasons(case: CaseResult) -> list[str]:
    if case.status == "unscored":
        return unscored_reasons(case)
    if case.status == "error":
        return error_reasons(case)
    return list(case.failures)


@dataclass(frozen=True)
class NotRunItem:
    metric: str
    reason: str
    suite: str = ""


def not_run_items(result: RunResult) -> list[NotRunItem]:
    """Metrics this tier could not compute, from ``result.not_run`` and from aggregates marked ``not_run``."""
    items: list[NotRunItem] = []
    seen: set[tuple[str, str]] = set()
    for entry in result.not_run:
        metric = str(first_value(entry, "metric", "name") or "?")
        suite = str(first_value(entry, "suite") or "")
        reason = str(first_value(entry, "reason", "why", "note") or "")
        extra = {k: v for k, v in entry.items() if k not in {"metric", "name", "suite", "reason", "why", "note"}}
        if extra:
            reason = "; ".join([reason] * bool(reason) + [f"{k}: {v}" for k, v in extra.items()])
        items.append(NotRunItem(metric, reason, suite))
        seen.add((metric, suite))
    for agg in result.aggregates:
        if agg.status == "not_run" and (agg.metric, agg.suite) not in seen and (agg.metric, "") not in seen:
            items.append(NotRunItem(agg.metric, agg.note, agg.suite))
    return items


def hallucination_checked(result: RunResult) -> bool:
    """False when hallucination was never measured in this run (so 'none found' would be misleading)."""
    if any("hallucination" in c.metrics or c.hallucinated is not None for c in result.cases):
        return True
    return not any("hallucination" in i.metric for i in not_run_items(result))


@dataclass(frozen=True)
class UnscoredSummary:
    count: int
    total: int
    rate: float | None
    budget: float | None

    @property
    def over_budget(self) -> bool:
        return self.rate is not None and self.budget is not None and self.rate > self.budget


def unscored_summary(result: RunResult) -> UnscoredSummary:
    u = result.unscored
    count = int(u["count"]) if "count" in u else sum(c.status == "unscored" for c in result.cases)
    total = int(u["total"]) if "total" in u else len(result.cases)
    rate = u.get("rate")
    if rate is None and total:
        rate = count / total
    budget = u.get("budget")
    if budget is None:
        gate = result.config.get("gate")
        budget = gate.get("unscored_budget") if isinstance(gate, dict) else None
    return UnscoredSummary(count, total, rate, float(budget) if budget is not None else None)


def identity_rows(result: RunResult) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = [("candidate", result.candidate)]
    for label, ident in (("judge", result.judge), ("embedder", result.embedder), ("baseline", result.baseline)):
        if ident:
            rows.append((label, ident))
    return rows


def identity_text(ident: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_scalar(v)}" for k, v in ident.items())


def _scalar(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_scalar(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    return str(v)


def suite_order(result: RunResult) -> list[str]:
    order: dict[str, None] = dict.fromkeys(result.suites)
    for c in result.cases:
        order.setdefault(c.suite, None)
    return list(order)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


# --------------------------------------------------------------------------------------------------- judge trust


def repeat_text(case: CaseResult, repeats: int) -> str | None:
    """``passed 67% of 3 repeats (flaky); spread faithfulness 0.30`` for a case run more than once."""
    if case.repeat_pass_rate is None:
        return None
    spread = "".join(f"; {m} spread {fmt_num(v, 2)}" for m, v in case.score_spread.items())
    return f"passed {fmt_pct(case.repeat_pass_rate)} of {repeats} repeats" + (" (flaky)" if case.flaky else "") + spread


def judge_trust_lines(result: RunResult) -> list[str]:
    """Plain sentences on whether the judge could be trusted and how stable the run was: the calibration record
    of each judge, the judge's self-agreement, a re-scored (or refused) baseline, and flaky cases."""
    lines: list[str] = []
    for c in result.judge_calibration:
        judge = c.get("judge") or {}
        name = f"{judge.get('model_id')} (rubric {str(judge.get('rubric_sha256'))[:12]})"
        if c.get("ok"):
            figs = ", ".join(
                f"{k} {fmt_num(c.get(k), 3)}" for k in ("kappa", "auroc", "agreement") if c.get(k) is not None
            )
            lines.append(f"Judge {name} calibrated: {figs} on {c.get('n')} labelled answers ({c.get('record')})")
        else:
            lines.extend(f"Judge {name} NOT trusted: {p}" for p in c.get("problems", []))
    sa = result.self_agreement
    if sa and not sa.get("n") and not sa.get("unscored"):
        lines.append(
            f"Judge self-agreement: none of the {sa.get('judged', 'judged')} judged answers was borderline or drawn "
            "for a retest this run ([judge_calibration] retest_share)"
        )
    elif sa:
        rate = fmt_ci(sa.get("rate"), sa.get("ci_low"), sa.get("ci_high"))
        lines.append(
            f"Judge self-agreement: {sa.get('agreed')} of {sa.get('n')} re-judged answers on the same side of the "
            f"threshold ({rate}; floor {sa.get('floor')}); {sa.get('borderline')} borderline + {sa.get('random')} "
            f"random" + (f"; {sa.get('unscored')} retests unscored" if sa.get("unscored") else "")
        )
    elif result.judge is not None and not result.skipped:
        lines.append("Judge self-agreement: no judged answer to re-judge")
    rescored = (result.baseline or {}).get("rescored")
    if isinstance(rescored, dict):
        if rescored.get("refused"):
            lines.append(f"Baseline comparison refused: {rescored['refused']}")
        else:
            lines.append(
                "Baseline re-scored with this run's judge/embedder before the paired comparison: "
                + "; ".join(rescored.get("reasons", []))
            )
    if result.repeats > 1:
        flaky = [c for c in result.cases if c.flaky]
        if flaky:
            shown = ", ".join(f"{c.id} ({repeat_text(c, result.repeats)})" for c in flaky)
            lines.append(f"Flaky cases (verdict flips between repeats): {shown}")
        else:
            lines.append(f"No flaky cases: every case reached the same verdict in all {result.repeats} repeats")
    return lines


# ------------------------------------------------------------------------------ guardrail grounding vs the judge

# (the guardrail's contextual grounding metric, the judge's metric it is compared with)
GROUNDING_PAIRS = ((GROUNDING_METRICS["GROUNDING"], "faithfulness"), (GROUNDING_METRICS["RELEVANCE"], "relevance"))


@dataclass
class Disagreement:
    case_id: str
    guardrail: float
    judge: float
    failed_by: str  # "guardrail" (the guardrail fails it, the judge passes it) or "judge"


@dataclass
class GroundingAgreement:
    """How the guardrail's contextual grounding check and the judge agree on the same answers: each case passes
    or fails each one's threshold (the gate's threshold, or for the guardrail without one its own), and the
    scores are rank-correlated."""

    guardrail_metric: str
    judge_metric: str
    n: int
    both_pass: int
    both_fail: int
    disagreements: list[Disagreement]
    kappa: float | None  # Cohen's kappa on pass/fail
    spearman: float | None  # Spearman's rank correlation of the scores
    guardrail_threshold: str  # what the guardrail's pass/fail was measured against

    @property
    def agreement(self) -> float | None:
        return (self.both_pass + self.both_fail) / self.n if self.n else None


def grounding_agreement(result: RunResult) -> list[GroundingAgreement]:
    """The agreement of each guardrail grounding metric with the judge's, over the cases both scored (none when
    the run has no guardrail grounding scores)."""
    limits = {(a.suite, a.metric): a.threshold for a in result.aggregates}
    out: list[GroundingAgreement] = []
    for gm, jm in GROUNDING_PAIRS:
        rows: list[tuple[CaseResult, float, float, bool, bool]] = []
        own: set[float] = set()
        gated = False
        for c in result.cases:
            gv, jv, j_limit = c.value(gm), c.value(jm), limits.get((c.suite, jm))
            if gv is None or jv is None or j_limit is None:
                continue
            g_limit = limits.get((c.suite, gm))
            if g_limit is None:
                detail = c.metrics[gm].details.get("threshold")
                if not isinstance(detail, int | float):
                    continue
                g_limit = float(detail)
                own.add(g_limit)
            else:
                gated = True
            rows.append((c, gv, jv, gv >= g_limit, jv >= j_limit))
        if not rows:
            continue
        disagreements = [
            Disagreement(c.id, gv, jv, "guardrail" if jp else "judge") for c, gv, jv, gp, jp in rows if gp != jp
        ]
        out.append(
            GroundingAgreement(
                guardrail_metric=gm,
                judge_metric=jm,
                n=len(rows),
                both_pass=sum(1 for *_, gp, jp in rows if gp and jp),
                both_fail=sum(1 for *_, gp, jp in rows if not gp and not jp),
                disagreements=disagreements,
                kappa=cohen_kappa([int(not r[3]) for r in rows], [int(not r[4]) for r in rows]),
                spearman=spearman([r[1] for r in rows], [r[2] for r in rows]),
                guardrail_threshold=(
                    "the gate's threshold" + (" (the guardrail's own where unset)" if own else "")
                    if gated
                    else "the guardrail's own threshold " + ", ".join(f"{t:g}" for t in sorted(own))
                ),
            )
        )
    return out


def agreement_text(a: GroundingAgreement) -> str:
    """One sentence per compared pair (the same words in every format)."""
    kappa = fmt_num(a.kappa, 2) if a.kappa is not None else "undefined (one side never changes)"
    rho = fmt_num(a.spearman, 2) if a.spearman is not None else "undefined (too few or constant scores)"
    return (
        f"{a.guardrail_metric} vs the judge's {a.judge_metric}: {a.both_pass + a.both_fail} of {a.n} answers on the "
        f"same side of their thresholds ({fmt_pct(a.agreement)}: {a.both_pass} both pass, {a.both_fail} both fail); "
        f"Cohen's kappa {kappa}; Spearman's rho {rho}; the guardrail against {a.guardrail_threshold}"
    )


def disagreement_text(a: GroundingAgreement, d: Disagreement) -> str:
    g_word, j_word = ("fails", "passes") if d.failed_by == "guardrail" else ("passes", "fails")
    return f"{a.guardrail_metric} {fmt_num(d.guardrail, 2)} {g_word}, {a.judge_metric} {fmt_num(d.judge, 2)} {j_word}"
