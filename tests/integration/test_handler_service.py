"""Service handler in-process: HTTP API v2 events, the loopback Bedrock fake, moto SQS for capture."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.fakes.aws_lambda import context_factory
from tests.fakes.bedrock_fake import BedrockFake, Error

MODEL = "us.anthropic.claude-sonnet-4-20250514-v1:0"
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


Ctx = context_factory("support-service", remaining_ms=29_000, memory_mb=512)


def http_event(path: str, body: Any, *, method: str = "POST", headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = body if isinstance(body, str) or body is None else json.dumps(body)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "user-agent": "Mozilla/5.0", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3",
            "domainName": "a1b2c3.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "a1b2c3",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "Mozilla/5.0",
            },
            "requestId": "Jx1AbCdEfGhIjKl=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "23/Nov/2026:16:00:00 +0000",
            "timeEpoch": 1795449600000,
        },
        "body": raw,
        "isBase64Encoded": False,
    }


def emf_lines(out: str) -> list[dict[str, Any]]:
    docs = []
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            docs.append(json.loads(line))
    return docs


def metric_doc(out: str, name: str) -> dict[str, Any]:
    for doc in emf_lines(out):
        names = [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
        if name in names:
            return doc
    raise AssertionError(f"no EMF blob with {name} in output:\n{out}")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, bedrock_fake: BedrockFake) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "12")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "support-service")
    monkeypatch.setenv("MODEL_ID", MODEL)
    monkeypatch.setenv("PROMPT_ID", "support/v1")
    monkeypatch.setenv("CANARY_TOKEN", "CANARY-7f3e-SECRET")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "support-service")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "EvalGate/Service")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="capture")["QueueUrl"]
        monkeypatch.setenv("CAPTURE_QUEUE_URL", url)
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        sm.create_secret(Name="evalgate-test/request-signing", SecretString="s" * 48)
        monkeypatch.setenv("EVALGATE_SIGNING_SECRET", "evalgate-test/request-signing")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="feedback",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        monkeypatch.setenv("FEEDBACK_TABLE", "feedback")
        from store_assistant import handler as h

        monkeypatch.setattr(h, "_service", None)
        yield {"h": h, "sqs": sqs, "capture_url": url, "fake": bedrock_fake, "sm": sm, "ddb": ddb}


def body_of(response: dict[str, Any]) -> dict[str, Any]:
    return json.loads(response["body"])


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in msgs]


def test_answers_with_request_id_emits_per_version_metrics_and_captures(
    env: dict[str, Any], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = env["h"]
    from store_assistant import flags

    monkeypatch.setattr(flags, "DEFAULT_CAPTURE_RATE", 1.0)  # capture everything for this test
    r = h.handler(
        http_event("/ask", {"question": "How long do refunds take to show on my card?", "session_id": "s-42"}), Ctx()
    )
    assert r["statusCode"] == 200
    doc = body_of(r)
    assert doc["answer"] and doc["model_id"] == MODEL and doc["prompt_version"] == "support/v1"
    assert "returns.refund-timing" in [s["id"] for s in doc["sources"]]
    assert doc["usage"]["inputTokens"] > 0
    # the model saw the versioned prompt with the canary and the retrieved knowledge
    sent = env["fake"].requests[-1]
    assert "CANARY-7f3e-SECRET" in sent.system_text
    assert "[returns.refund-timing]" in sent.user_text
    assert sent.inference_config["maxTokens"] == 512

    out = capsys.readouterr().out
    emf = metric_doc(out, "Latency")
    cw = emf["_aws"]["CloudWatchMetrics"][0]
    assert cw["Namespace"] == "EvalGate/Service"
    assert ["FunctionVersion"] in cw["Dimensions"]
    assert ["FunctionVersion", "ModelId", "PromptVersion"] in cw["Dimensions"]
    assert emf["FunctionVersion"] == "12" and emf["ModelId"] == MODEL and emf["PromptVersion"] == "support/v1"
    assert {m["Name"] for m in cw["Metrics"]} == {
        "Latency",
        "TimeToFirstToken",
        "InputTokens",
        "OutputTokens",
        "Errors",
        "GuardrailIntervened",
    }
    assert emf["Errors"] == [0.0] and emf["GuardrailIntervened"] == [0.0]
    assert "service" not in emf  # alarms name the exact dimension set

    assert h.get_service().capture.flush(5)
    [record] = drain(env["sqs"], env["capture_url"])
    assert record["request_id"] == doc["request_id"]
    assert record["function_version"] == "12" and record["model_id"] == MODEL
    assert "returns.refund-timing" in record["knowledge_ids"]
    assert record["answer"] == doc["answer"]


def test_the_answer_streams_and_reports_time_to_first_token_and_total_time(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """ConverseStream through the real botocore event-stream parser: the model's first text delta arrives 0.3 s
    after the response headers and each later one 0.05 s after the previous, so the service's TTFT is at least
    0.3 s and its total at least TTFT + the later deltas; both go to the answer document and per-version EMF."""
    from botocore.validate import validate_parameters

    from evalgate.adapters.aws import make_client

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "21")
    monkeypatch.setenv("MODEL_ID", MODEL)
    monkeypatch.setenv("PROMPT_ID", "support/v1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "EvalGate/Service")
    with BedrockFake(first_token_delay=0.3, token_interval=0.05) as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        from store_assistant import handler as h

        monkeypatch.setattr(h, "_service", None)
        r = h.handler(http_event("/ask", {"question": "How long do refunds take to show on my card?"}), Ctx())
        [sent] = fake.requests
    assert r["statusCode"] == 200 and sent.operation == "converse-stream"
    doc = body_of(r)
    deltas = len(doc["answer"].split()) // 4  # the fake sends four words per delta
    assert doc["answer"] and doc["latency"]["ttft_ms"] >= 300
    assert doc["latency"]["total_ms"] >= doc["latency"]["ttft_ms"] + 50 * (deltas - 1)
    emf = metric_doc(capsys.readouterr().out, "TimeToFirstToken")
    assert emf["FunctionVersion"] == "21"
    assert emf["TimeToFirstToken"] == [pytest.approx(doc["latency"]["ttft_ms"], abs=0.1)]
    assert emf["Latency"] == [pytest.approx(doc["latency"]["total_ms"], abs=0.1)]
    assert {"Name": "TimeToFirstToken", "Unit": "Milliseconds"} in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    # what went over the wire is a valid ConverseStream request with one sampling parameter
    model = make_client("bedrock-runtime").meta.service_model.operation_model("ConverseStream")
    validate_parameters({"modelId": sent.model_id, **sent.json}, model.input_shape)
    assert set(sent.inference_config) == {"maxTokens", "temperature"}


def test_a_throttle_in_the_middle_of_the_stream_is_a_429(env: dict[str, Any]) -> None:
    env["fake"].script(Error("ThrottlingException", 429, "Too many tokens, please wait.", in_stream=True))
    r = env["h"].handler(http_event("/ask", {"question": "Where is my order?"}), Ctx())
    assert r["statusCode"] == 429 and {k.lower(): v for k, v in r["headers"].items()}["retry-after"] == "2"


def test_dimensions_are_set_per_invocation(env: dict[str, Any], capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    h = env["h"]
    h.handler(http_event("/ask", {"question": "Do you ship to Canada?"}), Ctx())
    first = metric_doc(capsys.readouterr().out, "Latency")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "13")
    monkeypatch.setattr(h, "_service", None)  # a new version is a new environment
    h.handler(http_event("/ask", {"question": "Do you ship to Canada?"}), Ctx())
    second = metric_doc(capsys.readouterr().out, "Latency")
    assert (first["FunctionVersion"], second["FunctionVersion"]) == ("12", "13")
    assert len(second["Latency"]) == 1  # nothing carried over from the previous invocation


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [(Error.throttling(), 429, "2"), (Error.service_unavailable(), 503, "5"), (Error.model_not_ready(), 503, "5")],
)
def test_bedrock_capacity_errors_become_retryable_statuses(
    env: dict[str, Any], capsys: Any, error: Error, status: int, retry_after: str
) -> None:
    env["fake"].script(error, error, error)  # more than the service's retries
    r = env["h"].handler(http_event("/ask", {"question": "Where is my order?"}), Ctx())
    assert r["statusCode"] == status
    assert r["headers"].get("retry-after") or r["headers"].get("Retry-After") == retry_after
    headers = {k.lower(): v for k, v in r["headers"].items()}
    assert headers["retry-after"] == retry_after
    doc = body_of(r)
    assert "retry" in doc["error"] and doc["request_id"]
    assert "Traceback" not in r["body"] and "Exception" not in r["body"]
    emf = metric_doc(capsys.readouterr().out, "Errors")
    assert emf["Errors"] == [1.0] and emf["FunctionVersion"] == "12"
    assert "Latency" not in emf


def test_model_validation_error_is_502_without_details(env: dict[str, Any]) -> None:
    env["fake"].script(Error.validation("Input is too long for requested model."))
    r = env["h"].handler(http_event("/ask", {"question": "hello there"}), Ctx())
    assert r["statusCode"] == 502
    assert "too long" not in r["body"]  # upstream detail stays in the logs


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (None, "request body is empty"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({}, "give 'question'"),
        ({"question": ""}, "question"),
        ({"question": "x" * 5000}, "question: String should have at most 4000 characters"),
        ({"question": "hi", "colour": "red"}, "colour: Extra inputs are not permitted"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            "messages must end with a user message",
        ),
    ],
)
def test_bad_input_is_400_with_a_clear_message(env: dict[str, Any], body: Any, fragment: str) -> None:
    r = env["h"].handler(http_event("/ask", body), Ctx())
    assert r["statusCode"] == 400
    assert fragment in body_of(r)["error"]
    assert env["fake"].count() == 0


def test_unsupported_events_and_routes(env: dict[str, Any]) -> None:
    h = env["h"]
    r = h.handler({"Records": [{"body": "x"}]}, Ctx())
    assert r["statusCode"] == 400 and "unsupported event" in body_of(r)["error"]
    r = h.handler({"requestContext": "nope"}, Ctx())
    assert r["statusCode"] == 400
    r = h.handler(http_event("/nowhere", {"question": "hi"}), Ctx())
    assert r["statusCode"] == 404 and "POST /ask" in body_of(r)["error"]
    r = h.handler(http_event("/ask", None, method="GET"), Ctx())
    assert r["statusCode"] == 405


def test_named_stage_prefix_is_routed(env: dict[str, Any]) -> None:
    event = http_event("/prod/ask", {"question": "Do you ship to Canada?"})
    event["requestContext"]["stage"] = "prod"
    assert env["h"].handler(event, Ctx())["statusCode"] == 200


def test_service_import_stays_light() -> None:
    """The service's cold start must not pull numpy/scipy (they live in the evaluation path only)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    heavy = "('numpy', 'scipy', 'aws_xray_sdk')"
    code = f"import sys, store_assistant.handler; print(','.join(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={"PYTHONPATH": str(root / "lambdas"), "PATH": "/usr/bin:/bin"},
    ).stdout.strip()
    assert out == ""


def test_internal_error_is_500_without_stack_trace(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    h = env["h"]
    monkeypatch.setenv("EVALGATE_KNOWLEDGE_DIR", "/nonexistent/knowledge")  # a broken bundle
    r = h.handler(http_event("/ask", {"question": "hi"}), Ctx())
    assert r["statusCode"] == 500
    doc = body_of(r)
    assert doc["error"].startswith("internal error") and doc["request_id"] == "Jx1AbCdEfGhIjKl="
    assert "Traceback" not in r["body"]
    emf = metric_doc(capsys.readouterr().out, "Errors")
    assert emf["Errors"] == [1.0] and emf["FunctionVersion"] == "12"


def test_feedback_counts_against_the_version_that_answered(
    env: dict[str, Any], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = env["h"]
    answered = body_of(h.handler(http_event("/ask", {"question": "Can I return a gift card?"}), Ctx()))
    capsys.readouterr()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "13")  # feedback arrives after the next deploy
    monkeypatch.setattr(h, "_service", None)
    r = h.handler(http_event("/feedback", {"request_id": answered["request_id"], "rating": "down"}), Ctx())
    assert r["statusCode"] == 202
    emf = metric_doc(capsys.readouterr().out, "FeedbackScore")
    assert emf["FeedbackScore"] == [0.0] and emf["FunctionVersion"] == "12" and emf["ModelId"] == MODEL
    r = h.handler(http_event("/feedback", {"request_id": answered["request_id"], "converted": True}), Ctx())
    assert metric_doc(capsys.readouterr().out, "ConversionRate")["ConversionRate"] == [1.0]

    bad = h.handler(http_event("/feedback", {"request_id": "not-an-id-of-ours", "rating": "up"}), Ctx())
    assert bad["statusCode"] == 400 and "request_id" in body_of(bad)["error"]
    both = h.handler(
        http_event("/feedback", {"request_id": answered["request_id"], "rating": "up", "converted": True}), Ctx()
    )
    assert both["statusCode"] == 400 and "exactly one" in body_of(both)["error"]


def test_flag_store_unreachable_serves_safe_defaults(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("APPCONFIG_APPLICATION", "evalgate")
    monkeypatch.setenv("APPCONFIG_ENVIRONMENT", "prod")
    monkeypatch.setenv("APPCONFIG_PROFILE", "service-flags")
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPCONFIGDATA", "http://127.0.0.1:9")  # nothing listens there
    h = env["h"]
    r = h.handler(http_event("/ask", {"question": "Do you ship to Canada?", "user_id": "u-1"}), Ctx())
    assert r["statusCode"] == 200
    doc = body_of(r)
    assert doc["model_id"] == MODEL and doc["prompt_version"] == "support/v1" and doc["variant"] == "default"
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert any("feature flag store unavailable" in r.getMessage() for r in warnings)
    assert h.get_service().flags.failures == 1


def test_synthetic_and_shadow_traffic_is_not_captured(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    h = env["h"]
    from evalgate.adapters.signing import synthetic_signer_from_env
    from store_assistant import flags

    monkeypatch.setattr(flags, "DEFAULT_CAPTURE_RATE", 1.0)
    sign = synthetic_signer_from_env()  # what the load test, smoke runs and hooks hold: the service's secret
    assert sign is not None
    body = json.dumps({"question": "Do you ship to Canada?"})
    r = h.handler(http_event("/ask", body, headers=sign(body.encode())), Ctx())
    assert r["statusCode"] == 200
    direct = h.handler(
        {"evalgate_invoke": {"mode": "shadow", "request": {"question": "Do you ship to Canada?"}}}, Ctx()
    )
    assert direct["statusCode"] == 200 and body_of(direct)["answer"]
    assert h.get_service().capture.flush(5)
    assert drain(env["sqs"], env["capture_url"]) == []
    bad = h.handler({"evalgate_invoke": {"mode": "replay", "request": {}}}, Ctx())
    assert bad["statusCode"] == 400 and "evalgate_invoke" in body_of(bad)["error"]


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("body", "b64", "status", "fragment"),
    [
        ("not%%base64", True, 400, "not valid base64"),
        (_b64(b'{"question": "caf\xe9?"}'), True, 400, "not valid UTF-8"),
        (json.dumps({"question": "hi", "document": [[[[[]]]]]}) + "[" * 50_000, False, 400, "nested deeper"),
        ("[" * 50_000 + "]" * 50_000, False, 400, "nested deeper than 200 levels"),
        (json.dumps({"question": "x" * 300_000}), False, 413, "the limit is 262144 bytes"),
        (_b64(b"{" * 300_000), True, 413, "the limit is 262144 bytes"),
    ],
)
def test_malformed_bodies_are_4xx_not_500(
    env: dict[str, Any], body: str, b64: bool, status: int, fragment: str
) -> None:
    event = http_event("/ask", body)
    event["isBase64Encoded"] = b64
    r = env["h"].handler(event, Ctx())
    assert r["statusCode"] == status, r
    assert fragment in body_of(r)["error"]
    assert env["fake"].count(operation="converse") == 0


def test_a_base64_body_is_decoded(env: dict[str, Any]) -> None:
    event = http_event("/ask", _b64(json.dumps({"question": "Do you ship to Canada?"}).encode()))
    event["isBase64Encoded"] = True
    assert env["h"].handler(event, Ctx())["statusCode"] == 200


def test_any_http_event_gets_an_answer_or_a_4xx(env: dict[str, Any]) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    shapes = st.recursive(
        scalars, lambda x: st.lists(x, max_size=3) | st.dictionaries(st.text(max_size=8), x, max_size=3), max_leaves=8
    )
    bodies = (
        st.text(max_size=120)
        | st.binary(max_size=120).map(_b64)
        | shapes.map(json.dumps)
        | st.just(json.dumps({"question": "Do you ship to Canada?"}))
    )

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        body=bodies | st.none() | scalars,
        b64=st.booleans() | scalars,
        headers=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3) | scalars,
        path=st.sampled_from(["/ask", "/feedback", "/ask/", "/x"]),
    )
    def check(body: Any, b64: Any, headers: Any, path: str) -> None:
        event = http_event(path, None)
        event.update({"body": body, "isBase64Encoded": b64, "headers": headers})
        r = env["h"].handler(event, Ctx())
        assert r["statusCode"] < 500 or r["statusCode"] in (502, 503), r  # 5xx only for the model's own trouble
        assert isinstance(json.loads(r["body"]), dict)

    check()
