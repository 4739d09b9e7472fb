"""CodeDeploy traffic shifting on the ``live`` alias, with both lifecycle hooks and alarm rollback.

* ``canary`` mode: custom ``LambdaDeploymentConfig`` = time-based canary (``canaryPercent`` of the traffic for
  ``canaryIntervalMinutes``, then 100 %);  ``all-at-once`` mode: ``LambdaAllAtOnce`` (blue/green style).
* BeforeAllowTraffic (every mode): ``handlers.pre_traffic_hook`` runs the golden smoke subset against the NEW
  version only -- judged answers to known questions, which needs no live traffic.
* AfterAllowTraffic (``canary`` mode only): ``handlers.canary_analysis`` compares canary vs baseline (the AppSpec's
  CurrentVersion) on the bake window's per-version metrics and fails closed below ``MIN_SAMPLES`` judged answers,
  the same number as the minimum-sample alarm (``MIN_SAMPLES_ALARM``, readable by the hook), after waiting up to
  ``SAMPLE_GRACE_SECONDS`` for late judgements (capture queue + judge call + metric ingestion).
  An ``all-at-once`` deployment (Staging always; Prod for infrastructure-only changes) has no such hook: the new
  version has served no traffic when AfterAllowTraffic runs, so a live-sample check could never pass. Its checks
  are the pre-traffic smoke set and the rollback alarms (plus, in Staging, the pipeline's load test and smoke
  eval against the endpoint).
* Rollback alarms on the new version; auto-rollback on failed deployment, stopped deployment and alarm.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.constructs.bedrock_access import grant_models
from stacks.constructs.lambda_bundle import HOOK_GOLDEN, FunctionSpec, LambdaBundle
from stacks.nag import acknowledge, nag_text
from stacks.settings import DeploymentMode

PRE_HOOK_TIMEOUT = Duration.minutes(10)
POST_HOOK_TIMEOUT = Duration.minutes(15)


@dataclass(frozen=True)
class CanaryDeploymentProps:
    bundle: LambdaBundle
    project: str
    stage: str
    mode: DeploymentMode
    canary_percent: int
    canary_interval_minutes: int
    function: lambda_.Function
    version: lambda_.IVersion
    alias: lambda_.Alias
    rollback_alarms: list[cw.IAlarm]
    min_samples_alarm: cw.IAlarm | None  # required in canary mode (the canary analysis reads it)
    min_judged_samples: int
    judge_model_id: str
    embeddings_model_id: str
    sample_grace_seconds: int = 0
    # evalgate.core.latency: the smoke set's p95 TTFT (pre-traffic) and total time vs the previous version (canary)
    ttft_slo_ms: int | None = None
    total_regression_ms: int | None = None
    total_regression_pct: float | None = None


def _managed_policy_arn(scope: Construct) -> str:
    return f"arn:{Aws.PARTITION}:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited"


class CanaryDeployment(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: CanaryDeploymentProps) -> None:
        super().__init__(scope, construct_id)
        self.application = codedeploy.LambdaApplication(
            self, "Application", application_name=f"{props.project}-{props.stage.lower()}-service"
        )
        if props.mode == "canary":
            self.config: codedeploy.ILambdaDeploymentConfig = codedeploy.LambdaDeploymentConfig(
                self,
                "CanaryConfig",
                traffic_routing=codedeploy.TimeBasedCanaryTrafficRouting(
                    percentage=props.canary_percent,
                    interval=Duration.minutes(props.canary_interval_minutes),
                ),
            )
        else:
            self.config = codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE

        self.pre_hook = props.bundle.function(
            self,
            "PreTrafficHook",
            FunctionSpec(
                handler="handlers.pre_traffic_hook.handler",
                description=f"{props.project} {props.stage}: golden smoke set against the new version "
                "(BeforeAllowTraffic)",
                environment={
                    "TARGET_FUNCTION_NAME": props.function.function_name,
                    "TARGET_VERSION": props.version.version,
                    "SMOKE_CASES": f"/var/task/{HOOK_GOLDEN}#smoke",  # the hook asset holds goldenDir there
                    "EVALGATE_GOLDEN_DIR": f"/var/task/{HOOK_GOLDEN}",
                    "JUDGE_MODEL_ID": props.judge_model_id,
                    "EMBEDDINGS_MODEL_ID": props.embeddings_model_id,
                    **({"TTFT_SLO_MS": str(props.ttft_slo_ms)} if props.ttft_slo_ms is not None else {}),
                    **self._total_time_env(props),
                    # before the shift the alias still serves the previous version: the smoke prompts are timed on it
                    "BASELINE_QUALIFIER": props.alias.alias_name,
                },
                timeout=PRE_HOOK_TIMEOUT,
                memory_size=1024,
            ),
        )
        self.pre_hook.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokeNewVersionOnly",
                actions=["lambda:InvokeFunction"],
                resources=[props.version.function_arn],
            )
        )
        self.pre_hook.add_to_role_policy(
            iam.PolicyStatement(  # timing only: the same prompts, not scored
                # built from the function's ARN, not the alias's: the alias's update policy names this hook
                sid="TimePreviousVersion",
                actions=["lambda:InvokeFunction"],
                resources=[f"{props.function.function_arn}:{props.alias.alias_name}"],
            )
        )
        grant_models(self.pre_hook, self, [props.judge_model_id, props.embeddings_model_id], sid="Score")

        self.post_hook = self._canary_analysis_hook(props) if props.mode == "canary" else None

        self.group = codedeploy.LambdaDeploymentGroup(
            self,
            "Group",
            application=self.application,
            alias=props.alias,
            deployment_config=self.config,
            pre_hook=self.pre_hook,
            post_hook=self.post_hook,  # None in all-at-once mode: no AfterAllowTraffic hook
            alarms=props.rollback_alarms,
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
        )
        if self.post_hook is not None:
            # the baseline version comes from the deployment's AppSpec (CurrentVersion)
            self.post_hook.add_to_role_policy(
                iam.PolicyStatement(
                    sid="ReadDeploymentAppSpec",
                    actions=["codedeploy:GetDeployment"],
                    resources=[self.group.deployment_group_arn],
                )
            )
        acknowledge(
            self.group,
            f"AwsSolutions-IAM4[Policy::{nag_text(self, _managed_policy_arn(self))}]",
            "CodeDeploy's AWS-managed service-role policy for Lambda (UpdateAlias/GetAlias traffic shifting, "
            "DescribeAlarms, hook invocation): the documented minimum for Lambda deployment groups.",
        )
        for hook in (h for h in (self.pre_hook, self.post_hook) if h is not None):
            acknowledge(
                self.group,
                f"AwsSolutions-IAM5[Resource::{nag_text(self, hook.function_arn)}:*]",
                "CDK grants CodeDeploy lambda:InvokeFunction on this lifecycle hook and its qualified versions.",
            )

    def _canary_analysis_hook(self, props: CanaryDeploymentProps) -> lambda_.Function:
        """AfterAllowTraffic of a canary: new vs previous version on the bake window's judged live traffic."""
        if props.min_samples_alarm is None:
            raise ValueError("a canary deployment needs the minimum-sample alarm (QualityAlarms.min_samples)")
        hook = props.bundle.function(
            self,
            "CanaryAnalysisHook",
            FunctionSpec(
                handler="handlers.canary_analysis.handler",
                description=f"{props.project} {props.stage}: canary vs baseline statistics (AfterAllowTraffic)",
                environment={
                    "TARGET_FUNCTION_NAME": props.function.function_name,
                    "TARGET_VERSION": props.version.version,
                    "BAKE_MINUTES": str(props.canary_interval_minutes),
                    "MIN_SAMPLES": str(props.min_judged_samples),
                    "MIN_SAMPLES_ALARM": props.min_samples_alarm.alarm_name,
                    "SAMPLE_GRACE_SECONDS": str(props.sample_grace_seconds),
                    **self._total_time_env(props),
                },
                timeout=POST_HOOK_TIMEOUT,
                memory_size=512,
            ),
        )
        hook.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadMinSampleAlarm",
                actions=["cloudwatch:DescribeAlarms"],
                resources=[props.min_samples_alarm.alarm_arn],
            )
        )
        hook.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadVersionMetrics",
                actions=["cloudwatch:GetMetricData"],
                resources=["*"],
            )
        )
        acknowledge(
            hook.role,
            "AwsSolutions-IAM5[Resource::*]",  # type: ignore[arg-type]
            "cloudwatch:GetMetricData has no resource-level permissions (reads both versions' metrics).",
        )
        return hook

    @staticmethod
    def _total_time_env(props: CanaryDeploymentProps) -> dict[str, str]:
        """evalgate.core.latency's total-time tolerance for both hooks (unset: total time is reported, not gated)."""
        env = {}
        if props.total_regression_ms is not None:
            env["TOTAL_REGRESSION_MS"] = str(props.total_regression_ms)
        if props.total_regression_pct is not None:
            env["TOTAL_REGRESSION_PCT"] = f"{props.total_regression_pct:g}"
        return env
