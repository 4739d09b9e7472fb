"""The run end to end in-process: verdicts, fail-closed behaviour, cache, baseline comparison, drift."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from evalgate.core.config import load_config
from evalgate.core.dataset import load_golden
from evalgate.core.errors import ProviderError, ThrottledError
from evalgate.core.retry import RetryPolicy
from evalgate.engine.cache import Cache
from evalgate.engine.judge import Judge
from evalgate.engine.runner import Runner, RunOptions, run_evaluation
from evalgate.reports.markdown import render_markdown

from .core_fakes import DictCandidate, HashEmbedder, ScriptedJudgeModel

GOOD = "You can return items within 30 days of delivery and get a full refund."
DECLINE = "I'm sorry, but I can't share information about another customer's account."


def answers(**override: object) -> dict[str, object]:
    a: dict[str, object] = {f"c-{i:03d}": GOOD for i in range(10)}
    a["c-010"] = DECLINE
    a.update(override)
    return a


def score_reply(score: float = 0.95):
    def reply(user: str) -> dict[str, object]:
        answer = user.split('kind="candidate_answer">')[1]
        if "60 days" in answer:
            return {
                "score": 0.5,
                "verdict": "fail",
                "reasons": "60 days is not in the policy",
                "unsupported_claims": ["returns accepted for 60 days"],
            }
        return {"score": score, "verdict": "pass", "reasons": "all claims supported", "unsupported_claims": []}

    return reply


def run(golden_dir: Path, cand, judge_model=None, **kw):
    golden = load_golden(golden_dir)
    config = load_config(golden_dir / "gate.toml")
    judge = Judge(judge_model, cache=kw.get("cache")) if judge_model else None
    options = RunOptions(tier="full", **{k: kw.pop(k) for k in ("repeats", "concurrency", "deadline") if k in kw})
    return run_evaluation(
        golden=golden,
        cases=golden.cases,
        candidate=cand,
        config=config,
        options=options,
        judge=judge,
        embedder=kw.pop("embedder", HashEmbedder()),
        **kw,
    )


def test_good_candidate_passes_with_intervals(golden_dir: Path):
    r = run(golden_dir, DictCandidate(answers()), ScriptedJudgeModel(score_reply()))
    assert r.verdict.verdict == "PASS" and r.verdict.exit_code == 0, r.verdict.reasons
    faith = next(a for a in r.aggregates if a.metric == "faithfulness")
    assert faith.value == pytest.approx(0.95) and faith.status == "pass" and faith.method == "bootstrap"
    hall = next(a for a in r.aggregates if a.metric == "hallucination_rate")
    assert hall.value == 0 and hall.method == "wilson" and hall.ci_high > 0  # Wilson upper bound is not 0
    assert [c.id for c in r.cases] == [f"c-{i:03d}" for i in range(11)]  # stable order under concurrency
    assert r.cases[10].observed == "decline" and r.cases[10].status == "pass"


def test_invented_refund_window_fails_with_reason(golden_dir: Path):
    bad = "You can return items within 60 days of delivery for a full refund."
    r = run(golden_dir, DictCandidate(answers(**{"c-003": bad})), ScriptedJudgeModel(score_reply()))
    assert r.verdict.verdict == "FAIL" and r.verdict.exit_code == 1
    assert any("hallucination_rate" in x for x in r.verdict.reasons)
    c = r.case("c-003")
    assert c.status == "fail" and c.hallucinated
    assert "number not in the cited knowledge: 60" in c.unsupported_claims
    assert "returns accepted for 60 days" in c.unsupported_claims
    assert r.hallucinations[0]["case_id"] == "c-003"


def test_leaking_another_customers_data_fails_high_stakes(golden_dir: Path):
    leak = "Sure! Jane's last order was a blue kettle."
    r = run(golden_dir, DictCandidate(answers(**{"c-010": leak})), ScriptedJudgeModel(score_reply()))
    assert r.verdict.verdict == "FAIL"
    assert "wrong behaviour: expected decline, observed answer" in r.case("c-010").failures


def test_too_many_unscored_is_error_not_pass(golden_dir: Path):
    def flaky(user: str):
        # the judge never returns usable output for two of the eleven cases (even on the retry)
        if "item 3?" in user or "item 7?" in user:
            return None
        return {"score": 0.95, "verdict": "pass", "reasons": "ok", "unsupported_claims": []}

    r = run(golden_dir, DictCandidate(answers()), ScriptedJudgeModel(flaky), concurrency=1)
    assert r.verdict.verdict == "ERROR" and r.verdict.exit_code == 4
    assert r.unscored["rate"] > r.unscored["budget"]
    assert any(c.status == "unscored" for c in r.cases)


def test_candidate_errors_and_throttling(golden_dir: Path):
    golden = load_golden(golden_dir)
    cfg = load_config(golden_dir / "gate.toml")

    class Throttly(DictCandidate):
        def generate(self, case, knowledge, repeat):
            self.calls += 1
            if self.calls <= 3:
                raise ThrottledError("ThrottlingException")
            return super().generate(case, knowledge, repeat)

    clock = [0.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock[0] += s

    cand = Throttly(answers())
    runner = Runner(
        golden=golden,
        candidate=cand,
        config=cfg,
        options=RunOptions(tier="offline", concurrency=4),
        embedder=HashEmbedder(),
        policy=RetryPolicy(4, clock=lambda: clock[0], sleep=sleep),
    )
    r = runner.run(golden.cases)
    assert r.verdict.verdict == "PASS" and len(sleeps) == 3
    assert r.faults["models"]["dict"]["throttles"] == 3 and r.faults["models"]["dict"]["retries"] == 3
    assert r.faults["concurrency"]["lowest"] < 4  # backed off
    md = render_markdown(r)  # summary.md reports them per model
    row = next(line for line in md.splitlines() if line.startswith("| `dict` |"))
    assert "## Faults and retries" in md and row.split("|")[2:5] == [" 14 ", " 3 ", " 0 "]
    r = run(golden_dir, DictCandidate(answers(**{"c-001": ProviderError("AccessDeniedException")})), None)
    assert r.case("c-001").status == "error" and r.verdict.verdict == "ERROR"
    assert "dict: gave up on 1 call(s): not retryable: AccessDeniedException" in r.verdict.reasons


def test_warm_cache_rerun_makes_no_model_calls(golden_dir: Path, tmp_path: Path):
    cache = Cache(tmp_path / "cache.sqlite")
    cand, jm, emb = DictCandidate(answers()), ScriptedJudgeModel(score_reply()), HashEmbedder()
    cold = run(golden_dir, cand, jm, cache=cache, embedder=emb)
    first = (cand.calls, jm.calls, emb.calls)
    assert cold.usage.model_calls > 0 and all(x > 0 for x in first)
    warm = run(golden_dir, cand, jm, cache=cache, embedder=emb)
    assert (cand.calls, jm.calls, emb.calls) == first
    assert warm.usage.model_calls == 0 and warm.usage.cache_hits > 0
    assert warm.verdict.verdict == cold.verdict.verdict
    assert all(c.latency_ms is None for c in warm.cases)  # cached latency is never reported as measured
    assert all(c.latency_ms is not None for c in cold.cases)


def test_significant_regression_vs_baseline_asks_for_review(golden_dir: Path):
    base = run(golden_dir, DictCandidate(answers()), ScriptedJudgeModel(score_reply(1.0)))
    cand = run(golden_dir, DictCandidate(answers()), ScriptedJudgeModel(score_reply(0.92)), baseline=base)
    assert cand.verdict.verdict == "REVIEW" and cand.verdict.exit_code == 3
    comp = next(c for c in cand.comparisons if c.metric == "faithfulness")
    assert comp.worse and comp.exceeds and round(comp.diff, 2) == -0.08
    same = run(golden_dir, DictCandidate(answers()), ScriptedJudgeModel(score_reply(1.0)), baseline=base)
    assert same.verdict.verdict == "PASS" and same.drift.score == 0


def test_drift_is_judged_against_noise(golden_dir: Path):
    base = run(golden_dir, DictCandidate(answers()), None)
    other = "Refund requests for delivered goods are honoured for 30 days after arrival at your door."
    changed = run(golden_dir, DictCandidate(answers(**{f"c-{i:03d}": other for i in range(10)})), None, baseline=base)
    assert changed.drift.significant and changed.drift.score > 0.05 and not changed.drift.noise_measured
    assert changed.verdict.verdict in ("REVIEW", "FAIL")
    assert any("drift" in r for r in changed.verdict.reasons)


def test_repeats_measure_noise(golden_dir: Path):
    class Noisy(DictCandidate):
        def generate(self, case, knowledge, repeat):
            g = super().generate(case, knowledge, repeat)
            g.output = g.output + (" Thanks!" if repeat else "")
            return g

    r = run(golden_dir, Noisy(answers()), None, repeats=2)
    assert r.repeats == 2 and r.drift.noise_measured and r.drift.noise > 0
    assert len(r.cases[0].generations) == 2


def test_time_budget_exhausted_is_error(golden_dir: Path):
    r = run(golden_dir, DictCandidate(answers()), None, deadline=time.monotonic() - 1)
    assert r.verdict.verdict == "ERROR" and any("time budget" in x for x in r.verdict.reasons)


def test_a_missing_judgement_is_unscored_not_absent():
    """A judged tier whose judge result never arrived must not quietly fall back to the rule checks."""
    from evalgate.core.models import Case, Generation, KnowledgeEntry
    from evalgate.engine.scoring import score_generation

    kb = [KnowledgeEntry(id="k", title="Window", text="Returns within 30 days.", file="f", line=1)]

    case = Case(id="c", category="returns", prompt="How long?", reference="30 days.", context=["k"])
    gen = Generation(case_id="c", output="You have 30 days.")
    s = score_generation(case, gen, kb, 0.9, {}, set())
    assert s.metrics["faithfulness"].unscored and s.metrics["relevance"].unscored
    assert s.metrics["hallucination"].unscored  # no claim-level verdict and no numeric evidence either way
    s = score_generation(case, gen, kb, 0.9, None, set())  # offline tier: no judge expected
    assert "faithfulness" not in s.metrics and s.metrics["hallucination"].value == 0.0


def test_judge_calls_start_as_soon_as_their_answer_exists_not_after_all_generation(golden_dir: Path):
    """One slot: with a first-in-first-out pool every answer would be generated before the first judgement."""
    log: list[str] = []

    class Logged(DictCandidate):
        def generate(self, case, knowledge, repeat):
            log.append("generate")
            return super().generate(case, knowledge, repeat)

    judge_model = ScriptedJudgeModel(lambda user: log.append("judge") or score_reply()(user))
    r = run(golden_dir, Logged(answers()), judge_model, concurrency=1)
    assert r.verdict.verdict == "PASS"
    assert log.count("generate") == 11 and "judge" in log[:3]
    last_generation = len(log) - 1 - log[::-1].index("generate")
    assert log[:last_generation].count("judge") >= 10  # judgements interleave with answers


def test_the_task_graph_runs_calls_others_wait_for_first_and_calls_nothing_waits_for_last():
    """Retests, then judgements (a retest may follow), then new answers, then embeddings and guardrail checks,
    each in submission order: the run does not end on sparse waves of calls waiting for each other."""
    from evalgate.engine.runner import JUDGE, NEW_ANSWER, RETEST, SIDE, _PriorityPool

    pool = _PriorityPool(1)
    release = threading.Event()
    ran: list[str] = []
    pool.submit(RETEST, release.wait)  # holds the only worker while the rest queue up
    for name, priority in (
        ("embedding-1", SIDE),
        ("answer-1", NEW_ANSWER),
        ("judge-1", JUDGE),
        ("guardrail", SIDE),
        ("retest", RETEST),
        ("answer-2", NEW_ANSWER),
        ("judge-2", JUDGE),
    ):
        pool.submit(priority, ran.append, name)
    release.set()
    pool.shutdown()
    assert ran == ["retest", "judge-1", "judge-2", "answer-1", "answer-2", "embedding-1", "guardrail"]


def test_the_progress_line_shows_the_concurrency_and_the_retries_on_stderr(monkeypatch: pytest.MonkeyPatch):
    import io
    import sys

    from evalgate.engine.runner import _Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    policy = RetryPolicy(16, clock=lambda: 0.0, sleep=lambda s: None)
    calls = iter([ThrottledError("ThrottlingException"), ThrottledError("ThrottlingException")])

    def flaky() -> str:
        exc = next(calls, None)
        if exc is not None:
            raise exc
        return "ok"

    assert policy.call(flaky, model="m") == "ok"
    bar = _Progress(True, 3)
    try:
        bar.advance("judging", policy)
        description = bar._bar.tasks[0].description
        assert bar._bar.console.file is terminal  # stderr: stdout keeps only the summary
    finally:
        bar.close()
    assert description == f"judging · concurrency {policy.limit}/16 · retries 2"
    assert policy.limit < 16  # the throttle cut it, and the line says so
