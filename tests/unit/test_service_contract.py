"""The service contract's records (evalgate.contracts.service): what a service writes is what the product reads."""

from __future__ import annotations

import base64
import json

import pytest

from evalgate.contracts.records import DIRECT_KEY
from evalgate.contracts.service import (
    AnswerDocument,
    BadAnswer,
    CaptureRecord,
    GuardrailRef,
    Latency,
    Usage,
    direct_event,
    direct_invocation,
    parse_answer,
    read_response,
)
from evalgate.release.online import parse_capture


def test_an_answer_document_round_trips_through_the_wire() -> None:
    doc = AnswerDocument(
        answer="Yes.",
        request_id="r-1",
        usage=Usage(inputTokens=3, outputTokens=1),
        latency=Latency(ttft_ms=10.0, total_ms=20.0),
    )
    wire = json.loads(json.dumps(doc.wire()))
    assert parse_answer(wire) == doc
    assert wire["usage"] == {"inputTokens": 3, "outputTokens": 1}  # the Bedrock spelling on the wire


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"request_id": "r"}, "answer: Field required"),
        ({"answer": 42}, "answer: Input should be a valid string"),
        (
            {"answer": "a", "usage": {"inputTokens": -1}},
            "usage.inputTokens: Input should be greater than or equal to 0",
        ),
        (["answer"], "not a JSON object but list"),
    ],
)
def test_a_document_that_is_not_an_answer_names_the_field(doc: object, fragment: str) -> None:
    with pytest.raises(BadAnswer, match=fragment):
        parse_answer(doc)


def test_read_response_reads_an_http_response_a_base64_body_or_a_bare_object() -> None:
    body = json.dumps({"answer": "a"})
    assert read_response({"statusCode": 200, "body": body}) == (200, {"answer": "a"}, body)
    b64 = base64.b64encode(body.encode()).decode()
    assert read_response({"statusCode": 200, "body": b64, "isBase64Encoded": True})[1] == {"answer": "a"}
    assert read_response({"answer": "a"})[:2] == (200, {"answer": "a"})
    assert read_response({"statusCode": 502, "body": "<html>"}) == (502, None, "<html>")
    assert read_response({"statusCode": 200, "body": "[" * 300 + "]" * 300})[1] is None  # too deep: no document
    with pytest.raises(BadAnswer, match="not valid base64"):
        read_response({"statusCode": 200, "body": "@@", "isBase64Encoded": True})
    with pytest.raises(BadAnswer, match="statusCode is not a number"):
        read_response({"statusCode": "200", "body": body})


def test_the_direct_invocation_the_shadow_worker_sends_is_the_one_a_service_reads() -> None:
    event = json.loads(json.dumps(direct_event({"question": "hi", "session_id": "s"})))
    assert direct_invocation(event).request == {"question": "hi", "session_id": "s"}
    with pytest.raises(BadAnswer, match=f"{DIRECT_KEY}: mode: Input should be 'shadow'"):
        direct_invocation({DIRECT_KEY: {"mode": "replay", "request": {}}})


def test_the_capture_a_service_writes_is_the_record_the_online_judge_parses() -> None:
    record = CaptureRecord(
        request_id="r-1",
        function_version="7",
        model_id="m",
        prompt_version="p/v1",
        question="q?",
        answer="a.",
        knowledge_ids=["k.1"],
        grounding_guardrail=GuardrailRef(id="gr1", version="3"),
    )
    wire = record.wire()
    assert wire["schema"] == 1 and "latency_ms" not in wire  # unset optional fields are left out
    parsed = parse_capture(json.dumps(wire))
    assert parsed == record
