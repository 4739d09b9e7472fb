"""Online judging of captured live answers, and the sampling policy that keeps the canary arm measurable.

A capture record (written by the service) holds the question, the answer, the ids of the knowledge entries the
model saw, and the version / model / prompt that answered. ``judge_capture`` scores it with the same live
scoring as everywhere else (``evalgate.engine.scoring.score_live``: judge faithfulness to that knowledge, relevance,
numeric grounding, canary leak) and returns the per-version metric values:

- ``QualityScore``: mean of faithfulness and relevance (only when both were scored);
- ``Hallucination``: 0/1 (its average is the hallucination rate; omitted when it can't be decided);
- ``JudgedCount``: 1 per answer the judge looked at; ``Unscored``: 0/1 (the judge failed twice);
- ``InjectionLeak``: 0/1 (the system prompt's canary token appeared in the answer);
- ``GuardrailGrounding`` / ``GuardrailRelevance``: the guardrail's contextual grounding scores of the answer, when
  the capture names a guardrail with a grounding policy (ApplyGuardrail, source OUTPUT, on the same knowledge the
  judge judges faithfulness against: ``evalgate.engine.guardrails``), stored beside the judge's scores. A failed check
  publishes neither and is logged; it never blocks the judgement.

Sampling: during a canary shift the new version gets a small share of traffic, so judging every arm at the
same rate would leave the canary with too few judged answers to compare. ``SamplingPolicy`` judges the arm
with the smallest traffic weight at ``max_rate`` and the others at ``max_rate * w_min / w``, so each arm
expects the same number of judged answers. Weights come from the service alias' routing configuration.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evalgate.contracts import telemetry as tm
from evalgate.contracts.records import JudgedScores, StoredRow, sampled
from evalgate.contracts.service import CaptureRecord
from evalgate.core.dataset import parse_json_model
from evalgate.core.knowledge import KnowledgeIndex
from evalgate.core.masking import mask_pii, mask_text
from evalgate.core.models import KnowledgeEntry

log = logging.getLogger(__name__)
# How long a judged capture id is remembered (redeliveries within it are not judged again): the capture
# queue's message retention (stacks/constructs/capture.py).
DEDUP_WINDOW_S = 4 * 24 * 3600


class BadCaptureRecord(ValueError):
    """The record can't be judged as sent (not JSON, missing fields); retrying won't help."""


def parse_capture(body: str) -> CaptureRecord:
    return parse_json_model(body, CaptureRecord, "capture record", BadCaptureRecord)


@dataclass
class JudgedRecord:
    """One captured answer after the online judge: its scores, or why it was skipped (``score`` is None)."""

    request_id: str
    dimensions: tm.Dimensions
    score: JudgedScores | None = None
    skipped: str | None = None
    guardrail_grounding: float | None = None  # the guardrail's contextual grounding scores, beside the judge's
    guardrail_relevance: float | None = None
    guardrail_error: str | None = None  # why the contextual grounding check has no scores, when it was asked for

    @property
    def judged(self) -> bool:
        return self.score is not None

    def telemetry(self) -> tm.Telemetry:
        t = tm.Telemetry(self.dimensions)
        s = self.score
        if s is None:
            return t
        t.add(tm.JUDGED_COUNT, 1)
        t.add(tm.UNSCORED, 1 if s.unscored else 0)
        t.add(tm.INJECTION_LEAK, 1 if s.leaked else 0)
        if s.quality is not None:
            t.add(tm.QUALITY_SCORE, s.quality)
        if s.hallucinated is not None:
            t.add(tm.HALLUCINATION, 1 if s.hallucinated else 0)
        if self.guardrail_grounding is not None:
            t.add(tm.GUARDRAIL_GROUNDING, self.guardrail_grounding)
        if self.guardrail_relevance is not None:
            t.add(tm.GUARDRAIL_RELEVANCE, self.guardrail_relevance)
        checked = (self.guardrail_error, self.guardrail_grounding, self.guardrail_relevance)
        if any(v is not None for v in checked):  # a check was asked for: count whether it failed
            t.add(tm.GUARDRAIL_GROUNDING_UNSCORED, 1 if self.guardrail_error is not None else 0)
        return t

    def log_fields(self, question: str, answer: str) -> dict[str, Any]:
        """A structured log line per judged answer (what the notifier queries for the worst examples); personal data
        is masked here, the one place judged text leaves the encrypted capture record."""
        s = self.score or JudgedScores()
        scores = s.model_dump(include=set(JudgedScores.model_fields))
        scores["unsupported_claims"] = [mask_text(c) for c in s.unsupported_claims[:5]]
        return {
            "evalgate_judged": 1,
            "ts": time.time(),
            "request_id": self.request_id,
            "function_version": self.dimensions.version,
            "model_id": self.dimensions.model_id,
            "prompt_version": self.dimensions.prompt_version,
            **scores,
            "guardrail_grounding": self.guardrail_grounding,
            "guardrail_relevance": self.guardrail_relevance,
            "guardrail_error": self.guardrail_error,
            **masked_texts(question, answer),
        }


def masked_texts(question: str, answer: str) -> dict[str, Any]:
    """Question and answer as stored and logged: masked, clipped, and whether personal data was found."""
    q, a = mask_pii(question), mask_pii(answer)
    return {"question": q.text[:300], "answer": a.text[:500], "personal_data": q.personal or a.personal}


GUARDRAIL_SKIP = "guardrail intervened (canned answer)"


def stored_row(capture: CaptureRecord, result: JudgedRecord) -> dict[str, Any] | None:
    """What the judged-records store keeps of one answer (``evalgate curate`` reads it back), or None.

    Judged answers, and answers the guardrail replaced: those are not judged, but a guardrail that blocks what
    the golden set expects answered is worth a reviewer's look.
    """
    if result.judged:
        row = {**result.log_fields(capture.question, capture.answer), "guardrail_intervened": False}
    elif result.skipped == GUARDRAIL_SKIP:
        row = {
            "ts": time.time(),
            "request_id": result.request_id,
            "function_version": result.dimensions.version,
            "model_id": result.dimensions.model_id,
            "prompt_version": result.dimensions.prompt_version,
            "guardrail_intervened": True,
            **masked_texts(capture.question, capture.answer),
        }
    else:
        return None
    StoredRow.model_validate(row)  # the reader's model: a row it could not read is never written
    return row


class JudgedWriter:
    """Judged answers as JSONL in S3, one object per version and batch, under ``<prefix>version=<v>/dt=<day>/``.

    The notifier reads them back to quote the worst judged answers of a rolled-back version.
    """

    def __init__(self, bucket: str, prefix: str = "judged/", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        if client is None:
            from evalgate.adapters.aws import make_client

            client = make_client("s3")
        self.client = client

    def write(self, rows: list[dict[str, Any]], now: float | None = None) -> list[str]:
        import uuid
        from datetime import UTC, datetime

        stamp = datetime.fromtimestamp(now or time.time(), UTC)
        by_version: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_version.setdefault(str(row.get("function_version")), []).append(row)
        keys = []
        for version, items in by_version.items():
            key = (
                f"{self.prefix}version={version}/dt={stamp:%Y-%m-%d}/"
                f"{stamp:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.jsonl"
            )
            body = "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in items)
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body.encode(), ContentType="application/x-ndjson")
            keys.append(key)
        return keys


class SamplingPolicy:
    def __init__(self, weights: Mapping[str, float] | None = None, max_rate: float = 1.0) -> None:
        self.weights = {v: w for v, w in (weights or {}).items() if w > 0}
        self.max_rate = max(0.0, min(1.0, max_rate))

    def probability(self, version: str) -> float:
        if len(self.weights) < 2 or version not in self.weights:
            return self.max_rate
        w_min = min(self.weights.values())
        return min(1.0, self.max_rate * w_min / self.weights[version])

    def should_judge(self, record: CaptureRecord) -> bool:
        return sampled(record.request_id, self.probability(record.function_version), "judge")


class AliasWeights:
    """Traffic weight of each version behind the service alias (``GetAlias`` routing config), cached briefly."""

    def __init__(
        self,
        client: Any,
        function_name: str,
        alias: str,
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.function_name = function_name
        self.alias = alias
        self.ttl_s = ttl_s
        self._clock = clock
        self._cached: tuple[float, dict[str, float]] | None = None
        self._lock = threading.Lock()

    def get(self) -> dict[str, float]:
        now = self._clock()
        with self._lock:
            if self._cached is not None and now - self._cached[0] < self.ttl_s:
                return self._cached[1]
        try:
            alias = self.client.get_alias(FunctionName=self.function_name, Name=self.alias)
        except Exception as exc:
            log.warning("cannot read alias weights; judging every version at the same rate", extra={"error": str(exc)})
            weights: dict[str, float] = {}
        else:
            extra = {
                str(k): float(v)
                for k, v in ((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}).items()
            }
            weights = {str(alias["FunctionVersion"]): max(0.0, 1.0 - sum(extra.values())), **extra}
        with self._lock:
            self._cached = (now, weights)
        return weights


def judge_capture(
    record: CaptureRecord,
    index: KnowledgeIndex,
    judge: Any,
    *,
    canary_token: str | None,
    policy: SamplingPolicy | None = None,
    guardrails: Callable[[str, str], Any] | None = None,
) -> JudgedRecord:
    """Score one captured answer for its version (or say why it was skipped). ``guardrails(id, version)`` gives
    the ``GuardrailChecker`` for the capture's grounding guardrail (None: no contextual grounding check)."""
    from evalgate.engine.scoring import score_live

    dims = tm.Dimensions(record.function_version, record.model_id, record.prompt_version)
    if policy is not None and not policy.should_judge(record):
        return JudgedRecord(record.request_id, dims, skipped="not sampled")
    if record.guardrail_intervened:
        return JudgedRecord(record.request_id, dims, skipped=GUARDRAIL_SKIP)
    knowledge = index.get(record.knowledge_ids) if record.knowledge_ids else []
    if not knowledge:  # the knowledge base changed since, or nothing was retrieved: judge against what matches now
        knowledge = index.search(record.question)
    scores, error = _grounding(record, knowledge, guardrails)
    return JudgedRecord(
        record.request_id,
        dims,
        score_live(record.question, record.answer, knowledge, judge, canary_token),
        guardrail_grounding=scores["GROUNDING"].score if "GROUNDING" in scores else None,
        guardrail_relevance=scores["RELEVANCE"].score if "RELEVANCE" in scores else None,
        guardrail_error=error,
    )


def _grounding(
    record: CaptureRecord, knowledge: list[KnowledgeEntry], guardrails: Callable[[str, str], Any] | None
) -> tuple[dict[str, Any], str | None]:
    """The guardrail's contextual grounding scores of a captured answer by filter type, and why there are none
    when they were asked for (the same check as the gate's: ``evalgate.engine.guardrails``)."""
    ref = record.grounding_guardrail
    if ref is None or guardrails is None:
        return {}, None
    if not knowledge:
        return {}, "no knowledge to ground the answer in"
    from evalgate.engine.guardrails import grounding_source

    try:
        return guardrails(ref.id, ref.version).grounding(
            record.question, grounding_source(knowledge), record.answer
        ), None
    except Exception as exc:  # an extra signal: whatever went wrong, the judgement itself stands
        error = f"{type(exc).__name__}: {exc}"
        log.warning("contextual grounding check failed", extra={"request_id": record.request_id, "error": error})
        return {}, error
