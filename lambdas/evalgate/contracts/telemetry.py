"""Per-version telemetry: metric names, units and dimensions shared by the runtime Lambdas and the stacks.

Every custom metric is published under two dimension sets (one EMF blob, two ``Dimensions`` arrays):

- ``{FunctionVersion}``: what alarms and the canary judge read (the NEW version only, never the alias);
- ``{FunctionVersion, ModelId, PromptVersion}``: the same values broken down by variant, when known.

``FunctionVersion`` is the Lambda version that *produced the answer*: the executing version for the service,
the version recorded in the captured request for the online judge.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_NAMESPACE = "EvalGate/Service"

# service
LATENCY = "Latency"  # total answer time: request received -> complete answer
TIME_TO_FIRST_TOKEN = "TimeToFirstToken"  # request received -> first text token from the model (ConverseStream)
INPUT_TOKENS = "InputTokens"
OUTPUT_TOKENS = "OutputTokens"
ERRORS = "Errors"
GUARDRAIL_INTERVENED = "GuardrailIntervened"
FEEDBACK_SCORE = "FeedbackScore"
CONVERSION_RATE = "ConversionRate"
# online judge
QUALITY_SCORE = "QualityScore"
HALLUCINATION = "Hallucination"
JUDGED_COUNT = "JudgedCount"
UNSCORED = "Unscored"
INJECTION_LEAK = "InjectionLeak"
GUARDRAIL_GROUNDING = "GuardrailGrounding"  # the guardrail's contextual grounding score of a judged answer (0-1)
GUARDRAIL_RELEVANCE = "GuardrailRelevance"  # its relevance score (0-1)
# 1 per answer whose contextual grounding check was asked for and gave no score (0 when it did): a failing check
# shows as a count per version, never only as missing scores
GUARDRAIL_GROUNDING_UNSCORED = "GuardrailGroundingUnscored"
# deployment hooks (about the hook run itself; dimension FunctionVersion = the hook's own version)
PRE_TRAFFIC_PASSED = "PreTrafficPassed"
CANARY_PASSED = "CanaryPassed"
CANARY_SCORE = "CanaryScore"
# live canary verdict during the canary step (dimension FunctionVersion = the NEW version being judged)
CANARY_VERDICT = "CanaryVerdict"
NOTIFICATIONS = "Notifications"
SHADOW_PAIRS = "ShadowPairs"
SHADOW_SKIPPED = "ShadowSkipped"  # mirrored requests the candidate itself answered (no self-comparison)

# What every service publishes per answered request under {FunctionVersion} (the error-rate and latency alarms and
# the canary judge read them; evalgate.contracts.service describes the rest of a service's side of the contract).
SERVICE_METRICS = (LATENCY, TIME_TO_FIRST_TOKEN, ERRORS)

UNITS: dict[str, str] = {
    LATENCY: "Milliseconds",
    TIME_TO_FIRST_TOKEN: "Milliseconds",
    INPUT_TOKENS: "Count",
    OUTPUT_TOKENS: "Count",
    ERRORS: "Count",
    GUARDRAIL_INTERVENED: "Count",
    FEEDBACK_SCORE: "None",
    CONVERSION_RATE: "None",
    QUALITY_SCORE: "None",
    HALLUCINATION: "Count",
    JUDGED_COUNT: "Count",
    UNSCORED: "Count",
    INJECTION_LEAK: "Count",
    GUARDRAIL_GROUNDING: "None",
    GUARDRAIL_RELEVANCE: "None",
    GUARDRAIL_GROUNDING_UNSCORED: "Count",
    PRE_TRAFFIC_PASSED: "Count",
    CANARY_PASSED: "Count",
    CANARY_SCORE: "None",
    CANARY_VERDICT: "Count",
    NOTIFICATIONS: "Count",
    SHADOW_PAIRS: "Count",
    SHADOW_SKIPPED: "Count",
}

DIM_VERSION = "FunctionVersion"
DIM_MODEL = "ModelId"
DIM_PROMPT = "PromptVersion"


def namespace() -> str:
    return os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE


def executing_version() -> str:
    """The Lambda version running this code (``$LATEST`` outside a published version or outside Lambda)."""
    return os.environ.get("AWS_LAMBDA_FUNCTION_VERSION") or "$LATEST"


@dataclass(frozen=True)
class Dimensions:
    version: str
    model_id: str | None = None
    prompt_version: str | None = None

    def sets(self) -> list[dict[str, str]]:
        """The dimension sets every metric is published under (see the module docstring)."""
        out = [{DIM_VERSION: self.version}]
        if self.model_id and self.prompt_version:
            out.append({DIM_VERSION: self.version, DIM_MODEL: self.model_id, DIM_PROMPT: self.prompt_version})
        return out


@dataclass
class Telemetry:
    """Metric values to publish under one set of dimensions (values of one name are separate samples)."""

    dimensions: Dimensions
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(float(value))

    def merge(self, other: Telemetry) -> None:
        for name, vals in other.values.items():
            self.values.setdefault(name, []).extend(vals)


def group(items: list[Telemetry]) -> list[Telemetry]:
    """Merge telemetry that shares dimensions (one EMF blob per dimension set and batch)."""
    merged: dict[Dimensions, Telemetry] = {}
    for t in items:
        if t.dimensions in merged:
            merged[t.dimensions].merge(t)
        else:
            merged[t.dimensions] = Telemetry(t.dimensions, {k: list(v) for k, v in t.values.items()})
    return list(merged.values())
