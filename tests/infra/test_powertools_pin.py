"""The Powertools that runs on Lambda is the Powertools the tests run against: one pin, one layer, one order.

``requirements.txt`` pins ``aws-lambda-powertools==X`` (the venv that CI builds installs it); every function's
Powertools layer is resolved from AWS's published parameter for exactly X; the deps layer comes after it, so the
pinned dependencies win in ``/opt/python``.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from stacks.constructs.lambda_bundle import LAYER_ORDER, powertools_parameter, powertools_version

from .conftest import PIPELINE, PROD, REPO, STAGING, Synth


def test_ci_runs_the_handler_tests_against_the_pinned_powertools() -> None:
    pin = powertools_version()
    assert version("aws-lambda-powertools") == pin, (
        "the venv's Powertools is not the version requirements.txt pins (and the Lambda layer provides)"
    )
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"aws-lambda-powertools=={pin}" in [d.replace(" ", "") for d in deps]


def test_the_powertools_pin_is_exact(tmp_path: Path) -> None:
    loose = tmp_path / "requirements.txt"
    loose.write_text("boto3>=1.35\naws-lambda-powertools>=3.0\n")
    with pytest.raises(ValueError, match="pinned exactly"):
        powertools_version(loose)
    loose.write_text("boto3>=1.35\n")
    with pytest.raises(ValueError, match="no aws-lambda-powertools"):
        powertools_version(loose)
    loose.write_text("aws-lambda-powertools[tracer] == 3.25.1  # layer\n")
    assert powertools_version(loose) == "3.25.1"


@pytest.mark.parametrize("stack", [PIPELINE, STAGING, PROD])
def test_every_function_runs_the_pinned_layer_first_and_the_deps_layer_last(synth: Synth, stack: str) -> None:
    template = synth.templates[stack]
    functions = {
        k: v for k, v in synth.resources(stack, "AWS::Lambda::Function").items() if "Layers" in v["Properties"]
    }
    assert functions
    assert LAYER_ORDER == ("powertools", "deps")
    for logical_id, fn in functions.items():
        powertools, deps = fn["Properties"]["Layers"]
        parameter = template["Parameters"][powertools["Ref"]]
        assert parameter == {
            "Type": "AWS::SSM::Parameter::Value<String>",
            "Default": powertools_parameter(powertools_version()),
        }, logical_id
        installed = version("aws-lambda-powertools")
        assert parameter["Default"] == f"/aws/service/powertools/python/arm64/python3.13/{installed}"
        assert template["Resources"][deps["Ref"]]["Type"] == "AWS::Lambda::LayerVersion", logical_id


def test_the_deps_layer_does_not_ship_a_second_powertools() -> None:
    lines = [ln.split("#", 1)[0].strip().lower() for ln in (REPO / "requirements-lambda.txt").read_text().splitlines()]
    assert not [ln for ln in lines if ln.startswith(("aws-lambda-powertools", "aws_lambda_powertools"))]


def test_a_powertools_upgrade_publishes_a_new_service_version(synth: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    """The layer is part of what the service version is: a new pin must go through the canary, not slip in."""
    from aws_cdk import App

    from stacks.constructs import lambda_bundle
    from stacks.service_stack import ServiceStack, ServiceStackProps

    def version_id(pin: str) -> str:
        monkeypatch.setattr(lambda_bundle, "powertools_version", lambda: pin)
        stack = ServiceStack(
            App(context={"aws:cdk:bundling-stacks": []}),
            "Probe",
            ServiceStackProps(settings=synth.built.settings, stage_name="Prod", deployment_mode="canary"),
        )
        template = App.of(stack).synth().get_stack_by_name(stack.stack_name).template  # type: ignore[union-attr]
        (logical_id,) = [k for k, v in template["Resources"].items() if v["Type"] == "AWS::Lambda::Version"]
        return str(logical_id)

    assert version_id("3.36.0") != version_id("3.37.0")
