"""Typed gate configuration (``golden/gate.toml``), validated with pydantic.

Errors name the file, the line of the offending key and the field, e.g.
``golden/gate.toml:12: thresholds.similarity: must be between 0 and 1``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InputError, Problem

Unit = Annotated[float, Field(ge=0.0, le=1.0)]

# Metric name -> (threshold direction). "min": the aggregate must be at least the threshold; "max": at most.
THRESHOLD_DIRECTIONS: dict[str, Literal["min", "max"]] = {
    "similarity": "min",
    "faithfulness": "min",
    "relevance": "min",
    "behaviour_accuracy": "min",
    "hallucination_rate": "max",
    "hallucination_rate_high_stakes": "max",
    "injection_success_rate": "max",
}


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    similarity: Unit | None = None
    faithfulness: Unit | None = None
    relevance: Unit | None = None
    behaviour_accuracy: Unit | None = None
    hallucination_rate: Unit | None = None
    hallucination_rate_high_stakes: Unit | None = None
    injection_success_rate: Unit | None = None

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
    skip_metrics: list[Literal["similarity", "faithfulness", "relevance"]] = Field(default_factory=list)


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
    prompt: str = "support/v1"
    max_tokens: Annotated[int, Field(ge=1, le=8192)] = 512
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    gate: GateSettings = Field(default_factory=GateSettings)
    thresholds: Thresholds
    suites: dict[str, SuiteConfig] = Field(default_factory=dict)
    embedders: dict[str, EmbedderConfig] = Field(default_factory=dict)
    models: Models = Field(default_factory=Models)
    pricing: dict[str, Price] = Field(default_factory=dict)

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

    def price(self, model_id: str | None) -> Price | None:
        if not model_id:
            return None
        if model_id in self.pricing:
            return self.pricing[model_id]
        # inference profiles ("us.anthropic...") price like their base model
        base = model_id.split(".", 1)[1] if model_id.split(".", 1)[0] in {"us", "eu", "apac", "global"} else None
        return self.pricing.get(base) if base else None


def load_config(path: Path) -> GateConfig:
    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError.single(shown, None, "config file not found") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        msg = str(exc).split(" (at line")[0]
        raise InputError.single(shown, line, f"not valid TOML: {msg}") from None
    try:
        return GateConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            field = ".".join(loc) or "(file)"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(Problem(shown, locate_toml_key(text, loc), f"{field}: {msg}"))
        raise InputError(problems) from None


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
