"""The canary verdict before promotion: a judge that runs DURING the canary step and can stop it.

* ``handlers.canary_verdict`` runs every minute (EventBridge schedule). For each in-progress deployment of the
  group whose traffic shift has begun it judges the new version against the previous one
  (``evalgate.release.canary_live``) and publishes ``CanaryVerdict`` (1 = failed) with ``FunctionVersion`` = the new
  version; the final verdict is rendered ``VERDICT_LEAD_MINUTES`` before the step ends, and fails closed when
  too few judged answers have arrived.
* Three alarms join the deployment group's alarm list, so CodeDeploy stops and rolls back while only the canary
  share has seen the version: the verdict (Maximum >= 1), the judge's own errors, and the judge's heartbeat
  (fewer than one invocation in 3 minutes, missing data breaching: a judge that stopped running is not a pass).
  All three have static dimensions known before the deployment starts, so none is in ALARM merely because a new
  version has no data yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.constructs.lambda_bundle import FunctionSpec, LambdaBundle
from stacks.nag import acknowledge, nag_text

VERDICT_METRIC = "CanaryVerdict"  # evalgate.contracts.telemetry.CANARY_VERDICT
HEARTBEAT_MINUTES = 3


@dataclass(frozen=True)
class CanaryVerdictProps:
    bundle: LambdaBundle
    project: str
    stage: str
    namespace: str
    version: lambda_.IVersion  # the new version this stack deploys (the alarm's FunctionVersion)
    application: codedeploy.ILambdaApplication
    group: codedeploy.LambdaDeploymentGroup
    canary_interval_minutes: int
    min_judged_samples: int
    name_prefix: str
    total_regression_ms: float | None = None  # total answer time vs the previous version (as the canary hook)
    total_regression_pct: float | None = None


class CanaryVerdict(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: CanaryVerdictProps) -> None:
        super().__init__(scope, construct_id)
        self.function = props.bundle.function(
            self,
            "Judge",
            FunctionSpec(
                handler="handlers.canary_verdict.handler",
                description=f"{props.project} {props.stage}: canary vs previous version during the canary step",
                environment={
                    "CODEDEPLOY_APPLICATION": props.application.application_name,
                    "CANARY_INTERVAL_MINUTES": str(props.canary_interval_minutes),
                    "MIN_SAMPLES": str(props.min_judged_samples),
                    **({"TOTAL_REGRESSION_MS": f"{props.total_regression_ms:g}"} if props.total_regression_ms else {}),
                    **(
                        {"TOTAL_REGRESSION_PCT": f"{props.total_regression_pct:g}"}
                        if props.total_regression_pct
                        else {}
                    ),
                },
                timeout=Duration.seconds(50),  # below the one-minute schedule: runs never pile up
                memory_size=512,
                reserved_concurrency=2,
            ),
        )
        # By the application's name, not the group's: the group lists this function's alarms, so a reference
        # from the function to the group would be a cycle. The application has this one group.
        stack = Stack.of(self)
        app = props.application.application_name
        prefix = f"arn:{stack.partition}:codedeploy:{stack.region}:{stack.account}"
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ListGroups",
                actions=["codedeploy:ListDeploymentGroups"],
                resources=[f"{prefix}:application:{app}"],
            )
        )
        groups = f"{prefix}:deploymentgroup:{app}/*"
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadDeployments",
                actions=[
                    "codedeploy:ListDeployments",
                    "codedeploy:GetDeployment",
                    "codedeploy:ListDeploymentTargets",
                    "codedeploy:GetDeploymentTarget",
                ],
                resources=[groups],
            )
        )
        acknowledge(
            self.function.role,
            f"AwsSolutions-IAM5[Resource::{nag_text(self, groups)}]",  # type: ignore[arg-type]
            "Read-only on the deployment groups of this one CodeDeploy application (it has a single "
            "group, which cannot be named here: it lists this function's alarms).",
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadVersionMetrics",
                actions=["cloudwatch:GetMetricData"],
                resources=["*"],
            )
        )
        acknowledge(
            self.function.role,
            "AwsSolutions-IAM5[Resource::*]",  # type: ignore[arg-type]
            "cloudwatch:GetMetricData has no resource-level permissions (reads both versions' metrics).",
        )
        self.schedule = events.Rule(
            self,
            "EveryMinute",
            description=f"{props.name_prefix}: live canary verdict while a deployment is in progress",
            schedule=events.Schedule.rate(Duration.minutes(1)),
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )
        minute = Duration.minutes(1)
        self.verdict = cw.Alarm(
            self,
            "VerdictFailed",
            alarm_name=f"{props.name_prefix}-canary-verdict",
            alarm_description="The live canary judge failed the new version (or it collected too few judged answers "
            "by the end of the canary step): stop and roll back before promotion",
            metric=cw.Metric(
                namespace=props.namespace,
                metric_name=VERDICT_METRIC,
                dimensions_map={"FunctionVersion": props.version.version},
                statistic="Maximum",
                period=minute,
            ),
            threshold=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.errors = cw.Alarm(
            self,
            "JudgeErrors",
            alarm_name=f"{props.name_prefix}-canary-judge-errors",
            alarm_description="The live canary judge raised (it could not judge a deployment): fail closed",
            metric=self.function.metric_errors(period=minute, statistic="Sum"),
            threshold=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.heartbeat = cw.Alarm(
            self,
            "JudgeSilent",
            alarm_name=f"{props.name_prefix}-canary-judge-silent",
            alarm_description=f"The live canary judge has not run for {HEARTBEAT_MINUTES} minutes: nobody is judging "
            "the canary, so it must not promote",
            metric=self.function.metric_invocations(period=minute, statistic="Sum"),
            threshold=1,
            comparison_operator=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=HEARTBEAT_MINUTES,
            datapoints_to_alarm=HEARTBEAT_MINUTES,
            treat_missing_data=cw.TreatMissingData.BREACHING,
        )
        self.alarms: list[cw.Alarm] = [self.verdict, self.errors, self.heartbeat]
        for alarm in self.alarms:
            props.group.add_alarm(alarm)
