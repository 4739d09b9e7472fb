"""Wiring of the release pipeline: source, synth, the eval gate and its approval, staging tests, prod."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import PIPELINE, STAGING, Synth, as_list, statements


def _pipeline(synth: Synth) -> dict[str, Any]:
    (res,) = synth.resources(PIPELINE, "AWS::CodePipeline::Pipeline").values()
    return res["Properties"]


def _stage(synth: Synth, name: str) -> list[dict[str, Any]]:
    return next(s["Actions"] for s in _pipeline(synth)["Stages"] if s["Name"] == name)


def _action(synth: Synth, stage: str, name: str) -> dict[str, Any]:
    return next(a for a in _stage(synth, stage) if a["Name"] == name)


def _project(synth: Synth, action: dict[str, Any]) -> dict[str, Any]:
    ref = action["Configuration"]["ProjectName"]["Ref"]
    return synth.templates[PIPELINE]["Resources"][ref]["Properties"]


def _buildspec(project: dict[str, Any]) -> str:
    spec = project["Source"]["BuildSpec"]
    if isinstance(spec, str):
        return spec
    return "".join(p if isinstance(p, str) else json.dumps(p) for p in spec["Fn::Join"][1])


def test_pipeline_is_v2_self_mutating_with_the_expected_stages(synth: Synth) -> None:
    p = _pipeline(synth)
    assert p["PipelineType"] == "V2"
    assert p["Name"] == "evalgate-pipeline"
    assert [s["Name"] for s in p["Stages"]] == [
        "Source",
        "Build",
        "UpdatePipeline",
        "Assets",
        "QualityGate",
        "Staging",
        "Prod",
    ]
    assert _action(synth, "UpdatePipeline", "SelfMutate")["ActionTypeId"]["Provider"] == "CodeBuild"


def test_source_is_a_connection_with_clone_and_release_triggers(synth: Synth) -> None:
    s = synth.built.settings
    (source,) = _stage(synth, "Source")
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    cfg = source["Configuration"]
    assert cfg["ConnectionArn"] == s.connection_arn
    assert cfg["FullRepositoryId"] == s.repository and cfg["BranchName"] == s.branch
    assert cfg["OutputArtifactFormat"] == "CODEBUILD_CLONE_REF"  # git history for tiers and change type
    (trigger,) = _pipeline(synth)["Triggers"]
    push = trigger["GitConfiguration"]["Push"]
    assert {"Branches": {"Includes": [s.branch, s.release_branch_pattern]}} in push
    assert {"Tags": {"Includes": [s.release_tag_pattern]}} in push
    assert trigger["GitConfiguration"]["SourceActionName"] == source["Name"]


def test_synth_step_runs_tests_classifies_the_change_and_synthesizes(synth: Synth) -> None:
    spec = _buildspec(_project(synth, _action(synth, "Build", "Synth")))
    assert "pytest tests/unit tests/infra tests/contract" in spec  # AWS contracts gate every deploy too
    commands = json.loads(spec)["phases"]["build"]["commands"]
    assert 'MODE=$(PYTHONPATH=lambdas python3 -m evalgate.engine.change_type --base "$BASE" --explain)' in commands
    assert "npx cdk synth" in spec and "-c bundle=true" in spec and "-c deploymentMode=$MODE" in spec
    env = {
        e["Name"]: e["Value"]
        for e in _project(synth, _action(synth, "Build", "Synth"))["Environment"]["EnvironmentVariables"]
    }
    assert env["CDK_DISABLE_CLI_TELEMETRY"] == "true"


def test_eval_step_exports_junit_to_a_report_group(synth: Synth) -> None:
    project = _project(synth, _action(synth, "QualityGate", "EvalGate"))
    spec = _buildspec(project)
    report_groups = synth.resources(PIPELINE, "AWS::CodeBuild::ReportGroup")
    eval_group = next(k for k in report_groups if k.startswith("EvalResultsEvalReports"))
    assert '"reports"' in spec and f'"Fn::GetAtt": ["{eval_group}", "Arn"]' in spec
    assert '"file-format": "JUNITXML"' in spec and '"base-directory": "out/eval"' in spec
    assert "python3 -m evalgate.ci run" in spec
    assert '"base-directory": "out/eval"' in spec.split('"artifacts"')[1]  # report.html, summary.md, results.json
    env = {e["Name"] for e in project["Environment"]["EnvironmentVariables"]}
    assert {"EVAL_BUCKET", "TOPIC_ARN", "PIPELINE_NAME", "GATE_STAGE", "APPROVAL_ACTION"} <= env
    action_env = json.loads(_action(synth, "QualityGate", "EvalGate")["Configuration"]["EnvironmentVariables"])
    assert {
        "name": "PIPELINE_EXECUTION_ID",
        "type": "PLAINTEXT",
        "value": "#{codepipeline.PipelineExecutionId}",
    } in action_env


def test_manual_approval_runs_beside_the_gate_and_links_the_report(synth: Synth) -> None:
    approve = _action(synth, "QualityGate", "Approve")
    gate = _action(synth, "QualityGate", "EvalGate")
    promote = _action(synth, "QualityGate", "PromoteBaseline")
    assert approve["ActionTypeId"] == {"Category": "Approval", "Owner": "AWS", "Provider": "Manual", "Version": "1"}
    assert approve["RunOrder"] == gate["RunOrder"]  # started together: the gate resolves it by verdict
    assert promote["RunOrder"] > approve["RunOrder"]  # the baseline moves only after an approval
    link = json.dumps(approve["Configuration"]["ExternalEntityLink"])
    assert "#{codepipeline.PipelineExecutionId}" in link and "EvalResultsStorageBucket" in link
    assert "REVIEW" in approve["Configuration"]["CustomData"]


def test_gate_may_send_only_its_own_review_events(synth: Synth) -> None:
    (put,) = [st for _, st in statements(synth.templates[PIPELINE]) if st["Action"] == "events:PutEvents"]
    assert put["Resource"] == "arn:aws:events:us-east-1:111111111111:event-bus/default"
    assert put["Condition"] == {"StringEquals": {"events:source": "evalgate"}}


def test_gate_may_resolve_only_its_own_approval(synth: Synth) -> None:
    gate_role = _project(synth, _action(synth, "QualityGate", "EvalGate"))["ServiceRole"]["Fn::GetAtt"][0]
    found = [
        st
        for lid, st in statements(synth.templates[PIPELINE])
        if "codepipeline:PutApprovalResult" in as_list(st["Action"])
    ]
    assert len(found) == 1
    assert found[0]["Resource"] == "arn:aws:codepipeline:us-east-1:111111111111:evalgate-pipeline/QualityGate/Approve"
    policy = next(
        r
        for r in synth.resources(PIPELINE, "AWS::IAM::Policy").values()
        if {"Ref": gate_role} in r["Properties"]["Roles"]
    )
    assert found[0] in policy["Properties"]["PolicyDocument"]["Statement"]


def test_eval_results_bucket_is_versioned_encrypted_ssl_only(synth: Synth) -> None:
    resources = synth.templates[PIPELINE]["Resources"]
    bucket = next(
        v["Properties"]
        for k, v in resources.items()
        if k.startswith("EvalResultsStorageBucket") and v["Type"] == "AWS::S3::Bucket"
    )
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == "aws:kms"
    policy = next(v["Properties"] for k, v in resources.items() if k.startswith("EvalResultsStorageBucketPolicy"))
    assert any(
        st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for st in policy["PolicyDocument"]["Statement"]
    )


def test_staging_runs_the_load_test_then_the_smoke_eval_on_its_endpoint(synth: Synth) -> None:
    s = synth.built.settings
    load, smoke = _action(synth, "Staging", "LoadTest"), _action(synth, "Staging", "SmokeEval")
    assert smoke["RunOrder"] > load["RunOrder"]
    deploy = next(a for a in _stage(synth, "Staging") if a["Name"].endswith(".Deploy"))
    for action in (load, smoke):
        env = json.loads(action["Configuration"]["EnvironmentVariables"])
        url = next(e for e in env if e["name"] == "SERVICE_URL")
        assert url["value"].startswith(f"#{{{deploy['Namespace']}.ServiceEndpoint")
    load_spec = _buildspec(_project(synth, load))
    assert 'evalgate load --target \\"http:${SERVICE_URL}ask\\"' in load_spec
    assert f"--rps {s.peak_rps * 1.5:g}" in load_spec and f"--ttft-slo-ms {s.ttft_slo_ms} " in load_spec
    assert f"--regression-ms {s.total_regression_ms} --regression-pct {s.total_regression_pct:g} $BASELINE" in load_spec
    # the last passing load test is the baseline of total answer time; a passing run replaces it
    assert 'aws s3 cp \\"s3://' in load_spec and '/baselines/load/results.json\\" load-baseline.json' in load_spec
    assert '&& aws s3 cp out/load/results.json \\"s3://' in load_spec
    role = _project(synth, load)["ServiceRole"]["Fn::GetAtt"][0]
    resources = synth.templates[PIPELINE]["Resources"]
    granted = [
        st
        for lid, st in statements(synth.templates[PIPELINE])
        if st.get("Sid") == "LoadBaseline" and {"Ref": role} in resources[lid]["Properties"].get("Roles", [])
    ]
    assert granted and as_list(granted[0]["Action"]) == ["s3:GetObject", "s3:PutObject"]
    assert "/baselines/load/results.json" in json.dumps(granted[0]["Resource"])
    smoke_spec = _buildspec(_project(synth, smoke))
    assert "evalgate run --tier smoke" in smoke_spec and '--candidate \\"http:${SERVICE_URL}ask\\"' in smoke_spec
    for spec in (load_spec, smoke_spec):
        assert '"file-format": "JUNITXML"' in spec
    assert STAGING in synth.templates


def test_prod_stage_deploys_the_service_stack(synth: Synth) -> None:
    actions = _stage(synth, "Prod")
    assert {a["Configuration"]["StackName"] for a in actions} == {"evalgate-prod-service"}


def test_pipeline_failures_and_eval_spend_reach_the_topic(synth: Synth) -> None:
    resources = synth.templates[PIPELINE]["Resources"]
    notifier = next(
        k
        for k, v in resources.items()
        if v["Type"] == "AWS::Lambda::Function" and v["Properties"]["Handler"] == "handlers.notifier.handler"
    )
    rules = [v["Properties"] for v in resources.values() if v["Type"] == "AWS::Events::Rule"]
    rule = next(r for r in rules if r["EventPattern"]["source"] == ["aws.codepipeline"])
    assert rule["EventPattern"] == {
        "source": ["aws.codepipeline"],
        "detail-type": ["CodePipeline Pipeline Execution State Change"],
        "detail": {"state": ["FAILED"], "pipeline": ["evalgate-pipeline"]},
    }
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [notifier, "Arn"]}
    review = next(r for r in rules if r["EventPattern"]["source"] == ["evalgate"])
    assert review["EventPattern"] == {
        "source": ["evalgate"],
        "detail-type": ["EvalGate Verdict"],
        "detail": {"verdict": ["REVIEW"], "pipeline": ["evalgate-pipeline"]},
    }
    assert review["Targets"][0]["Arn"] == {"Fn::GetAtt": [notifier, "Arn"]}
    topic = next(k for k, v in resources.items() if v["Type"] == "AWS::SNS::Topic")
    (alarm,) = [v["Properties"] for v in resources.values() if v["Type"] == "AWS::CloudWatch::Alarm"]
    assert alarm["MetricName"] == "EvalCostUSD" and alarm["AlarmActions"] == [{"Ref": topic}]
    assert alarm["Threshold"] == pytest.approx(synth.built.settings.monthly_eval_budget_usd / 30, rel=1e-3)
    sub = next(v["Properties"] for v in resources.values() if v["Type"] == "AWS::SNS::Subscription")
    assert sub["Protocol"] == "email" and sub["Endpoint"] == synth.built.settings.notification_email


def test_codebuild_projects_are_kms_encrypted_and_unprivileged(synth: Synth) -> None:
    for name, res in synth.resources(PIPELINE, "AWS::CodeBuild::Project").items():
        props = res["Properties"]
        assert "EncryptionKey" in props, name
        assert not props["Environment"].get("PrivilegedMode", False), name


def test_codecommit_source_guardrail_and_dev_stack_options() -> None:
    """Construction only (no synth): the CodeCommit source, a guardrail and the optional dev service stack."""
    from aws_cdk import App

    from stacks.application import build

    from .conftest import cdk_context

    ctx = cdk_context(
        codeCommitRepository="evalgate",
        guardrailId="abcdef012345",
        guardrailVersion="3",
        guardrailConfig=None,
        devStack=True,
    )
    del ctx["connectionArn"], ctx["repository"]
    built = build(App(context=ctx), nag=False)
    source = built.pipeline.pipeline.pipeline.stages[0].actions[0].action_properties
    assert source.provider == "CodeCommit"
    assert built.dev is not None and built.dev.stack_name == "evalgate-dev-service"
    fn = built.dev.service.function
    policy = fn.role.node.find_child("DefaultPolicy")
    doc = built.dev.resolve(policy.document.to_json())
    guard = [st for st in doc["Statement"] if st["Action"] == "bedrock:ApplyGuardrail"]
    assert guard and guard[0]["Resource"] == "arn:aws:bedrock:us-east-1:111111111111:guardrail/abcdef012345"
