"""The guardrail suite end to end: recorded answers scored by the engine plus Bedrock ApplyGuardrail (INPUT on
the prompt, OUTPUT on the answer) through the real boto3 client against a loopback fake, gated on block rate,
over-refusal and not-worse-than-baseline; a failing guardrail fails closed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evalgate.adapters.replay import ReplayCandidate
from evalgate.cli import main
from evalgate.core.config import load_config
from evalgate.core.dataset import load_golden
from evalgate.core.results import RunResult
from evalgate.core.retry import RetryPolicy
from evalgate.engine.guardrails import GuardrailChecker
from evalgate.engine.runner import run_evaluation
from tests.fakes.bedrock_fake import DUMMY_CREDENTIALS, BedrockFake
from tests.fakes.guardrail_runtime_fake import GuardrailFake

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = load_golden(ROOT / "golden", ["guardrail"])
CONFIG = load_config(ROOT / "golden" / "gate.toml")


@pytest.fixture
def guard_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[GuardrailFake], None]:
    def point(fake: GuardrailFake) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
        for k, v in DUMMY_CREDENTIALS.items():
            monkeypatch.setenv(k, v)

    return point


def evaluate(
    candidate: str, checker: GuardrailChecker | None, baseline: RunResult | None = None, **extra: Any
) -> RunResult:
    return run_evaluation(
        golden=GOLDEN,
        cases=GOLDEN.cases,
        candidate=ReplayCandidate(ROOT / "golden" / "responses" / f"{candidate}.jsonl"),
        config=CONFIG,
        tier="full",
        judge=None,
        embedder=None,
        baseline=baseline,
        guardrail=checker,
        **extra,
    )


def agg(result: RunResult, metric: str) -> Any:
    return next(a for a in result.aggregates if a.metric == metric and a.suite == "guardrail")


@pytest.fixture(scope="module")
def unsafe_answered_by_regressed() -> list[str]:
    """Must-refuse prompts the regressed candidate answered (found by the engine alone)."""
    r = evaluate("regressed", None)
    assert agg(r, "block_rate").status == "fail"
    return [c.question for c in r.cases if c.value("blocked") == 0.0]


def test_apply_guardrail_input_block_closes_the_gap_and_is_sent_correctly(
    guard_env: Callable[[GuardrailFake], None], unsafe_answered_by_regressed: list[str]
):
    assert unsafe_answered_by_regressed
    blocked_prompts = set(unsafe_answered_by_regressed)
    with GuardrailFake(lambda source, text: source == "INPUT" and text in blocked_prompts) as fake:
        guard_env(fake)
        result = evaluate("regressed", GuardrailChecker("gr-abc123", "7"))
    block = agg(result, "block_rate")
    assert block.status == "pass" and block.value == 1.0
    unsafe = [c for c in result.cases if "unsafe" in c.tags]
    assert all(c.value("guardrail_input") is not None for c in unsafe)
    assert sum(c.value("guardrail_input") == 1.0 for c in unsafe) == len(blocked_prompts)
    sources = {(c.source, c.guardrail, c.version) for c in fake.calls}
    assert sources == {("INPUT", "gr-abc123", "7"), ("OUTPUT", "gr-abc123", "7")}
    inputs = [c for c in fake.calls if c.source == "INPUT"]
    outputs = [c for c in fake.calls if c.source == "OUTPUT"]
    gated = [c for c in GOLDEN.cases if {"unsafe", "safe_lookalike"} & set(c.tags)]
    assert len(inputs) == len(gated) == len(outputs)  # once per prompt, once per answer
    assert {c.text for c in inputs} == {c.question for c in gated}
    assert result.guardrail == {
        "id": "gr-abc123",
        "version": "7",
        "calls": len(fake.calls),
        "units": 2 * len(fake.calls),
    }
    # over-refusal is a separate gate: the regressed candidate still refuses safe look-alikes
    assert agg(result, "over_refusal_rate").status == "fail"


def test_an_over_blocking_guardrail_fails_the_over_refusal_gate_and_the_baseline_gate(
    guard_env: Callable[[GuardrailFake], None],
):
    approved = evaluate("baseline", None)
    assert approved.verdict.verdict == "PASS"
    with GuardrailFake(lambda source, text: True) as fake:  # blocks everything
        guard_env(fake)
        result = evaluate("baseline", GuardrailChecker("gr-strict", "1"), baseline=approved)
    over = agg(result, "over_refusal_rate")
    assert over.status == "fail" and over.value == 1.0
    vs = agg(result, "over_refusal_rate_vs_baseline")
    assert (
        vs.status == "fail" and vs.value == 1.0 and vs.n == len([c for c in GOLDEN.cases if "safe_lookalike" in c.tags])
    )
    assert agg(result, "block_rate").status == "pass"
    assert result.verdict.verdict == "FAIL"
    assert any(r.startswith("guardrail.over_refusal_rate = 1.000") for r in result.verdict.reasons)
    refused = next(c for c in result.cases if "safe_lookalike" in c.tags)
    assert refused.status == "fail" and "ApplyGuardrail INPUT intervened" in refused.failures[-1]


def test_a_guardrail_that_cannot_be_reached_fails_closed(guard_env: Callable[[GuardrailFake], None]):
    with GuardrailFake(lambda s, t: False) as fake:
        fake.throttle_all = True
        guard_env(fake)
        # throttled to the end: retried until the run's time budget would be crossed, then given up
        policy = RetryPolicy(16, time_budget=1.5, base_delay=0.01, max_delay=0.2)
        result = evaluate("regressed", GuardrailChecker("gr-1", "1"), policy=policy)
    assert result.verdict.verdict == "ERROR"
    unscored = [c for c in result.cases if c.status == "unscored"]
    assert unscored and all("ApplyGuardrail" in " ".join(c.failures) for c in unscored)
    assert any(r.startswith("guardrail gr-1:1: gave up on") and "time budget" in r for r in result.verdict.reasons)
    assert result.faults["models"]["guardrail gr-1:1"]["throttles"] > len(unscored)


def test_cli_full_tier_with_guardrail_flags(
    guard_env: Callable[[GuardrailFake], None], tmp_path: Path, calibrated_judges: Path
):
    with BedrockFake() as bedrock, GuardrailFake(lambda s, t: False, bedrock=bedrock) as fake:
        guard_env(fake)
        code = main(
            [
                "run",
                "--tier",
                "full",
                "--suite",
                "guardrail",
                "--candidate",
                f"replay:{ROOT}/golden/responses/baseline.jsonl",
                "--guardrail-id",
                "gr-cli",
                "--guardrail-version",
                "DRAFT",
                "--no-cache",
                "--no-progress",
                "--out",
                str(tmp_path),
            ]
        )
        assert bedrock.count(operation="converse") > 0  # the judge ran through the same endpoint
    data = json.loads((tmp_path / "results.json").read_text())
    assert code in (0, 1, 3)  # the fake judge's scores decide the quality metrics; the guardrail gate ran
    assert data["guardrail"]["id"] == "gr-cli" and data["guardrail"]["calls"] == len(fake.calls) > 0
    block = next(a for a in data["aggregates"] if a["metric"] == "block_rate")
    assert block["status"] == "pass"
    junit = (tmp_path / "junit.xml").read_text()
    assert 'name="guardrail.block_rate"' in junit and 'name="guardrail.over_refusal_rate"' in junit


def test_cli_offline_tier_says_the_guardrail_was_not_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main(
        [
            "run",
            "--suite",
            "guardrail",
            "--candidate",
            f"replay:{ROOT}/golden/responses/baseline.jsonl",
            "--guardrail-id",
            "gr-x",
            "--guardrail-version",
            "2",
            "--no-cache",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "not run: guardrail (ApplyGuardrail): needs Bedrock; tier offline calls no AWS service" in out


def test_cli_guardrail_id_without_version_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main(["run", "--candidate", f"replay:{ROOT}/golden/responses/baseline.jsonl", "--guardrail-id", "gr-x"])
    assert code == 2 and "set both the guardrail id and its version" in capsys.readouterr().err
