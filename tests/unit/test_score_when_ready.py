"""Each case is scored as its last input comes back (runner._ScoreWhenReady), while other calls are in flight, and
the result is the one scoring every case at the end gives."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from evalgate.core.config import load_config
from evalgate.core.dataset import load_golden
from evalgate.engine import runner as runner_module
from evalgate.engine.judge import Judge
from evalgate.engine.runner import Runner, RunOptions, _ScoreWhenReady

from .test_runner_gate import DictCandidate, HashEmbedder, ScriptedJudgeModel, answers, score_reply


class _Case:
    def __init__(self, cid: str) -> None:
        self.id = cid


def tracker(ids: list[str], repeats: int = 1, enabled: bool = True) -> tuple[_ScoreWhenReady, list[str]]:
    scored: list[str] = []
    return _ScoreWhenReady([_Case(i) for i in ids], repeats, lambda c: scored.append(c.id), enabled), scored  # type: ignore[list-item]


def test_a_case_is_scored_once_its_answers_tasks_and_texts_are_all_back():
    ready, scored = tracker(["a"], repeats=2)
    ready.needs_text("a", "reference")
    ready.opened("a")  # a judgement
    ready.closed("a")  # the first answer
    ready.closed("a")  # the second answer
    ready.text_done("reference")
    assert scored == []  # the judgement is still out
    ready.closed("a")
    assert scored == ["a"]
    ready.closed("a")  # a stray close after scoring changes nothing
    assert scored == ["a"]


def test_a_shared_text_releases_every_case_waiting_for_it_and_a_done_text_holds_nothing():
    ready, scored = tracker(["a", "b", "c"])
    ready.needs_text("a", "same answer")
    ready.needs_text("b", "same answer")
    ready.needs_text("b", "same answer")  # asked twice, waited for once
    for cid in ("a", "b"):
        ready.closed(cid)
    assert scored == []
    ready.text_done("same answer")
    assert sorted(scored) == ["a", "b"]
    ready.needs_text("c", "same answer")  # already embedded (or failed): nothing to wait for
    ready.closed("c")
    assert sorted(scored) == ["a", "b", "c"]


def test_disabled_it_scores_nothing():
    ready, scored = tracker(["a"], enabled=False)
    ready.opened("a")
    ready.closed("a")
    ready.closed("a")
    ready.text_done("x")
    assert scored == []


def _run(golden_dir: Path, incremental: bool, monkeypatch: pytest.MonkeyPatch, repeats: int = 1):
    golden = load_golden(golden_dir)
    config = load_config(golden_dir / "gate.toml")
    if not incremental:
        original = runner_module._ScoreWhenReady
        monkeypatch.setattr(
            runner_module, "_ScoreWhenReady", lambda cases, rep, score, enabled: original(cases, rep, score, False)
        )
    threads: list[str] = []
    score_case = Runner._score_case

    def spy(self, c, gens, st):
        threads.append(threading.current_thread().name)
        return score_case(self, c, gens, st)

    monkeypatch.setattr(Runner, "_score_case", spy)
    cand = DictCandidate(answers(**{"c-003": "Returns are accepted for 60 days after delivery."}))
    r = Runner(
        golden=golden,
        candidate=cand,
        config=config,
        options=RunOptions(tier="full", concurrency=4, repeats=repeats),
        judge=Judge(ScriptedJudgeModel(score_reply())),
        embedder=HashEmbedder(),
    ).run(golden.cases)
    monkeypatch.undo()
    return r, threads


@pytest.mark.parametrize("repeats", [1, 3])
def test_scoring_as_cases_complete_gives_the_result_of_scoring_at_the_end(
    golden_dir: Path, monkeypatch: pytest.MonkeyPatch, repeats: int
):
    early, early_threads = _run(golden_dir, True, monkeypatch, repeats)
    late, late_threads = _run(golden_dir, False, monkeypatch, repeats)
    # every case was scored on a worker thread as its inputs came back, none left for the end...
    assert len(early_threads) == len(early.cases) and all(t.startswith("eval-") for t in early_threads)
    assert late_threads == [threading.main_thread().name] * len(late.cases)
    # ...and the cases, aggregates and verdict are those of scoring at the end
    assert [c.model_dump() for c in early.cases] == [c.model_dump() for c in late.cases]
    assert early.aggregates == late.aggregates and early.verdict == late.verdict
    assert early.verdict.verdict == "FAIL"  # the invented 60-day window is caught either way


def test_a_case_waits_for_the_embedding_of_its_reference(golden_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """The answer cases share one reference, whose embedding comes back after every answer: none is scored
    without it."""
    golden = load_golden(golden_dir)
    reference = golden.cases[0].reference
    every_answer = threading.Event()

    class SlowReference(HashEmbedder):
        def embed(self, texts):
            if reference in texts:
                assert every_answer.wait(5)
            return super().embed(texts)

    class Counting(DictCandidate):
        def generate(self, case, knowledge, repeat):
            g = super().generate(case, knowledge, repeat)
            if self.calls == len(golden.cases):
                threading.Timer(0.1, every_answer.set).start()
            return g

    seen: dict[str, bool] = {}
    score_case = Runner._score_case

    def spy(self, c, gens, st):
        seen[c.id] = c.reference in st.vectors
        return score_case(self, c, gens, st)

    monkeypatch.setattr(Runner, "_score_case", spy)
    r = Runner(
        golden=golden,
        candidate=Counting(answers()),
        config=load_config(golden_dir / "gate.toml"),
        options=RunOptions(tier="offline", concurrency=4),
        embedder=SlowReference(),
    ).run(golden.cases)
    answer_cases = [c.id for c in golden.cases if c.expected.value == "answer"]
    assert answer_cases and all(seen[cid] for cid in answer_cases)
    assert all(c.metrics["similarity"].value is not None for c in r.cases if c.id in answer_cases)
