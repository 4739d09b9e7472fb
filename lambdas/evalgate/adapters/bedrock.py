"""Amazon Bedrock adapters: the candidate under test (ConverseStream, timed to the first token), the judge
(Converse with a forced tool) and Titan text embeddings (InvokeModel).

``read_stream`` is the one reader of a ConverseStream response (the candidate here and the service use it):
it joins the text deltas and records the time to the first token (the first non-empty text delta) and to the
end of the stream, measured from a start time the caller chooses.

All three use a client from ``providers.aws.make_client`` (default credential and endpoint resolution,
explicit timeouts, botocore retries off: ``evalgate.core.retry`` owns them) unless a client is injected. Capacity
errors raise ``ThrottledError``, 5xx and timeouts ``TransientError``; every other failure raises
``ProviderError`` naming the model.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from evalgate.adapters.aws import ClientSettings, make_client, map_aws_error, model_client_settings
from evalgate.core.errors import ProviderError
from evalgate.core.models import Case, Generation, KnowledgeEntry
from evalgate.core.ports import JudgeCall, ToolSpec
from evalgate.core.prompts import PromptTemplate

TITAN_EMBED_V2 = "amazon.titan-embed-text-v2:0"
TITAN_V2_DIMENSIONS = (256, 512, 1024)
GUARDRAIL_INTERVENED = "guardrail_intervened"


class _LazyClient:
    """The bedrock-runtime client, built on first use: a run whose calls all come from the cache never pays for
    building one (botocore loads the service model then)."""

    def __init__(self, settings: ClientSettings | None) -> None:
        self._settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = make_client("bedrock-runtime", self._settings or model_client_settings())
        return getattr(self._client, name)


# Claude 4.5-generation models (Sonnet 4.5, Haiku 4.5, Opus 4.1 and later) answer HTTP 400 "`temperature` and
# `top_p` cannot both be specified for this model" when a request sets both: Anthropic, "Migrating to Claude 4.5"
# (https://platform.claude.com/docs/about-claude/models/migrating-to-claude-4, "Update sampling parameters")
# and the Haiku 4.5 migration guide (https://platform.claude.com/docs/models/haiku-4-5/migration-guide: "Setting
# both returns a 400 error on Claude Haiku 4.5"). Older models accept either alone, so every request sends one.
def sampling(temperature: float | None, top_p: float | None) -> dict[str, float]:
    """The Converse ``inferenceConfig`` sampling fields: temperature or topP, never both."""
    if temperature is not None and top_p is not None:
        raise ValueError(
            f"set temperature ({temperature:g}) or top_p ({top_p:g}), not both: newer Claude models reject both"
        )
    if temperature is not None:
        return {"temperature": temperature}
    return {"topP": top_p} if top_p is not None else {}


def _runtime_client(client: Any, settings: ClientSettings | None) -> Any:
    return client if client is not None else _LazyClient(settings)


def _converse_messages(messages: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    return [{"role": m["role"], "content": [{"text": m["content"]}]} for m in messages]


def _content_blocks(response: dict[str, Any]) -> list[dict[str, Any]]:
    content = (response.get("output") or {}).get("message", {}).get("content") or []
    return [b for b in content if isinstance(b, dict)]


def _text_of(blocks: list[dict[str, Any]]) -> str:
    return "".join(b["text"] for b in blocks if isinstance(b.get("text"), str))


def _usage(response: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = response.get("usage") or {}
    inp, out = usage.get("inputTokens"), usage.get("outputTokens")
    return (int(inp) if inp is not None else None, int(out) if out is not None else None)


@dataclass(frozen=True)
class StreamedAnswer:
    """A ConverseStream answer read to its end. Times are in ms from the caller's start time."""

    text: str
    stop_reason: str
    input_tokens: int | None
    output_tokens: int | None
    ttft_ms: float
    total_ms: float

    @property
    def guardrail_intervened(self) -> bool:
        return self.stop_reason == GUARDRAIL_INTERVENED


def read_stream(
    events: Iterable[dict[str, Any]], started: float, clock: Callable[[], float] = time.monotonic
) -> StreamedAnswer:
    """Consume ConverseStream ``stream`` events. Errors raised mid-stream (botocore ``EventStreamError``)
    propagate to the caller. TTFT is the first non-empty text delta; an answer without text (a tool call, an
    empty answer) counts its TTFT at the end of the stream: nothing reached the user earlier."""
    parts: list[str] = []
    first: float | None = None
    stop = ""
    usage: dict[str, Any] = {}
    for ev in events:
        delta = (ev.get("contentBlockDelta") or {}).get("delta") or {}
        text = delta.get("text")
        if isinstance(text, str) and text:
            if first is None:
                first = clock()
            parts.append(text)
        elif "messageStop" in ev:
            stop = str(ev["messageStop"].get("stopReason") or "")
        elif "metadata" in ev:
            usage = ev["metadata"].get("usage") or {}
    end = clock()
    inp, out = usage.get("inputTokens"), usage.get("outputTokens")
    return StreamedAnswer(
        text="".join(parts),
        stop_reason=stop,
        input_tokens=int(inp) if inp is not None else None,
        output_tokens=int(out) if out is not None else None,
        ttft_ms=((first if first is not None else end) - started) * 1000.0,
        total_ms=(end - started) * 1000.0,
    )


class BedrockCandidate:
    """The system under test as a Bedrock model (or inference profile) behind a versioned prompt template.

    ``temperature`` or ``top_p`` (not both: see ``sampling``); ``None`` omits the parameter.
    ``canary`` is the secret placed in the system prompt for non-injection cases (injection cases bring
    their own); it decides the output, so a hash of it is part of ``identity()``.
    """

    live = True

    def __init__(
        self,
        model_id: str,
        prompt: PromptTemplate,
        *,
        max_tokens: int = 512,
        temperature: float | None = 0.2,
        top_p: float | None = None,
        stop_sequences: Sequence[str] = (),
        guardrail_id: str | None = None,
        guardrail_version: str | None = None,
        guardrail_trace: str = "enabled",
        additional_fields: dict[str, Any] | None = None,
        canary: str | None = None,
        name: str | None = None,
        client: Any = None,
        settings: ClientSettings | None = None,
    ) -> None:
        if not model_id:
            raise ValueError("model_id is required")
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        sampling(temperature, top_p)  # refuses both at once
        if guardrail_id and not guardrail_version:
            raise ValueError("guardrail_version is required with guardrail_id (a number or DRAFT)")
        self.model_id = model_id
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.stop_sequences = list(stop_sequences)
        self.guardrail_id = guardrail_id or None
        self.guardrail_version = guardrail_version if guardrail_id else None
        self.guardrail_trace = guardrail_trace
        self.additional_fields = dict(additional_fields or {})
        self.canary = canary
        self.name = name or f"bedrock:{model_id}"
        self._client = _runtime_client(client, settings)

    def identity(self) -> dict[str, Any]:
        return {
            "kind": "bedrock",
            "model_id": self.model_id,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop_sequences": list(self.stop_sequences),
            "additional_fields": self.additional_fields,
            "prompt_id": self.prompt.prompt_id,
            "prompt_sha256": self.prompt.sha256,
            "canary_sha256": hashlib.sha256(self.canary.encode()).hexdigest()[:16] if self.canary else None,
            "guardrail": {"id": self.guardrail_id, "version": self.guardrail_version} if self.guardrail_id else None,
        }

    def inference_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"maxTokens": self.max_tokens, **sampling(self.temperature, self.top_p)}
        if self.stop_sequences:
            cfg["stopSequences"] = list(self.stop_sequences)
        return cfg

    def request(self, case: Case, knowledge: list[KnowledgeEntry]) -> dict[str, Any]:
        """The ConverseStream request for one case (exposed so callers and tests can see exactly what is sent)."""
        system, messages = self.prompt.render_case(case, knowledge, self.canary)
        req: dict[str, Any] = {
            "modelId": self.model_id,
            "messages": _converse_messages(messages),
            "inferenceConfig": self.inference_config(),
        }
        if system.strip():
            req["system"] = [{"text": system}]
        if self.guardrail_id:
            req["guardrailConfig"] = {
                "guardrailIdentifier": self.guardrail_id,
                "guardrailVersion": self.guardrail_version,
                "trace": self.guardrail_trace,
            }
        if self.additional_fields:
            req["additionalModelRequestFields"] = self.additional_fields
        return req

    def generate(self, case: Case, knowledge: list[KnowledgeEntry], repeat: int) -> Generation:
        req = self.request(case, knowledge)
        start = time.monotonic()
        try:
            answer = read_stream(self._client.converse_stream(**req)["stream"], start)
        except Exception as exc:
            raise map_aws_error(exc, f"bedrock model {self.model_id}") from exc
        return Generation(
            case_id=case.id,
            repeat=repeat,
            output=answer.text,
            latency_ms=answer.total_ms,
            ttft_ms=answer.ttft_ms,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            model_id=self.model_id,
            prompt_version=self.prompt.prompt_id,
            guardrail_intervened=answer.guardrail_intervened,
        )


class BedrockJudgeModel:
    """A judge model on Bedrock: Converse at temperature 0 with one tool whose use is forced.

    The tool's input is returned as-is (``None`` when the model answered without calling the tool); checking
    it against the schema is the core's job, so every judge backend is validated the same way.
    """

    def __init__(
        self,
        model_id: str,
        *,
        max_tokens: int = 1024,
        client: Any = None,
        settings: ClientSettings | None = None,
    ) -> None:
        if not model_id:
            raise ValueError("model_id is required")
        self.model_id = model_id
        self.max_tokens = max_tokens
        self._client = _runtime_client(client, settings)

    def request(self, system: str, user: str, tool: ToolSpec) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": tool.schema}}
        if tool.description:
            spec["description"] = tool.description
        req: dict[str, Any] = {
            "modelId": self.model_id,
            "messages": [{"role": "user", "content": [{"text": user}]}],
            "inferenceConfig": {"maxTokens": self.max_tokens, "temperature": 0.0},
            "toolConfig": {"tools": [{"toolSpec": spec}], "toolChoice": {"tool": {"name": tool.name}}},
        }
        if system.strip():
            req["system"] = [{"text": system}]
        return req

    def call(self, system: str, user: str, tool: ToolSpec) -> JudgeCall:
        req = self.request(system, user, tool)
        start = time.monotonic()
        try:
            response = self._client.converse(**req)
        except Exception as exc:
            raise map_aws_error(exc, f"bedrock judge {self.model_id}") from exc
        latency_ms = (time.monotonic() - start) * 1000.0
        blocks = _content_blocks(response)
        uses = [b["toolUse"] for b in blocks if isinstance(b.get("toolUse"), dict)]
        chosen = next((u for u in uses if u.get("name") == tool.name), uses[0] if uses else None)
        input_tokens, output_tokens = _usage(response)
        return JudgeCall(
            tool_input=chosen.get("input") if chosen is not None else None,
            input_tokens=input_tokens or 0,
            output_tokens=output_tokens or 0,
            raw_text=_text_of(blocks),
            extra={
                "stop_reason": response.get("stopReason"),
                "tool_name": chosen.get("name") if chosen is not None else None,
                "latency_ms": latency_ms,
            },
        )


class TitanEmbedder:
    """Amazon Titan Text Embeddings V2 through InvokeModel, one request per (distinct) text, in parallel.

    ``max_workers`` bounds the thread pool per ``embed`` call (keep it at or below the client's
    ``max_pool_connections``). Vectors are re-normalised here even though ``normalize`` is requested.
    ``dimensions`` applies to V2 (256, 512 or 1024); Titan V1/G1 ids are sent ``inputText`` only.
    """

    name = "titan"

    def __init__(
        self,
        model_id: str = TITAN_EMBED_V2,
        *,
        dimensions: int = 1024,
        max_workers: int = 8,
        client: Any = None,
        settings: ClientSettings | None = None,
    ) -> None:
        # V2 (base id, ARN or profile) takes dimensions/normalize; V1 and G1 take only inputText (1536 dims).
        self._v2 = "titan-embed-text-v2" in model_id
        if self._v2 and dimensions not in TITAN_V2_DIMENSIONS:
            raise ValueError(f"Titan V2 supports dimensions {TITAN_V2_DIMENSIONS}, not {dimensions}")
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.model_id = model_id
        self.dimensions = dimensions
        self.max_workers = max_workers
        self._client = _runtime_client(client, settings)
        self._lock = threading.Lock()
        self.input_tokens = 0  # running total of inputTextTokenCount (for cost accounting)
        self.calls = 0

    def identity(self) -> dict[str, Any]:
        return {"kind": "titan", "model_id": self.model_id, "dimensions": self.dimensions if self._v2 else None}

    def embed(self, texts: list[str]) -> list[list[float]]:
        for i, text in enumerate(texts):
            if not text or not text.strip():
                raise ProviderError(f"bedrock embeddings {self.model_id}: text #{i} is empty and cannot be embedded")
        unique = list(dict.fromkeys(texts))
        if len(unique) <= 1 or self.max_workers == 1:
            vectors = [self._embed_one(t) for t in unique]
        else:
            pool = ThreadPoolExecutor(max_workers=min(self.max_workers, len(unique)), thread_name_prefix="titan")
            try:
                vectors = list(pool.map(self._embed_one, unique))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        by_text = dict(zip(unique, vectors, strict=True))
        return [list(by_text[t]) for t in texts]

    def _embed_one(self, text: str) -> list[float]:
        what = f"bedrock embeddings {self.model_id}"
        request: dict[str, Any] = {"inputText": text}
        if self._v2:
            request.update(dimensions=self.dimensions, normalize=True)
        body = json.dumps(request)
        try:
            response = self._client.invoke_model(
                modelId=self.model_id, body=body, contentType="application/json", accept="application/json"
            )
            raw = response["body"].read()
        except Exception as exc:
            raise map_aws_error(exc, what) from exc
        try:
            payload = json.loads(raw)
            vector = [float(x) for x in payload["embedding"]]
        except (ValueError, TypeError, KeyError) as exc:
            raise ProviderError(f"{what}: unexpected response body: {raw[:200]!r}") from exc
        if self._v2 and len(vector) != self.dimensions:
            raise ProviderError(f"{what}: expected {self.dimensions} dimensions, got {len(vector)}")
        with self._lock:
            self.calls += 1
            self.input_tokens += int(payload.get("inputTextTokenCount") or 0)
        return _unit(vector, what)


def _unit(vector: list[float], what: str) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if not math.isfinite(norm) or norm == 0.0:
        raise ProviderError(f"{what}: embedding has zero or non-finite norm")
    return [x / norm for x in vector]
