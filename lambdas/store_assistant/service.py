"""The demo customer-support service: answer a request, record feedback. Handler-agnostic and testable.

A request goes: validate → flags (sticky cohort → variant: model id + prompt version) → retrieve knowledge
(BM25) → render the versioned prompt (``evalgate.core.prompts``, the same rendering the gate evaluated) → Bedrock
ConverseStream (optionally with a guardrail), read to the end → answer JSON with a request id. Then, off the
user's path, a sampled capture record goes to the capture queue (for the online judge) and, when shadow mode is
on, a sampled copy goes to the shadow queue. Both enqueues are in-memory hand-offs to a background sender
thread; the request never waits on SQS, and never on judging.

Latency: the answer document's ``latency`` holds ``ttft_ms`` (request received → first text token from the
model) and ``total_ms`` (request received → complete answer); both are published per version as the EMF
metrics ``TimeToFirstToken`` and ``Latency``. The HTTP response itself is buffered (API Gateway HTTP APIs do not
stream), so ``ttft_ms`` is when a streaming front end would show the first words; the load test and the
pre-traffic smoke read it from the document (docs/CONTRACTS.md).

The request id carries its attribution (function version, model id, prompt version) and its issue time, signed
with the service's key (``evalgate.adapters.signing``), so that feedback sent later, possibly to another version, is
counted against the version that produced the answer, and only for ids this service issued within the feedback
window; each answer gets one vote per kind (``evalgate.adapters.feedback``). Traffic is synthetic (never captured) only
when it carries a header signed with the same key. Logged text passes through ``evalgate.core.masking``.

Errors never leak a stack trace: bad input → 400 with the field and the problem; Bedrock throttling → 429
with ``Retry-After``; Bedrock unavailable or timing out → 503 with ``Retry-After``; anything else → 502/500
with the request id to quote.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evalgate.adapters.feedback import DynamoFeedbackLedger, FeedbackLedger, Kind, LedgerUnavailable
from evalgate.adapters.signing import (
    Attribution,
    Keyring,
    KeySource,
    SecretKeySource,
    SigningUnavailable,
    is_synthetic,
    issue_request_id,
    reread,
    verify_request_id,
)
from evalgate.contracts import telemetry as tm
from evalgate.contracts.records import DIRECT_KEY, sampled
from evalgate.contracts.service import (
    AnswerDocument,
    BadAnswer,
    CaptureRecord,
    GuardrailRef,
    Latency,
    ProductionSide,
    ShadowMessage,
    Source,
    Usage,
    direct_invocation,
)
from evalgate.core.errors import InputError, format_validation_error
from evalgate.core.inputs import JsonProblem, loads
from evalgate.core.knowledge import KnowledgeIndex, load_index
from evalgate.core.models import KnowledgeEntry, Turn
from evalgate.core.prompts import DEFAULT_CANARY, PromptTemplate, load_prompt
from store_assistant.flags import FlagDecision, FlagResolver, build_resolver

DEFAULT_PROMPT_ID = "support/v1"
DEFAULT_MODEL_ID = "us.anthropic.claude-sonnet-4-20250514-v1:0"
MAX_QUESTION = 4000
MAX_DOCUMENT = 8000
MAX_TURNS = 20
MAX_CAPTURED_TEXT = 12000
# A request body larger than this is refused (413) before parsing; the fields' own limits sum to ~100 kB of text.
MAX_BODY_BYTES = 256 * 1024
RETRY_AFTER_THROTTLED = 2
RETRY_AFTER_UNAVAILABLE = 5
DEFAULT_FEEDBACK_WINDOW_S = 3600
FEEDBACK_REFUSED = "request_id: not a request id this service issued within the feedback window"


log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


# ------------------------------------------------------------------------------------------------ requests


class AskRequest(BaseModel):
    """``question`` alone, or ``messages`` (a conversation ending with the user; ``question`` then ignored)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    question: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION)] | None = None
    messages: Annotated[list[Turn], Field(min_length=1, max_length=MAX_TURNS)] | None = None
    document: Annotated[str, Field(max_length=MAX_DOCUMENT)] | None = None
    session_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    user_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None

    @model_validator(mode="after")
    def _shape(self) -> AskRequest:
        if self.messages:
            if self.messages[-1].role != "user":
                raise ValueError("messages must end with a user message")
            if any(len(t.content) > MAX_QUESTION for t in self.messages):
                raise ValueError(f"each message may have at most {MAX_QUESTION} characters")
        elif not self.question:
            raise ValueError("give 'question' (text) or 'messages' (a conversation ending with the user)")
        return self

    @property
    def turns(self) -> list[Turn]:
        return list(self.messages) if self.messages else [Turn(role="user", content=self.question or "")]

    @property
    def text(self) -> str:
        return self.turns[-1].content

    @property
    def subject(self) -> str | None:
        return self.user_id or self.session_id


class FeedbackRequest(BaseModel):
    """Thumbs up/down (``rating``) or a business outcome (``converted``) for an answer, keyed by its request id."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    request_id: Annotated[str, Field(min_length=10, max_length=1024)]
    rating: Literal["up", "down"] | None = None
    converted: bool | None = None

    @model_validator(mode="after")
    def _one(self) -> FeedbackRequest:
        if (self.rating is None) == (self.converted is None):
            raise ValueError("give exactly one of 'rating' (\"up\" or \"down\") or 'converted' (true or false)")
        return self


# ------------------------------------------------------------------------------------------------ outcome


@dataclass
class HttpOutcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    telemetry: tm.Telemetry | None = None
    log: dict[str, Any] = field(default_factory=dict)

    def http_response(self) -> dict[str, Any]:
        """HTTP API (payload 2.0) / function URL response."""
        return {
            "statusCode": self.status,
            "headers": {"content-type": "application/json", **self.headers},
            "body": json.dumps(self.body),
            "isBase64Encoded": False,
        }


def error(
    status: int,
    message: str,
    *,
    request_id: str | None = None,
    retry_after: int | None = None,
    telemetry: tm.Telemetry | None = None,
    **log_fields: Any,
) -> HttpOutcome:
    body: dict[str, Any] = {"error": message}
    if request_id:
        body["request_id"] = request_id
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    return HttpOutcome(status, body, headers, telemetry, {"error": message, **log_fields})


# ------------------------------------------------------------------------------------------------ the model


@dataclass
class ChatResult:
    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str
    guardrail_intervened: bool
    ttft_ms: float  # from the caller's start time to the first text token
    total_ms: float  # from the caller's start time to the end of the answer


class UpstreamError(Exception):
    def __init__(self, kind: Literal["throttled", "unavailable", "failed"], message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ChatModel(Protocol):
    def converse(self, request: dict[str, Any], started: float) -> ChatResult:
        """Answer ``request``; times are measured from ``started`` (a ``time.monotonic()`` value)."""
        ...


def classify_aws_error(exc: Exception) -> UpstreamError:
    """What a waiting user is told about a failed model call (429 busy, 503 unavailable, 502 failed): the
    product's one AWS error map (``evalgate.adapters.aws.user_facing_kind``); an account quota counts as busy."""
    from evalgate.adapters.aws import map_aws_error, user_facing_kind

    quota = frozenset({"ServiceQuotaExceededException"})
    return UpstreamError(user_facing_kind(exc, quota), str(map_aws_error(exc, "bedrock converse", quota)))


class BedrockChat:
    """ConverseStream on bedrock-runtime, timed to the first token. Short timeouts and one retry: a user is
    waiting (API Gateway cuts at 30 s). An error in the middle of the stream is classified like one before it."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from evalgate.adapters.aws import ClientSettings, make_client

            self._client = make_client(
                "bedrock-runtime",
                ClientSettings.from_env(connect_timeout=2.0, read_timeout=25.0, max_attempts=2, retry_mode="standard"),
            )
        return self._client

    def converse(self, request: dict[str, Any], started: float) -> ChatResult:
        from evalgate.adapters.bedrock import read_stream

        try:
            answer = read_stream(self.client.converse_stream(**request)["stream"], started)
        except Exception as exc:
            raise classify_aws_error(exc) from exc
        return ChatResult(
            text=answer.text,
            input_tokens=answer.input_tokens or 0,
            output_tokens=answer.output_tokens or 0,
            stop_reason=answer.stop_reason,
            guardrail_intervened=answer.guardrail_intervened,
            ttft_ms=answer.ttft_ms,
            total_ms=answer.total_ms,
        )


# ------------------------------------------------------------------------------------------------ queues


class QueueSink:
    """Hands JSON messages to a background thread that sends them to SQS in batches of up to 10.

    ``submit`` is an in-memory put (microseconds) and never raises; a full buffer drops the message and counts
    it. Lambda freezes the environment between invocations, so a message submitted just before a freeze is
    sent when the environment thaws; one submitted just before the environment is reclaimed can be lost. That
    is acceptable for sampled telemetry (and the canary judge fails closed when judged samples are missing).
    """

    def __init__(
        self,
        queue_url: str,
        client_factory: Callable[[], Any] | None = None,
        logger: Any = None,
        max_pending: int = 1000,
    ) -> None:
        self.queue_url = queue_url
        self._client_factory = client_factory or _sqs_client
        self._client: Any = None
        self.logger = logger or log
        self._q: queue.Queue[str] = queue.Queue(maxsize=max_pending)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._unfinished = 0
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.dropped = 0
        self.failed = 0

    def submit(self, message: Mapping[str, Any]) -> bool:
        body = json.dumps(message, separators=(",", ":"), default=str)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="evalgate-sqs-sender", daemon=True)
                self._thread.start()
            try:
                self._q.put_nowait(body)
            except queue.Full:
                self.dropped += 1
                return False
            self._unfinished += 1
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted has been sent (or failed). True when the buffer drained in time."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._unfinished:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _run(self) -> None:
        while True:
            batch = [self._q.get()]
            while len(batch) < 10:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            try:
                self._send(batch)
            finally:
                with self._idle:
                    self._unfinished -= len(batch)
                    self._idle.notify_all()

    def _send(self, batch: list[str]) -> None:
        try:
            if self._client is None:
                self._client = self._client_factory()
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(batch)]
            result = self._client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            failed = result.get("Failed") or []
            self.sent += len(batch) - len(failed)
            if failed:
                self.failed += len(failed)
                self.logger.warning(
                    "some queue messages were rejected", extra={"queue": self.queue_url, "failed": failed[:3]}
                )
        except Exception as exc:
            self.failed += len(batch)
            self.logger.warning(
                "queue send failed; messages dropped",
                extra={"queue": self.queue_url, "error": f"{type(exc).__name__}: {exc}"},
            )


def _sqs_client() -> Any:
    from evalgate.adapters.aws import ClientSettings, make_client

    return make_client(
        "sqs", ClientSettings.from_env(connect_timeout=2.0, read_timeout=5.0, max_attempts=3, retry_mode="standard")
    )


# ------------------------------------------------------------------------------------------------ service


@dataclass(frozen=True)
class ServiceSettings:
    prompt_id: str = DEFAULT_PROMPT_ID
    model_id: str = DEFAULT_MODEL_ID
    guardrail_id: str | None = None
    guardrail_version: str | None = None
    # The guardrail has a contextual grounding policy: captured answers name it, and the online judge records its
    # grounding and relevance scores beside the judge's (the Converse call itself marks no grounding source).
    guardrail_grounding: bool = False
    capture_queue_url: str | None = None
    shadow_queue_url: str | None = None
    canary_token: str = DEFAULT_CANARY
    function_name: str = "local"
    function_version: str = "$LATEST"
    prompts_dir: Path | None = None
    knowledge_dir: Path | None = None
    max_tokens: int = 512
    temperature: float | None = 0.2  # or top_p; never both (evalgate.adapters.bedrock.sampling)
    top_p: float | None = None
    top_k: int = 3
    feedback_window_s: int = DEFAULT_FEEDBACK_WINDOW_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        env = os.environ if env is None else env

        def opt(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        gid = opt("GUARDRAIL_ID")
        return cls(
            prompt_id=opt("PROMPT_ID") or DEFAULT_PROMPT_ID,
            model_id=opt("MODEL_ID") or DEFAULT_MODEL_ID,
            guardrail_id=gid,
            guardrail_version=(opt("GUARDRAIL_VERSION") or "DRAFT") if gid else None,
            guardrail_grounding=bool(gid) and (opt("GUARDRAIL_GROUNDING") or "").lower() in ("1", "true"),
            capture_queue_url=opt("CAPTURE_QUEUE_URL"),
            shadow_queue_url=opt("SHADOW_QUEUE_URL"),
            canary_token=opt("CANARY_TOKEN") or DEFAULT_CANARY,
            function_name=opt("AWS_LAMBDA_FUNCTION_NAME") or "local",
            function_version=tm.executing_version(),
            prompts_dir=Path(p) if (p := opt("EVALGATE_PROMPTS_DIR")) else None,
            knowledge_dir=Path(k) if (k := opt("EVALGATE_KNOWLEDGE_DIR")) else None,
            feedback_window_s=_seconds(
                "FEEDBACK_WINDOW_SECONDS", opt("FEEDBACK_WINDOW_SECONDS"), DEFAULT_FEEDBACK_WINDOW_S
            ),
        )


def _seconds(name: str, raw: str | None, default: int) -> int:
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise InputError.single(name, None, f"not a whole number of seconds: {raw!r}") from None
    if value <= 0:
        raise InputError.single(name, None, f"must be positive (got {value})")
    return value


class Service:
    def __init__(
        self,
        settings: ServiceSettings,
        flags: FlagResolver,
        model: ChatModel,
        index: KnowledgeIndex,
        capture: QueueSink | None = None,
        shadow: QueueSink | None = None,
        logger: Any = None,
        keys: KeySource | None = None,
        ledger: FeedbackLedger | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.ledger = ledger
        self.flags = flags
        self.model = model
        self.index = index
        self.capture = capture
        self.shadow = shadow
        self.logger = logger or log
        self._prompts: dict[str, PromptTemplate] = {}

    @classmethod
    def from_env(cls, logger: Any = None, env: Mapping[str, str] | None = None) -> Service:
        settings = ServiceSettings.from_env(env)
        index, problems = load_index(settings.knowledge_dir)
        if problems:
            (logger or log).warning("knowledge base problems", extra={"problems": problems[:10]})
        return cls(
            settings=settings,
            flags=build_resolver(settings.model_id, settings.prompt_id, logger, env),
            model=BedrockChat(),
            index=index,
            capture=QueueSink(settings.capture_queue_url, logger=logger) if settings.capture_queue_url else None,
            shadow=QueueSink(settings.shadow_queue_url, logger=logger) if settings.shadow_queue_url else None,
            logger=logger,
            keys=SecretKeySource.from_env(env),
            ledger=DynamoFeedbackLedger.from_env(env),
        )

    # -- helpers

    def keyring(self) -> Keyring | None:
        """The signing keys (cached by the key source), or None when signing is not configured or unavailable."""
        if self.keys is None:
            return None
        try:
            return self.keys()
        except SigningUnavailable as exc:
            self.logger.error("request signing unavailable: ids issued now cannot be rated", extra={"error": str(exc)})
            return None

    def prompt(self, prompt_id: str) -> PromptTemplate:
        cached = self._prompts.get(prompt_id)
        if cached is None:
            cached = self._prompts[prompt_id] = load_prompt(prompt_id, self.settings.prompts_dir)
        return cached

    def _variant(self, flags: FlagDecision) -> tuple[FlagDecision, PromptTemplate]:
        """The flagged variant's prompt; a variant whose prompt is not bundled falls back to the deployed one."""
        try:
            return flags, self.prompt(flags.prompt_id)
        except InputError as exc:
            if flags.prompt_id == self.settings.prompt_id:
                raise
            self.logger.warning(
                "flagged prompt is not in this bundle; serving the deployed variant",
                extra={"variant": flags.variant, "prompt_id": flags.prompt_id, "error": str(exc)},
            )
            s = self.settings
            fallback = replace(
                flags,
                variant="default",
                model_id=s.model_id,
                prompt_id=s.prompt_id,
                source="defaults",
                max_tokens=None,
                temperature=None,
                top_p=None,
            )
            return fallback, self.prompt(s.prompt_id)

    def converse_request(self, flags: FlagDecision, system: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        from evalgate.adapters.bedrock import sampling

        s = self.settings
        # One sampling parameter: the variant's own choice wins whole, else the deployed default.
        if flags.temperature is not None or flags.top_p is not None:
            chosen = sampling(flags.temperature, flags.top_p)
        else:
            chosen = sampling(s.temperature, s.top_p)
        inference: dict[str, Any] = {"maxTokens": flags.max_tokens or s.max_tokens, **chosen}
        request: dict[str, Any] = {
            "modelId": flags.model_id,
            "messages": [{"role": m["role"], "content": [{"text": m["content"]}]} for m in messages],
            "inferenceConfig": inference,
        }
        if system.strip():
            request["system"] = [{"text": system}]
        if s.guardrail_id:
            request["guardrailConfig"] = {
                "guardrailIdentifier": s.guardrail_id,
                "guardrailVersion": s.guardrail_version,
                "trace": "disabled",
            }
        return request

    # -- routes

    def ask(
        self, body: str | bytes | None, headers: Mapping[str, str] | None = None, *, side_effects: bool = True
    ) -> HttpOutcome:
        """Answer one request. ``side_effects=False`` (shadow replays) skips capture and shadow enqueues."""
        started = time.monotonic()
        parsed = parse_json_body(body, AskRequest)
        if isinstance(parsed, HttpOutcome):
            return parsed
        req = parsed
        flags, prompt = self._resolve(req)
        version = self.settings.function_version
        attribution = Attribution(version, flags.model_id, flags.prompt_id)
        keyring = self.keyring()
        request_id = issue_request_id(keyring, attribution)
        t = tm.Telemetry(tm.Dimensions(version, flags.model_id, flags.prompt_id))
        knowledge = self.index.search(req.text, self.settings.top_k)
        system, messages = prompt.render(req.turns, knowledge, req.document, self.settings.canary_token)
        try:
            result = self.model.converse(self.converse_request(flags, system, messages), started)
        except UpstreamError as exc:
            t.add(tm.ERRORS, 1)
            if exc.kind == "throttled":
                return error(
                    429,
                    "the model is busy; retry shortly",
                    request_id=request_id,
                    retry_after=RETRY_AFTER_THROTTLED,
                    telemetry=t,
                    upstream=str(exc),
                )
            if exc.kind == "unavailable":
                return error(
                    503,
                    "the model is temporarily unavailable; retry shortly",
                    request_id=request_id,
                    retry_after=RETRY_AFTER_UNAVAILABLE,
                    telemetry=t,
                    upstream=str(exc),
                )
            return error(
                502, "the model could not answer this request", request_id=request_id, telemetry=t, upstream=str(exc)
            )
        latency_ms = (time.monotonic() - started) * 1000.0
        ttft_ms = min(result.ttft_ms, latency_ms)
        answer = AnswerDocument(
            request_id=request_id,
            answer=result.text,
            sources=[Source(id=k.id, title=k.title) for k in knowledge],
            model_id=flags.model_id,
            prompt_version=flags.prompt_id,
            variant=flags.variant,
            guardrail_intervened=result.guardrail_intervened,
            usage=Usage(inputTokens=result.input_tokens, outputTokens=result.output_tokens),
            latency=Latency(ttft_ms=round(ttft_ms, 1), total_ms=round(latency_ms, 1)),
        )
        t.add(tm.LATENCY, latency_ms)
        t.add(tm.TIME_TO_FIRST_TOKEN, ttft_ms)
        t.add(tm.INPUT_TOKENS, result.input_tokens)
        t.add(tm.OUTPUT_TOKENS, result.output_tokens)
        t.add(tm.ERRORS, 0)
        t.add(tm.GUARDRAIL_INTERVENED, 1 if result.guardrail_intervened else 0)
        synthetic = is_synthetic(keyring, headers, body)
        enqueued = (
            self._enqueue(req, flags, request_id, answer, knowledge, latency_ms)
            if side_effects and not synthetic
            else {}
        )
        if synthetic:
            enqueued["synthetic"] = True
        return HttpOutcome(
            200,
            answer.wire(),
            {},
            t,
            {
                "request_id": request_id,
                "variant": flags.variant,
                "flags_source": flags.source,
                "latency_ms": round(latency_ms, 1),
                "ttft_ms": round(ttft_ms, 1),
                **enqueued,
            },
        )

    def _resolve(self, req: AskRequest) -> tuple[FlagDecision, PromptTemplate]:
        return self._variant(self.flags.resolve(req.subject))

    def _enqueue(
        self,
        req: AskRequest,
        flags: FlagDecision,
        request_id: str,
        answer: AnswerDocument,
        knowledge: list[KnowledgeEntry],
        latency_ms: float,
    ) -> dict[str, bool]:
        out = {"captured": False, "shadowed": False}
        if self.capture is not None and sampled(request_id, flags.capture_rate, "capture"):
            out["captured"] = self.capture.submit(
                capture_record(self.settings, req, flags, answer, knowledge, latency_ms).wire()
            )
        if self.shadow is not None and flags.shadow and sampled(request_id, flags.shadow_rate, "shadow"):
            out["shadowed"] = self.shadow.submit(shadow_record(self.settings, req, answer, latency_ms).wire())
        return out

    def feedback(self, body: str | bytes | None) -> HttpOutcome:
        parsed = parse_json_body(body, FeedbackRequest)
        if isinstance(parsed, HttpOutcome):
            return parsed
        keyring = self.keyring()
        if keyring is None or self.ledger is None:
            missing = "signing key" if keyring is None else "feedback table"
            return error(
                503,
                "feedback cannot be recorded right now; retry later",
                retry_after=RETRY_AFTER_UNAVAILABLE,
                unavailable=missing,
            )
        window = self.settings.feedback_window_s
        checked = verify_request_id(keyring, parsed.request_id, window)
        if checked == "signature" and self.keys is not None:  # maybe signed with a key rotated in since we cached
            try:
                fresh = reread(self.keys)
            except SigningUnavailable:
                fresh = None
            if fresh is not None and fresh != keyring:
                checked = verify_request_id(fresh, parsed.request_id, window)
        if isinstance(checked, str):
            return error(400, FEEDBACK_REFUSED, refused=checked)
        kind: Kind = "rating" if parsed.rating is not None else "converted"
        try:
            first = self.ledger.record_once(checked.unique, kind, checked.issued + window + 86400)
        except LedgerUnavailable as exc:
            return error(
                503,
                "feedback cannot be recorded right now; retry later",
                retry_after=RETRY_AFTER_UNAVAILABLE,
                unavailable=str(exc),
            )
        attribution = checked.attribution
        if not first:  # one answer, one vote: a repeat is acknowledged, never counted
            return HttpOutcome(
                200,
                {"status": "already recorded", "request_id": parsed.request_id},
                {},
                None,
                {"feedback_for_version": attribution.version, "repeat": kind},
            )
        t = tm.Telemetry(tm.Dimensions(attribution.version, attribution.model_id, attribution.prompt_version))
        if parsed.rating is not None:
            t.add(tm.FEEDBACK_SCORE, 1.0 if parsed.rating == "up" else 0.0)
        else:
            t.add(tm.CONVERSION_RATE, 1.0 if parsed.converted else 0.0)
        return HttpOutcome(
            202,
            {"status": "recorded", "request_id": parsed.request_id},
            {},
            t,
            {"feedback_for_version": attribution.version},
        )


def http_body(body: str | None, is_base64: bool) -> bytes | HttpOutcome:
    """The raw request body of an HTTP API / function URL event: base64 decoded when flagged, size-checked.
    Bad base64 or an oversize body is a client error (400 / 413), never a 500."""
    if body is None:
        return b""
    if not isinstance(body, str):
        return error(400, "request body must be a string")
    if len(body) > MAX_BODY_BYTES * 4 // 3 + 4:
        return error(413, f"request body is too large; the limit is {MAX_BODY_BYTES} bytes")
    if not is_base64:
        raw = body.encode("utf-8", "surrogatepass")
    else:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return error(400, "request body is flagged base64 but is not valid base64")
    if len(raw) > MAX_BODY_BYTES:
        return error(413, f"request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES} bytes")
    return raw


def parse_json_body(body: str | bytes | None, model: type[M]) -> M | HttpOutcome:
    """A JSON object body validated as ``model``; every problem is a 4xx with the reason (UTF-8, JSON syntax,
    nesting depth, size, fields)."""
    if body is None or (isinstance(body, str | bytes) and not body.strip()):
        return error(400, "request body is empty; send a JSON object")
    size = len(body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body)
    if size > MAX_BODY_BYTES:
        return error(413, f"request body is {size} bytes; the limit is {MAX_BODY_BYTES} bytes")
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return error(400, f"request body is not valid UTF-8 (byte {exc.start}); send UTF-8 JSON")
    try:
        data = loads(body)
    except JsonProblem as exc:
        return error(400, f"request body: {exc}")
    if not isinstance(data, dict):
        return error(400, "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return error(400, "; ".join(format_validation_error(exc, root="")[:5]))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CAPTURED_TEXT else text[:MAX_CAPTURED_TEXT] + "…"


def capture_record(
    settings: ServiceSettings,
    req: AskRequest,
    flags: FlagDecision,
    answer: AnswerDocument,
    knowledge: list[KnowledgeEntry],
    latency_ms: float,
) -> CaptureRecord:
    """What the online judge needs: the question, the answer, the knowledge the model saw, and attribution (and
    the guardrail to check the answer's contextual grounding with, when it has a grounding policy)."""
    grounding = (
        GuardrailRef(id=settings.guardrail_id, version=settings.guardrail_version)
        if settings.guardrail_grounding and settings.guardrail_id and settings.guardrail_version
        else None
    )
    return CaptureRecord(
        request_id=answer.request_id or "",
        ts=time.time(),
        function_name=settings.function_name,
        function_version=settings.function_version,
        model_id=flags.model_id,
        prompt_version=flags.prompt_id,
        variant=flags.variant,
        question=_clip(req.text),
        history_turns=len(req.turns) - 1,
        has_document=bool(req.document),
        answer=_clip(answer.answer),
        knowledge_ids=[k.id for k in knowledge],
        latency_ms=round(latency_ms, 1),
        input_tokens=answer.usage.inputTokens,
        output_tokens=answer.usage.outputTokens,
        guardrail_intervened=answer.guardrail_intervened,
        grounding_guardrail=grounding,
    )


def shadow_record(
    settings: ServiceSettings, req: AskRequest, answer: AnswerDocument, latency_ms: float
) -> ShadowMessage:
    """The request to replay on the candidate, and what production answered (the pair's left side)."""
    return ShadowMessage(
        request_id=answer.request_id or "",
        ts=time.time(),
        request=req.model_dump(exclude_none=True, mode="json"),
        production=ProductionSide(
            function_name=settings.function_name,
            function_version=settings.function_version,
            model_id=answer.model_id or "",
            prompt_version=answer.prompt_version or "",
            variant=answer.variant or "",
            answer=_clip(answer.answer),
            latency_ms=round(latency_ms, 1),
            input_tokens=answer.usage.inputTokens,
            output_tokens=answer.usage.outputTokens,
            guardrail_intervened=answer.guardrail_intervened,
        ),
    )


# ------------------------------------------------------------------------------------------------ direct invoke


def handle_direct(service: Service, event: Mapping[str, Any]) -> HttpOutcome:
    try:
        inv = direct_invocation(event)
    except BadAnswer as exc:
        return error(400, str(exc))
    try:
        body = json.dumps(inv.request)
    except (ValueError, TypeError, RecursionError):
        return error(400, f"{DIRECT_KEY}.request: not a JSON object that can be replayed")
    return service.ask(body, None, side_effects=False)
