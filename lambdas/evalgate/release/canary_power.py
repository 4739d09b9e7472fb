"""What the live canary can detect: power of the canary judge (``evalgate.release.canary``) at a given traffic.

From peak requests per second, the canary percentage and interval, the capture (judging) rate and the
previous version's behaviour, this module says, for each regression the canary exists to catch, the chance
(power) that the judge fails the canary, and how much more traffic 80% power would need; and it lists the
settings under which a critical rule could never fire at all (``never_fires``: refused at synth time).

The model follows the judge: the verdict is rendered ``VERDICT_LEAD_MINUTES`` before the canary step ends (so
the alarm can stop CodeDeploy before it shifts everything), on one-minute periods; quality and latency are
Mann-Whitney tests on per-period means (approximated by a t-test on those means, with the period's random
number of answers and the Mann-Whitney efficiency 3/pi); rates are exact tests (approximated by the normal
two-proportion test); the metrics form one Holm family, so a single regression is judged at ``alpha / m``
in the worst case; a rule fires when the test is significant *and* the estimated harm exceeds the rule's
tolerance. ``bench/bench_decisions.py`` checks these figures against simulation of the judge itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from evalgate.release.canary import (
    CONVERSION,
    ERROR_RATE,
    FEEDBACK,
    HALLUCINATION,
    LATENCY,
    QUALITY,
    CanaryConfig,
    latency_tolerance_ms,
    two_proportion,
)
from evalgate.release.canary_profile import Profile

VERDICT_LEAD_MINUTES = 3  # the live verdict is final this long before the canary step ends (alarm + CodeDeploy lag)
TARGET_POWER = 0.8
MAX_SHORT = 0.02  # at most this share of healthy canaries may fail closed for lack of data at peak traffic
_MWU_EFFICIENCY = 3 / math.pi


@dataclass(frozen=True)
class CanaryTraffic:
    peak_rps: float
    canary_percent: float
    interval_minutes: int
    capture_rate: float  # share of requests captured for the online judge (the canary arm is judged at this rate)
    lead_minutes: int = VERDICT_LEAD_MINUTES

    @property
    def window_minutes(self) -> int:
        """Minutes of data the live verdict is rendered on."""
        return max(0, self.interval_minutes - self.lead_minutes)

    @property
    def canary_per_min(self) -> float:
        return self.peak_rps * 60 * self.canary_percent / 100

    @property
    def baseline_per_min(self) -> float:
        return self.peak_rps * 60 * (1 - self.canary_percent / 100)

    @property
    def judged_per_min(self) -> float:
        """Judged answers per minute in EACH arm (the online judge samples the arms to equal counts)."""
        return self.canary_per_min * self.capture_rate


@dataclass(frozen=True)
class Effect:
    label: str
    metric: str
    harm: float  # size of the regression in the metric's harmful direction (units of the metric)


DEFAULT_EFFECTS: tuple[Effect, ...] = (
    Effect("quality -0.05", QUALITY, 0.05),
    Effect("quality -0.10", QUALITY, 0.10),
    Effect("hallucination 2% -> 6%", HALLUCINATION, 0.04),
    Effect("latency +120 ms on every answer (the p95 incident)", LATENCY, 120.0),
    Effect("errors 0.5% -> 2%", ERROR_RATE, 0.015),
    Effect("conversion -0.5 point (abort rule)", CONVERSION, 0.005),
    Effect("thumbs-up share -0.10", FEEDBACK, 0.10),
)


@dataclass
class Detection:
    effect: Effect
    n_canary: int  # observations in the canary arm in the verdict window
    n_baseline: int
    family: int  # metrics in the Holm family
    power: float  # chance the canary judge fails on this regression
    judged: bool  # False: too few observations for the metric to be judged at all
    scale_for_80: float | None  # traffic multiple needed for 80% power (None: already there or never)
    notes: list[str] = field(default_factory=list)

    @property
    def detectable(self) -> bool:
        return self.judged and self.power >= TARGET_POWER


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _norm_ppf(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def _counts(metric: str, t: CanaryTraffic, prof: Profile, scale: float = 1.0) -> tuple[float, float]:
    w = t.window_minutes * scale
    if metric in (QUALITY, HALLUCINATION):
        return t.judged_per_min * w, t.judged_per_min * w
    if metric == CONVERSION:
        return t.canary_per_min * w * prof.conversion_share, t.baseline_per_min * w * prof.conversion_share
    if metric == FEEDBACK:
        return t.canary_per_min * w * prof.feedback_share, t.baseline_per_min * w * prof.feedback_share
    return t.canary_per_min * w, t.baseline_per_min * w  # latency, errors: every request


def _min_count(metric: str, cfg: CanaryConfig) -> int:
    if metric in (QUALITY, HALLUCINATION):
        return cfg.min_judged
    if metric in (CONVERSION, FEEDBACK):
        return cfg.min_business
    return cfg.min_requests


def _tolerance(metric: str, cfg: CanaryConfig, prof: Profile | None = None) -> float:
    prof = prof or Profile()
    return {
        QUALITY: cfg.quality_tolerance,
        HALLUCINATION: cfg.hallucination_tolerance,
        LATENCY: latency_tolerance_ms(prof.latency_mean_ms, cfg),
        ERROR_RATE: cfg.error_tolerance,
        CONVERSION: cfg.conversion_tolerance,
        FEEDBACK: cfg.feedback_tolerance,
    }[metric]


def _rate(metric: str, prof: Profile) -> float:
    return {
        HALLUCINATION: prof.hallucination_rate,
        ERROR_RATE: prof.error_rate,
        CONVERSION: 1 - prof.conversion_rate,  # tested as the complement: "not converted" going up
        FEEDBACK: 1 - prof.feedback_up,
    }[metric]


def _inverse_count(mean: float) -> float:
    """E[1/J | J >= 1] for J ~ Poisson(mean): the variance factor of a mean over a random number of answers."""
    from scipy.stats import poisson

    if mean > 200:
        return 1 / mean
    hi = int(mean + 10 * math.sqrt(mean) + 10)
    js = range(1, hi + 1)
    p0 = float(poisson.pmf(0, mean))
    return sum(float(poisson.pmf(j, mean)) / j for j in js) / (1 - p0)


def family_size(t: CanaryTraffic, prof: Profile, cfg: CanaryConfig) -> int:
    """Metrics in the judge's Holm family at this traffic: the four always judged, plus each business metric
    with enough observations in both arms."""
    optional = [m for m in (FEEDBACK, CONVERSION) if min(_counts(m, t, prof)) >= cfg.min_business]
    return 4 + len(optional)


def _power(effect: Effect, t: CanaryTraffic, prof: Profile, cfg: CanaryConfig, family: int, scale: float) -> float:
    n_c, n_b = _counts(effect.metric, t, prof, scale)
    if min(n_c, n_b) < _min_count(effect.metric, cfg) or t.window_minutes < cfg.min_points:
        return 0.0
    z = _norm_ppf(1 - cfg.alpha / family)
    tol = _tolerance(effect.metric, cfg, prof)
    if effect.metric in (QUALITY, LATENCY):
        from scipy.stats import t as student

        sd = prof.quality_sd if effect.metric == QUALITY else prof.latency_sd_ms
        k = t.window_minutes  # one point per minute and arm
        # a period's mean over a Poisson number J of answers has variance sd^2 * E[1/J | J >= 1]
        var_c, var_b = sd**2 * _inverse_count(n_c / k), sd**2 * _inverse_count(n_b / k)
        se = math.sqrt((var_c + var_b) / k) / math.sqrt(_MWU_EFFICIENCY)
        crit = float(student.ppf(1 - cfg.alpha / family, 2 * k - 2))  # few points: t, not z
        return 1 - _norm_cdf((max(tol, crit * se) - effect.harm) / se)
    p0 = _rate(effect.metric, prof)
    p1 = min(1.0, p0 + effect.harm)
    pooled = (n_c * p1 + n_b * p0) / (n_c + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_b))
    se1 = math.sqrt(p1 * (1 - p1) / n_c + p0 * (1 - p0) / n_b)
    return 1 - _norm_cdf((max(tol, z * se0) - effect.harm) / se1)


def detect(
    t: CanaryTraffic,
    prof: Profile | None = None,
    cfg: CanaryConfig | None = None,
    effects: Sequence[Effect] = DEFAULT_EFFECTS,
) -> list[Detection]:
    prof, cfg = prof or Profile(), cfg or CanaryConfig()
    family = family_size(t, prof, cfg)
    out: list[Detection] = []
    for e in effects:
        n_c, n_b = _counts(e.metric, t, prof)
        judged = min(n_c, n_b) >= _min_count(e.metric, cfg) and t.window_minutes >= cfg.min_points
        fam = family if judged or e.metric not in (FEEDBACK, CONVERSION) else family + 1
        critical = e.metric in cfg.critical
        power = _power(e, t, prof, cfg, fam, 1.0) if critical else 0.0
        d = Detection(e, int(n_c), int(n_b), fam, power, judged, None)
        if not critical:
            d.notes.append("not critical: reported in the analysis and the rollback email, never a rollback alone")
        elif e.harm <= _tolerance(e.metric, cfg, prof):
            tol = _tolerance(e.metric, cfg, prof)
            d.notes.append(f"within the rule's tolerance ({tol:.4g}): by design not a rollback (only noise fires it)")
        elif power < TARGET_POWER:
            d.scale_for_80 = _scale_for(e, t, prof, cfg, fam)
        out.append(d)
    return out


def _scale_for(e: Effect, t: CanaryTraffic, prof: Profile, cfg: CanaryConfig, family: int) -> float | None:
    lo, hi = 1.0, 2.0
    while _power(e, t, prof, cfg, family, hi) < TARGET_POWER:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            return None
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _power(e, t, prof, cfg, family, mid) < TARGET_POWER else (lo, mid)
    return hi


def never_fires(
    t: CanaryTraffic,
    prof: Profile | None = None,
    cfg: CanaryConfig | None = None,
) -> list[str]:
    """Settings under which a critical canary rule could never fail a regressed canary (or never pass a good one).
    Each message names what to change."""
    from math import comb

    prof, cfg = prof or Profile(), cfg or CanaryConfig()
    problems: list[str] = []
    if t.window_minutes < cfg.min_points:
        problems.append(
            f"canaryIntervalMinutes {t.interval_minutes}: the live verdict is final {t.lead_minutes} min before the "
            f"step ends, leaving {t.window_minutes} one-minute periods (< {cfg.min_points} needed): raise the interval"
        )
        return problems
    family = family_size(t, prof, cfg)
    level = cfg.alpha / family
    k = t.window_minutes
    best_mwu = 1 / comb(2 * k, k)
    from scipy.stats import poisson

    for metric in (QUALITY, LATENCY, HALLUCINATION, ERROR_RATE):
        n_c, n_b = _counts(metric, t, prof)
        need = _min_count(metric, cfg)
        short = 1 - float(poisson.sf(need - 1, min(n_c, n_b)))  # chance an arm falls short at peak traffic
        if short > MAX_SHORT:
            problems.append(
                f"{metric}: ~{min(n_c, n_b):.0f} observations per arm expected in the {k}-minute verdict window, so "
                f"{short:.0%} of healthy canaries would have fewer than {need} and fail for lack of data "
                f"(at most {MAX_SHORT:.0%} allowed): lower the minimum or raise traffic, interval or capture rate"
            )
            continue
        if metric in (QUALITY, LATENCY):
            best = best_mwu
        else:
            nc, nb = round(n_c), round(n_b)
            best = two_proportion(nc, nc, round(_rate(metric, prof) * nb), nb)[1]
        if best >= level:
            problems.append(
                f"{metric}: even the worst possible canary gives p = {best:.3g}, not below {cfg.alpha:g}/{family} "
                f"(Holm over {family} metrics) with {k} periods: the rule could never fire"
            )
        tol = _tolerance(metric, cfg, prof)
        ceiling = prof.quality_mean if metric == QUALITY else (1 - _rate(metric, prof) if metric != LATENCY else None)
        if ceiling is not None and tol >= ceiling:
            problems.append(f"{metric}: tolerance {tol:g} is at least the largest possible change {ceiling:g}")
    return problems


def report(t: CanaryTraffic, detections: Sequence[Detection]) -> str:
    lines = [
        f"canary {t.canary_percent:g}% for {t.interval_minutes} min at {t.peak_rps:g} rps peak, capture "
        f"{t.capture_rate:g}: verdict on {t.window_minutes} min ({t.lead_minutes} min before the shift), "
        f"~{t.judged_per_min * t.window_minutes:.0f} judged answers and ~{t.canary_per_min * t.window_minutes:.0f} "
        "canary requests",
        f"{'regression':<52} {'n canary/baseline':>18} {'power':>6}  verdict",
    ]
    for d in detections:
        n = f"{d.n_canary}/{d.n_baseline}"
        if not d.judged:
            verdict = "NOT JUDGED: too few observations per arm"
        elif d.detectable:
            verdict = "detectable (>= 80% power)"
        else:
            verdict = "NOT detectable"
        if d.scale_for_80 is not None and not d.detectable:
            minutes = math.ceil(t.window_minutes * d.scale_for_80) + t.lead_minutes
            verdict += (
                f"; 80% needs x{d.scale_for_80:.1f} the traffic (~{d.n_canary * d.scale_for_80:,.0f} per canary arm: "
                f"a {minutes}-minute canary, or {t.peak_rps * d.scale_for_80:.3g} rps peak)"
            )
        verdict += "".join(f"; {n_}" for n_ in d.notes)
        lines.append(f"{d.effect.label:<52} {n:>18} {d.power:>6.0%}  {verdict}")
    return "\n".join(lines)
