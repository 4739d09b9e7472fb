"""Shadow mode: replay sampled live requests on the candidate, store the pairs, compare them offline.

What the ``shadow`` alias points at: the CANDIDATE, i.e. the version the latest deployment published (the stack
moves it when it publishes the version; ``live`` moves only through CodeDeploy). During a canary, ``live`` serves
the previous version (and the canary share of the candidate) while ``shadow`` is the candidate, so requests the
previous version answered are replayed on the candidate: real pairs. A request the candidate answered itself (the
canary arm), and every request once the candidate is promoted and ``live`` = ``shadow``, would compare a version
with itself: ``replay`` skips it (no invocation, no pair; counted as ``ShadowSkipped``). Shadow mode is thus
active exactly while a candidate differs from what serves users.

The worker (``replay`` + ``PairWriter``): a mirrored request from the shadow queue is sent to the candidate
(a ``shadow`` alias or a version) with a synchronous ``Invoke`` (RequestResponse, no SDK retries, so never an
async retry that could run it twice) and the direct-invoke shape ``{"evalgate_invoke": {"mode": "shadow"}}``
that switches the service's side effects off (no capture, no shadow enqueue). Each pair (production vs shadow
answer, latency, tokens, versions) becomes one JSONL line; a batch is one S3 object.

The report that reads the pairs and decides is ``evalgate.release.shadow_report``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from evalgate.contracts.service import BadAnswer, ShadowMessage, direct_event, parse_answer, read_response
from evalgate.core.masking import mask_text

log = logging.getLogger(__name__)
# How long a replayed request id is remembered by the shadow worker: the shadow queue's message retention.
DEDUP_WINDOW_S = 4 * 24 * 3600


class BadShadowMessage(ValueError):
    pass


def parse_message(body: str) -> ShadowMessage:
    from evalgate.core.dataset import parse_json_model

    return parse_json_model(body, ShadowMessage, "shadow message", BadShadowMessage)


@dataclass
class ShadowSide:
    function_version: str | None
    answer: str | None
    error: str | None
    latency_ms: float
    model_id: str | None = None
    prompt_version: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    guardrail_intervened: bool = False


class ShadowInvoker:
    """Invokes the candidate synchronously; capacity errors raise (the message is retried later)."""

    ALIAS_TTL_S = 60.0

    def __init__(
        self, function_name: str, qualifier: str | None, client: Any = None, clock: Any = time.monotonic
    ) -> None:
        self.function_name = function_name
        self.qualifier = qualifier or None
        if client is None:
            from evalgate.adapters.aws import ClientSettings, make_client

            client = make_client("lambda", ClientSettings.from_env(max_attempts=1, read_timeout=60.0))
        self.client = client
        self._clock = clock
        self._target: tuple[float, str | None] | None = None

    def target_version(self) -> str | None:
        """The version the qualifier names now (``GetAlias``, cached for a minute); None when it cannot be read
        (then only the executed version, after the call, can reveal a self-comparison)."""
        if self.qualifier is None:
            return None
        if self.qualifier.isdigit():
            return self.qualifier
        now = self._clock()
        if self._target is None or now - self._target[0] > self.ALIAS_TTL_S:
            try:
                alias = self.client.get_alias(FunctionName=self.function_name, Name=self.qualifier)
                version: str | None = str(alias["FunctionVersion"])
            except Exception as exc:  # no permission, throttled: fall back to the post-call check
                log.warning("cannot read alias %s: %s", self.qualifier, exc)
                version = None
            self._target = (now, version)
        return self._target[1]

    def invoke(self, request: dict[str, Any]) -> ShadowSide:
        kwargs: dict[str, Any] = {
            "FunctionName": self.function_name,
            "InvocationType": "RequestResponse",
            "Payload": json.dumps(direct_event(request)).encode(),
        }
        if self.qualifier:
            kwargs["Qualifier"] = self.qualifier
        started = time.monotonic()
        response = self.client.invoke(**kwargs)
        raw = response["Payload"].read()
        latency = (time.monotonic() - started) * 1000.0
        version = response.get("ExecutedVersion")
        if response.get("FunctionError"):
            return ShadowSide(version, None, f"function error ({response['FunctionError']}): {raw[:300]!r}", latency)
        try:
            payload = json.loads(raw)
            if not isinstance(payload, dict):
                raise BadAnswer("not a JSON object")
            status, doc, text = read_response(payload)
        except (ValueError, RecursionError):
            return ShadowSide(version, None, f"unreadable response: {raw[:300]!r}", latency)
        if status != 200:
            err = doc.get("error") if isinstance(doc, dict) else None
            return ShadowSide(version, None, f"status {status}: {err or text[:300]}", latency)
        try:
            answer = parse_answer(doc)
        except BadAnswer as exc:
            return ShadowSide(version, None, f"status {status}: not an answer document ({exc}): {text[:300]}", latency)
        return ShadowSide(
            function_version=version,
            answer=answer.answer,
            error=None,
            latency_ms=latency,
            model_id=answer.model_id,
            prompt_version=answer.prompt_version,
            input_tokens=answer.usage.inputTokens,
            output_tokens=answer.usage.outputTokens,
            guardrail_intervened=answer.guardrail_intervened,
        )


def make_pair(msg: ShadowMessage, shadow: ShadowSide) -> dict[str, Any]:
    """One JSONL line (``contracts.records.StoredPair``, checked here so the report can read every pair written).
    User and session ids stay out of storage; personal data in the texts is masked."""
    from evalgate.contracts.records import StoredPair

    req = msg.request
    question = (req.get("messages") or [{}])[-1].get("content") if req.get("messages") else req.get("question")
    production = msg.production.model_dump()
    production["answer"] = mask_text(production["answer"])
    pair = {
        "schema": 1,
        "request_id": msg.request_id,
        "ts": msg.ts,
        "replayed_at": time.time(),
        "question": mask_text(question) if isinstance(question, str) else question,
        "turns": len(req.get("messages") or []) or 1,
        "has_document": bool(req.get("document")),
        "production": production,
        "shadow": {
            "function_version": shadow.function_version,
            "model_id": shadow.model_id,
            "prompt_version": shadow.prompt_version,
            "answer": mask_text(shadow.answer) if shadow.answer is not None else None,
            "error": shadow.error,
            "latency_ms": round(shadow.latency_ms, 1),
            "input_tokens": shadow.input_tokens,
            "output_tokens": shadow.output_tokens,
            "guardrail_intervened": shadow.guardrail_intervened,
        },
    }
    StoredPair.model_validate(pair)
    return pair


def replay(msg: ShadowMessage, invoker: ShadowInvoker) -> dict[str, Any] | None:
    """Run one mirrored request on the candidate and return the pair -- or None when the candidate is the very
    version that answered in production (a pair would compare a version with itself)."""
    served = msg.production.function_version
    if served and invoker.target_version() == served:
        return None
    side = invoker.invoke(msg.request)
    if served and side.function_version == served:
        return None
    return make_pair(msg, side)


class PairWriter:
    def __init__(self, bucket: str, prefix: str = "shadow", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            from evalgate.adapters.aws import make_client

            client = make_client("s3")
        self.client = client

    def write(self, pairs: Sequence[dict[str, Any]], now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        key = f"{self.prefix}/dt={now:%Y-%m-%d}/hour={now:%H}/{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.jsonl"
        body = "".join(json.dumps(p, separators=(",", ":")) + "\n" for p in pairs)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body.encode(), ContentType="application/x-ndjson")
        return key
