"""BeforeAllowTraffic hook in-process.

End to end: hook → real ``LambdaCandidate`` (boto3) → a loopback fake of the Lambda Invoke API that runs the
real service handler in-process → the loopback Bedrock fake; the judge talks to the same Bedrock fake.
CodeDeploy's PutLifecycleEventHookExecutionStatus is a botocore Stubber (moto does not implement it).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from evalgate.core.dataset import load_golden
from evalgate.release.deploy_hooks import CodeDeployReporter, PreTrafficSettings, pre_traffic_smoke
from tests.fakes.aws_lambda import LambdaInvokeFake, context_factory
from tests.fakes.bedrock_fake import BedrockFake, FakeRequest
from tests.fakes.idempotency import create_idempotency_table, records

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = "d-7HX2Q5N1B"
EXECUTION = "eyJkZXBsb3ltZW50SWQiOiJkLTdIWDJRNU4xQiJ9EXAMPLE"
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


Ctx = context_factory("support-pre-traffic-hook", remaining_ms=300_000, memory_mb=1024)


def stubbed_codedeploy(status: str | None, execution: str = EXECUTION) -> tuple[CodeDeployReporter, Stubber]:
    client = boto3.client("codedeploy", region_name="us-east-1")
    stub = Stubber(client)
    if status is not None:
        stub.add_response(
            "put_lifecycle_event_hook_execution_status",
            {"lifecycleEventHookExecutionId": execution},
            {"deploymentId": DEPLOYMENT, "lifecycleEventHookExecutionId": execution, "status": status},
        )
    stub.activate()
    return CodeDeployReporter(client), stub


def hook_event(execution: str = EXECUTION) -> dict[str, str]:
    """A hook invocation; each deployment attempt's hook has its own execution id (the same id is a redelivery)."""
    return {"DeploymentId": DEPLOYMENT, "LifecycleEventHookExecutionId": execution}


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """What the hook's bundle holds: the knowledge base, the regression cases and the gate configuration."""
    root = tmp_path / "golden"
    shutil.copytree(ROOT / "golden" / "knowledge", root / "knowledge")
    shutil.copy(ROOT / "golden" / "cases.jsonl", root / "cases.jsonl")
    shutil.copy(ROOT / "golden" / "gate.toml", root / "gate.toml")
    return root


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, bedrock_fake: BedrockFake, bundle: Path) -> Iterator[dict[str, Any]]:
    golden = load_golden(bundle, ["regression"])
    references = {c.question: c.reference for c in golden.cases}

    def answer(req: FakeRequest) -> str:  # a version that answers every golden question with its reference
        m = re.search(r"<customer_message>\s*(.*?)\s*</customer_message>", req.user_text, re.DOTALL)
        return references.get(m.group(1) if m else "", "I don't know.")

    def verdict(req: FakeRequest) -> dict[str, Any]:
        return {"score": 1.0, "verdict": "pass", "reasons": "Supported and on point.", "unsupported_claims": []}

    bedrock_fake.answer_fn = answer
    bedrock_fake.judge_fn = verdict
    for k, v in {
        "AWS_LAMBDA_FUNCTION_VERSION": "8",
        "MODEL_ID": "us.anthropic.claude-sonnet-4-20250514-v1:0",
        "PROMPT_ID": "support/v1",
        "TARGET_FUNCTION_NAME": "support-service",
        "TARGET_VERSION": "8",
        "SMOKE_CASES": f"{bundle}#smoke",  # the stack's format: golden folder and tag
        "JUDGE_MODEL_ID": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "EMBEDDINGS_MODEL_ID": "amazon.titan-embed-text-v2:0",
        "EVALGATE_GOLDEN_DIR": str(bundle),
        "POWERTOOLS_SERVICE_NAME": "pre-traffic-hook",
    }.items():
        monkeypatch.setenv(k, v)
    from handlers import pre_traffic_hook as h
    from store_assistant import handler as svc

    monkeypatch.setattr(svc, "_service", None)
    with LambdaInvokeFake(svc.handler) as lam, mock_aws():
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lam.url)
        ddb = create_idempotency_table(monkeypatch)
        yield {"h": h, "lambda": lam, "bedrock": bedrock_fake, "golden": bundle, "ddb": ddb}


def emf(out: str, name: str) -> dict[str, Any]:
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line and f'"{name}"' in line:
            return json.loads(line)  # type: ignore[no-any-return]
    raise AssertionError(f"no EMF for {name}")


def test_smoke_pass_reports_succeeded_and_only_the_new_version_is_invoked(
    world: dict[str, Any], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reporter, stub = stubbed_codedeploy("Succeeded")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(hook_event(), Ctx())
    assert out["status"] == "Succeeded", out
    assert "smoke PASS on version 8" in out["reason"]
    stub.assert_no_pending_responses()
    calls = world["lambda"].calls
    assert len(calls) >= 10
    assert {(c["function"], c["qualifier"]) for c in calls} == {("support-service", "8")}  # never the alias
    doc = emf(capsys.readouterr().out, "PreTrafficPassed")
    assert doc["PreTrafficPassed"] == [1.0] and doc["FunctionVersion"] == "8"


def test_smoke_fail_reports_failed(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    world["bedrock"].answer_fn = lambda req: "Sure! Everything is free forever, 100% refunds in 1 day."
    world["bedrock"].judge_fn = lambda req: {
        "score": 0.1,
        "verdict": "fail",
        "reasons": "Unsupported.",
        "unsupported_claims": ["everything is free forever"],
    }
    reporter, stub = stubbed_codedeploy("Failed")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(hook_event(), Ctx())
    assert out["status"] == "Failed" and "smoke FAIL" in out["reason"]
    stub.assert_no_pending_responses()


def test_a_new_version_slower_to_the_first_token_than_the_slo_fails_even_when_the_answers_pass(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model's first text delta comes 0.3 s after the response headers: every smoke answer's TTFT, as the new
    version measures it, is at least 300 ms, so a 250 ms SLO fails the hook while a 5 s one passes."""
    world["bedrock"].first_token_delay = 0.3
    monkeypatch.setenv("TTFT_SLO_MS", "250")
    reporter, stub = stubbed_codedeploy("Failed")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(hook_event(), Ctx())
    assert out["status"] == "Failed" and "smoke latency FAIL on version 8" in out["reason"]
    assert "p95 time to first token" in out["reason"] and "above the SLO of 250 ms" in out["reason"]
    stub.assert_no_pending_responses()

    monkeypatch.setenv("TTFT_SLO_MS", "5000")  # the next deployment attempt: a new hook execution
    reporter, stub = stubbed_codedeploy("Succeeded", execution=EXECUTION + "-2")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(hook_event(EXECUTION + "-2"), Ctx())
    assert out["status"] == "Succeeded" and "smoke PASS" in out["reason"], out
    stub.assert_no_pending_responses()


class _TimedVersion:
    """A previous version for timing only: every answer took ``total_ms`` as it measured itself."""

    name, live = "lambda:support-service:live", True

    def __init__(self, total_ms: float) -> None:
        self.total_ms, self.executed_version, self.calls = total_ms, "7", 0

    def identity(self) -> dict[str, Any]:
        return {"kind": "timed"}

    def generate(self, case: Any, knowledge: Any, repeat: int) -> Any:
        from evalgate.core.models import Generation

        self.calls += 1
        return Generation(case_id=case.id, output="ok", latency_ms=self.total_ms, ttft_ms=10.0)


def test_total_time_is_compared_with_the_previous_version_on_the_same_prompts(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new version's answers take at least 0.3 s (the model's first token); against a previous version that
    answered the same prompts in 50 ms, +250 ms or +10% (= +5 ms here) fails; against one that took 10 s, the
    new version is faster and passes."""
    world["bedrock"].first_token_delay = 0.3
    monkeypatch.setenv("TOTAL_REGRESSION_MS", "250")
    monkeypatch.setenv("TOTAL_REGRESSION_PCT", "10")
    settings = PreTrafficSettings.from_env()
    fast_before = _TimedVersion(50.0)
    out = pre_traffic_smoke(settings, time.monotonic() + 240, baseline_candidate=fast_before)
    assert out.status == "Failed" and "smoke latency FAIL" in out.reason
    assert "total answer time +" in out.reason and "previous version's median 50 ms" in out.reason
    assert fast_before.calls == out.details["cases"]  # every smoke prompt timed once on the previous version
    slow_before = _TimedVersion(10_000.0)
    out = pre_traffic_smoke(settings, time.monotonic() + 240, baseline_candidate=slow_before)
    assert out.status == "Succeeded", out.reason
    assert out.details["total_vs_previous"].startswith("total answer time -")


def test_the_hook_times_the_previous_version_through_the_alias_only_for_timing(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASELINE_QUALIFIER", "live")
    # the same handler answers for both: only timing noise, which a busy machine makes large (whichever of +ms and
    # +% is smaller applies, so both are wide here)
    monkeypatch.setenv("TOTAL_REGRESSION_PCT", "100000")
    monkeypatch.setenv("TOTAL_REGRESSION_MS", "60000")
    reporter, stub = stubbed_codedeploy("Succeeded")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(hook_event(), Ctx())
    assert out["status"] == "Succeeded", out
    by_qualifier: dict[str, int] = {}
    for c in world["lambda"].calls:
        by_qualifier[c["qualifier"]] = by_qualifier.get(c["qualifier"], 0) + 1
    assert set(by_qualifier) == {"8", "live"} and by_qualifier["live"] == by_qualifier["8"]
    stub.assert_no_pending_responses()


def test_scorer_raising_reports_failed(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    reporter, stub = stubbed_codedeploy("Failed")
    monkeypatch.setattr(world["h"], "_reporter", reporter)

    def boom(deadline: float) -> Any:
        raise RuntimeError("judge exploded")

    monkeypatch.setattr(world["h"], "smoke", boom)
    out = world["h"].handler(hook_event(), Ctx())
    assert out["status"] == "Failed" and "RuntimeError: judge exploded" in out["reason"]
    stub.assert_no_pending_responses()


def test_time_budget_running_out_reports_failed(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    reporter, stub = stubbed_codedeploy("Failed")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    monkeypatch.setattr(world["h"], "smoke", lambda deadline: time.sleep(3))
    started = time.monotonic()
    out = world["h"].handler(hook_event(), Ctx(remaining_ms=11_000))  # 11 s left - 10 s reserve = 1 s budget
    assert time.monotonic() - started < 2.5
    assert out["status"] == "Failed" and "time budget of 1 s ran out" in out["reason"]
    stub.assert_no_pending_responses()


def test_misconfiguration_fails_closed(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    reporter, stub = stubbed_codedeploy("Failed")
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    monkeypatch.delenv("TARGET_FUNCTION_NAME")
    out = world["h"].handler(hook_event(), Ctx())
    assert out["status"] == "Failed" and "TARGET_FUNCTION_NAME" in out["reason"]
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"DeploymentId": "d-ABC"},
        {"DeploymentId": "nope", "LifecycleEventHookExecutionId": "x"},
        "not-an-object",
        [],
    ],
)
def test_malformed_event_is_a_clear_error_and_reports_nothing(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, event: Any
) -> None:
    reporter, _stub = stubbed_codedeploy(None)  # any call to CodeDeploy would fail the stub
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    out = world["h"].handler(event, Ctx())
    assert out["status"] == "error"
    assert "CodeDeploy lifecycle hook event" in out["error"]
    assert world["lambda"].calls == []


def test_pre_traffic_smoke_rejects_an_alias_as_target(tmp_path: Path) -> None:
    settings = PreTrafficSettings(function_name="support-service", version="live", golden_dir=ROOT / "golden")
    with pytest.raises(Exception, match="published version"):
        pre_traffic_smoke(settings, time.monotonic() + 60)


def test_smoke_case_specs(world: dict[str, Any], tmp_path: Path) -> None:
    from evalgate.core.errors import InputError
    from evalgate.release.deploy_hooks import load_smoke

    root = world["golden"]
    n = len([c for c in load_golden(root, ["regression"]).cases if "smoke" in c.tags])
    for spec in ("smoke", "tag:smoke", f"{root}#smoke", f"{root}/cases.jsonl#smoke"):
        golden, cases = load_smoke(PreTrafficSettings("f", "1", smoke=spec, golden_dir=root))
        assert len(cases) == n and golden.knowledge, spec
    for spec, fragment in (("tag:nothing", "nothing tagged 'nothing'"), (f"{tmp_path}/missing.jsonl", "not found")):
        with pytest.raises(InputError, match=fragment):
            load_smoke(PreTrafficSettings("f", "1", smoke=spec, golden_dir=root))


def test_smoke_cases_from_a_file(world: dict[str, Any], tmp_path: Path) -> None:
    lines = [
        json.dumps(c.model_dump(mode="json", exclude_defaults=True))
        for c in load_golden(world["golden"], ["regression"]).cases
        if "smoke" in c.tags
    ][:5]
    path = tmp_path / "smoke.jsonl"
    path.write_text("\n".join(lines) + "\n")
    settings = PreTrafficSettings(
        function_name="support-service",
        version="arn:aws:lambda:us-east-1:123456789012:function:support-service:8",
        smoke=str(path),
        golden_dir=world["golden"],
        judge_model_id="us.anthropic.claude-3-5-haiku-20241022-v1:0",
        embeddings_model_id="amazon.titan-embed-text-v2:0",
    )
    outcome = pre_traffic_smoke(settings, time.monotonic() + 120)
    assert outcome.details["cases"] == 5 and outcome.details["version"] == "8"
    assert {(c["function"], c["qualifier"]) for c in world["lambda"].calls} == {("support-service", "8")}


def test_redelivered_hook_runs_the_smoke_set_once(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    reporter, stub = stubbed_codedeploy("Succeeded")
    stub.add_client_error(
        "put_lifecycle_event_hook_execution_status",
        service_error_code="LifecycleEventAlreadyCompletedException",
        service_message="The lifecycle event is already completed.",
        expected_params={"deploymentId": DEPLOYMENT, "lifecycleEventHookExecutionId": EXECUTION, "status": "Succeeded"},
    )
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    first = world["h"].handler(hook_event(), Ctx())
    invoked = len(world["lambda"].calls)
    second = world["h"].handler(hook_event(), Ctx())
    assert first["status"] == second["status"] == "Succeeded" and first["reason"] == second["reason"]
    assert invoked >= 10 and len(world["lambda"].calls) == invoked  # the smoke set ran once
    stub.assert_no_pending_responses()  # reported twice; "already completed" the second time is not an error
    assert [r["status"]["S"] for r in records(world["ddb"])] == ["COMPLETED"]


def test_redelivery_while_the_first_run_is_going_reports_nothing(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    reporter, stub = stubbed_codedeploy("Succeeded")  # exactly one report: the first run's
    monkeypatch.setattr(world["h"], "_reporter", reporter)
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    def slow_smoke(deadline: float) -> Any:
        from evalgate.release.deploy_hooks import HookOutcome

        runs.append(1)
        started.set()
        release.wait(10)
        return HookOutcome("Succeeded", "smoke PASS (slow)")

    monkeypatch.setattr(world["h"], "smoke", slow_smoke)
    box: dict[str, Any] = {}
    first = threading.Thread(target=lambda: box.setdefault("out", world["h"].handler(hook_event(), Ctx())))
    first.start()
    assert started.wait(10)
    second = world["h"].handler(hook_event(), Ctx())
    release.set()
    first.join(10)
    assert second["status"] == "duplicate" and box["out"]["status"] == "Succeeded"
    assert runs == [1]
    stub.assert_no_pending_responses()


def test_the_smoke_traffic_is_signed_as_synthetic_and_never_reaches_the_online_judge(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto import mock_aws

    from store_assistant import flags
    from store_assistant import handler as svc

    monkeypatch.setattr(flags, "DEFAULT_CAPTURE_RATE", 1.0)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():  # Secrets Manager and SQS; the Lambda and Bedrock fakes stay on their loopback endpoints
        boto3.client("secretsmanager").create_secret(Name="stage/request-signing", SecretString="k" * 64)
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="capture")["QueueUrl"]
        monkeypatch.setenv("CAPTURE_QUEUE_URL", queue)
        monkeypatch.setenv("EVALGATE_SIGNING_SECRET", "stage/request-signing")  # the hook's and the service's
        monkeypatch.setattr(svc, "_service", None)

        def captured() -> int:
            assert svc.get_service().capture is not None and svc.get_service().capture.flush(5)
            attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
            return int(attrs["Attributes"]["ApproximateNumberOfMessages"])

        for unsigned in (False, True):
            if unsigned:  # the same smoke run without the key: its traffic counts as a user's
                svc.get_service()
                monkeypatch.delenv("EVALGATE_SIGNING_SECRET")
            before = len(world["lambda"].calls)
            execution = f"{EXECUTION}-{int(unsigned)}"  # a new deployment attempt (the same id is a redelivery)
            reporter, stub = stubbed_codedeploy("Succeeded", execution=execution)
            monkeypatch.setattr(world["h"], "_reporter", reporter)
            out = world["h"].handler(hook_event(execution), Ctx())
            assert out["status"] == "Succeeded", out
            stub.assert_no_pending_responses()
            smoke_calls = len(world["lambda"].calls) - before
            assert smoke_calls >= 10 and captured() == (smoke_calls if unsigned else 0)
