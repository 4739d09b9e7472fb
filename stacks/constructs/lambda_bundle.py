"""Lambda code and layers, built without Docker.

* code: one asset per function, exactly what it runs (``evalgate.engine.change_type.function_asset``): the import
  closure of its handler module inside the code roots (``lambdas/`` and the service's ``serviceCodeRoot``), the data
  files those modules declare, and the folders the handler reads at fixed places (``prompts/`` and
  ``golden/knowledge/``; the deployment hooks ``golden/`` for the smoke set), taken from wherever the settings keep
  them (``promptsDir``, ``goldenDir``). A local bundler implemented in Python (``ILocalBundling``) copies those
  files; the asset hash is computed from exactly those files, so a prompt or knowledge edit publishes a new version
  of the functions that ship it while a report, CLI or golden-case edit publishes none (the hooks ship the golden
  set).
* ``deps_layer``: ``requirements-lambda.txt`` installed with pip for ``manylinux aarch64 / cp313`` wheels only.
* ``powertools_layer``: the public Powertools v3 layer of EXACTLY the version ``requirements.txt`` pins
  (``aws-lambda-powertools==X``, the one place the version is written; CI's venv installs that pin, so the handler
  tests run against the Powertools that runs on Lambda). Its ARN is resolved at deploy time from the parameter AWS
  publishes per release, ``/aws/service/powertools/python/arm64/python3.13/X`` (Powertools docs, "Lambda Layer" /
  "SSM Parameter Store"); a version without a published parameter fails the deployment up front.

Layer order: files of a later layer overwrite an earlier layer's in ``/opt/python``, and with the
``@aws-cdk/aws-lambda:recognizeLayerVersion`` flag CDK sorts a function's layers by construct path (Deps before
Powertools), so the Powertools layer's bundled pydantic would win over the pinned one. ``function`` renders the
order explicitly: Powertools first, the deps layer LAST (``LAYER_ORDER``), so requirements-lambda.txt's packages
win wherever both layers ship a package.

When the stack is not in ``aws:cdk:bundling-stacks`` (unit tests, ``cdk synth`` without ``-c bundle=true``),
CDK skips the bundlers and still writes valid templates: the code keys are the same custom hashes.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import jsii
from aws_cdk import (
    AssetHashType,
    BundlingOptions,
    CfnRule,
    CfnRuleAssertion,
    DockerImage,
    Duration,
    Fn,
    ILocalBundling,
    RemovalPolicy,
)
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from evalgate.engine.change_type import CODE_ROOT, FunctionAsset, function_asset, layout
from stacks.nag import acknowledge
from stacks.settings import REPO_ROOT

PYTHON_VERSION = "3.13"
RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
PIP_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
POWERTOOLS_PACKAGE = "aws-lambda-powertools"
POWERTOOLS_PARAMETER = "/aws/service/powertools/python/arm64/python3.13/{version}"
LAYER_ORDER = ("powertools", "deps")  # later wins in /opt/python: our pinned dependencies last
TASK_ROOT = "/var/task"
HOOK_GOLDEN = "golden"  # where the hooks' assets hold the golden set (their REPOSITORY_DATA), whatever goldenDir is
RETENTION: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


@jsii.implements(ILocalBundling)
class AssetBundler:
    """Local bundling: copy exactly the files of one function's asset into the asset output directory."""

    def __init__(self, asset: FunctionAsset, repo_root: Path = REPO_ROOT) -> None:
        self.asset = asset
        self.repo_root = repo_root

    def try_bundle(self, output_dir: str, options: Any = None) -> bool:
        out = Path(output_dir)
        for src, dest in self.asset.files:
            target = out / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.repo_root / src, target)
        return True


@jsii.implements(ILocalBundling)
class PipLayerBundler:
    """Local bundling: ``pip install --platform manylinux*_aarch64 --only-binary=:all: --target <out>/python``."""

    def __init__(self, requirements: Path) -> None:
        self.requirements = requirements

    def try_bundle(self, output_dir: str, options: Any = None) -> bool:
        target = Path(output_dir) / "python"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "-r",
            str(self.requirements),
            "--target",
            str(target),
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            PYTHON_VERSION,
        ]
        for platform in PIP_PLATFORMS:
            cmd += ["--platform", platform]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                "Building the Lambda dependencies layer failed (pip needs network access to PyPI). "
                "Synthesize without bundling (omit -c bundle=true) when offline.\n" + result.stderr[-2000:]
            )
        # test suites shipped inside the numpy/scipy wheels are dead weight in the 250 MB unzipped budget
        for package in ("numpy", "scipy"):
            for tests in sorted((target / package).rglob("tests"), reverse=True):
                if tests.is_dir():
                    shutil.rmtree(tests, ignore_errors=True)
        return True


def powertools_version(requirements: Path = REPO_ROOT / "requirements.txt") -> str:
    """The exact Powertools version pinned in ``requirements.txt`` (``aws-lambda-powertools==X.Y.Z``)."""
    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.fullmatch(r"aws[-_]lambda[-_]powertools(\[[^\]]*\])?\s*(.*)", line, re.IGNORECASE)
        if m is None:
            continue
        pin = re.fullmatch(r"==\s*(\d+\.\d+\.\d+)", m.group(2).strip())
        if pin is None:
            raise ValueError(
                f"{requirements.name}: {POWERTOOLS_PACKAGE} must be pinned exactly (==X.Y.Z): the "
                f"Lambda layer is chosen by that version (got {line!r})"
            )
        return pin.group(1)
    raise ValueError(f"{requirements.name}: no {POWERTOOLS_PACKAGE}==X.Y.Z pin (it selects the Lambda layer)")


def powertools_parameter(version: str) -> str:
    return POWERTOOLS_PARAMETER.format(version=version)


def requirements_hash(requirements: Path) -> str:
    h = hashlib.sha256(requirements.read_bytes())
    h.update(f"{PYTHON_VERSION}|{'|'.join(PIP_PLATFORMS)}".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class FunctionSpec:
    """Typed props for one Lambda function built from the bundle."""

    handler: str  # "handlers.<module>.handler": its import closure is the function's code
    description: str
    environment: dict[str, str] = field(default_factory=dict)
    timeout: Duration = field(default_factory=lambda: Duration.seconds(30))
    memory_size: int = 1024
    tracing: bool = False
    reserved_concurrency: int | None = None


class LambdaBundle(Construct):
    """Code assets, layers and a factory for consistently configured functions (one role and log group each)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_retention_days: int,
        metrics_namespace: str,
        service_name: str,
        bundled: bool,
        log_key: kms.IKey | None = None,
        service_code_root: str = "lambdas",
        prompts_dir: str = "prompts",
        golden_dir: str = "golden",
    ) -> None:
        super().__init__(scope, construct_id)
        # where the settings keep the service's code and the data the functions read at fixed places
        self._code_roots, self._locations = layout(service_code_root, prompts_dir, golden_dir)
        self._log_key = log_key  # function log groups are encrypted with it (questions/answers may be logged)
        if not bundled:
            # An unbundled synth (the offline default) is valid, but its Lambda assets are the raw source
            # folders: make CloudFormation refuse to deploy it, before touching any resource, with the fix.
            CfnRule(
                self,
                "RequireBundledAssets",
                assertions=[
                    CfnRuleAssertion(
                        assert_=Fn.condition_equals("unbundled", "bundled"),
                        assert_description=(
                            "This template was synthesized without Lambda asset bundling (the offline default). "
                            "Deploy with: npx cdk deploy -c bundle=true <stack>"
                        ),
                    )
                ],
            )
        self._retention = RETENTION[log_retention_days]
        self._namespace = metrics_namespace
        self._service_name = service_name
        self._image = DockerImage.from_registry("public.ecr.aws/sam/build-python3.13")  # never pulled: local
        self._codes: dict[str, lambda_.Code] = {}
        self.assets: dict[str, FunctionAsset] = {}  # function construct path -> the asset it ships
        requirements = REPO_ROOT / "requirements-lambda.txt"
        self.deps_layer = lambda_.LayerVersion(
            self,
            "DepsLayer",
            description="evalgate runtime dependencies (requirements-lambda.txt, cp313 aarch64 wheels)",
            code=lambda_.Code.from_asset(
                # never read: the bundler installs from requirements-lambda.txt; a small folder keeps an
                # unbundled synth's asset small (its deployment is refused by RequireBundledAssets anyway)
                str(REPO_ROOT / "lambdas"),
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=requirements_hash(requirements),
                bundling=BundlingOptions(image=self._image, local=cast(ILocalBundling, PipLayerBundler(requirements))),
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )
        self.powertools_version = powertools_version()
        self.powertools_layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "PowertoolsLayer",
            ssm.StringParameter.value_for_string_parameter(self, powertools_parameter(self.powertools_version)),
        )

    def code(self, asset: FunctionAsset) -> lambda_.Code:
        """The code asset of one function: its files, hashed by content (functions shipping the same files share
        it)."""
        digest = asset.digest(REPO_ROOT)
        if digest not in self._codes:
            self._codes[digest] = lambda_.Code.from_asset(
                str(REPO_ROOT / CODE_ROOT),  # read only by an unbundled synth, whose deployment is refused
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=digest,
                bundling=BundlingOptions(image=self._image, local=cast(ILocalBundling, AssetBundler(asset, REPO_ROOT))),
            )
        return self._codes[digest]

    def function(self, scope: Construct, construct_id: str, spec: FunctionSpec) -> lambda_.Function:
        """A Python 3.13 arm64 function with its own role (no managed policies) and its own log group."""
        asset = function_asset(spec.handler, repo=REPO_ROOT, code_roots=self._code_roots, locations=self._locations)
        log_group = logs.LogGroup(
            scope,
            f"{construct_id}Logs",
            retention=self._retention,
            encryption_key=self._log_key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            scope,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{spec.description} (least privilege, no managed policies)",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteOwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        env = {
            "POWERTOOLS_SERVICE_NAME": self._service_name,
            "POWERTOOLS_METRICS_NAMESPACE": self._namespace,
            "EVALGATE_PROMPTS_DIR": f"{TASK_ROOT}/prompts",
            "EVALGATE_KNOWLEDGE_DIR": f"{TASK_ROOT}/golden/knowledge",
            **spec.environment,
        }
        fn = lambda_.Function(
            scope,
            construct_id,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=spec.handler,
            code=self.code(asset),
            layers=[self.powertools_layer, self.deps_layer],  # rendered in LAYER_ORDER below
            description=spec.description,
            environment=env,
            timeout=spec.timeout,
            memory_size=spec.memory_size,
            role=role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            tracing=lambda_.Tracing.ACTIVE if spec.tracing else lambda_.Tracing.DISABLED,
            reserved_concurrent_executions=spec.reserved_concurrency,
        )
        self.assets[fn.node.path] = asset
        layers = {"powertools": self.powertools_layer, "deps": self.deps_layer}
        cast(lambda_.CfnFunction, fn.node.default_child).add_property_override(
            "Layers", [layers[name].layer_version_arn for name in LAYER_ORDER]
        )
        acknowledge(
            fn,
            "AwsSolutions-L1",
            "Python 3.13 is pinned on purpose: the Powertools layer (python313-arm64) and the deps layer "
            "(cp313 aarch64 wheels) are built for it; runtime and both layers are upgraded together.",
        )
        return fn
