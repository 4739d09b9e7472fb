"""The release pipeline (CDK Pipelines, CodePipeline V2, self-mutating). Thin: it composes constructs and steps.

Source -> Build (unit + infra + contract tests, change classification, cdk synth) -> UpdatePipeline (self-mutation)
-> Assets -> QualityGate [EvalGate | Approve] -> PromoteBaseline -> Staging (deploy, load test, smoke eval)
-> Prod (deploy; CodeDeploy canary or all-at-once, decided by the change type).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from aws_cdk import Aws, Duration, Environment, Stack, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codecommit as codecommit
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from constructs import Construct

from evalgate.contracts.bucket import BASELINE_COMMIT_KEY, BASELINE_KEY, LOAD_BASELINE_KEY, RUNS_PREFIX
from evalgate.contracts.events import GATE_DETAIL, GATE_SOURCE
from stacks.connections import match_connection_prefix
from stacks.constructs.bedrock_access import acknowledge_profile_regions, model_statements
from stacks.constructs.eval_results import PIPELINE_NAMESPACE, EvalResults, EvalResultsProps
from stacks.constructs.eval_step import (
    EndpointCaller,
    EndpointTestProps,
    EvalGateProps,
    EvalGateStep,
    GatePolicyProps,
    LoadTestStep,
    PromoteBaselineProps,
    PromoteBaselineStep,
    ShardedEvalGateProps,
    ShardedEvalGateStep,
    SmokeEvalStep,
    acknowledge_gate_findings,
    gate_policy,
    pipeline_arn,
)
from stacks.constructs.lambda_bundle import LambdaBundle
from stacks.constructs.notifications import Notifications, NotificationsProps
from stacks.constructs.pull_request_eval import PullRequestEval, PullRequestEvalProps
from stacks.constructs.quality_alarms import NAMESPACE
from stacks.nag import acknowledge_cdk_pipelines
from stacks.service_stack import ServiceStackProps, ServiceStage
from stacks.settings import DeploymentMode, Settings

CDK_CLI_VERSION = "2.1148.1"  # npm's "latest" tag (3.0.0) cannot read aws-cdk-lib 2.27x assemblies
GATE_STAGE = "QualityGate"
GATE_ACTION = "EvalGate"
APPROVAL_ACTION = "Approve"
EXECUTION_ID = "#{codepipeline.PipelineExecutionId}"


@dataclass(frozen=True)
class PipelineStackProps:
    settings: Settings
    prod_deployment_mode: DeploymentMode
    stage_env: Environment | None = None


class PipelineStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, props: PipelineStackProps, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        s = props.settings
        self.pipeline_name = f"{s.project_name}-pipeline"

        bundle = LambdaBundle(
            self,
            "Bundle",
            log_retention_days=s.log_retention_days,
            metrics_namespace=NAMESPACE,
            service_name=s.project_name,
            bundled=s.bundle,
            service_code_root=s.service_code_root,
            prompts_dir=s.prompts_dir,
            golden_dir=s.golden_dir,
        )
        self.alerts = Notifications(
            self,
            "Alerts",
            NotificationsProps(
                email=s.notification_email,
                topic_name=f"{s.project_name}-pipeline-alerts",
                display_name="EvalGate pipeline",
                bundle=bundle,
                extra_environment={"PIPELINE_NAME": self.pipeline_name},
            ),
        )
        self.alerts.notifier.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadPipelineState",
                actions=[
                    "codepipeline:GetPipelineState",
                    "codepipeline:GetPipelineExecution",
                    "codepipeline:ListActionExecutions",
                ],
                resources=[pipeline_arn(self, self.pipeline_name)],
            )
        )
        self.alerts.allow_service_publish("cloudwatch.amazonaws.com")  # the eval-spend alarm
        self.results = EvalResults(
            self,
            "EvalResults",
            EvalResultsProps(
                project_name=s.project_name,
                pipeline_name=self.pipeline_name,
                evaluation_job_models=[*s.service_model_ids, s.judge_model_id, s.heavy_judge],
                topic=self.alerts.topic,
                monthly_budget_usd=s.monthly_eval_budget_usd,
                topic_key=self.alerts.key,
            ),
        )
        bucket = self.results.bucket
        self.pull_requests = (
            PullRequestEval(
                self,
                "PullRequests",
                PullRequestEvalProps(
                    settings=s,
                    eval_bucket=bucket,
                    eval_key=self.results.key,
                    artifacts=self.results.artifacts,
                ),
            )
            if s.pull_request_eval
            else None
        )

        source = self._source(s)
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name=self.pipeline_name,
            pipeline_type=codepipeline.PipelineType.V2,
            self_mutation=True,
            synth=self._synth_step(source),
            artifact_bucket=self.results.artifacts,
            cli_version=CDK_CLI_VERSION,
            publish_assets_in_parallel=False,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                    compute_type=codebuild.ComputeType.SMALL,
                )
            ),
        )

        gate_env = {
            "EVAL_BUCKET": bucket.bucket_name,
            "TOPIC_ARN": self.alerts.topic.topic_arn,
            "PIPELINE_NAME": self.pipeline_name,
            "GATE_STAGE": GATE_STAGE,
            "APPROVAL_ACTION": APPROVAL_ACTION,
            "PIPELINE_EXECUTION_ID": EXECUTION_ID,
            "SOURCE_BRANCH": source.source_attribute("BranchName"),
            "SOURCE_COMMIT": source.source_attribute("CommitId"),
            "RELEASE_TAG_PATTERN": s.release_tag_pattern,
            "RELEASE_BRANCH_PATTERN": s.release_branch_pattern,
            "GOLDEN_DIR": s.golden_dir,
            "THRESHOLDS_FILE": s.thresholds_file,
            "GENERATOR_MODEL_ID": s.generator_model_id,
            "PROMPT_ID": s.prompt_version,
            "EVALGATE_PROMPTS_DIR": s.prompts_dir,  # the bedrock candidate renders PROMPT_ID from there
            "JUDGE_MODEL_ID": s.judge_model_id,
            "MAX_RUN_COST_USD": f"{s.max_run_cost_usd:g}",
            "METRICS_NAMESPACE": PIPELINE_NAMESPACE,
            "EVALGATE_HEAVY_JUDGE_MODEL_ID": s.heavy_judge,
            "EVALGATE_EVAL_JOB_ROLE_ARN": self.results.evaluation_job_role.role_arn,
            "EVALGATE_EVAL_S3_URI": bucket.s3_url_for_object("bedrock-eval/"),
            "EVALGATE_GUARDRAIL_ID": s.guardrail_id or "",
            "EVALGATE_GUARDRAIL_VERSION": (s.guardrail_version or "DRAFT") if s.guardrail_id else "",
            "EVALGATE_GUARDRAIL_CONFIG": s.guardrail_config or "",
            "EVALGATE_TICKETS": s.known_error_tickets,
            "EVALGATE_GITHUB_REPO": s.repository or "",
            "EVALGATE_GITHUB_TOKEN_SECRET": s.comment_token_secret or "",
        }
        gate_statements = gate_policy(
            self,
            GatePolicyProps(
                eval_bucket=bucket,
                eval_key=self.results.key,
                topic=self.alerts.topic,
                topic_key=self.alerts.key,
                pipeline_name=self.pipeline_name,
                gate_stage=GATE_STAGE,
                approval_action=APPROVAL_ACTION,
                evaluation_job_role=self.results.evaluation_job_role,
                model_ids=s.eval_model_ids,
                guardrail_id=s.guardrail_id,
                metrics_namespace=PIPELINE_NAMESPACE,
                streamed_model_ids=s.service_model_ids,
                tickets=s.known_error_tickets,
                comment_token_secret=s.comment_token_secret,
                candidate_guardrails=s.guardrail_config is not None,
            ),
        )
        eval_reports = self.results.report_groups["Eval"].report_group_arn
        gate: pipelines.Step
        if s.eval_shards > 1:  # fan out: a CodeBuild batch build (evalShards shards + merge)
            gate = ShardedEvalGateStep(
                GATE_ACTION,
                ShardedEvalGateProps(
                    input=source,
                    report_group_arn=eval_reports,
                    env=gate_env,
                    policy=gate_statements,
                    eval_bucket=bucket,
                    shards=s.eval_shards,
                    max_run_cost_usd=s.max_run_cost_usd,
                ),
            )
        else:
            gate = EvalGateStep(
                GATE_ACTION,
                EvalGateProps(
                    input=source,
                    report_group_arn=eval_reports,
                    env=gate_env,
                    policy=gate_statements,
                ),
            )
        approve = pipelines.ManualApprovalStep(
            APPROVAL_ACTION,
            comment=(
                "EvalGate verdict REVIEW: open the review link (this run's report.html, summary.md, results.json), "
                "then approve to ship or reject to stop. PASS runs are approved automatically by the EvalGate "
                "action; FAIL/ERROR runs reject this approval."
            ),
            review_url=(
                f"https://{Aws.REGION}.console.aws.amazon.com/s3/buckets/{bucket.bucket_name}"
                f"?region={Aws.REGION}&prefix=runs/{EXECUTION_ID}/"
            ),
        )
        promote = PromoteBaselineStep(
            "PromoteBaseline",
            PromoteBaselineProps(
                input=source,
                env={
                    k: gate_env[k]
                    for k in (
                        "EVAL_BUCKET",
                        "TOPIC_ARN",
                        "PIPELINE_NAME",
                        "GATE_STAGE",
                        "APPROVAL_ACTION",
                        "PIPELINE_EXECUTION_ID",
                        "SOURCE_COMMIT",
                    )
                },
                policy=[
                    iam.PolicyStatement(
                        sid="ReadRunResults",
                        actions=["s3:GetObject"],
                        resources=[bucket.arn_for_objects(f"{RUNS_PREFIX}*")],
                    ),
                    iam.PolicyStatement(
                        sid="WriteApprovedBaseline",
                        actions=["s3:PutObject"],
                        resources=[
                            bucket.arn_for_objects(BASELINE_KEY),
                            bucket.arn_for_objects(BASELINE_COMMIT_KEY),
                        ],
                    ),
                    iam.PolicyStatement(
                        sid="UseEvalKey",
                        actions=["kms:Decrypt", "kms:GenerateDataKey"],
                        resources=[self.results.key.key_arn],
                    ),
                ],
            ),
        )
        promote.add_step_dependency(approve)
        self.pipeline.add_wave(GATE_STAGE, pre=[gate, approve, promote])

        self.staging = ServiceStage(
            self,
            "Staging",
            env=props.stage_env,
            props=ServiceStackProps(
                settings=s,
                stage_name="Staging",
                deployment_mode="all-at-once",
            ),
        )
        reports = self.results.report_groups
        caller = EndpointCaller.for_stage(
            self,
            project=s.project_name,
            stage="Staging",
            api_auth=s.api_auth,
            jwt_client_secret=s.api_jwt_client_secret,
        )
        load = LoadTestStep(
            "LoadTest",
            EndpointTestProps(
                input=source,
                endpoint_output=self.staging.stack.endpoint,
                report_group_arn=reports["LoadTest"].report_group_arn,
                golden_dir=s.golden_dir,
                thresholds_file=s.thresholds_file,
                caller=caller,
                policy=[
                    iam.PolicyStatement(
                        sid="LoadBaseline",
                        actions=["s3:GetObject", "s3:PutObject"],
                        resources=[bucket.arn_for_objects(LOAD_BASELINE_KEY)],
                    ),
                    iam.PolicyStatement(
                        sid="LoadBaselineKey",
                        actions=["kms:Decrypt", "kms:GenerateDataKey"],
                        resources=[self.results.key.key_arn],
                    ),
                ],
            ),
            rps=s.load_test_rps,
            seconds=s.load_test_seconds,
            ttft_slo_ms=s.ttft_slo_ms,
            regression_ms=s.total_regression_ms,
            regression_pct=s.total_regression_pct,
            baseline_uri=bucket.s3_url_for_object(LOAD_BASELINE_KEY),
        )
        smoke = SmokeEvalStep(
            "SmokeEval",
            EndpointTestProps(
                input=source,
                endpoint_output=self.staging.stack.endpoint,
                report_group_arn=reports["SmokeEval"].report_group_arn,
                golden_dir=s.golden_dir,
                thresholds_file=s.thresholds_file,
                caller=caller,
                policy=model_statements(self, [s.judge_model_id, s.embeddings_model_id], sid="SmokeScore"),
            ),
        )
        smoke.add_step_dependency(load)  # never measure latency while the smoke eval adds its own load
        self.pipeline.add_stage(self.staging, post=[load, smoke])

        self.prod = ServiceStage(
            self,
            "Prod",
            env=props.stage_env,
            props=ServiceStackProps(
                settings=s,
                stage_name="Prod",
                deployment_mode=props.prod_deployment_mode,
            ),
        )
        self.pipeline.add_stage(self.prod)
        self.pipeline.build_pipeline()
        if s.connection_arn is not None:
            match_connection_prefix(self, s.connection_arn)

        self._release_triggers(s)
        self._cloudformation_role_arns_as_sub()
        self.alerts.route(
            "PipelineFailed",
            description="Pipeline execution FAILED -> notifier",
            pattern=events.EventPattern(
                source=["aws.codepipeline"],
                detail_type=["CodePipeline Pipeline Execution State Change"],
                detail={"state": ["FAILED"], "pipeline": [self.pipeline_name]},
            ),
        )
        self.alerts.route(
            "GateReview",
            description="EvalGate verdict REVIEW (pipeline waits for approval) -> notifier",
            pattern=events.EventPattern(
                source=[GATE_SOURCE],
                detail_type=[GATE_DETAIL],
                detail={"verdict": ["REVIEW"], "pipeline": [self.pipeline_name]},
            ),
        )
        acknowledge_profile_regions(self.pipeline, s.eval_model_ids)
        acknowledge_gate_findings(self.pipeline, bucket)
        caller.acknowledge(self.pipeline)
        acknowledge_cdk_pipelines(self.pipeline)

    # ------------------------------------------------------------------------------------------------ pieces

    def _source(self, s: Settings) -> pipelines.CodePipelineSource:
        """A full git clone for CodeBuild (``CODEBUILD_CLONE_REF``): tiers and the change type need history."""
        if s.code_commit_repository is not None:
            repo = codecommit.Repository.from_repository_name(self, "Repository", s.code_commit_repository)
            return pipelines.CodePipelineSource.code_commit(repo, s.branch, code_build_clone_output=True)
        assert s.repository is not None and s.connection_arn is not None
        return pipelines.CodePipelineSource.connection(
            s.repository,
            s.branch,
            connection_arn=s.connection_arn,
            code_build_clone_output=True,
            trigger_on_push=True,
        )

    def _synth_step(self, source: pipelines.CodePipelineSource) -> pipelines.CodeBuildStep:
        bucket = self.results.bucket
        return pipelines.CodeBuildStep(
            "Synth",
            input=source,
            install_commands=[
                "python3 -m pip install --quiet --upgrade pip",
                # dev tools without the local-embedding stack (onnxruntime, tokenizers) that only the offline tier needs
                "grep -v requirements-local requirements-dev.txt > /tmp/requirements-ci.txt",
                "python3 -m pip install --quiet -r /tmp/requirements-ci.txt",
                "npm ci --no-audit --no-fund",
            ],
            commands=[
                "python3 -m pytest tests/unit tests/infra tests/contract -q -p no:cacheprovider",
                f'BASE=$(aws s3 cp "s3://$EVAL_BUCKET/{BASELINE_COMMIT_KEY}" - 2>/dev/null || true)',
                'MODE=$(PYTHONPATH=lambdas python3 -m evalgate.engine.change_type --base "$BASE" --explain)',
                "npx cdk synth --quiet -c bundle=true -c deploymentMode=$MODE",
            ],
            env={"CDK_DISABLE_CLI_TELEMETRY": "true", "EVAL_BUCKET": bucket.bucket_name},
            role_policy_statements=[
                iam.PolicyStatement(
                    sid="ReadApprovedCommit",
                    actions=["s3:GetObject"],
                    resources=[bucket.arn_for_objects(BASELINE_COMMIT_KEY)],
                ),
                iam.PolicyStatement(
                    sid="DecryptEvalResults", actions=["kms:Decrypt"], resources=[self.results.key.key_arn]
                ),
            ],
            primary_output_directory="cdk.out",
            partial_build_spec=codebuild.BuildSpec.from_object(
                {"phases": {"install": {"runtime-versions": {"python": "3.12", "nodejs": "20"}}}}
            ),
            timeout=Duration.minutes(30),
        )

    def _release_triggers(self, s: Settings) -> None:
        """V2 push triggers: the branch, release branches and release tags (tags run the release tier)."""
        if s.code_commit_repository is not None:
            return  # CodeCommit sources start from EventBridge on the branch; tag triggers need a connection
        source_stage = self.pipeline.pipeline.stages[0]
        action_name = source_stage.actions[0].action_properties.action_name
        cfn = cast(codepipeline.CfnPipeline, self.pipeline.pipeline.node.default_child)
        cfn.add_property_override(
            "Triggers",
            [
                {
                    "ProviderType": "CodeStarSourceConnection",
                    "GitConfiguration": {
                        "SourceActionName": action_name,
                        "Push": [
                            {"Branches": {"Includes": [s.branch, s.release_branch_pattern]}},
                            {"Tags": {"Includes": [s.release_tag_pattern]}},
                        ],
                    },
                }
            ],
        )

    def _cloudformation_role_arns_as_sub(self) -> None:
        """Render the deploy actions' ``Configuration.RoleArn`` (an ``Fn::Join`` of literals and ``Ref``s) as the
        equivalent ``Fn::Sub``: same value, and the form cfn-lint's action-configuration rule (E3703) accepts."""
        cfn = cast(codepipeline.CfnPipeline, self.pipeline.pipeline.node.default_child)
        stages = self.resolve(cfn.stages)
        for i, stage in enumerate(stages):
            for j, action in enumerate(stage.get("actions", [])):
                sub = _join_as_sub((action.get("configuration") or {}).get("RoleArn"))
                if sub is not None:
                    cfn.add_property_override(f"Stages.{i}.Actions.{j}.Configuration.RoleArn", {"Fn::Sub": sub})


def _join_as_sub(value: object) -> str | None:
    """``{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ...]]}`` -> ``"arn:${AWS::Partition}..."``."""
    if not (isinstance(value, dict) and list(value) == ["Fn::Join"]):
        return None
    sep, parts = value["Fn::Join"]
    if sep != "":
        return None
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part.replace("${", "${!"))
        elif isinstance(part, dict) and list(part) == ["Ref"]:
            out.append("${" + str(part["Ref"]) + "}")
        else:
            return None
    return "".join(out)
