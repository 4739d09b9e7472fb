"""A judged run checks its judge: a judge change is no regression, the judge re-judges a sample, repeats expose
flaky cases without narrowing intervals, and an aggregate within run-to-run noise of its threshold is REVIEW."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from evalgate.core.config import load_config
from evalgate.core.dataset import load_golden
from evalgate.core.models import Case, Generation, KnowledgeEntry, MetricValue
from evalgate.core.results import Aggregate, CaseResult, Verdict
from evalgate.engine.cache import Cache
from evalgate.engine.judge import Judge
from evalgate.engine.judge_trust import decide_with_trust
from evalgate.engine.runner import rescore_baseline, run_evaluation
from evalgate.reports.html import render_html
from evalgate.reports.junit import render_junit
from evalgate.reports.markdown import render_markdown

from .core_fakes import DictCandidate, HashEmbedder, ScriptedJudgeModel

GOOD = "You can return items within 30 days of delivery and get a full refund."
DECLINE = "I'm sorry, but I can't share information about another customer's account."


def answers() -> dict[str, object]:
    a: dict[str, object] = {f"c-{i:03d}": GOOD for i in range(10)}
    a["c-010"] = DECLINE
    return a


class NamedJudge(ScriptedJudgeModel):
    def __init__(self, model_id: str, score: float) -> None:
        super().__init__(lambda user: {"score": score, "verdict": "pass", "reasons": "ok", "unsupported_claims": []})
        self.model_id = model_id


def evaluate(golden_dir: Path, candidate, judge_model=None, baseline=None, **kw):
    golden = load_golden(golden_dir)
    config = kw.pop("config", None) or load_config(golden_dir / "gate.toml")
    judge = Judge(judge_model, cache=kw.get("cache")) if judge_model else None
    embedder = kw.pop("embedder", HashEmbedder())
    if baseline is not None and kw.pop("rescore", True):
        baseline, note = rescore_baseline(
            baseline,
            golden=golden,
            cases=golden.cases,
            config=config,
            tier="full",
            judge=judge,
            embedder=embedder,
            cache=kw.get("cache"),
        )
        kw["note"] = note
    note = kw.pop("note", {})
    result = run_evaluation(
        golden=golden,
        cases=golden.cases,
        candidate=candidate,
        config=config,
        tier="full",
        judge=judge,
        embedder=embedder,
        baseline=baseline,
        **kw,
    )
    return result, note


def test_a_judge_change_between_two_runs_of_the_same_answers_is_no_regression(golden_dir: Path, tmp_path: Path):
    cache = Cache(tmp_path / "cache.sqlite")
    base, _ = evaluate(golden_dir, DictCandidate(answers()), NamedJudge("judge-lenient", 0.99), cache=cache)
    assert base.verdict.verdict == "PASS" and base.judge["model_id"] == "judge-lenient"
    harsh = NamedJudge("judge-harsh", 0.90)  # still above the 0.85 threshold, but 0.09 lower on every answer
    # Compared as stored, the judge change looks like a regression of every answer:
    naive, _ = evaluate(golden_dir, DictCandidate(answers()), harsh, base, rescore=False, cache=cache)
    assert (
        naive.verdict.verdict == "REVIEW"
        and "faithfulness worse than the approved baseline" in naive.verdict.reasons[0]
    )
    # Re-scored with the current judge first, the identical answers compare equal:
    calls = harsh.calls
    result, note = evaluate(golden_dir, DictCandidate(answers()), harsh, base, cache=cache)
    assert result.verdict.verdict == "PASS", result.verdict.reasons
    faith = next(c for c in result.comparisons if c.metric == "faithfulness")
    assert faith.diff == pytest.approx(0.0) and not faith.worse
    assert "judged by judge-lenient" in note["reasons"][0] and "this run by judge-harsh" in note["reasons"][0]
    assert note["cases"] == 11 and note["judge"]["model_id"] == "judge-harsh"
    assert harsh.calls == calls  # the re-scoring came from the cache (same judge, same answers)


def test_a_baseline_without_stored_answers_is_not_compared(golden_dir: Path):
    base, _ = evaluate(golden_dir, DictCandidate(answers()), NamedJudge("judge-lenient", 0.99))
    base.cases[0].generations = []  # e.g. a hand-trimmed results.json
    golden = load_golden(golden_dir)
    comparable, note = rescore_baseline(
        base,
        golden=golden,
        cases=golden.cases,
        config=load_config(golden_dir / "gate.toml"),
        tier="full",
        judge=Judge(NamedJudge("judge-harsh", 0.9)),
        embedder=HashEmbedder(),
    )
    assert comparable is None
    assert (
        "no stored answer for 1 paired case(s) (c-000)" in note["refused"]
        and "comparison is refused" in note["refused"]
    )


def test_the_judge_rejudges_borderline_answers_and_a_sample(golden_dir: Path):
    config = load_config(golden_dir / "gate.toml")
    config.judge_calibration.retest_share = 0.3
    result, _ = evaluate(golden_dir, DictCandidate(answers()), NamedJudge("steady", 0.95), config=config)
    sa = result.self_agreement
    assert sa is not None and sa["n"] >= 1 and sa["agreed"] == sa["n"] and sa["rate"] == 1.0
    assert sa["ci_low"] < 1.0  # Wilson interval: a handful of agreements is not proof
    assert result.verdict.verdict == "PASS"
    md = render_markdown(result)
    assert f"Judge self-agreement: {sa['agreed']} of {sa['n']} re-judged answers" in md


def test_a_judge_that_disagrees_with_itself_makes_the_run_review(golden_dir: Path):
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def moody(user: str) -> dict[str, object]:
        with lock:
            seen[user] = seen.get(user, 0) + 1
            first = seen[user] == 1
        score = 0.95 if first else 0.40  # confident the first time, the opposite the second
        return {"score": score, "verdict": "pass", "reasons": "r", "unsupported_claims": []}

    config = load_config(golden_dir / "gate.toml")
    config.judge_calibration.retest_share = 0.5
    result, _ = evaluate(golden_dir, DictCandidate(answers()), ScriptedJudgeModel(moody), config=config)
    sa = result.self_agreement
    assert sa is not None and sa["n"] >= 3 and sa["agreed"] == 0 and sa["below_floor"]
    assert result.verdict.verdict == "REVIEW"
    assert result.verdict.reasons[0].startswith(f"the judge disagreed with itself on {sa['n']} of {sa['n']}")


def test_a_judgement_is_retested_as_soon_as_it_is_in_not_in_a_wave_after_the_last_one(golden_dir: Path):
    order: list[str] = []
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def steady(user: str) -> dict[str, object]:
        with lock:
            seen[user] = seen.get(user, 0) + 1
            order.append("first" if seen[user] == 1 else "retest")
        return {"score": 0.95, "verdict": "pass", "reasons": "r", "unsupported_claims": []}

    config = load_config(golden_dir / "gate.toml")
    config.judge_calibration.retest_share = 1.0  # every first judgement is judged again
    model = ScriptedJudgeModel(steady)
    result, _ = evaluate(golden_dir, DictCandidate(answers()), model, config=config, concurrency=4)
    sa = result.self_agreement
    assert sa is not None and sa["n"] == order.count("retest") == order.count("first") >= 20
    assert sa["agreed"] == sa["n"] and result.verdict.verdict == "PASS"
    # Every call is accounted for, the retests' too (100 input tokens per scripted judge call).
    assert result.usage.by_model[model.model_id]["input_tokens"] == 100 * model.calls == 100 * len(order)
    order.clear()
    seen.clear()
    result, _ = evaluate(golden_dir, DictCandidate(answers()), model, config=config, concurrency=1)
    # One slot: had the retests waited for the last first judgement, none would come before it.
    last_first = len(order) - 1 - order[::-1].index("first")
    assert order[:last_first].count("retest") >= sa["n"] // 2


class RepeatCandidate(DictCandidate):
    """Answers that differ by repeat for some cases (a flaky candidate)."""

    def __init__(self, by_repeat: dict[str, list[str]], **kw: object) -> None:
        super().__init__(answers(), **kw)
        self.by_repeat = by_repeat

    def generate(self, case: Case, knowledge: list[KnowledgeEntry], repeat: int) -> Generation:
        g = super().generate(case, knowledge, repeat)
        if case.id in self.by_repeat:
            g.output = self.by_repeat[case.id][repeat]
        return g


def test_flaky_cases_are_listed_in_every_report(golden_dir: Path):
    bad = "You can return items within 60 days of delivery for a full refund."
    cand = RepeatCandidate({"c-004": [GOOD, bad, GOOD]})
    result, _ = evaluate(golden_dir, cand, NamedJudge("steady", 0.95), repeats=3)
    c4 = result.case("c-004")
    assert c4.flaky and c4.repeat_pass_rate == pytest.approx(2 / 3)
    assert [f["case_id"] for f in result.flaky] == ["c-004"]
    assert result.case("c-001").repeat_pass_rate == 1.0 and not result.case("c-001").flaky
    assert "Flaky cases (verdict flips between repeats): c-004 (passed 66.7% of 3 repeats (flaky)" in render_markdown(
        result
    )
    html = render_html(result)
    assert "c-004 (passed 66.7% of 3 repeats" in html and "passed 100.0% of 3 repeats" in html  # every case
    junit = render_junit(result)
    assert "c-004 (passed 66.7% of 3 repeats" in junit and "passed 100.0% of 3 repeats" in junit
    assert result.model_dump(mode="json")["flaky"][0]["case_id"] == "c-004"


def test_repeats_do_not_narrow_intervals(golden_dir: Path):
    """Each case is one observation (the mean of its repeats): k identical repeats give the interval of one run."""

    def scored(user: str) -> dict[str, object]:
        score = 0.99 if "item 1?" in user or "item 3?" in user else 0.88
        return {"score": score, "verdict": "pass", "reasons": "r", "unsupported_claims": []}

    one, _ = evaluate(golden_dir, DictCandidate(answers()), ScriptedJudgeModel(scored), repeats=1)
    three, _ = evaluate(golden_dir, DictCandidate(answers()), ScriptedJudgeModel(scored), repeats=3)
    a1 = next(a for a in one.aggregates if a.metric == "faithfulness")
    a3 = next(a for a in three.aggregates if a.metric == "faithfulness")
    assert a1.n == a3.n == 11 and (a3.ci_low, a3.ci_high) == (a1.ci_low, a1.ci_high)
    assert a1.ci_high - a1.ci_low > 0.01


def _case(i: int, repeats: list[float]) -> CaseResult:
    mv = MetricValue(name="faithfulness", value=sum(repeats) / len(repeats), details={"per_repeat": repeats})
    return CaseResult(id=f"c{i}", suite="regression", category="x", expected="answer", metrics={"faithfulness": mv})


def _agg(value: float, n: int, status: str) -> Aggregate:
    return Aggregate(
        metric="faithfulness", suite="regression", n=n, value=value, threshold=0.85, direction="min", status=status
    )  # type: ignore[arg-type]


def test_within_noise_of_the_threshold_is_review_not_a_coin_toss(golden_dir: Path):
    config = load_config(golden_dir / "gate.toml")
    noisy = [_case(i, [0.80, 0.90, 0.85]) for i in range(20)]  # within-case SD 0.05, SE 0.05/sqrt(60)=0.0065
    fail = Verdict(verdict="FAIL", exit_code=1, reasons=["regression.faithfulness = 0.845 fails ≥ 0.85 (n=20)"])
    v = decide_with_trust(fail, [_agg(0.845, 20, "fail")], noisy, None, config)
    assert v.verdict == "REVIEW" and "within run-to-run noise of its threshold 0.85" in v.reasons[0]
    ok = Verdict(verdict="PASS", exit_code=0, reasons=["all gated aggregates meet their thresholds"])
    assert decide_with_trust(ok, [_agg(0.855, 20, "pass")], noisy, None, config).verdict == "REVIEW"
    # Far from the threshold (more than z standard errors), the verdict stands.
    assert decide_with_trust(fail, [_agg(0.80, 20, "fail")], noisy, None, config).verdict == "FAIL"
    assert decide_with_trust(ok, [_agg(0.90, 20, "pass")], noisy, None, config).verdict == "PASS"
    # Without repeats, the judge's retest noise is used.
    single = [
        CaseResult(
            id=f"c{i}",
            suite="regression",
            category="x",
            expected="answer",
            metrics={"faithfulness": MetricValue(name="faithfulness", value=0.85)},
        )
        for i in range(20)
    ]
    retest = {"noise_sd": 0.05, "below_floor": False}
    v = decide_with_trust(ok, [_agg(0.86, 20, "pass")], single, retest, config)
    assert v.verdict == "REVIEW" and "from the judge's retest" in v.reasons[0]


def test_a_run_record_with_an_untrusted_judge_or_refused_comparison_cannot_pass(golden_dir: Path):
    """What `evalgate merge` re-applies to merged shards (the CLI applies the same to a run)."""
    from evalgate.core.gate import with_reviews
    from evalgate.engine.judge_trust import recorded_reviews

    result, _ = evaluate(golden_dir, DictCandidate(answers()), NamedJudge("steady", 0.95))
    assert result.verdict.verdict == "PASS" and recorded_reviews(result) == []
    result.judge_calibration = [{"judge": {"model_id": "steady"}, "ok": False, "problems": ["no record"]}]
    result.baseline = {"run_id": "b", "rescored": {"refused": "no stored answers"}}
    reviews = recorded_reviews(result)
    assert reviews == ["untrusted judge: no record", "baseline comparison refused: no stored answers"]
    v = with_reviews(result.verdict, reviews)
    assert v.verdict == "REVIEW" and v.exit_code == 3 and v.reasons[:2] == reviews
