"""Evaluation on pull requests: the PR's head against the last approved baseline, verdict on the pull request.

GitHub (a CodeConnections source): a CodePipeline V2 pipeline of its own whose trigger has a pull-request
filter (opened and updated, target branches from settings), with a single CodeBuild action. CodeCommit: an
EventBridge rule on the repository's pull-request events (created, source branch updated) starts the same kind
of build directly.

A pull request runs code nobody has reviewed yet, so the build is untrusted and its role says so: it reads the
approved baseline and the main evaluation cache, writes only under ``pr-cache/`` and ``pr-runs/`` (which the
main pipeline never reads), may call the evaluation models, and may read exactly one secret: the comment token.
It holds no permission to write baselines, approvals, the main cache, or to deploy anything. Before any of the
pull request's code runs, the buildspec's own (trusted) commands refuse a pull request from a fork unless
``pullRequestsFromForks`` is set: ``evalgate pr-context`` would do the same, but it is the pull request's copy
of evalgate and must not decide whether it may run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codecommit as codecommit
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from evalgate.contracts.bucket import (
    BASELINE_COMMIT_KEY,
    BASELINE_KEY,
    CACHE_KEY,
    CALIBRATION_PREFIX,
    PR_CACHE_PREFIX,
    PR_RUNS_PREFIX,
)
from stacks.constructs.bedrock_access import acknowledge_profile_regions, model_statements
from stacks.nag import acknowledge, acknowledge_pipeline_grants, nag_text
from stacks.settings import Settings

PR_OUT = "out/pr"


@dataclass(frozen=True)
class PullRequestEvalProps:
    settings: Settings
    eval_bucket: s3.IBucket
    eval_key: kms.IKey
    artifacts: s3.IBucket


def fork_guard_commands() -> list[str]:
    """Trusted shell (from this stack, not from the pull request): find the open PR of this commit, refuse forks."""
    return [
        'API="${GITHUB_API_URL:-https://api.github.com}"',
        'PRS=$(curl -fsS -H "Authorization: Bearer $GITHUB_TOKEN" -H "Accept: application/vnd.github+json" '
        '"$API/repos/$REPOSITORY/commits/$SOURCE_COMMIT/pulls")',
        'PR_NUMBER=$(echo "$PRS" | jq -r --arg sha "$SOURCE_COMMIT" '
        "'[.[] | select(.state == \"open\" and .head.sha == $sha)][0].number // empty')",
        'FORK=$(echo "$PRS" | jq -r --arg sha "$SOURCE_COMMIT" '
        '\'[.[] | select(.state == "open" and .head.sha == $sha)][0] '
        "| (.head.repo.full_name != .base.repo.full_name)')",
        'if [ -z "$PR_NUMBER" ]; then echo "no open pull request has $SOURCE_COMMIT as its head"; exit 1; fi',
        'if [ "$FORK" = "true" ] && [ "$ALLOW_FORKS" != "true" ]; then '
        'echo "pull request #$PR_NUMBER comes from a fork: not evaluated (pullRequestsFromForks is off)"; exit 1; fi',
        'echo "evaluating pull request #$PR_NUMBER at $SOURCE_COMMIT"',
    ]


def evaluation_commands(post: str) -> list[str]:
    """Run the gate for the pull request's head (never deploys, approves or promotes), then tell the pull request."""
    comment = {
        "github": '--post github --repo "$REPOSITORY" --pr "$PR_NUMBER" --token-secret "$COMMENT_TOKEN_SECRET"',
        "codecommit": '--post codecommit --repo "$REPOSITORY" --pr "$PR_NUMBER" --before-commit "$BEFORE_COMMIT"',
    }[post]
    return [
        f'aws s3 cp "s3://$EVAL_BUCKET/{BASELINE_KEY}" baseline.json || rm -f baseline.json',
        f'export EVALGATE_BASE_COMMIT=$(aws s3 cp "s3://$EVAL_BUCKET/{BASELINE_COMMIT_KEY}" - || true)',
        # a PR that changes the golden set or gate.toml can't be compared with the approved run: REVIEW, not exit 2
        'BASELINE=""; if [ -f baseline.json ]; then BASELINE="--baseline baseline.json --baseline-mismatch review"; fi',
        # Judge calibration records measured by the trusted gate (read-only here: a pull request never writes them).
        f'aws s3 cp "s3://$EVAL_BUCKET/{CALIBRATION_PREFIX}" .evalgate/calibration --recursive --only-show-errors '
        "|| true",
        "export EVALGATE_CALIBRATION_DIR=.evalgate/calibration",
        "set +e",
        f"python3 -m evalgate run --tier auto --candidate bedrock --embedder titan --no-progress --out {PR_OUT} "
        '--golden "$GOLDEN_DIR" --config "$THRESHOLDS_FILE" --model "$GENERATOR_MODEL_ID" --prompt "$PROMPT_ID" '
        '--max-cost "$MAX_RUN_COST_USD" $BASELINE '
        f'--cache-s3 "s3://$EVAL_BUCKET/{CACHE_KEY}" '
        f'--cache-s3-push "s3://$EVAL_BUCKET/{PR_CACHE_PREFIX}$PR_NUMBER/evalgate-cache.sqlite"',
        "RC=$?",
        "set -e",
        f'RUN="s3://$EVAL_BUCKET/{PR_RUNS_PREFIX}$PR_NUMBER/$SOURCE_COMMIT/"',
        f'aws s3 cp {PR_OUT} "$RUN" --recursive --only-show-errors || true',
        f'REPORT="https://$AWS_REGION.console.aws.amazon.com/s3/buckets/$EVAL_BUCKET?prefix={PR_RUNS_PREFIX}$PR_NUMBER/'
        '$SOURCE_COMMIT/"',
        f"if [ -f {PR_OUT}/results.json ]; then python3 -m evalgate comment --results {PR_OUT}/results.json "
        f'$BASELINE --commit "$SOURCE_COMMIT" --report-url "$REPORT" {comment}; fi',
        'echo "verdict exit code $RC"',
        "exit $RC",
    ]


class PullRequestEval(Construct):
    """One evaluation-only build per pull-request update; see the module docstring for what it may not do."""

    def __init__(self, scope: Construct, construct_id: str, props: PullRequestEvalProps) -> None:
        super().__init__(scope, construct_id)
        s = props.settings
        self.bucket = props.eval_bucket
        self._key = props.eval_key
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description="Pull-request evaluation (untrusted code): read baseline + main cache, write pr-* only",
        )
        for statement in self._statements(s, props):
            self.role.add_to_policy(statement)
        env: dict[str, str] = {
            "EVAL_BUCKET": props.eval_bucket.bucket_name,
            "GOLDEN_DIR": s.golden_dir,
            "THRESHOLDS_FILE": s.thresholds_file,
            "GENERATOR_MODEL_ID": s.generator_model_id,
            "PROMPT_ID": s.prompt_version,
            "EVALGATE_PROMPTS_DIR": s.prompts_dir,  # the bedrock candidate renders PROMPT_ID from there
            "MAX_RUN_COST_USD": f"{s.max_run_cost_usd:g}",
            "EVALGATE_JUDGE_MODEL_ID": s.judge_model_id,
            "EVALGATE_HEAVY_JUDGE_MODEL_ID": s.heavy_judge,
            "ALLOW_FORKS": "true" if s.pull_requests_from_forks else "false",
        }
        self.pipeline: codepipeline.Pipeline | None = None
        self.rule: events.Rule | None = None
        if s.code_commit_repository is not None:
            repo = codecommit.Repository.from_repository_name(self, "Repository", s.code_commit_repository)
            self.project = self._project(
                s,
                env | {"REPOSITORY": s.code_commit_repository},
                "codecommit",
                codebuild.Source.code_commit(repository=repo),
            )
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="CommentOnPullRequests",
                    actions=[
                        "codecommit:GitPull",
                        "codecommit:GetCommentsForPullRequest",
                        "codecommit:PostCommentForPullRequest",
                        "codecommit:UpdateComment",
                    ],
                    resources=[repo.repository_arn],
                )
            )
            self.rule = self._codecommit_rule(s, repo)
        else:
            assert s.repository is not None and s.connection_arn is not None and s.comment_token_secret
            secret = secretsmanager.Secret.from_secret_name_v2(self, "CommentToken", s.comment_token_secret)
            self.project = self._project(
                s,
                env | {"REPOSITORY": s.repository, "COMMENT_TOKEN_SECRET": s.comment_token_secret},
                "github",
                None,
                secrets={"GITHUB_TOKEN": secret.secret_name},
            )
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="ReadCommentToken",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[f"{secret.secret_arn}-??????"],
                )
            )
            self.pipeline = self._github_pipeline(s, props.artifacts)
        self._acknowledge(props)
        acknowledge_profile_regions(self, s.eval_model_ids)
        acknowledge_pipeline_grants(self, props.artifacts.bucket_arn)

    # ------------------------------------------------------------------------------------------------ pieces

    def _statements(self, s: Settings, props: PullRequestEvalProps) -> list[iam.PolicyStatement]:
        b = props.eval_bucket
        return [
            iam.PolicyStatement(
                sid="ReadBaselineAndMainCache",
                actions=["s3:GetObject"],
                resources=[
                    b.arn_for_objects(BASELINE_KEY),
                    b.arn_for_objects(BASELINE_COMMIT_KEY),
                    b.arn_for_objects(CACHE_KEY),
                    b.arn_for_objects(f"{CALIBRATION_PREFIX}*"),
                ],
            ),
            iam.PolicyStatement(
                sid="WritePullRequestOnly",
                actions=["s3:PutObject"],
                resources=[
                    b.arn_for_objects(f"{PR_CACHE_PREFIX}*"),
                    b.arn_for_objects(f"{PR_RUNS_PREFIX}*"),
                ],
            ),
            iam.PolicyStatement(sid="ListEvalResults", actions=["s3:ListBucket"], resources=[b.bucket_arn]),
            iam.PolicyStatement(
                sid="UseEvalKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[props.eval_key.key_arn]
            ),
            *model_statements(self, s.eval_model_ids, sid="EvaluatePullRequest"),
            # the candidate answers through ConverseStream (time to first token)
            *model_statements(self, s.service_model_ids, sid="EvaluatePullRequestStream", streaming=True),
        ]

    def _project(
        self,
        s: Settings,
        env: dict[str, str],
        post: str,
        source: codebuild.ISource | None,
        secrets: dict[str, str] | None = None,
    ) -> codebuild.Project:
        install = ["python3 -m pip install --quiet --upgrade pip"]
        guard = fork_guard_commands() if post == "github" else []
        spec: dict[str, Any] = {
            "version": "0.2",
            "env": {"shell": "bash", **({"secrets-manager": secrets} if secrets else {})},
            "phases": {
                "install": {"runtime-versions": {"python": "3.12"}, "commands": install},
                # The guard runs before the pull request's own requirements and code are installed.
                "pre_build": {
                    "commands": [
                        *guard,
                        "python3 -m pip install --quiet -r requirements.txt",
                        "python3 -m pip install --quiet --no-deps -e .",
                    ]
                },
                "build": {"commands": evaluation_commands(post)},
            },
            "artifacts": {"files": ["**/*"], "base-directory": PR_OUT},
        }
        key = self._key
        environment = codebuild.BuildEnvironment(
            build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
            compute_type=codebuild.ComputeType.SMALL,
        )
        variables = {k: codebuild.BuildEnvironmentVariable(value=v) for k, v in env.items()}
        if source is None:
            return codebuild.PipelineProject(
                self,
                "Project",
                role=self.role,
                build_spec=codebuild.BuildSpec.from_object(spec),
                environment=environment,
                environment_variables=variables,
                timeout=Duration.minutes(60),
                encryption_key=key,
                description="evalgate on a pull request (evaluation only)",
            )
        return codebuild.Project(
            self,
            "Project",
            role=self.role,
            source=source,
            build_spec=codebuild.BuildSpec.from_object(spec),
            environment=environment,
            environment_variables=variables,
            timeout=Duration.minutes(60),
            encryption_key=key,
            description="evalgate on a pull request (evaluation only)",
        )

    def _github_pipeline(self, s: Settings, artifacts: s3.IBucket) -> codepipeline.Pipeline:
        assert s.repository is not None and s.connection_arn is not None
        owner, repo = s.repository.split("/")
        out = codepipeline.Artifact("PullRequest")
        source = actions.CodeStarConnectionsSourceAction(
            action_name="PullRequest",
            owner=owner,
            repo=repo,
            branch=s.branch,
            connection_arn=s.connection_arn,
            output=out,
            code_build_clone_output=True,
            trigger_on_push=False,
        )
        build = actions.CodeBuildAction(
            action_name="Evaluate",
            project=self.project,
            input=out,
            environment_variables={
                "SOURCE_COMMIT": codebuild.BuildEnvironmentVariable(value=source.variables.commit_id),
                "SOURCE_BRANCH": codebuild.BuildEnvironmentVariable(value=source.variables.branch_name),
            },
        )
        return codepipeline.Pipeline(
            self,
            "Pipeline",
            pipeline_name=f"{s.project_name}-pull-requests",
            pipeline_type=codepipeline.PipelineType.V2,
            execution_mode=codepipeline.ExecutionMode.PARALLEL,
            artifact_bucket=artifacts,
            stages=[
                codepipeline.StageProps(stage_name="Source", actions=[source]),
                codepipeline.StageProps(stage_name="Evaluate", actions=[build]),
            ],
            triggers=[
                codepipeline.TriggerProps(
                    provider_type=codepipeline.ProviderType.CODE_STAR_SOURCE_CONNECTION,
                    git_configuration=codepipeline.GitConfiguration(
                        source_action=source,
                        pull_request_filter=[
                            codepipeline.GitPullRequestFilter(
                                events=[
                                    codepipeline.GitPullRequestEvent.OPEN,
                                    codepipeline.GitPullRequestEvent.UPDATED,
                                ],
                                branches_includes=s.watched_pr_branches,
                            )
                        ],
                    ),
                )
            ],
        )

    def _codecommit_rule(self, s: Settings, repo: codecommit.IRepository) -> events.Rule:
        detail = events.EventField
        return events.Rule(
            self,
            "PullRequestEvents",
            description="CodeCommit pull request created or updated -> evaluation-only build",
            event_pattern=events.EventPattern(
                source=["aws.codecommit"],
                detail_type=["CodeCommit Pull Request State Change"],
                resources=[repo.repository_arn],
                detail={
                    "event": ["pullRequestCreated", "pullRequestSourceBranchUpdated"],
                    "pullRequestStatus": ["Open"],
                    "destinationReference": [f"refs/heads/{b}" for b in s.watched_pr_branches],
                },
            ),
            targets=[
                targets.CodeBuildProject(
                    self.project,
                    event=events.RuleTargetInput.from_object(
                        {
                            "sourceVersion": detail.from_path("$.detail.sourceCommit"),
                            "environmentVariablesOverride": [
                                {
                                    "name": "PR_NUMBER",
                                    "value": detail.from_path("$.detail.pullRequestId"),
                                    "type": "PLAINTEXT",
                                },
                                {
                                    "name": "SOURCE_COMMIT",
                                    "value": detail.from_path("$.detail.sourceCommit"),
                                    "type": "PLAINTEXT",
                                },
                                {
                                    "name": "BEFORE_COMMIT",
                                    "value": detail.from_path("$.detail.destinationCommit"),
                                    "type": "PLAINTEXT",
                                },
                            ],
                        }
                    ),
                )
            ],
        )

    def _acknowledge(self, props: PullRequestEvalProps) -> None:
        arn = nag_text(self, props.eval_bucket.bucket_arn)
        for finding, reason in (
            (f"Resource::{arn}/{PR_CACHE_PREFIX}*", "Each pull request writes its own cache under pr-cache/<number>/."),
            (f"Resource::{arn}/{PR_RUNS_PREFIX}*", "Each pull request's reports go under pr-runs/<number>/<commit>/."),
            (
                f"Resource::{arn}/{CALIBRATION_PREFIX}*",
                "Read-only: the judge calibration records the trusted gate measured (one file per judge and rubric).",
            ),
        ):
            acknowledge(self.role, f"AwsSolutions-IAM5[{finding}]", reason)
