import math

import numpy as np
import pytest

from evalgate.core.stats import bootstrap_mean, paired_difference, quantile_interval, wilson


def test_wilson_known_values():
    # Wilson 95% interval for 0/10 is [0, 0.2775]; for 5/10 it is [0.2366, 0.7634] (standard tables)
    iv = wilson(0, 10)
    assert iv.value == 0 and iv.low == 0 and math.isclose(iv.high, 0.2775, abs_tol=5e-4)
    iv = wilson(5, 10)
    assert math.isclose(iv.low, 0.2366, abs_tol=5e-4) and math.isclose(iv.high, 0.7634, abs_tol=5e-4)
    assert wilson(0, 0).value is None


def test_bootstrap_mean_covers_truth_and_matches_normal_width():
    rng = np.random.default_rng(1)
    x = rng.normal(0.8, 0.1, size=400)
    iv = bootstrap_mean(list(x), resamples=4000)
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert iv.low < 0.8 < iv.high
    assert math.isclose(iv.high - iv.low, 2 * 1.96 * se, rel_tol=0.15)
    assert bootstrap_mean([]).value is None
    one = bootstrap_mean([0.5])
    assert one.value == 0.5 and one.low is None


def test_paired_difference_detects_shift_and_requires_pairs():
    base = [0.9, 0.8, 0.85, 0.95, 0.7, 0.88, 0.9, 0.92]
    cand = [b - 0.1 for b in base]
    iv = paired_difference(cand, base)
    assert math.isclose(iv.value, -0.1) and iv.high < 0
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])


def test_quantile_interval_p95():
    x = list(range(1, 101))
    iv = quantile_interval(x, 0.95)
    assert math.isclose(iv.value, 95.05) and iv.low <= 95.05 <= iv.high
