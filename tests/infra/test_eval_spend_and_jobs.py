"""What a release-tier Bedrock evaluation job needs, and a spend budget that sees the Claude spend."""

from __future__ import annotations

from typing import Any

import botocore.session
from botocore.validate import ParamValidator

from .conftest import PIPELINE, Synth, as_list, statements

# judge-service-roles.html: the S3 actions a judge evaluation job's service role needs on its data location
JUDGE_JOB_S3_OBJECT_ACTIONS = {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}
JUDGE_JOB_S3_BUCKET_ACTIONS = {"s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"}
JUDGE_JOB_BEDROCK_ACTIONS = {
    "bedrock:CreateModelInvocationJob",
    "bedrock:StopModelInvocationJob",
    "bedrock:InvokeModel",
    "bedrock:InvokeModelWithResponseStream",
}


def _role_statements(synth: Synth, role_prefix: str) -> list[dict[str, Any]]:
    template = synth.templates[PIPELINE]
    (role,) = [
        k for k, v in template["Resources"].items() if v["Type"] == "AWS::IAM::Role" and k.startswith(role_prefix)
    ]
    policies = [
        k
        for k, v in template["Resources"].items()
        if v["Type"] == "AWS::IAM::Policy" and {"Ref": role} in v["Properties"].get("Roles", [])
    ]
    return [st for k, st in statements(template) if k in policies]


def test_the_evaluation_job_role_has_what_the_bedrock_docs_list_for_judge_jobs(synth: Synth) -> None:
    sts = _role_statements(synth, "EvalResultsEvaluationJobRole")
    granted: dict[str, list[Any]] = {}
    for st in sts:
        for action in as_list(st["Action"]):
            granted.setdefault(action, []).extend(as_list(st["Resource"]))
    assert set(granted) >= JUDGE_JOB_S3_OBJECT_ACTIONS | JUDGE_JOB_S3_BUCKET_ACTIONS | JUDGE_JOB_BEDROCK_ACTIONS
    for action in JUDGE_JOB_S3_OBJECT_ACTIONS:  # objects under bedrock-eval/ only
        assert all("/bedrock-eval/*" in str(r) for r in granted[action]), action
    for action in JUDGE_JOB_S3_BUCKET_ACTIONS:  # bucket-level actions on the bucket ARN itself
        assert all(isinstance(r, dict) and "Fn::GetAtt" in r for r in granted[action]), action
    assert granted["bedrock:CreateModelInvocationJob"] == [
        "arn:aws:bedrock:us-east-1:111111111111:model-invocation-job/*"
    ]
    judge = synth.built.settings.judge_model_id
    assert any(judge in str(r) for r in granted["bedrock:InvokeModel"])


def test_the_bedrock_budget_also_counts_marketplace_billed_models(synth: Synth) -> None:
    (budget,) = synth.resources(PIPELINE, "AWS::Budgets::Budget").values()
    data = budget["Properties"]["Budget"]
    assert "CostFilters" not in data  # Service = Amazon Bedrock alone misses Anthropic (Marketplace) spend
    expression = data["FilterExpression"]
    dims = {(e["Dimensions"]["Key"], tuple(e["Dimensions"]["Values"])) for e in expression["Or"]}
    assert dims == {("SERVICE", ("Amazon Bedrock",)), ("BILLING_ENTITY", ("AWS Marketplace",))}
    # the same document is a valid Budgets API Expression (the CloudFormation property mirrors it)
    model = botocore.session.get_session().get_service_model("budgets")
    report = ParamValidator().validate(expression, model.shape_for("Expression"))
    assert not report.has_errors(), report.generate_report()
