"""--max-cost against the loopback Bedrock fake: the run stops with ERROR before the cap is crossed, the reason
names the cap, and the spend stays under it. Also: tokens and dollars per run add up from the pricing table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalgate.adapters.bedrock import BedrockCandidate, BedrockJudgeModel, TitanEmbedder
from evalgate.cli import main
from evalgate.core.config import load_config
from evalgate.core.dataset import load_golden
from evalgate.core.prompts import load_prompt
from evalgate.engine.cost import CostMeter, MeteredCandidate, MeteredEmbedder, MeteredJudgeModel, call_cost
from evalgate.engine.judge import Judge
from evalgate.engine.runner import run_evaluation
from tests.fakes.bedrock_fake import BedrockFake

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = load_golden(ROOT / "golden", ["regression"])
CASES = GOLDEN.cases[:24]
CONFIG = load_config(ROOT / "golden" / "gate.toml")


def evaluate(cap: float | None, concurrency: int = 4):
    meter = CostMeter(CONFIG, cap)
    cand = MeteredCandidate(
        BedrockCandidate(CONFIG.models.generator, load_prompt("support/v1"), max_tokens=256),
        meter,
        CONFIG.models.generator,
        256,
    )
    judge = Judge(MeteredJudgeModel(BedrockJudgeModel(CONFIG.models.judge, max_tokens=512), meter))
    emb = MeteredEmbedder(TitanEmbedder(CONFIG.models.embeddings), meter)
    result = run_evaluation(
        golden=GOLDEN,
        cases=CASES,
        candidate=cand,
        config=CONFIG,
        tier="full",
        judge=judge,
        embedder=emb,
        concurrency=concurrency,
        meter=meter,
    )
    return result, meter


def test_uncapped_run_reports_tokens_and_dollars_from_the_pricing_table(bedrock_fake: BedrockFake):
    result, meter = evaluate(None)
    assert result.cost is not None and not result.cost["stopped"] and result.cost["cap_usd"] is None
    u = result.usage
    by_model = u.by_model
    assert set(by_model) == {CONFIG.models.generator, CONFIG.models.judge, CONFIG.models.embeddings}
    assert by_model[CONFIG.models.embeddings]["input_tokens"] > 0  # embedding tokens are counted too
    recomputed = sum(
        call_cost(CONFIG, model, int(s["input_tokens"]), int(s["output_tokens"])) for model, s in by_model.items()
    )
    assert u.cost_usd == pytest.approx(recomputed)
    assert u.input_tokens == sum(int(s["input_tokens"]) for s in by_model.values())
    # per-case cost is the candidate's share
    gen_cost = call_cost(
        CONFIG,
        CONFIG.models.generator,
        int(by_model[CONFIG.models.generator]["input_tokens"]),
        int(by_model[CONFIG.models.generator]["output_tokens"]),
    )
    assert sum(c.cost_usd for c in result.cases) == pytest.approx(gen_cost)
    # the meter saw the same calls, at actual cost (embeddings at most their estimate)
    assert meter.spent_usd >= u.cost_usd - by_model[CONFIG.models.embeddings]["cost_usd"] - 1e-9


def test_cap_stops_the_run_with_error_before_it_is_exceeded(bedrock_fake: BedrockFake):
    _, full_meter = evaluate(None)
    calls_full = bedrock_fake.count()
    bedrock_fake.reset()
    cap = round(full_meter.spent_usd / 3, 4)
    result, meter = evaluate(cap)
    assert result.verdict.verdict == "ERROR" and result.verdict.exit_code == 4
    first = result.verdict.reasons[0]
    assert first.startswith(f"--max-cost ${cap:.4f} reached") and "stopped before making it" in first
    assert result.fatal[0] == first
    assert meter.spent_usd <= cap and result.usage.cost_usd <= cap
    assert result.cost is not None and result.cost["stopped"] and result.cost["spent_usd"] <= cap
    assert 0 < bedrock_fake.count() < calls_full  # it did some work, then stopped
    not_run = [c for c in result.cases if c.status == "error"]
    assert not_run and all("not run: --max-cost" in (c.generations[0].error or "") for c in not_run)


def test_cli_max_cost_exits_4_and_names_the_cap(
    bedrock_fake: BedrockFake, tmp_path: Path, capsys: pytest.CaptureFixture[str], calibrated_judges: Path
):
    code = main(
        [
            "run",
            "--tier",
            "full",
            "--suite",
            "regression",
            "--candidate",
            "bedrock",
            "--no-cache",
            "--no-progress",
            "--max-cost",
            "0.03",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 4
    assert "--max-cost $0.0300 reached" in out and "STOPPED at the cap" in out
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["cost"]["cap_usd"] == 0.03 and data["cost"]["spent_usd"] <= 0.03
    assert data["usage"]["cost_usd"] <= 0.03
    assert data["verdict"]["reasons"][0].startswith("--max-cost $0.0300")


@pytest.mark.parametrize("bad", ["0", "-1"])
def test_cli_rejects_a_non_positive_cap(bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exc:  # argparse: usage, the flag and its allowed range, exit 2
        main(["run", "--candidate", f"replay:{ROOT}/golden/responses/baseline.jsonl", "--max-cost", bad])
    assert exc.value.code == 2 and f"--max-cost: must be a number > 0 (got '{bad}')" in capsys.readouterr().err
