"""The latency budget: one home for what "fast enough" means, read by ``evalgate load``, the pre-traffic smoke
hook, the canary analysis and the CDK settings.

Two rules (README "Latency: time to first token and total answer time"):

- **Time to first token (TTFT) against the SLO.** p95 TTFT must stay at or below ``ttft_slo_ms``. TTFT is what
  a user waits before the answer starts; it does not grow with the length of the answer, so an SLO on it is one
  a model can meet (an SLO on the p95 of a whole 512-token answer is not).
- **Total answer time against the baseline.** The total time may not regress by more than ``regression_ms``
  *or* by more than ``regression_pct`` percent of the baseline, whichever limit is reached first (either set
  alone works too): ``limit = baseline + min(regression_ms, baseline x regression_pct / 100)``.

Both compare a statistic with a limit through ``gate.threshold_status`` (the gate's status rule: point
estimate, or the whole interval with ``decision = "lower_bound"``).

``MODEL_TTFT`` holds the published TTFT figures the settings check an SLO against (bench/README.md "Model
time to first token", where each figure's source is cited). A model without a figure is not checked.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

MIN_PAIRS = 5


@dataclass(frozen=True)
class LatencyBudget:
    ttft_slo_ms: float | None = None
    regression_ms: float | None = None
    regression_pct: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_slo_ms", "regression_ms", "regression_pct"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value:g}")

    @property
    def gates_total(self) -> bool:
        return self.regression_ms is not None or self.regression_pct is not None

    def allowed_regression_ms(self, baseline_ms: float) -> float | None:
        """How much slower than ``baseline_ms`` the total answer time may be (None: not gated)."""
        allowed = []
        if self.regression_ms is not None:
            allowed.append(self.regression_ms)
        if self.regression_pct is not None:
            allowed.append(baseline_ms * self.regression_pct / 100.0)
        return min(allowed) if allowed else None

    def total_limit_ms(self, baseline_ms: float | None) -> float | None:
        """The highest acceptable total answer time given the baseline's (None: no baseline or not gated)."""
        if baseline_ms is None:
            return None
        allowed = self.allowed_regression_ms(baseline_ms)
        return None if allowed is None else baseline_ms + allowed

    def describe_tolerance(self) -> str:
        parts = []
        if self.regression_ms is not None:
            parts.append(f"+{self.regression_ms:g} ms")
        if self.regression_pct is not None:
            parts.append(f"+{self.regression_pct:g}%")
        return " or ".join(parts) if parts else "not gated"


@dataclass(frozen=True)
class PairedRegression:
    """Total answer time of the same prompts on two versions, paired by case: the median increase against the
    tolerance allowed on the baseline's median (small samples: a median of paired differences, not a p95)."""

    n: int
    baseline_median_ms: float
    median_increase_ms: float
    allowed_ms: float

    @property
    def failed(self) -> bool:
        return self.median_increase_ms > self.allowed_ms

    def describe(self, budget: LatencyBudget) -> str:
        return (
            f"total answer time {self.median_increase_ms:+.0f} ms (median over {self.n} paired prompts) against the "
            f"previous version's median {self.baseline_median_ms:.0f} ms; allowed {budget.describe_tolerance()} "
            f"= {self.allowed_ms:.0f} ms"
        )


def paired_total_regression(
    candidate_ms: Mapping[str, float], baseline_ms: Mapping[str, float], budget: LatencyBudget
) -> PairedRegression | None:
    """None when the budget gates no total time or fewer than ``MIN_PAIRS`` prompts were answered by both."""
    ids = sorted(set(candidate_ms) & set(baseline_ms))
    if len(ids) < MIN_PAIRS or not budget.gates_total:
        return None
    base = statistics.median(baseline_ms[i] for i in ids)
    allowed = budget.allowed_regression_ms(base)
    if allowed is None:
        return None
    increase = statistics.median(candidate_ms[i] - baseline_ms[i] for i in ids)
    return PairedRegression(len(ids), base, increase, allowed)


@dataclass(frozen=True)
class ModelTtft:
    """A published time-to-first-token figure for a model family on Amazon Bedrock (or the nearest provider)."""

    model: str  # matched against the base model id (inference-profile prefix removed)
    median_ms: float
    source: str


# Published medians (bench/README.md "Model time to first token" cites each source and what it measured).
# A p95 SLO below a model's published *median* TTFT cannot be met: half the answers start later than that.
MODEL_TTFT: tuple[ModelTtft, ...] = (
    ModelTtft(
        "anthropic.claude-3-5-haiku",
        810.0,
        "Artificial Analysis, Claude 3.5 Haiku API providers: Amazon Bedrock median TTFT 0.81 s",
    ),
    ModelTtft(
        "anthropic.claude-3-5-sonnet",
        930.0,
        "Artificial Analysis, Claude 3.5 Sonnet API providers: Amazon Bedrock median TTFT 0.93 s",
    ),
    ModelTtft(
        "anthropic.claude-3-sonnet",
        760.0,
        "Artificial Analysis, Claude 3 Sonnet API providers: Amazon Bedrock median TTFT 0.76 s",
    ),
)

_GEO_PREFIXES = ("us.", "us-gov.", "eu.", "apac.", "jp.", "au.", "ca.", "global.")


def base_model_id(model_id: str) -> str:
    """``anthropic.claude-...`` from a model id, an inference-profile id or a foundation-model ARN."""
    tail = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    for prefix in _GEO_PREFIXES:
        if tail.startswith(prefix):
            return tail[len(prefix) :]
    return tail


def published_ttft(model_id: str) -> ModelTtft | None:
    base = base_model_id(model_id)
    for row in MODEL_TTFT:
        if base.startswith(row.model):
            return row
    return None


def slo_problem(model_id: str, ttft_slo_ms: float) -> str | None:
    """Why ``ttft_slo_ms`` cannot be met by ``model_id`` per its published TTFT, or None when it can (or no
    figure is known)."""
    row = published_ttft(model_id)
    if row is None or ttft_slo_ms >= row.median_ms:
        return None
    return (
        f"{ttft_slo_ms:g} ms is below the published median time to first token of {model_id} "
        f"({row.median_ms:g} ms; {row.source}; see bench/README.md): a p95 SLO under the median cannot be met"
    )
