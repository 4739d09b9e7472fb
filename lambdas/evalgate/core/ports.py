"""Ports: what the core needs from the outside world. Adapters implement these; the core never imports boto3.

- ``Candidate`` produces the answer under test for a case (Bedrock, replayed JSONL, HTTP endpoint, Lambda).
- ``JudgeModel`` answers one structured (forced tool use) request; prompt hygiene and parsing live in
  ``evalgate.engine.judge`` so every judge backend gets the same treatment.
- ``Embedder`` turns texts into unit-length vectors (local MiniLM or Titan).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from evalgate.core.models import Case, Generation, KnowledgeEntry


@dataclass(frozen=True)
class ToolSpec:
    """A tool the judge model is forced to call; ``schema`` is its JSON schema (the output contract)."""

    name: str
    description: str
    schema: dict[str, Any]


@dataclass
class JudgeCall:
    """The raw result of one judge call: the forced tool's input (unvalidated) and usage."""

    tool_input: Any
    input_tokens: int = 0
    output_tokens: int = 0
    raw_text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Candidate(Protocol):
    """The system under test."""

    name: str
    # True when answers come from a live model (they are cached and cost tokens); False for replays.
    live: bool

    def identity(self) -> dict[str, Any]:
        """Everything that decides the output (model, parameters, prompt hashes, guardrail...). Used in cache keys."""
        ...

    def generate(self, case: Case, knowledge: list[KnowledgeEntry], repeat: int) -> Generation:
        """Answer one case. Raise ``ThrottledError`` to be retried with backoff; other errors mark the case errored."""
        ...


@runtime_checkable
class JudgeModel(Protocol):
    model_id: str

    def call(self, system: str, user: str, tool: ToolSpec) -> JudgeCall:
        """Send one judge request at temperature 0 with ``tool`` forced. Raise ProviderError / ThrottledError."""
        ...


@runtime_checkable
class Embedder(Protocol):
    name: str
    model_id: str

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-normalised embeddings, one per text, in order."""
        ...


def int_or_none(value: Any) -> int | None:
    """An integer field of a candidate's answer document (usage counts), or None when absent or not a count."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _reported_ms(doc: Any, field: str) -> float | None:
    latency = doc.get("latency") if isinstance(doc, dict) else None
    value = latency.get(field) if isinstance(latency, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def service_ttft_ms(doc: Any) -> float | None:
    """The time to first token the service measured itself (answer document ``latency.ttft_ms``)."""
    return _reported_ms(doc, "ttft_ms")


def service_total_ms(doc: Any) -> float | None:
    """The total answer time the service measured itself (answer document ``latency.total_ms``)."""
    return _reported_ms(doc, "total_ms")


def client_ttft_ms(doc: Any, client_ms: float) -> float | None:
    """Time to first token as this client would have seen it, from the answer document's ``latency``
    (``{"ttft_ms", "total_ms"}``, docs/CONTRACTS.md): the client's total time minus what the service spent after
    its first token. None when the document does not report a consistent pair."""
    latency = doc.get("latency") if isinstance(doc, dict) else None
    if not isinstance(latency, dict):
        return None
    ttft, total = latency.get("ttft_ms"), latency.get("total_ms")
    if isinstance(ttft, bool) or isinstance(total, bool) or not isinstance(ttft, int | float):
        return None
    if not isinstance(total, int | float) or not 0 <= ttft <= total:
        return None
    return max(0.0, client_ms - (float(total) - float(ttft)))


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
