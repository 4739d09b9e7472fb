"""The notifier's EventBridge rules, as synthesized, match AWS's own sample events (so each rule can fire), and
do not match the events they must ignore. Matching is moto's implementation of EventBridge event patterns
(``moto.events.models.EventPattern``, what its rules and TestEventPattern use)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.events.models import EventPattern

from tests.infra.conftest import PIPELINE, PROD, Synth

from .conftest import doc_event


def _resolve(node: Any, names: dict[str, str]) -> Any:
    """The rule pattern with the template's Refs replaced by the physical names they stand for."""
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return names[node["Ref"]]
        return {k: _resolve(v, names) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, names) for v in node]
    return node


def _rule(synth: Synth, stack: str, source: str, names: dict[str, str] | None = None) -> dict[str, Any]:
    (rule,) = [
        r["Properties"]["EventPattern"]
        for r in synth.resources(stack, "AWS::Events::Rule").values()
        if r["Properties"].get("EventPattern", {}).get("source") == [source]
    ]  # not the schedule rules
    return dict(_resolve(rule, names or {}))


def _matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    return bool(EventPattern.load(json.dumps(pattern)).matches_event(event))


def test_flags_rolled_back_rule_fires_on_the_extensions_rollback_event(synth: Synth) -> None:
    pattern = _rule(synth, PROD, "aws.appconfig")
    complete = doc_event("appconfig_eventbridge_deployment_complete")
    assert not _matches(pattern, complete)  # a completed rollout is no rollback
    rollback = dict(complete, **{"detail-type": "On Deployment Rollback"})
    assert _matches(pattern, rollback)


def test_deployment_failed_rule_fires_on_a_failed_codedeploy_deployment(synth: Synth) -> None:
    resources = synth.templates[PROD]["Resources"]
    app = next(k for k, v in resources.items() if v["Type"] == "AWS::CodeDeploy::Application")
    group = next(k for k, v in resources.items() if v["Type"] == "AWS::CodeDeploy::DeploymentGroup")
    pattern = _rule(synth, PROD, "aws.codedeploy", {app: "myApplication", group: "myDeploymentGroup"})
    event = doc_event("codedeploy_deployment_state_change")
    assert not _matches(pattern, event)  # the sample is a SUCCESS
    for state in ("FAILURE", "STOP"):
        assert _matches(pattern, dict(event, detail=dict(event["detail"], state=state))), state
    other = dict(event, detail=dict(event["detail"], state="FAILURE", deploymentGroup="someone-elses-group"))
    assert not _matches(pattern, other)


@pytest.mark.parametrize("pipeline", ["evalgate-pipeline", "myPipeline"])
def test_pipeline_failed_rule_fires_only_for_this_pipeline(synth: Synth, pipeline: str) -> None:
    pattern = _rule(synth, PIPELINE, "aws.codepipeline")
    event = doc_event("codepipeline_pipeline_execution_failed")
    event["detail"]["pipeline"] = pipeline
    assert _matches(pattern, event) is (pipeline == "evalgate-pipeline")
