"""The GenAI service: a Lambda (version + alias ``live``) behind an HTTP API.

The HTTP API integrates with the ``live`` alias, so CodeDeploy shifts real traffic between versions. The
function publishes a new version whenever its code, layers or configuration change (``current_version``).

Authentication (``ApiAuth``): ``none`` leaves every route anonymous (throttled at the stage); ``iam`` puts the
IAM authorizer (SigV4, ``execute-api:Invoke``) and ``jwt`` an OIDC/Cognito JWT authorizer (issuer + audience)
on every route, ``POST /ask`` and ``POST /feedback`` included: API Gateway refuses an unauthenticated call with
401/403 before the function runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.constructs.bedrock_access import grant_models
from stacks.constructs.lambda_bundle import FunctionSpec, LambdaBundle
from stacks.nag import acknowledge

LIVE_ALIAS = "live"
ACCESS_LOG_FORMAT = apigw.AccessLogFormat.json_with_standard_fields(
    caller=False,
    http_method=True,
    ip=True,
    protocol=True,
    request_time=True,
    resource_path=True,
    response_length=True,
    status=True,
    user=False,
)


@jsii.implements(apigwv2.IAccessLogSettings)
class AccessLogs:
    """HTTP API stage access logging (JSON, one line per request, includes the request id)."""

    def __init__(self, destination: apigwv2.IAccessLogDestination) -> None:
        self._destination = destination

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return ACCESS_LOG_FORMAT


@dataclass(frozen=True)
class ApiAuth:
    mode: str = "none"  # none | iam | jwt (stacks.settings.ApiAuth)
    jwt_issuer: str | None = None
    jwt_audience: tuple[str, ...] = ()

    def authorizer(self) -> apigwv2.IHttpRouteAuthorizer | None:
        if self.mode == "iam":
            return authorizers.HttpIamAuthorizer()
        if self.mode == "jwt":
            assert self.jwt_issuer and self.jwt_audience  # enforced by the settings
            return authorizers.HttpJwtAuthorizer("Jwt", self.jwt_issuer, jwt_audience=list(self.jwt_audience))
        return None


@dataclass(frozen=True)
class ServiceApiProps:
    bundle: LambdaBundle
    project: str
    stage: str
    generator_model_id: str
    model_ids: list[str]  # every model a flag variant may route to
    handler: str  # the service's Lambda entry point, "<module path>.<function>" (settings serviceHandler)
    prompt_version: str
    guardrail_id: str | None
    guardrail_version: str | None
    canary_token: str
    appconfig_application: str
    appconfig_environment: str
    appconfig_profile: str
    peak_rps: float
    log_retention: logs.RetentionDays
    log_key: kms.IKey  # access logs are encrypted with the stage's key
    auth: ApiAuth = ApiAuth()
    guardrail_grounding: bool = False  # the guardrail has a contextual grounding policy (captures name it)


class ServiceApi(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: ServiceApiProps) -> None:
        super().__init__(scope, construct_id)
        env = {
            "PROMPT_ID": props.prompt_version,
            "MODEL_ID": props.generator_model_id,
            "CANARY_TOKEN": props.canary_token,
            "APPCONFIG_APPLICATION": props.appconfig_application,
            "APPCONFIG_ENVIRONMENT": props.appconfig_environment,
            "APPCONFIG_PROFILE": props.appconfig_profile,
            "GUARDRAIL_ID": props.guardrail_id or "",
            "GUARDRAIL_VERSION": (props.guardrail_version or "DRAFT") if props.guardrail_id else "",
            "GUARDRAIL_GROUNDING": "true" if props.guardrail_id and props.guardrail_grounding else "",
            # Lambda active tracing still records each invocation; the X-Ray SDK would double the cold import.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        self.function = props.bundle.function(
            self,
            "Function",
            FunctionSpec(
                handler=props.handler,
                description=f"{props.project} {props.stage}: the gated service ({props.handler})",
                environment=env,
                timeout=Duration.seconds(29),  # HTTP API integration limit is 30 s
                memory_size=1024,
                tracing=True,
            ),
        )
        grant_models(
            self.function, self, props.model_ids, sid="Generate", guardrail_id=props.guardrail_id, streaming=True
        )
        acknowledge(
            self.function.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) support no resource-level scoping.",
        )
        self.version = self.function.current_version
        self.alias = lambda_.Alias(self, "Live", alias_name=LIVE_ALIAS, version=self.version)

        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=props.log_retention,
            encryption_key=props.log_key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        live = integrations.HttpLambdaIntegration("Live", self.alias)
        self.http_api = apigwv2.HttpApi(
            self,
            "Api",
            description=f"{props.project} {props.stage} service API (all routes -> Lambda alias '{LIVE_ALIAS}', "
            f"auth {props.auth.mode})",
            default_integration=live,
            default_authorizer=props.auth.authorizer(),
            create_default_stage=False,
        )
        # explicit routes, so an IAM policy can name them (execute-api ARN .../$default/POST/ask); every other
        # request still reaches the function through $default (same authorizer) for a clear 404/405
        for path in ("/ask", "/feedback"):
            self.http_api.add_routes(path=path, methods=[apigwv2.HttpMethod.POST], integration=live)
        rate = max(10, math.ceil(props.peak_rps * 3))  # room for the 1.5x-peak load test and bursts
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=rate, burst_limit=rate * 2),
            access_log_settings=AccessLogs(apigwv2.LogGroupLogDestination(access_logs)),
        )
        for route in self.http_api.node.find_all() if props.auth.mode == "none" else []:
            if isinstance(route, apigwv2.CfnRoute):
                acknowledge(
                    route,
                    "AwsSolutions-APIG4",
                    (
                        "apiAuth is 'none' (the setting's choice; synth warns for Prod): requests are anonymous "
                        "and throttled at the stage. Set apiAuth iam or jwt to authenticate every route."
                    ),
                )
        self.url = self.stage.url

    def allow_read_flags(self, policy_statements: list[iam.PolicyStatement]) -> None:
        """AppConfig permissions go into a separate policy: the function must not depend on the environment
        (whose monitors depend on the new version's alarms, which depend on the function)."""
        iam.Policy(self, "ReadFlags", statements=policy_statements, roles=[self.function.role])  # type: ignore[list-item]
