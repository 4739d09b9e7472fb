"""Shadow mode: sampled live requests replayed on the candidate, pairs stored for offline comparison.

service --(flag ``shadow_enabled``, ``shadow_sample_rate``)--> shadow queue (KMS, DLQ)
       --> shadow worker --(lambda:Invoke, qualifier ``shadow``, side effects off)--> service:shadow
       --> JSONL pairs (production vs shadow output, latency, tokens) in s3://<data bucket>/shadow/

The ``shadow`` alias points at the CANDIDATE: the version this deployment publishes (CloudFormation moves it with
the stack update), while ``live`` moves only through CodeDeploy. During a canary, requests answered by the previous
version are replayed on the candidate; requests the candidate answered itself (the canary arm, and all of them
once it is promoted and ``live`` = ``shadow``) are skipped by the worker (``evalgate.release.shadow.replay``,
which reads
the alias with ``lambda:GetAlias``), so no pair ever compares a version with itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.constructs.capture import encrypted_queue_pair
from stacks.constructs.lambda_bundle import FunctionSpec, LambdaBundle
from stacks.nag import acknowledge, nag_text

SHADOW_ALIAS = "shadow"
SHADOW_PREFIX = "shadow/"
WORKER_TIMEOUT = Duration.seconds(60)


@dataclass(frozen=True)
class ShadowProps:
    bundle: LambdaBundle
    key: kms.IKey
    data_bucket: s3.IBucket
    service_function: lambda_.IFunction
    service_version: lambda_.IVersion
    project: str
    stage: str


class Shadow(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: ShadowProps) -> None:
        super().__init__(scope, construct_id)
        self.alias = lambda_.Alias(self, "Alias", alias_name=SHADOW_ALIAS, version=props.service_version)
        self.queue, self.dlq = encrypted_queue_pair(
            self, "Queue", props.key, Duration.seconds(WORKER_TIMEOUT.to_seconds() * 6)
        )
        self.worker = props.bundle.function(
            self,
            "Worker",
            FunctionSpec(
                handler="handlers.shadow_worker.handler",
                description=f"{props.project} {props.stage}: replays mirrored requests on the shadow alias",
                environment={
                    "SHADOW_FUNCTION_NAME": props.service_function.function_name,
                    "SHADOW_QUALIFIER": SHADOW_ALIAS,
                    "SHADOW_BUCKET": props.data_bucket.bucket_name,
                    "SHADOW_PREFIX": SHADOW_PREFIX,
                },
                timeout=WORKER_TIMEOUT,
                memory_size=256,
            ),
        )
        self.worker.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=5,
                report_batch_item_failures=True,
                max_concurrency=2,  # shadow traffic must never starve the live alias of concurrency
            )
        )
        self.worker.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokeShadowAlias",
                actions=["lambda:InvokeFunction"],
                resources=[self.alias.function_arn],
            )
        )
        self.worker.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadShadowAlias",
                actions=["lambda:GetAlias"],
                resources=[self.alias.function_arn],
            )
        )
        self.worker.add_to_role_policy(
            iam.PolicyStatement(
                sid="WriteShadowPairs",
                actions=["s3:PutObject"],
                resources=[props.data_bucket.arn_for_objects(f"{SHADOW_PREFIX}*")],
            )
        )
        self.worker.add_to_role_policy(
            iam.PolicyStatement(
                sid="UseDataKey",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[props.key.key_arn],
            )
        )
        acknowledge(
            self.worker.role,
            f"AwsSolutions-IAM5[Resource::{nag_text(self, props.data_bucket.bucket_arn)}/{SHADOW_PREFIX}*]",
            "Shadow pairs are written under one prefix with generated object names (date/version/id).",
        )

    def grant_send(self, fn: lambda_.IFunction) -> None:
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="EnqueueShadow",
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn],
            )
        )
