"""Typed settings: cdk.json works out of the box; a missing or invalid setting stops synth naming the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from stacks.settings import Settings, SettingsError, load_settings

from .conftest import REPO, cdk_context


def settings_with(**overrides: Any) -> Settings:
    ctx = cdk_context(**overrides)
    for key, value in list(ctx.items()):
        if value is None:
            del ctx[key]
    return load_settings(ctx)


def expect_error(key: str, **overrides: Any) -> str:
    with pytest.raises(SettingsError) as info:
        settings_with(**overrides)
    message = str(info.value)
    assert f"- {key}" in message, message
    return message


def test_cdk_json_defaults_are_valid_and_demo_safe() -> None:
    s = settings_with()
    assert s.connection_arn == (
        "arn:aws:codeconnections:us-east-1:111111111111:connection/00000000-0000-0000-0000-000000000000"
    )
    assert s.notification_email.endswith("@example.com")
    assert s.bundle is False and s.deployment_mode == "auto"
    assert s.load_test_rps == pytest.approx(s.peak_rps * 1.5)


def test_cdk_json_runs_the_app_with_python3_and_sets_feature_flags() -> None:
    doc = json.loads((REPO / "cdk.json").read_text())
    assert doc["app"] == "python3 app.py"
    assert doc["context"]["@aws-cdk/aws-codepipeline:defaultPipelineTypeToV2"] is True
    assert sum(1 for k in doc["context"] if k.startswith("@aws-cdk/")) > 50


def test_missing_email_names_the_setting() -> None:
    message = expect_error("notificationEmail", notificationEmail=None)
    assert "missing" in message


@pytest.mark.parametrize(
    "key,value,fragment",
    [
        ("notificationEmail", "ops-at-example.com", "not a valid email"),
        ("connectionArn", "arn:aws:s3:::bucket", "CodeConnections ARN"),
        ("repository", "no-slash", "owner/repo"),
        ("canaryPercent", 0, "greater than or equal to 1"),
        ("canaryPercent", 100, "less than or equal to 99"),
        ("canaryIntervalMinutes", "soon", "valid integer"),
        ("peakRps", -1, "greater than 0"),
        ("monthlyEvalBudgetUsd", 0, "greater than 0"),
        ("generatorModelId", "claude", "Bedrock model id"),
        ("judgeModelId", "", "Bedrock model id"),
        ("guardrailId", "not-an-id", "guardrail id"),
        ("thresholdsFile", "golden/missing.toml", "does not exist"),
        ("thresholdsFile", "../outside.toml", "relative to the repository root"),
        ("promptVersion", "support/v999", "does not exist"),
        ("releaseTagPattern", "v* ; rm -rf", "git ref glob"),
        ("deploymentMode", "yolo", "canary"),
        ("alarmThresholds", {"qualityMin": 2}, "less than or equal to 1"),
        ("sampleGraceSeconds", 601, "less than or equal to 600"),  # the AfterAllowTraffic hook has 15 minutes
        ("sampleGraceSeconds", -1, "greater than or equal to 0"),
    ],
)
def test_invalid_values_name_the_setting(key: str, value: Any, fragment: str) -> None:
    message = expect_error(key, **{key: value})
    assert fragment in message, message


def test_source_needs_a_connection_or_a_codecommit_repository() -> None:
    expect_error("connectionArn", connectionArn=None)
    expect_error("repository", repository=None)
    expect_error("connectionArn/repository", codeCommitRepository="evalgate")
    s = settings_with(connectionArn=None, repository=None, codeCommitRepository="evalgate")
    assert s.uses_codecommit


def test_guardrail_version_needs_an_id() -> None:
    expect_error("guardrailId", guardrailVersion="1")
    assert settings_with(guardrailId="abcdef012345", guardrailConfig=None).guardrail_id == "abcdef012345"


def test_command_line_strings_are_coerced() -> None:
    s = settings_with(
        canaryPercent="15",
        bundle="true",
        changedPaths="stacks/a.py, docs/b.md",
        featureFlags=json.dumps(
            {
                "variants": {
                    "control": {
                        "model_id": "us.anthropic.claude-sonnet-4-20250514-v1:0",
                        "prompt_version": "support/v1",
                    }
                }
            }
        ),
    )
    assert s.canary_percent == 15 and s.bundle is True
    assert s.changed_paths == ["stacks/a.py", "docs/b.md"]
    assert s.flags.default_variant == "control"


def test_app_py_exits_with_the_setting_name() -> None:
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(cdk_context(notificationEmail="nobody"))}
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "notificationEmail: value is not a valid email address" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_canary_that_could_never_collect_enough_samples_stops_synth() -> None:
    message = expect_error("minJudgedSamples", minJudgedSamples=500)
    assert "could never promote" in message
    s = settings_with()
    assert s.expected_canary_judged() >= s.min_judged_samples


def test_an_unknown_or_misspelt_setting_is_an_error_with_the_closest_name() -> None:
    message = expect_error("canaryPrecent", canaryPrecent=25)
    assert "canaryPrecent: unknown setting (did you mean 'canaryPercent'?)" in message
    message = expect_error("zzTop", zzTop="x", canaryPercent=0)  # reported together with invalid values
    assert "zzTop: unknown setting" in message and "canaryPercent" in message
    message = expect_error("alarmThresholds.qualityMn", alarmThresholds={"qualityMn": 0.5})
    assert "alarmThresholds.qualityMn: unknown key (did you mean 'qualityMin'?)" in message
    # the CDK's own keys (feature flags, CLI and lookup keys) are not settings and pass
    assert settings_with(**{"@aws-cdk/core:newFlag": True, "aws:cdk:version-reporting": False}).canary_percent == 10


def test_synth_reads_the_whole_context_so_a_typo_stops_it(tmp_path: Any) -> None:
    from aws_cdk import App

    from stacks.application import build

    app = App(context=cdk_context(canaryPrecent=25), outdir=str(tmp_path))
    with pytest.raises(SettingsError, match="did you mean 'canaryPercent'"):
        build(app, nag=False)


def test_a_canary_under_which_a_rule_could_never_fire_stops_synth() -> None:
    # 4 minutes: the live verdict (3 minutes before the shift) would see 1 period; 5-min x 2 alarms need 10 min
    message = expect_error("canaryIntervalMinutes", canaryIntervalMinutes=4, minJudgedSamples=5)
    assert "leaving 1 one-minute periods" in message
    assert "the rollback alarms could never fire during it" in message
    assert "evalgate canary-power" in message


HAIKU_35 = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


def test_latency_slo_is_on_time_to_first_token_with_a_total_time_tolerance() -> None:
    s = settings_with()
    assert (s.ttft_slo_ms, s.total_regression_ms, s.total_regression_pct) == (2000, 250, 10.0)
    budget = s.latency_budget
    assert budget.ttft_slo_ms == 2000 and budget.total_limit_ms(4000.0) == 4250.0  # +250 ms < +10%
    assert budget.total_limit_ms(1000.0) == 1100.0  # +10% < +250 ms
    expect_error("ttftSloMs", ttftSloMs=0)
    expect_error("totalRegressionPct", totalRegressionPct=-5)


def test_the_retired_whole_answer_slo_is_refused_with_what_replaced_it() -> None:
    message = expect_error("latencySloMs", latencySloMs=450)
    assert "replaced by ttftSloMs" in message and "totalRegressionMs" in message


def test_an_slo_below_the_models_published_time_to_first_token_stops_synth() -> None:
    """Claude 3.5 Haiku's published median TTFT on Bedrock is 810 ms (bench/README.md): a p95 of 500 ms is
    impossible, whether Haiku is the generator or a model a flag variant may route to."""
    flags = {"variants": {"control": {"model_id": HAIKU_35, "prompt_version": "support/v1"}}}
    message = expect_error("ttftSloMs", generatorModelId=HAIKU_35, featureFlags=flags, ttftSloMs=500)
    assert "below the published median time to first token" in message and "810 ms" in message
    assert settings_with(generatorModelId=HAIKU_35, featureFlags=flags, ttftSloMs=900).ttft_slo_ms == 900
    extra = {**json.loads(json.dumps(cdk_context()["featureFlags"])), "extra_model_ids": [HAIKU_35]}
    expect_error("ttftSloMs", featureFlags=extra, ttftSloMs=500)


def test_app_py_refuses_an_unattainable_slo_without_lambdas_on_the_path() -> None:
    """The settings read the TTFT table from lambdas/evalgate/core/latency.py even when `cdk synth` runs app.py bare."""
    flags = {"variants": {"control": {"model_id": HAIKU_35, "prompt_version": "support/v1"}}}
    ctx = cdk_context(generatorModelId=HAIKU_35, featureFlags=flags, ttftSloMs=300)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO,
        env={**env, "CDK_CONTEXT_JSON": json.dumps(ctx)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "ttftSloMs: 300 ms is below the published median time to first token" in result.stderr
    assert "Traceback" not in result.stderr
