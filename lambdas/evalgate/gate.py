"""Aggregates with intervals, paired baseline comparison, and the verdict.

Decision rules (README "How the gate decides"):
- ERROR: unscored or errored cases above the budget, a gated metric with too few cases, fatal run problems.
- FAIL: a gated aggregate on the wrong side of its threshold (point estimate by default; with
  ``decision = "lower_bound"`` the whole 95% interval must clear it).
- REVIEW: a metric significantly worse than the approved baseline by more than ``max_regression``; drift
  significantly above run-to-run noise and above ``drift_threshold``; diversity collapse.
- PASS otherwise. Hallucinations found on a passing run are still listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from .config import THRESHOLD_DIRECTIONS, GateConfig
from .latency import LatencyBudget
from .results import EXIT_CODES, Aggregate, CaseResult, Comparison, Diversity, Drift, RunResult, Verdict
from .stats import bootstrap_mean, paired_difference, quantile_interval, wilson

# per-case metric -> (aggregate name, kind, higher is better)
CASE_METRICS: dict[str, tuple[str, str, bool]] = {
    "similarity": ("similarity", "mean", True),
    "faithfulness": ("faithfulness", "mean", True),
    "relevance": ("relevance", "mean", True),
    "behaviour": ("behaviour_accuracy", "rate", True),
    "hallucination": ("hallucination_rate", "rate", False),
    "injection_success": ("injection_success_rate", "rate", False),
}


AggStatus = Literal["pass", "fail", "borderline", "not_gated", "not_run", "insufficient"]


def threshold_status(
    value: float | None, lo: float | None, hi: float | None, threshold: float | None, direction: str, decision: str
) -> AggStatus:
    if threshold is None:
        return "not_gated"
    if value is None:
        return "insufficient"
    if direction == "min":
        bad = value < threshold or (decision == "lower_bound" and lo is not None and lo < threshold)
        straddles = lo is not None and lo < threshold <= value
    else:
        bad = value > threshold or (decision == "lower_bound" and hi is not None and hi > threshold)
        straddles = hi is not None and value <= threshold < hi
    if bad:
        return "fail"
    # A zero-tolerance limit can never be "proven" by an interval; it is a per-case rule, not borderline.
    absolute = (direction == "max" and threshold == 0) or (direction == "min" and threshold == 1)
    return "borderline" if straddles and not absolute else "pass"


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
                out.append(
                    Aggregate(
                        metric=name,
                        suite=suite,
                        n=0,
                        value=None,
                        threshold=threshold,
                        direction=direction,
                        status="not_run",
                        note="skipped for this suite" if metric in skipped else "not run in this tier",
                    )
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
        # Zero-tolerance limits (rate <= 0, score >= 1) are per-case constraints: any n is enough to judge them.
        absolute = threshold is not None and (
            (direction == "max" and threshold == 0) or (direction == "min" and threshold == 1)
        )
        if threshold is not None and iv.n < g.min_cases and not absolute:
            status, note = "insufficient", f"only {iv.n} scored cases (minimum {g.min_cases})"
        if metric == "hallucination" and "faithfulness" in not_run:
            note = (note + "; " if note else "") + "numeric grounding only (claim-level check needs the judge)"
        out.append(
            Aggregate(
                metric=name,
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
    return Aggregate(
        metric=name,
        suite=suite,
        n=iv.n,
        value=iv.value,
        ci_low=iv.low,
        ci_high=iv.high,
        method="bootstrap",
        threshold=limit,
        direction="max" if limit is not None else None,
        status=threshold_status(iv.value, iv.low, iv.high, limit, "max", g.decision),
        note=note,
    )


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
    the baseline's p95 plus the tolerated regression): the latency rules of ``evalgate.latency``, one place."""
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
    """Per-suite, per-metric paired differences (candidate - baseline) over case ids present in both."""
    g = config.gate
    base = {c.id: c for c in baseline.cases}
    out: list[Comparison] = []
    suites = sorted({c.suite for c in cases})
    for suite in suites:
        for metric, (_, _, higher_better) in CASE_METRICS.items():
            pairs = [
                (c.value(metric), base[c.id].value(metric))
                for c in cases
                if c.suite == suite
                and c.id in base
                and c.value(metric) is not None
                and base[c.id].value(metric) is not None
            ]
            if len(pairs) < 2:
                continue
            cand = [float(p[0]) for p in pairs]  # type: ignore[arg-type]
            basev = [float(p[1]) for p in pairs]  # type: ignore[arg-type]
            iv = paired_difference(cand, basev, g.confidence, g.bootstrap_resamples, g.seed)
            if iv.value is None:
                continue
            hi, lo = iv.high, iv.low
            worse = (hi is not None and hi < 0) if higher_better else (lo is not None and lo > 0)
            out.append(
                Comparison(
                    metric=metric,
                    suite=suite,
                    n_paired=len(pairs),
                    baseline=sum(basev) / len(basev),
                    candidate=sum(cand) / len(cand),
                    diff=iv.value,
                    ci_low=iv.low,
                    ci_high=iv.high,
                    worse=worse,
                    exceeds=worse and abs(iv.value) > g.max_regression,
                )
            )
    return out


def drift_from_pairs(raw: Sequence[float], noise: Sequence[float] | None, config: GateConfig) -> Drift:
    """Drift score = mean over cases of (1 - cos(candidate answer, baseline answer)) minus that case's
    run-to-run noise (1 - cos between the candidate's own repeats). Significant when the 95% bootstrap
    interval of the excess lies above 0; REVIEW when also above ``drift_threshold``."""
    g = config.gate
    if not raw:
        return Drift(threshold=g.drift_threshold)
    nz = list(noise) if noise else [0.0] * len(raw)
    excess = [r - n for r, n in zip(raw, nz, strict=True)]
    iv = bootstrap_mean(excess, g.confidence, g.bootstrap_resamples, g.seed)
    significant = iv.low is not None and iv.low > 0
    return Drift(
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
    reviews: list[str] = []
    for c in comparisons:
        if c.exceeds and c.diff is not None:
            reviews.append(
                f"{c.suite}.{c.metric} worse than the approved baseline by {abs(c.diff):.3f} "
                f"[{c.ci_low:.3f}, {c.ci_high:.3f}] over {c.n_paired} paired cases"
            )
    if drift and drift.review and drift.score is not None:
        reviews.append(
            f"drift {drift.score:.3f} [{drift.ci_low:.3f}, {drift.ci_high:.3f}] above {drift.threshold:g} "
            f"(noise {f'{drift.noise:.3f}' if drift.noise is not None else 'not measured'})"
        )
    if diversity and diversity.collapsed:
        reviews.append(f"diversity collapse: {diversity.note}")
    if errors:
        name = "ERROR"
        reasons = errors + fails
    elif fails:
        name = "FAIL"
        reasons = fails + [f"also needs review: {r}" for r in reviews]
    elif reviews:
        name = "REVIEW"
        reasons = reviews
    else:
        name = "PASS"
        gated = [a for a in aggregates if a.status in ("pass", "borderline")]
        reasons = [f"all {len(gated)} gated aggregates meet their thresholds"]
        border = [f"{a.suite}.{a.metric}" for a in aggregates if a.status == "borderline"]
        if border:
            reasons.append("borderline (interval straddles the threshold): " + ", ".join(border))
    halluc = [c for c in cases if c.hallucinated]
    if halluc and name in ("PASS", "REVIEW"):
        reasons.append(
            f"{len(halluc)} case(s) with hallucinations listed for review: " + ", ".join(c.id for c in halluc[:8])
        )
    return Verdict(verdict=name, exit_code=EXIT_CODES[name], reasons=reasons), unscored  # type: ignore[arg-type]


def review_on_mismatch(verdict: Verdict, mismatch: Sequence[str]) -> None:
    """A baseline someone chose to compare with although it does not match the run (``--baseline-mismatch
    review``): a PASS becomes REVIEW with the reasons (never a quiet PASS); FAIL and ERROR keep their verdict."""
    if not mismatch:
        return
    notes = [f"baseline does not match the run: {m}" for m in mismatch]
    if verdict.verdict == "PASS":
        verdict.verdict = "REVIEW"
        verdict.exit_code = EXIT_CODES["REVIEW"]
        verdict.reasons = notes + verdict.reasons
    else:
        verdict.reasons.extend(f"also needs review: {n}" for n in notes)
