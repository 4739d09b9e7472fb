"""Builds the CDK app from its context: typed settings -> pipeline stack (+ an optional dev service stack).

Shared by ``app.py`` and the infra tests, so what the tests synthesize is what ``cdk synth`` produces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from evalgate.engine.change_type import function_asset, layout, resolve_mode
from stacks.pipeline_stack import PipelineStack, PipelineStackProps
from stacks.service_stack import ServiceStack, ServiceStackProps
from stacks.settings import REPO_ROOT, DeploymentMode, Settings, load_settings, read_context

BUNDLING_STACKS = "aws:cdk:bundling-stacks"


@dataclass(frozen=True)
class BuiltApp:
    settings: Settings
    prod_mode: DeploymentMode
    pipeline: PipelineStack
    dev: ServiceStack | None


def environment(settings: Settings) -> Environment | None:
    """Account/Region from the context, else from the CLI (CDK_DEFAULT_*); None = environment-agnostic."""
    account = settings.account or os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = settings.region or os.environ.get("CDK_DEFAULT_REGION")
    if not account and not region:
        return None
    return Environment(account=account, region=region)


def build(app: App, *, nag: bool = True) -> BuiltApp:
    """Validate the settings and add every stack to ``app``. Raises ``SettingsError`` naming a bad setting."""
    settings = load_settings(read_context(app.node))
    if not settings.bundle and not app.node.children:
        # Offline synth: skip asset bundling (pip needs PyPI). Templates stay valid; deploy with -c bundle=true.
        app.node.set_context(BUNDLING_STACKS, [])
    env = environment(settings)
    roots, locations = layout(settings.service_code_root, settings.prompts_dir, settings.golden_dir)
    service = function_asset(settings.service_handler, repo=REPO_ROOT, code_roots=roots, locations=locations)
    prod_mode = resolve_mode(settings.deployment_mode, settings.changed_paths, service=service)
    pipeline = PipelineStack(
        app,
        "EvalGatePipeline",
        PipelineStackProps(settings=settings, prod_deployment_mode=prod_mode, stage_env=env),
        env=env,
        stack_name=f"{settings.project_name}-pipeline",
        description="EvalGate: quality-gated release pipeline for the GenAI service",
    )
    dev = None
    if settings.dev_stack:
        dev = ServiceStack(
            app,
            "EvalGateDev",
            ServiceStackProps(settings=settings, stage_name="Dev", deployment_mode="all-at-once"),
            env=env,
            stack_name=f"{settings.project_name}-dev-service",
            description="EvalGate service (Dev, deployed by hand)",
        )
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return BuiltApp(settings=settings, prod_mode=prod_mode, pipeline=pipeline, dev=dev)
