"""Statistics for decisions with uncertainty: bootstrap intervals for means, Wilson intervals for rates,
paired bootstrap for baseline differences. numpy only here (the per-case path stays light; scipy is not
needed on a run's path, which keeps a warm rerun's start-up short)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class Interval:
    value: float | None
    low: float | None
    high: float | None
    n: int


def bootstrap_mean(values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 7) -> Interval:
    """Mean with a percentile bootstrap interval. n=1 gives the value with no interval."""
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
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
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
    c = np.asarray(candidate, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if c.shape != b.shape:
        raise ValueError("paired samples must have the same length")
    return bootstrap_mean(list(c - b), confidence, resamples, seed)


def quantile(values: Sequence[float], q: float) -> float | None:
    x = np.asarray([v for v in values if v is not None], dtype=float)
    return float(np.quantile(x, q)) if len(x) else None


def quantile_interval(
    values: Sequence[float], q: float, confidence: float = 0.95, resamples: int = 2000, seed: int = 7
) -> Interval:
    """A quantile (e.g. p95 latency) with a bootstrap interval."""
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
