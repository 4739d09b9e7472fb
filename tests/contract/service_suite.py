"""The service contract (``evalgate.contracts.service``) as a test suite any service can run.

The product's own callers talk to the handler: the gate's Lambda candidate (the pre-traffic hook and smoke runs,
signed as synthetic traffic or not), the shadow worker's direct invocation, the online judge reading the capture
queue, the alarms reading the EMF metrics, and a user's feedback (optional: ``FEEDBACK = False``). Each runs
in-process over loopback (the Lambda Invoke fake, the Bedrock fake, moto for SQS, Secrets Manager and DynamoDB)
with the environment the stack gives the service function.

To run it on your service, subclass ``ServiceContract`` in a ``test_*.py`` module (tests/contract/
test_service_contract.py does it for the demo store assistant and the example FAQ desk)::

    class TestMyService(ServiceContract):
        HANDLER = "my_service.handler.handler"       # cdk.json serviceHandler
        CODE_ROOT = REPO / "services"                # cdk.json serviceCodeRoot
        PROMPTS = REPO / "prompts"                   # cdk.json promptsDir
        GOLDEN = REPO / "golden"                     # cdk.json goldenDir
        PROMPT_ID = "support/v1"                     # cdk.json promptVersion
        FEEDBACK = True                              # False when it has no POST /feedback

Override ``prepare`` to start what else your service calls, and ``flush`` if it sends captures in the
background.
"""

from __future__ import annotations

import base64
import importlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import boto3
import pytest
from moto import mock_aws

from evalgate.adapters.aws import ClientSettings
from evalgate.adapters.lambda_fn import LambdaCandidate
from evalgate.adapters.signing import synthetic_signer_from_env
from evalgate.contracts import telemetry as tm
from evalgate.contracts.records import DIRECT_KEY
from evalgate.contracts.service import CaptureRecord, ask_body, parse_answer, read_response
from evalgate.core.dataset import load_golden
from evalgate.core.models import Case
from evalgate.release.shadow import ShadowInvoker
from tests.fakes.aws_lambda import LambdaInvokeFake, context_factory
from tests.fakes.bedrock_fake import BedrockFake

REPO = Path(__file__).resolve().parents[2]
VERSION = "7"  # the published version under test (AWS_LAMBDA_FUNCTION_VERSION)
NAMESPACE = "EvalGate/Service"
FUNCTION = "svc-under-test"
Ctx = context_factory(FUNCTION, remaining_ms=29_000)


@dataclass
class Harness:
    """The service under test: its handler module, the Lambda Invoke fake running it, the capture queue."""

    module: ModuleType
    lam: LambdaInvokeFake
    sqs: Any
    capture_url: str
    golden: Any
    flush: Any
    function: str = "handler"

    def call(self, event: Any) -> dict[str, Any]:
        """Invoke the handler in-process, as Lambda would (the event as given, a context)."""
        result: dict[str, Any] = getattr(self.module, self.function)(event, Ctx())
        return result

    def captures(self) -> list[dict[str, Any]]:
        self.flush(self.module)
        out: list[dict[str, Any]] = []
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.capture_url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.capture_url, ReceiptHandle=m["ReceiptHandle"])


def http_event(body: Any, *, path: str = "/ask", method: str = "POST", b64: bool = False) -> dict[str, Any]:
    raw = body if isinstance(body, str) or body is None else json.dumps(body)
    if b64 and raw is not None:
        raw = base64.b64encode(raw.encode()).decode() if not raw.startswith("!") else raw[1:]
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9"},
            "requestId": "contract",
            "routeKey": "$default",
            "stage": "$default",
        },
        "body": raw,
        "isBase64Encoded": b64,
    }


BAD_EVENTS: dict[str, Any] = {
    "empty body": http_event(None),
    "not JSON": http_event("{not json"),
    "a JSON array": http_event("[1, 2]"),
    "no question": http_event({"session_id": "s"}),
    "blank question": http_event({"question": "   "}),
    "question not text": http_event({"question": 42}),
    "unknown route": http_event({"question": "hi"}, path="/nope"),
    "GET": http_event(None, method="GET"),
    "bad base64": http_event("!@@not base64@@", b64=True),
    "not an HTTP event": {"Records": [{"body": "x"}]},
    "direct invocation, unknown mode": {DIRECT_KEY: {"mode": "replay-all", "request": {"question": "hi"}}},
    "direct invocation, no request": {DIRECT_KEY: {"mode": "shadow"}},
}


class ServiceContract:
    HANDLER: ClassVar[str]
    CODE_ROOT: ClassVar[Path] = REPO / "lambdas"
    PROMPTS: ClassVar[Path] = REPO / "prompts"
    GOLDEN: ClassVar[Path] = REPO / "golden"
    PROMPT_ID: ClassVar[str]
    MODEL_ID: ClassVar[str] = "us.anthropic.claude-sonnet-4-20250514-v1:0"
    FEEDBACK: ClassVar[bool] = True  # the service takes POST /feedback (False: it has no such route, a 404)

    @pytest.fixture
    def prepare(self, bedrock_fake: BedrockFake) -> Any:
        """What the service calls besides SQS and Secrets Manager (default: the Bedrock fake)."""
        return bedrock_fake

    def flush(self, module: ModuleType) -> None:
        """Wait for captures sent in the background (default: the service sends them before it answers)."""

    @pytest.fixture
    def service(self, monkeypatch: pytest.MonkeyPatch, prepare: Any) -> Iterator[Harness]:
        env = {
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTION,
            "AWS_LAMBDA_FUNCTION_VERSION": VERSION,
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": FUNCTION,
            "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
            "MODEL_ID": self.MODEL_ID,
            "PROMPT_ID": self.PROMPT_ID,
            "CANARY_TOKEN": "CANARY-CONTRACT-0001",
            "EVALGATE_PROMPTS_DIR": str(self.PROMPTS),
            "EVALGATE_KNOWLEDGE_DIR": str(self.GOLDEN / "knowledge"),
            "EVALGATE_SIGNING_SECRET": "contract/request-signing",
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.syspath_prepend(str(self.CODE_ROOT))
        module_name, function = self.HANDLER.rsplit(".", 1)
        with mock_aws():
            sqs = boto3.client("sqs", region_name="us-east-1")
            url = sqs.create_queue(QueueName="capture")["QueueUrl"]
            monkeypatch.setenv("CAPTURE_QUEUE_URL", url)
            sm = boto3.client("secretsmanager", region_name="us-east-1")
            sm.create_secret(Name="contract/request-signing", SecretString="k" * 48)
            boto3.client("dynamodb", region_name="us-east-1").create_table(  # the vote ledger the stack provides
                TableName="feedback",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            monkeypatch.setenv("FEEDBACK_TABLE", "feedback")
            # the handler module afresh per test: its state (clients, caches) starts empty, as in a new sandbox
            module = importlib.import_module(module_name)
            module = importlib.reload(module) if module_name in sys.modules else module
            with LambdaInvokeFake(getattr(module, function), executed_version=VERSION) as lam:
                monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lam.url)
                golden = load_golden(self.GOLDEN, ["regression"])
                yield Harness(module, lam, sqs, url, golden, self.flush, function)

    # -- helpers

    def _candidate(self, *, synthetic: bool) -> LambdaCandidate:
        return LambdaCandidate(
            FUNCTION,
            VERSION,
            settings=ClientSettings.from_env(max_attempts=1),
            service_timing=True,
            synthetic=synthetic_signer_from_env() if synthetic else None,
        )

    def _smoke(self, service: Harness) -> list[Case]:
        cases = [c for c in service.golden.cases if "smoke" in c.tags] or service.golden.cases
        return cases[:3]

    # -- the contract

    def test_the_gate_invokes_a_version_and_reads_a_valid_answer_document(self, service: Harness) -> None:
        """The pre-traffic hook's and smoke runs' call: the Lambda candidate's HTTP event, signed as synthetic."""
        candidate = self._candidate(synthetic=True)
        for case in self._smoke(service):
            gen = candidate.generate(case, [], 0)
            assert gen.output.strip(), case.id
            assert gen.latency_ms is not None and gen.latency_ms >= 0
            assert gen.ttft_ms is not None, "no latency.ttft_ms: a TTFT SLO would fail closed"
        assert candidate.identity()["executed_version"] == VERSION
        raw = service.lam.calls[-1]["payload"]
        status, doc, _ = read_response(service.call(raw))
        answer = parse_answer(doc)
        assert status == 200 and answer.request_id, "every answer carries a request id (captures are keyed by it)"
        assert answer.latency is not None and answer.latency.total_ms is not None
        known = set(service.golden.knowledge)
        assert {s.id for s in answer.sources} <= known, "sources name knowledge entries"

    def test_synthetic_traffic_is_never_captured(self, service: Harness) -> None:
        self._candidate(synthetic=True).generate(self._smoke(service)[0], [], 0)
        assert service.captures() == []

    def test_user_answers_are_captured_as_capture_records_of_the_answering_version(self, service: Harness) -> None:
        case = self._smoke(service)[0]
        response = service.call(http_event(ask_body(case.question, "contract-user")))
        status, doc, _ = read_response(response)
        assert status == 200
        answer = parse_answer(doc)
        records = [CaptureRecord.model_validate(r) for r in service.captures()]
        assert [r.request_id for r in records] == [answer.request_id]
        [record] = records
        assert record.function_version == VERSION
        assert record.answer == answer.answer and record.question == case.question
        assert record.model_id and record.prompt_version
        assert set(record.knowledge_ids) <= set(service.golden.knowledge)

    def test_the_shadow_workers_direct_invocation_is_answered_without_side_effects(self, service: Harness) -> None:
        case = self._smoke(service)[0]
        side = ShadowInvoker(FUNCTION, VERSION).invoke(ask_body(case.question, "shadow-user"))
        assert side.error is None and side.answer, side.error
        assert side.function_version == VERSION
        assert service.lam.calls[-1]["payload"][DIRECT_KEY]["mode"] == "shadow"
        assert service.captures() == []

    def test_every_answer_publishes_the_metrics_the_alarms_read(self, service: Harness, capsys: Any) -> None:
        case = self._smoke(service)[0]
        capsys.readouterr()
        assert service.call(http_event(ask_body(case.question, "metrics-user")))["statusCode"] == 200
        blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
        per_version: set[str] = set()
        for blob in blobs:
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                assert directive["Namespace"] == NAMESPACE
                for metric in directive["Metrics"]:
                    name = metric["Name"]
                    assert name in tm.UNITS, f"{name}: not a metric name of evalgate.contracts.telemetry"
                    assert metric.get("Unit", "None") == tm.UNITS[name], name
                    if [tm.DIM_VERSION] in directive["Dimensions"] and blob[tm.DIM_VERSION] == VERSION:
                        per_version.add(name)
        missing = set(tm.SERVICE_METRICS) - per_version
        assert not missing, f"not published under {{FunctionVersion: {VERSION}}}: {sorted(missing)}"

    @pytest.mark.parametrize("name", sorted(BAD_EVENTS))
    def test_bad_input_is_a_4xx_with_a_reason_never_a_500(self, service: Harness, name: str) -> None:
        response = service.call(BAD_EVENTS[name])
        assert 400 <= response["statusCode"] < 500, (name, response)
        body = json.loads(response["body"])
        assert isinstance(body.get("error"), str) and body["error"], body

    def test_feedback_counts_once_against_the_version_that_answered(self, service: Harness, capsys: Any) -> None:
        """FeedbackScore is what the business-outcome alarm reads, per answering version; one vote per answer."""
        case = self._smoke(service)[0]
        answered = parse_answer(read_response(service.call(http_event(ask_body(case.question, "voter"))))[1])
        vote = {"request_id": answered.request_id, "rating": "up"}
        capsys.readouterr()
        first = service.call(http_event(vote, path="/feedback"))
        if not self.FEEDBACK:
            assert first["statusCode"] == 404, first
            return
        assert first["statusCode"] in (200, 202), first
        scores = [
            blob
            for line in capsys.readouterr().out.splitlines()
            if '"_aws"' in line and tm.FEEDBACK_SCORE in (blob := json.loads(line))
        ]
        assert [(b[tm.FEEDBACK_SCORE], b[tm.DIM_VERSION]) for b in scores] == [([1.0], VERSION)]
        again = service.call(http_event(vote, path="/feedback"))
        assert again["statusCode"] in (200, 202) and tm.FEEDBACK_SCORE not in capsys.readouterr().out
        forged = service.call(http_event({"request_id": "f" * 40, "rating": "up"}, path="/feedback"))
        assert 400 <= forged["statusCode"] < 500, forged  # an id this service did not issue is refused
