"""Online judging core: capture parsing, per-version metric values, sampling that balances canary and baseline."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from evalgate.contracts import telemetry as tm
from evalgate.core.knowledge import load_index
from evalgate.engine.judge import Judge
from evalgate.release.online import (
    AliasWeights,
    BadCaptureRecord,
    CaptureRecord,
    SamplingPolicy,
    judge_capture,
    parse_capture,
)
from tests.unit.core_fakes import ScriptedJudgeModel

ROOT = Path(__file__).resolve().parents[2]


def record(version: str = "7", rid: str = "r-1", **kw: Any) -> CaptureRecord:
    base = dict(
        request_id=rid,
        function_version=version,
        model_id="m",
        prompt_version="support/v1",
        question="How long do refunds take?",
        answer="Refunds are issued within 5 business days.",
        knowledge_ids=["returns.refund-timing"],
    )
    base.update(kw)
    return CaptureRecord(**base)


def tool(score: float, claims: list[str] | None = None) -> dict[str, Any]:
    return {
        "score": score,
        "verdict": "pass" if score > 0.8 else "fail",
        "reasons": "r",
        "unsupported_claims": claims or [],
    }


@pytest.fixture(scope="module")
def index() -> Any:
    return load_index(ROOT / "golden" / "knowledge")[0]


def test_parse_capture_rejects_unusable_messages() -> None:
    assert parse_capture(json.dumps(record().model_dump())).request_id == "r-1"
    for body, fragment in [("nope", "not valid JSON"), ("[1]", "JSON object"), ("{}", "request_id")]:
        with pytest.raises(BadCaptureRecord, match=fragment):
            parse_capture(body)


def test_judged_record_metrics(index: Any) -> None:
    seen: list[str] = []

    def reply(user: str) -> Any:
        seen.append(user)
        from evalgate.core.ports import JudgeCall

        return JudgeCall(tool_input=tool(0.6, ["issued within 5 days"]) if "faithfulness" in user else tool(1.0))

    judge = Judge(ScriptedJudgeModel(reply))
    out = judge_capture(record(), index, judge, canary_token="CANARY-x-1234")
    assert out.judged and out.score is not None
    assert out.score.quality == pytest.approx(0.8) and out.score.hallucinated is True and not out.score.leaked
    t = out.telemetry()
    assert t.dimensions == tm.Dimensions("7", "m", "support/v1")
    assert t.values == {
        tm.JUDGED_COUNT: [1.0],
        tm.UNSCORED: [0.0],
        tm.INJECTION_LEAK: [0.0],
        tm.QUALITY_SCORE: [0.8],
        tm.HALLUCINATION: [1.0],
    }
    assert "[returns.refund-timing]" in seen[0]  # judged against the knowledge the model saw


def test_unknown_knowledge_ids_fall_back_to_retrieval(index: Any) -> None:
    seen: list[str] = []

    def reply(user: str) -> Any:
        from evalgate.core.ports import JudgeCall

        seen.append(user)
        return JudgeCall(tool_input=tool(1.0))

    judge_capture(record(knowledge_ids=["gone.entry"]), index, Judge(ScriptedJudgeModel(reply)), canary_token=None)
    assert "[returns.refund-timing]" in seen[0]


def test_without_a_judge_the_answer_is_unscored(index: Any) -> None:
    out = judge_capture(record(answer="Refunds take 99 days."), index, None, canary_token=None)
    t = out.telemetry().values
    assert t[tm.UNSCORED] == [1.0] and tm.QUALITY_SCORE not in t
    assert t[tm.HALLUCINATION] == [1.0]  # the rule check still catches an ungrounded number


def test_sampling_balances_the_arms() -> None:
    policy = SamplingPolicy({"6": 0.9, "7": 0.1}, max_rate=1.0)
    assert policy.probability("7") == 1.0
    assert policy.probability("6") == pytest.approx(0.1 / 0.9)
    judged = {
        v: sum(policy.should_judge(record(v, f"{v}-{i}")) for i in range(n)) for v, n in (("6", 9000), ("7", 1000))
    }
    assert judged["7"] == 1000 and 850 < judged["6"] < 1150  # comparable judged counts
    assert SamplingPolicy({"6": 1.0}, 0.5).probability("6") == 0.5  # no shift: the base rate
    assert SamplingPolicy({"6": 0.9, "7": 0.1}, 0.5).probability("8") == 0.5  # unknown version: base rate


def test_not_sampled_records_are_skipped(index: Any) -> None:
    policy = SamplingPolicy({"6": 0.999, "7": 0.001})
    skipped = [judge_capture(record("6", f"x{i}"), index, None, canary_token=None, policy=policy) for i in range(50)]
    assert all(not r.judged and r.skipped == "not sampled" for r in skipped)
    assert all(r.telemetry().values == {} for r in skipped)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(e, c):\n    return e\n")
    return buf.getvalue()


@mock_aws
def test_alias_weights_from_the_routing_config() -> None:
    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(
        RoleName="svc",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]["Arn"]
    lam = boto3.client("lambda", region_name="us-east-1")
    lam.create_function(
        FunctionName="support-service",
        Runtime="python3.13",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": _zip()},
        Publish=True,
    )
    lam.update_function_code(FunctionName="support-service", ZipFile=_zip() + b"", Publish=True)
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName="support-service")["Versions"]]
    old, new = sorted(v for v in versions if v != "$LATEST")[:2]
    lam.create_alias(
        FunctionName="support-service",
        Name="live",
        FunctionVersion=old,
        RoutingConfig={"AdditionalVersionWeights": {new: 0.1}},
    )
    clock = [0.0]
    weights = AliasWeights(lam, "support-service", "live", ttl_s=30, clock=lambda: clock[0])
    assert weights.get() == pytest.approx({old: 0.9, new: 0.1})
    lam.update_alias(FunctionName="support-service", Name="live", FunctionVersion=new, RoutingConfig={})
    assert weights.get() == pytest.approx({old: 0.9, new: 0.1})  # cached
    clock[0] = 31.0
    assert weights.get() == {new: 1.0}
    missing = AliasWeights(lam, "no-such-function", "live")
    assert missing.get() == {}  # unreadable: every arm at the same rate


def test_the_guardrails_grounding_scores_sit_beside_the_judges(index: Any) -> None:
    from botocore.stub import Stubber

    from evalgate.core.ports import JudgeCall
    from evalgate.engine.guardrails import GuardrailChecker
    from evalgate.release.online import stored_row

    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    stub = Stubber(client)  # our request and AWS's response shape, both checked against botocore's model
    filters = [
        {"type": "GROUNDING", "threshold": 0.75, "score": 0.31, "action": "BLOCKED", "detected": True},
        {"type": "RELEVANCE", "threshold": 0.5, "score": 0.88, "action": "NONE", "detected": False},
    ]
    stub.add_response(
        "apply_guardrail",
        {
            "usage": {
                "topicPolicyUnits": 0,
                "contentPolicyUnits": 0,
                "wordPolicyUnits": 0,
                "sensitiveInformationPolicyUnits": 0,
                "sensitiveInformationPolicyFreeUnits": 0,
                "contextualGroundingPolicyUnits": 1,
            },
            "action": "GUARDRAIL_INTERVENED",
            "outputs": [{"text": "Sorry."}],
            "assessments": [{"contextualGroundingPolicy": {"filters": filters}}],
        },
    )
    checker = GuardrailChecker("gr0000000001", "4", client=client)
    asked: list[tuple[str, str]] = []

    def guardrails(gid: str, version: str) -> GuardrailChecker:
        asked.append((gid, version))
        return checker

    judge = Judge(ScriptedJudgeModel(lambda user: JudgeCall(tool_input=tool(0.9))))
    rec = record(grounding_guardrail={"id": "gr0000000001", "version": "4"})
    with stub:
        out = judge_capture(rec, index, judge, canary_token=None, guardrails=guardrails)
    assert asked == [("gr0000000001", "4")]  # the version named by the capture: the one that served the answer
    assert (out.guardrail_grounding, out.guardrail_relevance, out.guardrail_error) == (0.31, 0.88, None)
    values = out.telemetry().values
    assert values[tm.GUARDRAIL_GROUNDING] == [0.31] and values[tm.GUARDRAIL_RELEVANCE] == [0.88]
    row = stored_row(rec, out)
    assert row is not None and row["guardrail_grounding"] == 0.31 and row["faithfulness"] == 0.9
    # a capture without a grounding guardrail is not checked at all
    plain = judge_capture(record(), index, judge, canary_token=None, guardrails=guardrails)
    assert asked == [("gr0000000001", "4")] and tm.GUARDRAIL_GROUNDING not in plain.telemetry().values
    assert (
        values[tm.GUARDRAIL_GROUNDING_UNSCORED] == [0]
        and tm.GUARDRAIL_GROUNDING_UNSCORED not in plain.telemetry().values
    )


def test_a_failed_grounding_check_is_recorded_and_counted_and_publishes_no_score(index: Any) -> None:
    from evalgate.core.errors import ProviderError
    from evalgate.core.ports import JudgeCall

    class Down:
        def grounding(self, query: str, source: str, answer: str) -> Any:
            raise ProviderError("bedrock guardrail gr0000000001:4: ThrottlingException")

    judge = Judge(ScriptedJudgeModel(lambda user: JudgeCall(tool_input=tool(0.9))))
    rec = record(grounding_guardrail={"id": "gr0000000001", "version": "4"})
    out = judge_capture(rec, index, judge, canary_token=None, guardrails=lambda gid, v: Down())
    assert out.score is not None and out.score.quality == pytest.approx(0.9)  # the judgement stands
    assert out.guardrail_grounding is None and "ThrottlingException" in (out.guardrail_error or "")
    assert tm.GUARDRAIL_GROUNDING not in out.telemetry().values
    assert out.telemetry().values[tm.GUARDRAIL_GROUNDING_UNSCORED] == [1]  # the failure is counted per version
    assert "ThrottlingException" in out.log_fields(rec.question, rec.answer)["guardrail_error"]
