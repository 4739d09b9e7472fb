"""A loopback stand-in for Bedrock's ApplyGuardrail (``POST /guardrail/{id}/version/{version}/apply`` on
bedrock-runtime), with the members of botocore's service model; every other path goes to a ``BedrockFake``, so one
endpoint serves Converse, InvokeModel and ApplyGuardrail as the real service does.

Verdicts: ``decide(source, text)`` says whether the guardrail intervenes. Contextual grounding: when the request
qualifies its content (``grounding_source``, ``query``, ``guard_content``) and the guardrail has grounding filters
(``grounding`` thresholds, or the guardrail's CreateGuardrail request from ``policy(guardrail_id)``), the answer
is scored as the real check reports it — ``assessments[].contextualGroundingPolicy.filters[]`` with ``type``,
``threshold``, ``score``, ``action`` (BLOCKED below the threshold) — from word overlap: grounding = share of the
answer's content words found in the source, relevance = share of the query's found in the answer. ``scores`` can
override them per answer text.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.bedrock_fake import BedrockFake, overlap

_ROUTE = re.compile(r"^/guardrail/([^/]+)/version/([^/]+)/apply$")


@dataclass
class GuardCall:
    guardrail: str
    version: str
    source: str
    text: str
    content: list[dict[str, Any]] = field(default_factory=list)  # the request's content blocks, as sent

    def qualified(self, qualifier: str) -> str:
        return "".join(
            b["text"]["text"] for b in self.content if qualifier in (b.get("text", {}).get("qualifiers") or [])
        )


def grounding_thresholds(create_request: dict[str, Any]) -> dict[str, float]:
    """The contextual grounding filters of a CreateGuardrail request: type -> threshold."""
    filters = (create_request.get("contextualGroundingPolicyConfig") or {}).get("filtersConfig") or []
    return {f["type"]: float(f["threshold"]) for f in filters}


class GuardrailFake:
    def __init__(
        self,
        decide: Callable[[str, str], bool],
        bedrock: BedrockFake | None = None,
        *,
        grounding: dict[str, float] | None = None,
        policy: Callable[[str], dict[str, Any]] | None = None,
        scores: dict[str, dict[str, float]] | None = None,
    ) -> None:
        self.decide = decide
        self.bedrock = bedrock
        self.grounding = grounding
        self.policy = policy
        self.scores = scores or {}
        self.calls: list[GuardCall] = []
        self.throttle_all = False
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urllib.parse.urlsplit(self.path).path
                m = _ROUTE.match(path)
                if m is None and fake.bedrock is not None:
                    status, headers, body = fake.bedrock._dispatch(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, raw
                    )
                else:
                    status, headers, body = fake.apply(m, raw)
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def thresholds(self, guardrail_id: str) -> dict[str, float]:
        if self.policy is not None:
            return grounding_thresholds(self.policy(guardrail_id))
        return dict(self.grounding or {})

    def apply(self, m: re.Match[str] | None, raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        js = [("Content-Type", "application/json")]
        if m is None:
            return 404, [*js, ("X-Amzn-ErrorType", "UnknownOperationException")], b'{"message": "no route"}'
        if self.throttle_all:
            return 429, [*js, ("X-Amzn-ErrorType", "ThrottlingException")], b'{"message": "Too many requests"}'
        body = json.loads(raw)
        text = "".join(b["text"]["text"] for b in body["content"])
        call = GuardCall(urllib.parse.unquote(m.group(1)), m.group(2), body["source"], text, body["content"])
        with self._lock:
            self.calls.append(call)
        assessments: list[dict[str, Any]] = []
        grounding_units = 0
        filters = self._grounding_filters(call)
        if filters:
            assessments.append({"contextualGroundingPolicy": {"filters": filters}})
            grounding_units = max(1, len(call.qualified("guard_content")) // 1000 + 1)
        checked = call.qualified("guard_content") if call.qualified("query") else text
        hit = self.decide(call.source, checked) or any(f["action"] == "BLOCKED" for f in filters)
        if hit and not filters:
            assessments.append({"topicPolicy": {"topics": [{"name": "Misuse", "type": "DENY", "action": "BLOCKED"}]}})
        usage = {
            "topicPolicyUnits": 1,
            "contentPolicyUnits": 1,
            "wordPolicyUnits": 0,
            "sensitiveInformationPolicyUnits": 0,
            "sensitiveInformationPolicyFreeUnits": 0,
            "contextualGroundingPolicyUnits": grounding_units,
        }
        out = {
            "usage": usage,
            "action": "GUARDRAIL_INTERVENED" if hit else "NONE",
            "outputs": [{"text": "Sorry, I can't help with that."}] if hit else [],
            "assessments": assessments,
        }
        return 200, js, json.dumps(out).encode()

    def _grounding_filters(self, call: GuardCall) -> list[dict[str, Any]]:
        source, query, answer = (call.qualified(q) for q in ("grounding_source", "query", "guard_content"))
        thresholds = self.thresholds(call.guardrail)
        if call.source != "OUTPUT" or not (source and query and answer) or not thresholds:
            return []
        measured = {"GROUNDING": overlap(answer, source), "RELEVANCE": overlap(query, answer)}
        measured.update(self.scores.get(answer, {}))
        return [
            {
                "type": kind,
                "threshold": threshold,
                "score": round(measured[kind], 2),
                "action": "BLOCKED" if measured[kind] < threshold else "NONE",
                "detected": measured[kind] < threshold,
            }
            for kind, threshold in sorted(thresholds.items())
        ]

    def __enter__(self) -> GuardrailFake:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"
