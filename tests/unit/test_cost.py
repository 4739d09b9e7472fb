"""The cost meter: conservative estimates, refusal before the cap, settlement, and the metered ports."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from evalgate.core.config import GateConfig, load_config
from evalgate.core.errors import BudgetExceeded, ProviderError, ThrottledError
from evalgate.core.models import Case, Generation
from evalgate.core.ports import JudgeCall, ToolSpec
from evalgate.engine.cost import CostMeter, MeteredCandidate, MeteredEmbedder, MeteredJudgeModel, call_cost

from .core_fakes import DictCandidate, HashEmbedder, ScriptedJudgeModel

ROOT = Path(__file__).resolve().parents[2]
SONNET = "us.anthropic.claude-sonnet-4-20250514-v1:0"  # priced as its base model: 0.003 / 0.015 per 1k
HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


@pytest.fixture
def config() -> GateConfig:
    return load_config(ROOT / "golden" / "gate.toml")


def test_estimate_is_input_chars_over_chars_per_token_plus_max_output(config: GateConfig):
    m = CostMeter(config, cap_usd=1.0)
    assert m.chars_per_token == 2.0
    # 2000 chars -> 1000 tokens at $0.003/1k = $0.003; 512 output tokens at $0.015/1k = $0.00768
    assert m.estimate(SONNET, 2000, 512) == pytest.approx(0.003 + 0.00768)
    assert call_cost(config, SONNET, 1000, 512) == pytest.approx(0.003 + 0.00768)
    assert call_cost(config, "unknown.model-v1", 1000, 1000) == 0.0


def test_the_call_that_could_cross_the_cap_is_refused_and_the_run_stops(config: GateConfig):
    m = CostMeter(config, cap_usd=0.025)
    est = m.estimate(SONNET, 2000, 512)  # 0.01068
    r1 = m.reserve("call 1", SONNET, 2000, 512)
    r2 = m.reserve("call 2", SONNET, 2000, 512)
    assert m.reserved_usd == pytest.approx(2 * est)
    with pytest.raises(BudgetExceeded) as exc:
        m.reserve("call 3", SONNET, 2000, 512)  # 3 x 0.01068 > 0.025
    assert "--max-cost $0.0250" in str(exc.value) and "call 3" in str(exc.value)
    assert m.stopped and m.refused == 1
    m.settle(r1, 0.004)
    m.settle(r2, 0.005)
    assert m.spent_usd == pytest.approx(0.009) and m.reserved_usd == pytest.approx(0.0)
    with pytest.raises(BudgetExceeded):  # stopped for good, even for a call that would fit now
        m.reserve("tiny", HAIKU, 10, 1)
    assert m.snapshot()["stopped"] and m.snapshot()["spent_usd"] == pytest.approx(0.009)


def test_settle_without_actual_keeps_the_estimate_and_release_frees_it(config: GateConfig):
    m = CostMeter(config, cap_usd=1.0)
    r = m.reserve("x", HAIKU, 1000, 100)
    m.release(r)
    assert m.spent_usd == 0.0 and m.reserved_usd == 0.0
    r = m.reserve("y", HAIKU, 1000, 100)
    m.settle(r, None)
    assert m.spent_usd == pytest.approx(r.estimate)
    m.settle(r, 123.0)  # settling twice is a no-op
    assert m.spent_usd == pytest.approx(r.estimate)


def test_unpriced_model_is_refused_under_a_cap_but_tracked_without_one(config: GateConfig):
    capped = CostMeter(config, cap_usd=1.0)
    with pytest.raises(BudgetExceeded) as exc:
        capped.reserve("x", "acme.mystery-v1", 100, 100)
    assert "no price in gate.toml [pricing]" in str(exc.value) and "acme.mystery-v1" in str(exc.value)
    free = CostMeter(config, cap_usd=None)
    r = free.reserve("x", "acme.mystery-v1", 100, 100)
    free.settle(r, 0.0)
    assert not free.stopped and free.calls == 1


def test_concurrent_calls_never_spend_more_than_the_cap(config: GateConfig):
    cap = 0.05
    m = CostMeter(config, cap_usd=cap)
    rng = random.Random(3)
    costs = [rng.uniform(0.2, 1.0) for _ in range(400)]  # actual = share of the estimate (estimates bound calls)
    refused = []

    def worker(share: float) -> None:
        try:
            r = m.reserve("w", HAIKU, rng.randint(100, 4000), 256)
        except BudgetExceeded:
            refused.append(1)
            return
        m.settle(r, r.estimate * share)

    threads = [threading.Thread(target=worker, args=(c,)) for c in costs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert refused and m.stopped
    assert m.spent_usd <= cap
    assert m.calls + len(refused) == len(costs) and not m.overruns


def _case() -> Case:
    return Case(id="c-1", category="x", prompt="How long do I have?", reference="30 days.", context=[])


def test_metered_candidate_refuses_before_calling_and_settles_actual_tokens(config: GateConfig):
    m = CostMeter(config, cap_usd=0.02)
    inner = DictCandidate({"c-1": "Thirty days."})  # reports 50 input / 20 output tokens of Sonnet
    cand = MeteredCandidate(inner, m, SONNET, max_output_tokens=512)
    assert cand.name == "dict" and cand.live and cand.identity() == inner.identity()
    g = cand.generate(_case(), [], 0)
    assert isinstance(g, Generation) and inner.calls == 1
    assert m.spent_usd == pytest.approx(call_cost(config, SONNET, 50, 20))
    m2 = CostMeter(config, cap_usd=0.001)
    with pytest.raises(BudgetExceeded):
        MeteredCandidate(inner, m2, SONNET, 512).generate(_case(), [], 0)
    assert inner.calls == 1  # never reached the candidate


def test_throttled_calls_are_not_billed_failed_ones_are(config: GateConfig):
    m = CostMeter(config, cap_usd=1.0)
    cand = MeteredCandidate(DictCandidate({"c-1": ThrottledError("slow down")}), m, SONNET, 512)
    with pytest.raises(ThrottledError):
        cand.generate(_case(), [], 0)
    assert m.spent_usd == 0.0 and m.reserved_usd == 0.0
    cand = MeteredCandidate(DictCandidate({"c-1": ProviderError("boom")}), m, SONNET, 512)
    with pytest.raises(ProviderError):
        cand.generate(_case(), [], 0)
    assert m.spent_usd > 0.0  # unknown cost: the estimate counts


def test_metered_judge_and_embedder(config: GateConfig):
    m = CostMeter(config, cap_usd=1.0)
    jm = ScriptedJudgeModel([JudgeCall(tool_input={}, input_tokens=1000, output_tokens=100)])
    jm.model_id = HAIKU  # type: ignore[misc]
    metered = MeteredJudgeModel(jm, m)
    metered.call("sys", "user", ToolSpec("t", "d", {"type": "object"}))
    assert m.spent_usd == pytest.approx(call_cost(config, HAIKU, 1000, 100))
    emb = HashEmbedder()
    emb.model_id = "amazon.titan-embed-text-v2:0"  # type: ignore[misc]
    me = MeteredEmbedder(emb, m)
    assert len(me.embed(["a b c", "d e"])) == 2 and me.name == "hash"
    assert m.calls == 2
