"""The product's pre-traffic hook gates another service unchanged: the example FAQ desk (tests/example_service) on
its own golden smoke set, through the real hook handler, Lambda candidate, Lambda Invoke fake and Bedrock fake."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from evalgate.core.dataset import load_golden
from tests.fakes.aws_lambda import LambdaInvokeFake
from tests.fakes.bedrock_fake import BedrockFake, FakeRequest
from tests.fakes.idempotency import create_idempotency_table
from tests.integration.test_handler_pre_traffic_hook import Ctx, emf, hook_event, stubbed_codedeploy

EXAMPLE = Path(__file__).resolve().parents[1] / "example_service"
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, bedrock_fake: BedrockFake, tmp_path: Path) -> Iterator[dict[str, Any]]:
    golden = tmp_path / "golden"  # the hook asset's golden/: the service's goldenDir (code_trees)
    shutil.copytree(EXAMPLE / "golden", golden)
    references = {c.question: c.reference for c in load_golden(golden).cases}

    def answer(req: FakeRequest) -> str:  # a desk version whose model answers every golden question right
        m = re.search(r"<customer_message>\s*(.*?)\s*</customer_message>", req.user_text, re.DOTALL)
        return references.get(m.group(1) if m else "", "I don't know.")

    bedrock_fake.answer_fn = answer
    bedrock_fake.judge_fn = lambda req: {
        "score": 1.0,
        "verdict": "pass",
        "reasons": "Supported.",
        "unsupported_claims": [],
    }
    for k, v in {
        "AWS_LAMBDA_FUNCTION_VERSION": "4",
        "MODEL_ID": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "PROMPT_ID": "faq/v1",
        "EVALGATE_PROMPTS_DIR": str(EXAMPLE / "prompts"),
        "EVALGATE_KNOWLEDGE_DIR": str(golden / "knowledge"),
        "TARGET_FUNCTION_NAME": "faq-desk",
        "TARGET_VERSION": "4",
        "SMOKE_CASES": f"{golden}#smoke",  # the stack's value, /var/task/golden#smoke, for this bundle
        "EVALGATE_GOLDEN_DIR": str(golden),
        "JUDGE_MODEL_ID": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "EMBEDDINGS_MODEL_ID": "amazon.titan-embed-text-v2:0",
        "POWERTOOLS_SERVICE_NAME": "pre-traffic-hook",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CAPTURE_QUEUE_URL", raising=False)
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    from handlers import pre_traffic_hook as h

    desk = sys.modules.get("faq_desk.handler")
    if desk is None:
        from faq_desk import handler as desk
    monkeypatch.setattr(desk, "_desk", None)
    with LambdaInvokeFake(desk.handler) as lam, mock_aws():
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lam.url)
        create_idempotency_table(monkeypatch)
        yield {"h": h, "lambda": lam, "bedrock": bedrock_fake}


def test_the_hook_passes_a_good_faq_desk_version_on_its_own_smoke_set(
    world: dict[str, Any], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reporter, stub = stubbed_codedeploy("Succeeded")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(hook_event(), Ctx())
    assert out["status"] == "Succeeded" and "smoke PASS on version 4" in out["reason"], out
    stub.assert_no_pending_responses()
    calls = world["lambda"].calls
    assert len(calls) >= 5 and {(c["function"], c["qualifier"]) for c in calls} == {("faq-desk", "4")}
    questions = {c["payload"]["body"] for c in calls}
    assert any("When can I reach the help desk?" in q for q in questions)  # the desk's golden set, not the demo's
    assert emf(capsys.readouterr().out, "PreTrafficPassed")["PreTrafficPassed"] == [1.0]


def test_the_hook_stops_a_faq_desk_version_that_answers_wrongly(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    world["bedrock"].answer_fn = lambda req: "We are open around the clock and refund everything within 1 hour."
    world["bedrock"].judge_fn = lambda req: {
        "score": 0.1,
        "verdict": "fail",
        "reasons": "Unsupported.",
        "unsupported_claims": ["open around the clock"],
    }
    reporter, stub = stubbed_codedeploy("Failed")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(hook_event(), Ctx())
    assert out["status"] == "Failed" and "smoke FAIL" in out["reason"], out
    stub.assert_no_pending_responses()
