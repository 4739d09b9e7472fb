"""The FAQ desk's answer logic: retrieve the best entries, decline when none matches, else ask the model once."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evalgate.adapters.aws import ClientSettings, make_client, map_aws_error
from evalgate.adapters.signing import SecretKeySource, SigningUnavailable, is_synthetic
from evalgate.contracts import telemetry as tm
from evalgate.contracts.service import AnswerDocument, CaptureRecord, Latency, Source, Usage
from evalgate.core.errors import ThrottledError
from evalgate.core.knowledge import KnowledgeIndex, load_index
from evalgate.core.models import Turn
from evalgate.core.prompts import DEFAULT_CANARY, PromptTemplate, load_prompt

log = logging.getLogger(__name__)
MAX_QUESTION = 2000
TOP_K = 2  # the best-matching FAQ entries the model may answer from
NO_MATCH = "I can't answer that from our FAQ. Please contact the help desk, and a person will help you."


class Question(BaseModel):
    """What the desk reads of the ask body: the question and an optional document (other fields are ignored)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    document: str | None = Field(default=None, max_length=8000)


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    telemetry: tm.Telemetry | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def http(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "headers": {"content-type": "application/json", **self.headers},
            "body": json.dumps(self.body),
        }


def refuse(status: int, message: str) -> Reply:
    return Reply(status, {"error": message})


@dataclass
class Desk:
    model_id: str
    prompt: PromptTemplate
    index: KnowledgeIndex
    canary: str
    version: str
    function_name: str
    bedrock: Any
    sqs: Any = None
    capture_url: str | None = None
    keys: SecretKeySource | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Desk:
        prompts = env.get("EVALGATE_PROMPTS_DIR")
        knowledge = env.get("EVALGATE_KNOWLEDGE_DIR")
        index, _ = load_index(Path(knowledge) if knowledge else None)
        capture_url = env.get("CAPTURE_QUEUE_URL") or None
        settings = ClientSettings.from_env(max_attempts=2, read_timeout=25.0)
        return cls(
            model_id=env.get("MODEL_ID") or "us.anthropic.claude-3-5-haiku-20241022-v1:0",
            prompt=load_prompt(env.get("PROMPT_ID") or "faq/v1", Path(prompts) if prompts else None),
            index=index,
            canary=env.get("CANARY_TOKEN") or DEFAULT_CANARY,
            version=tm.executing_version(),
            function_name=env.get("AWS_LAMBDA_FUNCTION_NAME") or "local",
            bedrock=make_client("bedrock-runtime", settings),
            sqs=make_client("sqs", settings) if capture_url else None,
            capture_url=capture_url,
            keys=SecretKeySource.from_env(env),
        )

    def ask(self, body: bytes, headers: Mapping[str, str] | None, *, capture: bool = True) -> Reply:
        started = time.monotonic()
        try:
            q = Question.model_validate_json(body or b"{}")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return refuse(400, f"{where}: {first['msg']}")
        t = tm.Telemetry(tm.Dimensions(self.version, self.model_id, self.prompt.prompt_id))
        best = self.index.search(q.question, TOP_K)
        usage = Usage()
        if not best:
            text = NO_MATCH  # no model call: nothing in the FAQ to ground an answer on
        else:
            turns = [Turn(role="user", content=q.question)]
            system, messages = self.prompt.render(turns, best, q.document, self.canary)
            try:
                text, usage = self._converse(system, messages)
            except ThrottledError:
                t.add(tm.ERRORS, 1)
                return Reply(429, {"error": "busy; retry shortly"}, t, {"retry-after": "2"})
            except Exception as exc:  # the model failed: a 502 with the reason class, never a trace
                t.add(tm.ERRORS, 1)
                return Reply(502, {"error": f"the model could not answer ({type(exc).__name__})"}, t)
        total = (time.monotonic() - started) * 1000.0
        doc = AnswerDocument(
            request_id=uuid.uuid4().hex,
            answer=text,
            sources=[Source(id=e.id, title=e.title) for e in best],
            model_id=self.model_id,
            prompt_version=self.prompt.prompt_id,
            usage=usage,
            latency=Latency(ttft_ms=round(total, 1), total_ms=round(total, 1)),  # not streamed: all at once
        )
        t.add(tm.LATENCY, total)
        t.add(tm.TIME_TO_FIRST_TOKEN, total)
        t.add(tm.ERRORS, 0)
        if capture and not self._synthetic(headers, body):
            self._capture(doc, q.question, total)
        return Reply(200, doc.wire(), t)

    def _converse(self, system: str, messages: list[dict[str, str]]) -> tuple[str, Usage]:
        request = {
            "modelId": self.model_id,
            "system": [{"text": system}],
            "messages": [{"role": m["role"], "content": [{"text": m["content"]}]} for m in messages],
            "inferenceConfig": {"maxTokens": 300, "temperature": 0.0},
        }
        try:
            out = self.bedrock.converse(**request)
        except Exception as exc:
            raise map_aws_error(exc, f"bedrock model {self.model_id}") from exc
        parts = out.get("output", {}).get("message", {}).get("content", [])
        text = "".join(p.get("text", "") for p in parts).strip() or NO_MATCH
        u = out.get("usage", {})
        return text, Usage(inputTokens=u.get("inputTokens"), outputTokens=u.get("outputTokens"))

    def _synthetic(self, headers: Mapping[str, str] | None, body: bytes) -> bool:
        if self.keys is None:
            return False
        try:
            return is_synthetic(self.keys(), headers, body)
        except SigningUnavailable:
            return False

    def _capture(self, doc: AnswerDocument, question: str, total_ms: float) -> None:
        if self.sqs is None or self.capture_url is None:
            return
        record = CaptureRecord(
            request_id=doc.request_id or "",
            ts=time.time(),
            function_name=self.function_name,
            function_version=self.version,
            model_id=self.model_id,
            prompt_version=self.prompt.prompt_id,
            question=question,
            answer=doc.answer,
            knowledge_ids=[s.id for s in doc.sources],
            latency_ms=round(total_ms, 1),
            input_tokens=doc.usage.inputTokens,
            output_tokens=doc.usage.outputTokens,
        )
        try:
            self.sqs.send_message(QueueUrl=self.capture_url, MessageBody=json.dumps(record.wire()))
        except Exception as exc:  # a lost capture costs one judged sample, never the user's answer
            log.warning("capture not sent: %s", exc)
