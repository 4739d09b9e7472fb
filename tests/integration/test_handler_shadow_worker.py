"""Shadow mode end to end: worker (SQS batch → candidate via a loopback Lambda Invoke fake running the real
service handler → JSONL pairs in moto S3) and the offline report (pairwise judge with swapped positions)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from evalgate.core.config import load_config
from evalgate.core.ports import JudgeCall, ToolSpec
from evalgate.release.shadow_report import Pair, compare_pair, read_pairs, run_shadow_report, shadow_report
from tests.fakes.aws_lambda import LambdaInvokeFake, context_factory
from tests.fakes.bedrock_fake import BedrockFake, Error
from tests.fakes.idempotency import create_idempotency_table, records

ROOT = Path(__file__).resolve().parents[2]
SONNET = "us.anthropic.claude-sonnet-4-20250514-v1:0"
HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


Ctx = context_factory("support-shadow-worker", remaining_ms=60_000, memory_mb=512)


def mirrored(rid: str, question: str, prod_answer: str = "Standard shipping takes 3 to 5 business days.") -> str:
    return json.dumps(
        {
            "schema": 1,
            "request_id": rid,
            "ts": 1795449600.0,
            "request": {"question": question, "user_id": "u-secret-42"},
            "production": {
                "function_name": "support-service",
                "function_version": "8",
                "model_id": SONNET,
                "prompt_version": "support/v1",
                "variant": "default",
                "answer": prod_answer,
                "latency_ms": 1450.0,
                "input_tokens": 980,
                "output_tokens": 45,
                "guardrail_intervened": False,
            },
        }
    )


def sqs_event(bodies: list[str]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"msg-{i}",
                "receiptHandle": f"rh-{i}",
                "body": b,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1795449600000",
                    "SenderId": "AROA:svc",
                    "ApproximateFirstReceiveTimestamp": "1795449600001",
                },
                "messageAttributes": {},
                "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:support-shadow",
                "awsRegion": "us-east-1",
            }
            for i, b in enumerate(bodies)
        ]
    }


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, bedrock_fake: BedrockFake) -> Iterator[dict[str, Any]]:
    from handlers import shadow_worker as h
    from store_assistant import flags
    from store_assistant import handler as svc

    for k, v in {
        "AWS_LAMBDA_FUNCTION_VERSION": "9",
        "MODEL_ID": HAIKU,
        "PROMPT_ID": "support/v2-concise",
        "SHADOW_FUNCTION_NAME": "support-service",
        "SHADOW_QUALIFIER": "shadow",
        "SHADOW_BUCKET": "evalgate-shadow",
        "SHADOW_PREFIX": "pairs",
        "POWERTOOLS_SERVICE_NAME": "shadow",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(flags, "DEFAULT_CAPTURE_RATE", 1.0)
    lam = LambdaInvokeFake(svc.handler, executed_version="9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lam.url)
    with mock_aws():
        s3, sqs = boto3.client("s3", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
        s3.create_bucket(Bucket="evalgate-shadow")
        ddb = create_idempotency_table(monkeypatch)
        capture = sqs.create_queue(QueueName="capture")["QueueUrl"]
        monkeypatch.setenv("CAPTURE_QUEUE_URL", capture)
        monkeypatch.setattr(svc, "_service", None)
        monkeypatch.setattr(h, "_state", {})
        yield {
            "h": h,
            "svc": svc,
            "lambda": lam,
            "s3": s3,
            "sqs": sqs,
            "capture": capture,
            "bedrock": bedrock_fake,
            "ddb": ddb,
        }
    lam.close()


def stored_pairs(s3: Any) -> tuple[list[str], list[dict[str, Any]]]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="evalgate-shadow").get("Contents", [])]
    lines = [
        json.loads(x)
        for k in keys
        for x in s3.get_object(Bucket="evalgate-shadow", Key=k)["Body"].read().decode().splitlines()
    ]
    return keys, lines


def test_worker_replays_on_the_shadow_alias_without_side_effects(world: dict[str, Any], capsys: Any) -> None:
    event = sqs_event(
        [mirrored("r-1", "Do you ship to Canada?"), "{broken", mirrored("r-2", "How long do refunds take?")]
    )
    out = world["h"].handler(event, Ctx())
    assert out["batchItemFailures"] == [{"itemIdentifier": "msg-1"}]
    calls = world["lambda"].calls
    assert [c["qualifier"] for c in calls] == ["shadow", "shadow"]
    assert {c["type"] for c in calls} == {"RequestResponse"}  # synchronous: no async retries
    assert calls[0]["payload"] == {
        "evalgate_invoke": {
            "mode": "shadow",
            "request": {"question": "Do you ship to Canada?", "user_id": "u-secret-42"},
        }
    }
    keys, pairs = stored_pairs(world["s3"])
    assert len(keys) == 1 and re.match(r"^pairs/dt=\d{4}-\d{2}-\d{2}/hour=\d{2}/.+\.jsonl$", keys[0])
    assert [p["request_id"] for p in pairs] == ["r-1", "r-2"]
    p = pairs[0]
    assert p["question"] == "Do you ship to Canada?" and p["production"]["function_version"] == "8"
    assert p["shadow"]["function_version"] == "9" and p["shadow"]["model_id"] == HAIKU
    assert p["shadow"]["prompt_version"] == "support/v2-concise" and p["shadow"]["answer"]
    assert p["shadow"]["error"] is None and p["shadow"]["output_tokens"] > 0
    assert "u-secret-42" not in json.dumps(pairs)  # user ids are not stored
    world["svc"].get_service().capture.flush(5)
    assert world["sqs"].receive_message(QueueUrl=world["capture"]).get("Messages") is None  # no capture from shadow
    emf = next(json.loads(x) for x in capsys.readouterr().out.splitlines() if '"ShadowPairs"' in x and '"_aws"' in x)
    assert emf["ShadowPairs"] == [2.0] and emf["FunctionVersion"] == "9"


def test_candidate_errors_are_stored_and_invoke_throttling_is_retried(world: dict[str, Any]) -> None:
    world["bedrock"].script(Error.throttling(), Error.throttling(), Error.throttling())  # the candidate's model
    world["lambda"].errors.append((429, "TooManyRequestsException"))  # then Lambda itself throttles the second
    event = sqs_event([mirrored("r-1", "Do you ship to Canada?"), mirrored("r-2", "Can I return a gift?")])
    out = world["h"].handler(event, Ctx())
    assert len(world["lambda"].calls) == 2  # no SDK retry of the throttled invoke
    assert out["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]  # Invoke throttled: SQS retries it later
    _, pairs = stored_pairs(world["s3"])
    assert len(pairs) == 1 and pairs[0]["request_id"] == "r-2" and pairs[0]["shadow"]["answer"] is None
    assert pairs[0]["shadow"]["error"].startswith("status 429")


def test_s3_failure_fails_the_whole_batch(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOW_BUCKET", "no-such-bucket")
    with pytest.raises(Exception, match=r"NoSuchBucket|does not exist"):
        world["h"].handler(sqs_event([mirrored("r-1", "Do you ship to Canada?")]), Ctx())


@pytest.mark.parametrize("bad", [{}, {"Records": None}, "x", None])
def test_non_sqs_events_get_a_clear_error(world: dict[str, Any], bad: Any) -> None:
    out = world["h"].handler(bad, Ctx())
    assert out["batchItemFailures"] == [] and "expected an SQS batch" in out["error"]
    assert world["lambda"].calls == []


# ------------------------------------------------------------------------------------------------ report


class PairwiseModel:
    """A JudgeModel for the pairwise tool. ``prefers``: "shadow", "production", "A" (position bias) or "junk"."""

    model_id = "judge-test"

    def __init__(self, prefers: str) -> None:
        self.prefers = prefers
        self.calls: list[str] = []

    def call(self, system: str, user: str, tool: ToolSpec) -> JudgeCall:
        assert tool.name == "record_preference" and "DATA-" in user
        self.calls.append(user)
        if self.prefers == "junk":
            return JudgeCall(tool_input={"best": "first"})
        if self.prefers == "A":
            return JudgeCall(tool_input={"winner": "A", "reasons": "first is fine"})
        a = re.search(r'kind="answer_A">\n(.*?)\n</DATA', user, re.DOTALL).group(1)  # type: ignore[union-attr]
        shadow_is_a = a.startswith("SHADOW")
        winner = "A" if (self.prefers == "shadow") == shadow_is_a else "B"
        return JudgeCall(tool_input={"winner": winner, "reasons": f"{self.prefers} is more accurate"})


class WordEmbedder:
    name, model_id = "words", "bag-of-words"

    def embed(self, texts: list[str]) -> list[list[float]]:
        vocab = sorted({w for t in texts for w in t.lower().split()})
        return [[1.0 if w in t.lower().split() else 0.0 for w in vocab] for t in texts]


def pairs_file(tmp_path: Path, n: int = 20, errors: int = 0) -> Path:
    lines = []
    for i in range(n):
        shadow: dict[str, Any] = {
            "function_version": "9",
            "model_id": HAIKU,
            "prompt_version": "support/v2-concise",
            "answer": f"SHADOW answer {i} ships in 3 days",
            "error": None,
            "latency_ms": 900.0,
            "input_tokens": 900,
            "output_tokens": 30,
        }
        if i < errors:
            shadow.update(answer=None, error="status 503: the model is temporarily unavailable")
        lines.append(
            json.dumps(
                {
                    "schema": 1,
                    "request_id": f"r-{i}",
                    "question": f"question {i}?",
                    "production": {
                        "function_version": "8",
                        "model_id": SONNET,
                        "prompt_version": "support/v1",
                        "answer": f"PRODUCTION answer {i} ships in 3 days",
                        "latency_ms": 1400.0,
                        "input_tokens": 980,
                        "output_tokens": 45,
                    },
                    "shadow": shadow,
                }
            )
        )
    path = tmp_path / "pairs" / "dt=2026-11-23" / "batch.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n")
    return tmp_path / "pairs"


def test_report_pass_when_the_shadow_is_preferred(tmp_path: Path) -> None:
    model = PairwiseModel("shadow")
    out = tmp_path / "out"
    code = run_shadow_report(
        pairs_file(tmp_path), out, model, WordEmbedder(), config=load_config(ROOT / "golden" / "gate.toml")
    )
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"results.json", "junit.xml", "summary.md", "report.html"}
    result = json.loads((out / "results.json").read_text())
    agg = {a["metric"]: a for a in result["aggregates"]}
    assert agg["shadow_preference"]["value"] == 1.0 and agg["shadow_win_rate"]["value"] == 1.0
    assert agg["latency_delta_ms"]["value"] == pytest.approx(-500.0)
    assert agg["output_tokens_delta"]["value"] == pytest.approx(-15.0)
    assert agg["cost_delta_usd"]["value"] < 0  # Haiku is cheaper than Sonnet
    assert 0.0 < agg["similarity"]["value"] < 1.0
    assert result["candidate"]["function_version"] == "9" and result["verdict"]["verdict"] == "PASS"
    assert len(model.calls) == 40  # every pair judged twice, positions swapped
    case = result["cases"][0]["metrics"]["shadow_preference"]
    assert case["details"] == {"production_as_A": "B", "shadow_as_A": "A", "preference": "shadow"}


def test_report_fails_when_production_is_preferred(tmp_path: Path) -> None:
    assert run_shadow_report(pairs_file(tmp_path), tmp_path / "out", PairwiseModel("production"), None) == 1
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "production answers are preferred" in result["verdict"]["reasons"][0]
    assert {"metric": "similarity", "reason": "no embedder given"} in result["not_run"]


def test_position_bias_becomes_ties(tmp_path: Path) -> None:
    pairs, _ = read_pairs(pairs_file(tmp_path, n=10))
    result = shadow_report(pairs, PairwiseModel("A"), None)
    agg = {a.metric: a for a in result.aggregates}
    assert agg["shadow_preference"].value == 0.5 and agg["shadow_win_rate"].value == 0.0
    assert all(c.metrics["shadow_preference"].reason == "positions disagreed: counted as a tie" for c in result.cases)
    assert result.verdict.verdict == "PASS"


class SplitModel(PairwiseModel):
    """Prefers production on questions 0-5, the shadow on 6-9: production ahead, but not beyond doubt."""

    def call(self, system: str, user: str, tool: ToolSpec) -> JudgeCall:
        i = int(re.search(r"question (\d+)\?", user).group(1))  # type: ignore[union-attr]
        self.prefers = "production" if i % 10 < 6 else "shadow"
        return super().call(system, user, tool)


def test_a_preference_below_half_but_not_significantly_asks_a_person(tmp_path: Path) -> None:
    pairs, _ = read_pairs(pairs_file(tmp_path, n=10))
    result = shadow_report(pairs, SplitModel("production"), None)
    pref = next(a for a in result.aggregates if a.metric == "shadow_preference")
    assert pref.value == pytest.approx(0.4) and pref.ci_high is not None and pref.ci_high >= 0.5
    assert pref.status == "borderline" and result.verdict.verdict == "REVIEW" and result.verdict.exit_code == 3
    assert result.verdict.reasons == ["shadow preference 0.40 below 0.5 but not significantly"]


def test_shadow_errors_fail_and_unparseable_judge_is_error(tmp_path: Path) -> None:
    pairs, _ = read_pairs(pairs_file(tmp_path, n=20, errors=3))
    assert shadow_report(pairs, PairwiseModel("shadow"), None).verdict.verdict == "FAIL"
    junk = shadow_report(pairs[3:], PairwiseModel("junk"), None)
    assert junk.verdict.verdict == "ERROR" and "unscored" in junk.verdict.reasons[0]


def test_without_a_judge_a_person_reviews(tmp_path: Path) -> None:
    assert run_shadow_report(pairs_file(tmp_path, n=5), tmp_path / "out", None, WordEmbedder()) == 3


def test_no_pairs_is_an_error_and_bad_lines_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"request_id": "x"}\nnot json\n')
    pairs, problems = read_pairs(path)
    assert pairs == [] and len(problems) == 2 and problems[1].startswith(f"{path}:2:")
    assert problems[0] == f"{path}:1: not a shadow pair: production: Field required; shadow: Field required"
    assert run_shadow_report(path, tmp_path / "out", PairwiseModel("shadow"), None) == 4


def test_compare_pair_handles_throttling_then_answers() -> None:
    from evalgate.core.errors import ThrottledError

    class Flaky(PairwiseModel):
        def __init__(self) -> None:
            super().__init__("shadow")
            self.fail = 1

        def call(self, system: str, user: str, tool: ToolSpec) -> JudgeCall:
            if self.fail:
                self.fail -= 1
                raise ThrottledError("slow down")
            return super().call(system, user, tool)

    v = compare_pair(Flaky(), "q?", "PRODUCTION a", "SHADOW b")
    assert v.preference == "shadow"
    assert isinstance(Pair("r", "q", {}, {}), Pair)


def test_shadow_report_cli_from_a_folder_and_from_s3(tmp_path: Path, capsys: Any) -> None:
    from evalgate.cli import main

    folder = pairs_file(tmp_path, n=6)
    # without a judge nothing decides which answer is better: a person reviews (exit 3), reports are written
    assert main(["shadow-report", str(folder), "--no-judge", "--embedder", "none", "--out", str(tmp_path / "a")]) == 3
    result = json.loads((tmp_path / "a" / "results.json").read_text())
    assert len(result["cases"]) == 6 and result["verdict"]["verdict"] == "REVIEW"
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="evalgate-shadow")
        for i, f in enumerate(sorted(folder.rglob("*.jsonl"))):
            s3.put_object(Bucket="evalgate-shadow", Key=f"pairs/dt=2026-11-23/{i}.jsonl", Body=f.read_bytes())
        args = ["shadow-report", "s3://evalgate-shadow/pairs/", "--no-judge", "--embedder", "none"]
        assert main([*args, "--out", str(tmp_path / "b")]) == 3
    assert json.loads((tmp_path / "b" / "results.json").read_text())["cases"] == result["cases"]
    assert main(["shadow-report", str(tmp_path / "nope"), "--no-judge", "--out", str(tmp_path / "c")]) == 2
    assert "shadow pairs not found" in capsys.readouterr().err


def test_a_redelivered_mirror_invokes_the_candidate_once_and_the_report_counts_it_once(
    world: dict[str, Any], tmp_path: Path
) -> None:
    from evalgate.release.shadow_report import read_pairs

    event = sqs_event([mirrored("r-1", "Do you ship to Canada?")])
    assert world["h"].handler(event, Ctx())["batchItemFailures"] == []
    assert world["h"].handler(event, Ctx())["batchItemFailures"] == []  # SQS delivered it again
    assert len(world["lambda"].calls) == 1  # the candidate answered once
    assert len(records(world["ddb"])) == 1
    _, stored = stored_pairs(world["s3"])
    assert [p["request_id"] for p in stored] == ["r-1", "r-1"]  # the second batch re-stored the pair ...
    folder = tmp_path / "pairs"
    folder.mkdir()
    for i, p in enumerate(stored):
        (folder / f"{i}.jsonl").write_text(json.dumps(p) + "\n")
    pairs, problems = read_pairs(folder)
    assert [p.request_id for p in pairs] == ["r-1"] and problems == []  # ... and the report counts it once


def test_any_batch_shape_gets_a_partial_batch_response_never_a_raise(world: dict[str, Any]) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    bodies = st.text(max_size=80) | st.dictionaries(
        st.sampled_from(["request_id", "request", "production"]), scalars
    ).map(json.dumps)
    records = st.fixed_dictionaries({"messageId": st.text(min_size=1, max_size=8), "body": bodies}) | scalars

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    @given(event=st.fixed_dictionaries({"Records": st.lists(records, max_size=4)}) | scalars)
    def check(event: Any) -> None:
        out = world["h"].handler(event, Ctx())
        assert isinstance(out["batchItemFailures"], list)

    check()
    assert world["lambda"].calls == []  # nothing was a usable mirror: the candidate was never invoked


def served_by_9(rid: str, question: str) -> str:
    return mirrored(rid, question).replace('"function_version": "8"', '"function_version": "9"')


def test_the_candidate_is_never_compared_with_itself(world: dict[str, Any], capsys: Any) -> None:
    """Shadow points at the candidate (9). Production answers from 8 are replayed on 9; an answer the candidate
    gave itself (the canary arm, or every request once 9 is promoted and live = shadow) is skipped."""
    world["lambda"].aliases["shadow"] = "9"
    prod_8 = mirrored("r-old", "Do you ship to Canada?")
    prod_9 = served_by_9("r-self", "How long do refunds take?")
    out = world["h"].handler(sqs_event([prod_8, prod_9]), Ctx())
    assert out["batchItemFailures"] == []
    assert len(world["lambda"].calls) == 1 and world["lambda"].alias_reads == 1  # alias read once, then cached
    _, pairs = stored_pairs(world["s3"])
    assert [(p["request_id"], p["production"]["function_version"], p["shadow"]["function_version"]) for p in pairs] == [
        ("r-old", "8", "9")
    ]
    emf = next(json.loads(x) for x in capsys.readouterr().out.splitlines() if '"ShadowSkipped"' in x)
    assert emf["ShadowSkipped"] == [1.0] and emf["ShadowPairs"] == [1.0]


def test_without_the_alias_the_executed_version_still_prevents_a_self_pair(world: dict[str, Any]) -> None:
    """GetAlias denied or missing: the call goes out, but a reply from the version that answered in production is
    dropped rather than stored as a pair."""
    prod_9 = served_by_9("r-self", "How long do refunds take?")
    out = world["h"].handler(sqs_event([prod_9]), Ctx())
    assert out["batchItemFailures"] == [] and len(world["lambda"].calls) == 1
    assert stored_pairs(world["s3"]) == ([], [])
