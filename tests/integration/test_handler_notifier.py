"""Notifier in-process: real-looking EventBridge events; moto for SNS (→ SQS to read the email), DynamoDB,
CloudWatch alarms and metrics and Lambda versions; Stubber for CodeDeploy, Logs Insights, AppConfig and
CodePipeline (moto lacks the calls or can't produce rollback state)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from tests.fakes.aws_lambda import context_factory

REGION = "us-east-1"
DEPLOYMENT = "d-7HX2Q5N1B"
ALARM = "support-service-v7-quality"
HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


Ctx = context_factory("support-notifier", remaining_ms=60_000, memory_mb=256)


def codedeploy_event(state: str = "STOP", event_id: str = "c071bfbf-83c4-49ca-a6ff-3df053957145") -> dict[str, Any]:
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "CodeDeploy Deployment State-change Notification",
        "source": "aws.codedeploy",
        "account": "123456789012",
        "time": "2026-11-23T16:21:07Z",
        "region": REGION,
        "resources": [
            "arn:aws:codedeploy:us-east-1:123456789012:application:support-service-app",
            "arn:aws:codedeploy:us-east-1:123456789012:deploymentgroup:support-service-app/support-service-dg",
        ],
        "detail": {
            "region": REGION,
            "deploymentId": DEPLOYMENT,
            "instanceGroupId": "9fd2fbef-2157-40d8-91e7-6845af69e2d2",
            "deploymentGroup": "support-service-dg",
            "state": state,
            "application": "support-service-app",
        },
    }


APPSPEC = json.dumps(
    {
        "version": 0.0,
        "Resources": [
            {
                "SupportService": {
                    "Type": "AWS::Lambda::Function",
                    "Properties": {
                        "Name": "support-service",
                        "Alias": "live",
                        "CurrentVersion": "6",
                        "TargetVersion": "7",
                    },
                }
            }
        ],
    }
)


def deployment_info(code: str = "ALARM_ACTIVE") -> dict[str, Any]:
    messages = {
        "ALARM_ACTIVE": "One or more alarms have been activated according to the Amazon CloudWatch metrics you "
        f"selected, and the affected deployments have been stopped. Activated alarms: <{ALARM}>",
        "HOOK_EXECUTION_FAILURE": "The deployment failed because a BeforeAllowTraffic hook reported Failed.",
    }
    return {
        "deploymentInfo": {
            "applicationName": "support-service-app",
            "deploymentGroupName": "support-service-dg",
            "deploymentId": DEPLOYMENT,
            "status": "Stopped",
            "computePlatform": "Lambda",
            "createTime": datetime.now(UTC) - timedelta(minutes=20),
            "errorInformation": {"code": code, "message": messages[code]},
            "rollbackInfo": {"rollbackDeploymentId": "d-ROLLBACK01", "rollbackMessage": "Rolled back to version 6."},
            "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": APPSPEC, "sha256": "0" * 64}},
        }
    }


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(e, c):\n    return e\n")
    return buf.getvalue()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "2")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "notifier")
    monkeypatch.setenv("JUDGE_LOG_GROUP", "/aws/lambda/support-online-judge")
    with mock_aws():
        sns, sqs, ddb = (boto3.client(s, region_name=REGION) for s in ("sns", "sqs", "dynamodb"))
        topic = sns.create_topic(Name="evalgate-alerts")["TopicArn"]
        q = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        q_arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn)
        ddb.create_table(
            TableName="evalgate-idempotency",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        )
        monkeypatch.setenv("TOPIC_ARN", topic)
        monkeypatch.setenv("IDEMPOTENCY_TABLE", "evalgate-idempotency")

        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="svc", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=REGION)
        lam.create_function(
            FunctionName="support-service",
            Runtime="python3.13",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": _zip()},
        )
        for n in range(1, 8):  # versions 1..7; 7 is the candidate with a new model and prompt
            env = {
                "MODEL_ID": HAIKU if n == 7 else "us.anthropic.claude-sonnet-4-20250514-v1:0",
                "PROMPT_ID": "support/v2-concise" if n == 7 else "support/v1",
            }
            lam.update_function_configuration(
                FunctionName="support-service", Environment={"Variables": env}, Description=f"build {n}"
            )
            lam.publish_version(FunctionName="support-service", Description=f"build {n}")

        cw = boto3.client("cloudwatch", region_name=REGION)
        dims = [{"Name": "FunctionVersion", "Value": "7"}]
        now = datetime.now(UTC)
        cw.put_metric_data(
            Namespace="EvalGate/Service",
            MetricData=[
                {
                    "MetricName": "QualityScore",
                    "Dimensions": dims,
                    "Value": 0.61,
                    "Timestamp": now - timedelta(seconds=30 + i),
                }
                for i in range(42)
            ],
        )
        # business outcomes of the new version (7) and the previous one (6) during the deployment
        for version, ups, rated, conversions, outcomes in (("7", 12, 30, 2, 60), ("6", 85, 100, 6, 120)):
            values = [("FeedbackScore", 1.0 if i < ups else 0.0) for i in range(rated)]
            values += [("ConversionRate", 1.0 if i < conversions else 0.0) for i in range(outcomes)]
            for i in range(0, len(values), 500):
                cw.put_metric_data(
                    Namespace="EvalGate/Service",
                    MetricData=[
                        {
                            "MetricName": name,
                            "Dimensions": [{"Name": "FunctionVersion", "Value": version}],
                            "Value": v,
                            "Timestamp": now - timedelta(minutes=5),
                        }
                        for name, v in values[i : i + 500]
                    ],
                )
        cw.put_metric_alarm(
            AlarmName=ALARM,
            Namespace="EvalGate/Service",
            MetricName="QualityScore",
            Dimensions=dims,
            Statistic="Average",
            Period=300,
            EvaluationPeriods=1,
            Threshold=0.75,
            ComparisonOperator="LessThanThreshold",
            TreatMissingData="notBreaching",
        )
        cw.set_alarm_state(
            AlarmName=ALARM,
            StateValue="ALARM",
            StateReason="Threshold Crossed: 1 out of the last 1 datapoints [0.61 (23/11/26 16:15:00)] was less than "
            "the threshold (0.75) (minimum 1 datapoint for OK -> ALARM transition).",
            StateReasonData=json.dumps(
                {"version": "1.0", "statistic": "Average", "period": 300, "recentDatapoints": [0.61], "threshold": 0.75}
            ),
        )

        from handlers import notifier as h

        monkeypatch.setattr(h, "_clients", {})
        yield {"h": h, "sqs": sqs, "queue": q, "topic": topic, "ddb": ddb}


def stub(world: dict[str, Any], service: str) -> Stubber:
    client = boto3.client(service, region_name=REGION)
    s = Stubber(client)
    s.activate()
    world["h"]._clients[service] = client
    return s


def stub_codedeploy(world: dict[str, Any], times: int = 1, code: str = "ALARM_ACTIVE") -> Stubber:
    s = stub(world, "codedeploy")
    for _ in range(times):
        s.add_response("get_deployment", deployment_info(code), {"deploymentId": DEPLOYMENT})
    return s


def stub_logs(world: dict[str, Any], times: int = 1) -> Stubber:
    s = stub(world, "logs")
    rows = [
        [
            {"field": "request_id", "value": "3f1c2b7d9e8a4c6b8a7f6e5d4c3b2a10.WyI3Il0"},
            {"field": "quality", "value": "0.1"},
            {"field": "hallucinated", "value": "1"},
            {"field": "question", "value": "Are returns free?"},
            {"field": "answer", "value": "Yes, returns are free forever, no questions asked."},
            {"field": "claim", "value": "returns are free forever"},
        ],
        [
            {"field": "request_id", "value": "9a8b7c6d5e4f30211203948576afbecd.WyI3Il0"},
            {"field": "quality", "value": "0.35"},
            {"field": "hallucinated", "value": "0"},
            {"field": "question", "value": "Do you ship to Canada?"},
            {"field": "answer", "value": "We do not ship outside the US."},
        ],
    ]
    for _ in range(times):
        s.add_response("start_query", {"queryId": "q-123"})
        s.add_response("get_query_results", {"status": "Running", "results": []}, {"queryId": "q-123"})
        s.add_response("get_query_results", {"status": "Complete", "results": rows}, {"queryId": "q-123"})
    return s


def inbox(world: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = world["sqs"].receive_message(QueueUrl=world["queue"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in msgs]


def test_codedeploy_rollback_email_explains_why(world: dict[str, Any], capsys: Any) -> None:
    cd, logs = stub_codedeploy(world), stub_logs(world)
    out = world["h"].handler(codedeploy_event(), Ctx())
    assert out["status"] == "sent"
    [msg] = inbox(world)
    subject, body = msg["Subject"], msg["Message"]
    assert subject == "[evalgate] Rolled back: support-service v7 (QualityScore alarm)"
    expected_lines = [
        f"  CodeDeploy deployment {DEPLOYMENT} (application support-service-app, group support-service-dg) stopped "
        "and rolled back.",
        "  Function  support-service, alias live",
        "  Version   7 (replacing 6; traffic is back on 6)",
        f"  Model     {HAIKU}",
        "  Prompt    support/v2-concise",
        f"  {ALARM}: ALARM since",
        "    Metric    EvalGate/Service QualityScore (FunctionVersion=7), Average over 5 min",
        "    Observed  0.61, threshold 0.75 (alarms when < 0.75), n = 42 judged answers",
        "    CloudWatch says: Threshold Crossed: 1 out of the last 1 datapoints [0.61",
        f"    https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#alarmsV2:alarm/{ALARM}",
        "Business outcomes, version 7 vs 6 (same window, the canary judge's tests)",
        "  Thumbs-up share  40.0% (n = 30) vs 85.0% (n = 100): -45.0 points, one-sided p = ",
        "  Conversion rate  3.3% (n = 60) vs 5.0% (n = 120): -1.7 points, one-sided p = ",
        "Worst judged answers of version 7",
        "  1. quality 0.1, hallucinated  (request 3f1c2b7d9e8a4c6b8a7f6e5d4c3b2a10)",
        "     Q: Are returns free?",
        "     A: Yes, returns are free forever, no questions asked.",
        "     Unsupported: returns are free forever",
        "  2. quality 0.35  (request 9a8b7c6d5e4f30211203948576afbecd)",
        f"  Deployment  https://us-east-1.console.aws.amazon.com/codesuite/codedeploy/deployments/{DEPLOYMENT}"
        "?region=us-east-1",
        "  Function    https://us-east-1.console.aws.amazon.com/lambda/home?region=us-east-1#/functions/"
        "support-service/versions/7?tab=configuration",
        "  Judge logs  https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/"
        "log-group/%2Faws%2Flambda%2Fsupport-online-judge",
        "Event c071bfbf-83c4-49ca-a6ff-3df053957145 (aws.codedeploy / CodeDeploy Deployment State-change Notification",
    ]
    for line in expected_lines:
        assert line in body, f"missing line {line!r} in:\n{body}"
    assert "Reason: ALARM_ACTIVE: One or more alarms have been activated" in body
    feedback, conversion = (next(x for x in body.splitlines() if x.startswith(f"  {n}")) for n in ("Thumbs", "Conv"))
    assert feedback.endswith("; significantly worse") and "no significant drop" in conversion
    assert "Not available" not in body  # every lookup worked
    cd.assert_no_pending_responses()
    logs.assert_no_pending_responses()
    emf = next(json.loads(x) for x in capsys.readouterr().out.splitlines() if '"Notifications"' in x and '"_aws"' in x)
    assert emf["Notifications"] == [1.0] and emf["FunctionVersion"] == "2"


def test_a_live_canary_verdict_rollback_shows_the_canary_analysis(world: dict[str, Any]) -> None:
    verdict_alarm = "support-service-canary-verdict"
    cw = boto3.client("cloudwatch", region_name=REGION)
    dims = [{"Name": "FunctionVersion", "Value": "7"}]
    cw.put_metric_data(
        Namespace="EvalGate/Service",
        MetricData=[
            {
                "MetricName": "CanaryVerdict",
                "Dimensions": dims,
                "Value": 1.0,
                "Timestamp": datetime.now(UTC) - timedelta(seconds=20),
            },
        ],
    )
    cw.put_metric_alarm(
        AlarmName=verdict_alarm,
        Namespace="EvalGate/Service",
        MetricName="CanaryVerdict",
        Dimensions=dims,
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )
    cw.set_alarm_state(AlarmName=verdict_alarm, StateValue="ALARM", StateReason="Threshold Crossed: [1.0]")
    info = deployment_info()
    info["deploymentInfo"]["errorInformation"]["message"] = (
        f"One or more alarms have been activated according to the Amazon CloudWatch metrics you selected, and the "
        f"affected deployments have been stopped. Activated alarms: <{verdict_alarm}>"
    )
    cd = stub(world, "codedeploy")
    cd.add_response("get_deployment", info, {"deploymentId": DEPLOYMENT})
    stub_logs(world)
    out = world["h"].handler(codedeploy_event(event_id="e-verdict"), Ctx())
    assert out["status"] == "sent"
    body = inbox(world)[0]["Message"]
    assert "n = 1 verdicts of the live canary judge (one a minute)" in body
    assert "Canary analysis, version 7 vs 6 (the live judge's tests, whole deployment)" in body
    # version 7 scored 0.61 on 42 judged answers, version 6 was not judged in this window: fail closed
    assert "  QualityScore: nodata - insufficient data: baseline has 0 samples" in body
    assert "  Thumbs-up share  40.0% (n = 30) vs 85.0% (n = 100)" in body


def test_worst_examples_from_the_judged_records_in_s3(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from evalgate.release.online import JudgedWriter

    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="evalgate-data")
    rows = [
        {
            "evalgate_judged": 1,
            "request_id": f"r{i}",
            "function_version": v,
            "quality": q,
            "hallucinated": h,
            "unsupported_claims": ["store credit never expires"] if h else [],
            "question": f"question {i}?",
            "answer": f"answer {i}",
        }
        for i, (v, q, h) in enumerate(
            [("7", 0.9, False), ("7", 0.2, True), ("7", 0.5, False), ("6", 0.0, True), ("7", None, None)]
        )
    ]
    JudgedWriter("evalgate-data", "judged/", s3).write(rows)
    monkeypatch.setenv("JUDGED_BUCKET", "evalgate-data")
    monkeypatch.delenv("JUDGE_LOG_GROUP")
    stub_codedeploy(world)
    assert world["h"].handler(codedeploy_event(event_id="s3-1"), Ctx())["status"] == "sent"
    body = inbox(world)[0]["Message"]
    assert "  1. quality 0.2, hallucinated  (request r1)" in body
    assert "     Unsupported: store credit never expires" in body
    assert "  2. quality 0.5  (request r2)" in body and "  3. quality 0.9  (request r0)" in body
    assert "request r3" not in body  # another version's answers are not quoted
    assert "  Judged      s3://evalgate-data/judged/version=7/" in body


def test_redelivered_event_sends_no_second_email(world: dict[str, Any]) -> None:
    stub_codedeploy(world), stub_logs(world)  # one set of lookups only: a second compose would fail the stubs
    assert world["h"].handler(codedeploy_event(), Ctx())["status"] == "sent"
    assert world["h"].handler(codedeploy_event(), Ctx())["status"] == "duplicate"
    assert len(inbox(world)) == 1
    items = world["ddb"].scan(TableName="evalgate-idempotency")["Items"]  # one record, keyed by the event id
    assert len(items) == 1 and items[0]["status"]["S"] == "COMPLETED"
    assert int(items[0]["expiration"]["N"]) > datetime.now(UTC).timestamp() + 6 * 24 * 3600


def test_failed_send_releases_the_claim_so_the_retry_sends(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    stub_codedeploy(world, times=2), stub_logs(world, times=2)
    monkeypatch.setenv("TOPIC_ARN", world["topic"] + "-missing")
    with pytest.raises(Exception, match=r"NotFound|does not exist|Topic"):
        world["h"].handler(codedeploy_event(), Ctx())
    monkeypatch.setenv("TOPIC_ARN", world["topic"])
    assert world["h"].handler(codedeploy_event(), Ctx())["status"] == "sent"
    assert len(inbox(world)) == 1


def test_hook_failure_without_alarm_and_broken_lookups_still_emails(world: dict[str, Any]) -> None:
    stub_codedeploy(world, code="HOOK_EXECUTION_FAILURE")
    logs = stub(world, "logs")
    logs.add_client_error("start_query", "AccessDeniedException", "not authorized to perform logs:StartQuery")
    out = world["h"].handler(codedeploy_event(state="FAILURE", event_id="e-2"), Ctx())
    assert out["status"] == "sent"
    body = inbox(world)[0]["Message"]
    assert "failed and rolled back" in body and "A lifecycle hook reported Failed" in body
    assert "could not read worst judged examples from /aws/lambda/support-online-judge: AccessDeniedException" in body


def test_successful_deployment_sends_nothing(world: dict[str, Any]) -> None:
    out = world["h"].handler(codedeploy_event(state="SUCCESS", event_id="e-3"), Ctx())
    assert out["status"] == "ignored" and inbox(world) == []


def test_appconfig_rollback_email(world: dict[str, Any]) -> None:
    cw = boto3.client("cloudwatch", region_name=REGION)
    cw.put_metric_alarm(
        AlarmName="support-flags-hallucination",
        Namespace="EvalGate/Service",
        MetricName="Hallucination",
        Dimensions=[{"Name": "FunctionVersion", "Value": "7"}],
        Statistic="Average",
        Period=300,
        EvaluationPeriods=1,
        Threshold=0.05,
        ComparisonOperator="GreaterThanThreshold",
    )
    ac = stub(world, "appconfig")
    ac.add_response(
        "get_deployment",
        {
            "ApplicationId": "abc1234",
            "EnvironmentId": "env5678",
            "DeploymentNumber": 4,
            "ConfigurationProfileId": "prof999",
            "ConfigurationVersion": "12",
            "State": "ROLLED_BACK",
            "EventLog": [
                {
                    "EventType": "ROLLBACK_COMPLETED",
                    "TriggeredBy": "CLOUDWATCH_ALARM",
                    "OccurredAt": datetime.now(UTC),
                    "Description": "Rollback initiated by alarm "
                    "arn:aws:cloudwatch:us-east-1:123456789012:alarm:support-flags-hallucination",
                }
            ],
        },
        {"ApplicationId": "abc1234", "EnvironmentId": "env5678", "DeploymentNumber": 4},
    )
    doc = json.dumps(
        {
            "variant": {
                "default": "control",
                "boolean_type": False,
                "rules": {
                    "candidate 10%": {
                        "when_match": "candidate",
                        "conditions": [
                            {"action": "MODULO_RANGE", "key": "cohort", "value": {"BASE": 100, "START": 0, "END": 9}}
                        ],
                    }
                },
            },
            "variants": {
                "boolean_type": False,
                "default": {
                    "control": {"model_id": "m-control", "prompt_id": "support/v1"},
                    "candidate": {"model_id": HAIKU, "prompt_id": "support/v2-concise"},
                },
            },
        }
    ).encode()
    ac.add_response(
        "get_hosted_configuration_version",
        {
            "ApplicationId": "abc1234",
            "ConfigurationProfileId": "prof999",
            "VersionNumber": 12,
            "Content": StreamingBody(io.BytesIO(doc), len(doc)),
            "ContentType": "application/json",
        },
        {"ApplicationId": "abc1234", "ConfigurationProfileId": "prof999", "VersionNumber": 12},
    )
    event = {
        "version": "0",
        "id": "ac-1",
        "detail-type": "On Deployment Rollback",
        "source": "aws.appconfig",
        "account": "123456789012",
        "time": "2026-11-23T16:30:00Z",
        "region": REGION,
        "resources": [],
        "detail": {
            "Type": "OnDeploymentRolledBack",
            "Application": {"Id": "abc1234", "Name": "evalgate"},
            "Environment": {"Id": "env5678", "Name": "prod"},
            "ConfigurationProfile": {"Id": "prof999", "Name": "service-flags"},
            "DeploymentNumber": 4,
            "ConfigurationVersion": "12",
        },
    }
    assert world["h"].handler(event, Ctx())["status"] == "sent"
    msg = inbox(world)[0]
    assert msg["Subject"] == "[evalgate] Flag rollout rolled back: service-flags v12 in prod"
    body = msg["Message"]
    assert f"Variant candidate: model {HAIKU}, prompt support/v2-concise" in body
    assert "Rule 'candidate 10%' -> candidate" in body
    assert "support-flags-hallucination" in body and "EvalGate/Service Hallucination (FunctionVersion=7)" in body
    assert (
        "https://us-east-1.console.aws.amazon.com/systems-manager/appconfig/applications/abc1234/environments/"
        "env5678/deployments/4?region=us-east-1"
    ) in body
    ac.assert_no_pending_responses()


def test_pipeline_failure_email(world: dict[str, Any]) -> None:
    cp = stub(world, "codepipeline")
    cp.add_response(
        "list_action_executions",
        {
            "actionExecutionDetails": [
                {
                    "pipelineExecutionId": "exec-1",
                    "actionExecutionId": "a1",
                    "stageName": "Eval",
                    "actionName": "QualityGate",
                    "status": "Failed",
                    "output": {
                        "executionResult": {
                            "externalExecutionId": "build-1",
                            "externalExecutionSummary": "evalgate run: FAIL (faithfulness 0.71 < 0.85)",
                            "externalExecutionUrl": "https://us-east-1.console.aws.amazon.com/codesuite/codebuild/projects/x/build/1",
                        }
                    },
                },
                {
                    "pipelineExecutionId": "exec-1",
                    "actionExecutionId": "a0",
                    "stageName": "Synth",
                    "actionName": "Synth",
                    "status": "Succeeded",
                },
            ]
        },
        {"pipelineName": "evalgate-pipeline", "filter": {"pipelineExecutionId": "exec-1"}},
    )
    event = {
        "version": "0",
        "id": "cp-1",
        "detail-type": "CodePipeline Pipeline Execution State Change",
        "source": "aws.codepipeline",
        "account": "123456789012",
        "time": "2026-11-23T16:40:00Z",
        "region": REGION,
        "resources": ["arn:aws:codepipeline:us-east-1:123456789012:evalgate-pipeline"],
        "detail": {"pipeline": "evalgate-pipeline", "execution-id": "exec-1", "state": "FAILED", "version": 3},
    }
    assert world["h"].handler(event, Ctx())["status"] == "sent"
    msg = inbox(world)[0]
    assert msg["Subject"] == "[evalgate] Pipeline failed: evalgate-pipeline at Eval/QualityGate"
    assert "evalgate run: FAIL (faithfulness 0.71 < 0.85)" in msg["Message"]
    assert "The quality gate failed" in msg["Message"]


def test_gate_review_email(world: dict[str, Any]) -> None:
    event = {
        "version": "0",
        "id": "gate-1",
        "detail-type": "EvalGate Verdict",
        "source": "evalgate",
        "account": "123456789012",
        "time": "2026-11-23T16:50:00Z",
        "region": REGION,
        "resources": [],
        "detail": {
            "verdict": "REVIEW",
            "run_id": "a1b2c3d4e5f6",
            "tier": "full",
            "candidate": {"name": "bedrock:haiku", "model_id": HAIKU, "prompt_id": "support/v2-concise"},
            "reasons": ["drift 0.08 above noise (threshold 0.05)"],
            "aggregates": [
                {
                    "metric": "faithfulness",
                    "suite": "regression",
                    "value": 0.86,
                    "threshold": 0.85,
                    "direction": "min",
                    "n": 60,
                    "status": "borderline",
                }
            ],
            "worst": [
                {
                    "id": "ret-window-basic",
                    "question": "How long do I have to return something?",
                    "output": "45 days.",
                    "failures": ["similarity 0.41 < 0.82"],
                }
            ],
            "report_url": "https://example.com/report.html",
            "pipeline": "evalgate-pipeline",
            "execution_id": "exec-9",
        },
    }
    assert world["h"].handler(event, Ctx())["status"] == "sent"
    body = inbox(world)[0]["Message"]
    assert "regression.faithfulness: 0.86 vs threshold >= 0.85, n = 60 cases (borderline)" in body
    assert "1. ret-window-basic: similarity 0.41 < 0.82" in body
    assert (
        "Approve    https://us-east-1.console.aws.amazon.com/codesuite/codepipeline/pipelines/evalgate-pipeline/"
        "executions/exec-9/timeline?region=us-east-1" in body
    )
    passed = {**event, "id": "gate-2", "detail": {**event["detail"], "verdict": "PASS"}}
    assert world["h"].handler(passed, Ctx())["status"] == "ignored"


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"id": "x", "source": "aws.codedeploy"},
        "text",
        None,
        {"id": "x", "source": "s", "detail-type": "t", "detail": "not-an-object"},
        {"id": "g", "source": "evalgate", "detail-type": "EvalGate Verdict", "detail": {"verdict": "MAYBE"}},
        {"id": "g", "source": "evalgate", "detail-type": "EvalGate Verdict", "detail": {"reasons": 7}},
    ],
)
def test_malformed_events_are_clear_errors_and_send_nothing(world: dict[str, Any], bad: Any) -> None:
    out = world["h"].handler(bad, Ctx())  # returns (logged and dropped): never raises into Lambda's async retries
    assert out["status"] == "error" and ("EventBridge event" in out["error"] or "event detail" in out["error"])
    assert inbox(world) == []
    assert world["ddb"].scan(TableName="evalgate-idempotency")["Items"] == []  # nothing claimed
