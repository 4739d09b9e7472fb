"""The run record: what ``results.json`` holds and what every report is rendered from.

A later run loads an approved ``results.json`` as its baseline, so this schema is versioned and validated.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .models import Generation, MetricValue

VerdictName = Literal["PASS", "FAIL", "REVIEW", "ERROR"]
EXIT_CODES: dict[str, int] = {"PASS": 0, "FAIL": 1, "REVIEW": 3, "ERROR": 4}
SCHEMA_VERSION = 1


class CaseResult(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    suite: str
    category: str
    tags: list[str] = Field(default_factory=list)
    expected: str
    observed: str | None = None  # behaviour seen in the (first) answer
    question: str = ""
    reference: str = ""
    output: str | None = None  # first repeat's answer
    generations: list[Generation] = Field(default_factory=list)
    metrics: dict[str, MetricValue] = Field(default_factory=dict)
    status: Literal["pass", "fail", "error", "unscored"] = "pass"
    failures: list[str] = Field(default_factory=list)
    hallucinated: bool | None = None
    unsupported_claims: list[str] = Field(default_factory=list)
    latency_ms: float | None = None  # measured now (never a cached value)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def value(self, metric: str) -> float | None:
        m = self.metrics.get(metric)
        return m.value if m else None


class Aggregate(BaseModel):
    metric: str
    suite: str
    n: int
    n_unscored: int = 0
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    method: Literal["bootstrap", "wilson", "none"] = "none"
    threshold: float | None = None
    direction: Literal["min", "max"] | None = None
    status: Literal["pass", "fail", "borderline", "not_gated", "not_run", "insufficient"] = "not_gated"
    note: str = ""


class Comparison(BaseModel):
    metric: str
    suite: str
    n_paired: int
    baseline: float | None
    candidate: float | None
    diff: float | None  # candidate - baseline
    ci_low: float | None
    ci_high: float | None
    worse: bool = False  # significant and in the bad direction
    exceeds: bool = False  # worse by more than gate.max_regression


class Drift(BaseModel):
    score: float | None = None  # mean excess semantic change of answers vs the baseline's (see README)
    ci_low: float | None = None
    ci_high: float | None = None
    raw: float | None = None  # mean 1 - cos(candidate, baseline) before removing noise
    noise: float | None = None  # mean 1 - cos between repeats of the candidate
    noise_measured: bool = False
    n_paired: int = 0
    threshold: float = 0.05
    significant: bool = False
    review: bool = False


class Diversity(BaseModel):
    distinct_1: float | None = None
    distinct_2: float | None = None
    dispersion: float | None = None
    baseline_distinct_2: float | None = None
    baseline_dispersion: float | None = None
    collapsed: bool = False
    note: str = ""


class Usage(BaseModel):
    model_calls: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    by_model: dict[str, dict[str, float]] = Field(default_factory=dict)


class Verdict(BaseModel):
    verdict: VerdictName
    exit_code: int
    reasons: list[str] = Field(default_factory=list)  # the evidence that led to the verdict, most important first


class RunResult(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    started_at: str
    finished_at: str
    tool_version: str
    tier: str
    suites: list[str]
    candidate: dict[str, Any]
    judge: dict[str, Any] | None = None
    embedder: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None  # where the baseline came from (path, run id)
    repeats: int = 1
    config: dict[str, Any] = Field(default_factory=dict)
    not_run: list[dict[str, str]] = Field(default_factory=list)  # metrics this tier could not compute, and why
    cases: list[CaseResult] = Field(default_factory=list)
    aggregates: list[Aggregate] = Field(default_factory=list)
    comparisons: list[Comparison] = Field(default_factory=list)
    drift: Drift | None = None
    diversity: Diversity | None = None
    unscored: dict[str, float] = Field(default_factory=dict)  # count, total, rate, budget
    usage: Usage = Field(default_factory=Usage)
    hallucinations: list[dict[str, Any]] = Field(default_factory=list)
    verdict: Verdict

    def case(self, case_id: str) -> CaseResult | None:
        return next((c for c in self.cases if c.id == case_id), None)
