"""The service contract: what the product sends a service and what it reads back, defined once for both sides.

A service behind the pipeline (the demo ``store_assistant`` or your own) is one Lambda handler that:

* answers ``POST /ask`` as an HTTP API (payload 2.0) / function URL event whose JSON body is an ``ask_body``
  (``question``, ``session_id``, optionally ``messages`` and ``document``), with a 200 ``AnswerDocument``;
  the gate's Lambda and HTTP candidates, the pre-traffic hook and the load test send exactly that;
* answers a direct invocation ``{DIRECT_KEY: DirectInvocation}`` (the shadow worker replays a live request on the
  candidate with side effects off) with the same document, without capturing it;
* answers bad input with a 4xx and an ``{"error": ...}`` body, never a 500;
* publishes, per answered request, ``telemetry.SERVICE_METRICS`` under the ``{FunctionVersion}`` dimension set
  (the alarms and the canary judge read them) in the namespace ``POWERTOOLS_METRICS_NAMESPACE``;
* sends sampled ``CaptureRecord`` s to ``CAPTURE_QUEUE_URL`` for the online judge, never for traffic that carries
  a valid synthetic-traffic header (``evalgate.adapters.signing``).

``tests/contract/service_suite.py`` checks all of it against any handler. Floor 1: pydantic and ``evalgate.core``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evalgate.contracts.records import DIRECT_KEY
from evalgate.core.config import GUARDRAIL_VERSION_PATTERN
from evalgate.core.errors import format_validation_error
from evalgate.core.inputs import JsonProblem, loads
from evalgate.core.models import MAX_ANSWER_CHARS, MAX_PROMPT_CHARS, Turn

CAPTURE_SCHEMA = 1


def ask_body(question: str, session_id: str, turns: Sequence[Turn] = (), document: str | None = None) -> dict[str, Any]:
    """The JSON body of ``POST /ask`` the product sends: a conversation of more than one turn goes as
    ``messages`` (ending with the user), an untrusted document as ``document``."""
    body: dict[str, Any] = {"question": question, "session_id": session_id}
    if len(turns) > 1:
        body["messages"] = [{"role": t.role, "content": t.content} for t in turns]
    if document:
        body["document"] = document
    return body


class Source(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    title: str = ""


class Usage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputTokens: int | None = Field(default=None, ge=0)
    outputTokens: int | None = Field(default=None, ge=0)


class Latency(BaseModel):
    """As the service measured it: request received -> first text token (``ttft_ms``), -> complete answer."""

    model_config = ConfigDict(extra="ignore")

    ttft_ms: float | None = Field(default=None, ge=0)
    total_ms: float | None = Field(default=None, ge=0)


class AnswerDocument(BaseModel):
    """The 200 body of ``POST /ask`` and of a direct invocation. Only ``answer`` is required of a reader's input;
    a service writes every field it knows (``request_id`` always: feedback and captures are keyed by it)."""

    model_config = ConfigDict(extra="allow")

    answer: Annotated[str, Field(max_length=MAX_ANSWER_CHARS)]
    request_id: str | None = None
    sources: list[Source] = Field(default_factory=list)
    model_id: str | None = None
    prompt_version: str | None = None
    variant: str | None = None
    guardrail_intervened: bool = False
    usage: Usage = Field(default_factory=Usage)
    latency: Latency | None = None

    def wire(self) -> dict[str, Any]:
        """The JSON object a service sends."""
        return self.model_dump(mode="json")


class BadAnswer(ValueError):
    """A service's response that is not an answer document (the message says what is wrong)."""


def _problems(exc: ValidationError) -> str:
    return "; ".join(format_validation_error(exc)[:3])


def parse_answer(doc: Any) -> AnswerDocument:
    """An answer document from a decoded JSON value; ``BadAnswer`` names the field otherwise."""
    if not isinstance(doc, dict):
        raise BadAnswer(f"not a JSON object but {type(doc).__name__}")
    try:
        return AnswerDocument.model_validate(doc)
    except ValidationError as exc:
        raise BadAnswer(_problems(exc)) from None


def read_response(payload: Mapping[str, Any]) -> tuple[int, Any, str]:
    """``(status, decoded body or None, body text)`` of a handler's return value: an HTTP API response
    (``statusCode`` + ``body`` string, optionally base64) or a bare JSON object (which HTTP APIs treat as a 200
    body). ``BadAnswer`` when a flagged base64 body is not base64 UTF-8 or the status is not a number."""
    if "statusCode" not in payload:
        return 200, dict(payload), json.dumps(payload)
    status = payload.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int):
        raise BadAnswer(f"statusCode is not a number: {status!r}")
    body = payload.get("body")
    if isinstance(body, dict):
        return status, body, json.dumps(body)
    text = body if isinstance(body, str) else ""
    if payload.get("isBase64Encoded") and text:
        try:
            text = base64.b64decode(text, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise BadAnswer("body is flagged base64 but is not valid base64 UTF-8") from None
    try:
        return status, loads(text), text
    except JsonProblem:  # syntax, nesting depth: not a document
        return status, None, text


class DirectInvocation(BaseModel):
    """A direct (non-HTTP) invocation of a service version: ``{"evalgate_invoke": {"mode": ..., "request": ...}}``.

    ``request`` is an ``ask_body``. API Gateway cannot produce this shape, so side effects (capture, shadow
    enqueue) can only be switched off by a caller with ``lambda:InvokeFunction`` on the function."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    mode: Literal["shadow"]
    request: dict[str, Any]


def direct_event(request: Mapping[str, Any], mode: Literal["shadow"] = "shadow") -> dict[str, Any]:
    """The event the shadow worker invokes a version with."""
    return {DIRECT_KEY: DirectInvocation(mode=mode, request=dict(request)).model_dump()}


def direct_invocation(event: Mapping[str, Any]) -> DirectInvocation:
    """The service side: the direct invocation in ``event``; ``BadAnswer`` names what is wrong."""
    try:
        return DirectInvocation.model_validate(event.get(DIRECT_KEY))
    except ValidationError as exc:
        raise BadAnswer(f"{DIRECT_KEY}: {_problems(exc)}") from None


class GuardrailRef(BaseModel):
    """A Bedrock guardrail version (the online judge checks a captured answer's contextual grounding with it)."""

    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=2048)]
    version: Annotated[str, Field(pattern=GUARDRAIL_VERSION_PATTERN)]


class CaptureRecord(BaseModel):
    """One sampled live answer, sent by the service to the capture queue and judged by the online judge.
    The reader needs the attribution, the question, the answer and the knowledge ids the model saw; the rest is
    context for people reading the judged records. Unknown fields are ignored (a newer writer)."""

    model_config = ConfigDict(extra="ignore")

    schema_: int = Field(default=CAPTURE_SCHEMA, alias="schema")
    request_id: Annotated[str, Field(min_length=1)]
    function_version: Annotated[str, Field(min_length=1)]
    model_id: Annotated[str, Field(min_length=1)]
    prompt_version: Annotated[str, Field(min_length=1)]
    question: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
    answer: Annotated[str, Field(max_length=MAX_ANSWER_CHARS)]
    knowledge_ids: list[str] = Field(default_factory=list)
    guardrail_intervened: bool = False
    ts: float | None = None
    function_name: str | None = None
    variant: str | None = None
    history_turns: int = 0
    has_document: bool = False
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    grounding_guardrail: GuardrailRef | None = None  # check the answer's contextual grounding with this guardrail

    def wire(self) -> dict[str, Any]:
        """The JSON object the service sends to the capture queue (unset optional fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ProductionSide(BaseModel):
    """What production answered a mirrored request (the left side of a shadow pair)."""

    model_config = ConfigDict(extra="ignore")

    function_name: str | None = None
    function_version: str = ""
    model_id: str = ""
    prompt_version: str = ""
    variant: str = ""
    answer: str
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    guardrail_intervened: bool = False


class ShadowMessage(BaseModel):
    """A sampled live request for the shadow queue: sent by the service, replayed on the candidate by the shadow
    worker (``request`` is the ask body production answered)."""

    model_config = ConfigDict(extra="ignore")

    schema_: int = Field(default=CAPTURE_SCHEMA, alias="schema")
    request_id: str = Field(min_length=1)
    ts: float | None = None
    request: dict[str, Any]
    production: ProductionSide

    def wire(self) -> dict[str, Any]:
        """The JSON object the service sends to the shadow queue."""
        return self.model_dump(mode="json", by_alias=True)
