"""The runtime's calls to AWS, path by path: which API operation each path calls, the IAM action that
authorises it (Service Authorization Reference) and what the granted resource must name.

``tests/contract/test_runtime_requests.py`` drives every path with AWS's sample events and fails on any call
that is not listed here; ``tests/contract/test_iam_table.py`` checks that the synthesized template grants
every listed call to that path's role. Together: no call without its permission.
"""

from __future__ import annotations

from dataclasses import dataclass

# (botocore service name, API operation) -> IAM action, where the two differ from "<service>:<operation>"
ACTIONS: dict[tuple[str, str], str] = {
    ("bedrock-runtime", "Converse"): "bedrock:InvokeModel",
    ("bedrock-runtime", "ConverseStream"): "bedrock:InvokeModelWithResponseStream",
    ("bedrock-runtime", "InvokeModel"): "bedrock:InvokeModel",
    ("bedrock-runtime", "ApplyGuardrail"): "bedrock:ApplyGuardrail",
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "HeadObject"): "s3:GetObject",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("appconfigdata", "StartConfigurationSession"): "appconfig:StartConfigurationSession",
    ("appconfigdata", "GetLatestConfiguration"): "appconfig:GetLatestConfiguration",
}


def action(service: str, operation: str) -> str:
    return ACTIONS.get((service, operation), f"{service}:{operation}")


# resource hints: a substring of the granted Resource as rendered in the template (json); "*" = the action has
# no resource-level permissions, so "*" is the only possible grant
ANY = "*"


@dataclass(frozen=True)
class RuntimePath:
    name: str
    stack: str  # "service" (the Prod service stack) or "pipeline"
    handler: str | None  # a Lambda function's handler, or
    role_prefix: str | None  # a CodeBuild step's role logical id prefix
    calls: dict[tuple[str, str], str]


PATHS: dict[str, RuntimePath] = {
    p.name: p
    for p in [
        RuntimePath(
            "service",
            "service",
            "store_assistant.handler.handler",
            None,
            {
                ("appconfigdata", "StartConfigurationSession"): "/configuration/",
                ("appconfigdata", "GetLatestConfiguration"): "/configuration/",
                ("bedrock-runtime", "Converse"): "inference-profile/",
                ("bedrock-runtime", "ConverseStream"): "inference-profile/",
                ("sqs", "SendMessageBatch"): "Queue",
            },
        ),
        RuntimePath(
            "online judge",
            "service",
            "handlers.online_judge.handler",
            None,
            {
                ("dynamodb", "PutItem"): "Idempotency",
                ("dynamodb", "UpdateItem"): "Idempotency",
                ("dynamodb", "DeleteItem"): "Idempotency",
                ("lambda", "GetAlias"): "ServiceLive",
                ("bedrock-runtime", "Converse"): "inference-profile/",
                ("bedrock-runtime", "ApplyGuardrail"): "guardrail/",  # the guardrail's contextual grounding check
                ("s3", "PutObject"): "/judged/",
                ("ssm", "DescribeOpsItems"): ANY,
                ("ssm", "CreateOpsItem"): "opsitem/",
                ("ssm", "UpdateOpsItem"): "opsitem/",
            },
        ),
        RuntimePath(
            "shadow worker",
            "service",
            "handlers.shadow_worker.handler",
            None,
            {
                ("dynamodb", "PutItem"): "Idempotency",
                ("dynamodb", "UpdateItem"): "Idempotency",
                ("dynamodb", "DeleteItem"): "Idempotency",
                ("lambda", "GetAlias"): "ShadowAlias",
                ("lambda", "Invoke"): "ShadowAlias",
                ("s3", "PutObject"): "/shadow/",
            },
        ),
        RuntimePath(
            "pre-traffic hook",
            "service",
            "handlers.pre_traffic_hook.handler",
            None,
            {
                ("dynamodb", "PutItem"): "Idempotency",
                ("dynamodb", "UpdateItem"): "Idempotency",
                ("dynamodb", "DeleteItem"): "Idempotency",
                ("lambda", "Invoke"): "Version",
                ("bedrock-runtime", "Converse"): "inference-profile/",
                ("bedrock-runtime", "InvokeModel"): "foundation-model/amazon.titan-embed",
                ("codedeploy", "PutLifecycleEventHookExecutionStatus"): "deploymentgroup:",
            },
        ),
        RuntimePath(
            "canary analysis hook",
            "service",
            "handlers.canary_analysis.handler",
            None,
            {
                ("dynamodb", "PutItem"): "Idempotency",
                ("dynamodb", "UpdateItem"): "Idempotency",
                ("dynamodb", "DeleteItem"): "Idempotency",
                ("codedeploy", "GetDeployment"): "deploymentgroup:",
                ("cloudwatch", "DescribeAlarms"): "JudgedCountLow",
                ("cloudwatch", "GetMetricData"): ANY,
                ("codedeploy", "PutLifecycleEventHookExecutionStatus"): "deploymentgroup:",
            },
        ),
        RuntimePath(
            "notifier",
            "service",
            "handlers.notifier.handler",
            None,
            {
                ("dynamodb", "PutItem"): "Idempotency",
                ("dynamodb", "UpdateItem"): "Idempotency",
                ("dynamodb", "DeleteItem"): "Idempotency",
                ("codedeploy", "GetDeployment"): "deploymentgroup:",
                ("codedeploy", "GetDeploymentGroup"): "deploymentgroup:",
                ("lambda", "GetFunctionConfiguration"): "ServiceFunction",
                ("cloudwatch", "DescribeAlarms"): "QualityAlarms",
                ("cloudwatch", "GetMetricData"): ANY,
                ("logs", "StartQuery"): "JudgeLogs",
                ("logs", "GetQueryResults"): ANY,
                ("s3", "ListObjectsV2"): "DataBucket",
                ("s3", "GetObject"): "/judged/",
                ("appconfig", "GetDeployment"): "/deployment/",
                ("appconfig", "GetHostedConfigurationVersion"): "/hostedconfigurationversion/",
                ("sns", "Publish"): "Topic",
            },
        ),
        RuntimePath(
            "pipeline notifier",
            "pipeline",
            "handlers.notifier.handler",
            None,
            {
                ("dynamodb", "PutItem"): "Idempotency",
                ("dynamodb", "UpdateItem"): "Idempotency",
                ("dynamodb", "DeleteItem"): "Idempotency",
                ("codepipeline", "ListActionExecutions"): "evalgate-pipeline",
                ("codepipeline", "GetPipelineExecution"): "evalgate-pipeline",
                ("sns", "Publish"): "Topic",
            },
        ),
        RuntimePath(
            "quality gate",
            "pipeline",
            None,
            "PipelineQualityGateEvalGateRole",
            {
                ("s3", "GetObject"): "/baselines/approved/",
                ("s3", "PutObject"): "/runs/",
                ("cloudwatch", "PutMetricData"): ANY,
                ("codepipeline", "GetPipelineState"): "evalgate-pipeline",
                ("codepipeline", "PutApprovalResult"): "evalgate-pipeline/QualityGate/Approve",
                ("events", "PutEvents"): "event-bus/default",
                ("sns", "Publish"): "Topic",
            },
        ),
        RuntimePath(
            "quality gate, evaluation run",
            "pipeline",
            None,
            "PipelineQualityGateEvalGateRole",
            {
                ("s3", "HeadObject"): "/cache/",
                ("s3", "GetObject"): "/cache/",
                ("s3", "PutObject"): "/cache/",
                ("bedrock-runtime", "Converse"): "inference-profile/",
                ("bedrock-runtime", "ConverseStream"): "inference-profile/",  # the bedrock candidate, timed (TTFT)
                ("bedrock-runtime", "InvokeModel"): "foundation-model/amazon.titan-embed",
                ("ssm", "DescribeOpsItems"): ANY,
                ("ssm", "CreateOpsItem"): "opsitem/",
                ("ssm", "UpdateOpsItem"): "opsitem/",
            },
        ),
        RuntimePath(
            "quality gate, release tier",
            "pipeline",
            None,
            "PipelineQualityGateEvalGateRole",
            {
                ("bedrock", "ListEvaluationJobs"): ANY,
                ("bedrock", "CreateEvaluationJob"): "evaluation-job/",
                ("bedrock", "GetEvaluationJob"): "evaluation-job/",
                ("bedrock", "StopEvaluationJob"): "evaluation-job/",
                ("s3", "PutObject"): "/bedrock-eval/",
                ("s3", "ListObjectsV2"): "EvalResultsStorageBucket",
                ("s3", "GetObject"): "/bedrock-eval/",
            },
        ),
        RuntimePath(
            "quality gate, history site",
            "pipeline",
            None,
            "PipelineQualityGateEvalGateRole",
            {
                ("s3", "ListObjectsV2"): "EvalResultsStorageBucket",
                ("s3", "GetObject"): "/runs/",
                ("s3", "PutObject"): "/history/",
            },
        ),
        RuntimePath(
            "promote baseline",
            "pipeline",
            None,
            "PipelineQualityGatePromoteBaselineRole",
            {
                ("s3", "GetObject"): "/runs/",
                ("s3", "PutObject"): "/baselines/approved/",
            },
        ),
    ]
}
