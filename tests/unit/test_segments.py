"""Segment-aware gate rules with known answers: exact McNemar on discordant pairs, family-wise control
(Holm step-down with Tarone's count), segment verdicts naming the segment and its worst cases, and the
high-stakes hallucination rule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from evalgate.core.config import GateConfig, load_config
from evalgate.core.gate import aggregate_suite, compare, decide
from evalgate.core.models import MetricValue
from evalgate.core.results import CaseResult, RunResult, Verdict
from evalgate.core.stats import mcnemar_exact, mcnemar_min_p, step_down

ROOT = Path(__file__).resolve().parents[2]


def test_exact_mcnemar_known_values() -> None:
    assert mcnemar_exact(6, 0) == pytest.approx(1 / 64)  # all six discordant cases broke: 0.5^6
    assert mcnemar_exact(9, 1) == pytest.approx(11 / 1024)  # P(X >= 9), X ~ Bin(10, 1/2)
    assert mcnemar_exact(3, 3) == pytest.approx(42 / 64)  # P(X >= 3), X ~ Bin(6, 1/2)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_min_p(4, 2) == pytest.approx(1 / 64)


def test_holm_step_down_known_values() -> None:
    # Holm: sorted 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, then max(0.06, 0.04*1) = 0.06
    adj = step_down([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_tests_that_can_never_reject_do_not_dilute_the_family() -> None:
    # one segment with 6 discordant cases (min p 1/64) and nine with a single discordant case (min p 1/2):
    # Tarone's count is 1, so the strong segment is judged at alpha, not alpha / 10.
    p = [mcnemar_exact(6, 0)] + [mcnemar_exact(1, 0)] * 9
    mins = [mcnemar_min_p(6, 0)] + [mcnemar_min_p(1, 0)] * 9
    adj = step_down(p, mins)
    assert adj[0] == pytest.approx(1 / 64) and adj[0] <= 0.05
    assert all(a > 0.05 for a in adj[1:])
    # plain Holm over the same ten tests would not have rejected it
    assert step_down(p)[0] == pytest.approx(10 / 64) and step_down(p)[0] > 0.05


def config() -> GateConfig:
    cfg = load_config(ROOT / "golden" / "gate.toml")
    for name, _ in cfg.thresholds.items():
        setattr(cfg.thresholds, name, None)
    return cfg


def case(
    i: int, category: str, status: str, *, tags: list[str] | None = None, hallucinated: bool = False
) -> CaseResult:
    failures = ["similarity 0.40 below 0.72"] if status == "fail" else []
    if hallucinated:
        failures = ["hallucination: number not in the cited knowledge: 60"]
    return CaseResult(
        id=f"{category[:3]}-{i:02d}",
        suite="regression",
        category=category,
        tags=tags or [],
        expected="answer",
        metrics={"similarity": MetricValue(name="similarity", value=0.4 if status == "fail" else 0.9)},
        status=status,  # type: ignore[arg-type]
        failures=failures,
        hallucinated=hallucinated,
        unsupported_claims=["number not in the cited knowledge: 60"] if hallucinated else [],
    )


def gate(cases: list[CaseResult], baseline: list[CaseResult] | None, cfg: GateConfig) -> Verdict:
    base = None
    if baseline is not None:
        base = RunResult(
            run_id="base",
            started_at="",
            finished_at="",
            tool_version="",
            tier="t",
            suites=["regression"],
            candidate={},
            cases=baseline,
            verdict=Verdict(verdict="PASS", exit_code=0),
        )
    aggs = aggregate_suite(cases, "regression", cfg, None, set())
    comps = compare(cases, base, cfg) if base else []
    verdict, _ = decide(aggs, comps, None, None, cases, cfg)
    return verdict


CATS = ("returns", "shipping", "payments", "warranty", "accounts", "privacy")


def healthy() -> list[CaseResult]:
    return [case(i, cat, "pass") for cat in CATS for i in range(15)]


def test_a_broken_segment_is_named_with_its_worst_cases() -> None:
    cfg = config()
    cand = healthy()
    for c in cand[:6]:  # six of the fifteen returns cases now fail
        c.status, c.failures = "fail", ["wrong behaviour: expected answer, observed decline"]
    verdict = gate(cand, healthy(), cfg)
    assert verdict.verdict == "REVIEW" and verdict.exit_code == 3
    reason = next(r for r in verdict.reasons if r.startswith("returns:"))
    assert reason.startswith("returns: 6 of 15 cases now fail, 0 fixed")
    assert "ret-00 (wrong behaviour: expected answer, observed decline)" in reason


def test_a_broken_segment_hidden_in_the_mean_still_blocks() -> None:
    # 6 of 90 cases: the suite's pass rate moves by under 7 points, a drop the overall mean barely shows
    cfg = config()
    cand = healthy()
    for c in cand[15:21]:
        c.status = "fail"
    verdict = gate(cand, healthy(), cfg)
    assert verdict.verdict == "REVIEW"
    assert any(r.startswith("shipping: 6 of 15 cases now fail") for r in verdict.reasons)


def test_symmetric_churn_is_noise_not_a_regression() -> None:
    cfg = config()
    base, cand = healthy(), healthy()
    for i in range(0, 90, 15):  # one case per category breaks, another one per category is fixed
        cand[i].status = "fail"
        base[i + 1].status = "fail"
    verdict = gate(cand, base, cfg)
    assert verdict.verdict == "PASS", verdict.reasons


def test_many_weak_segments_do_not_add_false_reviews() -> None:
    # Each of 6 categories has 2 breaks and 0 fixes (p = 0.25 each): no segment and no union is evidence.
    cfg = config()
    base, cand = healthy(), healthy()
    for k, i in enumerate(range(0, 90, 15)):
        cand[i].status = "fail"
        if k % 2 == 0:
            cand[i + 1].status = "fail"
        else:
            base[i + 1].status = "fail"
    verdict = gate(cand, base, cfg)
    assert verdict.verdict == "PASS", verdict.reasons


def test_a_single_high_stakes_hallucination_always_fails() -> None:
    cfg = config()  # no thresholds at all, no baseline
    cases = healthy()
    cases[40] = case(40, "accounts", "fail", tags=["high_stakes"], hallucinated=True)
    verdict = gate(cases, None, cfg)
    assert verdict.verdict == "FAIL" and verdict.exit_code == 1
    assert any(r.startswith(f"high-stakes case {cases[40].id} (accounts) hallucinated") for r in verdict.reasons)
    # the same hallucination on an ordinary case is listed, not failed (no threshold configured here)
    cases[40] = case(40, "accounts", "fail", hallucinated=True)
    assert gate(cases, None, cfg).verdict == "PASS"


def test_family_adjusted_p_values_are_recorded() -> None:
    cfg = config()
    cand = healthy()
    for c in cand[:6]:
        c.status = "fail"
    base = RunResult(
        run_id="base",
        started_at="",
        finished_at="",
        tool_version="",
        tier="t",
        suites=["regression"],
        candidate={},
        cases=healthy(),
        verdict=Verdict(verdict="PASS", exit_code=0),
    )
    comps = compare(cand, base, cfg)
    decide(aggregate_suite(cand, "regression", cfg, None, set()), comps, None, None, cand, cfg)
    seg = next(c for c in comps if c.segment == "category=returns")
    assert (seg.broke, seg.fixed, seg.n_cases) == (6, 0, 15)
    assert math.isclose(seg.p_value or 0, 1 / 64) and seg.p_adjusted is not None and seg.p_adjusted >= seg.p_value
    assert seg.exceeds
