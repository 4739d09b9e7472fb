"""cdk-nag 3.x acknowledgements through CDK's native ``Validations`` API (each finding id, each with a reason)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct | None, finding: str, reason: str) -> None:
    """Acknowledge one nag finding (``RuleId`` or ``RuleId[FindingId]``) on ``scope`` and its children.

    ``scope`` may be a function's optional ``role``: a function without one has nothing to acknowledge it on,
    which is a construction error, never a silently dropped acknowledgement."""
    if scope is None:
        raise ValueError(f"{finding}: nothing to acknowledge it on (a function without its own role?)")
    if len(reason.strip()) < 20:
        raise ValueError(f"{finding}: an acknowledgement needs a specific reason")
    Validations.of(scope).acknowledge(Acknowledgment(id=finding, reason=reason))


def nag_text(scope: IConstruct, value: str) -> str:
    """Render a (possibly tokenized) string the way cdk-nag prints it in finding ids:
    ``{"Ref": "X"}`` -> ``<X>``, ``{"Fn::GetAtt": ["X", "Arn"]}`` -> ``<X.Arn>``, ``Fn::Join`` concatenated."""
    from aws_cdk import Stack

    return _render(Stack.of(scope).resolve(value))


def _render(node: object) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Ref":
            return f"<{arg}>"
        if key == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>" if isinstance(arg, list) else f"<{arg}>"
        if key == "Fn::Join" and isinstance(arg, list) and len(arg) == 2:
            sep, parts = arg
            return str(sep).join(_render(p) for p in parts)
    raise ValueError(f"cannot render {node!r} as a nag finding id")


def acknowledge_cdk_pipelines(pipeline: IConstruct) -> None:
    """Findings on the IAM policies CDK Pipelines generates for its own roles (not our statements).

    Call after ``build_pipeline()``. Finding ids are computed from the pipeline's CodeBuild projects, so the
    acknowledgements track the projects that actually exist.
    """
    from aws_cdk import Stack

    stack = Stack.of(pipeline)
    acknowledge_pipeline_grants(pipeline, pipeline.pipeline.artifact_bucket.bucket_arn)  # type: ignore[attr-defined]
    logs = nag_text(stack, f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:/aws/codebuild/")
    reports = nag_text(stack, f"arn:{stack.partition}:codebuild:{stack.region}:{stack.account}:report-group/")
    generated = {
        f"Resource::{logs}*": "The asset-publishing project writes its own CodeBuild log group",
        f"Resource::{reports}*": "The asset-publishing project's default CodeBuild report groups",
        f"Resource::arn:*:iam::{nag_text(stack, stack.account)}:role/*": (
            "Self-mutation assumes the CDK bootstrap roles (cdk-*-deploy/lookup/file-publishing) in this account"
        ),
    }
    for finding, reason in generated.items():
        acknowledge(pipeline, f"AwsSolutions-IAM5[{finding}]", reason)


def acknowledge_pipeline_grants(scope: IConstruct, artifact_bucket_arn: str) -> None:
    """Findings on the grants CDK generates for a pipeline's roles and CodeBuild projects under ``scope``:
    artifact-bucket read/write, its KMS key, and each project's log group and default report groups."""
    from aws_cdk import Stack
    from aws_cdk import aws_codebuild as codebuild

    stack = Stack.of(scope)
    artifacts = nag_text(stack, artifact_bucket_arn)
    generated = {
        "Action::s3:GetObject*": "CDK's artifact-bucket read grant (GetObject, GetObjectVersion...)",
        "Action::s3:GetBucket*": "CDK's artifact-bucket read grant (GetBucketLocation...)",
        "Action::s3:List*": "CDK's artifact-bucket read grant (ListBucket...)",
        "Action::s3:DeleteObject*": "CDK's artifact-bucket write grant (overwrites stage artifacts)",
        "Action::s3:Abort*": "CDK's artifact-bucket write grant (aborts multipart uploads)",
        "Action::kms:GenerateDataKey*": "CDK's grant on the artifact-bucket KMS key",
        "Action::kms:ReEncrypt*": "CDK's grant on the artifact-bucket KMS key",
        f"Resource::{artifacts}/*": "Pipeline artifacts have execution-generated object keys",
    }
    logs = nag_text(stack, f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:/aws/codebuild/")
    reports = nag_text(stack, f"arn:{stack.partition}:codebuild:{stack.region}:{stack.account}:report-group/")
    for project in scope.node.find_all():
        if isinstance(project, codebuild.CfnProject):
            ref = f"<{stack.get_logical_id(project)}>"
            generated[f"Resource::{logs}{ref}:*"] = "CodeBuild writes log streams with generated names"
            generated[f"Resource::{reports}{ref}-*"] = "CodeBuild's default per-project report groups"
    for finding, reason in generated.items():
        acknowledge(scope, f"AwsSolutions-IAM5[{finding}]", reason)
