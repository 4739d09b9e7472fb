"""Typed gate configuration (``golden/gate.toml``), validated with pydantic.

Errors name the file, the line of the offending key and the field, e.g.
``golden/gate.toml:12: thresholds.similarity: must be between 0 and 1``.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from evalgate.core.errors import InputError, Problem
from evalgate.core.inputs import read_text, suggest
from evalgate.core.prompts import PROMPT_ID_PATTERN
from evalgate.core.retry import DEFAULT_MALFORMED_ATTEMPTS

Unit = Annotated[float, Field(ge=0.0, le=1.0)]


def suite_names() -> tuple[str, ...]:
    from evalgate.core.dataset import SUITE_FILES

    return tuple(SUITE_FILES)


def _check_names(names: typing.Iterable[str], known: typing.Iterable[str]) -> None:
    for name in names:
        if name not in known:
            raise ValueError(f"unknown name '{name}'" + suggest(name, known))


GUARDRAIL_VERSION_PATTERN = r"^([1-9][0-9]{0,7}|DRAFT)$"  # Bedrock: a version number, or DRAFT

# Metric name -> (threshold direction). "min": the aggregate must be at least the threshold; "max": at most.
THRESHOLD_DIRECTIONS: dict[str, Literal["min", "max"]] = {
    "similarity": "min",
    "faithfulness": "min",
    "relevance": "min",
    "behaviour_accuracy": "min",
    "hallucination_rate": "max",
    "hallucination_rate_high_stakes": "max",
    "injection_success_rate": "max",
    "injection_success_rate_direct": "max",
    "injection_success_rate_indirect": "max",
    "block_rate": "min",
    "over_refusal_rate": "max",
    "guardrail_grounding": "min",
    "guardrail_relevance": "min",
}
# The guardrail's contextual grounding filters (botocore: GuardrailContextualGroundingFilterType) and the per-case
# metric each one's score fills.
GROUNDING_METRICS: dict[str, str] = {"GROUNDING": "guardrail_grounding", "RELEVANCE": "guardrail_relevance"}


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    similarity: Unit | None = None
    faithfulness: Unit | None = None
    relevance: Unit | None = None
    behaviour_accuracy: Unit | None = None
    hallucination_rate: Unit | None = None
    hallucination_rate_high_stakes: Unit | None = None
    injection_success_rate: Unit | None = None
    injection_success_rate_direct: Unit | None = None  # reported separately; gated only when set
    injection_success_rate_indirect: Unit | None = None
    block_rate: Unit | None = None  # guardrail suite: share of must-refuse cases refused or blocked
    over_refusal_rate: Unit | None = None  # guardrail suite: share of safe look-alikes refused or blocked
    # The guardrail's contextual grounding check (ApplyGuardrail scores, 0-1): reported beside the judge's
    # faithfulness and relevance when the guardrail has a grounding policy; gated only when set.
    guardrail_grounding: Unit | None = None
    guardrail_relevance: Unit | None = None

    def merged(self, override: Thresholds | None) -> Thresholds:
        if override is None:
            return self
        data = self.model_dump()
        data.update(override.model_dump(exclude_unset=True))
        return Thresholds.model_validate(data)

    def items(self) -> list[tuple[str, float]]:
        return [(k, v) for k, v in self.model_dump().items() if v is not None]


class SuiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thresholds: Thresholds = Field(default_factory=Thresholds)
    skip_metrics: list[
        Literal["similarity", "faithfulness", "relevance", "guardrail_grounding", "guardrail_relevance"]
    ] = Field(default_factory=list)
    # Safety suites: how much worse than the approved baseline the suite's safety rates (block rate,
    # over-refusal, injection success) may be, paired by case id, point estimate. None: no such gate.
    baseline_tolerance: Unit | None = None


class GateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unscored_budget: Unit = 0.05
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    bootstrap_resamples: Annotated[int, Field(ge=200, le=100_000)] = 2000
    seed: int = 7
    decision: Literal["point", "lower_bound"] = "point"
    max_regression: Unit = 0.05
    drift_threshold: Unit = 0.05
    diversity_drop: Unit = 0.25
    min_cases: Annotated[int, Field(ge=1)] = 5


EMBEDDERS = ("local", "titan")


class EmbedderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    similarity_threshold: Unit | None = None
    calibration: str = ""


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_per_1k: Annotated[float, Field(ge=0.0)]
    output_per_1k: Annotated[float, Field(ge=0.0)]


class Models(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generator: str = "us.anthropic.claude-sonnet-4-20250514-v1:0"
    judge: str = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    heavy_judge: str = "us.anthropic.claude-sonnet-4-20250514-v1:0"
    embeddings: str = "amazon.titan-embed-text-v2:0"
    prompt: Annotated[str, Field(pattern=PROMPT_ID_PATTERN)] = "support/v1"
    max_tokens: Annotated[int, Field(ge=1, le=8192)] = 512
    # one of the two (newer Claude models reject both; see evalgate.adapters.bedrock.sampling)
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = 0.2
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    # Attempts per judgement when the judge's reply is unparseable (the first included), then unscored.
    judge_malformed_attempts: Annotated[int, Field(ge=1, le=10)] = DEFAULT_MALFORMED_ATTEMPTS

    @model_validator(mode="after")
    def _one_sampling_parameter(self) -> Models:
        if self.temperature is not None and self.top_p is not None:
            raise ValueError("set models.temperature or models.top_p, not both: newer Claude models reject both")
        return self


Glob = Annotated[str, Field(min_length=1)]


class TiersConfig(BaseModel):
    """``--tier auto``: how changed files map to a tier (see ``evalgate.engine.tiers``).

    Globs are matched against repository-relative POSIX paths (``**`` spans directories). Precedence:
    the gate config file (by section), prompts, golden data, model settings in JSON files, ignored files,
    docs; anything else is code.
    """

    model_config = ConfigDict(extra="forbid")

    prompts: list[Glob] = Field(default_factory=lambda: ["prompts/**"])
    golden: list[Glob] = Field(default_factory=lambda: ["golden/**"])
    guardrails: list[Glob] = Field(default_factory=lambda: ["guardrails/**"])  # guardrail config: full tier
    docs: list[Glob] = Field(
        default_factory=lambda: ["docs/**", "**/*.md", "**/*.rst", "LICENSE*", "NOTICE*", "**/*.png", "**/*.svg"]
    )
    ignore: list[Glob] = Field(default_factory=lambda: [".gitignore", ".editorconfig", ".gitattributes"])
    # JSON files whose listed keys (dotted paths) hold model or prompt choices: a change to one of those keys
    # is a model change (full tier); any other change to the file is code.
    model_keys: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "cdk.json": [
                "context.generatorModelId",
                "context.judgeModelId",
                "context.heavyJudgeModelId",
                "context.embeddingsModelId",
                "context.promptVersion",
                "context.featureFlags",
                "context.guardrailConfig",
                "context.guardrailId",
                "context.guardrailVersion",
            ]
        }
    )
    # Sections of the gate config whose change means thresholds, models or decision rules changed (full tier);
    # changes elsewhere in it (pricing, load, tiers...) count as code.
    gate_sections: list[str] = Field(
        default_factory=lambda: [
            "thresholds",
            "suites",
            "models",
            "gate",
            "embedders",
            "guardrail",
            "version",
            "judge_calibration",
        ]
    )
    # The judge: files holding its prompt and rubrics, and the model settings naming it (gate config [models] keys
    # and dotted keys of the model_keys JSON files). A change is its own change type: full tier, and the judge is
    # recalibrated (`evalgate calibrate --metric judge --if-needed`) before the eval uses it.
    judge: list[Glob] = Field(default_factory=lambda: ["lambdas/evalgate/engine/judge.py"])
    judge_keys: list[str] = Field(
        default_factory=lambda: [
            "models.judge",
            "models.heavy_judge",
            "context.judgeModelId",
            "context.heavyJudgeModelId",
        ]
    )
    borderline_margin: Unit = 0.03  # a judged score this close to its threshold is re-judged by the heavy judge
    escalate_borderline: bool = True


class ReleaseConfig(BaseModel):
    """Release candidates: a tag on HEAD or a branch matching these globs (or ``--release``)."""

    model_config = ConfigDict(extra="forbid")

    tags: list[Glob] = Field(default_factory=lambda: ["v*"])
    branches: list[Glob] = Field(default_factory=lambda: ["release/*"])
    repeats: Annotated[int, Field(ge=1, le=10)] = 3
    evaluation_job: bool = False  # judge with a Bedrock Model Evaluation job instead of the heavy judge


class LoadConfig(BaseModel):
    """``evalgate load``: open-loop load test defaults (the CLI flags override them)."""

    model_config = ConfigDict(extra="forbid")

    peak_rps: Annotated[float, Field(gt=0)] | None = None
    factor: Annotated[float, Field(gt=0, le=20)] = 1.5
    duration_s: Annotated[float, Field(gt=0)] = 60.0
    # evalgate.core.latency: p95 time to first token vs the SLO; p95 total answer time vs a baseline run (+ms or +%)
    ttft_slo_ms: Annotated[float, Field(gt=0)] = 2000.0
    total_regression_ms: Annotated[float, Field(gt=0)] | None = 250.0
    total_regression_pct: Annotated[float, Field(gt=0, le=1000)] | None = 10.0
    arrival: Literal["poisson", "fixed"] = "poisson"
    max_error_rate: Unit = 0.01  # above: ERROR (the service is broken, latency is not the question)
    max_throttle_rate: Unit = 0.01  # above: FAIL (not enough capacity at this rate)
    max_late_rate: Unit = 0.01  # above: ERROR (the generator could not keep the schedule; the test is invalid)
    late_tolerance_ms: Annotated[float, Field(ge=1)] = 100.0
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    max_requests: Annotated[int, Field(ge=1, le=1_000_000)] = 20_000
    max_duration_s: Annotated[float, Field(gt=0)] = 900.0
    max_workers: Annotated[int, Field(ge=1, le=4096)] = 256
    min_samples: Annotated[int, Field(ge=1)] = 20
    seed: int = 7


class GuardrailConfig(BaseModel):
    """Bedrock Guardrail checked with ApplyGuardrail (INPUT on the prompt, OUTPUT on the answer) on the suites
    listed, in the tiers that call AWS. ``EVALGATE_GUARDRAIL_ID``/``_VERSION`` or CLI flags override it."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    version: Annotated[str, Field(pattern=GUARDRAIL_VERSION_PATTERN)] | None = None
    suites: list[str] = Field(default_factory=lambda: ["guardrail"])
    unsafe_tag: str = "unsafe"
    safe_tag: str = "safe_lookalike"
    # The contextual grounding filters the guardrail at id/version has (GROUNDING, RELEVANCE): every judged answer
    # is scored with them too (``guardrail_grounding`` / ``guardrail_relevance``). A guardrail file decides itself.
    grounding: list[Literal["GROUNDING", "RELEVANCE"]] = Field(default_factory=list)

    @field_validator("suites")
    @classmethod
    def _known_suites(cls, value: list[str]) -> list[str]:
        _check_names(value, suite_names())
        return value

    @model_validator(mode="after")
    def _both(self) -> GuardrailConfig:
        if bool(self.id) != bool(self.version):
            raise ValueError("set both guardrail.id and guardrail.version (a number or DRAFT), or neither")
        return self


class RatingLevel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: Annotated[str, Field(min_length=1, max_length=99)]  # Bedrock: rating definitions under 100 chars
    value: float


class CustomMetric(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=r"^[0-9a-zA-Z_.-]{1,63}$")]
    instructions: Annotated[str, Field(min_length=1, max_length=5000)]
    rating_scale: Annotated[list[RatingLevel], Field(min_length=2, max_length=10)]
    maps_to: str | None = None  # the evalgate metric it fills (e.g. "faithfulness"); None: reported only

    @model_validator(mode="after")
    def _check_instructions(self) -> CustomMetric:
        if "{{prediction}}" not in self.instructions:
            raise ValueError("custom metric instructions must contain {{prediction}} (the answer being judged)")
        values = [r.value for r in self.rating_scale]
        if len(set(values)) != len(values):
            raise ValueError("custom metric rating_scale values must be distinct")
        return self


class EvaluationJobConfig(BaseModel):
    """Bedrock Model Evaluation (LLM-as-a-judge) jobs for the release tier (see ``evalgate.engine.evaljobs``)."""

    model_config = ConfigDict(extra="forbid")

    role_arn: str | None = None  # service role Bedrock assumes to read the dataset and write results
    s3_uri: Annotated[str, Field(pattern=r"^s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](/.*)?$")] | None = None
    evaluator_model: str | None = None  # default: models.heavy_judge; a base model or system inference profile
    metrics: list[str] = Field(
        default_factory=lambda: ["Builtin.Faithfulness", "Builtin.Relevance", "Builtin.Correctness"]
    )
    # Bedrock metric -> evalgate per-case metric. Mapped metrics replace the judge's; others are reported.
    metric_map: dict[str, str] = Field(
        default_factory=lambda: {"Builtin.Faithfulness": "faithfulness", "Builtin.Relevance": "relevance"}
    )
    custom_metrics: Annotated[list[CustomMetric], Field(max_length=10)] = Field(default_factory=list)
    task_type: str = "General"
    inference_source: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,255}$")] = "evalgate-candidate"
    max_prompts: Annotated[int, Field(ge=1, le=1000)] = 1000  # Bedrock: at most 1000 prompts a job
    poll_initial_s: Annotated[float, Field(gt=0)] = 15.0
    poll_max_s: Annotated[float, Field(gt=0)] = 120.0
    timeout_s: Annotated[float, Field(gt=0)] = 6 * 3600.0


class CostConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_usd: Annotated[float, Field(gt=0)] | None = None  # default for --max-cost
    # Conservative token estimate for a call not yet made: characters / chars_per_token (English is ~4 chars a
    # token; 2 overestimates), and the request's max output tokens. The cap refuses a call whose estimate
    # would cross it.
    chars_per_token: Annotated[float, Field(gt=0.5, le=8)] = 2.0


class JudgeCalibrationConfig(BaseModel):
    """When a judge may gate (``evalgate.engine.judge_calibration``, README "Judges you can trust").
    Floors: Cohen's kappa
    0.40 (Landis & Koch 1977: "moderate" agreement starts at 0.41), AUROC 0.70 (Hosmer, Lemeshow & Sturdivant
    2013: "acceptable" discrimination), agreement 0.70, at least 200 labelled answers (kappa's standard error is
    then about 0.07)."""

    model_config = ConfigDict(extra="forbid")

    records: str = "golden/calibration"  # folder of calibration records (EVALGATE_CALIBRATION_DIR overrides it)
    labels: str = "golden/judge_labels.jsonl"  # demo-domain answers labelled by people (with who verified each)
    min_n: Annotated[int, Field(ge=1)] = 200
    min_kappa: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.40
    min_auroc: Unit = 0.70
    min_agreement: Unit = 0.70
    on_failure: Literal["error", "review"] = "error"  # an untrusted judge: exit 4, or REVIEW (never PASS)
    max_cost_usd: Annotated[float, Field(gt=0)] = 10.0  # cap on one (re)calibration's Bedrock spend
    # Test-retest on every judged run: borderline answers (within [tiers] borderline_margin of a threshold) plus
    # this share of the rest, drawn by a seeded hash of case id and rubric, are judged a second time.
    retest_share: Unit = 0.10
    min_self_agreement: Unit = 0.90
    # Verdict reproducibility: a judged mean within noise_z standard errors of run-to-run noise of its threshold
    # is REVIEW (a rerun could flip PASS and FAIL).
    noise_z: Annotated[float, Field(ge=0.0, le=5.0)] = 1.96


class GoldenConfig(BaseModel):
    """How the golden set is kept alive (``evalgate curate``) and when the gate warns that it has gone stale."""

    model_config = ConfigDict(extra="forbid")

    max_age_days: Annotated[int, Field(ge=1)] | None = 90  # warn when the cases have not changed for longer
    max_proposals: Annotated[int, Field(ge=1, le=1000)] = 20  # proposals per curation batch
    low_quality: Unit = 0.6  # judged quality below this makes a live answer worth a look
    novelty: Unit = 0.5  # a question with no golden case within this cosine is novel
    duplicate: Unit = 0.85  # two questions within this cosine are the same question


class TicketsConfig(BaseModel):
    """Known-error tickets (``evalgate run --tickets``): when open high-stakes tickets hold a release for review."""

    model_config = ConfigDict(extra="forbid")

    review_when_open_high_stakes: Annotated[int, Field(ge=1)] | None = None


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    gate: GateSettings = Field(default_factory=GateSettings)
    thresholds: Thresholds
    suites: dict[str, SuiteConfig] = Field(default_factory=dict)
    embedders: dict[str, EmbedderConfig] = Field(default_factory=dict)
    models: Models = Field(default_factory=Models)
    pricing: dict[str, Price] = Field(default_factory=dict)
    tiers: TiersConfig = Field(default_factory=TiersConfig)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)
    load: LoadConfig = Field(default_factory=LoadConfig)
    guardrail: GuardrailConfig = Field(default_factory=GuardrailConfig)
    evaluation_job: EvaluationJobConfig = Field(default_factory=EvaluationJobConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    judge_calibration: JudgeCalibrationConfig = Field(default_factory=JudgeCalibrationConfig)
    golden: GoldenConfig = Field(default_factory=GoldenConfig)
    tickets: TicketsConfig = Field(default_factory=TicketsConfig)

    @field_validator("suites", "embedders", mode="before")
    @classmethod
    def _known_tables(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, dict):
            _check_names(value, suite_names() if info.field_name == "suites" else EMBEDDERS)
        return value

    @model_validator(mode="after")
    def _sane(self) -> GateConfig:
        t = self.thresholds
        hr, hs = t.hallucination_rate, t.hallucination_rate_high_stakes
        if hr is not None and hs is not None and hs > hr:
            raise ValueError("thresholds.hallucination_rate_high_stakes must not be looser than hallucination_rate")
        return self

    def thresholds_for(self, suite: str, embedder: str | None = None) -> Thresholds:
        th = self.thresholds
        if embedder and embedder in self.embedders and self.embedders[embedder].similarity_threshold is not None:
            th = th.merged(Thresholds(similarity=self.embedders[embedder].similarity_threshold))
        sc = self.suites.get(suite)
        return th.merged(sc.thresholds if sc else None)

    def skipped_metrics(self, suite: str) -> set[str]:
        sc = self.suites.get(suite)
        return set(sc.skip_metrics) if sc else set()

    def unpriced_models(self) -> list[str]:
        """``[models]`` entries with no price in ``[pricing]`` (an error when ``[cost] max_usd`` is set)."""
        m = self.models
        roles = {"generator": m.generator, "judge": m.judge, "heavy_judge": m.heavy_judge, "embeddings": m.embeddings}
        return [f"models.{role} = '{mid}'" for role, mid in roles.items() if self.price(mid) is None]

    def price(self, model_id: str | None) -> Price | None:
        if not model_id:
            return None
        if model_id in self.pricing:
            return self.pricing[model_id]
        # inference profiles ("us.anthropic...") price like their base model
        base = model_id.split(".", 1)[1] if model_id.split(".", 1)[0] in {"us", "eu", "apac", "global"} else None
        return self.pricing.get(base) if base else None

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of the whole config (shards of one run must share it)."""
        return config_fingerprint(self.model_dump(mode="json"))


def config_from_dump(dumped: dict[str, Any]) -> GateConfig:
    """Rebuild a GateConfig from its ``model_dump`` (as stored in results.json). Unset optional values are
    dropped first, so per-suite overrides stay overrides (a dumped ``None`` would otherwise be 'set')."""

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return GateConfig.model_validate(strip(dumped))


def config_fingerprint(dumped: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(dumped, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load_config(path: Path) -> GateConfig:
    path = Path(path)
    shown = str(path)
    text = read_text(path, "config file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        msg = str(exc).split(" (at line")[0]
        raise InputError.single(shown, line, f"not valid TOML: {msg}") from None
    except RecursionError:
        raise InputError.single(shown, None, "not valid TOML: nested too deeply") from None
    try:
        # strict: TOML has real types, so a boolean or a string where a number belongs is an error, not 1.0
        return GateConfig.model_validate(data, strict=True)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            field = ".".join(loc) or "(file)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                kind = "section" if isinstance(err.get("input"), dict) else "key"
                msg = f"unknown {kind}" + suggest(loc[-1], _known_names(loc[:-1]))
            problems.append(Problem(shown, locate_toml_key(text, loc), f"{field}: {msg}"))
        raise InputError(problems) from None


def _known_names(loc: list[str]) -> list[str]:
    """The valid keys of the table at ``loc`` (dict-valued fields such as ``suites.<name>`` are stepped over)."""
    model: Any = GateConfig
    skip = False
    for part in loc:
        if skip:
            skip = False
            continue
        info = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if info is None:
            return []
        ann = info.annotation
        origin = typing.get_origin(ann)
        if origin is dict:
            model, skip = typing.get_args(ann)[1], True
        elif origin is list:
            model = typing.get_args(ann)[0]
        else:
            model = ann
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def locate_toml_key(text: str, loc: list[str]) -> int | None:
    """Best-effort line number of a dotted key path in TOML text (table headers and ``key =`` lines)."""
    if not loc:
        return None
    best: int | None = None
    table: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            table = [p.strip().strip('"') for p in line.strip("[]").split(".")]
            if table == loc[: len(table)] and best is None and len(table) == len(loc):
                best = n
            continue
        if "=" in line:
            key = line.split("=", 1)[0].strip().strip('"')
            path = [*table, key]
            if path == loc:
                return n
            if path == loc[: len(path)] and best is None:
                best = n
    if best is None and len(loc) > 1:
        return locate_toml_key(text, loc[:-1])
    return best
