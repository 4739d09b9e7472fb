"""The pull-request path: triggers, an evaluation-only pipeline, and an untrusted build that can't touch a release."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import PIPELINE, Synth, as_list, cdk_context, statements

SECRET = "evalgate/github-token"
FORBIDDEN_ACTIONS = (
    "codepipeline:PutApprovalResult",
    "codepipeline:StartPipelineExecution",
    "cloudformation:",
    "lambda:",
    "codedeploy:",
    "sns:Publish",
    "sts:AssumeRole",
    "appconfig:",
    "iam:PassRole",
    "ssm:",
)


@pytest.fixture(scope="module")
def pr_synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from aws_cdk import App

    from stacks.application import build

    outdir = tmp_path_factory.mktemp("cdk.out.pr")
    app = App(
        context=cdk_context(pullRequestEval=True, commentTokenSecret=SECRET, pullRequestBranches="main,release/*"),
        outdir=str(outdir),
    )
    built = build(app, nag=False)
    app.synth()
    file = outdir / "EvalGatePipeline.template.json"
    return {"app": app, "built": built, "template": json.loads(file.read_text()), "file": file}


def pr_role_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    roles = [
        k
        for k, v in template["Resources"].items()
        if v["Type"] == "AWS::IAM::Role" and k.startswith("PullRequestsRole")
    ]
    assert len(roles) == 1
    policies = [
        k
        for k, v in template["Resources"].items()
        if v["Type"] == "AWS::IAM::Policy" and {"Ref": roles[0]} in v["Properties"]["Roles"]
    ]
    return [st for lid, st in statements(template) if lid in policies]


def pipelines(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::CodePipeline::Pipeline"}


def test_a_v2_pipeline_triggered_by_pull_requests_on_the_watched_branches(pr_synth: dict[str, Any]):
    pr = [
        p for p in pipelines(pr_synth["template"]).values() if p["Properties"].get("Name") == "evalgate-pull-requests"
    ]
    assert len(pr) == 1
    props = pr[0]["Properties"]
    assert props["PipelineType"] == "V2" and props["ExecutionMode"] == "PARALLEL"
    git = props["Triggers"][0]["GitConfiguration"]
    assert props["Triggers"][0]["ProviderType"] == "CodeStarSourceConnection"
    assert git["PullRequest"] == [{"Events": ["OPEN", "UPDATED"], "Branches": {"Includes": ["main", "release/*"]}}]
    assert "Push" not in git


def test_the_pull_request_pipeline_never_deploys_approves_or_promotes(pr_synth: dict[str, Any]):
    pr = next(
        p for p in pipelines(pr_synth["template"]).values() if p["Properties"].get("Name") == "evalgate-pull-requests"
    )
    kinds = [
        (a["ActionTypeId"]["Category"], a["ActionTypeId"]["Provider"])
        for stage in pr["Properties"]["Stages"]
        for a in stage["Actions"]
    ]
    assert kinds == [("Source", "CodeStarSourceConnection"), ("Build", "CodeBuild")]


def test_the_untrusted_build_cannot_write_anything_a_release_reads(pr_synth: dict[str, Any]):
    sts = pr_role_statements(pr_synth["template"])
    actions = [a for st in sts for a in as_list(st["Action"])]
    for bad in FORBIDDEN_ACTIONS:
        assert not [a for a in actions if a.startswith(bad)], bad
    puts = [st for st in sts if "s3:PutObject" in as_list(st["Action"])]
    assert len(puts) == 1
    assert "/pr-cache/*" in json.dumps(puts[0]["Resource"]) and "/pr-runs/*" in json.dumps(puts[0]["Resource"])
    assert "baselines" not in json.dumps(puts[0]["Resource"]) and "/cache/" not in json.dumps(puts[0]["Resource"])
    gets = next(st for st in sts if "s3:GetObject" in as_list(st["Action"]))
    assert "/cache/evalgate-cache.sqlite" in json.dumps(gets["Resource"]) and "cache/*" not in json.dumps(gets)
    secrets = [st for st in sts if "secretsmanager:GetSecretValue" in as_list(st["Action"])]
    assert len(secrets) == 1 and SECRET in json.dumps(secrets[0]["Resource"])
    assert [a for a in actions if a.startswith("secretsmanager:")] == ["secretsmanager:GetSecretValue"]


def test_the_pull_request_candidate_may_stream_only_from_the_service_models(pr_synth: dict[str, Any]):
    """`evalgate run --candidate bedrock` answers through ConverseStream: bedrock:InvokeModelWithResponseStream on
    the generator's profile and foundation model, nothing for the judges."""
    s = pr_synth["built"].settings
    streamed = {
        str(r).rsplit("/", 1)[-1]
        for st in pr_role_statements(pr_synth["template"])
        if "bedrock:InvokeModelWithResponseStream" in as_list(st["Action"])
        for r in as_list(st["Resource"])
    }
    assert streamed == {s.generator_model_id, s.generator_model_id.split(".", 1)[1]}


def test_the_main_gate_never_reads_what_a_pull_request_wrote(pr_synth: dict[str, Any]):
    t = pr_synth["template"]
    pr_ids = {k for k in t["Resources"] if k.startswith("PullRequests")}
    for lid, st in statements(t):
        if lid in pr_ids:
            continue
        assert "pr-cache" not in json.dumps(st.get("Resource")), lid


def test_fork_guard_runs_before_the_pull_requests_own_code(pr_synth: dict[str, Any]):
    t = pr_synth["template"]
    project = next(
        v
        for k, v in t["Resources"].items()
        if v["Type"] == "AWS::CodeBuild::Project" and k.startswith("PullRequestsProject")
    )
    spec = json.loads(project["Properties"]["Source"]["BuildSpec"])
    pre = spec["phases"]["pre_build"]["commands"]
    guard = next(i for i, c in enumerate(pre) if "comes from a fork" in c)
    install = next(i for i, c in enumerate(pre) if "requirements.txt" in c)
    assert guard < install
    assert spec["env"]["secrets-manager"] == {"GITHUB_TOKEN": SECRET}
    build = " ".join(spec["phases"]["build"]["commands"])
    assert '--cache-s3-push "s3://$EVAL_BUCKET/pr-cache/$PR_NUMBER/' in build and "--tier auto" in build
    assert "evalgate comment" in build and "--post github" in build and "PutApprovalResult" not in build
    env = {e["Name"]: e["Value"] for e in project["Properties"]["Environment"]["EnvironmentVariables"]}
    assert env["ALLOW_FORKS"] == "false"


def test_pull_request_path_is_nag_and_lint_clean(pr_synth: dict[str, Any]):
    from cdk_nag import AwsSolutionsChecks
    from cfnlint.api import ManualArgs, lint_file

    report = AwsSolutionsChecks().validate_scope(pr_synth["app"])
    pr = [
        f"{v.rule_name} at {r.resource_logical_id}"
        for v in report.violations
        for r in v.violating_resources
        if "PullRequests" in r.resource_logical_id
    ]
    assert pr == []
    errors = [
        m
        for m in lint_file(Path(pr_synth["file"]), ManualArgs(regions=["us-east-1"]))
        if str(m.rule.id).startswith("E")
    ]
    assert errors == []


def test_off_by_default(synth: Synth):
    assert not [k for k in synth.templates[PIPELINE]["Resources"] if k.startswith("PullRequests")]


def test_known_error_tickets_grant_only_opsitems(synth: Synth):
    gate = [
        st
        for _, st in statements(synth.templates[PIPELINE])
        if st.get("Sid") in ("OpenKnownErrorTickets", "FindKnownErrorTickets")
    ]
    assert sorted(a for st in gate for a in as_list(st["Action"])) == [
        "ssm:CreateOpsItem",
        "ssm:DescribeOpsItems",
        "ssm:UpdateOpsItem",
    ]


# ------------------------------------------------------------------------------------------------ CodeCommit


def test_codecommit_pull_request_events_start_an_evaluation_only_build():
    from aws_cdk import App, Stack
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_s3 as s3
    from aws_cdk.assertions import Template

    from stacks.constructs.pull_request_eval import PullRequestEval, PullRequestEvalProps
    from stacks.settings import load_settings

    ctx = cdk_context(pullRequestEval=True, codeCommitRepository="store-assistant")
    ctx.pop("connectionArn")
    ctx.pop("repository")
    app = App()
    stack = Stack(app, "T")
    key = kms.Key(stack, "K")
    bucket = s3.Bucket(stack, "B", encryption_key=key)
    PullRequestEval(stack, "PullRequests", PullRequestEvalProps(load_settings(ctx), bucket, key, bucket))
    t = Template.from_stack(stack)
    t.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.codecommit"],
                "detail-type": ["CodeCommit Pull Request State Change"],
                "resources": [
                    {
                        "Fn::Join": [
                            "",
                            [
                                "arn:",
                                {"Ref": "AWS::Partition"},
                                ":codecommit:",
                                {"Ref": "AWS::Region"},
                                ":",
                                {"Ref": "AWS::AccountId"},
                                ":store-assistant",
                            ],
                        ]
                    }
                ],
                "detail": {
                    "event": ["pullRequestCreated", "pullRequestSourceBranchUpdated"],
                    "destinationReference": ["refs/heads/main"],
                    "pullRequestStatus": ["Open"],
                },
            },
        },
    )
    rule = next(v for v in t.to_json()["Resources"].values() if v["Type"] == "AWS::Events::Rule")
    transformer = rule["Properties"]["Targets"][0]["InputTransformer"]
    assert transformer["InputPathsMap"]["detail-sourceCommit"] == "$.detail.sourceCommit"
    assert '"sourceVersion":<detail-sourceCommit>' in transformer["InputTemplate"]
    assert '"name":"PR_NUMBER","value":<detail-pullRequestId>' in transformer["InputTemplate"]
    actions = [
        a
        for st in t.to_json()["Resources"].values()
        if st["Type"] == "AWS::IAM::Policy"
        for s_ in st["Properties"]["PolicyDocument"]["Statement"]
        for a in as_list(s_["Action"])
    ]
    assert "codecommit:PostCommentForPullRequest" in actions and "codecommit:UpdateComment" in actions
    assert not [a for a in actions if a.startswith(("codepipeline:", "cloudformation:", "secretsmanager:"))]


def test_settings_require_the_comment_token_on_github():
    from stacks.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="commentTokenSecret: required with pullRequestEval"):
        load_settings(cdk_context(pullRequestEval=True))
    with pytest.raises(SettingsError, match="pullRequestBranches"):
        load_settings(cdk_context(pullRequestBranches="bad branch!"))
    with pytest.raises(SettingsError, match="knownErrorTickets"):
        load_settings(cdk_context(knownErrorTickets="github"))


@pytest.mark.parametrize("stack", ["evalgate-staging-service", "evalgate-prod-service"])
def test_the_online_judge_opens_live_known_error_tickets(synth: Synth, stack: str):
    t = synth.templates[stack]
    judge = next(
        v
        for v in synth.resources(stack, "AWS::Lambda::Function").values()
        if v["Properties"].get("Handler") == "handlers.online_judge.handler"
    )
    assert judge["Properties"]["Environment"]["Variables"]["KNOWN_ERROR_TICKETS"] == "opscenter"
    actions = sorted(
        a
        for _, st in statements(t)
        if st.get("Sid") in ("OpenKnownErrorTickets", "FindKnownErrorTickets")
        for a in as_list(st["Action"])
    )
    assert actions == ["ssm:CreateOpsItem", "ssm:DescribeOpsItems", "ssm:UpdateOpsItem"]
