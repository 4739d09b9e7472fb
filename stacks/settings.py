"""Typed settings for the CDK app, read from the CDK context (``cdk.json`` or ``cdk synth -c key=value``).

Every setting is a flat, camelCase context key so any of them can be overridden on the command line. A missing
or invalid setting stops synth with a :class:`SettingsError` whose message names the context key, e.g.::

    Invalid settings in the CDK context (cdk.json "context" or -c key=value):
      - notificationEmail: value is not a valid email address (got 'ops-at-example.com')
"""

from __future__ import annotations

import ast
import difflib
import importlib
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from stacks.feature_flags_model import MODEL_ID_PATTERN, PROMPT_ID_PATTERN, FeatureFlagsConfig

# Context keys that no longer exist, with what replaced them: refused with the reason rather than ignored.
RETIRED_KEYS: dict[str, str] = {
    "latencySloMs": (
        "replaced by ttftSloMs (p95 time to first token, the SLO) and totalRegressionMs / totalRegressionPct "
        "(how much the total answer time may grow over the baseline): a p95 bound on the whole answer is one no "
        "long answer meets"
    ),
}

REPO_ROOT = Path(__file__).resolve().parent.parent

DeploymentMode = Literal["canary", "all-at-once"]
ApiAuth = Literal["none", "iam", "jwt"]
API_AUTH_NONE_EXPOSES = (
    "'none' leaves the Prod API anonymous: anyone with its URL can call POST /ask (spending Bedrock tokens) and "
    "rate every answer they obtain through POST /feedback (one vote each), which moves the FeedbackScore a "
    "rollback reads"
)

_CONNECTION_ARN = re.compile(
    r"^arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:connection/[0-9a-f-]{36}$"
)
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_MODEL_ID = MODEL_ID_PATTERN
_GUARDRAIL_ID = re.compile(r"^[a-z0-9]{12}$")
_GUARDRAIL_VERSION = re.compile(r"^(DRAFT|[1-9][0-9]{0,7})$")
_GIT_GLOB = re.compile(r"^[A-Za-z0-9._/*?\-]+$")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{1,18}[a-z0-9]$")
_HANDLER = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def _evalgate(module: str) -> ModuleType:
    """A module of the ``evalgate`` library (lambdas/): the rules the stacks share with the code they ship."""
    return importlib.import_module(f"evalgate.{module}")


def _latency() -> ModuleType:
    """``evalgate.core.latency`` (the latency rules and the published TTFT table: one home for service and stacks)."""
    return _evalgate("core.latency")


def load_guardrail(path: str) -> Any:
    """The guardrail spec from the repository (``evalgate.engine.guardrail_spec``: what the pipeline tests it with)."""
    errors, spec = _evalgate("core.errors"), _evalgate("engine.guardrail_spec")
    try:
        return spec.load_guardrail_spec(REPO_ROOT / path)
    except errors.InputError as exc:
        shown = "; ".join(str(p).replace(str(REPO_ROOT) + "/", "") for p in exc.problems)
        raise ValueError(f"invalid guardrail file: {shown}") from None


def _handler_problem(root: Path, handler: str) -> str | None:
    """Why ``handler`` ("pkg.module.function") is not a top-level function of a module under ``root``, or None.
    Read from the source (never imported: synth must not run the service's code)."""
    module, function = handler.rsplit(".", 1)
    path = root / module.replace(".", "/")
    source = path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"
    if not source.is_file():
        found = {".".join(p.relative_to(root).with_suffix("").parts) for p in root.rglob("*.py")}
        found = {name.removesuffix(".__init__") for name in found}
        hint = _closest(module, found)
        return f"no module {module} in {root.relative_to(REPO_ROOT)}/{hint}"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    if function not in names:
        return f"{source.relative_to(REPO_ROOT)} has no top-level function {function}" + _closest(function, names)
    return None


class SettingsError(ValueError):
    """Raised when the CDK context holds a missing or invalid setting; the message names the context key."""


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return value


def _json_object(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg}") from None
    return value


def _model_id(value: str) -> str:
    if not _MODEL_ID.match(value):
        raise ValueError("not a Bedrock model id, inference profile id or bedrock ARN")
    return value


ModelId = Annotated[str, AfterValidator(_model_id)]
Percent = Annotated[int, Field(ge=1, le=99)]
Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class AlarmThresholds(BaseModel):
    """Canary/flag-rollout alarm thresholds, evaluated on the NEW Lambda version's metrics only."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    quality_min: Rate = 0.7  # QualityScore average below this -> alarm
    hallucination_max: Rate = 0.1  # Hallucination average (= rate) above this -> alarm
    error_rate_max: Rate = 0.05  # Errors average (0/1 per request = rate) above this -> alarm
    feedback_min: Rate = 0.5  # FeedbackScore average below this -> alarm (business outcome)
    # ... but only in a period where at least this many distinct answers were rated (one vote per answer)
    feedback_min_answers: Annotated[int, Field(ge=1, le=100_000)] = 20
    period_minutes: Annotated[int, Field(ge=1, le=60)] = 5
    evaluation_periods: Annotated[int, Field(ge=1, le=10)] = 2


class Settings(BaseModel):
    """Everything the stacks need, validated. Field names map to camelCase context keys."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True, frozen=True)

    project_name: str = "evalgate"
    account: str | None = None
    region: str | None = None

    # Source: a CodeConnections (CodeStar) connection + "owner/repo", or a CodeCommit repository name.
    connection_arn: str | None = None
    repository: str | None = None
    code_commit_repository: str | None = None
    branch: str = "main"
    release_tag_pattern: str = "v*"
    release_branch_pattern: str = "release/*"

    notification_email: str

    generator_model_id: ModelId
    judge_model_id: ModelId
    heavy_judge_model_id: ModelId | None = None
    embeddings_model_id: ModelId
    prompt_version: str = "support/v1"
    guardrail_id: str | None = None
    guardrail_version: str | None = None
    # The guardrail as code (guardrails/*.toml): provisioned by the service stack and gated by the pipeline.
    guardrail_config: str | None = None

    thresholds_file: str = "golden/gate.toml"
    golden_dir: str = "golden"
    # The service behind the pipeline (README "Gate your own service"): the folder its code lives in (shipped as
    # the Lambda code root, next to lambdas/), its handler there, and the folder of its prompt templates.
    service_code_root: str = "lambdas"
    service_handler: str = "store_assistant.handler.handler"
    prompts_dir: str = "prompts"

    canary_percent: Percent = 10
    canary_interval_minutes: Annotated[int, Field(ge=1, le=120)] = 10
    min_judged_samples: Annotated[int, Field(ge=1, le=100_000)] = 8
    # How long the canary analysis waits for the minimum-sample alarm to see late judgements (capture queue batch
    # window + judge call + EMF ingestion and alarm evaluation); bounded by the 15-minute AfterAllowTraffic hook.
    sample_grace_seconds: Annotated[int, Field(ge=0, le=600)] = 240

    peak_rps: Annotated[float, Field(gt=0.0, le=5000.0)] = 2.0
    load_test_seconds: Annotated[int, Field(ge=10, le=1800)] = 60
    # Latency (evalgate.core.latency): p95 time to first token <= ttftSloMs (staging load test, pre-traffic smoke, the
    # Prod alarm); p95 total answer time <= baseline + min(totalRegressionMs, baseline x totalRegressionPct / 100)
    # (staging load test vs the last passing one, canary analysis vs the previous version).
    ttft_slo_ms: Annotated[int, Field(ge=50, le=60_000)] = 2000
    total_regression_ms: Annotated[int, Field(ge=1, le=60_000)] | None = 250
    total_regression_pct: Annotated[float, Field(gt=0.0, le=1000.0)] | None = 10.0

    monthly_eval_budget_usd: Annotated[float, Field(gt=0.0)] = 50.0
    max_run_cost_usd: Annotated[float, Field(gt=0.0)] = 5.0
    # >1: the quality gate runs as a CodeBuild batch build: evalShards shard builds + one merge build
    eval_shards: Annotated[int, Field(ge=1, le=16)] = 1

    alarm_thresholds: AlarmThresholds = Field(default_factory=AlarmThresholds)
    feature_flags: FeatureFlagsConfig | None = None

    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 180, 365] = 30
    data_retention_days: Annotated[int, Field(ge=1, le=3650)] = 30

    # Who may call POST /ask and /feedback: none (anonymous), iam (SigV4), jwt (OIDC/Cognito issuer + audience).
    api_auth: ApiAuth = "none"
    api_jwt_issuer: str | None = None
    api_jwt_audience: list[str] | None = None
    # Secrets Manager secret (name) with the pipeline's OAuth2 client: {"token_url", "client_id", "client_secret"}
    api_jwt_client_secret: str | None = None
    api_auth_strict: bool = False  # refuse to synthesize a Prod stage with apiAuth none (else: a synth warning)
    feedback_window_minutes: Annotated[int, Field(ge=1, le=10_080)] = 60  # feedback accepted this long after
    signing_grace_minutes: Annotated[int, Field(ge=0, le=10_080)] = 120  # previous key verifies after rotation
    signing_rotation_days: Annotated[int, Field(ge=1, le=365)] = 30  # the signing key is rotated this often
    # Pull requests: an evaluation-only path (never deploys, approves or moves the baseline).
    pull_request_eval: bool = False
    pull_request_branches: list[str] | None = None  # target branches watched (default: branch)
    pull_requests_from_forks: bool = False
    # Secrets Manager name of the GitHub token that posts statuses, comments and (tickets=github) issues.
    comment_token_secret: str | None = None
    # Known errors (hallucinations, injection leaks) on passing runs open tickets here.
    known_error_tickets: Literal["none", "opscenter", "github"] = "opscenter"

    deployment_mode: Literal["auto", "canary", "all-at-once"] = "auto"
    changed_paths: list[str] | None = None
    bundle: bool = False
    dev_stack: bool = False

    # --- field validators -------------------------------------------------------------------------------------

    _lists = field_validator("changed_paths", "api_jwt_audience", "pull_request_branches", mode="before")(_split_list)
    _json = field_validator("feature_flags", "alarm_thresholds", mode="before")(_json_object)

    @field_validator("project_name")
    @classmethod
    def _project(cls, v: str) -> str:
        if not _PROJECT.match(v):
            raise ValueError("must be 3-20 characters: lowercase letters, digits and '-', starting with a letter")
        return v

    @field_validator("account")
    @classmethod
    def _account(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d{12}", v):
            raise ValueError("must be a 12-digit AWS account id")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", v):
            raise ValueError("must be an AWS region name such as us-east-1")
        return v

    @field_validator("connection_arn")
    @classmethod
    def _connection(cls, v: str | None) -> str | None:
        if v is not None and not _CONNECTION_ARN.match(v):
            raise ValueError(
                "must be a CodeConnections ARN like arn:aws:codeconnections:us-east-1:111111111111:connection/<uuid>"
            )
        return v

    @field_validator("repository")
    @classmethod
    def _repo(cls, v: str | None) -> str | None:
        if v is not None and not _REPOSITORY.match(v):
            raise ValueError("must be 'owner/repo'")
        return v

    @field_validator("code_commit_repository")
    @classmethod
    def _codecommit(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", v):
            raise ValueError("must be a CodeCommit repository name")
        return v

    @field_validator("branch")
    @classmethod
    def _branch(cls, v: str) -> str:
        if not v or v.startswith("-") or ".." in v or not re.fullmatch(r"[A-Za-z0-9._/-]+", v):
            raise ValueError("must be a git branch name")
        return v

    @field_validator("release_tag_pattern", "release_branch_pattern")
    @classmethod
    def _glob(cls, v: str) -> str:
        if not _GIT_GLOB.match(v):
            raise ValueError("must be a git ref glob such as 'v*' or 'release/*'")
        return v

    @field_validator("notification_email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not _EMAIL.match(v):
            raise ValueError(f"value is not a valid email address (got {v!r})")
        return v

    @field_validator("guardrail_id")
    @classmethod
    def _guardrail(cls, v: str | None) -> str | None:
        if v is not None and not _GUARDRAIL_ID.match(v):
            raise ValueError("must be a Bedrock guardrail id (12 lowercase letters/digits)")
        return v

    @field_validator("guardrail_version")
    @classmethod
    def _guardrail_version(cls, v: str | None) -> str | None:
        if v is not None and not _GUARDRAIL_VERSION.match(v):
            raise ValueError("must be DRAFT or a version number")
        return v

    @field_validator("prompt_version")
    @classmethod
    def _prompt(cls, v: str) -> str:
        if not PROMPT_ID_PATTERN.match(v):
            raise ValueError("must look like 'support/v1' (<promptsDir>/<name>/<version>/)")
        return v

    @field_validator("thresholds_file", "golden_dir", "service_code_root", "prompts_dir")
    @classmethod
    def _repo_path(cls, v: str) -> str:
        p = Path(v)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError("must be a path relative to the repository root")
        if not (REPO_ROOT / p).exists():
            raise ValueError(f"{v} does not exist in the repository")
        return v

    @field_validator("service_handler")
    @classmethod
    def _handler(cls, v: str) -> str:
        if not _HANDLER.match(v):
            raise ValueError(f"must be '<module path>.<function>' like 'store_assistant.handler.handler' (got {v!r})")
        return v

    # --- cross-field rules ------------------------------------------------------------------------------------

    @model_validator(mode="after")
    def _service_folders(self) -> Settings:
        for key, folder in (("serviceCodeRoot", self.service_code_root), ("promptsDir", self.prompts_dir)):
            if not (REPO_ROOT / folder).is_dir():
                raise ValueError(f"{key}: {folder} is not a folder")
        problem = _handler_problem(REPO_ROOT / self.service_code_root, self.service_handler)
        if problem:
            raise ValueError(f"serviceHandler: {problem}")
        if not (REPO_ROOT / self.prompts_dir / self.prompt_version).is_dir():
            raise ValueError(f"promptVersion: {self.prompts_dir}/{self.prompt_version}/ does not exist")
        return self

    @model_validator(mode="after")
    def _source(self) -> Settings:
        connection = self.connection_arn is not None or self.repository is not None
        if connection and self.code_commit_repository is not None:
            raise ValueError(
                "connectionArn/repository: set either connectionArn + repository or codeCommitRepository, not both"
            )
        if self.code_commit_repository is None:
            if self.connection_arn is None:
                raise ValueError("connectionArn: required (or set codeCommitRepository)")
            if self.repository is None:
                raise ValueError("repository: required with connectionArn ('owner/repo')")
        return self

    @field_validator("pull_request_branches")
    @classmethod
    def _pr_branches(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or any(not _GIT_GLOB.match(b) for b in v)):
            raise ValueError("must be one or more branch names or globs, e.g. 'main' or 'main,release/*'")
        return v

    @field_validator("comment_token_secret")
    @classmethod
    def _secret_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9/_+=.@-]{1,512}", v):
            raise ValueError("must be a Secrets Manager secret name")
        return v

    @model_validator(mode="after")
    def _pull_requests(self) -> Settings:
        github = self.code_commit_repository is None
        if self.pull_request_eval and github and self.comment_token_secret is None:
            raise ValueError(
                "commentTokenSecret: required with pullRequestEval on a GitHub connection "
                "(the token that posts the status and the comment)"
            )
        if self.known_error_tickets == "github" and (not github or self.comment_token_secret is None):
            raise ValueError("knownErrorTickets: 'github' needs a connection source and commentTokenSecret")
        return self

    @model_validator(mode="after")
    def _api_auth(self) -> Settings:
        if self.api_auth == "jwt":
            if not self.api_jwt_issuer or not self.api_jwt_issuer.startswith("https://"):
                raise ValueError("apiJwtIssuer: required with apiAuth jwt: the issuer URL (https://...)")
            if not self.api_jwt_audience:
                raise ValueError("apiJwtAudience: required with apiAuth jwt: the accepted audience(s) / client id(s)")
            if not self.api_jwt_client_secret:
                raise ValueError(
                    "apiJwtClientSecret: required with apiAuth jwt: the Secrets Manager secret holding the OAuth2 "
                    "client the pipeline's load test and smoke eval get their token with"
                )
        elif self.api_jwt_issuer or self.api_jwt_audience:
            raise ValueError(f"apiJwtIssuer/apiJwtAudience: only used with apiAuth jwt (apiAuth is {self.api_auth!r})")
        if self.api_auth_strict and self.api_auth == "none":
            raise ValueError(f"apiAuth: {API_AUTH_NONE_EXPOSES} (apiAuthStrict is true: set apiAuth iam or jwt)")
        return self

    @model_validator(mode="after")
    def _guardrail_pair(self) -> Settings:
        if self.guardrail_version is not None and self.guardrail_id is None:
            raise ValueError("guardrailId: required when guardrailVersion is set")
        if self.guardrail_config is not None and self.guardrail_id is not None:
            raise ValueError(
                "guardrailConfig: set either guardrailConfig (the guardrail this app provisions) or guardrailId "
                "(one made elsewhere), not both"
            )
        return self

    @field_validator("guardrail_config")
    @classmethod
    def _guardrail_config(cls, v: str | None) -> str | None:
        if v is None:
            return v
        p = Path(v)
        if p.is_absolute() or ".." in p.parts or p.suffix != ".toml":
            raise ValueError("must be a .toml file relative to the repository root, e.g. guardrails/support.toml")
        if not (REPO_ROOT / p).is_file():
            raise ValueError(f"{v} does not exist in the repository")
        load_guardrail(v)  # every problem with its file:line
        return v

    @model_validator(mode="after")
    def _flags_models(self) -> Settings:
        allowed = set(self.service_model_ids)
        for name, variant in self.flags.variants.items():
            if variant.model_id not in allowed:
                raise ValueError(
                    f"featureFlags.variants.{name}.model_id: {variant.model_id!r} is neither generatorModelId nor "
                    "in featureFlags.extra_model_ids, so the service role could not invoke it"
                )
            if not (REPO_ROOT / self.prompts_dir / variant.prompt_version).is_dir():
                raise ValueError(
                    f"featureFlags.variants.{name}.prompt_version: {self.prompts_dir}/{variant.prompt_version}/ "
                    "does not exist"
                )
        return self

    @model_validator(mode="after")
    def _ttft_slo_is_attainable(self) -> Settings:
        for model_id in self.service_model_ids:
            problem = _latency().slo_problem(model_id, self.ttft_slo_ms)
            if problem:
                raise ValueError(f"ttftSloMs: {problem}")
        return self

    @model_validator(mode="after")
    def _canary_can_collect_samples(self) -> Settings:
        expected = self.expected_canary_judged()
        if expected < self.min_judged_samples:
            raise ValueError(
                f"minJudgedSamples: the canary can collect only ~{expected:.0f} judged answers at peak "
                f"(peakRps {self.peak_rps:g} x 60 x canaryIntervalMinutes {self.canary_interval_minutes} x "
                f"canaryPercent {self.canary_percent}% x capture sample rate {self.flags.capture.sample_rate:g}), "
                f"fewer than minJudgedSamples {self.min_judged_samples}: it could never promote. Lower "
                "minJudgedSamples or raise the interval, the percentage or featureFlags.capture.sample_rate"
            )
        return self

    @model_validator(mode="after")
    def _canary_rules_can_fire(self) -> Settings:
        """Refuse a canary under which a rule could never fire (``evalgate canary-power`` prints the full power
        report): a live verdict with too few periods or observations, a test that cannot reach significance, a
        tolerance at or above the largest possible change, a rollback alarm longer than the canary."""
        from dataclasses import replace

        power = _evalgate("release.canary_power")
        traffic = power.CanaryTraffic(
            self.peak_rps, self.canary_percent, self.canary_interval_minutes, self.flags.capture.sample_rate
        )
        cfg = replace(
            _evalgate("release.canary").CanaryConfig(),
            min_judged=self.min_judged_samples,
            latency_budget=self.latency_budget,
        )
        problems: list[str] = power.never_fires(traffic, cfg=cfg)
        t = self.alarm_thresholds
        if t.period_minutes * t.evaluation_periods > self.canary_interval_minutes:
            problems.append(
                f"alarmThresholds: {t.evaluation_periods} periods of {t.period_minutes} min need "
                f"{t.period_minutes * t.evaluation_periods} min of data, longer than the "
                f"{self.canary_interval_minutes}-minute canary: the rollback alarms could never fire during it"
            )
        if problems:
            raise ValueError(
                "canaryIntervalMinutes: the canary could never fire a configured rule: "
                + "; ".join(problems)
                + " (see `evalgate canary-power`)"
            )
        return self

    # --- derived values ---------------------------------------------------------------------------------------

    @property
    def uses_codecommit(self) -> bool:
        return self.code_commit_repository is not None

    @property
    def flags(self) -> FeatureFlagsConfig:
        if self.feature_flags is not None:
            return self.feature_flags
        return FeatureFlagsConfig.default(self.generator_model_id, self.prompt_version)

    @property
    def service_model_ids(self) -> list[str]:
        """Models the service may call: the generator plus any extra model a flag variant may route to."""
        ids = [self.generator_model_id]
        if self.feature_flags is not None:
            ids += [m for m in self.feature_flags.extra_model_ids if m not in ids]
        return ids

    @property
    def watched_pr_branches(self) -> list[str]:
        return self.pull_request_branches or [self.branch]

    @property
    def heavy_judge(self) -> str:
        return self.heavy_judge_model_id or self.judge_model_id

    @property
    def eval_model_ids(self) -> list[str]:
        """Models the pipeline's evaluation may call (candidate, judges, embeddings)."""
        out: list[str] = []
        for m in [*self.service_model_ids, self.judge_model_id, self.heavy_judge, self.embeddings_model_id]:
            if m not in out:
                out.append(m)
        return out

    def expected_canary_judged(self) -> float:
        """Judged answers the canary arm collects in one canary interval at peak traffic."""
        return (
            self.peak_rps
            * 60
            * self.canary_interval_minutes
            * self.canary_percent
            / 100
            * self.flags.capture.sample_rate
        )

    @property
    def load_test_rps(self) -> float:
        """The load test drives the staging endpoint at 1.5x the configured peak."""
        return round(self.peak_rps * 1.5, 3)

    @property
    def latency_budget(self) -> Any:
        """The ``evalgate.core.latency.LatencyBudget`` these settings describe."""
        return _latency().LatencyBudget(
            ttft_slo_ms=float(self.ttft_slo_ms),
            regression_ms=float(self.total_regression_ms) if self.total_regression_ms is not None else None,
            regression_pct=self.total_regression_pct,
        )


def _context_key(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if not parts:
        return "(settings)"
    head = to_camel(parts[0])
    return ".".join([head, *parts[1:]])


# Context keys that belong to the CDK itself: feature flags ("@aws-cdk/..."), CLI and lookup keys ("aws:cdk:...",
# "availability-zones:account=..."), and these few without a colon.
_CDK_KEYS = frozenset({"acknowledged-issue-numbers", "cli-telemetry", "notices"})


def _is_cdk_key(key: str) -> bool:
    return key.startswith("@") or ":" in key or key in _CDK_KEYS


def _closest(name: str, valid: Any) -> str:
    close = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _nested_keys(loc: tuple[Any, ...]) -> set[str]:
    """The keys a nested setting object accepts (its camelCase aliases and field names), for a suggestion."""
    model: Any = Settings
    for part in loc:
        fields = getattr(model, "model_fields", {})
        info = fields.get(part) or next((f for n, f in fields.items() if to_camel(n) == part), None)
        if info is None:
            return set()
        model = info.annotation
        for arg in getattr(model, "__args__", ()):  # Optional[Model]
            if hasattr(arg, "model_fields"):
                model = arg
    names = set(getattr(model, "model_fields", {}))
    return names | {to_camel(n) for n in names}


def load_settings(context: dict[str, Any]) -> Settings:
    """Validate the raw context dict; raise :class:`SettingsError` naming every bad key. A key that is neither
    a setting nor the CDK's own is an error with the closest setting's name (a typo must not keep a default)."""
    keys = {to_camel(name) for name in Settings.model_fields}
    raw = {k: v for k, v in context.items() if k in keys}
    lines = [f"  - {k}: no longer a setting; {why}" for k, why in RETIRED_KEYS.items() if k in context]
    unknown = (k for k in context if k not in keys and k not in RETIRED_KEYS and not _is_cdk_key(str(k)))
    for key in sorted(unknown):
        lines.append(f"  - {key}: unknown setting" + _closest(str(key), keys))
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                lines.append(f"  - {_context_key(err['loc'])}: missing (required)")
            elif not err["loc"] and ":" in msg:
                # model-level rule: the message starts with the key it is about
                lines.append(f"  - {msg}")
            elif err["type"] == "extra_forbidden":
                hint = _closest(str(err["loc"][-1]), _nested_keys(err["loc"][:-1]))
                lines.append(f"  - {_context_key(err['loc'])}: unknown key{hint}")
            else:
                lines.append(f"  - {_context_key(err['loc'])}: {msg}")
    if lines:
        raise SettingsError(
            'Invalid settings in the CDK context (cdk.json "context" or -c key=value):\n' + "\n".join(lines)
        )
    return settings


def read_context(node: Any) -> dict[str, Any]:
    """The whole context of a construct node (settings, retired and CDK keys, and anything misspelt, for
    load_settings)."""
    return {str(k): v for k, v in dict(node.get_all_context()).items() if v is not None}
