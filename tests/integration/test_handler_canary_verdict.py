"""Live canary verdict during the canary step: moto CloudWatch metrics per version, CodeDeploy via Stubber."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.fakes.aws_lambda import context_factory
from tests.integration.test_handler_canary_analysis import APPSPEC, DEPLOYMENT, put_arm

Ctx = context_factory("support-canary-verdict", remaining_ms=60_000, memory_mb=512)
APP, GROUP = "support-service-app", "support-service-dg"


def codedeploy(shift_started: datetime | None, *, deployments: int = 1) -> tuple[Any, Stubber]:
    client = boto3.client("codedeploy", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response(
        "list_deployment_groups", {"applicationName": APP, "deploymentGroups": [GROUP]}, {"applicationName": APP}
    )
    stub.add_response(
        "list_deployments",
        {"deployments": [DEPLOYMENT] * deployments},
        {"applicationName": APP, "deploymentGroupName": GROUP, "includeOnlyStatuses": ["InProgress"]},
    )
    if deployments:
        stub.add_response(
            "get_deployment",
            {
                "deploymentInfo": {
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
        stub.add_response("list_deployment_targets", {"targetIds": ["support-service"]}, {"deploymentId": DEPLOYMENT})
        events: list[dict[str, Any]] = [{"lifecycleEventName": "BeforeAllowTraffic", "status": "Succeeded"}]
        if shift_started is not None:
            events.append({"lifecycleEventName": "AllowTraffic", "status": "InProgress", "startTime": shift_started})
        stub.add_response(
            "get_deployment_target",
            {
                "deploymentTarget": {
                    "deploymentTargetType": "LambdaTarget",
                    "lambdaTarget": {
                        "deploymentId": DEPLOYMENT,
                        "targetId": "support-service",
                        "lifecycleEvents": events,
                    },
                }
            },
            {"deploymentId": DEPLOYMENT, "targetId": "support-service"},
        )
    stub.activate()
    return client, stub


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for k, v in {
        "CODEDEPLOY_APPLICATION": APP,
        "CANARY_INTERVAL_MINUTES": "10",
        "MIN_SAMPLES": "20",
        "POWERTOOLS_METRICS_NAMESPACE": "EvalGate/Service",
        "POWERTOOLS_SERVICE_NAME": "canary-verdict",
    }.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        from handlers import canary_verdict as h

        yield {"h": h, "cw": boto3.client("cloudwatch", region_name="us-east-1")}


def run(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: Any, started: datetime | None, deployments: int = 1
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    client, stub = codedeploy(started, deployments=deployments)
    monkeypatch.setattr(world["h"], "_codedeploy", client)
    out = world["h"].handler({"source": "aws.events", "detail-type": "Scheduled Event"}, Ctx())
    stub.assert_no_pending_responses()
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"CanaryVerdict"' in x and '"_aws"' in x]
    return out, emf


def ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


def test_no_deployment_in_progress_publishes_nothing(world: dict[str, Any], monkeypatch: Any, capsys: Any) -> None:
    out, emf = run(world, monkeypatch, capsys, None, deployments=0)
    assert out == {"verdicts": []} and emf == []


def test_before_the_shift_the_verdict_is_pending(world: dict[str, Any], monkeypatch: Any, capsys: Any) -> None:
    out, emf = run(world, monkeypatch, capsys, None)
    assert out["verdicts"][0]["phase"] == "before-traffic" and out["verdicts"][0]["verdict"] == 0
    assert emf[0]["CanaryVerdict"] == [0.0] and emf[0]["FunctionVersion"] == "7"


def test_healthy_canary_passes_at_the_final_look(world: dict[str, Any], monkeypatch: Any, capsys: Any) -> None:
    put_arm(world["cw"], "6", quality=0.86, hall_rate=0.02, latency=900, error_rate=0.005, seed=1)
    put_arm(world["cw"], "7", quality=0.87, hall_rate=0.02, latency=880, error_rate=0.005, seed=2)
    out, emf = run(world, monkeypatch, capsys, ago(8.5))  # deadline (7 min after the shift) has passed
    v = out["verdicts"][0]
    assert (v["phase"], v["verdict"], v["version"]) == ("final", 0, "7"), v
    assert emf[0]["CanaryVerdict"] == [0.0] and emf[0]["FunctionVersion"] == "7"


def test_too_few_judged_answers_by_the_end_of_the_step_fails_closed(
    world: dict[str, Any], monkeypatch: Any, capsys: Any
) -> None:
    put_arm(world["cw"], "6", quality=0.86, hall_rate=0.02, latency=900, error_rate=0.005, seed=1)
    put_arm(world["cw"], "7", quality=0.86, hall_rate=0.02, latency=900, error_rate=0.005, judged_per_min=1, seed=2)
    out, emf = run(world, monkeypatch, capsys, ago(8.5))
    v = out["verdicts"][0]
    assert v["phase"] == "final" and v["verdict"] == 1
    assert "canary failed before promotion" in v["reason"] and "(< 20)" in v["reason"]
    assert emf[0]["CanaryVerdict"] == [1.0]


def test_too_few_answers_early_in_the_step_is_not_yet_a_failure(
    world: dict[str, Any], monkeypatch: Any, capsys: Any
) -> None:
    put_arm(world["cw"], "6", quality=0.86, hall_rate=0.02, latency=900, error_rate=0.005, minutes=3, seed=1)
    put_arm(world["cw"], "7", quality=0.86, hall_rate=0.02, latency=900, error_rate=0.005, minutes=3, seed=2)
    out, _ = run(world, monkeypatch, capsys, ago(3.5))
    v = out["verdicts"][0]
    assert (v["phase"], v["verdict"]) == ("interim", 0) and "final verdict in 4 min" in v["reason"]


def test_an_obvious_regression_stops_the_canary_at_an_interim_look(
    world: dict[str, Any], monkeypatch: Any, capsys: Any
) -> None:
    put_arm(world["cw"], "6", quality=0.86, hall_rate=0.02, latency=900, error_rate=0.005, minutes=4, seed=1)
    put_arm(world["cw"], "7", quality=0.86, hall_rate=0.02, latency=900, error_rate=0.5, minutes=4, seed=2)
    out, emf = run(world, monkeypatch, capsys, ago(4.5))
    v = out["verdicts"][0]
    assert (v["phase"], v["verdict"]) == ("interim", 1) and "ErrorRate" in v["reason"] and "alpha 0.001" in v["reason"]
    assert emf[0]["CanaryVerdict"] == [1.0]


def test_unreadable_metrics_fail_closed(world: dict[str, Any], monkeypatch: Any, capsys: Any) -> None:
    from botocore.exceptions import ClientError

    from evalgate.release.canary_samples import CloudWatchSamples

    def denied(self: Any, *a: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetMetricData")

    monkeypatch.setattr(CloudWatchSamples, "fetch", denied)
    client, stub = codedeploy(ago(5))
    stub.add_response(  # the fail-closed path reads the AppSpec again to name the version
        "get_deployment",
        {
            "deploymentInfo": {
                "deploymentId": DEPLOYMENT,
                "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": APPSPEC}},
            }
        },
        {"deploymentId": DEPLOYMENT},
    )
    monkeypatch.setattr(world["h"], "_codedeploy", client)
    out = world["h"].handler({}, Ctx())
    v = out["verdicts"][0]
    assert v["verdict"] == 1 and "could not judge the canary (ClientError" in v["reason"] and v["version"] == "7"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({}, "CODEDEPLOY_APPLICATION must be set"),
        ({"CODEDEPLOY_APPLICATION": "a", "CANARY_INTERVAL_MINUTES": "ten"}, "CANARY_INTERVAL_MINUTES='ten' must be"),
        ({"CODEDEPLOY_APPLICATION": "a", "CANARY_INTERVAL_MINUTES": "3"}, "VERDICT_LEAD_MINUTES=3 must be below"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], fragment: str) -> None:
    from evalgate.core.errors import InputError
    from evalgate.release.canary_live import LiveSettings

    with pytest.raises(InputError, match=fragment):
        LiveSettings.from_env(env)
