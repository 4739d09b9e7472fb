"""The AppConfig flag document is built in Python and validated at synth; invalid content stops synth."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_cloudwatch as cw

from stacks.constructs.feature_flags import FeatureFlags, FeatureFlagsProps
from stacks.feature_flags_model import COHORT_KEY, FeatureFlagsConfig, FlagContentError, validate_document
from stacks.settings import SettingsError

from .test_settings import expect_error, settings_with

SONNET = "us.anthropic.claude-sonnet-4-20250514-v1:0"
HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


def flags(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "default_variant": "control",
        "variants": {
            "control": {"model_id": SONNET, "prompt_version": "support/v1"},
            "candidate": {"model_id": HAIKU, "prompt_version": "support/v1"},
        },
        "cohorts": [{"variant": "candidate", "start": 0, "end": 9}],
        "shadow": {"enabled": True, "sample_rate": 0.05},
        "capture": {"sample_rate": 0.2},
        "extra_model_ids": [HAIKU],
    }
    doc.update(overrides)
    return doc


def test_cohorts_render_as_sticky_modulo_range_rules() -> None:
    doc = FeatureFlagsConfig.model_validate(flags()).to_document()
    rule = doc["variant"]["rules"]["candidate cohorts 0-9"]
    assert rule["when_match"] == "candidate"
    assert rule["conditions"] == [
        {"action": "MODULO_RANGE", "key": COHORT_KEY, "value": {"BASE": 100, "START": 0, "END": 9}}
    ]
    assert doc["variants"]["default"]["candidate"] == {"model_id": HAIKU, "prompt_id": "support/v1"}
    assert doc["shadow"] == {"default": True}
    assert doc["capture_sample_rate"] == {"default": 0.2, "boolean_type": False}
    validate_document(doc)  # the runtime's own validator accepts it


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        (
            {
                "cohorts": [
                    {"variant": "candidate", "start": 0, "end": 9},
                    {"variant": "control", "start": 5, "end": 20},
                ]
            },
            "overlaps",
        ),
        ({"cohorts": [{"variant": "ghost", "start": 0, "end": 9}]}, "not one of the variants"),
        ({"cohorts": [{"variant": "candidate", "start": 9, "end": 0}]}, "must not be greater"),
        ({"cohorts": [{"variant": "candidate", "start": 0, "end": 100}]}, "less than or equal to 99"),
        ({"default_variant": "ghost"}, "default_variant"),
        ({"shadow": {"enabled": True, "sample_rate": 1.5}}, "less than or equal to 1"),
        ({"capture": {"sample_rate": -0.1}}, "greater than or equal to 0"),
        (
            {"variants": {"Bad Name": {"model_id": SONNET, "prompt_version": "support/v1"}}, "cohorts": []},
            "variant name",
        ),
        ({"unknown": 1}, "featureFlags.unknown: unknown key"),
    ],
)
def test_invalid_flag_settings_stop_synth(overrides: dict[str, Any], fragment: str) -> None:
    message = expect_error("featureFlags", featureFlags=flags(**overrides))
    assert fragment in message, message


def test_variant_models_must_be_invokable_by_the_service() -> None:
    message = expect_error("featureFlags.variants.candidate.model_id", featureFlags=flags(extra_model_ids=[]))
    assert "could not invoke" in message
    s = settings_with(featureFlags=flags())
    assert HAIKU in s.service_model_ids


def test_variant_prompts_must_be_bundled() -> None:
    bad = flags()
    bad["variants"]["candidate"]["prompt_version"] = "support/v42"
    expect_error("featureFlags.variants.candidate.prompt_version", featureFlags=bad)


def test_the_runtime_validator_rejects_a_broken_document() -> None:
    with pytest.raises(FlagContentError, match="featureFlags"):
        validate_document({"variant": {"default": "control"}})


def test_the_construct_refuses_invalid_content_at_synth() -> None:
    """Even content that bypassed the settings model (model_construct) cannot reach AppConfig."""
    stack = Stack(App(), "FlagsProbe")
    alarm = cw.Alarm(
        stack, "Alarm", metric=cw.Metric(namespace="X", metric_name="Y"), threshold=1, evaluation_periods=1
    )
    broken = FeatureFlagsConfig.model_construct(
        default_variant="ghost",
        variants={},
        cohorts=[],
        shadow=FeatureFlagsConfig.model_fields["shadow"].default_factory(),
        capture=FeatureFlagsConfig.model_fields["capture"].default_factory(),  # type: ignore[misc]
        extra_model_ids=[],
    )
    with pytest.raises(FlagContentError):
        FeatureFlags(
            stack,
            "Flags",
            FeatureFlagsProps(
                application_name="probe",
                environment_name="Test",
                flags=broken,
                monitors=[alarm],
                deployment_minutes=1,
                bake_minutes=1,
            ),
        )


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_a_candidate_prompt_variant_for_ten_percent_of_users() -> None:
    """The documented rollout: 10 % of users get support/v2-concise, everyone else the deployed prompt."""
    doc = flags()
    doc["variants"]["candidate"] = {"model_id": SONNET, "prompt_version": "support/v2-concise"}
    doc["extra_model_ids"] = []
    s = settings_with(featureFlags=doc)
    rendered = s.flags.to_document()
    assert rendered["variants"]["default"]["candidate"]["prompt_id"] == "support/v2-concise"
    assert settings_with(promptVersion="support/v2-concise").prompt_version == "support/v2-concise"
