"""Records and rules that a writer and its reader share across a process boundary.

* the sticky cohort of a user (``COHORT_KEY``, ``cohort_of``): the flags' traffic split and every sampling rule;
* ``sampled``: the capture/judge sampling decision, the same for the service (writer) and the online judge;
* ``DIRECT_KEY``: the field that marks a direct (not API Gateway) invocation of a service version, used by the
  pre-traffic hook and the shadow worker to call a version and by the service to recognise the call;
* ``StoredRow``: one judged live answer (its ``JudgedScores``), written by the online judge and read by
  ``evalgate curate`` and the notifier;
* ``StoredPair``: one shadow pair, written by the shadow worker and read by ``evalgate shadow-report``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

COHORT_KEY = "cohort"

DIRECT_KEY = "evalgate_invoke"


def cohort_of(subject: str) -> int:
    """Sticky 64-bit bucket of a user/session id (stable across processes, unlike ``hash()``)."""
    return int.from_bytes(hashlib.sha256(subject.encode("utf-8")).digest()[:8], "big")


def sampled(key: str, rate: float, salt: str) -> bool:
    """Deterministic Bernoulli(rate) keyed by ``key`` (the same request is always in or out)."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    return cohort_of(f"{salt}:{key}") / 2**64 < rate


class JudgedScores(BaseModel):
    """The online judge's scores of one live answer: what the judge returns (``engine.scoring.LiveScore``), what
    the metrics and the log line carry, what the store keeps. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    quality: float | None = None
    faithfulness: float | None = None
    relevance: float | None = None
    hallucinated: bool | None = None
    unscored: bool = False
    leaked: bool = False
    unsupported_claims: list[str] = Field(default_factory=list)


class StoredRow(JudgedScores):
    """One live answer as the judged-records store keeps it: written by ``stored_row``, read back by
    ``evalgate curate`` (and, for its worst examples, the notifier); the scores only when it was judged."""

    request_id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answer: str = ""
    ts: float | None = None
    function_version: str | None = None
    model_id: str | None = None
    prompt_version: str | None = None
    guardrail_intervened: bool = False
    guardrail_grounding: float | None = None  # the guardrail's contextual grounding scores, beside the judge's
    guardrail_relevance: float | None = None
    personal_data: bool = False


class StoredPair(BaseModel):
    """One mirrored request replayed on the candidate, as the shadow bucket keeps it (a JSONL line): written by the
    shadow worker (``release.shadow.make_pair``), read by the shadow report. Each side holds its answer (None with an
    ``error`` when the candidate failed), versions, latency and tokens. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, coerce_numbers_to_str=True)

    schema_version: int = Field(1, alias="schema")
    request_id: str = Field(min_length=1)
    ts: float | None = None
    replayed_at: float | None = None
    question: str | None = None
    turns: int = 1
    has_document: bool = False
    production: dict[str, Any]
    shadow: dict[str, Any]
