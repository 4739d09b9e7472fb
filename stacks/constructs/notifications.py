"""Alerts: a KMS-encrypted, SSL-only SNS topic with the email subscription, and the notifier Lambda.

EventBridge rules (added with :meth:`Notifications.route`) deliver CodeDeploy FAILURE/STOP, AppConfig rollback
and CodePipeline failure events to the notifier, which writes one explanatory email per event id (Powertools
idempotency table) to the topic. Targets retry for 2 hours and park undeliverable events in a KMS-encrypted DLQ;
the same DLQ is the notifier's on-failure destination for events it failed to send after async retries.
"""

from __future__ import annotations

from dataclasses import dataclass

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.constructs.idempotency import IdempotencyTable
from stacks.constructs.lambda_bundle import FunctionSpec, LambdaBundle
from stacks.nag import acknowledge, nag_text


@jsii.implements(lambda_.IDestination)
class _DeadLetters:
    """On-failure destination: the encrypted DLQ. Only sqs:SendMessage is granted here; the notifier already
    holds kms:GenerateDataKey on the queue's key (CDK's SqsDestination would add kms:ReEncrypt* and wildcards)."""

    def __init__(self, queue: sqs.IQueue) -> None:
        self.queue = queue

    def bind(
        self, scope: Construct, fn: lambda_.IFunction, *, type: lambda_.DestinationType | None = None
    ) -> lambda_.DestinationConfig:
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="DeadLetterFailedEvents",
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn],
            )
        )
        return lambda_.DestinationConfig(destination=self.queue.queue_arn)


@dataclass(frozen=True)
class Explainable:
    """What the notifier may read to explain a rollback (all read-only, all named)."""

    deployment_group_arn: str
    function: lambda_.IFunction
    alarms: list[cw.IAlarm]
    judge_log_group: logs.ILogGroup
    data_bucket: s3.IBucket
    data_key: kms.IKey
    judged_prefix: str
    appconfig_application_id: str
    appconfig_environment_id: str
    appconfig_profile_id: str


@dataclass(frozen=True)
class NotificationsProps:
    email: str
    topic_name: str
    display_name: str
    bundle: LambdaBundle
    extra_environment: dict[str, str] | None = None


class Notifications(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: NotificationsProps) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "TopicKey",
            description=f"Encrypts the {props.topic_name} SNS topic and the notifier dead-letter queue",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=props.topic_name,
            display_name=props.display_name,
            master_key=self.key,
            enforce_ssl=True,
        )
        self.topic.add_subscription(subs.EmailSubscription(props.email))

        self.dead_letters = sqs.Queue(
            self,
            "EventsDlq",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            self.dead_letters,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter queue of the EventBridge -> notifier targets.",
        )
        # EventBridge writes undeliverable events to the encrypted DLQ
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowEventBridgeToUseKeyForDlq",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                resources=["*"],
            )
        )
        self.idempotency = IdempotencyTable(self, "Idempotency")
        self.notifier = props.bundle.function(
            self,
            "Notifier",
            FunctionSpec(
                handler="handlers.notifier.handler",
                description="Explains rollbacks and pipeline failures in one email per event",
                environment={
                    "TOPIC_ARN": self.topic.topic_arn,
                    **(props.extra_environment or {}),
                },
                timeout=Duration.seconds(60),
                memory_size=512,
            ),
        )
        self.notifier.add_to_role_policy(
            iam.PolicyStatement(
                sid="PublishAlerts",
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
            )
        )
        self.notifier.add_to_role_policy(
            iam.PolicyStatement(
                sid="EncryptForTopic",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[self.key.key_arn],
            )
        )
        self.idempotency.attach(self.notifier)
        # An event the notifier cannot use is logged and dropped (it never raises for those); one it could not
        # send after Lambda's async retries (SNS down) is dead-lettered with its error, not lost.
        self.notifier.configure_async_invoke(
            on_failure=_DeadLetters(self.dead_letters),
            retry_attempts=2,
            max_event_age=Duration.hours(6),
        )

    def allow_explaining(self, x: Explainable) -> None:
        """Read access for the email's evidence: deployment, version config, alarms, metrics, worst judged
        examples (Logs Insights on the judge's log group, judged records in S3) and the AppConfig deployment."""
        stack = Stack.of(self)
        fn = self.notifier
        fn.add_environment("JUDGE_LOG_GROUP", x.judge_log_group.log_group_name)
        app = f"arn:{stack.partition}:appconfig:{stack.region}:{stack.account}:application/{x.appconfig_application_id}"
        for statement in (
            iam.PolicyStatement(
                sid="ReadDeployment",
                actions=["codedeploy:GetDeployment", "codedeploy:GetDeploymentGroup"],
                resources=[x.deployment_group_arn],
            ),
            iam.PolicyStatement(
                sid="ReadVersionConfig",
                actions=["lambda:GetFunctionConfiguration"],
                resources=[x.function.function_arn, f"{x.function.function_arn}:*"],
            ),
            iam.PolicyStatement(
                sid="ReadAlarms", actions=["cloudwatch:DescribeAlarms"], resources=[a.alarm_arn for a in x.alarms]
            ),
            iam.PolicyStatement(sid="ReadMetrics", actions=["cloudwatch:GetMetricData"], resources=["*"]),
            iam.PolicyStatement(
                sid="QueryJudgeLogs", actions=["logs:StartQuery"], resources=[x.judge_log_group.log_group_arn]
            ),
            iam.PolicyStatement(sid="ReadQueryResults", actions=["logs:GetQueryResults"], resources=["*"]),
            iam.PolicyStatement(
                sid="ListJudgedRecords",
                actions=["s3:ListBucket"],
                resources=[x.data_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{x.judged_prefix}*"]}},
            ),
            iam.PolicyStatement(
                sid="ReadJudgedRecords",
                actions=["s3:GetObject"],
                resources=[x.data_bucket.arn_for_objects(f"{x.judged_prefix}*")],
            ),
            iam.PolicyStatement(sid="DecryptJudgedRecords", actions=["kms:Decrypt"], resources=[x.data_key.key_arn]),
            iam.PolicyStatement(
                sid="ReadFlagDeployment",
                actions=["appconfig:GetDeployment", "appconfig:GetHostedConfigurationVersion"],
                resources=[
                    f"{app}/environment/{x.appconfig_environment_id}/deployment/*",
                    f"{app}/configurationprofile/{x.appconfig_profile_id}/hostedconfigurationversion/*",
                ],
            ),
        ):
            fn.add_to_role_policy(statement)
        role = fn.role
        for finding, reason in (
            ("Resource::*", "cloudwatch:GetMetricData and logs:GetQueryResults have no resource-level permissions."),
            (
                f"Resource::{nag_text(self, x.function.function_arn)}:*",
                "GetFunctionConfiguration of the rolled-back version: qualified ARNs of this one function.",
            ),
            (
                f"Resource::{nag_text(self, x.data_bucket.bucket_arn)}/{x.judged_prefix}*",
                "The worst judged examples are read from the judge's records under one prefix.",
            ),
            (
                f"Resource::{nag_text(self, app)}/environment/"
                f"{nag_text(self, x.appconfig_environment_id)}/deployment/*",
                "AppConfig deployment numbers of this environment are assigned at deployment time.",
            ),
            (
                f"Resource::{nag_text(self, app)}/configurationprofile/{nag_text(self, x.appconfig_profile_id)}"
                "/hostedconfigurationversion/*",
                "Hosted configuration version numbers of the flags profile are assigned at deployment time.",
            ),
        ):
            acknowledge(role, f"AwsSolutions-IAM5[{finding}]", reason)  # type: ignore[arg-type]

    def allow_service_publish(self, service: str) -> None:
        """Let an AWS service (e.g. ``cloudwatch.amazonaws.com``) publish to the encrypted topic."""
        principal = iam.ServicePrincipal(service)
        self.topic.grant_publish(principal)
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid=f"Allow{service.split('.')[0].title()}ToUseTopicKey",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                principals=[principal],
                resources=["*"],
            )
        )

    def route(self, construct_id: str, *, description: str, pattern: events.EventPattern) -> events.Rule:
        """An EventBridge rule delivering matching events to the notifier (with retries and a DLQ)."""
        return events.Rule(
            self,
            construct_id,
            description=description,
            event_pattern=pattern,
            targets=[
                targets.LambdaFunction(
                    self.notifier,
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=8,
                    max_event_age=Duration.hours(2),
                )
            ],
        )
