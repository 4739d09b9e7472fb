"""The load test's pure parts: the open-loop schedule, pool sizing, bounds, and the gate on recorded requests."""

from __future__ import annotations

import itertools
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evalgate.core.config import GateConfig, load_config
from evalgate.core.errors import InputError
from evalgate.core.latency import LatencyBudget
from evalgate.core.models import Case
from evalgate.engine.load import LoadPlan, RequestRecord, arrival_offsets, check_bounds, pool_size, summarise

from .core_fakes import DictCandidate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config() -> GateConfig:
    return load_config(ROOT / "golden" / "gate.toml")


def test_fixed_schedule_is_evenly_spaced():
    off = arrival_offsets(20, 3, "fixed", 1)
    assert len(off) == 60 and off[0] == 0.0
    assert all(abs((b - a) - 0.05) < 1e-12 for a, b in itertools.pairwise(off))


def test_poisson_schedule_has_the_offered_rate_and_exponential_gaps():
    off = arrival_offsets(50, 200, "poisson", 7)
    n = len(off)
    assert abs(n - 10_000) < 4 * 100  # Poisson count: sd = sqrt(10000) = 100
    gaps = np.diff(off)
    assert abs(gaps.mean() - 0.02) < 4 * 0.02 / np.sqrt(n)
    assert abs(statistics.pstdev(gaps) / gaps.mean() - 1.0) < 0.05  # exponential: coefficient of variation 1
    assert off == arrival_offsets(50, 200, "poisson", 7) and off != arrival_offsets(50, 200, "poisson", 8)
    assert max(off) < 200


def test_pool_size_follows_littles_law_within_bounds():
    assert pool_size(10, 1800, 256) == 27 + 4  # 10 rps x 1.8 s x 1.5 headroom, + 4
    assert pool_size(0.5, 100, 256) == 1 + 4  # ceil(0.5 x 1 s (the floor) x 1.5), + 4
    assert pool_size(1000, 1800, 64) == 64


def test_bounds_refuse_oversized_schedules():
    check_bounds(10, 60, 20_000, 900)
    with pytest.raises(InputError, match="about 60000 requests; the limit is 20000"):
        check_bounds(1000, 60, 20_000, 900)
    with pytest.raises(InputError, match="above the limit of 900s"):
        check_bounds(1, 1000, 20_000, 900)
    with pytest.raises(InputError, match="schedules no request"):
        check_bounds(0.1, 2, 20_000, 900)


def plan(
    slo: float = 450,
    baseline: float | None = None,
    regression_ms: float | None = 250,
    regression_pct: float | None = 10,
) -> LoadPlan:
    return LoadPlan(
        rate=10,
        duration_s=10,
        arrival="fixed",
        budget=LatencyBudget(ttft_slo_ms=slo, regression_ms=regression_ms, regression_pct=regression_pct),
        timeout_s=5,
        late_tolerance_s=0.1,
        workers=8,
        seed=1,
        baseline_p95_ms=baseline,
    )


CASES = [Case(id=f"q-{i}", category="x", prompt=f"question {i}?", reference="r", context=[]) for i in range(4)]
LAG_MS = 1.0  # every request starts 1 ms after its scheduled time


def records(
    latencies_ms: list[float], statuses: list[str] | None = None, ttft_ms: list[float | None] | None = None
) -> list[RequestRecord]:
    """Requests with these total times; the target reported ``ttft_ms`` (default 100 ms each)."""
    out = []
    for i, lat in enumerate(latencies_ms):
        status = statuses[i] if statuses else "ok"
        sched = i * 0.1
        r = RequestRecord(i, CASES[i % 4].id, sched, started_s=sched + LAG_MS / 1000, status=status)  # type: ignore[arg-type]
        if status != "dropped":
            r.finished_s = sched + lat / 1000
        if status in ("error", "throttled"):
            r.error = f"{status} #{i}"
        if status == "ok":
            r.target_ttft_ms = ttft_ms[i] if ttft_ms is not None else 100.0
        out.append(r)
    return out


def summary(recs: list[RequestRecord], config: GateConfig, **kw: Any):
    return summarise(recs, plan(**kw), config, DictCandidate({}), CASES, datetime.now(UTC), max_in_flight=3)


def agg(r: Any, metric: str) -> Any:
    return next(a for a in r.aggregates if a.metric == metric)


def test_p95_time_to_first_token_from_the_scheduled_time_gates_the_slo(config: GateConfig):
    ttft: list[float | None] = [100.0] * 90 + [600.0] * 10
    total = [2000.0] * 100  # long answers: the total is far above any TTFT SLO and is not what it gates
    r = summary(records(total, ttft_ms=ttft), config)
    p95 = agg(r, "p95_ttft_ms")
    assert p95.value == pytest.approx(float(np.quantile([t + LAG_MS for t in ttft if t], 0.95)))  # the slow mode
    assert p95.threshold == 450 and p95.status == "fail" and p95.ci_low is not None
    assert r.verdict.verdict == "FAIL" and r.verdict.exit_code == 1
    assert r.verdict.reasons[0].startswith("p95 time to first token 601 ms") and "SLO of 450 ms" in r.verdict.reasons[0]
    assert agg(r, "p50_ttft_ms").value == pytest.approx(100.0 + LAG_MS) and agg(r, "p50_ttft_ms").status == "not_gated"
    assert agg(r, "p95_latency_ms").status == "not_gated"  # no baseline: the total is reported, not gated
    assert r.load is not None and "scheduled send time" in r.load["latency"]
    ok = summary(records(total, ttft_ms=ttft), config, slo=700)
    assert ok.verdict.verdict == "PASS" and ok.verdict.reasons[0].startswith("p95 time to first token 601 ms (SLO 700")
    assert [c.id for c in ok.cases] == [c.id for c in CASES] and all(c.suite == "load" for c in ok.cases)


def test_total_answer_time_fails_on_plus_x_ms_or_plus_y_percent_over_the_baseline(config: GateConfig):
    total = [1000.0] * 90 + [1400.0] * 10  # p95 1400 ms
    # baseline 1000: +250 ms or +10% -> the tighter +100 ms applies: limit 1100
    r = summary(records(total), config, baseline=1000.0)
    p95 = agg(r, "p95_latency_ms")
    assert (p95.threshold, p95.status) == (1100.0, "fail") and r.verdict.verdict == "FAIL"
    assert "p95 total answer time 1400 ms" in r.verdict.reasons[0] and "+250 ms or +10%" in r.verdict.reasons[0]
    # only the absolute tolerance: limit 1250, still a fail; only 50%: limit 1500, a pass
    assert summary(records(total), config, baseline=1000.0, regression_pct=None).verdict.verdict == "FAIL"
    assert (
        summary(records(total), config, baseline=1000.0, regression_ms=None, regression_pct=50).verdict.verdict
        == "PASS"
    )
    # a baseline of 1300 allows 1300 + min(250, 130) = 1430
    passed = summary(records(total), config, baseline=1300.0)
    assert agg(passed, "p95_latency_ms").threshold == 1430.0 and passed.verdict.verdict == "PASS"
    assert passed.load is not None and passed.load["baseline_total_p95_ms"] == 1300.0


def test_an_slo_without_any_reported_time_to_first_token_is_an_error(config: GateConfig):
    r = summary(records([300.0] * 50, ttft_ms=[None] * 50), config)
    assert agg(r, "p95_ttft_ms").status == "insufficient"
    assert r.verdict.verdict == "ERROR" and "reported none for 50 successful requests" in " ".join(r.verdict.reasons)


def test_errors_throttles_late_and_too_few_samples(config: GateConfig):
    n = 100
    st = ["ok"] * n
    for i in range(0, 10):
        st[i * 10] = "error"
    r = summary(records([100.0] * n, st), config)
    assert r.verdict.verdict == "ERROR" and r.verdict.exit_code == 4
    assert r.verdict.reasons[0].startswith("10 of 100 requests failed (10.0% > 1.0%) (e.g. error #0)")
    st = ["ok"] * n
    st[5] = st[50] = st[70] = "throttled"
    r = summary(records([100.0] * n, st), config)
    assert r.verdict.verdict == "FAIL" and "throttled 3 of 100 requests" in r.verdict.reasons[0]
    assert r.load is not None and r.load["throttled"] == 3 and r.load["errors"] == 0
    st = ["ok"] * n
    for i in range(20):
        st[i] = "dropped"
    r = summary(records([100.0] * n, st), config)
    assert r.verdict.verdict == "ERROR" and "20 of 100 requests could not start within 100 ms" in r.verdict.reasons[0]
    late_and_slow = summary(records([900.0] * n, st, ttft_ms=[900.0] * n), config)
    assert late_and_slow.verdict.verdict == "FAIL"  # drops only hide slow requests: the latency fail stands
    few = summary(records([100.0] * 10), config)
    assert few.verdict.verdict == "ERROR" and "only 10 completed requests (minimum 20)" in few.verdict.reasons[0]


def test_rates_are_decided_by_the_gates_threshold_rule(config: GateConfig):
    st = ["ok"] * 100
    st[5] = "throttled"  # 1% throttled: on the limit, its interval reaching above it
    r = summary(records([100.0] * 100, st), config)
    assert agg(r, "throttle_rate").status == "borderline"  # what the gate calls borderline, the same for rates
    assert r.verdict.verdict == "PASS"
    assert r.verdict.reasons[-1].startswith("borderline (interval straddles the threshold): ")
    assert "load.throttle_rate" in r.verdict.reasons[-1]
    st[6] = "throttled"  # 2%: above the limit
    r = summary(records([100.0] * 100, st), config)
    assert agg(r, "throttle_rate").status == "fail" and r.verdict.verdict == "FAIL"
    assert "throttled 2 of 100 requests" in r.verdict.reasons[0]


def test_timeouts_count_in_the_total_time_as_a_lower_bound(config: GateConfig):
    st = ["ok"] * 90 + ["timeout"] * 10
    r = summary(records([100.0] * 90 + [5000.0] * 10, st), config, baseline=100.0)
    assert r.load is not None and r.load["timeouts"] == 10 and r.load["errors"] == 0
    assert r.verdict.verdict == "FAIL"  # p95 total is at the 5 s timeout
