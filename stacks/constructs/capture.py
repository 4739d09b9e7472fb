"""Sampled capture of live traffic and the online judge.

service --(async SendMessage, sampled)--> capture queue (KMS, SSL-only, DLQ after 3 receives)
        --> online judge Lambda (SQS event source, partial batch failures reported)
        --> EMF metrics per FunctionVersion (QualityScore, Hallucination, JudgedCount, Unscored, InjectionLeak)
        --> judged records as JSONL under s3://<data bucket>/judged/ (worst examples for the rollback email)
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.constructs.bedrock_access import grant_models, guardrail_statement
from stacks.constructs.eval_step import opsitem_arn
from stacks.constructs.lambda_bundle import FunctionSpec, LambdaBundle
from stacks.nag import acknowledge, nag_text

JUDGED_PREFIX = "judged/"
JUDGE_TIMEOUT = Duration.seconds(120)


def encrypted_queue_pair(
    scope: Construct, name: str, key: kms.IKey, visibility: Duration
) -> tuple[sqs.Queue, sqs.Queue]:
    """A KMS-encrypted, SSL-only queue with its own encrypted, SSL-only dead-letter queue."""
    dlq = sqs.Queue(
        scope,
        f"{name}Dlq",
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    acknowledge(
        dlq,
        "AwsSolutions-SQS3",
        f"This queue is the dead-letter queue of the {name} queue.",
    )
    queue = sqs.Queue(
        scope,
        name,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        data_key_reuse=Duration.hours(1),
        enforce_ssl=True,
        visibility_timeout=visibility,
        retention_period=Duration.days(4),
        dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=3),
    )
    return queue, dlq


@dataclass(frozen=True)
class CaptureProps:
    bundle: LambdaBundle
    key: kms.IKey
    data_bucket: s3.IBucket
    judge_model_id: str
    canary_token: str
    project: str
    stage: str


class Capture(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: CaptureProps) -> None:
        super().__init__(scope, construct_id)
        # visibility >= 6x the consumer timeout (AWS guidance for SQS event sources)
        visibility = Duration.seconds(JUDGE_TIMEOUT.to_seconds() * 6)
        self.queue, self.dlq = encrypted_queue_pair(self, "Queue", props.key, visibility)
        self.judge = props.bundle.function(
            self,
            "OnlineJudge",
            FunctionSpec(
                handler="handlers.online_judge.handler",
                description=f"{props.project} {props.stage}: judges sampled live answers, emits per-version metrics",
                environment={
                    "JUDGE_MODEL_ID": props.judge_model_id,
                    "CANARY_TOKEN": props.canary_token,
                    "JUDGED_BUCKET": props.data_bucket.bucket_name,
                    "JUDGED_PREFIX": JUDGED_PREFIX,
                },
                timeout=JUDGE_TIMEOUT,
                memory_size=1024,
            ),
        )
        self.judge.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=10,
                max_batching_window=Duration.seconds(5),
                report_batch_item_failures=True,
                max_concurrency=5,
            )
        )
        grant_models(self.judge, self, [props.judge_model_id], sid="Judge")
        self.judge.add_to_role_policy(
            iam.PolicyStatement(
                sid="WriteJudgedRecords",
                actions=["s3:PutObject"],
                resources=[props.data_bucket.arn_for_objects(f"{JUDGED_PREFIX}*")],
            )
        )
        self.judge.add_to_role_policy(
            iam.PolicyStatement(
                sid="EncryptJudgedRecords",
                actions=["kms:GenerateDataKey"],
                resources=[props.key.key_arn],
            )
        )
        acknowledge(
            self.judge.role,
            f"AwsSolutions-IAM5[Resource::{nag_text(self, props.data_bucket.bucket_arn)}/{JUDGED_PREFIX}*]",
            "Judged records are written under one prefix with generated object names (date/version/id).",
        )

    def open_tickets(self) -> None:
        """Hallucinations in live answers open (or count again) an OpsCenter OpsItem."""
        self.judge.add_environment("KNOWN_ERROR_TICKETS", "opscenter")
        self.judge.add_to_role_policy(
            iam.PolicyStatement(
                sid="OpenKnownErrorTickets",
                actions=["ssm:CreateOpsItem", "ssm:UpdateOpsItem"],
                resources=[opsitem_arn(self)],
            )
        )
        self.judge.add_to_role_policy(
            iam.PolicyStatement(
                sid="FindKnownErrorTickets",
                actions=["ssm:DescribeOpsItems"],
                resources=["*"],
            )
        )
        acknowledge(
            self.judge.role,
            f"AwsSolutions-IAM5[Resource::{nag_text(self, opsitem_arn(self))}]",
            "OpsItem ids are assigned by CreateOpsItem; live known-error tickets are created in this account.",
        )
        acknowledge(
            self.judge.role,
            "AwsSolutions-IAM5[Resource::*]",
            "ssm:DescribeOpsItems has no resource-level permissions (finding an open known-error ticket).",
        )

    def check_grounding(self, guardrail_id: str) -> None:
        """Live answers are also scored by the service's guardrail's contextual grounding check (ApplyGuardrail on
        that guardrail only; the capture record names the version that answered)."""
        self.judge.add_to_role_policy(guardrail_statement(self, guardrail_id, sid="Grounding"))

    def watch_alias(self, alias: lambda_.Alias) -> None:
        """The judge reads the live alias' traffic weights to sample the canary arm at a comparable count."""
        self.judge.add_environment("SERVICE_FUNCTION_NAME", alias.version.lambda_.function_name)
        self.judge.add_environment("SERVICE_ALIAS", alias.alias_name)
        self.judge.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadLiveAliasWeights",
                actions=["lambda:GetAlias"],
                resources=[alias.function_arn],
            )
        )

    def grant_send(self, fn: lambda_.IFunction) -> None:
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="EnqueueCapture",
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn],
            )
        )
