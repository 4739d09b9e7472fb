"""A loopback HTTP fake of the bedrock-runtime API, for tests and benchmarks.

It speaks the real wire protocol (rest-json), so the real boto3 client talks to it unchanged:

- ``POST /model/{modelId}/converse``: Converse. Response ``output.message.content`` holds ``text`` and/or
  ``toolUse`` blocks, plus ``stopReason``, ``usage {inputTokens, outputTokens, totalTokens}`` and
  ``metrics {latencyMs}``.
- ``POST /model/{modelId}/converse-stream``: ConverseStream. The same answer as Converse, sent as an
  ``application/vnd.amazon.eventstream`` body (chunked): ``messageStart``, ``contentBlockDelta`` pieces of a
  few words, ``contentBlockStop``, ``messageStop``, ``metadata`` (frames from ``tests.fakes.eventstream``).
  ``first_token_delay`` (seconds, per model with ``model_first_token_delay``) passes between the response
  headers and the first text delta, ``token_interval`` between later deltas; ``Error(..., in_stream=True)``
  sends the error as an exception frame after ``messageStart`` (a mid-stream failure).
- ``POST /model/{modelId}/invoke``: InvokeModel for Titan text embeddings (``amazon.titan-embed-text-*``):
  body ``{"inputText", "dimensions", "normalize"}`` → ``{"embedding", "inputTextTokenCount"}``.
- Errors are JSON ``{"message": ...}`` with the ``X-Amzn-ErrorType`` header and the real status code
  (``ThrottlingException`` 429, ``ValidationException`` 400, ``ServiceUnavailableException`` 503, ...).

What each call returns is decided, in order, by: ``handler`` (a callable ``FakeRequest -> action | None``),
then the scripted queues (``script()``, ``throttle()``), then deterministic defaults:

- a candidate answer made of the knowledge sentences that share the most words with the question;
- a judge (any request with ``toolConfig``) that calls the forced tool with an input built from the tool's
  JSON schema, scoring the word overlap between the ``<answer>`` and the ``<knowledge>`` (or ``<context>``,
  ``<reference>``...) sections of the judge prompt, so scores vary with the input;
- a guardrail (when ``guardrailConfig`` is sent) that intervenes if the user text contains a blocked phrase;
- Titan embeddings from a signed hashed bag of words (normalised when asked), so similar texts are close.

Fault injection (for the fault bench and resilience tests), seeded so a run is reproducible:

- ``Faults(throttle_rate=0.3)``: that share of calls is answered 429 ``ThrottlingException`` at once (a front
  door refusal, like the service's), whatever the load;
- ``Faults(quota_rps=20)``: a token bucket (``quota_burst`` tokens, refilled at ``quota_rps``); a call that finds
  it empty is answered 429 at once, refused calls take no token;
- ``Faults(malformed_rate=0.2)``: that share of judge replies are prose with broken JSON and no tool call;
- ``Faults(error_rate=0.05)``: that share of calls fail with ``InternalServerException`` (500) after the latency.

Usage::

    with BedrockFake(latency=0.2) as fake, fake.patched_env():
        client = boto3.client("bedrock-runtime")   # talks to http://127.0.0.1:<port>
        ...
        assert fake.count(operation="converse") == 1
        assert fake.requests[0].inference_config["temperature"] == 0

Thread-safe and fast enough for throughput benchmarks (thread per connection, HTTP/1.1 keep-alive).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import random
import re
import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import eventstream
from tests.fakes.loopback import LoopbackHandler, LoopbackServer, ServerThread

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
ENDPOINT_ENV = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"
GUARDRAIL_MESSAGE = "Sorry, I can't help with that request."
DEFAULT_BLOCKED_PHRASES = ("ignore previous instructions", "ignore all previous instructions")
_ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"

# ---------------------------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Text:
    """Answer with text blocks (``stop_reason`` e.g. ``end_turn``, ``guardrail_intervened``, ``max_tokens``)."""

    text: str
    stop_reason: str = "end_turn"
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class ToolUse:
    """Answer with a ``toolUse`` block. ``input`` may be anything JSON (a malformed judge output, too).

    ``name`` defaults to the tool the request forced; ``text`` adds a text block before the tool call.
    """

    input: Any
    name: str | None = None
    text: str | None = None
    stop_reason: str = "tool_use"
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Error:
    """An error response with the real wire shape."""

    code: str
    status: int
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    in_stream: bool = False  # ConverseStream: sent as an exception frame inside a 200 stream

    @classmethod
    def throttling(cls, message: str = "Too many requests, please wait before trying again.") -> Error:
        return cls("ThrottlingException", 429, message)

    @classmethod
    def service_unavailable(cls, message: str = "Service unavailable, try again later.") -> Error:
        return cls("ServiceUnavailableException", 503, message)

    @classmethod
    def model_not_ready(cls, message: str = "Model is not ready to serve inference requests.") -> Error:
        return cls("ModelNotReadyException", 429, message)

    @classmethod
    def validation(cls, message: str = "Malformed input request.") -> Error:
        return cls("ValidationException", 400, message)

    @classmethod
    def access_denied(cls, message: str = "You don't have access to the model with the specified model ID.") -> Error:
        return cls("AccessDeniedException", 403, message)

    @classmethod
    def model_timeout(cls, message: str = "Model has timed out in processing the request.") -> Error:
        return cls("ModelTimeoutException", 408, message)


@dataclass(frozen=True)
class Embedding:
    """Answer an InvokeModel (Titan) call with this exact vector (e.g. an unnormalised one)."""

    vector: tuple[float, ...] | list[float]
    input_tokens: int | None = None


@dataclass(frozen=True)
class Raw:
    """Answer with these exact bytes (malformed JSON, odd content types...)."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` (interrupted when the fake stops), then answer with ``then`` (default behaviour if None).

    ``Delay(30)`` hangs longer than any sensible client read timeout.
    """

    seconds: float
    then: Action | None = None


Action = Text | ToolUse | Error | Embedding | Raw | Delay

MALFORMED_JUDGE_REPLY = (
    'Here is my assessment of the answer: {"score": 0.9, "verdict": "pass", "reasons": "The answer is supported'
)


@dataclass(frozen=True)
class Faults:
    """Random faults (see the module docstring); ``seed`` makes the sequence of draws reproducible."""

    throttle_rate: float = 0.0
    quota_rps: float | None = None
    quota_burst: float | None = None  # default: one second of quota
    malformed_rate: float = 0.0
    error_rate: float = 0.0
    seed: int = 0


class _TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def hang(seconds: float = 30.0) -> Delay:
    return Delay(seconds)


# ---------------------------------------------------------------------------------------------- requests


@dataclass
class FakeRequest:
    """One request the fake received (parsed), with helpers for assertions."""

    index: int
    operation: str  # "converse" | "converse-stream" | "invoke"
    model_id: str
    headers: dict[str, str]
    raw: bytes
    body: Any
    received_at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}

    @property
    def inference_config(self) -> dict[str, Any]:
        return dict(self.json.get("inferenceConfig") or {})

    @property
    def tool_config(self) -> dict[str, Any] | None:
        return self.json.get("toolConfig")

    @property
    def forced_tool(self) -> str | None:
        choice = (self.tool_config or {}).get("toolChoice") or {}
        tool = choice.get("tool") if isinstance(choice, dict) else None
        return tool.get("name") if isinstance(tool, dict) else None

    @property
    def tool_schema(self) -> dict[str, Any] | None:
        tools = (self.tool_config or {}).get("tools") or []
        wanted = self.forced_tool
        for t in tools:
            spec = t.get("toolSpec") or {}
            if wanted is None or spec.get("name") == wanted:
                return (spec.get("inputSchema") or {}).get("json")
        return None

    @property
    def guardrail(self) -> dict[str, Any] | None:
        return self.json.get("guardrailConfig")

    @property
    def system_text(self) -> str:
        return "\n".join(b.get("text", "") for b in self.json.get("system") or [] if isinstance(b, dict))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.json.get("messages") or [])

    @property
    def user_text(self) -> str:
        """Text of the last user message."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return "\n".join(b.get("text", "") for b in m.get("content") or [] if isinstance(b, dict))
        return ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


Handler = Callable[[FakeRequest], "Action | None"]

# ---------------------------------------------------------------------------------------------- text helpers

_WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "my",
        "of",
        "on",
        "or",
        "our",
        "that",
        "the",
        "their",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "with",
        "you",
        "your",
        "not",
        "no",
        "yes",
        "please",
        "there",
        "these",
        "those",
    ]
)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOPWORDS and len(w) > 1}


def sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n+", text)
    return [p.strip() for p in parts if p.strip()]


def overlap(answer: str, knowledge: str) -> float:
    """Share of the answer's content words that appear in the knowledge text (0 when the answer has none)."""
    a = content_words(answer)
    if not a:
        return 0.0
    return len(a & content_words(knowledge)) / len(a)


_SECTION_TAGS = {
    "answer": ("answer", "response", "output", "candidate_answer", "candidate"),
    "knowledge": ("knowledge", "context", "reference", "documents", "document", "sources", "source", "evidence"),
    "question": ("question", "query", "user_question"),
}


def section(text: str, kind: str) -> str | None:
    """Contents of the first ``<tag>...</tag>`` fence of a kind (tags listed in ``_SECTION_TAGS``)."""
    for tag in _SECTION_TAGS[kind]:
        m = re.search(rf"<{tag}(?:\s[^>]*)?>(.*?)</{tag}>", text, re.IGNORECASE | re.DOTALL)
        if m:
            return m.group(1)
        # evalgate's judge fences data as <DATA-<hash> kind="candidate_answer">...</DATA-<hash>>
        m = re.search(rf'<(DATA-[0-9a-f]+) kind="{tag}">(.*?)</\1>', text, re.DOTALL)
        if m:
            return m.group(2)
    return None


def default_answer(req: FakeRequest) -> str:
    """Deterministic candidate answer: the two sentences of the prompt most related to the question."""
    text = req.user_text
    question = section(text, "question")
    sents = sentences(text)
    if question is None:
        asked = [s for s in sents if s.endswith("?")]
        question = asked[-1] if asked else (sents[-1] if sents else "")
    q = content_words(question)
    scored = []
    for i, s in enumerate(sents):
        if s == question.strip() or s.endswith("?") or len(words(s)) < 4:
            continue  # the question itself, other questions, headings
        shared = len(q & content_words(s))
        if shared:
            scored.append((-shared, i, s))
    if not scored:
        return "I don't know based on the information available."
    best = -min(scored)[0]
    chosen = [t for t in sorted(scored)[:2] if -t[0] * 2 >= best]
    return " ".join(s for _, i, s in sorted(chosen, key=lambda t: t[1]))


def judge_assessment(req: FakeRequest) -> dict[str, Any]:
    """Score, verdict, reasons and unsupported sentences for the judge request (word overlap)."""
    text = req.user_text
    answer = section(text, "answer")
    knowledge = section(text, "knowledge")
    if answer is None or knowledge is None:
        paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
        answer = answer if answer is not None else (paragraphs[-1] if paragraphs else "")
        knowledge = knowledge if knowledge is not None else "\n".join(paragraphs[:-1])
    score = round(overlap(answer, knowledge), 2)
    kw = content_words(knowledge)
    unsupported = [
        s for s in sentences(answer) if content_words(s) and len(content_words(s) & kw) / len(content_words(s)) < 0.5
    ]
    return {
        "score": score,
        "verdict": "pass" if score >= 0.5 else "fail",
        "reasons": f"{round(score * 100)}% of the answer's content words appear in the reference material.",
        "unsupported_claims": unsupported,
    }


def fill_schema(schema: dict[str, Any] | None, assessment: dict[str, Any]) -> Any:
    """Build a tool input that fits ``schema`` from an assessment (generic over judge schemas)."""
    schema = schema or {}
    typ = schema.get("type")
    if typ == "object" or "properties" in schema:
        out: dict[str, Any] = {}
        for name, sub in (schema.get("properties") or {}).items():
            out[name] = _fill_property(name, sub or {}, assessment)
        return out
    return _fill_property("value", schema, assessment)


def _fill_property(name: str, sub: dict[str, Any], a: dict[str, Any]) -> Any:
    lname = name.lower()
    score = float(a["score"])
    passed = a["verdict"] == "pass"
    negative = any(k in lname for k in ("halluc", "unsupported", "leak", "fail", "violation", "unsafe"))
    if "enum" in sub:
        options = list(sub["enum"])
        for want in ("pass", "fail") if passed else ("fail", "pass"):
            if want in options:
                return want
        return options[0] if passed else options[-1]
    typ = sub.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), None)
    if typ in ("number", "integer") or "score" in lname:
        lo = float(sub.get("minimum", 0.0))
        hi = float(sub.get("maximum", 1.0))
        value = lo + (hi - lo) * score
        return round(value) if typ == "integer" else round(value, 4)
    if typ == "boolean":
        return (not passed) if negative else passed
    if typ == "array":
        return list(a["unsupported_claims"]) if negative or "claim" in lname else []
    if typ == "object":
        return fill_schema(sub, a)
    return a["reasons"]


@functools.lru_cache(maxsize=200_000)
def _bucket(word: str, dims: int) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
    return h % dims, (1.0 if (h >> 63) & 1 else -1.0)


def hashed_embedding(text: str, dims: int = 1024, normalize: bool = True) -> list[float]:
    """Signed hashed bag of words (stopwords down-weighted): texts sharing words are close, others near 0."""
    vec = [0.0] * dims
    for w in words(text):
        idx, sign = _bucket(w, dims)
        vec[idx] += sign * (0.25 if w in STOPWORDS else 1.0)
    if normalize:
        norm = math.sqrt(sum(x * x for x in vec))
        if norm > 0:
            vec = [x / norm for x in vec]
    return vec


def approx_tokens(text: str) -> int:
    return max(1, len(words(text))) if text else 0


# ---------------------------------------------------------------------------------------------- server


class _Handler(LoopbackHandler):
    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, headers, body = self.server.fake._dispatch(
            self.path, {k.lower(): v for k, v in self.headers.items()}, raw
        )
        self._send(status, headers, body)

    def do_GET(self) -> None:
        self._send(*_error_response(Error("UnknownOperationException", 404, f"no route for GET {self.path}")))

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes | Stream) -> None:
        if isinstance(body, Stream):
            self._send_stream(status, headers, body)
            return
        try:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            self.close_connection = True

    def _send_stream(self, status: int, headers: list[tuple[str, str]], stream: Stream) -> None:
        """Chunked transfer: each frame goes out (and is flushed) after its delay, like a model streaming."""
        stopping = self.server.fake._stopping
        try:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for delay, frame in stream.frames:
                if delay > 0 and stopping.wait(delay):
                    self.close_connection = True
                    return
                self.wfile.write(b"%X\r\n%s\r\n" % (len(frame), frame))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            self.close_connection = True


def _error_response(err: Error) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [
        ("Content-Type", "application/json"),
        ("X-Amzn-ErrorType", f"{err.code}:{_ERROR_NAMESPACE}"),
        *err.headers,
    ]
    return err.status, headers, json.dumps({"message": err.message or err.code}).encode()


_ROUTE = re.compile(r"^/model/([^/]+)/(converse-stream|converse|invoke)$")
OPERATIONS = ("converse", "converse-stream", "invoke")


@dataclass(frozen=True)
class Stream:
    """An event-stream body: frames, each sent after waiting its delay (seconds)."""

    frames: list[tuple[float, bytes]]


class BedrockFake:
    """The fake server. Start it with ``with BedrockFake() as fake:`` (or ``start()`` / ``stop()``).

    ``latency`` (seconds) is added to every call; ``model_latency`` overrides it per model id. ConverseStream
    calls then wait ``first_token_delay`` (``model_first_token_delay`` per model) before the first text delta
    and ``token_interval`` before each later one.
    ``record=False`` keeps only counters (for long benchmarks).
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        model_latency: dict[str, float] | None = None,
        first_token_delay: float = 0.0,
        model_first_token_delay: dict[str, float] | None = None,
        token_interval: float = 0.0,
        handler: Handler | None = None,
        answer_fn: Callable[[FakeRequest], str] | None = None,
        judge_fn: Callable[[FakeRequest], Any] | None = None,
        blocked_phrases: tuple[str, ...] = DEFAULT_BLOCKED_PHRASES,
        record: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
    ) -> None:
        self.latency = latency
        self.model_latency = dict(model_latency or {})
        self.first_token_delay = first_token_delay
        self.model_first_token_delay = dict(model_first_token_delay or {})
        self.token_interval = token_interval
        self.handler = handler
        self.answer_fn = answer_fn
        self.judge_fn = judge_fn
        self.blocked_phrases = tuple(p.lower() for p in blocked_phrases)
        self.record = record
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._queues: dict[tuple[str | None, str | None], deque[Action]] = {}
        self._requests: list[FakeRequest] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self._seq = itertools.count()
        self._in_flight = 0
        self.max_in_flight = 0
        self._stopping = threading.Event()
        self._server: ServerThread | None = None
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)
        q = self.faults.quota_rps
        self._bucket = _TokenBucket(q, self.faults.quota_burst or q) if q else None
        self.injected: Counter[str] = Counter()  # faults sent: throttled, quota, malformed, error

    # -- lifecycle

    def start(self) -> BedrockFake:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = ServerThread(
            LoopbackServer((self._host, self._port), _Handler, self, queue_size=512), "bedrock-fake"
        )
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes delayed / hanging calls
        server.stop()

    def __enter__(self) -> BedrockFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake is not running")
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment that points boto3's bedrock-runtime client here, with dummy credentials."""
        return {ENDPOINT_ENV: self.url, **DUMMY_CREDENTIALS}

    @contextlib.contextmanager
    def patched_env(self) -> Iterator[dict[str, str]]:
        """Set ``env()`` in ``os.environ`` for the duration (for scripts; tests use the fixture)."""
        values = self.env()
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield values
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    # -- scripting

    def script(self, *actions: Action, model: str | None = None, operation: str | None = None) -> None:
        """Queue responses, consumed one per matching call (most specific queue first), before the defaults."""
        if operation is not None and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        with self._lock:
            self._queues.setdefault((model, operation), deque()).extend(actions)

    def throttle(
        self, times: int, *, model: str | None = None, operation: str | None = None, error: Error | None = None
    ) -> None:
        """The next ``times`` matching calls fail with ThrottlingException (429); later ones succeed."""
        self.script(*([error or Error.throttling()] * times), model=model, operation=operation)

    def pending(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues.values())

    def reset(self) -> None:
        with self._lock:
            self._queues.clear()
            self._requests.clear()
            self._counts.clear()
            self.max_in_flight = 0

    # -- observations

    @property
    def requests(self) -> list[FakeRequest]:
        with self._lock:
            return list(self._requests)

    def count(self, model: str | None = None, operation: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (m, op), n in self._counts.items()
                if (model is None or m == model) and (operation is None or op == operation)
            )

    @property
    def counts(self) -> dict[tuple[str, str], int]:
        """Calls per (model id, operation)."""
        with self._lock:
            return dict(self._counts)

    # -- request handling (runs on server threads)

    def _dispatch(
        self, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes | Stream]:
        route = _ROUTE.match(urllib.parse.urlsplit(path).path)
        if not route:
            return _error_response(Error("UnknownOperationException", 404, f"no route for POST {path}"))
        model_id = urllib.parse.unquote(route.group(1))
        operation = route.group(2)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        req = FakeRequest(next(self._seq), operation, model_id, headers, raw, body)
        with self._lock:
            self._counts[(model_id, operation)] += 1
            if self.record:
                self._requests.append(req)
            refused = self._refuse()
            if refused is None:
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
        if refused is not None:
            return self._render(req, Error.throttling(refused), 0)
        try:
            started = time.monotonic()
            delay = self.model_latency.get(model_id, self.latency)
            if delay > 0:
                self._stopping.wait(delay)
            action = self._injected(req) or self._next_action(req)
            while isinstance(action, Delay):
                self._stopping.wait(action.seconds)
                action = action.then if action.then is not None else self._default(req)
            elapsed_ms = int((time.monotonic() - started) * 1000)
            return self._render(req, action, elapsed_ms)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _refuse(self) -> str | None:
        """Under the lock: a reason to answer 429 at once (random throttle, or the quota's bucket is empty)."""
        f = self.faults
        if f.throttle_rate and self._rng.random() < f.throttle_rate:
            self.injected["throttled"] += 1
            return "Too many requests, please wait before trying again."
        if self._bucket is not None and not self._bucket.take():
            self.injected["quota"] += 1
            return "Rate exceeded: requests per second quota."
        return None

    def _injected(self, req: FakeRequest) -> Action | None:
        f = self.faults
        with self._lock:
            if f.error_rate and self._rng.random() < f.error_rate:
                self.injected["error"] += 1
                return Error("InternalServerException", 500, "An internal server error occurred. Retry your request.")
            if f.malformed_rate and req.tool_config and self._rng.random() < f.malformed_rate:
                self.injected["malformed"] += 1
                return Text(MALFORMED_JUDGE_REPLY)
        return None

    def _next_action(self, req: FakeRequest) -> Action:
        if self.handler is not None:
            chosen = self.handler(req)
            if chosen is not None:
                return chosen
        with self._lock:
            for key in ((req.model_id, req.operation), (req.model_id, None), (None, req.operation), (None, None)):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
        return self._default(req)

    def _default(self, req: FakeRequest) -> Action:
        if req.body is None or not isinstance(req.body, dict):
            return Error.validation("Malformed input request: body is not a JSON object.")
        if req.operation == "invoke":
            return self._default_embedding(req)
        if not req.messages:
            return Error.validation("A conversation must start with a user message.")
        if req.tool_config:
            if self.judge_fn is not None:
                return ToolUse(self.judge_fn(req))
            return ToolUse(fill_schema(req.tool_schema, judge_assessment(req)))
        if req.guardrail and any(p in req.user_text.lower() for p in self.blocked_phrases):
            return Text(GUARDRAIL_MESSAGE, stop_reason="guardrail_intervened")
        return Text(self.answer_fn(req) if self.answer_fn is not None else default_answer(req))

    def _default_embedding(self, req: FakeRequest) -> Action:
        if not req.model_id.startswith("amazon.titan-embed-text"):
            return Error.validation(
                f"The fake implements InvokeModel only for Titan text embeddings, not {req.model_id}."
            )
        text = req.json.get("inputText")
        if not isinstance(text, str) or not text:
            return Error.validation("Malformed input request: #: required key [inputText] not found or empty")
        if "titan-embed-text-v2" not in req.model_id:  # V1 / G1: fixed 1536 dimensions, no options
            extra = sorted(set(req.json) - {"inputText"})
            if extra:
                return Error.validation(f"Malformed input request: extraneous key {extra} is not permitted")
            return Embedding(hashed_embedding(text, 1536, True), approx_tokens(text))
        dims = req.json.get("dimensions", 1024)
        if dims not in (256, 512, 1024):
            return Error.validation(f"Malformed input request: #/dimensions: {dims} is not a valid enum value")
        return Embedding(hashed_embedding(text, dims, bool(req.json.get("normalize", True))), approx_tokens(text))

    def _render(
        self, req: FakeRequest, action: Action, elapsed_ms: int
    ) -> tuple[int, list[tuple[str, str]], bytes | Stream]:
        request_id = f"fake-{req.index:08d}"
        base = [("x-amzn-RequestId", request_id)]
        if isinstance(action, Error) and action.in_stream and req.operation == "converse-stream":
            frames = [
                (0.0, eventstream.event("messageStart", {"role": "assistant"})),
                (0.0, eventstream.exception(action.code[:1].lower() + action.code[1:], action.message or action.code)),
            ]
            return 200, [*base, ("Content-Type", eventstream.CONTENT_TYPE)], Stream(frames)
        if isinstance(action, Error):
            status, headers, body = _error_response(action)
            return status, base + headers, body
        if isinstance(action, Raw):
            return action.status, base + list(action.headers), action.body
        if isinstance(action, Embedding):
            vector = list(action.vector)
            tokens = (
                action.input_tokens if action.input_tokens is not None else approx_tokens(req.json.get("inputText", ""))
            )
            payload = {"embedding": vector, "embeddingsByType": {"float": vector}, "inputTextTokenCount": tokens}
            return (
                200,
                [
                    *base,
                    ("Content-Type", "application/json"),
                    ("X-Amzn-Bedrock-Input-Token-Count", str(tokens)),
                    ("X-Amzn-Bedrock-Invocation-Latency", str(elapsed_ms)),
                ],
                json.dumps(payload).encode(),
            )
        if isinstance(action, Delay):  # resolved by _dispatch before rendering
            raise TypeError("a Delay cannot be rendered")
        if req.operation == "invoke":
            return _error_response(Error.validation(f"{type(action).__name__} is not a valid InvokeModel response"))
        if req.operation == "converse-stream":
            first = self.model_first_token_delay.get(req.model_id, self.first_token_delay)
            payload = self._converse_payload(req, action, elapsed_ms + int(first * 1000))
            return 200, [*base, ("Content-Type", eventstream.CONTENT_TYPE)], self._stream(payload, first)
        return (
            200,
            [*base, ("Content-Type", "application/json")],
            json.dumps(self._converse_payload(req, action, elapsed_ms)).encode(),
        )

    def _converse_payload(self, req: FakeRequest, action: Text | ToolUse, elapsed_ms: int) -> dict[str, Any]:
        prompt_text = (
            req.system_text
            + "\n"
            + "\n".join(b.get("text", "") for m in req.messages for b in m.get("content") or [] if isinstance(b, dict))
        )
        content: list[dict[str, Any]] = []
        stop_reason = action.stop_reason
        if isinstance(action, Text):
            text, stop_reason = _apply_limits(action.text, stop_reason, req.inference_config)
            content.append({"text": text})
            produced = text
        else:
            if action.text:
                content.append({"text": action.text})
            name = action.name or req.forced_tool or "tool"
            content.append({"toolUse": {"toolUseId": f"tooluse_{req.index:08d}", "name": name, "input": action.input}})
            produced = (action.text or "") + json.dumps(action.input)
        inp = action.input_tokens if action.input_tokens is not None else approx_tokens(prompt_text)
        out = action.output_tokens if action.output_tokens is not None else approx_tokens(produced)
        payload: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason,
            "usage": {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out},
            "metrics": {"latencyMs": elapsed_ms},
        }
        if (
            req.guardrail
            and stop_reason == "guardrail_intervened"
            and req.guardrail.get("trace") in ("enabled", "enabled_full")
        ):
            payload["trace"] = {
                "guardrail": {
                    "inputAssessment": {
                        req.guardrail.get("guardrailIdentifier", ""): {
                            "contentPolicy": {
                                "filters": [{"type": "PROMPT_ATTACK", "confidence": "HIGH", "action": "BLOCKED"}]
                            }
                        }
                    }
                }
            }
        return payload

    def _stream(self, payload: dict[str, Any], first_token_delay: float) -> Stream:
        """The Converse answer as ConverseStream events; the first content delta waits ``first_token_delay``."""
        frames: list[tuple[float, bytes]] = [(0.0, eventstream.event("messageStart", {"role": "assistant"}))]
        deltas = 0

        def delta(index: int, body: dict[str, Any]) -> None:
            nonlocal deltas
            wait = first_token_delay if deltas == 0 else self.token_interval
            frames.append((wait, eventstream.event("contentBlockDelta", {"contentBlockIndex": index, "delta": body})))
            deltas += 1

        for index, block in enumerate(payload["output"]["message"]["content"]):
            if "text" in block:
                for piece in re.findall(r"(?:\S+\s*){1,4}|\s+", block["text"]) or [""]:
                    delta(index, {"text": piece})
            else:
                use = block["toolUse"]
                start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
                opened = eventstream.event("contentBlockStart", {"contentBlockIndex": index, "start": start})
                frames.append((0.0, opened))
                delta(index, {"toolUse": {"input": json.dumps(use["input"])}})
            frames.append((0.0, eventstream.event("contentBlockStop", {"contentBlockIndex": index})))
        frames.append((0.0, eventstream.event("messageStop", {"stopReason": payload["stopReason"]})))
        metadata = {"usage": payload["usage"], "metrics": payload["metrics"]}
        if "trace" in payload:
            metadata["trace"] = payload["trace"]
        frames.append((0.0, eventstream.event("metadata", metadata)))
        return Stream(frames)


def _apply_limits(text: str, stop_reason: str, cfg: dict[str, Any]) -> tuple[str, str]:
    """Honour stopSequences and maxTokens (one token per word) like a model would."""
    if stop_reason != "end_turn":
        return text, stop_reason
    for seq in cfg.get("stopSequences") or []:
        if seq and seq in text:
            return text[: text.index(seq)], "stop_sequence"
    max_tokens = cfg.get("maxTokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        parts = text.split()
        if len(parts) > max_tokens:
            return " ".join(parts[:max_tokens]), "max_tokens"
    return text, stop_reason
