"""The service stack: the GenAI service and everything that watches it. Thin: it composes constructs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from aws_cdk import Annotations, CfnOutput, Environment, RemovalPolicy, Stack, Stage
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from constructs import Construct

from stacks.constructs.canary_deployment import CanaryDeployment, CanaryDeploymentProps
from stacks.constructs.canary_verdict import CanaryVerdict, CanaryVerdictProps
from stacks.constructs.capture import JUDGED_PREFIX, Capture, CaptureProps
from stacks.constructs.dashboard import DashboardProps, QualityDashboard
from stacks.constructs.feature_flags import PROFILE_NAME, FeatureFlags, FeatureFlagsProps
from stacks.constructs.guardrail import Guardrail
from stacks.constructs.idempotency import IdempotencyTable
from stacks.constructs.lambda_bundle import RETENTION, LambdaBundle
from stacks.constructs.notifications import Explainable, Notifications, NotificationsProps
from stacks.constructs.quality_alarms import NAMESPACE, QualityAlarms, QualityAlarmsProps
from stacks.constructs.request_trust import RequestTrust, RequestTrustProps
from stacks.constructs.service_api import ApiAuth, ServiceApi, ServiceApiProps
from stacks.constructs.shadow import Shadow, ShadowProps
from stacks.constructs.storage import BucketSpec, EncryptedStorage
from stacks.settings import API_AUTH_NONE_EXPOSES, DeploymentMode, Settings, load_guardrail

ENDPOINT_OUTPUT = "ServiceEndpoint"


@dataclass(frozen=True)
class ServiceStackProps:
    settings: Settings
    stage_name: str  # "Staging", "Prod", "Dev"
    deployment_mode: DeploymentMode


def canary_token(project: str, stage: str) -> str:
    """A per-stage marker planted in the system prompt; seeing it in an answer proves a prompt leak."""
    digest = hashlib.sha256(f"{project}/{stage}/canary".encode()).hexdigest().upper()
    return f"CANARY-{digest[:4]}-{digest[4:8]}"


class ServiceStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, props: ServiceStackProps, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        s = props.settings
        stage = props.stage_name
        prefix = f"{s.project_name}-{stage.lower()}"
        token = canary_token(s.project_name, stage)
        alarms_cfg = s.alarm_thresholds
        retention = RETENTION[s.log_retention_days]

        storage = EncryptedStorage(
            self,
            "Storage",
            description=f"{prefix}: captures, judged records, shadow pairs, votes, their queues and log groups",
            log_retention_days=s.data_retention_days,
            removal_policy=RemovalPolicy.DESTROY if stage != "Prod" else RemovalPolicy.RETAIN,
        )
        storage.allow_log_encryption()
        bundle = LambdaBundle(
            self,
            "Bundle",
            log_retention_days=s.log_retention_days,
            metrics_namespace=NAMESPACE,
            service_name=s.project_name,
            bundled=s.bundle,
            log_key=storage.key,
            service_code_root=s.service_code_root,
            prompts_dir=s.prompts_dir,
            golden_dir=s.golden_dir,
        )
        trust = RequestTrust(
            self,
            "RequestTrust",
            RequestTrustProps(
                project=s.project_name,
                stage=stage,
                key=storage.key,
                feedback_window_minutes=s.feedback_window_minutes,
                signing_grace_minutes=s.signing_grace_minutes,
                rotation_days=s.signing_rotation_days,
                bundle=bundle,
                removal_policy=RemovalPolicy.DESTROY if stage != "Prod" else RemovalPolicy.RETAIN,
            ),
        )
        data_bucket = storage.bucket(
            "DataBucket",
            BucketSpec(
                purpose="captures, judged records and shadow pairs",
                expire_days=s.data_retention_days,
            ),
        )
        alerts = Notifications(
            self,
            "Alerts",
            NotificationsProps(
                email=s.notification_email,
                topic_name=f"{prefix}-alerts",
                display_name=f"EvalGate {stage}",
                bundle=bundle,
                extra_environment={"JUDGED_BUCKET": data_bucket.bucket_name, "JUDGED_PREFIX": JUDGED_PREFIX},
            ),
        )

        capture = Capture(
            self,
            "Capture",
            CaptureProps(
                bundle=bundle,
                key=storage.key,
                data_bucket=data_bucket,
                judge_model_id=s.judge_model_id,
                canary_token=token,
                project=s.project_name,
                stage=stage,
            ),
        )
        if s.known_error_tickets == "opscenter":
            capture.open_tickets()
        application_name = prefix
        guardrail_id, guardrail_version = s.guardrail_id, s.guardrail_version
        grounding = False
        if s.guardrail_config is not None:
            spec = load_guardrail(s.guardrail_config)
            guardrail = Guardrail(self, "Guardrail", spec=spec, name=f"{prefix}-{spec.name}")
            guardrail_id, guardrail_version = guardrail.guardrail_id, guardrail.guardrail_version
            grounding = spec.grounding.grounding is not None or spec.grounding.relevance is not None
            if grounding:
                capture.check_grounding(guardrail_id)
        service = ServiceApi(
            self,
            "Service",
            ServiceApiProps(
                bundle=bundle,
                project=s.project_name,
                stage=stage,
                generator_model_id=s.generator_model_id,
                model_ids=s.service_model_ids,
                handler=s.service_handler,
                prompt_version=s.prompt_version,
                guardrail_id=guardrail_id,
                guardrail_version=guardrail_version,
                canary_token=token,
                appconfig_application=application_name,
                appconfig_environment=stage,
                appconfig_profile=PROFILE_NAME,
                peak_rps=s.peak_rps,
                log_retention=retention,
                log_key=storage.key,
                auth=ApiAuth(s.api_auth, s.api_jwt_issuer, tuple(s.api_jwt_audience or ())),
                guardrail_grounding=grounding,
            ),
        )
        if stage == "Prod" and s.api_auth == "none":
            Annotations.of(service).add_warning_v2(
                "evalgate:apiAuthNone",
                f"apiAuth: {API_AUTH_NONE_EXPOSES}. Set apiAuth iam or jwt (apiAuthStrict true makes this an error).",
            )
        shadow = Shadow(
            self,
            "Shadow",
            ShadowProps(
                bundle=bundle,
                key=storage.key,
                data_bucket=data_bucket,
                service_function=service.function,
                service_version=service.version,
                project=s.project_name,
                stage=stage,
            ),
        )
        service.function.add_environment("CAPTURE_QUEUE_URL", capture.queue.queue_url)
        service.function.add_environment("SHADOW_QUEUE_URL", shadow.queue.queue_url)
        capture.grant_send(service.function)
        shadow.grant_send(service.function)
        storage.grant_key(service.function, encrypt=True, decrypt=True)
        for name, value in trust.environment.items():
            service.function.add_environment(name, value)
        trust.grant_signing(service.function)
        trust.grant_votes(service.function)

        alarms = QualityAlarms(
            self,
            "QualityAlarms",
            QualityAlarmsProps(
                version=service.version,
                thresholds=alarms_cfg,
                ttft_slo_ms=s.ttft_slo_ms,
                min_judged_samples=s.min_judged_samples if props.deployment_mode == "canary" else None,
                window_minutes=s.canary_interval_minutes,
                name_prefix=prefix,
            ),
        )
        flags = FeatureFlags(
            self,
            "FeatureFlags",
            FeatureFlagsProps(
                application_name=application_name,
                environment_name=stage,
                flags=s.flags,
                monitors=list(alarms.rollback_alarms),
                deployment_minutes=s.canary_interval_minutes,
                bake_minutes=s.canary_interval_minutes,
            ),
        )
        service.allow_read_flags(flags.read_statements())

        canary = CanaryDeployment(
            self,
            "Deployment",
            CanaryDeploymentProps(
                bundle=bundle,
                project=s.project_name,
                stage=stage,
                mode=props.deployment_mode,
                canary_percent=s.canary_percent,
                canary_interval_minutes=s.canary_interval_minutes,
                function=service.function,
                version=service.version,
                alias=service.alias,
                rollback_alarms=list(alarms.rollback_alarms),
                min_samples_alarm=alarms.min_samples,
                min_judged_samples=s.min_judged_samples,
                sample_grace_seconds=s.sample_grace_seconds,
                judge_model_id=s.judge_model_id,
                embeddings_model_id=s.embeddings_model_id,
                ttft_slo_ms=s.ttft_slo_ms,
                total_regression_ms=s.total_regression_ms,
                total_regression_pct=s.total_regression_pct,
            ),
        )
        canary.pre_hook.add_environment("EVALGATE_SIGNING_SECRET", trust.secret.secret_arn)  # smoke = synthetic
        trust.grant_signing(canary.pre_hook, sid="SignSyntheticTraffic")
        verdict_alarms: list[cw.Alarm] = []
        if props.deployment_mode == "canary":
            live = CanaryVerdict(
                self,
                "CanaryVerdict",
                CanaryVerdictProps(
                    bundle=bundle,
                    project=s.project_name,
                    stage=stage,
                    namespace=NAMESPACE,
                    version=service.version,
                    application=canary.application,
                    group=canary.group,
                    canary_interval_minutes=s.canary_interval_minutes,
                    min_judged_samples=s.min_judged_samples,
                    name_prefix=prefix,
                    total_regression_ms=s.total_regression_ms,
                    total_regression_pct=s.total_regression_pct,
                ),
            )
            verdict_alarms = list(live.alarms)
        capture.watch_alias(service.alias)
        # at-least-once consumers: judge once per capture, replay once per mirrored request, hooks once per execution
        idempotency = IdempotencyTable(self, "Idempotency")
        for fn in (capture.judge, shadow.worker, canary.pre_hook, canary.post_hook):
            if fn is not None:  # no canary analysis hook in an all-at-once deployment
                idempotency.attach(fn)
        alerts.allow_explaining(
            Explainable(
                deployment_group_arn=canary.group.deployment_group_arn,
                function=service.function,
                alarms=[*alarms.all_alarms, *verdict_alarms],
                judge_log_group=capture.judge.log_group,
                data_bucket=data_bucket,
                data_key=storage.key,
                judged_prefix=JUDGED_PREFIX,
                appconfig_application_id=flags.application.application_id,
                appconfig_environment_id=flags.environment.environment_id,
                appconfig_profile_id=flags.profile.configuration_profile_id,
            )
        )

        alerts.route(
            "DeploymentFailed",
            description="CodeDeploy deployment FAILURE/STOP (rollback) -> notifier",
            pattern=events.EventPattern(
                source=["aws.codedeploy"],
                detail_type=["CodeDeploy Deployment State-change Notification"],
                detail={
                    "state": ["FAILURE", "STOP"],
                    "application": [canary.application.application_name],
                    "deploymentGroup": [canary.group.deployment_group_name],
                },
            ),
        )
        alerts.route(
            "FlagsRolledBack",
            description="AppConfig flag deployment rolled back -> notifier",
            pattern=events.EventPattern(source=["aws.appconfig"], detail_type=["On Deployment Rollback"]),
        )

        QualityDashboard(
            self,
            "Dashboard",
            DashboardProps(
                dashboard_name=f"{prefix}-quality",
                namespace=NAMESPACE,
                alarms=[*alarms.all_alarms, *verdict_alarms],
                period_minutes=alarms_cfg.period_minutes,
            ),
        )

        self.endpoint = CfnOutput(
            self, ENDPOINT_OUTPUT, value=service.url, description="Service HTTP API base URL; POST /ask, POST /feedback"
        )
        self.service = service
        self.alarms = alarms
        self.deployment = canary
        self.flags = flags
        self.alerts = alerts


class ServiceStage(Stage):
    """A deployable copy of the service (Staging, Prod) for the pipeline."""

    def __init__(
        self, scope: Construct, construct_id: str, *, props: ServiceStackProps, env: Environment | None = None
    ) -> None:
        super().__init__(scope, construct_id, env=env)
        self.stack = ServiceStack(
            self,
            "Service",
            props,
            stack_name=f"{props.settings.project_name}-{props.stage_name.lower()}-service",
            description=f"EvalGate service ({props.stage_name})",
        )
