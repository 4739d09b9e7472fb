"""AppConfig: which prompt/model variant a user cohort gets, shadow mode and the capture rate.

* application ``<project>-<stage>``, environment ``<stage>`` whose monitors are the quality alarms (AppConfig
  rolls a flag deployment back when one fires; it reads them with its own role);
* a linear deployment strategy with a final bake;
* a hosted configuration profile ``flags`` whose JSON is built in Python (:mod:`stacks.feature_flags_model`)
  and validated at synth, plus a JSON-schema validator so a console edit is checked too. The profile type is
  ``AWS.Freeform``: Powertools rules (nested objects, MODULO_RANGE) cannot be expressed in the
  ``AWS.AppConfig.FeatureFlags`` type's flat attribute schema;
* the AWS-authored extension "AWS AppConfig deployment events to Amazon EventBridge"
  (``AWS.AppConfig.DeploymentNotificationsToEventBridge``, version 1) associated with the application: without it
  AppConfig sends NO deployment events to EventBridge, so the ``FlagsRolledBack`` rule (source ``aws.appconfig``,
  detail-type ``On Deployment Rollback``) would never fire. The notifier turns the rollback event into the
  explaining email. Source: https://docs.aws.amazon.com/appconfig/latest/userguide/
  working-with-appconfig-extensions-about-predefined-notification-eventbridge.html (action points
  ON_DEPLOYMENT_START, ON_DEPLOYMENT_COMPLETE, ON_DEPLOYMENT_ROLLED_BACK; default event bus only).

The service reads the flags by NAME (application/environment/profile), so its configuration does not depend on
these resources (the environment depends on alarms that depend on the new function version).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_appconfig as appconfig
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.feature_flags_model import FeatureFlagsConfig, validate_document

PROFILE_NAME = "flags"
EVENTBRIDGE_EXTENSION = "AWS.AppConfig.DeploymentNotificationsToEventBridge"
EVENTBRIDGE_EXTENSION_VERSION = 1

_VARIANT_SCHEMA = {
    "type": "object",
    "required": ["model_id", "prompt_id"],
    "properties": {"model_id": {"type": "string", "minLength": 1}, "prompt_id": {"type": "string", "minLength": 3}},
}
FLAG_JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "type": "object",
    "required": ["variant", "variants", "shadow", "shadow_sample_rate", "capture_sample_rate"],
    "properties": {
        "variant": {
            "type": "object",
            "required": ["default", "boolean_type"],
            "properties": {
                "default": {"type": "string"},
                "boolean_type": {"enum": [False]},
                "rules": {"type": "object"},
            },
        },
        "variants": {
            "type": "object",
            "required": ["default", "boolean_type"],
            "properties": {
                "default": {"type": "object", "minProperties": 1, "additionalProperties": _VARIANT_SCHEMA},
                "boolean_type": {"enum": [False]},
            },
        },
        "shadow": {"type": "object", "required": ["default"], "properties": {"default": {"type": "boolean"}}},
        "shadow_sample_rate": {
            "type": "object",
            "required": ["default", "boolean_type"],
            "properties": {"default": {"type": "number", "minimum": 0, "maximum": 1}},
        },
        "capture_sample_rate": {
            "type": "object",
            "required": ["default", "boolean_type"],
            "properties": {"default": {"type": "number", "minimum": 0, "maximum": 1}},
        },
    },
}


@dataclass(frozen=True)
class FeatureFlagsProps:
    application_name: str
    environment_name: str
    flags: FeatureFlagsConfig
    monitors: list[cw.IAlarm]
    deployment_minutes: int
    bake_minutes: int


class FeatureFlags(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: FeatureFlagsProps) -> None:
        super().__init__(scope, construct_id)
        self.document = props.flags.to_document()
        validate_document(self.document)
        if len(props.monitors) > 5:
            raise ValueError("AppConfig allows at most 5 monitors per environment")

        self.application = appconfig.Application(
            self,
            "Application",
            application_name=props.application_name,
            description="Feature flags of the evalgate service (variants per cohort, shadow, capture)",
        )
        self.monitor_role = iam.Role(
            self,
            "MonitorRole",
            assumed_by=iam.ServicePrincipal("appconfig.amazonaws.com"),
            description="Lets AppConfig read the quality alarms that roll a flag deployment back",
        )
        self.monitor_role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadQualityAlarms",
                actions=["cloudwatch:DescribeAlarms"],
                resources=[a.alarm_arn for a in props.monitors],
            )
        )
        self.environment = appconfig.Environment(
            self,
            "Environment",
            application=self.application,
            environment_name=props.environment_name,
            description="Flag environment rolled back by the quality alarms",
            monitors=[appconfig.Monitor.from_cloud_watch_alarm(a, self.monitor_role) for a in props.monitors],
        )
        self.strategy = appconfig.DeploymentStrategy(
            self,
            "Strategy",
            description="Linear flag rollout with a bake; the environment's alarms roll it back",
            rollout_strategy=appconfig.RolloutStrategy.linear(
                growth_factor=20,
                deployment_duration=Duration.minutes(props.deployment_minutes),
                final_bake_time=Duration.minutes(props.bake_minutes),
            ),
        )
        self.profile = appconfig.HostedConfiguration(
            self,
            "Flags",
            application=self.application,
            name=PROFILE_NAME,
            description="Powertools FeatureFlags document (validated at synth)",
            type=appconfig.ConfigurationType.FREEFORM,
            content=appconfig.ConfigurationContent.from_inline_json(json.dumps(self.document, sort_keys=True)),
            validators=[appconfig.JsonSchemaValidator.from_inline(json.dumps(FLAG_JSON_SCHEMA))],
            deployment_strategy=self.strategy,
            deploy_to=[self.environment],
        )
        stack = Stack.of(self)
        self.events_to_eventbridge = appconfig.CfnExtensionAssociation(
            self,
            "DeploymentEventsToEventBridge",
            extension_identifier=(
                f"arn:{stack.partition}:appconfig:{stack.region}::extension/"
                f"{EVENTBRIDGE_EXTENSION}/{EVENTBRIDGE_EXTENSION_VERSION}"
            ),
            resource_identifier=self.application.application_arn,
        )

    def read_statements(self) -> list[iam.PolicyStatement]:
        """What the service needs to read its flags (appconfigdata session + latest configuration)."""
        stack = Stack.of(self)
        arn = (
            f"arn:{stack.partition}:appconfig:{stack.region}:{stack.account}:application/"
            f"{self.application.application_id}/environment/{self.environment.environment_id}/configuration/"
            f"{self.profile.configuration_profile_id}"
        )
        return [
            iam.PolicyStatement(
                sid="ReadFeatureFlags",
                actions=["appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration"],
                resources=[arn],
            )
        ]
