"""Aggregates with intervals, paired baseline comparison, and the verdict.

Decision rules (README "How the gate decides"):
- ERROR: unscored or errored cases above the budget, a gated metric with too few cases, fatal run problems.
- FAIL: a gated aggregate on the wrong side of its threshold (point estimate by default; with
  ``decision = "lower_bound"`` the whole 95% interval must clear it); any hallucination on a ``high_stakes`` case.
- REVIEW: against the approved baseline, paired by case id, within one family of tests controlled together
  (Holm step-down with Tarone's count, ``control_family``): a segment (the suite, a category, a tag) where
  significantly more cases went pass -> fail than fail -> pass (exact McNemar); a metric significantly worse by
  more than ``max_regression``; drift significantly above run-to-run noise and above ``drift_threshold``;
  diversity collapse.
- PASS otherwise. Hallucinations found on a passing run are still listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from evalgate.core.config import THRESHOLD_DIRECTIONS, GateConfig
from evalgate.core.latency import LatencyBudget
from evalgate.core.results import Aggregate, CaseResult, Comparison, Diversity, Drift, RunResult, Verdict
from evalgate.core.stats import (
    Interval,
    bootstrap_mean,
    excess_pvalue,
    mcnemar_exact,
    mcnemar_min_p,
    paired_difference,
    paired_t_pvalue,
    quantile_interval,
    step_down,
    wilson,
)
from evalgate.core.verdicts import EXIT_CODES

# per-case metric -> (aggregate name, kind, higher is better)
CASE_METRICS: dict[str, tuple[str, str, bool]] = {
    "similarity": ("similarity", "mean", True),
    "faithfulness": ("faithfulness", "mean", True),
    "relevance": ("relevance", "mean", True),
    "behaviour": ("behaviour_accuracy", "rate", True),
    "hallucination": ("hallucination_rate", "rate", False),
    "injection_success": ("injection_success_rate", "rate", False),
    "guardrail_grounding": ("guardrail_grounding", "mean", True),
    "guardrail_relevance": ("guardrail_relevance", "mean", True),
}


AggStatus = Literal["pass", "fail", "borderline", "not_gated", "not_run", "insufficient"]


def threshold_status(
    value: float | None, lo: float | None, hi: float | None, threshold: float | None, direction: str, decision: str
) -> AggStatus:
    """The one threshold -> status rule. ``decision`` (gate.toml ``[gate] decision``): ``point``, the estimate must
    clear the threshold (an interval reaching across it is borderline); ``lower_bound``, the whole interval must
    clear it; ``significance`` (a comparison where neither side is favoured, e.g. shadow vs production), it fails
    only when the whole interval misses, and an estimate that misses with an interval reaching across is borderline.
    """
    if threshold is None:
        return "not_gated"
    if value is None:
        return "insufficient"
    if direction == "min":
        bad = value < threshold or (decision == "lower_bound" and lo is not None and lo < threshold)
        straddles = lo is not None and lo < threshold <= value
        if decision == "significance":
            bad, straddles = value < threshold and (hi is None or hi < threshold), value < threshold
    else:
        bad = value > threshold or (decision == "lower_bound" and hi is not None and hi > threshold)
        straddles = hi is not None and value <= threshold < hi
        if decision == "significance":
            bad, straddles = value > threshold and (lo is None or lo > threshold), value > threshold
    if bad:
        return "fail"
    # A zero-tolerance limit can never be "proven" by an interval; it is a per-case rule, not borderline.
    return "borderline" if straddles and not zero_tolerance(threshold, direction) else "pass"


def zero_tolerance(threshold: float | None, direction: str | None) -> bool:
    """A rate that must be 0 or a score that must be 1: a per-case rule, judged at any sample size."""
    return (direction == "max" and threshold == 0) or (direction == "min" and threshold == 1)


def interval_aggregate(
    metric: str,
    suite: str,
    iv: Interval,
    method: Literal["bootstrap", "wilson", "none"],
    threshold: float | None = None,
    direction: Literal["min", "max"] | None = None,
    decision: str = "point",
    *,
    status: AggStatus | None = None,
    n_unscored: int = 0,
    note: str = "",
) -> Aggregate:
    """An aggregate from its interval, its status by ``threshold_status`` unless given (``not_gated`` without a
    threshold)."""
    if status is None:
        status = threshold_status(iv.value, iv.low, iv.high, threshold, direction or "min", decision)
    return Aggregate(
        metric=metric,
        suite=suite,
        n=iv.n,
        n_unscored=n_unscored,
        value=iv.value,
        ci_low=iv.low,
        ci_high=iv.high,
        method=method,
        threshold=threshold,
        direction=direction,
        status=status,
        note=note,
    )


def aggregate_suite(
    cases: Sequence[CaseResult], suite: str, config: GateConfig, embedder: str | None, not_run: set[str]
) -> list[Aggregate]:
    g = config.gate
    th = config.thresholds_for(suite, embedder)
    skipped = config.skipped_metrics(suite)
    out: list[Aggregate] = []
    groups: list[tuple[str, str, Sequence[CaseResult]]] = [(m, name, cases) for m, (name, _, _) in CASE_METRICS.items()]
    high = [c for c in cases if "high_stakes" in c.tags]
    if high:
        groups.append(("hallucination", "hallucination_rate_high_stakes", high))
    for metric, name, group in groups:
        kind = CASE_METRICS[metric][1]
        present = [c for c in group if metric in c.metrics]
        values: list[float] = [v for c in present if (v := c.metrics[metric].value) is not None]
        n_unscored = sum(1 for c in present if c.metrics[metric].value is None)
        threshold = getattr(th, name, None)
        direction = THRESHOLD_DIRECTIONS.get(name, "min" if CASE_METRICS[metric][2] else "max")
        if not present:
            if metric in skipped or metric in not_run:
                why = "skipped for this suite" if metric in skipped else "not run in this tier"
                none = Interval(None, None, None, 0)
                out.append(
                    interval_aggregate(name, suite, none, "none", threshold, direction, status="not_run", note=why)
                )
            continue
        if kind == "mean":
            iv = bootstrap_mean(values, g.confidence, g.bootstrap_resamples, g.seed)
            method: Literal["bootstrap", "wilson"] = "bootstrap"
        else:
            iv = wilson(sum(1 for v in values if v >= 0.5), len(values), g.confidence)
            method = "wilson"
        status: AggStatus = threshold_status(iv.value, iv.low, iv.high, threshold, direction, g.decision)
        note = ""
        if threshold is not None and iv.n < g.min_cases and not zero_tolerance(threshold, direction):
            status, note = "insufficient", f"only {iv.n} scored cases (minimum {g.min_cases})"
        if metric == "hallucination" and "faithfulness" in not_run:
            note = (note + "; " if note else "") + "numeric grounding only (claim-level check needs the judge)"
        out.append(
            interval_aggregate(
                name, suite, iv, method, threshold, direction, status=status, n_unscored=n_unscored, note=note
            )
        )
    lat = [c.latency_ms for c in cases if c.latency_ms is not None]
    ttft = [c.ttft_ms for c in cases if c.ttft_ms is not None]
    if lat:
        out += latency_aggregates(
            suite, ttft, lat, None, None, config, "measured in this run (cached answers excluded)"
        )
    return out


def quantile_aggregate(
    name: str, suite: str, values: Sequence[float], q: float, limit: float | None, config: GateConfig, note: str
) -> Aggregate:
    """A latency quantile with its bootstrap interval, gated against ``limit`` (ms, lower is better)."""
    g = config.gate
    iv = quantile_interval(values, q, g.confidence, g.bootstrap_resamples, g.seed)
    direction: Literal["max"] | None = "max" if limit is not None else None
    return interval_aggregate(name, suite, iv, "bootstrap", limit, direction, g.decision, note=note)


def latency_aggregates(
    suite: str,
    ttft_ms: Sequence[float],
    total_ms: Sequence[float],
    budget: LatencyBudget | None,
    baseline_total_p95_ms: float | None,
    config: GateConfig,
    how: str,
) -> list[Aggregate]:
    """p50/p95 time to first token (p95 gated by the SLO) and p50/p95/p99 total answer time (p95 gated against
    the baseline's p95 plus the tolerated regression): the latency rules of ``evalgate.core.latency``, one place."""
    b = budget or LatencyBudget()
    out: list[Aggregate] = []
    if ttft_ms:
        out.append(quantile_aggregate("p50_ttft_ms", suite, ttft_ms, 0.50, None, config, f"time to first token, {how}"))
        out.append(
            quantile_aggregate(
                "p95_ttft_ms", suite, ttft_ms, 0.95, b.ttft_slo_ms, config, f"time to first token, {how}"
            )
        )
    elif b.ttft_slo_ms is not None:
        out.append(
            Aggregate(
                metric="p95_ttft_ms",
                suite=suite,
                n=0,
                value=None,
                threshold=b.ttft_slo_ms,
                direction="max",
                status="insufficient",
                note="the target reported no time to first token (see docs/CONTRACTS.md, answer document 'latency')",
            )
        )
    limit = b.total_limit_ms(baseline_total_p95_ms)
    note = f"total answer time, {how}"
    if limit is not None and baseline_total_p95_ms is not None:
        note += f"; baseline p95 {baseline_total_p95_ms:.0f} ms, tolerance {b.describe_tolerance()}"
    out.append(quantile_aggregate("p50_latency_ms", suite, total_ms, 0.50, None, config, note))
    out.append(quantile_aggregate("p95_latency_ms", suite, total_ms, 0.95, limit, config, note))
    out.append(quantile_aggregate("p99_latency_ms", suite, total_ms, 0.99, None, config, note))
    return out


def latency_reasons(aggregates: Sequence[Aggregate], budget: LatencyBudget) -> list[str]:
    """Why the latency failed, one line per failing rule (empty when nothing failed)."""
    out = []
    for a in aggregates:
        if a.status != "fail" or a.value is None or a.threshold is None:
            continue
        ci = f" [{a.ci_low:.0f}, {a.ci_high:.0f}]" if a.ci_low is not None and a.ci_high is not None else ""
        if a.metric == "p95_ttft_ms":
            out.append(f"p95 time to first token {a.value:.0f} ms{ci} is above the SLO of {a.threshold:g} ms (n={a.n})")
        elif a.metric == "p95_latency_ms":
            out.append(
                f"p95 total answer time {a.value:.0f} ms{ci} is above {a.threshold:.0f} ms, the baseline plus "
                f"{budget.describe_tolerance()} (n={a.n})"
            )
    return out


def compare(cases: Sequence[CaseResult], baseline: RunResult, config: GateConfig) -> list[Comparison]:
    """Paired comparisons (candidate - baseline) over case ids present in both, each with a one-sided p-value
    in the harmful direction: per suite and metric (paired t-test for mean scores, exact McNemar for 0/1
    rates), and per segment (the whole suite, each category, each tag) on the cases' pass/fail status (exact
    McNemar on the cases that went pass -> fail and fail -> pass). ``decide`` controls the family."""
    g = config.gate
    base = {c.id: c for c in baseline.cases}
    out: list[Comparison] = []
    suites = sorted({c.suite for c in cases})
    for suite in suites:
        group = [c for c in cases if c.suite == suite]
        for metric, (_, kind, higher_better) in CASE_METRICS.items():
            paired = [
                (c, float(cv), float(bv))
                for c in group
                if c.id in base and (cv := c.value(metric)) is not None and (bv := base[c.id].value(metric)) is not None
            ]
            if len(paired) < 2:
                continue
            cand = [p[1] for p in paired]
            basev = [p[2] for p in paired]
            iv = paired_difference(cand, basev, g.confidence, g.bootstrap_resamples, g.seed)
            if iv.value is None:
                continue
            broke: int | None = None
            fixed: int | None = None
            broke_ids: list[str] = []
            if kind == "rate":
                # a 0/1 outcome is good when it is 1 for higher-is-better rates, 0 otherwise
                broke_ids = [c.id for c, cv, bv in paired if (bv >= 0.5) == higher_better != (cv >= 0.5)]
                fixed = sum(1 for _, cv, bv in paired if (cv >= 0.5) == higher_better != (bv >= 0.5))
                broke = len(broke_ids)
                p, test = mcnemar_exact(broke, fixed), "mcnemar-exact"
            else:
                p, test = paired_t_pvalue(cand, basev, higher_better), "paired-t"
            out.append(
                Comparison(
                    metric=metric,
                    suite=suite,
                    n_paired=len(paired),
                    n_cases=len(group),
                    baseline=sum(basev) / len(basev),
                    candidate=sum(cand) / len(cand),
                    diff=iv.value,
                    ci_low=iv.low,
                    ci_high=iv.high,
                    test=test,
                    p_value=p,
                    broke=broke,
                    fixed=fixed,
                    worst=broke_ids[:5],
                )
            )
        out += _segment_comparisons(group, base, suite, g.min_cases)
    return out


def _segments(cases: Sequence[CaseResult]) -> list[tuple[str, list[CaseResult]]]:
    """The whole suite, then each category and each tag, dropping a segment with the same cases as an earlier one."""
    cands: list[tuple[str, list[CaseResult]]] = [("", list(cases))]
    for cat in sorted({c.category for c in cases}):
        cands.append((f"category={cat}", [c for c in cases if c.category == cat]))
    for tag in sorted({t for c in cases for t in c.tags}):
        cands.append((f"tag={tag}", [c for c in cases if tag in c.tags]))
    seen: set[frozenset[str]] = set()
    out = []
    for name, members in cands:
        key = frozenset(c.id for c in members)
        if key not in seen:
            seen.add(key)
            out.append((name, members))
    return out


def _severity(c: CaseResult) -> tuple[int, float]:
    """Worst first: high-stakes hallucinations, then more failures, then the lowest mean score."""
    scores = [v for m in ("similarity", "faithfulness", "relevance") if (v := c.value(m)) is not None]
    hs = bool(c.hallucinated and "high_stakes" in c.tags)
    return (-(2 * hs + len(c.failures)), sum(scores) / len(scores) if scores else 0.0)


def _segment_comparisons(
    group: Sequence[CaseResult], base: dict[str, CaseResult], suite: str, min_cases: int
) -> list[Comparison]:
    out: list[Comparison] = []
    decided = ("pass", "fail")
    for name, members in _segments(group):
        paired = [c for c in members if c.id in base and c.status in decided and base[c.id].status in decided]
        if len(paired) < min_cases:
            continue
        broke = sorted((c for c in paired if base[c.id].status == "pass" and c.status == "fail"), key=_severity)
        fixed = sum(1 for c in paired if base[c.id].status == "fail" and c.status == "pass")
        base_rate = sum(base[c.id].status == "pass" for c in paired) / len(paired)
        cand_rate = sum(c.status == "pass" for c in paired) / len(paired)
        out.append(
            Comparison(
                metric="pass_rate",
                suite=suite,
                segment=name,
                n_paired=len(paired),
                n_cases=len(members),
                baseline=base_rate,
                candidate=cand_rate,
                diff=cand_rate - base_rate,
                ci_low=None,
                ci_high=None,
                test="mcnemar-exact",
                p_value=mcnemar_exact(len(broke), fixed),
                broke=len(broke),
                fixed=fixed,
                worst=[c.id for c in broke[:5]],
            )
        )
    return out


def control_family(comparisons: Sequence[Comparison], drift: Drift | None, config: GateConfig) -> None:
    """Family-wise error control over every test the gate makes against the baseline (each comparison, each
    segment, drift): Holm's step-down with Tarone's count for the exact tests (``stats.step_down``). Sets
    ``p_adjusted``, ``worse`` and ``exceeds`` on each comparison and ``significant``/``review`` on drift, so
    that adding segments does not add false reviews."""
    g = config.gate
    alpha = 1 - g.confidence
    tests: list[tuple[float, float]] = []
    for c in comparisons:
        exact = c.test == "mcnemar-exact" and c.broke is not None and c.fixed is not None
        tests.append(
            (c.p_value if c.p_value is not None else 1.0, mcnemar_min_p(c.broke or 0, c.fixed or 0) if exact else 0.0)
        )
    with_drift = drift is not None and drift.p_value is not None
    if drift is not None and drift.p_value is not None:
        tests.append((drift.p_value, 0.0))
    adjusted = step_down([t[0] for t in tests], [t[1] for t in tests], alpha)
    for c, adj in zip(comparisons, adjusted, strict=False):
        c.p_adjusted = adj
        c.worse = adj <= alpha and (c.diff or 0.0) != 0.0
        if c.metric == "pass_rate":
            c.exceeds = c.worse and (c.broke or 0) > (c.fixed or 0)
        else:
            c.exceeds = c.worse and c.diff is not None and abs(c.diff) > g.max_regression
    if drift is not None and with_drift:
        drift.p_adjusted = adjusted[-1]
        drift.significant = adjusted[-1] <= alpha
        drift.review = bool(drift.significant and drift.score is not None and drift.score > drift.threshold)


def segment_label(c: Comparison) -> str:
    """``returns`` for ``category=returns`` in the regression suite, ``injection suite`` for a whole suite."""
    if not c.segment:
        return f"{c.suite} suite"
    kind, _, value = c.segment.partition("=")
    name = value if kind == "category" else f"cases tagged {value}"
    return name if c.suite == "regression" else f"{c.suite}/{name}"


def drift_from_pairs(raw: Sequence[float], noise: Sequence[float] | None, config: GateConfig) -> Drift:
    """Drift score = mean over cases of (1 - cos(candidate answer, baseline answer)) minus that case's
    run-to-run noise (1 - cos between the candidate's own repeats). Significant when the 95% bootstrap
    interval of the excess lies above 0; REVIEW when also above ``drift_threshold``. Inside the gate,
    ``control_family`` re-decides significance from ``p_value`` within the family of baseline tests."""
    g = config.gate
    if not raw:
        return Drift(threshold=g.drift_threshold)
    nz = list(noise) if noise else [0.0] * len(raw)
    excess = [r - n for r, n in zip(raw, nz, strict=True)]
    iv = bootstrap_mean(excess, g.confidence, g.bootstrap_resamples, g.seed)
    significant = iv.low is not None and iv.low > 0
    return Drift(
        p_value=excess_pvalue(excess),
        score=iv.value,
        ci_low=iv.low,
        ci_high=iv.high,
        raw=sum(raw) / len(raw),
        noise=sum(nz) / len(nz) if noise else None,
        noise_measured=noise is not None,
        n_paired=len(raw),
        threshold=g.drift_threshold,
        significant=significant,
        review=bool(significant and iv.value is not None and iv.value > g.drift_threshold),
    )


def _by_evidence(c: Comparison) -> tuple[float, int]:
    return (c.p_adjusted if c.p_adjusted is not None else 1.0, -(c.broke or 0))


def _case_line(case_id: str, cases: Sequence[CaseResult]) -> str:
    c = next((x for x in cases if x.id == case_id), None)
    return f"{case_id} ({c.failures[0]})" if c is not None and c.failures else case_id


def decide(
    aggregates: Sequence[Aggregate],
    comparisons: Sequence[Comparison],
    drift: Drift | None,
    diversity: Diversity | None,
    cases: Sequence[CaseResult],
    config: GateConfig,
    fatal: Sequence[str] = (),
) -> tuple[Verdict, dict[str, float]]:
    budget = config.gate.unscored_budget
    total = len(cases)
    bad = [c for c in cases if c.status in ("error", "unscored")]
    rate = len(bad) / total if total else 1.0
    unscored = {
        "count": float(len(bad)),
        "total": float(total),
        "rate": rate,
        "budget": budget,
        "errors": float(sum(1 for c in cases if c.status == "error")),
    }
    errors: list[str] = list(fatal)
    if total == 0:
        errors.append("no cases were evaluated")
    if rate > budget:
        ids = ", ".join(c.id for c in bad[:5]) + (" ..." if len(bad) > 5 else "")
        errors.append(f"{len(bad)} of {total} cases unscored or errored ({rate:.1%} > budget {budget:.0%}): {ids}")
    for a in aggregates:
        if a.status == "insufficient":
            errors.append(f"{a.suite}.{a.metric}: insufficient data ({a.note or 'no scored cases'})")
    fails: list[str] = []
    for a in aggregates:
        if a.status == "fail" and a.value is not None and a.threshold is not None:
            op = "≥" if a.direction == "min" else "≤"
            ci = f" [{a.ci_low:.3f}, {a.ci_high:.3f}]" if a.ci_low is not None and a.ci_high is not None else ""
            fails.append(f"{a.suite}.{a.metric} = {a.value:.3f}{ci} fails {op} {a.threshold:g} (n={a.n})")
    high_stakes = [c for c in cases if c.hallucinated and "high_stakes" in c.tags]
    for hs in high_stakes:
        claims = "; ".join(hs.unsupported_claims[:2]) or "unsupported claim"
        fails.append(f"high-stakes case {hs.id} ({hs.category}) hallucinated: {claims}")
    control_family(comparisons, drift, config)
    reviews: list[str] = []
    segments = sorted((c for c in comparisons if c.exceeds and c.metric == "pass_rate"), key=_by_evidence)
    for c in segments:
        worst = ", ".join(_case_line(cid, cases) for cid in c.worst[:3])
        reviews.append(
            f"{segment_label(c)}: {c.broke} of {c.n_cases} cases now fail, {c.fixed} fixed "
            f"(exact McNemar p={c.p_value:.2g}, family-adjusted {c.p_adjusted:.2g}); worst: {worst}"
        )
    for c in sorted((c for c in comparisons if c.exceeds and c.metric != "pass_rate"), key=_by_evidence):
        interval = f" [{c.ci_low:.3f}, {c.ci_high:.3f}]" if c.ci_low is not None and c.ci_high is not None else ""
        changed = f", {c.broke} cases worse and {c.fixed} better" if c.broke is not None else ""
        reviews.append(
            f"{c.suite}.{c.metric} worse than the approved baseline by {abs(c.diff or 0.0):.3f}{interval} over "
            f"{c.n_paired} paired cases{changed} ({c.test} p={c.p_value:.2g}, family-adjusted {c.p_adjusted:.2g})"
        )
    if drift and drift.review and drift.score is not None:
        reviews.append(
            f"drift {drift.score:.3f} [{drift.ci_low:.3f}, {drift.ci_high:.3f}] above {drift.threshold:g} "
            f"(noise {f'{drift.noise:.3f}' if drift.noise is not None else 'not measured'})"
        )
    if diversity and diversity.collapsed:
        reviews.append(f"diversity collapse: {diversity.note}")
    gated = [a for a in aggregates if a.status in ("pass", "borderline")]
    verdict = ladder(errors, fails, reviews, [f"all {len(gated)} gated aggregates meet their thresholds"], aggregates)
    halluc = [c for c in cases if c.hallucinated and c not in high_stakes]
    if halluc and verdict.verdict in ("PASS", "REVIEW"):
        verdict.reasons.append(
            f"{len(halluc)} case(s) with hallucinations listed for review: " + ", ".join(c.id for c in halluc[:8])
        )
    return verdict, unscored


def ladder(
    errors: Sequence[str],
    fails: Sequence[str],
    reviews: Sequence[str],
    passing: Sequence[str],
    aggregates: Sequence[Aggregate] = (),
) -> Verdict:
    """The verdict ladder, one for every gate (evaluation, load test, shadow report): ERROR when the run cannot be
    trusted (its reasons, then the failures), else FAIL when a rule failed (and what also needs review), else
    REVIEW when evidence asks a person, else PASS with ``passing`` and the borderline aggregates named."""
    if errors:
        name, reasons = "ERROR", [*errors, *fails]
    elif fails:
        name, reasons = "FAIL", [*fails, *(f"also needs review: {r}" for r in reviews)]
    elif reviews:
        name, reasons = "REVIEW", list(reviews)
    else:
        name, reasons = "PASS", list(passing)
        border = [f"{a.suite}.{a.metric}" for a in aggregates if a.status == "borderline"]
        if border:
            reasons.append("borderline (interval straddles the threshold): " + ", ".join(border))
    return Verdict(verdict=name, exit_code=EXIT_CODES[name], reasons=reasons)  # type: ignore[arg-type]


def with_reviews(verdict: Verdict, reviews: Sequence[str]) -> Verdict:
    """The one rule for evidence that asks for a person (a mismatched baseline, a self-disagreeing judge, open
    high-stakes tickets...): a PASS with review reasons becomes REVIEW; FAIL and ERROR keep their verdict and list
    the reasons."""
    if not reviews:
        return verdict
    if verdict.verdict == "PASS":
        return Verdict(verdict="REVIEW", exit_code=EXIT_CODES["REVIEW"], reasons=[*reviews, *verdict.reasons])
    if verdict.verdict == "REVIEW":
        return Verdict(verdict="REVIEW", exit_code=verdict.exit_code, reasons=[*verdict.reasons, *reviews])
    return Verdict(
        verdict=verdict.verdict,
        exit_code=verdict.exit_code,
        reasons=[*verdict.reasons, *(f"also needs review: {r}" for r in reviews)],
    )


def hold_for_review(verdict: Verdict, reviews: Sequence[str]) -> None:
    """``with_reviews`` applied in place (for a verdict already on a run record)."""
    updated = with_reviews(verdict, reviews)
    verdict.verdict, verdict.exit_code, verdict.reasons = updated.verdict, updated.exit_code, updated.reasons


def review_on_mismatch(verdict: Verdict, mismatch: Sequence[str]) -> None:
    """A baseline someone chose to compare with although it does not match the run (``--baseline-mismatch
    review``): never a quiet PASS."""
    hold_for_review(verdict, [f"baseline does not match the run: {m}" for m in mismatch])
