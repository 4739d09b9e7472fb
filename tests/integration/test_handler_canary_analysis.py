"""AfterAllowTraffic canary analysis in-process: moto CloudWatch metrics per version, CodeDeploy via Stubber."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from evalgate.release.deploy_hooks import CodeDeployReporter
from tests.fakes.aws_lambda import context_factory
from tests.fakes.idempotency import create_idempotency_table, records

DEPLOYMENT = "d-9QK3M2ZP7"
EXECUTION = "eyJkZXBsb3ltZW50SWQiOiJkLTlRSzNNMlpQNyJ9EXAMPLE"
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
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


Ctx = context_factory("support-canary-analysis", remaining_ms=120_000, memory_mb=512)


def codedeploy(status: str | None, with_appspec: bool = True) -> tuple[CodeDeployReporter, Stubber]:
    client = boto3.client("codedeploy", region_name="us-east-1")
    stub = Stubber(client)
    if with_appspec:
        stub.add_response(
            "get_deployment",
            {
                "deploymentInfo": {
                    "applicationName": "support-service-app",
                    "deploymentGroupName": "support-service-dg",
                    "deploymentId": DEPLOYMENT,
                    "status": "InProgress",
                    "computePlatform": "Lambda",
                    "revision": {
                        "revisionType": "AppSpecContent",
                        "appSpecContent": {"content": APPSPEC, "sha256": "0" * 64},
                    },
                }
            },
            {"deploymentId": DEPLOYMENT},
        )
    if status is not None:
        stub.add_response(
            "put_lifecycle_event_hook_execution_status",
            {"lifecycleEventHookExecutionId": EXECUTION},
            {"deploymentId": DEPLOYMENT, "lifecycleEventHookExecutionId": EXECUTION, "status": status},
        )
    stub.activate()
    return CodeDeployReporter(client), stub


def put_arm(
    cw: Any,
    version: str,
    *,
    quality: float,
    hall_rate: float,
    latency: float,
    error_rate: float,
    minutes: int = 12,
    judged_per_min: int = 8,
    requests_per_min: int = 20,
    seed: int = 0,
) -> None:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    dims = [{"Name": "FunctionVersion", "Value": version}]
    for m in range(1, minutes + 1):
        ts = now - timedelta(minutes=m)
        data: list[dict[str, Any]] = []
        for _ in range(judged_per_min):
            data += [
                {"MetricName": "QualityScore", "Value": min(1.0, max(0.0, quality + rng.uniform(-0.05, 0.05)))},
                {"MetricName": "JudgedCount", "Value": 1.0},
                {"MetricName": "Unscored", "Value": 0.0},
                {"MetricName": "Hallucination", "Value": 1.0 if rng.random() < hall_rate else 0.0},
            ]
        for _ in range(requests_per_min):
            data += [
                {"MetricName": "Latency", "Value": latency * rng.uniform(0.9, 1.1)},
                {"MetricName": "Errors", "Value": 1.0 if rng.random() < error_rate else 0.0},
            ]
        for i in range(0, len(data), 500):
            cw.put_metric_data(
                Namespace="EvalGate/Service",
                MetricData=[{**d, "Dimensions": dims, "Timestamp": ts} for d in data[i : i + 500]],
            )


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for k, v in {
        "AWS_LAMBDA_FUNCTION_VERSION": "3",
        "TARGET_FUNCTION_NAME": "support-service",
        "TARGET_VERSION": "7",
        "POWERTOOLS_METRICS_NAMESPACE": "EvalGate/Service",
        "BAKE_MINUTES": "15",
        "MIN_SAMPLES": "30",
        "POWERTOOLS_SERVICE_NAME": "canary-analysis",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("BASELINE_VERSION", raising=False)
    with mock_aws():
        from handlers import canary_analysis as h

        ddb = create_idempotency_table(monkeypatch)
        yield {"h": h, "cw": boto3.client("cloudwatch", region_name="us-east-1"), "ddb": ddb}


def event() -> dict[str, str]:
    return {"DeploymentId": DEPLOYMENT, "LifecycleEventHookExecutionId": EXECUTION}


def test_healthy_canary_succeeds_with_versions_from_the_appspec(
    world: dict[str, Any], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_arm(world["cw"], "6", quality=0.86, hall_rate=0.02, latency=900, error_rate=0.005, seed=1)
    put_arm(world["cw"], "7", quality=0.87, hall_rate=0.02, latency=880, error_rate=0.005, seed=2)
    reporter, stub = codedeploy("Succeeded")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(event(), Ctx())
    assert out["status"] == "Succeeded", out
    assert "version 7 vs 6" in out["reason"]
    stub.assert_no_pending_responses()
    emf = next(json.loads(x) for x in capsys.readouterr().out.splitlines() if '"CanaryScore"' in x and '"_aws"' in x)
    assert emf["CanaryPassed"] == [1.0] and emf["CanaryScore"] == [100.0] and emf["FunctionVersion"] == "3"


def test_quality_regression_fails_and_says_why(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    put_arm(world["cw"], "6", quality=0.86, hall_rate=0.02, latency=900, error_rate=0.005, seed=1)
    put_arm(world["cw"], "7", quality=0.62, hall_rate=0.02, latency=900, error_rate=0.005, seed=2)
    reporter, stub = codedeploy("Failed")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(event(), Ctx())
    assert out["status"] == "Failed"
    assert "QualityScore (critical): worse beyond tolerance" in out["reason"]
    stub.assert_no_pending_responses()


def test_total_time_over_the_tolerance_against_the_previous_version_rolls_back(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Latency per version is the total answer time; +250 ms or +10% (the stack's TOTAL_REGRESSION_* settings)
    makes it a rule that fails the deployment, where without them a slower canary only loses score."""
    put_arm(world["cw"], "6", quality=0.86, hall_rate=0.02, latency=900, error_rate=0.005, seed=1)
    put_arm(world["cw"], "7", quality=0.86, hall_rate=0.02, latency=1150, error_rate=0.005, seed=2)
    monkeypatch.setenv("TOTAL_REGRESSION_MS", "250")
    monkeypatch.setenv("TOTAL_REGRESSION_PCT", "10")
    reporter, stub = codedeploy("Failed")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(event(), Ctx())
    assert out["status"] == "Failed" and "Latency (critical): worse beyond tolerance" in out["reason"], out
    stub.assert_no_pending_responses()


def test_no_judged_samples_fails_closed(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    put_arm(world["cw"], "6", quality=0.86, hall_rate=0.02, latency=900, error_rate=0.005, seed=1)
    reporter, stub = codedeploy("Failed")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(event(), Ctx())
    assert out["status"] == "Failed" and "insufficient data" in out["reason"] and "fail closed" in out["reason"]
    stub.assert_no_pending_responses()


def test_baseline_from_environment_skips_the_appspec(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASELINE_VERSION", "5")
    put_arm(world["cw"], "5", quality=0.86, hall_rate=0.0, latency=900, error_rate=0.0, seed=3)
    put_arm(world["cw"], "7", quality=0.86, hall_rate=0.0, latency=900, error_rate=0.0, seed=4)
    reporter, stub = codedeploy("Succeeded", with_appspec=False)
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(event(), Ctx())
    assert out["status"] == "Succeeded" and "vs 5" in out["reason"]
    stub.assert_no_pending_responses()


def test_cloudwatch_failure_reports_failed(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    reporter, stub = codedeploy("Failed")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    from botocore.exceptions import ClientError

    from evalgate.release.canary_samples import CloudWatchSamples

    def denied(self: Any, *a: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "not authorized to GetMetricData"}}, "GetMetricData"
        )

    monkeypatch.setattr(CloudWatchSamples, "fetch", denied)
    out = world["h"].handler(event(), Ctx())
    assert out["status"] == "Failed" and "the check raised" in out["reason"]
    stub.assert_no_pending_responses()


def test_time_budget_running_out_reports_failed(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from evalgate.release import deploy_hooks

    reporter, stub = codedeploy("Failed", with_appspec=False)
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    monkeypatch.setattr(deploy_hooks, "canary_analysis", lambda *a, **k: time.sleep(3))
    out = world["h"].handler(event(), Ctx(remaining_ms=11_000))
    assert out["status"] == "Failed" and "time budget" in out["reason"]
    stub.assert_no_pending_responses()


@pytest.mark.parametrize("bad", [{}, {"LifecycleEventHookExecutionId": "x"}, None, "x"])
def test_malformed_event_is_a_clear_error(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, bad: Any) -> None:
    reporter, _stub = codedeploy(None, with_appspec=False)
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(bad, Ctx())
    assert out["status"] == "error" and "CodeDeploy lifecycle hook event" in out["error"]


def test_invalid_bake_minutes_fails_closed(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAKE_MINUTES", "soon")
    reporter, stub = codedeploy("Failed", with_appspec=False)
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(event(), Ctx())
    stub.assert_no_pending_responses()
    assert out["status"] == "Failed" and "BAKE_MINUTES" in out["reason"]


@pytest.mark.parametrize(
    ("state", "expected"), [("ALARM", "Failed"), ("INSUFFICIENT_DATA", "Failed"), ("OK", "Succeeded")]
)
def test_min_sample_alarm_must_be_ok_to_promote(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, state: str, expected: str
) -> None:
    cw = world["cw"]
    cw.put_metric_alarm(
        AlarmName="evalgate-judged-count-low",
        Namespace="EvalGate/Service",
        MetricName="JudgedCount",
        Dimensions=[{"Name": "FunctionVersion", "Value": "7"}],
        Statistic="Sum",
        Period=300,
        EvaluationPeriods=1,
        Threshold=30,
        ComparisonOperator="LessThanThreshold",
        TreatMissingData="breaching",
    )
    monkeypatch.setenv("MIN_SAMPLES_ALARM", "evalgate-judged-count-low")
    put_arm(cw, "6", quality=0.86, hall_rate=0.02, latency=900, error_rate=0.005, seed=1)
    put_arm(cw, "7", quality=0.87, hall_rate=0.02, latency=880, error_rate=0.005, seed=2)
    # moto does not evaluate alarms the way CloudWatch does: set the state the real alarm would be in
    cw.set_alarm_state(AlarmName="evalgate-judged-count-low", StateValue=state, StateReason="test")
    reporter, stub = codedeploy(expected)
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(event(), Ctx())
    assert out["status"] == expected, out
    stub.assert_no_pending_responses()
    if expected == "Failed":
        assert f"minimum-sample alarm evalgate-judged-count-low is {state}" in out["reason"]


def test_redelivered_invocation_reports_the_stored_outcome_and_already_completed_is_done(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    put_arm(world["cw"], "6", quality=0.86, hall_rate=0.02, latency=900, error_rate=0.005, seed=1)
    put_arm(world["cw"], "7", quality=0.87, hall_rate=0.02, latency=880, error_rate=0.005, seed=2)
    reporter, stub = codedeploy("Succeeded")  # one GetDeployment only: a second analysis would fail the stub
    stub.add_client_error(
        "put_lifecycle_event_hook_execution_status",
        service_error_code="LifecycleEventAlreadyCompletedException",
        service_message="The lifecycle event is already completed.",
        expected_params={"deploymentId": DEPLOYMENT, "lifecycleEventHookExecutionId": EXECUTION, "status": "Succeeded"},
    )
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    first = world["h"].handler(event(), Ctx())
    second = world["h"].handler(event(), Ctx())
    assert first["status"] == second["status"] == "Succeeded" and first["reason"] == second["reason"]
    stub.assert_no_pending_responses()
    assert len(records(world["ddb"])) == 1 and records(world["ddb"])[0]["status"]["S"] == "COMPLETED"
