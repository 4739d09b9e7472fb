"""cdk-nag (AwsSolutions, v3 Validations) and cfn-lint on every synthesized template; least privilege."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import PIPELINE, PROD, STAGING, Synth, as_list, statements

STACKS = [PIPELINE, STAGING, PROD]


def test_cdk_nag_has_no_unacknowledged_findings(synth: Synth) -> None:
    from cdk_nag import AwsSolutionsChecks

    report = AwsSolutionsChecks().validate_scope(synth.app)
    findings = [f"{v.rule_name} at {r.resource_logical_id}" for v in report.violations for r in v.violating_resources]
    assert report.success, "unacknowledged cdk-nag findings:\n" + "\n".join(findings)
    assert findings == []


def test_app_registers_nag_as_a_validation_plugin() -> None:
    """``app.py`` (through ``build``) adds AwsSolutionsChecks with ``Validations.of(app).add_plugins``."""
    import inspect

    from stacks import application

    source = inspect.getsource(application.build)
    assert "Validations.of(app).add_plugins(AwsSolutionsChecks(app))" in source


def test_acknowledgements_need_a_specific_reason() -> None:
    from aws_cdk import App

    from stacks.nag import acknowledge

    with pytest.raises(ValueError, match="specific reason"):
        acknowledge(App(), "AwsSolutions-S1", "because")


@pytest.mark.parametrize("stack", STACKS)
def test_cfn_lint_reports_no_errors(synth: Synth, stack: str) -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(synth.template_files[stack], config=ManualArgs(regions=["us-east-1"]))
    errors = [f"{m.rule.id} {m.message} ({m.path_string})" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def _bare_wildcard(action: str) -> bool:
    return action == "*" or action.endswith(":*")


@pytest.mark.parametrize("stack", STACKS)
def test_no_policy_grants_all_actions(synth: Synth, stack: str) -> None:
    bad = [
        (lid, st["Action"])
        for lid, st in statements(synth.templates[stack])
        if st.get("Effect") == "Allow" and any(_bare_wildcard(a) for a in as_list(st.get("Action", [])))
    ]
    assert bad == []


BEDROCK_ACTIONS = {
    "bedrock:InvokeModel",
    "bedrock:InvokeModelWithResponseStream",
    "bedrock:ApplyGuardrail",
    "bedrock:CreateEvaluationJob",
    "bedrock:GetEvaluationJob",
    "bedrock:StopEvaluationJob",
    # the evaluation job's service role (judge-service-roles.html): its inference runs as model invocation jobs
    "bedrock:CreateModelInvocationJob",
    "bedrock:GetModelInvocationJob",
    "bedrock:StopModelInvocationJob",
    "bedrock:GetInferenceProfile",
    "bedrock:ListEvaluationJobs",  # no resource-level permissions: the only Bedrock action allowed on "*"
    # the gate's candidate guardrail (made from guardrails/*.toml for a run, deleted at its end)
    "bedrock:CreateGuardrail",
    "bedrock:CreateGuardrailVersion",
    "bedrock:DeleteGuardrail",
    "bedrock:TagResource",
}


def _bedrock(synth: Synth, stack: str) -> list[dict[str, Any]]:
    return [
        st
        for _, st in statements(synth.templates[stack])
        if any(str(a).startswith("bedrock:") for a in as_list(st["Action"]))
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_bedrock_is_scoped_to_the_configured_models(synth: Synth, stack: str) -> None:
    s = synth.built.settings
    models = set(s.eval_model_ids)
    bases = {m.split(".", 1)[1] if m.split(".")[0] in {"us", "eu", "apac", "global"} else m for m in models}
    found = _bedrock(synth, stack)
    assert found, f"{stack} has no Bedrock permissions"
    for st in found:
        actions = set(as_list(st["Action"]))
        assert actions <= BEDROCK_ACTIONS, actions
        if actions == {"bedrock:ListEvaluationJobs"}:
            assert st["Resource"] == "*", st
            continue
        for resource in as_list(st["Resource"]):
            if isinstance(resource, dict) and "bedrock:ApplyGuardrail" in actions:
                # the guardrail this stack provisions from guardrails/*.toml, by its own id
                assert "guardrail/" in json.dumps(resource) and "GuardrailId" in json.dumps(resource), st
                continue
            assert isinstance(resource, str) and resource != "*", st
            if "CreateGuardrail" in " ".join(actions):
                assert resource.endswith(":guardrail/*") and st.get("Sid") == "CandidateGuardrail", st
            elif "InvokeModel" in " ".join(actions):
                kind, _, name = resource.split(":", 5)[-1].partition("/")
                assert kind in {"foundation-model", "inference-profile"}, resource
                assert name in models | bases, resource
                if ":bedrock:*:" in resource:  # a profile's destination Regions: only through that profile
                    assert "bedrock:InferenceProfileArn" in st["Condition"]["StringEquals"], st
            elif "bedrock:ApplyGuardrail" in actions:
                assert f":guardrail/{s.guardrail_id}" in resource
            elif actions == {"bedrock:GetInferenceProfile"}:
                assert resource.split(":inference-profile/", 1)[1] in models, resource
            elif "bedrock:CreateModelInvocationJob" in actions:
                assert resource.endswith(":model-invocation-job/*"), resource
            else:
                assert resource.endswith(":evaluation-job/*"), resource


def test_service_role_invokes_only_the_generator_models(synth: Synth) -> None:
    s = synth.built.settings
    resources = synth.templates[PROD]["Resources"]
    fn = next(
        v
        for v in resources.values()
        if v["Type"] == "AWS::Lambda::Function" and v["Properties"]["Handler"] == "store_assistant.handler.handler"
    )
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    granted = set()
    for res in resources.values():
        if res["Type"] == "AWS::IAM::Policy" and {"Ref": role} in res["Properties"]["Roles"]:
            for st in res["Properties"]["PolicyDocument"]["Statement"]:
                if "bedrock:InvokeModel" in as_list(st["Action"]):
                    granted |= {r.rsplit("/", 1)[1] for r in as_list(st["Resource"])}
    generator = s.generator_model_id
    assert granted == {generator, generator.split(".", 1)[1]}


def _role_bedrock_grants(synth: Synth, stack: str, role: str) -> dict[str, set[str]]:
    """Bedrock action -> the model/profile names (last ARN segment) a role's policies grant it on."""
    grants: dict[str, set[str]] = {}
    for res in synth.templates[stack]["Resources"].values():
        if res["Type"] == "AWS::IAM::Policy" and {"Ref": role} in res["Properties"]["Roles"]:
            for st in res["Properties"]["PolicyDocument"]["Statement"]:
                for action in as_list(st["Action"]):
                    if str(action).startswith("bedrock:InvokeModel"):
                        names = {str(r).rsplit("/", 1)[-1] for r in as_list(st["Resource"])}
                        grants.setdefault(action, set()).update(names)
    return grants


def test_conversestream_callers_may_invoke_with_response_stream(synth: Synth) -> None:
    """ConverseStream is authorised by bedrock:InvokeModelWithResponseStream: the service (every /ask) and the
    quality gate's candidate (every generated answer) need it on the generator's profile and foundation model;
    the gate's judges and embeddings are called with Converse / InvokeModel only."""
    s = synth.built.settings
    generator = {s.generator_model_id, s.generator_model_id.split(".", 1)[1]}
    resources = synth.templates[PROD]["Resources"]
    fn = next(
        v
        for v in resources.values()
        if v["Type"] == "AWS::Lambda::Function" and v["Properties"]["Handler"] == "store_assistant.handler.handler"
    )
    service = _role_bedrock_grants(synth, PROD, fn["Properties"]["Role"]["Fn::GetAtt"][0])
    assert service["bedrock:InvokeModelWithResponseStream"] == generator
    pipeline = synth.templates[PIPELINE]["Resources"]
    (codepipeline,) = synth.resources(PIPELINE, "AWS::CodePipeline::Pipeline").values()
    stage = next(st for st in codepipeline["Properties"]["Stages"] if st["Name"] == "QualityGate")
    action = next(a for a in stage["Actions"] if a["Name"] == "EvalGate")
    gate = pipeline[action["Configuration"]["ProjectName"]["Ref"]]
    gate_grants = _role_bedrock_grants(synth, PIPELINE, gate["Properties"]["ServiceRole"]["Fn::GetAtt"][0])
    assert gate_grants["bedrock:InvokeModelWithResponseStream"] == generator
    assert {s.judge_model_id, s.embeddings_model_id} <= gate_grants["bedrock:InvokeModel"]
    assert s.judge_model_id not in gate_grants["bedrock:InvokeModelWithResponseStream"]  # Converse only


def test_unbundled_synth_still_references_hashed_code_assets(synth: Synth) -> None:
    """Bundling is skipped in tests; the templates still point at content-hashed zip keys (valid templates)."""
    for stack in (STAGING, PROD):
        for res in synth.resources(stack, "AWS::Lambda::Function").values():
            code = res["Properties"]["Code"]
            assert code["S3Key"].endswith(".zip") and len(code["S3Key"]) == len("0" * 64 + ".zip")


@pytest.mark.parametrize("stack", STACKS)
def test_an_unbundled_synth_cannot_be_deployed_by_mistake(synth: Synth, stack: str) -> None:
    """Offline synth skips bundling; CloudFormation then refuses the template with the fix in the message."""
    assert synth.built.settings.bundle is False
    (rule,) = [r for k, r in synth.templates[stack]["Rules"].items() if k.startswith("BundleRequireBundledAssets")]
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": ["unbundled", "bundled"]}
    assert "-c bundle=true" in assertion["AssertDescription"]


def test_a_bundled_synth_has_no_deploy_guard() -> None:
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Template

    from stacks.constructs.lambda_bundle import LambdaBundle

    stack = Stack(App(context={"aws:cdk:bundling-stacks": []}), "Probe")
    LambdaBundle(
        stack,
        "Bundle",
        log_retention_days=30,
        metrics_namespace="EvalGate/Service",
        service_name="evalgate",
        bundled=True,
    )
    rules = Template.from_stack(stack).to_json().get("Rules", {})
    assert not [k for k in rules if "RequireBundledAssets" in k]
