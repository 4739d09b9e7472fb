"""Statistics for decisions with uncertainty: bootstrap intervals for means, Wilson intervals for rates,
paired bootstrap for baseline differences; the gate's tests (exact McNemar, paired t, Holm with Tarone's count).
numpy is imported on first use (a run loads it while its first calls are in flight: ``load``), scipy only by the
t-tests, i.e. by a run with a baseline, which keeps a run's start-up short."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def load() -> None:
    """Import numpy now: a run calls this while its first calls are in flight, so that start-up does not wait
    for it and scoring, at the end, finds it loaded."""
    # numpy loads its submodules on first use: the bootstrap needs these (np.quantile loads numpy.ma).
    import numpy.ma
    import numpy.random  # noqa: F401


@dataclass(frozen=True)
class Interval:
    value: float | None
    low: float | None
    high: float | None
    n: int


def bootstrap_mean(values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 7) -> Interval:
    """Mean with a percentile bootstrap interval. n=1 gives the value with no interval."""
    import numpy as np

    x = np.asarray([v for v in values if v is not None], dtype=float)
    n = len(x)
    if n == 0:
        return Interval(None, None, None, 0)
    mean = float(x.mean())
    if n == 1 or np.all(x == x[0]):
        return Interval(mean, None if n == 1 else mean, None if n == 1 else mean, n)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    means = x[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return Interval(mean, float(lo), float(hi), n)


def wilson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a proportion (well behaved at 0 and 1, unlike the normal approximation)."""
    if n == 0:
        return Interval(None, None, None, 0)
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 or n successes the bound is exactly 0 or 1 (centre == half algebraically); do not leave rounding dust.
    low = 0.0 if successes == 0 else max(0.0, float(centre - half))
    high = 1.0 if successes == n else min(1.0, float(centre + half))
    return Interval(p, low, high, n)


def paired_difference(
    candidate: Sequence[float],
    baseline: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 7,
) -> Interval:
    """Mean of (candidate - baseline) over paired cases, with a bootstrap interval over cases."""
    import numpy as np

    c = np.asarray(candidate, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if c.shape != b.shape:
        raise ValueError("paired samples must have the same length")
    return bootstrap_mean(list(c - b), confidence, resamples, seed)


def quantile(values: Sequence[float], q: float) -> float | None:
    import numpy as np

    x = np.asarray([v for v in values if v is not None], dtype=float)
    return float(np.quantile(x, q)) if len(x) else None


def quantile_interval(
    values: Sequence[float], q: float, confidence: float = 0.95, resamples: int = 2000, seed: int = 7
) -> Interval:
    """A quantile (e.g. p95 latency) with a bootstrap interval."""
    import numpy as np

    x = np.asarray([v for v in values if v is not None], dtype=float)
    n = len(x)
    if n == 0:
        return Interval(None, None, None, 0)
    point = float(np.quantile(x, q))
    if n == 1:
        return Interval(point, None, None, 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    qs = np.quantile(x[idx], q, axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(qs, [alpha, 1 - alpha])
    return Interval(point, float(lo), float(hi), n)


def bootstrap_statistic(
    n: int,
    statistic: Callable[[np.ndarray], float | None],
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 7,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of any statistic of ``n`` items, given as a function of an index array
    (kappa and AUROC of a judge against labels). Resamples where the statistic is undefined are dropped."""
    import numpy as np

    if n < 2:
        return None, None
    rng = np.random.default_rng(seed)
    stats = [s for _ in range(resamples) if (s := statistic(rng.integers(0, n, size=n))) is not None]
    if len(stats) < resamples // 2:
        return None, None
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(np.asarray(stats, dtype=float), [alpha, 1 - alpha])
    return float(lo), float(hi)


# ------------------------------------------------------------------------------------------------ tests


def mcnemar_exact(broke: int, fixed: int) -> float:
    """One-sided exact McNemar test on the discordant pairs of a paired pass/fail comparison: the p-value that
    ``broke`` (pass -> fail) or more of the ``broke + fixed`` discordant cases went the bad way when each
    direction is equally likely (binomial, p = 1/2). No discordant pair is no evidence: 1.0."""
    from math import comb

    n = broke + fixed
    if n == 0:
        return 1.0
    tail: int = sum(comb(n, i) for i in range(broke, n + 1))
    return min(1.0, tail / (1 << n))  # the exact binomial tail, in integers


def mcnemar_min_p(broke: int, fixed: int) -> float:
    """The smallest p-value ``mcnemar_exact`` could give with this many discordant pairs (all of them broke)."""
    return 0.5 ** (broke + fixed)


def paired_t_pvalue(candidate: Sequence[float], baseline: Sequence[float], higher_is_better: bool) -> float:
    """One-sided paired t-test that the candidate is worse than the baseline. Identical pairs: 1.0."""
    import numpy as np

    d = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
    if len(d) < 2 or np.all(d == d[0]):
        worse = bool(len(d) and ((d[0] < 0) if higher_is_better else (d[0] > 0)))
        return 0.0 if worse and len(d) >= 2 else 1.0
    from scipy import stats as sps  # lazily: only a run with a baseline pays for scipy

    res = sps.ttest_1samp(d, 0.0, alternative="less" if higher_is_better else "greater")
    return float(res.pvalue)


def step_down(p_values: Sequence[float], min_p: Sequence[float] | None = None, alpha: float = 0.05) -> list[float]:
    """Family-wise adjusted p-values (reject where adjusted <= alpha): Holm's step-down, with Tarone's count for
    discrete tests (Hommel & Krummenauer 1998). A test whose smallest attainable p-value (``min_p``, 0 for
    continuous tests) cannot reach the current level does not count towards the family, so segments too small
    to ever reject do not dilute the ones that can. Valid by closed testing: Tarone's count only shrinks on
    subsets. Without ``min_p`` this is plain Holm."""
    m = len(p_values)
    mins = list(min_p) if min_p is not None else [0.0] * m
    if len(mins) != m:
        raise ValueError("p_values and min_p must have the same length")
    adjusted = [1.0] * m
    remaining = set(range(m))
    running = 0.0
    while remaining:
        k = _tarone_count([mins[i] for i in remaining], alpha)
        testable = [i for i in remaining if mins[i] <= alpha / k]
        if not testable:
            break
        i = min(testable, key=lambda j: p_values[j])
        running = max(running, min(1.0, p_values[i] * k))
        adjusted[i] = running
        remaining.discard(i)
    return adjusted


def _tarone_count(min_p: Sequence[float], alpha: float) -> int:
    """Tarone's K: the smallest k with at most k tests able to reach alpha / k."""
    m = len(min_p)
    for k in range(1, m + 1):
        if sum(1 for p in min_p if p <= alpha / k) <= k:
            return k
    return max(m, 1)


def excess_pvalue(excess: Sequence[float]) -> float | None:
    """One-sided t-test that the mean of ``excess`` is above 0 (drift beyond run-to-run noise)."""
    import numpy as np

    x = np.asarray(excess, dtype=float)
    if len(x) < 2:
        return None
    if np.all(x == x[0]):
        return 0.0 if x[0] > 0 else 1.0
    from scipy import stats as sps  # lazily, as above

    return float(sps.ttest_1samp(x, 0.0, alternative="greater").pvalue)


def cohen_kappa(pred: Sequence[int], truth: Sequence[int]) -> float | None:
    """Cohen's kappa of two 0/1 raters (None when undefined: no items, or chance agreement is certain)."""
    n = len(pred)
    if n == 0:
        return None
    po = sum(1 for p, t in zip(pred, truth, strict=True) if p == t) / n
    p1, t1 = sum(pred) / n, sum(truth) / n
    pe = p1 * t1 + (1 - p1) * (1 - t1)
    return None if pe == 1 else (po - pe) / (1 - pe)


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties share their mean rank), or None when it is undefined: fewer than 3
    pairs, or one side constant."""
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    from scipy import stats as sps  # lazily, as above

    rho = float(sps.spearmanr(a, b).statistic)
    return rho if math.isfinite(rho) else None
