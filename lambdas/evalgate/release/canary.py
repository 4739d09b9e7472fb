"""Canary judge (after Kayenta): compare the new version (canary) against the previous one (baseline).

Each metric gets a one-sided test in the harmful direction *and* an effect size, so a significant but
negligible difference does not fail a deployment and a large but noisy one does not either:

- ``QualityScore`` (online judge, higher is better) and ``Latency`` (per-period mean, lower is better):
  Mann-Whitney U on the per-period values of each arm (one point per period, as Kayenta compares time series);
  the effect is the Hodges-Lehmann shift (median of all canary-minus-baseline differences).
- ``Hallucination`` and ``ErrorRate``: a one-sided exact test (Fisher) on the counts; the effect is the
  difference of the rates.
- ``FeedbackScore`` (thumbs-up share) and ``ConversionRate`` (business outcomes), when both arms have at least
  ``min_business`` of them: the same exact test.

The metrics are one family: their p-values are adjusted together (Holm), so watching more metrics does not
roll back more healthy versions. A metric fails when its adjusted p-value is below ``alpha`` and its harmful
effect exceeds its tolerance.

Fail closed: an arm below the minimum sample size (judged answers, requests, points) makes the metric
``nodata`` and the whole analysis FAIL; a canary whose judge mostly failed (unscored) fails too. The score is
Kayenta's: the share of evaluated metrics that passed; any critical metric failing fails the canary.

SciPy and NumPy are imported lazily (this module is also imported where only the data classes are needed). The
samples are read from CloudWatch by ``evalgate.release.canary_samples``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from evalgate.contracts import telemetry as tm
from evalgate.core.latency import LatencyBudget

Status = Literal["pass", "fail", "nodata"]
# The tests' names: the metric each one reads (``contracts.telemetry``), and the error rate it derives.
QUALITY, LATENCY, HALLUCINATION, FEEDBACK, CONVERSION = (
    tm.QUALITY_SCORE,
    tm.LATENCY,
    tm.HALLUCINATION,
    tm.FEEDBACK_SCORE,
    tm.CONVERSION_RATE,
)
ERROR_RATE = "ErrorRate"


@dataclass
class ArmSamples:
    """What one version did during the analysis window (per-period series and counts)."""

    version: str
    quality: list[float] = field(default_factory=list)  # per-period mean QualityScore
    latency: list[float] = field(default_factory=list)  # per-period Latency statistic
    scored: int = 0  # answers with a quality score
    judged: int = 0  # answers the online judge looked at (scored or not)
    unscored: int = 0
    hallucinations: int = 0
    hallucination_n: int = 0
    errors: int = 0
    requests: int = 0
    feedback_up: int = 0
    feedback_n: int = 0
    conversions: int = 0
    conversion_n: int = 0


@dataclass(frozen=True)
class CanaryConfig:
    min_judged: int = 30  # scored answers per arm (MIN_SAMPLES)
    min_requests: int = 50
    min_points: int = 3  # per-period points per arm for Mann-Whitney
    alpha: float = 0.05
    quality_tolerance: float = 0.03  # absolute drop of QualityScore tolerated
    latency_tolerance_ms: float = 100.0  # increase of the per-period mean latency tolerated (ms), without a budget
    # total answer time vs the previous version by evalgate.core.latency's rule (+ms or +%, whichever comes first)
    latency_budget: LatencyBudget | None = None
    hallucination_tolerance: float = 0.02  # absolute increase of the hallucination rate tolerated
    error_tolerance: float = 0.01
    feedback_tolerance: float = 0.05  # absolute drop of the thumbs-up share tolerated
    conversion_tolerance: float = 0.0025  # absolute drop of the conversion rate tolerated
    min_business: int = 30  # feedback / conversion observations per arm before they are judged at all
    max_unscored_rate: float = 0.20
    pass_score: float = 75.0
    # Latency (the seed's +120 ms incident) and conversion (the seed's abort rule) roll back on their own;
    # feedback is reported (a non-critical failure only lowers the score, which 1 failure in 5 keeps >= 75).
    critical: frozenset[str] = frozenset({QUALITY, HALLUCINATION, ERROR_RATE, LATENCY, CONVERSION})


@dataclass
class MetricResult:
    metric: str
    test: str
    status: Status
    critical: bool
    baseline: float | None = None
    canary: float | None = None
    effect: float | None = None
    p_value: float | None = None
    n_baseline: int = 0
    n_canary: int = 0
    reason: str = ""
    p_adjusted: float | None = None  # Holm over the metrics that had data
    unit: str = ""
    harm: float | None = None  # the effect in the harmful direction (positive = worse)
    tolerance: float = 0.0


@dataclass
class CanaryResult:
    baseline_version: str
    canary_version: str
    passed: bool
    score: float
    results: list[MetricResult]
    reasons: list[str]  # why it failed (empty when it passed)
    notes: list[str] = field(default_factory=list)  # non-critical failures that did not fail it

    def summary(self) -> str:
        head = "PASS" if self.passed else "FAIL"
        lines = [f"canary {head}: version {self.canary_version} vs {self.baseline_version}, score {self.score:.0f}"]
        for r in self.results:
            lines.append(f"  {r.metric}: {r.status} - {r.reason}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "baseline_version": self.baseline_version,
            "canary_version": self.canary_version,
            "passed": self.passed,
            "score": self.score,
            "reasons": self.reasons,
            "notes": self.notes,
            "results": [r.__dict__ for r in self.results],
        }


# ------------------------------------------------------------------------------------------------ tests


def hodges_lehmann(canary: Sequence[float], baseline: Sequence[float]) -> float:
    """Median of all pairwise differences canary - baseline (a robust location shift)."""
    import numpy as np

    diffs = np.subtract.outer(np.asarray(canary, dtype=float), np.asarray(baseline, dtype=float))
    return float(np.median(diffs))


def mann_whitney(canary: Sequence[float], baseline: Sequence[float], worse: Literal["less", "greater"]) -> float:
    """One-sided p-value that the canary is stochastically ``worse`` (``less`` or ``greater``) than the baseline."""
    from scipy.stats import mannwhitneyu

    if len(set(canary) | set(baseline)) == 1:
        return 1.0  # all values tie: no evidence of any difference
    return float(mannwhitneyu(canary, baseline, alternative=worse, method="auto").pvalue)


def two_proportion(x_canary: int, n_canary: int, x_base: int, n_base: int) -> tuple[float, float]:
    """(rate difference canary - baseline, one-sided p-value that the canary rate is higher).

    Fisher's exact test: canary counts are small (a 0.5% error rate over 84 requests is 0-2 events), where the
    z-test's normal approximation rolls back healthy versions far more often than its alpha says."""
    from scipy.stats import fisher_exact

    p_c, p_b = x_canary / n_canary, x_base / n_base
    if x_canary + x_base in (0, n_canary + n_base):
        return p_c - p_b, 1.0  # no variation at all (both 0% or both 100%)
    table = [[x_canary, n_canary - x_canary], [x_base, n_base - x_base]]
    return p_c - p_b, float(fisher_exact(table, alternative="greater").pvalue)


# ------------------------------------------------------------------------------------------------ judge


def _short(counts: Sequence[tuple[str, int]], min_count: int) -> list[str]:
    return [f"{arm} has {n} samples (< {min_count})" for arm, n in counts if n < min_count]


def _series_metric(
    name: str,
    cfg: CanaryConfig,
    *,
    values: tuple[list[float], list[float]],
    counts: tuple[int, int],
    min_count: int,
    higher_is_better: bool,
    tolerance: float,
    unit: str,
) -> MetricResult:
    b_vals, c_vals = values
    b_n, c_n = counts
    r = MetricResult(name, "mann-whitney", "nodata", name in cfg.critical, n_baseline=b_n, n_canary=c_n)
    r.tolerance, r.unit = tolerance, unit
    short = _short((("baseline", b_n), ("canary", c_n)), min_count)
    short += [
        f"{arm} has {len(v)} periods with data (< {cfg.min_points})"
        for arm, v in (("baseline", b_vals), ("canary", c_vals))
        if len(v) < cfg.min_points
    ]
    if short:
        r.reason = "insufficient data: " + "; ".join(short)
        return r
    r.baseline, r.canary = statistics.median(b_vals), statistics.median(c_vals)
    r.effect = hodges_lehmann(c_vals, b_vals)
    r.harm = -r.effect if higher_is_better else r.effect
    r.p_value = mann_whitney(c_vals, b_vals, "less" if higher_is_better else "greater")
    r.status = "pass"  # until ``classify`` finds it significantly worse beyond tolerance
    r.reason = (
        f"canary median {r.canary:.3g}{unit} vs baseline {r.baseline:.3g}{unit} (shift {r.effect:+.3g}{unit}, "
        f"p={r.p_value:.3g}, n={c_n}/{b_n})"
    )
    return r


def _proportion_metric(
    name: str,
    cfg: CanaryConfig,
    *,
    canary: tuple[int, int],
    baseline: tuple[int, int],
    min_count: int,
    tolerance: float,
    lower_is_worse: bool = False,
) -> MetricResult:
    (xc, nc), (xb, nb) = canary, baseline
    r = MetricResult(name, "two-proportion", "nodata", name in cfg.critical, n_baseline=nb, n_canary=nc)
    r.tolerance = tolerance
    short = _short((("baseline", nb), ("canary", nc)), min_count)
    if short:
        r.reason = "insufficient data: " + "; ".join(short)
        return r
    if lower_is_worse:  # test the complement so "higher is worse" holds
        diff, p = two_proportion(nc - xc, nc, nb - xb, nb)
    else:
        diff, p = two_proportion(xc, nc, xb, nb)
    r.canary, r.baseline = xc / nc, xb / nb
    r.effect, r.harm, r.p_value = r.canary - r.baseline, diff, p
    r.status = "pass"  # until ``classify`` finds it significantly worse beyond tolerance
    r.reason = f"canary {xc}/{nc} = {r.canary:.1%} vs baseline {xb}/{nb} = {r.baseline:.1%} (p={p:.3g})"
    return r


def latency_tolerance_ms(baseline_ms: float | None, cfg: CanaryConfig) -> float:
    """The tolerated increase of total answer time (ms): ``latency_budget``'s +ms / +% of the previous version's
    median when it gates total time, else ``latency_tolerance_ms``."""
    budget = cfg.latency_budget
    if budget is not None and budget.gates_total and baseline_ms is not None:
        allowed = budget.allowed_regression_ms(baseline_ms)
        if allowed is not None:
            return allowed
    return cfg.latency_tolerance_ms


def classify(results: Sequence[MetricResult], alpha: float) -> None:
    """Family-wise control over the metric tests that had data (Holm, ``stats.step_down``): a metric fails when
    its adjusted p-value is below ``alpha`` *and* its harmful effect exceeds its tolerance."""
    from evalgate.core.stats import step_down

    tested = [r for r in results if r.status == "pass" and r.p_value is not None]
    adjusted = step_down([r.p_value for r in tested if r.p_value is not None], alpha=alpha)
    for r, adj in zip(tested, adjusted, strict=True):
        r.p_adjusted = adj
        significant = adj < alpha
        limit = f"{r.tolerance:.4g}{r.unit}"
        detail = f"{r.reason}; adjusted p={adj:.3g} over {len(tested)} metrics"
        if significant and r.harm is not None and r.harm > r.tolerance:
            r.status, r.reason = "fail", f"worse beyond tolerance {limit}: {detail}"
        else:
            r.status = "pass"
            r.reason = ("significant but within tolerance: " if significant else "no significant regression: ") + detail


def metric_results(baseline: ArmSamples, canary: ArmSamples, cfg: CanaryConfig) -> list[MetricResult]:
    """Every canary metric with its one-sided p-value and effect (not yet classified)."""
    results = [
        _series_metric(
            QUALITY,
            cfg,
            values=(baseline.quality, canary.quality),
            counts=(baseline.scored, canary.scored),
            min_count=cfg.min_judged,
            higher_is_better=True,
            tolerance=cfg.quality_tolerance,
            unit="",
        ),
        _proportion_metric(
            HALLUCINATION,
            cfg,
            canary=(canary.hallucinations, canary.hallucination_n),
            baseline=(baseline.hallucinations, baseline.hallucination_n),
            min_count=cfg.min_judged,
            tolerance=cfg.hallucination_tolerance,
        ),
        _series_metric(
            LATENCY,
            cfg,
            values=(baseline.latency, canary.latency),
            counts=(baseline.requests, canary.requests),
            min_count=cfg.min_requests,
            higher_is_better=False,
            tolerance=latency_tolerance_ms(statistics.median(baseline.latency) if baseline.latency else None, cfg),
            unit=" ms",
        ),
        _proportion_metric(
            ERROR_RATE,
            cfg,
            canary=(canary.errors, canary.requests),
            baseline=(baseline.errors, baseline.requests),
            min_count=cfg.min_requests,
            tolerance=cfg.error_tolerance,
        ),
    ]
    # Business outcomes: judged only when both arms have enough of them (they come from users, not the judge)
    results += [r for r in _business(baseline, canary, cfg, cfg.min_business) if r.status != "nodata"]
    return results


def _business(baseline: ArmSamples, canary: ArmSamples, cfg: CanaryConfig, min_count: int) -> list[MetricResult]:
    pairs = (
        (FEEDBACK, (canary.feedback_up, canary.feedback_n), (baseline.feedback_up, baseline.feedback_n),
         cfg.feedback_tolerance),
        (CONVERSION, (canary.conversions, canary.conversion_n), (baseline.conversions, baseline.conversion_n),
         cfg.conversion_tolerance),
    )  # fmt: skip
    return [
        _proportion_metric(name, cfg, canary=c, baseline=b, min_count=min_count, tolerance=tol, lower_is_worse=True)
        for name, c, b, tol in pairs
    ]


def business_results(baseline: ArmSamples, canary: ArmSamples, cfg: CanaryConfig | None = None) -> list[MetricResult]:
    """Feedback and conversion of the new version against the previous one, with the canary judge's tests and
    Holm over the two, whatever their sample size (for reports: the effect and N say how much it means)."""
    cfg = cfg or CanaryConfig()
    results = _business(baseline, canary, cfg, 1)
    classify(results, cfg.alpha)
    return results


def judge_canary(baseline: ArmSamples, canary: ArmSamples, cfg: CanaryConfig | None = None) -> CanaryResult:
    cfg = cfg or CanaryConfig()
    results = metric_results(baseline, canary, cfg)
    classify(results, cfg.alpha)
    reasons: list[str] = []
    nodata = [r for r in results if r.status == "nodata"]
    failed = [r for r in results if r.status == "fail"]
    evaluated = [r for r in results if r.status != "nodata"]
    score = 100.0 * sum(r.status == "pass" for r in evaluated) / len(evaluated) if evaluated else 0.0
    if nodata:
        reasons += [f"{r.metric}: {r.reason} (fail closed)" for r in nodata]
    if canary.judged and canary.unscored / canary.judged > cfg.max_unscored_rate:
        reasons.append(
            f"online judge could not score {canary.unscored}/{canary.judged} canary answers "
            f"(> {cfg.max_unscored_rate:.0%}; fail closed)"
        )
    reasons += [f"{r.metric} (critical): {r.reason}" for r in failed if r.critical]
    notes = [f"{r.metric} (non-critical): {r.reason}" for r in failed if not r.critical]
    if evaluated and score < cfg.pass_score:
        reasons.append(f"score {score:.0f} below {cfg.pass_score:.0f}")
    passed = not reasons
    return CanaryResult(baseline.version, canary.version, passed, score, results, reasons, notes)
