"""Canary judge: Mann-Whitney and two-proportion classifiers, minimum samples, fail closed, CloudWatch reads."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from evalgate.core.latency import LatencyBudget
from evalgate.release.canary import (
    ArmSamples,
    CanaryConfig,
    hodges_lehmann,
    judge_canary,
    mann_whitney,
    two_proportion,
)
from evalgate.release.canary_samples import CloudWatchSamples


def arm(
    version: str,
    quality: float = 0.85,
    latency: float = 900.0,
    *,
    points: int = 15,
    seed: int = 1,
    hall: int = 1,
    judged: int = 120,
    errors: int = 1,
    requests: int = 600,
    spread: float = 0.03,
) -> ArmSamples:
    rng = random.Random(seed)
    return ArmSamples(
        version=version,
        quality=[quality + rng.uniform(-spread, spread) for _ in range(points)],
        latency=[latency * (1 + rng.uniform(-0.05, 0.05)) for _ in range(points)],
        scored=judged,
        judged=judged,
        unscored=0,
        hallucinations=hall,
        hallucination_n=judged,
        errors=errors,
        requests=requests,
    )


def by_metric(result: object) -> dict[str, object]:
    return {r.metric: r for r in result.results}  # type: ignore[attr-defined]


def test_equal_arms_pass_with_full_score() -> None:
    res = judge_canary(arm("6", seed=1), arm("7", seed=2))
    assert res.passed and res.score == 100.0 and res.reasons == []
    assert {r.status for r in res.results} == {"pass"}
    assert (res.baseline_version, res.canary_version) == ("6", "7")


def test_quality_drop_beyond_tolerance_fails_critical() -> None:
    res = judge_canary(arm("6", quality=0.86), arm("7", quality=0.70, seed=3))
    q = by_metric(res)["QualityScore"]
    assert q.status == "fail" and q.p_value < 0.05 and q.effect == pytest.approx(-0.16, abs=0.03)  # type: ignore[attr-defined]
    assert not res.passed and any("QualityScore (critical)" in r for r in res.reasons)


def test_small_significant_quality_drop_within_tolerance_passes() -> None:
    res = judge_canary(arm("6", quality=0.860, spread=0.002), arm("7", quality=0.850, spread=0.002, seed=4))
    q = by_metric(res)["QualityScore"]
    assert q.p_value < 0.05 and q.status == "pass" and "within tolerance" in q.reason  # type: ignore[attr-defined]
    assert res.passed


def test_latency_regression_fails_the_canary() -> None:
    res = judge_canary(arm("6", latency=900), arm("7", latency=1400, seed=5))
    lat = by_metric(res)["Latency"]
    assert lat.status == "fail" and lat.effect > 400 and lat.critical  # ms  # type: ignore[attr-defined]
    assert not res.passed and any(r.startswith("Latency (critical): worse beyond tolerance 100") for r in res.reasons)
    # within the 100 ms tolerance: significant, but not a rollback
    small = judge_canary(arm("6", latency=900), arm("7", latency=960, seed=5))
    assert by_metric(small)["Latency"].status == "pass" and small.passed  # type: ignore[attr-defined]


def test_a_non_critical_failure_only_lowers_the_score() -> None:
    cfg = CanaryConfig(critical=frozenset({"QualityScore", "Hallucination", "ErrorRate"}))
    res = judge_canary(arm("6", latency=900), arm("7", latency=1400, seed=5), cfg)
    assert res.score == 75.0 and res.passed  # 3 of 4 pass and latency is not critical here
    assert res.notes and res.notes[0].startswith("Latency (non-critical)")
    strict = judge_canary(arm("6", latency=900), arm("7", latency=1400, seed=5), replace(cfg, pass_score=80))
    assert not strict.passed and "score 75 below 80" in strict.reasons[-1]


def test_metrics_are_one_holm_family() -> None:
    # Each metric alone at p just under 0.05 would fail; adjusted together, none is significant.
    from evalgate.release.canary import MetricResult, classify

    results = [
        MetricResult(m, "t", "pass", True, p_value=p, harm=1.0, tolerance=0.0, reason="r")
        for m, p in (("QualityScore", 0.04), ("Hallucination", 0.045), ("Latency", 0.049), ("ErrorRate", 0.03))
    ]
    classify(results, 0.05)
    assert all(r.status == "pass" for r in results)
    assert [r.p_adjusted for r in results] == pytest.approx([0.12] * 4)  # 0.03x4; 0.04x3; then monotone
    results[3].p_value = 0.001  # one strong signal: 0.004 after adjustment, fails; the others stay noise
    classify(results, 0.05)
    assert [r.status for r in results] == ["pass", "pass", "pass", "fail"]


def test_total_time_tolerance_is_plus_ms_or_plus_percent_of_the_previous_version() -> None:
    """+250 ms or +10%: on a 900 ms baseline the tighter +90 ms applies, so +150 ms fails and +40 ms does not."""
    cfg = CanaryConfig(latency_budget=LatencyBudget(regression_ms=250, regression_pct=10))
    slower = by_metric(judge_canary(arm("6", latency=900), arm("7", latency=1050, seed=5), cfg))["Latency"]
    assert slower.status == "fail"  # type: ignore[attr-defined]
    allowed = re.search(r"worse beyond tolerance ([\d.]+) ms", slower.reason)  # type: ignore[attr-defined]
    assert allowed and float(allowed.group(1)) == pytest.approx(0.10 * slower.baseline, abs=0.05)  # type: ignore[attr-defined]
    close = by_metric(judge_canary(arm("6", latency=900), arm("7", latency=940, seed=5), cfg))["Latency"]
    assert close.status == "pass"  # type: ignore[attr-defined]
    # with only +250 ms, +150 ms is tolerated
    ms_only = CanaryConfig(latency_budget=LatencyBudget(regression_ms=250))
    assert (
        by_metric(judge_canary(arm("6", latency=900), arm("7", latency=1050, seed=5), ms_only))["Latency"].status
        == "pass"
    )  # type: ignore[attr-defined]


def test_hallucination_rate_increase_fails() -> None:
    res = judge_canary(arm("6", hall=1, judged=200), arm("7", hall=15, judged=200, seed=6))
    h = by_metric(res)["Hallucination"]
    assert h.status == "fail" and h.canary == pytest.approx(0.075) and h.p_value < 0.001  # type: ignore[attr-defined]
    assert not res.passed


def test_error_rate_increase_fails() -> None:
    res = judge_canary(arm("6", errors=2, requests=1000), arm("7", errors=40, requests=1000, seed=7))
    assert by_metric(res)["ErrorRate"].status == "fail" and not res.passed  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("canary", "fragment"),
    [
        (arm("7", judged=10), "canary has 10 samples (< 30)"),
        (arm("7", points=2), "canary has 2 periods with data (< 3)"),
        (arm("7", requests=20), "canary has 20 samples (< 50)"),
    ],
)
def test_insufficient_data_fails_closed(canary: ArmSamples, fragment: str) -> None:
    res = judge_canary(arm("6"), canary)
    assert not res.passed
    assert any(fragment in r and "fail closed" in r for r in res.reasons)


def test_empty_canary_fails_closed() -> None:
    res = judge_canary(arm("6"), ArmSamples(version="7"))
    assert not res.passed and res.score == 0.0 and all(r.status == "nodata" for r in res.results)


def test_mostly_unscored_canary_fails_closed() -> None:
    can = arm("7", seed=9)
    can.judged, can.unscored = 200, 80
    res = judge_canary(arm("6"), can)
    assert not res.passed and "could not score 80/200" in res.reasons[0]


def test_feedback_is_judged_only_with_enough_feedback() -> None:
    base, can = arm("6"), arm("7", seed=2)
    assert "FeedbackScore" not in by_metric(judge_canary(base, can))
    base.feedback_up, base.feedback_n = 80, 100
    can.feedback_up, can.feedback_n = 55, 100
    fb = by_metric(judge_canary(base, can))["FeedbackScore"]
    assert fb.status == "fail" and fb.critical is False  # type: ignore[attr-defined]


def test_statistics_helpers() -> None:
    assert hodges_lehmann([2.0, 3.0], [1.0]) == 1.5
    assert mann_whitney([1.0] * 5, [1.0] * 5, "less") == 1.0
    assert mann_whitney([0.1, 0.2, 0.3, 0.2], [0.8, 0.9, 0.85, 0.95], "less") < 0.05
    diff, p = two_proportion(0, 100, 0, 100)
    assert (diff, p) == (0.0, 1.0)
    diff, p = two_proportion(20, 100, 5, 100)
    assert diff == pytest.approx(0.15) and p < 0.01
    assert two_proportion(5, 100, 20, 100)[1] > 0.99


@mock_aws
def test_cloudwatch_samples_read_per_version_series_and_counts() -> None:
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=10)

    def put(version: str, name: str, values: list[float], minute: int) -> None:
        ts = start + timedelta(minutes=minute, seconds=5)
        cw.put_metric_data(
            Namespace="EvalGate/Service",
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": "FunctionVersion", "Value": version}],
                    "Value": v,
                    "Timestamp": ts,
                }
                for v in values
            ],
        )

    for minute in range(4):
        put("7", "QualityScore", [0.8, 0.9], minute)
        put("7", "JudgedCount", [1, 1, 1], minute)
        put("7", "Unscored", [0, 0, 1], minute)
        put("7", "Hallucination", [0, 1], minute)
        put("7", "Latency", [1000.0, 1200.0], minute)
        put("7", "Errors", [0, 0, 1, 0], minute)
        put("6", "QualityScore", [0.5], minute)  # another version: must not leak in
    # the same metric with the three-dimension set is a different metric and must not double count
    cw.put_metric_data(
        Namespace="EvalGate/Service",
        MetricData=[
            {
                "MetricName": "QualityScore",
                "Value": 0.1,
                "Timestamp": start + timedelta(minutes=1),
                "Dimensions": [
                    {"Name": "FunctionVersion", "Value": "7"},
                    {"Name": "ModelId", "Value": "m"},
                    {"Name": "PromptVersion", "Value": "p"},
                ],
            }
        ],
    )

    s = CloudWatchSamples(cw, "EvalGate/Service").fetch("7", start, end)
    assert s.quality == pytest.approx([0.85] * 4)
    assert s.latency == pytest.approx([1100.0] * 4)
    assert (s.scored, s.judged, s.unscored) == (8, 12, 4)
    assert (s.hallucinations, s.hallucination_n) == (4, 8)
    assert (s.errors, s.requests) == (4, 16)
    assert (s.feedback_up, s.feedback_n) == (0, 0)
    other = CloudWatchSamples(cw, "EvalGate/Service").fetch("6", start, end)
    assert other.quality == pytest.approx([0.5] * 4) and other.requests == 0
