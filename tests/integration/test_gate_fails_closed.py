"""The whole gate through the real Bedrock adapters against the loopback fake: judge errors, malformed tool
output, throttling and timeouts are injected, and the verdict must fail closed (ERROR), never PASS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalgate.adapters.bedrock import BedrockCandidate, BedrockJudgeModel, TitanEmbedder
from evalgate.core.config import load_config
from evalgate.core.dataset import load_golden
from evalgate.core.prompts import load_prompt
from evalgate.core.retry import DEFAULT_MALFORMED_ATTEMPTS, RetryPolicy
from evalgate.engine.cache import Cache
from evalgate.engine.judge import Judge
from evalgate.engine.runner import run_evaluation
from tests.fakes.bedrock_fake import BedrockFake, Error, FakeRequest, Text, hang

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = load_golden(ROOT / "golden", ["regression"])
CASES = [c for c in GOLDEN.cases if "smoke" in c.tags] or GOLDEN.cases[:12]
CONFIG = load_config(ROOT / "golden" / "gate.toml")
BASELINE = {
    json.loads(line)["id"]: json.loads(line)["output"]
    for line in (ROOT / "golden/responses/baseline.jsonl").read_text().splitlines()
    if line.strip()
}
GOOD = {"score": 0.96, "verdict": "pass", "reasons": "every claim is in the excerpts", "unsupported_claims": []}


def recorded_answer(req: FakeRequest) -> str:
    """The fake model answers each golden question with the approved baseline answer."""
    for case in CASES:
        if case.question in req.user_text:
            return BASELINE[case.id]
    raise AssertionError("unexpected prompt")


def evaluate(fake: BedrockFake, tmp_path: Path, time_budget: float = 60.0):
    fake.answer_fn = recorded_answer
    cand = BedrockCandidate(CONFIG.models.generator, load_prompt("support/v1"))
    judge = Judge(BedrockJudgeModel(CONFIG.models.judge))
    emb = TitanEmbedder(CONFIG.models.embeddings)
    # The shipped threshold is for Titan's scale; the fake's hashed bag-of-words has its own, so gate
    # similarity off here and test the judge path.
    cfg = CONFIG.model_copy(deep=True)
    cfg.thresholds.similarity = None
    return run_evaluation(
        golden=GOLDEN,
        cases=CASES,
        candidate=cand,
        config=cfg,
        tier="smoke",
        judge=judge,
        embedder=emb,
        cache=Cache(tmp_path / "c.sqlite"),
        concurrency=8,
        policy=RetryPolicy(8, time_budget=time_budget, base_delay=0.01),
    )


def test_clean_run_passes_and_requests_are_hygienic(bedrock_fake: BedrockFake, tmp_path: Path):
    bedrock_fake.judge_fn = lambda req: GOOD
    r = evaluate(bedrock_fake, tmp_path)
    assert r.verdict.verdict == "PASS", r.verdict.reasons
    judge_reqs = [q for q in bedrock_fake.requests if q.tool_config]
    gen_reqs = [q for q in bedrock_fake.requests if q.operation == "converse-stream" and not q.tool_config]
    retests = r.self_agreement["n"] + r.self_agreement["unscored"] if r.self_agreement else 0
    assert retests >= 1  # the judge re-judged a sample of its answers (judge_trust)
    assert len(gen_reqs) == len(CASES) and len(judge_reqs) == 2 * len(CASES) + retests
    assert all(q.inference_config.get("temperature") == 0 for q in judge_reqs)
    assert all(q.forced_tool == "record_verdict" for q in judge_reqs)
    assert all("record_verdict" in json.dumps(q.tool_schema) or q.tool_schema for q in judge_reqs)
    assert all(q.inference_config.get("temperature") == CONFIG.models.temperature for q in gen_reqs)
    assert not any("topP" in q.inference_config for q in gen_reqs)  # never both sampling parameters
    assert r.usage.model_calls == len(bedrock_fake.requests)


def test_malformed_tool_output_is_asked_again_then_unscored_and_the_run_errors(
    bedrock_fake: BedrockFake, tmp_path: Path
):
    victims = [c.question for c in CASES[:3]]
    seen: dict[str, int] = {}

    def handler(req: FakeRequest):
        hit = next((v for v in victims if v in req.user_text), None)
        if req.tool_config and hit:
            key = f"{hit}|{'faithfulness' if 'faithfulness' in req.user_text[:40] else 'relevance'}"
            seen[key] = seen.get(key, 0) + 1
            return Text("This answer looks great to me!")  # answered without calling the tool
        return None

    bedrock_fake.judge_fn = lambda req: GOOD
    bedrock_fake.handler = handler
    r = evaluate(bedrock_fake, tmp_path)
    assert r.verdict.verdict == "ERROR" and r.verdict.exit_code == 4
    # each judgement: the first try and DEFAULT_MALFORMED_ATTEMPTS - 1 retries, all counted and billed
    assert len(seen) == 6 and set(seen.values()) == {DEFAULT_MALFORMED_ATTEMPTS}
    assert r.faults["models"][CONFIG.models.judge]["malformed_retries"] == 6 * (DEFAULT_MALFORMED_ATTEMPTS - 1)
    assert r.usage.model_calls == len(bedrock_fake.requests)
    unscored = [c for c in r.cases if c.status == "unscored"]
    assert len(unscored) == 3
    assert all(c.metrics["faithfulness"].value is None for c in unscored)  # never a silent 0 or 1


def test_throttling_and_5xx_are_absorbed_by_the_policy_not_botocore(bedrock_fake: BedrockFake, tmp_path: Path):
    bedrock_fake.judge_fn = lambda req: GOOD
    bedrock_fake.script(*[Error.throttling()] * 3, Error("InternalServerException", 500), operation="converse")  # judge
    bedrock_fake.script(*[Error.throttling()] * 3, operation="converse-stream")  # candidate calls
    bedrock_fake.script(Error.throttling(), operation="invoke")  # embeddings
    r = evaluate(bedrock_fake, tmp_path)
    assert r.verdict.verdict == "PASS", r.verdict.reasons
    assert all(c.status == "pass" for c in r.cases)
    models = r.faults["models"]
    assert sum(m.get("throttles", 0) for m in models.values()) == 7  # each 429 seen once: botocore did not retry
    assert sum(m.get("transient_errors", 0) for m in models.values()) == 1
    assert r.usage.retries == 8 and len(bedrock_fake.requests) == r.usage.model_calls + 8


def test_persistent_judge_failures_and_timeouts_error(
    bedrock_fake: BedrockFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("EVALGATE_AWS_READ_TIMEOUT", "0.5")
    slow = CASES[0].question
    denied = CASES[1].question

    def handler(req: FakeRequest):
        if req.tool_config and slow in req.user_text:
            return hang(3.0)
        if req.tool_config and denied in req.user_text:
            return Error.access_denied()
        return None

    bedrock_fake.judge_fn = lambda req: GOOD
    bedrock_fake.handler = handler
    r = evaluate(bedrock_fake, tmp_path, time_budget=3.0)
    assert r.verdict.verdict == "ERROR"
    reasons = {c.id: c.failures for c in r.cases if c.status == "unscored"}
    assert set(reasons) == {CASES[0].id, CASES[1].id}
    assert any("judge error" in f for f in reasons[CASES[1].id])
    # timeouts are retried until the time budget would be crossed; access denied is given up at once
    judge_line = next(x for x in r.verdict.reasons if x.startswith(f"{CONFIG.models.judge}: gave up on"))
    assert "gave up on 4 call(s)" in judge_line  # two rubrics x two cases, named with the last error
    assert r.faults["models"][CONFIG.models.judge]["transient_errors"] >= 2
