"""The guardrail as code in the templates: provisioned, versioned by its content, wired to the service, gated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import PIPELINE, PROD, REPO, STAGING, Synth, as_list, statements

SERVICE_STACKS = [STAGING, PROD]


def spec() -> Any:
    from stacks.settings import load_guardrail

    return load_guardrail("guardrails/store-assistant.toml")


def one(synth: Synth, stack: str, type_: str) -> tuple[str, dict[str, Any]]:
    found = synth.resources(stack, type_)
    assert len(found) == 1, found
    return next(iter(found.items()))


@pytest.mark.parametrize("stack", SERVICE_STACKS)
def test_the_guardrail_is_provisioned_from_the_file(synth: Synth, stack: str):
    _, guardrail = one(synth, stack, "AWS::Bedrock::Guardrail")
    props = guardrail["Properties"]
    expected = spec().cfn_properties()
    assert props["Name"] == f"evalgate-{stack.split('-')[1]}-store-assistant"
    for key in (
        "TopicPolicyConfig",
        "ContentPolicyConfig",
        "WordPolicyConfig",
        "SensitiveInformationPolicyConfig",
        "ContextualGroundingPolicyConfig",
        "BlockedInputMessaging",
        "BlockedOutputsMessaging",
    ):
        assert props[key] == expected[key], key


@pytest.mark.parametrize("stack", SERVICE_STACKS)
def test_an_immutable_version_named_by_the_content(synth: Synth, stack: str):
    guardrail_id, _ = one(synth, stack, "AWS::Bedrock::Guardrail")
    version_id, version = one(synth, stack, "AWS::Bedrock::GuardrailVersion")
    fingerprint = spec().fingerprint()
    assert fingerprint[:12] in version_id
    assert version["Properties"]["Description"] == f"evalgate config {fingerprint[:16]}"
    assert version["Properties"]["GuardrailIdentifier"] == {"Fn::GetAtt": [guardrail_id, "GuardrailId"]}


@pytest.mark.parametrize("stack", SERVICE_STACKS)
def test_the_service_uses_that_version_and_may_apply_only_that_guardrail(synth: Synth, stack: str):
    guardrail_id, _ = one(synth, stack, "AWS::Bedrock::Guardrail")
    version_id, _ = one(synth, stack, "AWS::Bedrock::GuardrailVersion")
    service = next(
        v
        for v in synth.resources(stack, "AWS::Lambda::Function").values()
        if v["Properties"].get("Handler") == "store_assistant.handler.handler"
    )
    env = service["Properties"]["Environment"]["Variables"]
    assert env["GUARDRAIL_ID"] == {"Fn::GetAtt": [guardrail_id, "GuardrailId"]}
    assert env["GUARDRAIL_VERSION"] == {"Fn::GetAtt": [version_id, "Version"]}
    applies = [st for _, st in statements(synth.templates[stack]) if "bedrock:ApplyGuardrail" in as_list(st["Action"])]
    assert applies and all(
        json.dumps({"Fn::GetAtt": [guardrail_id, "GuardrailId"]}) in json.dumps(st["Resource"]) for st in applies
    )


def test_its_grounding_check_scores_live_answers_in_the_online_judge_and_on_the_dashboard(synth: Synth):
    """The file has a contextual grounding policy: captures name the guardrail, the online judge (and only it,
    besides the service) may apply that guardrail, and the dashboard plots its scores per version."""
    guardrail_id, _ = one(synth, PROD, "AWS::Bedrock::Guardrail")
    functions = {v["Properties"].get("Handler"): v for v in synth.resources(PROD, "AWS::Lambda::Function").values()}
    service_env = functions["store_assistant.handler.handler"]["Properties"]["Environment"]["Variables"]
    assert service_env["GUARDRAIL_GROUNDING"] == "true"
    judge_role = functions["handlers.online_judge.handler"]["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = [
        r for r in synth.resources(PROD, "AWS::IAM::Policy").values() if {"Ref": judge_role} in r["Properties"]["Roles"]
    ]
    statements_ = [st for p in policies for st in p["Properties"]["PolicyDocument"]["Statement"]]
    grounding = [st for st in statements_ if st.get("Sid") == "GroundingApplyGuardrail"]
    assert [st["Action"] for st in grounding] == ["bedrock:ApplyGuardrail"]
    assert json.dumps({"Fn::GetAtt": [guardrail_id, "GuardrailId"]}) in json.dumps(grounding[0]["Resource"])
    (dashboard,) = synth.resources(PROD, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert "GuardrailGrounding" in body and "GuardrailRelevance" in body


def test_a_config_change_makes_a_new_guardrail_version_and_a_new_lambda_version(tmp_path: Path):
    """Same construct, one setting changed: a new GuardrailVersion resource, hence a new function version."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk.assertions import Template

    from evalgate.engine.guardrail_spec import load_guardrail_spec
    from stacks.constructs.guardrail import Guardrail

    changed = tmp_path / "g.toml"
    changed.write_text(
        (REPO / "guardrails" / "store-assistant.toml").read_text().replace("relevance = 0.5", "relevance = 0.6")
    )

    def build(path: Path) -> tuple[set[str], str]:
        stack = Stack(App(), "T")
        g = Guardrail(stack, "G", spec=load_guardrail_spec(path), name="t")
        fn = lambda_.Function(
            stack,
            "F",
            runtime=lambda_.Runtime.PYTHON_3_13,
            handler="x.h",
            code=lambda_.Code.from_inline("def h(e, c): pass"),
            environment={"GUARDRAIL_VERSION": g.guardrail_version},
        )
        assert fn.current_version  # the version CodeDeploy would shift to
        t = Template.from_stack(stack).to_json()
        kinds = {v["Type"]: k for k, v in t["Resources"].items()}
        return {kinds["AWS::Bedrock::GuardrailVersion"]}, kinds["AWS::Lambda::Version"]

    before, fn_before = build(REPO / "guardrails" / "store-assistant.toml")
    after, fn_after = build(changed)
    assert before != after and fn_before != fn_after


def test_the_gate_checks_a_candidate_made_from_the_file(synth: Synth):
    t = synth.templates[PIPELINE]
    assert "guardrails/store-assistant.toml" in json.dumps(t)  # EVALGATE_GUARDRAIL_CONFIG on the gate action
    candidate = [st for _, st in statements(t) if st.get("Sid") == "CandidateGuardrail"]
    assert candidate and sorted(as_list(candidate[0]["Action"])) == [
        "bedrock:ApplyGuardrail",
        "bedrock:CreateGuardrail",
        "bedrock:CreateGuardrailVersion",
        "bedrock:DeleteGuardrail",
        "bedrock:TagResource",
    ]


def test_settings_refuse_a_broken_guardrail_file_or_two_guardrails():
    from stacks.settings import SettingsError, load_settings

    from .conftest import cdk_context

    with pytest.raises(SettingsError, match="guardrailConfig: set either guardrailConfig"):
        load_settings(cdk_context(guardrailId="abcdef012345"))
    with pytest.raises(SettingsError, match=r"guardrailConfig: .*does not exist"):
        load_settings(cdk_context(guardrailConfig="guardrails/missing.toml"))
    with pytest.raises(SettingsError, match="relative to the repository root"):
        load_settings(cdk_context(guardrailConfig="/etc/passwd.toml"))
