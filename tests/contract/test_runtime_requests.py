"""Every runtime path driven by AWS's own sample events, against AWS's own request models.

Each handler gets the sample event from the AWS documentation page it consumes (``events/SOURCES.md``); every
boto3 request it then builds -- through our code or Powertools' -- is checked with
``botocore.validate.validate_parameters`` against the service model botocore ships (``recorder.AwsRecorder``)
and must be a call listed for that path in ``paths.PATHS`` (whose IAM grants ``test_iam_table`` checks).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.aws_lambda import context_factory

from .conftest import doc_event
from .paths import PATHS
from .recorder import AwsRecorder, body

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")
REGION = "us-east-1"
SONNET = "us.anthropic.claude-sonnet-4-20250514-v1:0"
HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
Ctx = context_factory("contract", remaining_ms=120_000, memory_mb=512)


def assert_contract(aws: AwsRecorder, path: str) -> set[tuple[str, str]]:
    """No request failed the service model, and every call is one the path's IAM table covers."""
    assert aws.invalid == [], aws.invalid
    made = aws.operations()
    unlisted = made - set(PATHS[path].calls)
    assert not unlisted, f"{path} calls {sorted(unlisted)}, which paths.PATHS does not list (so no IAM check)"
    return made


def judge_reply(params: dict[str, Any], unsupported: tuple[str, ...] = ()) -> dict[str, Any]:
    """A Converse answer: the forced tool call when the request has tools (the judge flags ``unsupported``
    claims, if any), else text."""
    tools = (params.get("toolConfig") or {}).get("tools") or []
    if tools:
        verdict = (
            {"score": 0.2, "verdict": "fail", "reasons": "Claims what no cited source says."}
            if unsupported
            else {"score": 0.9, "verdict": "pass", "reasons": "Supported by the cited policy."}
        )
        content: list[dict[str, Any]] = [
            {
                "toolUse": {
                    "toolUseId": "tooluse-1",
                    "name": tools[0]["toolSpec"]["name"],
                    "input": {**verdict, "unsupported_claims": list(unsupported)},
                }
            }
        ]
        stop = "tool_use"
    else:
        content = [{"text": "Refunds reach your card within 5 to 10 business days [returns.refund-timing]."}]
        stop = "end_turn"
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {"inputTokens": 900, "outputTokens": 40, "totalTokens": 940},
        "metrics": {"latencyMs": 420},
    }


def stream_reply(params: dict[str, Any]) -> dict[str, Any]:
    """A ConverseStream answer: the events botocore's EventStream yields, in order."""
    answer = "Refunds reach your card within 5 to 10 business days [returns.refund-timing]."
    cut = answer.index(" days")
    deltas = [answer[:cut], answer[cut:]]  # two chunks, as a stream splits a short answer
    return {
        "stream": [
            {"messageStart": {"role": "assistant"}},
            *({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": d}}} for d in deltas),
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": "end_turn"}},
            {
                "metadata": {
                    "usage": {"inputTokens": 900, "outputTokens": 40, "totalTokens": 940},
                    "metrics": {"latencyMs": 420},
                }
            },
        ]
    }


# ------------------------------------------------------------------------------------------------ notifier


@pytest.fixture
def notifier(monkeypatch: pytest.MonkeyPatch, aws: AwsRecorder) -> Any:
    from handlers import notifier as h

    for k, v in {
        "AWS_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_VERSION": "3",
        "POWERTOOLS_SERVICE_NAME": "notifier",
        "TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:evalgate-prod-alerts",
        "IDEMPOTENCY_TABLE": "evalgate-prod-idempotency",
        "JUDGE_LOG_GROUP": "/aws/lambda/judge",
        "JUDGED_BUCKET": "evalgate-prod-data",
        "JUDGED_PREFIX": "judged/",
        "PIPELINE_NAME": "myPipeline",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(h, "_clients", {})
    aws.respond("sns", "Publish", {"MessageId": "m-1"})
    return h


def test_codedeploy_rollback_doc_event(notifier: Any, aws: AwsRecorder) -> None:
    event = doc_event("codedeploy_deployment_state_change")
    assert notifier.handler(event, Ctx())["status"] == "ignored"  # the sample is a SUCCESS: nothing to explain
    event["detail"]["state"] = "FAILURE"  # the only change: a failed (rolled back) deployment
    appspec = json.dumps(
        {
            "version": 0.0,
            "Resources": [
                {
                    "svc": {
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
    aws.respond(
        "codedeploy",
        "GetDeployment",
        {
            "deploymentInfo": {
                "applicationName": "myApplication",
                "deploymentGroupName": "myDeploymentGroup",
                "deploymentId": "d-123456789",
                "status": "Failed",
                "computePlatform": "Lambda",
                "createTime": datetime.now(UTC),
                "errorInformation": {
                    "code": "ALARM_ACTIVE",
                    "message": "Activated alarms: <evalgate-prod-quality-low>",
                },
                "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec}},
            }
        },
    )
    aws.respond(
        "codedeploy",
        "GetDeploymentGroup",
        {
            "deploymentGroupInfo": {
                "alarmConfiguration": {"enabled": True, "alarms": [{"name": "evalgate-prod-quality-low"}]}
            }
        },
    )
    aws.respond(
        "lambda",
        "GetFunctionConfiguration",
        {"Version": "7", "Environment": {"Variables": {"MODEL_ID": SONNET, "PROMPT_ID": "support/v1"}}},
    )
    aws.respond(
        "cloudwatch",
        "DescribeAlarms",
        {
            "MetricAlarms": [
                {
                    "AlarmName": "evalgate-prod-quality-low",
                    "Namespace": "EvalGate/Service",
                    "MetricName": "QualityScore",
                    "Dimensions": [{"Name": "FunctionVersion", "Value": "7"}],
                    "Statistic": "Average",
                    "Period": 300,
                    "EvaluationPeriods": 2,
                    "Threshold": 0.7,
                    "ComparisonOperator": "LessThanThreshold",
                    "StateValue": "ALARM",
                }
            ]
        },
    )
    aws.respond("cloudwatch", "GetMetricData", {"MetricDataResults": []})
    aws.respond("logs", "StartQuery", {"queryId": "q-1"})
    aws.respond("logs", "GetQueryResults", {"status": "Complete", "results": []})
    aws.respond("s3", "ListObjectsV2", {"KeyCount": 0})
    out = notifier.handler(event, Ctx())
    assert out["status"] == "sent", out
    made = assert_contract(aws, "notifier")
    assert {
        ("codedeploy", "GetDeployment"),
        ("cloudwatch", "DescribeAlarms"),
        ("sns", "Publish"),
        ("dynamodb", "PutItem"),
    } <= made
    (published,) = aws.of("sns", "Publish")
    assert "d-123456789" in published["Message"] and "evalgate-prod-quality-low" in published["Message"]


def test_appconfig_doc_event_complete_is_ignored_rollback_is_explained(notifier: Any, aws: AwsRecorder) -> None:
    complete = doc_event("appconfig_eventbridge_deployment_complete")
    assert notifier.handler(complete, Ctx())["status"] == "ignored"
    assert aws.of("sns", "Publish") == []
    rollback = doc_event("appconfig_eventbridge_deployment_complete")
    rollback["id"] = "c53dbd72-c1a0-2302-9ed6-c076e9128278"
    # the rollback event of the same extension: its detail-type and action-point type (EventBridge events
    # reference for AppConfig; AppConfig action point ON_DEPLOYMENT_ROLLED_BACK)
    rollback["detail-type"], rollback["detail"]["Type"] = "On Deployment Rollback", "OnDeploymentRolledBack"
    aws.respond(
        "appconfig",
        "GetDeployment",
        {
            "ApplicationId": "ba8toh7",
            "EnvironmentId": "pgil2o7",
            "DeploymentNumber": 1,
            "ConfigurationVersion": "1",
            "State": "ROLLED_BACK",
            "EventLog": [
                {
                    "EventType": "ROLLBACK_COMPLETED",
                    "TriggeredBy": "CLOUDWATCH_ALARM",
                    "OccurredAt": datetime.now(UTC),
                    "Description": (
                        "Rollback by arn:aws:cloudwatch:us-east-1:111122223333:alarm:evalgate-prod-quality-low"
                    ),
                }
            ],
        },
    )
    aws.respond(
        "appconfig",
        "GetHostedConfigurationVersion",
        {
            "ApplicationId": "ba8toh7",
            "ConfigurationProfileId": "ga3tqep",
            "VersionNumber": 1,
            "Content": body(
                {
                    "variants": {
                        "boolean_type": False,
                        "default": {"control": {"model_id": SONNET, "prompt_id": "support/v1"}},
                    }
                }
            ),
            "ContentType": "application/json",
        },
    )
    aws.respond("cloudwatch", "DescribeAlarms", {"MetricAlarms": []})
    out = notifier.handler(rollback, Ctx())
    assert out["status"] == "sent", out
    assert out["subject"] == "[evalgate] Flag rollout rolled back: MyConfigProfile v1 in MyEnv"
    assert_contract(aws, "notifier")
    (published,) = aws.of("sns", "Publish")
    assert "AppConfig deployment 1 of MyConfigProfile (application MyApp, environment MyEnv)" in published["Message"]
    assert "Variant control: model" in published["Message"]  # explained, not raw JSON


def test_codepipeline_failed_doc_event(notifier: Any, aws: AwsRecorder) -> None:
    aws.respond(
        "codepipeline",
        "ListActionExecutions",
        {
            "actionExecutionDetails": [
                {
                    "pipelineExecutionId": "12345678-1234-5678-abcd-12345678abcd",
                    "actionExecutionId": "a1",
                    "stageName": "QualityGate",
                    "actionName": "EvalGate",
                    "status": "Failed",
                    "output": {"executionResult": {"externalExecutionSummary": "evalgate FAIL (exit 1)"}},
                }
            ]
        },
    )
    aws.respond(
        "codepipeline",
        "GetPipelineExecution",
        {
            "pipelineExecution": {
                "pipelineName": "myPipeline",
                "pipelineExecutionId": "12345678-1234-5678-abcd-12345678abcd",
                "status": "Failed",
                "artifactRevisions": [],
            }
        },
    )
    out = notifier.handler(doc_event("codepipeline_pipeline_execution_failed"), Ctx())
    assert out["status"] == "sent", out
    assert_contract(aws, "pipeline notifier")
    (listed,) = aws.of("codepipeline", "ListActionExecutions")
    assert listed["filter"] == {"pipelineExecutionId": "12345678-1234-5678-abcd-12345678abcd"}


# ------------------------------------------------------------------------------------------------ hooks


def test_canary_analysis_hook_with_the_doc_hook_event(monkeypatch: pytest.MonkeyPatch, aws: AwsRecorder) -> None:
    from handlers import canary_analysis as h

    for k, v in {
        "AWS_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "TARGET_FUNCTION_NAME": "svc",
        "TARGET_VERSION": "7",
        "BAKE_MINUTES": "10",
        "MIN_SAMPLES": "20",
        "MIN_SAMPLES_ALARM": "evalgate-prod-judged-count-low",
        "SAMPLE_GRACE_SECONDS": "0",
        "POWERTOOLS_METRICS_NAMESPACE": "EvalGate/Service",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(h, "_reporter", None)
    appspec = json.dumps(
        {
            "Resources": [
                {
                    "svc": {
                        "Type": "AWS::Lambda::Function",
                        "Properties": {"Name": "svc", "Alias": "live", "CurrentVersion": "6", "TargetVersion": "7"},
                    }
                }
            ]
        }
    )
    aws.respond(
        "codedeploy",
        "GetDeployment",
        {"deploymentInfo": {"revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec}}}},
    )
    aws.respond("cloudwatch", "DescribeAlarms", {"MetricAlarms": [{"AlarmName": "x", "StateValue": "OK"}]})
    aws.respond("cloudwatch", "GetMetricData", {"MetricDataResults": []})
    event = doc_event("codedeploy_lifecycle_hook_invocation")
    out = h.handler(event, Ctx())
    assert out["status"] == "Failed"  # no judged samples in the window: fail closed
    made = assert_contract(aws, "canary analysis hook")
    assert made == set(PATHS["canary analysis hook"].calls) - {("dynamodb", "DeleteItem")}  # only on a crash
    (report,) = aws.of("codedeploy", "PutLifecycleEventHookExecutionStatus")
    assert report == {
        "deploymentId": "d-XXXXXXXXX",
        "lifecycleEventHookExecutionId": "xxxxxxxxxxxxxxxxxxxxxxxx",
        "status": "Failed",
    }


def test_pre_traffic_hook_with_the_doc_hook_event(monkeypatch: pytest.MonkeyPatch, aws: AwsRecorder) -> None:
    from handlers import pre_traffic_hook as h

    root = Path(__file__).resolve().parents[2]
    for k, v in {
        "AWS_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "TARGET_FUNCTION_NAME": "svc",
        "TARGET_VERSION": "7",
        "SMOKE_CASES": f"{root}/golden#smoke",
        "EVALGATE_GOLDEN_DIR": f"{root}/golden",
        "JUDGE_MODEL_ID": HAIKU,
        "EMBEDDINGS_MODEL_ID": "amazon.titan-embed-text-v2:0",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(h, "_reporter", None)

    def service_answer(params: dict[str, Any]) -> dict[str, Any]:
        answer = {
            "statusCode": 200,
            "body": json.dumps(
                {
                    "answer": "Refunds reach your card within 5 to 10 business days [returns.refund-timing].",
                    "model_id": SONNET,
                    "prompt_version": "support/v1",
                    "sources": [{"id": "returns.refund-timing"}],
                    "usage": {"inputTokens": 900, "outputTokens": 40},
                }
            ),
        }
        return {"StatusCode": 200, "ExecutedVersion": "7", "Payload": body(answer)}

    aws.respond("lambda", "Invoke", service_answer)
    aws.respond("bedrock-runtime", "Converse", judge_reply)
    aws.respond(
        "bedrock-runtime",
        "InvokeModel",
        lambda p: {
            "body": body({"embedding": [0.1] * 1024, "inputTextTokenCount": 12}),
            "contentType": "application/json",
        },
    )
    out = h.handler(doc_event("codedeploy_lifecycle_hook_invocation"), Ctx())
    assert out["status"] in {"Succeeded", "Failed"}
    made = assert_contract(aws, "pre-traffic hook")
    assert {
        ("lambda", "Invoke"),
        ("bedrock-runtime", "Converse"),
        ("bedrock-runtime", "InvokeModel"),
        ("codedeploy", "PutLifecycleEventHookExecutionStatus"),
    } <= made
    assert {p["Qualifier"] for p in aws.of("lambda", "Invoke")} == {"7"}  # the new version only, never the alias


# ------------------------------------------------------------------------------------------------ SQS workers


def sqs_doc_event_with(bodies: list[str]) -> dict[str, Any]:
    """The Lambda docs' SQS sample event; only each record's ``body`` is replaced by one of our wire records."""
    event = doc_event("sqs_event")
    records = event["Records"]
    event["Records"] = [
        dict(records[i % len(records)], body=b, messageId=f"{records[i % 2]['messageId'][:-2]}{i:02d}")
        for i, b in enumerate(bodies)
    ]
    return event


def test_shadow_worker_with_the_doc_sqs_event(monkeypatch: pytest.MonkeyPatch, aws: AwsRecorder) -> None:
    from handlers import shadow_worker as h

    for k, v in {
        "AWS_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_VERSION": "2",
        "SHADOW_FUNCTION_NAME": "svc",
        "SHADOW_QUALIFIER": "shadow",
        "SHADOW_BUCKET": "evalgate-prod-data",
        "SHADOW_PREFIX": "shadow/",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(h, "_state", {})
    # "Test message." is no shadow record: every record is reported failed (SQS redelivers it, then parks it in
    # the DLQ) -- and nothing was invoked or stored
    sample = doc_event("sqs_event")
    failed = h.handler(sample, Ctx())["batchItemFailures"]
    assert len(failed) == len(sample["Records"])
    assert aws.calls == []
    aws.respond("lambda", "GetAlias", {"Name": "shadow", "FunctionVersion": "8"})
    aws.respond(
        "lambda",
        "Invoke",
        lambda p: {
            "StatusCode": 200,
            "ExecutedVersion": "8",
            "Payload": body(
                {"statusCode": 200, "body": json.dumps({"answer": "Yes, we ship to Canada.", "model_id": HAIKU})}
            ),
        },
    )
    message = json.dumps(
        {
            "request_id": "r-1",
            "request": {"question": "Do you ship to Canada?"},
            "production": {"function_version": "7", "answer": "We ship to Canada."},
        }
    )
    out = h.handler(sqs_doc_event_with([message]), Ctx())
    assert out["batchItemFailures"] == []
    assert assert_contract(aws, "shadow worker") == set(PATHS["shadow worker"].calls) - {("dynamodb", "DeleteItem")}
    (put,) = aws.of("s3", "PutObject")
    assert put["Bucket"] == "evalgate-prod-data" and put["Key"].startswith("shadow/")


def test_online_judge_with_the_doc_sqs_event(monkeypatch: pytest.MonkeyPatch, aws: AwsRecorder) -> None:
    from handlers import online_judge as h

    for k, v in {
        "AWS_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_VERSION": "4",
        "JUDGE_MODEL_ID": HAIKU,
        "CANARY_TOKEN": "CANARY-1",
        "JUDGED_BUCKET": "evalgate-prod-data",
        "JUDGED_PREFIX": "judged/",
        "SERVICE_FUNCTION_NAME": "svc",
        "SERVICE_ALIAS": "live",
        "KNOWN_ERROR_TICKETS": "opscenter",
        "POWERTOOLS_METRICS_NAMESPACE": "EvalGate/Service",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(h, "_state", {})
    aws.respond(
        "lambda",
        "GetAlias",
        {"Name": "live", "FunctionVersion": "7", "RoutingConfig": {"AdditionalVersionWeights": {"8": 0.1}}},
    )
    # the judge finds an unsupported claim: the answer is a hallucination, which opens a known-error ticket
    aws.respond("bedrock-runtime", "Converse", lambda p: judge_reply(p, ("refunds take 5 to 10 business days",)))
    aws.respond("ssm", "DescribeOpsItems", {"OpsItemSummaries": []})
    aws.respond("ssm", "CreateOpsItem", {"OpsItemId": "oi-0123456789ab"})
    # the service's guardrail has a contextual grounding policy: the judge also asks it for its scores
    aws.respond(
        "bedrock-runtime",
        "ApplyGuardrail",
        {
            "usage": {
                "topicPolicyUnits": 0,
                "contentPolicyUnits": 0,
                "wordPolicyUnits": 0,
                "sensitiveInformationPolicyUnits": 0,
                "sensitiveInformationPolicyFreeUnits": 0,
                "contextualGroundingPolicyUnits": 1,
            },
            "action": "NONE",
            "outputs": [],
            "assessments": [
                {
                    "contextualGroundingPolicy": {
                        "filters": [
                            {
                                "type": "GROUNDING",
                                "threshold": 0.75,
                                "score": 0.92,
                                "action": "NONE",
                                "detected": False,
                            },
                            {"type": "RELEVANCE", "threshold": 0.5, "score": 0.97, "action": "NONE", "detected": False},
                        ]
                    }
                }
            ],
        },
    )
    record = json.dumps(
        {
            "schema": 1,
            "request_id": "r-1",
            "ts": 1795449600.0,
            "function_name": "svc",
            "function_version": "8",
            "model_id": SONNET,
            "prompt_version": "support/v1",
            "question": "How long do refunds take?",
            "answer": "5 to 10 business days.",
            "knowledge_ids": ["returns.refund-timing"],
            "latency_ms": 800.0,
            "grounding_guardrail": {"id": "a1b2c3d4e5f6", "version": "3"},
        }
    )
    out = h.handler(sqs_doc_event_with([record]), Ctx())
    assert out["batchItemFailures"] == []
    made = assert_contract(aws, "online judge")
    assert {
        ("bedrock-runtime", "Converse"),
        ("lambda", "GetAlias"),
        ("ssm", "DescribeOpsItems"),
        ("ssm", "CreateOpsItem"),
        ("bedrock-runtime", "ApplyGuardrail"),
    } <= made
    [check] = aws.of("bedrock-runtime", "ApplyGuardrail")
    assert (check["guardrailIdentifier"], check["guardrailVersion"], check["source"]) == ("a1b2c3d4e5f6", "3", "OUTPUT")
    assert [b["text"]["qualifiers"] for b in check["content"]] == [["grounding_source"], ["query"], ["guard_content"]]


# ------------------------------------------------------------------------------------------------ service


def test_service_with_the_doc_http_api_v2_event(monkeypatch: pytest.MonkeyPatch, aws: AwsRecorder) -> None:
    from stacks.feature_flags_model import FeatureFlagsConfig
    from store_assistant import flags
    from store_assistant import handler as h

    for k, v in {
        "AWS_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_VERSION": "7",
        "AWS_LAMBDA_FUNCTION_NAME": "svc",
        "MODEL_ID": SONNET,
        "PROMPT_ID": "support/v1",
        "CANARY_TOKEN": "CANARY-1",
        "CAPTURE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/capture",
        "SHADOW_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/shadow",
        "APPCONFIG_APPLICATION": "evalgate-prod",
        "APPCONFIG_ENVIRONMENT": "Prod",
        "APPCONFIG_PROFILE": "flags",
        "POWERTOOLS_METRICS_NAMESPACE": "EvalGate/Service",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(flags, "DEFAULT_CAPTURE_RATE", 1.0)
    monkeypatch.setattr(h, "_service", None)
    document = FeatureFlagsConfig.default(SONNET, "support/v1").to_document()
    document["capture_sample_rate"]["default"] = 1.0
    aws.respond("appconfigdata", "StartConfigurationSession", {"InitialConfigurationToken": "t0"})
    aws.respond(
        "appconfigdata",
        "GetLatestConfiguration",
        lambda p: {
            "NextPollConfigurationToken": "t1",
            "NextPollIntervalInSeconds": 60,
            "ContentType": "application/json",
            "Configuration": body(document),
        },
    )
    aws.respond("bedrock-runtime", "Converse", judge_reply)
    aws.respond("bedrock-runtime", "ConverseStream", stream_reply)  # whichever of the two the service uses
    aws.respond(
        "sqs",
        "SendMessageBatch",
        lambda p: {
            "Successful": [
                {"Id": e["Id"], "MessageId": f"m-{e['Id']}", "MD5OfMessageBody": "0" * 32} for e in p["Entries"]
            ]
        },
    )
    event = doc_event("http_api_v2_payload")
    assert h.handler(event, Ctx())["statusCode"] == 404  # the sample's /my/path is no route of ours
    # the sample with our route and body: only rawPath, http.path and body change
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/ask"
    event["body"] = json.dumps({"question": "How long do refunds take to show on my card?"})
    response = h.handler(event, Ctx())
    assert response["statusCode"] == 200, response
    assert h.get_service().capture.flush(5)
    made = assert_contract(aws, "service")
    assert ("sqs", "SendMessageBatch") in made
    assert made & {("bedrock-runtime", "Converse"), ("bedrock-runtime", "ConverseStream")}


# ------------------------------------------------------------------------------------------------ pipeline gate


def test_quality_gate_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws: AwsRecorder) -> None:
    import boto3

    from evalgate.ci.gate_step import BASELINE_COMMIT_KEY, BASELINE_KEY, Gate, GateEnv
    from tests.infra.test_gate_step import FakeRunner

    monkeypatch.chdir(tmp_path)
    cfg = GateEnv(
        bucket="evalgate-eval",
        topic_arn="arn:aws:sns:us-east-1:123456789012:evalgate-pipeline-alerts",
        pipeline="evalgate-pipeline",
        stage="QualityGate",
        approval_action="Approve",
        execution_id="12345678-1234-5678-abcd-12345678abcd",
        region=REGION,
        commit="0123456789abcdef",
    )
    objects = {BASELINE_KEY: b'{"run_id": "old"}', BASELINE_COMMIT_KEY: b"abc123"}
    aws.respond("s3", "GetObject", lambda p: {"Body": body(objects[p["Key"]])})
    aws.respond(
        "codepipeline",
        "GetPipelineState",
        {
            "pipelineName": "evalgate-pipeline",
            "stageStates": [
                {
                    "stageName": "QualityGate",
                    "latestExecution": {"pipelineExecutionId": cfg.execution_id, "status": "InProgress"},
                    "actionStates": [
                        {"actionName": "Approve", "latestExecution": {"status": "InProgress", "token": "tok"}}
                    ],
                }
            ],
        },
    )
    aws.respond("events", "PutEvents", {"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]})
    aws.respond("sns", "Publish", {"MessageId": "m-1"})
    clients = [boto3.client(s, region_name=REGION) for s in ("s3", "sns", "codepipeline", "cloudwatch")]
    results = {
        "verdict": {"verdict": "PASS"},
        "usage": {"cost_usd": 0.42},
        "hallucinations": [{"case_id": "c1", "suite": "regression", "claims": ["x"]}],
    }
    for exit_code in (0, 3, 1):
        runner = FakeRunner(tmp_path / "out", exit_code, results)
        gate = Gate(
            cfg,
            *clients,
            runner=runner,
            sleep=lambda _: None,
            out_dir=tmp_path / "out",
            events=boto3.client("events", region_name=REGION),
        )
        gate.run()
    made = assert_contract(aws, "quality gate")
    assert {
        ("s3", "PutObject"),
        ("cloudwatch", "PutMetricData"),
        ("codepipeline", "PutApprovalResult"),
        ("codepipeline", "GetPipelineState"),
    } <= made
    assert [p["result"]["status"] for p in aws.of("codepipeline", "PutApprovalResult")] == ["Approved", "Rejected"]

    aws.calls.clear()
    objects[f"runs/{cfg.execution_id}/results.json"] = b'{"run_id": "new"}'
    Gate(cfg, *clients).promote()
    assert assert_contract(aws, "promote baseline") == set(PATHS["promote baseline"].calls)


def test_the_recorder_rejects_what_the_service_model_rejects(aws: AwsRecorder) -> None:
    import boto3
    from botocore.exceptions import ParamValidationError

    s3 = boto3.client("s3", region_name=REGION)
    with pytest.raises(ParamValidationError):
        s3.put_object(Bucket="b", Key="k", Body=b"x", ContentType=7)  # type: ignore[arg-type]
    with pytest.raises(ParamValidationError):
        boto3.client("codepipeline", region_name=REGION).put_approval_result(
            pipelineName="p", stageName="s", actionName="a", result={"summary": "x", "status": "Approved"}
        )  # no token
    assert len(aws.invalid) == 2 and aws.calls == []


def test_release_tier_evaluation_job_requests(aws_passthrough: AwsRecorder) -> None:
    """The release tier's Bedrock evaluation jobs (run by the gate's CodeBuild role): the requests of a two-job run
    (moto S3, Stubber for the Bedrock control plane) against the bedrock and s3 service models."""
    from tests.integration import test_evaljobs as ej

    config = ej.load_config(ej.ROOT / "golden" / "gate.toml")
    config.evaluation_job.role_arn = ej.ROLE
    config.evaluation_job.s3_uri = f"s3://{ej.BUCKET}/jobs"
    config.evaluation_job.evaluator_model = ej.JUDGE
    config.evaluation_job.max_prompts = 4
    config.thresholds.similarity = None

    def script(stub: Any) -> None:
        ej.stub_job(stub, "evalgate-t1-1", ["InProgress", "Completed"], busy_first=True)
        ej.stub_job(stub, "evalgate-t1-2", ["Completed"])

    _, judge, _, _ = ej.run_with_jobs(config, lambda answer: 0.9, script)
    assert [j["status"] for j in judge.jobs] == ["Completed", "Completed"]
    aws_passthrough.calls = [c for c in aws_passthrough.calls if c.operation != "CreateBucket"]  # test setup
    made = assert_contract(aws_passthrough, "quality gate, release tier")
    assert {
        ("bedrock", "ListEvaluationJobs"),
        ("bedrock", "CreateEvaluationJob"),
        ("bedrock", "GetEvaluationJob"),
        ("s3", "PutObject"),
        ("s3", "GetObject"),
        ("s3", "ListObjectsV2"),
    } <= made


def test_quality_gate_evaluation_run_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws: AwsRecorder
) -> None:
    """What the gate's `evalgate run` sends (as the EvalGate CodeBuild step runs it): the S3 cache pull and push,
    the candidate's and the judge's Converse calls and Titan embeddings."""
    from botocore.exceptions import ClientError

    from evalgate import cli

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_REGION", REGION)

    def no_cache_yet(params: dict[str, Any]) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")

    aws.respond("s3", "HeadObject", no_cache_yet)
    aws.respond("bedrock-runtime", "Converse", judge_reply)
    aws.respond("bedrock-runtime", "ConverseStream", stream_reply)
    aws.respond(
        "bedrock-runtime",
        "InvokeModel",
        lambda p: {
            "body": body({"embedding": [0.1] * 1024, "inputTextTokenCount": 12}),
            "contentType": "application/json",
        },
    )
    # No judge calibration record here: the run goes ahead as REVIEW (never PASS) so its requests can be recorded.
    gate = (root / "golden" / "gate.toml").read_text().replace('on_failure = "error"', 'on_failure = "review"')
    (tmp_path / "gate.toml").write_text(gate)
    code = cli.main(
        [
            "run",
            "--tier",
            "smoke",
            "--golden",
            str(root / "golden"),
            "--config",
            str(tmp_path / "gate.toml"),
            "--candidate",
            "bedrock",
            "--model",
            SONNET,
            "--prompt",
            "support/v1",
            "--judge-model",
            HAIKU,
            "--embedder",
            "titan",
            "--cache",
            str(tmp_path / "cache.sqlite"),
            "--cache-s3",
            "s3://evalgate-eval/cache/evalgate.sqlite",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert code in {0, 1, 3, 4}
    made = assert_contract(aws, "quality gate, evaluation run")
    assert {
        ("s3", "HeadObject"),
        ("s3", "PutObject"),
        ("bedrock-runtime", "Converse"),
        ("bedrock-runtime", "InvokeModel"),
    } <= made
    called = aws.of("bedrock-runtime", "Converse") + aws.of("bedrock-runtime", "ConverseStream")
    assert {p["modelId"] for p in called} == {SONNET, HAIKU}  # the candidate and the judge


def test_known_error_ticket_requests(aws: AwsRecorder) -> None:
    """OpsCenter tickets (``run --tickets opscenter`` in the gate; the online judge on live hallucinations): a new
    finding creates an OpsItem, the same finding again counts on it, open high-stakes tickets are counted."""
    import boto3

    from evalgate.release.tickets import OpsCenterTickets, live_finding

    tickets = OpsCenterTickets(boto3.client("ssm", region_name=REGION))
    finding = live_finding("Are returns free?", "Yes, returns are free forever.", ["returns are free forever"])
    context = {"request_id": "r-1", "function_version": "8", "model_id": SONNET, "prompt_version": "support/v1"}
    aws.respond("ssm", "DescribeOpsItems", {"OpsItemSummaries": []})
    aws.respond("ssm", "CreateOpsItem", {"OpsItemId": "oi-0123456789ab"})
    assert tickets.open(finding, context).created
    aws.respond(
        "ssm",
        "DescribeOpsItems",
        {
            "OpsItemSummaries": [
                {
                    "OpsItemId": "oi-0123456789ab",
                    "OperationalData": {"/evalgate/count": {"Value": "1", "Type": "String"}},
                }
            ]
        },
    )
    again = tickets.open(finding, context)
    assert not again.created and again.count == 2
    assert tickets.open_high_stakes() >= 0
    assert_contract(aws, "quality gate, evaluation run")
    assert_contract(aws, "online judge")
    assert {("ssm", "CreateOpsItem"), ("ssm", "UpdateOpsItem"), ("ssm", "DescribeOpsItems")} <= aws.operations()


def test_history_site_requests(tmp_path: Path, aws: AwsRecorder) -> None:
    """What the gate's `evalgate history --runs s3://<bucket>/runs/ --out s3://<bucket>/history/` sends."""
    from evalgate import cli

    root = Path(__file__).resolve().parents[2]
    assert (
        cli.main(
            [
                "run",
                "--tier",
                "offline",
                "--suite",
                "injection",
                "--golden",
                str(root / "golden"),
                "--candidate",
                f"replay:{root}/golden/responses/baseline.jsonl",
                "--no-cache",
                "--no-progress",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    results = (tmp_path / "run" / "results.json").read_bytes()
    aws.respond(
        "s3", "ListObjectsV2", {"Contents": [{"Key": "runs/exec-1/results.json"}], "IsTruncated": False, "KeyCount": 1}
    )
    aws.respond("s3", "GetObject", lambda p: {"Body": body(json.loads(results))})
    aws.respond("s3", "PutObject", {})
    assert cli.main(["history", "--runs", "s3://evalgate-eval/runs/", "--out", "s3://evalgate-eval/history/"]) == 0
    assert assert_contract(aws, "quality gate, history site") == set(PATHS["quality gate, history site"].calls)
    assert [p["Key"] for p in aws.of("s3", "PutObject")] == ["history/index.html"]
