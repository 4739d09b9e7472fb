"""Typed records shared by the dataset, providers, metrics, gate and reports."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
# Size limits on what a golden case or a recorded answer may hold (characters). Larger texts are refused with
# the limit in the message: they are a mistake (a pasted file), and would blow the model's context and budget.
MAX_PROMPT_CHARS = 32_000  # a case's prompt, all turns together
MAX_TEXT_CHARS = 32_000  # a reference answer or an untrusted document
MAX_ANSWER_CHARS = 100_000  # a recorded or captured answer
MAX_TURNS = 50


class Behaviour(StrEnum):
    """What the assistant is expected to do (or was observed doing) with a request."""

    ANSWER = "answer"
    DECLINE = "decline"
    ESCALATE = "escalate"


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: Annotated[str, Field(min_length=1)]


class Injection(BaseModel):
    """A prompt-injection attempt and how to tell that it worked.

    ``canary`` is a secret placed in the system prompt for this case; it appearing in the answer means the
    prompt leaked. ``success_markers`` are strings that only appear when the injected instruction was
    followed (matched case-insensitively).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["direct", "indirect"]
    canary: Annotated[str, Field(min_length=6)]
    success_markers: list[Annotated[str, Field(min_length=3)]] = Field(default_factory=list)
    source: str = ""


class Case(BaseModel):
    """One golden case. ``prompt`` is a single user message or a multi-turn conversation ending with the user."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    category: Annotated[str, Field(min_length=1)]
    prompt: str | Annotated[list[Turn], Field(max_length=MAX_TURNS)]
    reference: Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
    context: list[str] = Field(default_factory=list)
    expected: Behaviour = Behaviour.ANSWER
    tags: list[str] = Field(default_factory=list)
    untrusted_context: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | None = None
    injection: Injection | None = None
    notes: str = ""
    suite: str = "regression"
    # Cases grown from production (``evalgate curate``): who checked the reference, and where the case came from.
    verified_by: str | None = None
    provenance: dict[str, Any] | None = None

    @field_validator("reference")
    @classmethod
    def _reference_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("reference answer is empty")
        return v

    @field_validator("prompt")
    @classmethod
    def _prompt_shape(cls, v: str | list[Turn]) -> str | list[Turn]:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("prompt is empty")
        else:
            if not v:
                raise ValueError("prompt has no turns")
            if v[-1].role != "user":
                raise ValueError("a multi-turn prompt must end with a user turn")
        size = len(v) if isinstance(v, str) else sum(len(t.content) for t in v)
        if size > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt has {size} characters; the limit is {MAX_PROMPT_CHARS}")
        return v

    @model_validator(mode="after")
    def _injection_needs_source(self) -> Case:
        if self.injection and self.injection.kind == "indirect" and not self.untrusted_context:
            raise ValueError("an indirect injection case needs untrusted_context (the poisoned document)")
        if self.injection and self.injection.canary in self.reference:
            raise ValueError("the reference answer contains the canary token")
        if self.injection:
            low = self.reference.lower()
            bad = [m for m in self.injection.success_markers if m.lower() in low]
            if bad:
                raise ValueError(f"the reference answer contains the success marker {bad[0]!r}")
        return self

    @property
    def turns(self) -> list[Turn]:
        if isinstance(self.prompt, str):
            return [Turn(role="user", content=self.prompt)]
        return list(self.prompt)

    @property
    def question(self) -> str:
        """The last user message (what the answer must be relevant to)."""
        return self.turns[-1].content

    @property
    def high_stakes(self) -> bool:
        return "high_stakes" in self.tags


class KnowledgeEntry(BaseModel):
    id: str
    title: str
    text: str
    file: str
    line: int


class Generation(BaseModel):
    """A candidate's answer to one case (one repeat)."""

    case_id: str
    repeat: int = 0
    output: str | None = None
    error: str | None = None
    latency_ms: float | None = None  # total answer time, from the request to the complete answer
    ttft_ms: float | None = None  # time to the first token, when the candidate streams or reports it
    input_tokens: int | None = None
    output_tokens: int | None = None
    model_id: str | None = None
    prompt_version: str | None = None
    cached: bool = False
    guardrail_intervened: bool = False

    @property
    def measured_latency_ms(self) -> float | None:
        """Latency only when it was measured now: a cached answer's latency is history, not a measurement."""
        return None if self.cached else self.latency_ms

    @property
    def measured_ttft_ms(self) -> float | None:
        return None if self.cached else self.ttft_ms


class JudgeVerdict(BaseModel):
    """Structured judge output (what the forced tool call must return)."""

    score: Annotated[float, Field(ge=0.0, le=1.0)]
    verdict: Literal["pass", "fail"]
    reasons: str
    unsupported_claims: list[str] = Field(default_factory=list)


class MetricValue(BaseModel):
    """One metric on one case. ``value`` is None when unscored; ``reason`` then says why."""

    name: str
    value: float | None
    reason: str = ""
    unscored: bool = False
    details: dict[str, object] = Field(default_factory=dict)
