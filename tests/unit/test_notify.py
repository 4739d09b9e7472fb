"""Notifier core: event parsing, composition details, gate event detail (idempotency: the handler tests)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from evalgate.contracts.events import gate_event_detail
from evalgate.core.models import MetricValue
from evalgate.core.results import Aggregate, CaseResult, RunResult, Verdict
from evalgate.release.notify import notify, sns_subject
from evalgate.release.notify.compose import _alarm_lines, _alarm_names_from, compose
from evalgate.release.notify.events import EventBridgeEvent, NotifyEventError, parse_event
from evalgate.release.notify.lookups import Lookup


class NoLookups(Lookup):
    def __init__(self) -> None:
        super().__init__(client=self._refuse)

    @staticmethod
    def _refuse(service: str) -> Any:
        raise AssertionError(f"no AWS lookup expected ({service})")


class Sns:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def publish(self, **kw: Any) -> dict[str, str]:
        self.sent.append(kw)
        return {"MessageId": f"m-{len(self.sent)}"}


def event(source: str, detail_type: str, detail: dict[str, Any], eid: str = "e-1") -> dict[str, Any]:
    return {
        "id": eid,
        "source": source,
        "detail-type": detail_type,
        "time": "2026-11-23T00:00:00Z",
        "region": "eu-west-1",
        "account": "1",
        "resources": [],
        "detail": detail,
    }


def test_unrelated_events_are_ignored() -> None:
    sns = Sns()
    ev = event("aws.ec2", "EC2 Instance State-change Notification", {"state": "running"})
    assert notify(ev, lookup=NoLookups(), sns=sns, topic_arn="t", default_region="x").status == "ignored"
    assert sns.sent == []


def test_a_gate_event_with_an_invalid_detail_is_an_event_error_not_a_crash() -> None:
    ev = event("evalgate", "EvalGate Verdict", {"verdict": "MAYBE", "reasons": "not a list"})
    with pytest.raises(NotifyEventError, match="not an EvalGate Verdict event detail"):
        notify(ev, lookup=NoLookups(), sns=Sns(), topic_arn="t", default_region="x")


def test_gate_review_without_lookups_and_subject_rules() -> None:
    sns = Sns()
    detail = {
        "verdict": "REVIEW",
        "run_id": "r1",
        "tier": "full",
        "candidate": {"name": "bedrock:" + "x" * 120, "model_id": "m", "prompt_id": "support/v9"},
        "reasons": ["diversity collapsed — distinct-2 fell 40%"],
    }
    res = notify(
        event("evalgate", "EvalGate Verdict", detail),
        lookup=NoLookups(),
        sns=sns,
        topic_arn="arn:t",
        default_region="x",
    )
    assert res.status == "sent"
    subject = sns.sent[0]["Subject"]
    assert len(subject) <= 100 and subject.isascii() and subject.endswith("...")
    body = sns.sent[0]["Message"]
    assert "diversity collapsed — distinct-2 fell 40%" in body  # the body keeps Unicode
    assert "Prompt     support/v9" in body


def test_sns_subject_is_printable_ascii_one_line() -> None:
    assert sns_subject("a\nb\tc — d") == "a b c ? d"
    assert len(sns_subject("x" * 300)) == 100


@pytest.mark.parametrize(
    ("message", "names"),
    [
        ("... have been stopped. Activated alarms: <support-v7-quality>", ["support-v7-quality"]),
        ("Activated alarms: a-1, b-2", ["a-1", "b-2"]),
        ("The deployment failed.", []),
    ],
)
def test_alarm_names_from_codedeploy_messages(message: str, names: list[str]) -> None:
    assert _alarm_names_from(message) == names


@pytest.mark.parametrize(
    ("source", "detail_type", "detail"),
    [
        ("aws.appconfig", "Rolled Back", {"Type": "OnDeploymentRolledBack", "DeploymentNumber": "x"}),
        ("aws.codedeploy", "CodeDeploy Deployment State-change Notification", {"state": ["FAILURE"]}),
        ("aws.codepipeline", "CodePipeline Pipeline Execution State Change", {"state": {"FAILED": 1}}),
    ],
)
def test_a_detail_without_its_kinds_shape_is_an_event_error(source: str, detail_type: str, detail: Any) -> None:
    with pytest.raises(NotifyEventError, match=f"not a {source} .* event detail"):
        notify(event(source, detail_type, detail), lookup=NoLookups(), sns=Sns(), topic_arn="t", default_region="x")


@pytest.mark.parametrize(
    "bad",
    [
        None,
        3,
        [],
        {"id": "", "source": "s", "detail-type": "d", "detail": {}},
        {"id": "x", "source": "s", "detail": {}},
    ],
)
def test_parse_event_rejects_non_eventbridge_shapes(bad: Any) -> None:
    with pytest.raises(NotifyEventError):
        parse_event(bad)


def test_compose_uses_the_event_region_for_links() -> None:
    ev = EventBridgeEvent.model_validate(
        event("evalgate", "EvalGate Verdict", {"verdict": "REVIEW", "pipeline": "p", "execution_id": "e"})
    )
    email = compose(ev, NoLookups(), "us-east-1")
    assert email is not None
    assert (
        "https://eu-west-1.console.aws.amazon.com/codesuite/codepipeline/pipelines/p/executions/e/timeline"
        "?region=eu-west-1" in email.body
    )


def test_gate_event_detail_from_a_run_result() -> None:
    bad = CaseResult(
        id="c-1",
        suite="regression",
        category="returns",
        expected="answer",
        status="fail",
        question="How long?",
        output="45 days",
        failures=["similarity 0.40 < 0.82"],
        metrics={"similarity": MetricValue(name="similarity", value=0.4)},
    )
    ok = CaseResult(
        id="c-2",
        suite="regression",
        category="returns",
        expected="answer",
        status="pass",
        metrics={"similarity": MetricValue(name="similarity", value=0.9)},
    )
    result = RunResult(
        run_id="abc",
        started_at="t0",
        finished_at="t1",
        tool_version="0.1.0",
        tier="full",
        suites=["regression"],
        candidate={"name": "bedrock:m", "model_id": "m", "prompt_id": "support/v1", "params": {"x": 1}},
        cases=[ok, bad],
        aggregates=[
            Aggregate(
                metric="similarity",
                suite="regression",
                n=2,
                value=0.65,
                threshold=0.82,
                direction="min",
                status="borderline",
            ),
            Aggregate(metric="relevance", suite="regression", n=2, value=0.95, status="pass"),
        ],
        verdict=Verdict(verdict="REVIEW", exit_code=3, reasons=["similarity borderline"]),
    )
    d = gate_event_detail(result, report_url="https://r", pipeline="p", execution_id="e")
    assert d["verdict"] == "REVIEW" and d["candidate"] == {
        "name": "bedrock:m",
        "model_id": "m",
        "prompt_id": "support/v1",
    }
    assert [a["metric"] for a in d["aggregates"]] == ["similarity"]
    assert d["worst"] == [
        {"id": "c-1", "question": "How long?", "output": "45 days", "failures": ["similarity 0.40 < 0.82"]}
    ]
    assert EventBridgeEvent.model_validate(event("evalgate", "EvalGate Verdict", d)).detail["run_id"] == "abc"


@mock_aws
def test_the_feedback_rollback_email_states_the_minimum_of_rated_answers() -> None:

    cw = boto3.client("cloudwatch", region_name="us-east-1")
    dims = [{"Name": "FunctionVersion", "Value": "7"}]
    metric = {"Namespace": "EvalGate/Service", "MetricName": "FeedbackScore", "Dimensions": dims}
    cw.put_metric_data(
        Namespace="EvalGate/Service",
        MetricData=[{"MetricName": "FeedbackScore", "Dimensions": dims, "Value": float(i % 4 == 0)} for i in range(24)],
    )
    cw.put_metric_alarm(  # the shape stacks/constructs/quality_alarms.py synthesizes
        AlarmName="evalgate-prod-feedback-low",
        AlarmDescription="User feedback score (thumbs-up share) of the new version below 0.5, counted only in a "
        "5-min period with at least 20 distinct rated answers (one vote per answer, signed request ids only)",
        Metrics=[
            {"Id": "expr_1", "Expression": "IF(answers >= 20, score, 1)", "ReturnData": True},
            {"Id": "score", "MetricStat": {"Metric": metric, "Period": 300, "Stat": "Average"}, "ReturnData": False},
            {
                "Id": "answers",
                "MetricStat": {"Metric": metric, "Period": 300, "Stat": "SampleCount"},
                "ReturnData": False,
            },
        ],
        EvaluationPeriods=2,
        Threshold=0.5,
        ComparisonOperator="LessThanThreshold",
        TreatMissingData="notBreaching",
    )
    [alarm] = cw.describe_alarms(AlarmNames=["evalgate-prod-feedback-low"])["MetricAlarms"]
    lookup = Lookup(lambda service: boto3.client(service, region_name="us-east-1"))
    lines = _alarm_lines(lookup.evidence(alarm), lambda kind, name: f"<{kind} {name}>")
    text = "\n".join(lines)
    assert "Metric    EvalGate/Service FeedbackScore (FunctionVersion=7), Average over 5 min" in text
    assert "n = 24 feedback events" in text
    assert "Rule      User feedback score" in text and "at least 20 distinct rated answers" in text


@pytest.mark.parametrize(
    "content",
    [
        '{"version": 0.0, "Resources": [{"fn": {"Type": "AWS::Lambda::Function", "Properties": {"Name": "svc", '
        '"Alias": "live", "CurrentVersion": "6", "TargetVersion": "7"}}}]}',
        "version: 0.0\nResources:\n  - fn:\n      Type: AWS::Lambda::Function\n      Properties:\n        Name: svc\n"
        "        Alias: live\n        CurrentVersion: '6'\n        TargetVersion: \"7\"\n",
    ],
)
def test_the_notifier_reads_the_appspec_as_the_hooks_do(content: str) -> None:
    from evalgate.release.appspec import DeploymentVersions

    info = {"revision": {"appSpecContent": {"content": content}}}
    assert Lookup.versions(info) == DeploymentVersions("svc", "live", "6", "7")
    assert Lookup.versions({}) == DeploymentVersions(None, None, None, None)
