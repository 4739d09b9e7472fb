"""Reusable pipeline steps (CodeBuildStep subclasses) that run ``evalgate`` in CodeBuild.

* :class:`EvalGateStep`   - the quality gate (``evalgate ci run``): golden regression + judge +
  guardrail/injection suites vs the last approved baseline; JUnit into a report group; resolves the approval.
* :class:`ShardedEvalGateStep` - the same gate fanned out (``evalShards`` > 1): a CodeBuild batch build of
  N ``--shard k/N`` builds and one ``evalgate merge`` build.
* :class:`PromoteBaselineStep` - after the approval: this run's ``results.json`` becomes the next baseline.
* :class:`LoadTestStep`   - ``evalgate load`` at 1.5x peak against a deployed endpoint (p95 SLO gate).
* :class:`SmokeEvalStep`  - ``evalgate run --tier smoke`` against a deployed endpoint.

Every step installs ``requirements.txt`` and the ``evalgate`` package from the source checkout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jsii
from aws_cdk import ArnFormat, Duration, Stack, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline_actions as codepipeline_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import IConstruct

from evalgate.contracts.bucket import (
    BASELINE_PREFIX,
    CACHE_PREFIX,
    CALIBRATION_PREFIX,
    HISTORY_PREFIX,
    RUNS_PREFIX,
    shard_cache_key,
)
from evalgate.contracts.events import GATE_SOURCE
from stacks.constructs.bedrock_access import guardrail_statement, model_statements
from stacks.nag import acknowledge, nag_text

INSTALL = [
    "python3 -m pip install --quiet --upgrade pip",
    "python3 -m pip install --quiet -r requirements.txt",
    "python3 -m pip install --quiet --no-deps -e .",  # the `evalgate` command (package under lambdas/)
]
EVAL_OUT = "out/eval"
GATE_COMMAND = "python3 -m evalgate.ci"  # evalgate.ci.gate_step (installed by INSTALL; `evalgate ci` for people)


def junit_reports(report_group_arn: str, base_directory: str, files: list[str] | None = None) -> dict[str, Any]:
    """The ``reports`` section of a buildspec: JUnit XML into an explicit CodeBuild report group."""
    return {
        report_group_arn: {
            "files": files or ["junit.xml"],
            "base-directory": base_directory,
            "file-format": "JUNITXML",
            "discard-paths": "yes",
        }
    }


def report_group_statement(report_group_arn: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid="WriteTestReports",
        actions=["codebuild:CreateReport", "codebuild:UpdateReport", "codebuild:BatchPutTestCases"],
        resources=[report_group_arn],
    )


def _python_runtime() -> dict[str, Any]:
    return {"phases": {"install": {"runtime-versions": {"python": "3.12"}}}}


@dataclass(frozen=True)
class EvalGateProps:
    input: pipelines.IFileSetProducer
    report_group_arn: str
    env: dict[str, str]
    policy: list[iam.PolicyStatement]
    timeout: Duration = field(default_factory=lambda: Duration.minutes(90))


class EvalGateStep(pipelines.CodeBuildStep):
    """``evalgate run --tier auto|release --candidate bedrock --baseline <last approved results.json>``.

    Exit code handling lives in ``evalgate.ci.gate_step``: 0 PASS -> approve the manual approval
    (PutApprovalResult) and continue; 3 REVIEW -> publish the report link to SNS and leave the approval waiting;
    1 FAIL / 4 ERROR / 2 usage -> reject the approval and fail this action.
    """

    def __init__(self, step_id: str, props: EvalGateProps) -> None:
        super().__init__(
            step_id,
            input=props.input,
            install_commands=INSTALL,
            commands=[f"{GATE_COMMAND} run"],
            env=props.env,
            role_policy_statements=[*props.policy, report_group_statement(props.report_group_arn)],
            primary_output_directory=EVAL_OUT,
            partial_build_spec=codebuild.BuildSpec.from_object(
                {
                    **_python_runtime(),
                    "reports": junit_reports(props.report_group_arn, EVAL_OUT),
                }
            ),
            timeout=props.timeout,
        )


@dataclass(frozen=True)
class ShardedEvalGateProps:
    """The EvalGate action as a CodeBuild batch build: ``shards`` shard builds, then one merge build."""

    input: pipelines.CodePipelineSource
    report_group_arn: str
    env: dict[str, str]  # as for EvalGateStep; values holding CodePipeline variables (#{...}) go on the action
    policy: list[iam.PolicyStatement]
    eval_bucket: s3.IBucket
    shards: int
    max_run_cost_usd: float
    timeout: Duration = field(default_factory=lambda: Duration.minutes(90))


def sharded_build_spec(shards: int, max_run_cost_usd: float, report_group_arn: str) -> dict[str, Any]:
    """``batch: build-graph``: ``shard_k`` builds (``SHARD=k/N``, own cache key, cap/N) and a ``merge`` build
    depending on all of them. Every build runs ``evalgate ci $GATE_MODE`` (``shard`` or ``merge``)."""
    ids = [f"shard_{k}" for k in range(1, shards + 1)]
    graph: list[dict[str, Any]] = [
        {
            "identifier": ident,
            "env": {
                "variables": {
                    "GATE_MODE": "shard",
                    "SHARD": f"{k}/{shards}",
                    "EVALGATE_CACHE_KEY": shard_cache_key(k, shards),
                    "MAX_RUN_COST_USD": f"{max_run_cost_usd / shards:.4g}",
                }
            },
        }
        for k, ident in enumerate(ids, start=1)
    ]
    graph.append(
        {
            "identifier": "merge",
            "depend-on": ids,
            "env": {
                "variables": {
                    "GATE_MODE": "merge",
                    "SHARD_COUNT": str(shards),
                }
            },
        }
    )
    return {
        "version": "0.2",
        "batch": {"fast-fail": True, "build-graph": graph},
        "phases": {
            "install": {"runtime-versions": {"python": "3.12"}, "commands": INSTALL},
            "build": {"commands": [f'{GATE_COMMAND} "$GATE_MODE"']},
        },
        "reports": junit_reports(report_group_arn, EVAL_OUT),
    }


@jsii.implements(pipelines.ICodePipelineActionFactory)
class ShardedEvalGateStep(pipelines.Step):
    """The quality gate fanned out over ``evalShards`` CodeBuild builds (a batch build; CodeBuildStep cannot).

    A ``PipelineProject`` with a ``batch: build-graph`` buildspec behind a ``CodeBuildAction`` with
    ``execute_batch_build``. The merge build's exit code drives the approval exactly as :class:`EvalGateStep`.
    """

    def __init__(self, step_id: str, props: ShardedEvalGateProps) -> None:
        super().__init__(step_id)
        self.props = props
        assert props.input.primary_output is not None
        self._add_dependency_file_set(props.input.primary_output)
        self._discover_referenced_outputs(props.env)
        self.project: codebuild.PipelineProject | None = None

    def produce_action(self, stage: Any, *args: Any, **kwargs: Any) -> pipelines.CodePipelineActionFactoryResult:
        # jsii hands the ProduceActionOptions struct over positionally (or as keywords, depending on the runtime)
        struct = args[0] if args else None

        def opt(name: str) -> Any:
            if struct is not None:
                return getattr(struct, name)
            camel = name.split("_")[0] + "".join(w.title() for w in name.split("_")[1:])
            return kwargs.get(name, kwargs.get(camel))

        p = self.props
        scope, pipeline = opt("scope"), opt("pipeline")
        # CodePipeline variables (#{...}: execution id, source branch/commit) resolve only in the action's config
        stack = Stack.of(scope)
        is_variable = {k: "#{" in json.dumps(stack.resolve(v)) for k, v in p.env.items()}
        static = {k: v for k, v in p.env.items() if not is_variable[k] and k != "MAX_RUN_COST_USD"}
        dynamic = {k: v for k, v in p.env.items() if is_variable[k]}
        project = codebuild.PipelineProject(
            scope,
            f"{self.id}Project",
            description="EvalGate quality gate: evalShards shard builds + merge (CodeBuild batch build)",
            build_spec=codebuild.BuildSpec.from_object(
                sharded_build_spec(p.shards, p.max_run_cost_usd, p.report_group_arn)
            ),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0, compute_type=codebuild.ComputeType.SMALL
            ),
            environment_variables={k: codebuild.BuildEnvironmentVariable(value=v) for k, v in static.items()},
            encryption_key=pipeline.pipeline.artifact_bucket.encryption_key,
            timeout=p.timeout,
        )
        project.enable_batch_builds()
        for statement in [
            *p.policy,
            report_group_statement(p.report_group_arn),
            shard_results_statement(p.eval_bucket),
        ]:
            project.add_to_role_policy(statement)
        acknowledge(
            project,
            f"AwsSolutions-IAM5[Resource::{nag_text(project, p.eval_bucket.bucket_arn)}/runs/*/shards/*]",
            "Shard builds exchange results.json under runs/<execution id>/shards/, unknown at synth time.",
        )
        self.project = project
        stage.add_action(
            codepipeline_actions.CodeBuildAction(
                action_name=opt("action_name"),
                run_order=opt("run_order"),
                project=project,
                input=opt("artifacts").to_code_pipeline(p.input.primary_output),
                execute_batch_build=True,
                combine_batch_build_artifacts=False,
                environment_variables={k: codebuild.BuildEnvironmentVariable(value=v) for k, v in dynamic.items()},
                variables_namespace=opt("variables_namespace"),
            )
        )
        return pipelines.CodePipelineActionFactoryResult(run_orders_consumed=1)


def shard_results_statement(bucket: s3.IBucket) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid="ShardResults",
        actions=["s3:GetObject", "s3:PutObject"],
        resources=[bucket.arn_for_objects(f"{RUNS_PREFIX}*/shards/*")],
    )


@dataclass(frozen=True)
class PromoteBaselineProps:
    input: pipelines.IFileSetProducer
    env: dict[str, str]
    policy: list[iam.PolicyStatement]


class PromoteBaselineStep(pipelines.CodeBuildStep):
    """After the approval (automatic on PASS, human on REVIEW): copy the run to ``baselines/approved/``."""

    def __init__(self, step_id: str, props: PromoteBaselineProps) -> None:
        super().__init__(
            step_id,
            input=props.input,
            install_commands=["python3 -m pip install --quiet boto3", "python3 -m pip install --quiet --no-deps -e ."],
            commands=[f"{GATE_COMMAND} promote"],
            env=props.env,
            role_policy_statements=props.policy,
            partial_build_spec=codebuild.BuildSpec.from_object(_python_runtime()),
            timeout=Duration.minutes(10),
        )


@dataclass(frozen=True)
class EndpointTestProps:
    input: pipelines.IFileSetProducer
    endpoint_output: Any  # CfnOutput of the deployed service stack
    report_group_arn: str
    golden_dir: str
    thresholds_file: str
    policy: list[iam.PolicyStatement] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    caller: EndpointCaller | None = None  # how the step authenticates and marks its traffic as synthetic


@dataclass(frozen=True)
class EndpointCaller:
    """What the pipeline's own calls to a stage's API carry: its auth (``apiAuth``) and the synthetic mark.

    * the stage's signing secret (``EVALGATE_SIGNING_SECRET``, read-only) signs the synthetic-traffic header;
    * ``iam``: ``execute-api:Invoke`` on POST routes of the stage's APIs, requests signed with SigV4;
    * ``jwt``: ``EVALGATE_API_CLIENT`` from the ``apiJwtClientSecret`` secret (OAuth2 client credentials).
    """

    env: dict[str, str]
    secret_env: dict[str, str]
    policy: list[iam.PolicyStatement]

    @classmethod
    def for_stage(
        cls, scope: IConstruct, *, project: str, stage: str, api_auth: str, jwt_client_secret: str | None
    ) -> EndpointCaller:
        from stacks.constructs.request_trust import signing_secret_arn_pattern, signing_secret_name

        env = {"EVALGATE_SIGNING_SECRET": signing_secret_name(project, stage), "EVALGATE_API_AUTH": api_auth}
        policy = [
            iam.PolicyStatement(
                sid="SignSyntheticTraffic",
                actions=["secretsmanager:GetSecretValue"],
                resources=[signing_secret_arn_pattern(scope, project, stage)],
            )
        ]
        if api_auth == "iam":
            policy.append(
                iam.PolicyStatement(
                    sid="CallStageApi",
                    actions=["execute-api:Invoke"],
                    resources=[cls.invoke_arn(scope)],
                )
            )
        secret_env = {"EVALGATE_API_CLIENT": jwt_client_secret} if api_auth == "jwt" and jwt_client_secret else {}
        return cls(env=env, secret_env=secret_env, policy=policy)

    @staticmethod
    def invoke_arn(scope: IConstruct) -> str:
        s = Stack.of(scope)
        return f"arn:{s.partition}:execute-api:{s.region}:{s.account}:*/$default/POST/*"

    def acknowledge(self, scope: IConstruct) -> None:
        if any("execute-api:Invoke" in st.to_statement_json().get("Action", "") for st in self.policy):
            acknowledge(
                scope,
                f"AwsSolutions-IAM5[Resource::{nag_text(scope, self.invoke_arn(scope))}]",
                "The stage's HTTP API id is assigned when that stage deploys (another stack); the grant is "
                "POST on the $default stage of this account's and Region's APIs, for the pipeline's own "
                "load test and smoke eval.",
            )


class _EndpointStep(pipelines.CodeBuildStep):
    """A post-deployment check against the stage's endpoint (from the stack outputs), with JUnit reports."""

    def __init__(self, step_id: str, props: EndpointTestProps, *, out: str, command: str) -> None:
        caller = props.caller or EndpointCaller(env={}, secret_env={}, policy=[])
        super().__init__(
            step_id,
            input=props.input,
            install_commands=INSTALL,
            env_from_cfn_outputs={"SERVICE_URL": props.endpoint_output},
            env={**caller.env, **props.extra_env},
            build_environment=codebuild.BuildEnvironment(
                environment_variables={
                    name: codebuild.BuildEnvironmentVariable(
                        value=secret, type=codebuild.BuildEnvironmentVariableType.SECRETS_MANAGER
                    )
                    for name, secret in caller.secret_env.items()
                }
            )
            if caller.secret_env
            else None,
            commands=[command],
            role_policy_statements=[*props.policy, *caller.policy, report_group_statement(props.report_group_arn)],
            primary_output_directory=out,
            partial_build_spec=codebuild.BuildSpec.from_object(
                {
                    **_python_runtime(),
                    "reports": junit_reports(props.report_group_arn, out),
                }
            ),
            timeout=Duration.minutes(30),
        )


class LoadTestStep(_EndpointStep):
    """Latency is a quality metric: drive the endpoint at 1.5x peak (open loop); gate p95 time to first token on
    the SLO and p95 total answer time on the last passing load test (``baseline_uri``, an S3 URI), which a
    passing run replaces. The first run has no baseline: its total time is reported, not gated."""

    def __init__(
        self,
        step_id: str,
        props: EndpointTestProps,
        *,
        rps: float,
        seconds: int,
        ttft_slo_ms: int,
        regression_ms: int | None,
        regression_pct: float | None,
        baseline_uri: str,
    ) -> None:
        out = "out/load"
        tolerance = "".join(
            [
                f" --regression-ms {regression_ms}" if regression_ms is not None else "",
                f" --regression-pct {regression_pct:g}" if regression_pct is not None else "",
            ]
        )
        super().__init__(
            step_id,
            props,
            out=out,
            command=(
                f"BASELINE=''; if aws s3 cp \"{baseline_uri}\" load-baseline.json --only-show-errors; "
                "then BASELINE='--baseline load-baseline.json'; "
                "else echo 'no load baseline yet: total answer time is reported, not gated'; fi; "
                f'evalgate load --target "http:${{SERVICE_URL}}ask" --golden {props.golden_dir} '
                f"--rps {rps:g} --duration {seconds} --ttft-slo-ms {ttft_slo_ms}{tolerance} $BASELINE --out {out} "
                f'&& aws s3 cp {out}/results.json "{baseline_uri}" --only-show-errors'
            ),
        )


class SmokeEvalStep(_EndpointStep):
    """The golden smoke subset against the deployed endpoint (what users will actually hit)."""

    def __init__(self, step_id: str, props: EndpointTestProps) -> None:
        out = "out/smoke"
        super().__init__(
            step_id,
            props,
            out=out,
            command=(
                f"evalgate run --tier smoke --golden {props.golden_dir} --config {props.thresholds_file} "
                f'--candidate "http:${{SERVICE_URL}}ask" --embedder titan --no-cache --no-progress --out {out}'
            ),
        )


def pipeline_approval_arn(scope: IConstruct, pipeline_name: str, stage: str, action: str) -> str:
    stack = Stack.of(scope)
    return f"arn:{stack.partition}:codepipeline:{stack.region}:{stack.account}:{pipeline_name}/{stage}/{action}"


def pipeline_arn(scope: IConstruct, pipeline_name: str) -> str:
    stack = Stack.of(scope)
    return f"arn:{stack.partition}:codepipeline:{stack.region}:{stack.account}:{pipeline_name}"


@dataclass(frozen=True)
class GatePolicyProps:
    """What the EvalGate action may touch (everything named, nothing else)."""

    eval_bucket: s3.IBucket
    eval_key: kms.IKey
    topic: sns.ITopic
    topic_key: kms.IKey
    pipeline_name: str
    gate_stage: str
    approval_action: str
    evaluation_job_role: iam.IRole
    model_ids: list[str]
    guardrail_id: str | None
    metrics_namespace: str
    # the candidate's models: the evaluation calls them with ConverseStream (bedrock:InvokeModelWithResponseStream)
    streamed_model_ids: list[str] = field(default_factory=list)
    candidate_guardrails: bool = False  # the guardrail is code: the gate makes a candidate guardrail per run
    tickets: str = "none"  # known-error tickets: none | opscenter | github
    comment_token_secret: str | None = None  # the GitHub token (tickets=github)


def gate_policy(scope: IConstruct, p: GatePolicyProps) -> list[iam.PolicyStatement]:
    bucket = p.eval_bucket
    statements = [
        iam.PolicyStatement(
            sid="ReadBaselineAndCache",
            actions=["s3:GetObject"],
            resources=[
                bucket.arn_for_objects(f"{BASELINE_PREFIX}*"),
                bucket.arn_for_objects(f"{CACHE_PREFIX}*"),
                bucket.arn_for_objects(f"{RUNS_PREFIX}*"),  # every run's results.json, for the history site
                bucket.arn_for_objects("bedrock-eval/*"),  # the release tier reads its evaluation jobs' output
                bucket.arn_for_objects(f"{CALIBRATION_PREFIX}*"),
            ],
        ),
        iam.PolicyStatement(
            sid="WriteRunsAndCache",
            actions=["s3:PutObject"],
            resources=[
                bucket.arn_for_objects(f"{RUNS_PREFIX}*"),
                bucket.arn_for_objects(f"{CACHE_PREFIX}*"),
                bucket.arn_for_objects("bedrock-eval/*"),
                bucket.arn_for_objects(f"{HISTORY_PREFIX}*"),
                bucket.arn_for_objects(f"{CALIBRATION_PREFIX}*"),
            ],
        ),
        iam.PolicyStatement(sid="ListEvalResults", actions=["s3:ListBucket"], resources=[bucket.bucket_arn]),
        iam.PolicyStatement(
            sid="UseEvalKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[p.eval_key.key_arn]
        ),
        iam.PolicyStatement(sid="PublishGateNotices", actions=["sns:Publish"], resources=[p.topic.topic_arn]),
        iam.PolicyStatement(
            sid="SendReviewEvent",
            actions=["events:PutEvents"],
            resources=[default_event_bus_arn(scope)],
            conditions={"StringEquals": {"events:source": GATE_SOURCE}},
        ),
        iam.PolicyStatement(
            sid="EncryptForTopic", actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[p.topic_key.key_arn]
        ),
        iam.PolicyStatement(
            sid="FindApproval",
            actions=["codepipeline:GetPipelineState"],
            resources=[pipeline_arn(scope, p.pipeline_name)],
        ),
        iam.PolicyStatement(
            sid="ResolveApproval",
            actions=["codepipeline:PutApprovalResult"],
            resources=[
                pipeline_approval_arn(scope, p.pipeline_name, p.gate_stage, p.approval_action),
            ],
        ),
        iam.PolicyStatement(
            sid="PublishEvalCost",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": p.metrics_namespace}},
        ),
        iam.PolicyStatement(
            sid="EvaluationJobs",
            actions=["bedrock:CreateEvaluationJob", "bedrock:GetEvaluationJob", "bedrock:StopEvaluationJob"],
            resources=[evaluation_job_arn(scope)],
        ),
        # one evaluation job at a time: the release tier lists the jobs in progress before it creates one
        # (ListEvaluationJobs has no resource-level permissions)
        iam.PolicyStatement(sid="ListEvaluationJobs", actions=["bedrock:ListEvaluationJobs"], resources=["*"]),
        iam.PolicyStatement(
            sid="PassEvaluationJobRole",
            actions=["iam:PassRole"],
            resources=[p.evaluation_job_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
        ),
        *model_statements(scope, p.model_ids, sid="Evaluate"),
        *model_statements(scope, p.streamed_model_ids, sid="EvaluateStream", streaming=True),
    ]
    if p.guardrail_id:
        statements.append(guardrail_statement(scope, p.guardrail_id, sid="Evaluate"))
    if p.candidate_guardrails:
        statements.append(candidate_guardrail_statement(scope))
    statements += ticket_statements(scope, p.tickets, p.comment_token_secret)
    return statements


def candidate_guardrail_statement(scope: IConstruct) -> iam.PolicyStatement:
    """The gate makes a guardrail from guardrails/*.toml for its run, checks the suites with it, deletes it."""
    return iam.PolicyStatement(
        sid="CandidateGuardrail",
        actions=[
            "bedrock:CreateGuardrail",
            "bedrock:CreateGuardrailVersion",
            "bedrock:DeleteGuardrail",
            "bedrock:ApplyGuardrail",
            "bedrock:TagResource",
        ],
        resources=[guardrails_arn(scope)],
    )


def guardrails_arn(scope: IConstruct) -> str:
    return Stack.of(scope).format_arn(service="bedrock", resource="guardrail", resource_name="*")


def opsitem_arn(scope: IConstruct) -> str:
    return Stack.of(scope).format_arn(service="ssm", resource="opsitem", resource_name="*")


def ticket_statements(scope: IConstruct, tickets: str, token_secret: str | None) -> list[iam.PolicyStatement]:
    """Known-error tickets: OpsItems (create, find, count again), or the GitHub token for issues."""
    stack = Stack.of(scope)
    if tickets == "opscenter":
        return [
            iam.PolicyStatement(
                sid="OpenKnownErrorTickets",
                actions=["ssm:CreateOpsItem", "ssm:UpdateOpsItem"],
                resources=[opsitem_arn(scope)],
            ),
            # DescribeOpsItems has no resource-level permissions.
            iam.PolicyStatement(sid="FindKnownErrorTickets", actions=["ssm:DescribeOpsItems"], resources=["*"]),
        ]
    if tickets == "github" and token_secret:
        arn = stack.format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{token_secret}-??????",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        return [iam.PolicyStatement(sid="ReadTicketToken", actions=["secretsmanager:GetSecretValue"], resources=[arn])]
    return []


def acknowledge_gate_findings(scope: IConstruct, bucket: s3.IBucket) -> None:
    """Wildcards in the gate's own statements, each bounded and explained."""
    arn = nag_text(scope, bucket.bucket_arn)
    for finding, reason in (
        (
            f"Resource::{arn}/{BASELINE_PREFIX}*",
            "The gate reads the approved baseline (results.json, commit.txt) under its fixed prefix.",
        ),
        (f"Resource::{arn}/{CACHE_PREFIX}*", "The evaluation cache (SQLite) is synced under cache/."),
        (
            f"Resource::{arn}/{CALIBRATION_PREFIX}*",
            "Judge calibration records (one JSON file per judge model and rubric) are kept under "
            "baselines/calibration/.",
        ),
        (
            f"Resource::{arn}/{RUNS_PREFIX}*",
            "Each pipeline execution writes its reports under runs/<execution id>/, unknown at synth time.",
        ),
        (f"Resource::{arn}/history/*", "The history site (index.html and comparison pages) is written under history/."),
        (
            f"Resource::{arn}/bedrock-eval/*",
            "Release-tier Bedrock evaluation jobs exchange datasets and outputs under bedrock-eval/.",
        ),
        (
            "Resource::*",
            "cloudwatch:PutMetricData has no resource-level permissions (limited to the EvalGate/Pipeline namespace by "
            "the cloudwatch:namespace condition); nor have ssm:DescribeOpsItems (finding known-error tickets) and "
            "bedrock:ListEvaluationJobs (the release tier runs one evaluation job at a time).",
        ),
        (
            f"Resource::{nag_text(scope, guardrails_arn(scope))}",
            "Candidate guardrail ids are assigned by CreateGuardrail during the run (deleted at its end).",
        ),
        (
            f"Resource::{nag_text(scope, opsitem_arn(scope))}",
            "OpsItem ids are assigned by CreateOpsItem; known-error tickets are created and counted in this account.",
        ),
        (
            f"Resource::{nag_text(scope, evaluation_job_arn(scope))}",
            "Evaluation job ARNs are generated by CreateEvaluationJob; scoped to this account and Region.",
        ),
    ):
        acknowledge(scope, f"AwsSolutions-IAM5[{finding}]", reason)


def default_event_bus_arn(scope: IConstruct) -> str:
    stack = Stack.of(scope)
    return f"arn:{stack.partition}:events:{stack.region}:{stack.account}:event-bus/default"


def evaluation_job_arn(scope: IConstruct) -> str:
    stack = Stack.of(scope)
    return f"arn:{stack.partition}:bedrock:{stack.region}:{stack.account}:evaluation-job/*"
