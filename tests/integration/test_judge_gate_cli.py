"""The CLI end to end against the loopback Bedrock fake: `evalgate calibrate --metric judge` writes records, a judged
tier refuses a judge without a valid one, and a judge change between two runs of the same answers is no regression."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evalgate.cli import main
from tests.fakes.bedrock_fake import BedrockFake
from tests.fakes.stand_in_judges import ROOT, calibrate_through_cli, coin_flip, verdict

CHEAP = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
REPLAY = f"replay:{ROOT}/golden/responses/baseline.jsonl"


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    """The first 16 regression cases of golden/ (a quick judged run). The fake's Titan embeddings are hashed bags
    of words, so the similarity threshold is set for them."""
    g = tmp_path / "golden"
    shutil.copytree(ROOT / "golden" / "knowledge", g / "knowledge")
    (g / "cases.jsonl").write_text("".join((ROOT / "golden" / "cases.jsonl").read_text().splitlines(True)[:16]))
    (g / "gate.toml").write_text(
        (ROOT / "golden" / "gate.toml").read_text().replace("similarity = 0.82", "similarity = 0.5")
    )
    return g


def run(golden: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "run",
            "--tier",
            "full",
            "--golden",
            str(golden),
            "--candidate",
            REPLAY,
            "--no-progress",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_calibrate_writes_a_record_once_and_if_needed_reuses_it(
    judge_records_dir: Path, bedrock_fake: BedrockFake, capsys: pytest.CaptureFixture[str]
):
    records = list(judge_records_dir.glob("judge-*.json"))
    assert len(records) == 2  # cheap and heavy judge, measured by the session fixture through this same CLI
    cheap = json.loads(next(p for p in records if "haiku" in p.name).read_text())
    assert cheap["judge"]["model_id"] == CHEAP and cheap["judge"]["endpoint"].startswith("http://127.0.0.1:")
    assert cheap["kappa"]["value"] > 0.7 and cheap["cost"]["usd"] > 0  # priced from gate.toml [pricing]
    code = main(["calibrate", "--metric", "judge", "--records", str(judge_records_dir), "--if-needed", "--no-cache"])
    assert code == 0 and "is valid" in capsys.readouterr().out
    assert bedrock_fake.count() == 0  # a valid record is not measured again


def test_a_coin_flip_judge_is_measured_and_stops_with_its_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bedrock_fake: BedrockFake
):
    coin = "anthropic.claude-3-5-haiku-20241022-v1:0"  # a priced model id: the calibration is costed and capped
    assert calibrate_through_cli(tmp_path, [coin], coin_flip) == 1
    captured = capsys.readouterr()
    assert "falls short of the floors" in captured.err and "kappa" in captured.err
    assert "kappa" in captured.out and "judge calls" in captured.out  # the figures and the cost are printed
    assert len(list(tmp_path.glob("judge-anthropic.claude-3-5-haiku-*.json"))) == 1  # the measurement is kept
    # The pipeline's next run asks again: the same judge and rubric would measure the same, so it is not re-paid.
    args = ["calibrate", "--metric", "judge", "--judge-model", coin, "--records", str(tmp_path), "--if-needed"]
    assert main([*args, "--no-cache"]) == 1
    assert "below the calibration floors" in capsys.readouterr().err and bedrock_fake.count() == 0


def test_a_judged_tier_without_a_record_refuses_before_any_call(
    golden: Path,
    tmp_path: Path,
    bedrock_fake: BedrockFake,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("EVALGATE_CALIBRATION_DIR", str(tmp_path / "none"))
    code = run(golden, tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 4
    assert f"judge {CHEAP}" in err and "has no calibration record" in err
    assert f"evalgate calibrate --metric judge --judge-model {CHEAP} --records {tmp_path / 'none'}" in err
    assert bedrock_fake.count() == 0 and not (tmp_path / "out" / "results.json").exists()


def test_review_setting_runs_but_never_passes(
    golden: Path, tmp_path: Path, bedrock_fake: BedrockFake, monkeypatch: pytest.MonkeyPatch
):
    gate = (golden / "gate.toml").read_text().replace('on_failure = "error"', 'on_failure = "review"')
    (tmp_path / "gate.toml").write_text(gate)
    monkeypatch.setenv("EVALGATE_CALIBRATION_DIR", str(tmp_path / "none"))
    bedrock_fake.judge_fn = lambda req: verdict(0.97)
    code = run(golden, tmp_path / "out", "--config", str(tmp_path / "gate.toml"), "--no-cache")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert code == 3 and data["verdict"]["verdict"] == "REVIEW"
    assert data["verdict"]["reasons"][0].startswith(f"untrusted judge: judge {CHEAP}")
    assert data["judge_calibration"][0]["ok"] is False
    assert "NOT trusted" in (tmp_path / "out" / "summary.md").read_text()
    assert "NOT trusted" in (tmp_path / "out" / "report.html").read_text()
    assert 'type="UntrustedJudge"' in (tmp_path / "out" / "junit.xml").read_text()


def test_results_record_judge_rubric_embedder_dataset_and_config(
    golden: Path, tmp_path: Path, bedrock_fake: BedrockFake, calibrated_judges: Path
):
    bedrock_fake.judge_fn = lambda req: verdict(0.97)
    code = run(golden, tmp_path / "out", "--no-cache")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert code == 0, data["verdict"]
    assert data["judge"]["model_id"] == CHEAP and len(data["judge"]["rubric_sha256"]) == 64
    assert data["embedder"]["model_id"] == "amazon.titan-embed-text-v2:0"
    assert len(data["dataset_sha256"]) == 64 and len(data["config_sha256"]) == 64
    check = data["judge_calibration"][0]
    assert check["ok"] and check["record"].startswith(str(calibrated_judges)) and check["kappa"] > 0.7
    assert data["self_agreement"]["judge"]["model_id"] == CHEAP
    assert "Judge and stability" in (tmp_path / "out" / "summary.md").read_text()


def test_a_judge_change_between_two_runs_of_the_same_answers_is_no_regression(
    golden: Path,
    tmp_path: Path,
    bedrock_fake: BedrockFake,
    judge_records_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    monkeypatch.setenv("EVALGATE_CALIBRATION_DIR", str(judge_records_dir))
    heavy = "us.anthropic.claude-sonnet-4-20250514-v1:0"
    # The cheap judge is lenient, the heavy one strict: the same answers score 0.99 and 0.91.
    bedrock_fake.judge_fn = lambda req: verdict(0.91 if req.model_id == heavy else 0.99)
    cache = str(tmp_path / "cache.sqlite")
    assert run(golden, tmp_path / "base", "--cache", cache) == 0
    base = str(tmp_path / "base" / "results.json")
    code = run(golden, tmp_path / "cand", "--cache", cache, "--judge-model", heavy, "--baseline", base)
    data = json.loads((tmp_path / "cand" / "results.json").read_text())
    assert code == 0, data["verdict"]
    faith = next(c for c in data["comparisons"] if c["metric"] == "faithfulness")
    assert faith["diff"] == pytest.approx(0.0) and not faith["worse"]
    rescored = data["baseline"]["rescored"]
    assert f"judged by {CHEAP}" in rescored["reasons"][0] and f"this run by {heavy}" in rescored["reasons"][0]
    assert any(r.startswith("baseline re-scored before the paired comparison") for r in data["verdict"]["reasons"])
    assert "Baseline re-scored with this run's judge" in (tmp_path / "cand" / "summary.md").read_text()


def test_validate_names_the_file_and_line_of_a_malformed_label(golden: Path, capsys: pytest.CaptureFixture[str]):
    lines = (ROOT / "golden" / "judge_labels.jsonl").read_text().splitlines()
    bad = json.loads(lines[1])
    bad["knowledge"] = ["returns.nowhere"]
    bad["label"] = "mostly"
    lines[1] = json.dumps(bad)
    (golden / "judge_labels.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["validate", "--golden", str(golden)]) == 2
    err = capsys.readouterr().err
    assert (
        f"{golden / 'judge_labels.jsonl'}:2: label '{bad['id']}': label: Input should be 'faithful' or 'unfaithful'"
        in err
    )


def test_a_judge_swapped_in_gate_toml_is_rescored_not_a_baseline_mismatch(
    golden: Path, tmp_path: Path, bedrock_fake: BedrockFake, judge_records_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("EVALGATE_CALIBRATION_DIR", str(judge_records_dir))
    heavy = "us.anthropic.claude-sonnet-4-20250514-v1:0"
    bedrock_fake.judge_fn = lambda req: verdict(0.91 if req.model_id == heavy else 0.99)
    cache = str(tmp_path / "cache.sqlite")
    assert run(golden, tmp_path / "base", "--cache", cache) == 0
    gate = golden / "gate.toml"
    gate.write_text(gate.read_text().replace(f'judge = "{CHEAP}"', f'judge = "{heavy}"'))  # [models] judge swapped
    code = run(golden, tmp_path / "cand", "--cache", cache, "--baseline", str(tmp_path / "base" / "results.json"))
    data = json.loads((tmp_path / "cand" / "results.json").read_text())
    assert code == 0, data["verdict"]  # not "the baseline was made with another gate config" (exit 2)
    assert data["judge"]["model_id"] == heavy and data["baseline"]["rescored"]["judge"]["model_id"] == heavy
