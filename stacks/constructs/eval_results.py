"""Where evaluation evidence lives: the eval-results bucket, report groups, the evaluation-job role, spend alarm.

``s3://<eval results>/``
    ``runs/<pipeline execution id>/``  report.html, summary.md, results.json, junit.xml of every gate run
    ``baselines/approved/``             results.json + commit.txt of the last APPROVED run (the next baseline)
    ``cache/evalgate-cache.sqlite``      the evaluation cache (generations, judgements, embeddings)
    ``bedrock-eval/``                    datasets and outputs of release-tier Bedrock evaluation jobs

The bucket is versioned (an overwritten baseline can be restored), KMS-encrypted, SSL-only and access-logged.
JUnit results go to CodeBuild report groups (Eval, LoadTest, SmokeEval). Evaluation spend is published per run
(``EvalGate/Pipeline EvalCostUSD``) and alarmed against the daily share of the monthly budget; an AWS Budgets
budget on the account's Bedrock model spend (``monthlyEvalBudgetUsd``) is the backstop: 80% actual and 100%
forecasted notify the pipeline topic.

Which spend that budget sees (see ``BEDROCK_SPEND_FILTER``): Bedrock's own models are billed as the service
"Amazon Bedrock", but third-party serverless models (Anthropic Claude among them) are AWS Marketplace
subscriptions -- "Access to all Amazon Bedrock foundation models is enabled by default with the correct AWS
Marketplace permissions" and invoking a third-party model "initiates the subscription process"
(https://docs.aws.amazon.com/bedrock/latest/userguide/model-access.html) -- and Marketplace charges carry the
billing entity "AWS Marketplace" ("Billing entity ... AWS Marketplace: Identifies a purchase in AWS Marketplace",
https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-create-filters.html), under the listing's own
service name rather than "Amazon Bedrock". A filter on
``Service = Amazon Bedrock`` alone would therefore miss the Claude spend this project generates. The budget
matches ``SERVICE = Amazon Bedrock`` OR ``BILLING_ENTITY = AWS Marketplace``: it may also count other Marketplace
subscriptions of the account (an early alert, never a silent one).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from evalgate.contracts.bucket import RUNS_PREFIX
from stacks.constructs.bedrock_access import acknowledge_profile_regions, model_statements, split_profile
from stacks.constructs.storage import BucketSpec, EncryptedStorage
from stacks.nag import acknowledge, nag_text

PIPELINE_NAMESPACE = "EvalGate/Pipeline"
BEDROCK_SERVICE = "Amazon Bedrock"
MARKETPLACE_BILLING_ENTITY = "AWS Marketplace"
EVAL_PREFIX = "bedrock-eval/"
REPORT_GROUPS = ("Eval", "LoadTest", "SmokeEval")


@dataclass(frozen=True)
class EvalResultsProps:
    project_name: str
    pipeline_name: str
    evaluation_job_models: list[str]  # models a release-tier Bedrock evaluation job may invoke
    topic: sns.ITopic
    monthly_budget_usd: float
    topic_key: kms.IKey | None = None  # the topic's KMS key (AWS Budgets needs to use it to publish)


# SERVICE = "Amazon Bedrock" (first-party models) OR BILLING_ENTITY = "AWS Marketplace" (third-party models such as
# Anthropic Claude, sold as Marketplace subscriptions): see the module docstring for the sources.
BEDROCK_SPEND_FILTER = budgets.CfnBudget.ExpressionProperty(
    or_=[
        budgets.CfnBudget.ExpressionProperty(
            dimensions=budgets.CfnBudget.ExpressionDimensionValuesProperty(
                key="SERVICE", values=[BEDROCK_SERVICE], match_options=["EQUALS"]
            )
        ),
        budgets.CfnBudget.ExpressionProperty(
            dimensions=budgets.CfnBudget.ExpressionDimensionValuesProperty(
                key="BILLING_ENTITY", values=[MARKETPLACE_BILLING_ENTITY], match_options=["EQUALS"]
            )
        ),
    ]
)


class EvalResults(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: EvalResultsProps) -> None:
        super().__init__(scope, construct_id)
        self.storage = EncryptedStorage(
            self,
            "Storage",
            description=f"{props.project_name}: evaluation results and pipeline artifacts",
            log_retention_days=365,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.key = self.storage.key
        self.bucket = self.storage.bucket(
            "Bucket",
            BucketSpec(
                purpose="evaluation reports, approved baselines and the evaluation cache",
                versioned=True,
                noncurrent_days=90,
                expire_prefixes={RUNS_PREFIX: 365},
            ),
        )
        self.artifacts = self.storage.bucket("Artifacts", BucketSpec(purpose="pipeline artifacts", expire_days=90))
        self.report_groups = {
            name: codebuild.ReportGroup(
                self, f"{name}Reports", type=codebuild.ReportGroupType.TEST, removal_policy=RemovalPolicy.DESTROY
            )
            for name in REPORT_GROUPS
        }
        self.evaluation_job_role = self._evaluation_job_role(props.evaluation_job_models)
        self.spend_alarm = self._spend_alarm(props)
        self.budget = self._budget(props)

    def _evaluation_job_role(self, models: list[str]) -> iam.Role:
        """Service role for Bedrock Model Evaluation jobs (release tier): reads/writes bedrock-eval/ only."""
        role = iam.Role(
            self,
            "EvaluationJobRole",
            assumed_by=iam.ServicePrincipal(
                "bedrock.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            ),
            description="Bedrock evaluation jobs of the release tier (LLM-as-a-judge over bedrock-eval/)",
        )
        # Per "Required service role permissions for creating a model evaluation job that uses a judge model"
        # (https://docs.aws.amazon.com/bedrock/latest/userguide/judge-service-roles.html): S3 GetObject, ListBucket,
        # PutObject, GetBucketLocation, AbortMultipartUpload, ListBucketMultipartUploads on the dataset/output
        # location; the judge job runs its inferences as model invocation jobs; inference profiles are resolved.
        stack = Stack.of(self)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="EvaluationData",
                actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[self.bucket.arn_for_objects(f"{EVAL_PREFIX}*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListEvaluationData",
                actions=["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                resources=[self.bucket.bucket_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="EvaluationDataKey",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self.key.key_arn],
            )
        )
        jobs = f"arn:{stack.partition}:bedrock:{stack.region}:{stack.account}:model-invocation-job/*"
        role.add_to_policy(
            iam.PolicyStatement(
                sid="EvaluationInvocationJobs",
                actions=[
                    "bedrock:CreateModelInvocationJob",
                    "bedrock:StopModelInvocationJob",
                    "bedrock:GetModelInvocationJob",
                ],
                resources=[jobs],
            )
        )
        profiles = [
            f"arn:{stack.partition}:bedrock:{stack.region}:{stack.account}:inference-profile/{m}"
            for m in models
            if not m.startswith("arn:") and split_profile(m)[0] is not None
        ]
        if profiles:
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="ResolveInferenceProfiles",
                    actions=["bedrock:GetInferenceProfile"],
                    resources=profiles,
                )
            )
        for statement in model_statements(self, models, sid="EvaluationJob", streaming=True):
            role.add_to_policy(statement)
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag_text(self, self.bucket.bucket_arn)}/bedrock-eval/*]",
            "Evaluation jobs read their dataset and write outputs with job-generated names under bedrock-eval/.",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag_text(self, jobs)}]",
            "Bedrock names the model invocation jobs an evaluation job starts; only this account and Region.",
        )
        acknowledge_profile_regions(role, models)
        return role

    def _spend_alarm(self, props: EvalResultsProps) -> cw.Alarm:
        daily = props.monthly_budget_usd / 30.0
        alarm = cw.Alarm(
            self,
            "SpendAlarm",
            alarm_name=f"{props.project_name}-eval-spend-daily",
            alarm_description=(
                f"Evaluation spend today exceeded the daily share ({daily:.2f} USD) of the "
                f"{props.monthly_budget_usd:g} USD monthly evaluation budget (monthlyEvalBudgetUsd)"
            ),
            metric=cw.Metric(
                namespace=PIPELINE_NAMESPACE,
                metric_name="EvalCostUSD",
                dimensions_map={"Pipeline": props.pipeline_name},
                statistic="Sum",
                period=Duration.days(1),
            ),
            threshold=round(daily, 4),
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(props.topic))
        return alarm

    def _budget(self, props: EvalResultsProps) -> budgets.CfnBudget:
        """Monthly Amazon Bedrock cost budget: 80% ACTUAL and 100% FORECASTED -> the pipeline topic."""
        topic = props.topic
        principal = iam.ServicePrincipal("budgets.amazonaws.com")
        source_account = {"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowBudgetsPublish",
                actions=["sns:Publish"],
                principals=[principal],
                resources=[topic.topic_arn],
                conditions=source_account,
            )
        )
        if props.topic_key is not None:
            props.topic_key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="AllowBudgetsToUseTopicKey",
                    actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                    principals=[principal],
                    resources=["*"],
                    conditions=source_account,
                )
            )

        def notify(notification_type: str, threshold: float) -> budgets.CfnBudget.NotificationWithSubscribersProperty:
            return budgets.CfnBudget.NotificationWithSubscribersProperty(
                notification=budgets.CfnBudget.NotificationProperty(
                    comparison_operator="GREATER_THAN",
                    notification_type=notification_type,
                    threshold=threshold,
                    threshold_type="PERCENTAGE",
                ),
                subscribers=[budgets.CfnBudget.SubscriberProperty(subscription_type="SNS", address=topic.topic_arn)],
            )

        budget = budgets.CfnBudget(
            self,
            "SpendBudget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=f"{props.project_name}-eval-bedrock-monthly",
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=props.monthly_budget_usd, unit="USD"),
                filter_expression=BEDROCK_SPEND_FILTER,
            ),
            notifications_with_subscribers=[notify("ACTUAL", 80), notify("FORECASTED", 100)],
        )
        budget.node.add_dependency(topic)
        return budget
