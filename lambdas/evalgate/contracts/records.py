"""Records and rules that a writer and its reader share across a process boundary.

* the sticky cohort of a user (``COHORT_KEY``, ``cohort_of``): the flags' traffic split and every sampling rule;
* ``sampled``: the capture/judge sampling decision, the same for the service (writer) and the online judge;
* ``DIRECT_KEY``: the field that marks a direct (not API Gateway) invocation of a service version, used by the
  pre-traffic hook and the shadow worker to call a version and by the service to recognise the call;
* ``StoredRow``: one judged live answer, written by the online judge and read by ``evalgate curate`` and the
  notifier.
"""

from __future__ import annotations

import hashlib

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


class StoredRow(BaseModel):
    """One live answer as the judged-records store keeps it: written by ``stored_row``, read back by
    ``evalgate curate`` (and, for its worst examples, the notifier). Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    request_id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answer: str = ""
    ts: float | None = None
    function_version: str | None = None
    model_id: str | None = None
    prompt_version: str | None = None
    quality: float | None = None
    faithfulness: float | None = None
    relevance: float | None = None
    hallucinated: bool | None = None
    unscored: bool = False
    leaked: bool = False
    guardrail_intervened: bool = False
    guardrail_grounding: float | None = None  # the guardrail's contextual grounding scores, beside the judge's
    guardrail_relevance: float | None = None
    personal_data: bool = False
    unsupported_claims: list[str] = Field(default_factory=list)
