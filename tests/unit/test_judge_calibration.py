"""A judge earns the right to gate: calibration records measured against human labels, and their checks."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evalgate.core.config import load_config
from evalgate.core.dataset import load_knowledge
from evalgate.core.errors import InputError
from evalgate.engine import judge as judge_module
from evalgate.engine.judge import Judge
from evalgate.engine.judge_calibration import (
    check_judge,
    content_hash,
    floor_problems,
    labelled_items,
    load_judge_labels,
    measure_judge,
    record_name,
    write_record,
)
from tests.fakes.stand_in_judges import BENCH, LABELS, ROOT, StandInJudgeModel, agreeing, coin_flip, truth_table

CONFIG = load_config(ROOT / "golden" / "gate.toml")
KNOWLEDGE, _ = load_knowledge(ROOT / "golden" / "knowledge")
LIMIT = 100  # rows per public dataset: ~330 labelled answers with the demo set
FIXTURE = ROOT / "tests" / "fixtures" / "judge-calibration"
MEASURED_AT = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)


def calibrate(model: StandInJudgeModel, limit: int = LIMIT) -> dict:
    data = labelled_items(BENCH, LABELS, KNOWLEDGE, limit)
    return measure_judge(Judge(model), data, CONFIG, concurrency=2, limit=limit, now=MEASURED_AT)


@pytest.fixture(scope="module")
def truth() -> dict:
    return truth_table(LIMIT)


def test_an_agreeing_judge_passes_calibration_and_its_record_is_the_fixture(truth: dict, tmp_path: Path):
    record = calibrate(StandInJudgeModel("stand-in.agreeing-judge", agreeing(truth)))
    assert record["n"] >= CONFIG.judge_calibration.min_n and record["unscored"] == 0
    kappa = record["kappa"]
    assert kappa["value"] > 0.7 and kappa["low"] < kappa["value"] < kappa["high"]
    assert record["auroc"]["value"] > 0.85 and record["agreement"]["value"] > 0.85
    assert 0.3 < record["best_cut"]["score"] <= 0.91  # unfaithful answers at 0.2-0.3, faithful ones at 0.9-1
    names = [d["name"] for d in record["datasets"]]
    assert names[0] == "HaluEval QA" and names[-1].startswith("demo domain") and len(names) == 3
    assert all(len(d["sha256"]) == 64 for d in record["datasets"])
    assert record["datasets"][-1]["verified_by"]  # each demo label names who verified it
    assert record["judge"]["rubric_sha256"] == judge_module.rubric_sha256()
    assert record["content_sha256"] == content_hash(record)
    path = write_record(tmp_path, record)
    check = check_judge(record["judge"], CONFIG, tmp_path)
    assert check.ok and check.path == str(path), check.problems
    # The record kept as a fixture is exactly what this measurement writes (regenerate it with
    # EVALGATE_REGENERATE_FIXTURES=1 after changing the rubric or the labelled data).
    fixture = FIXTURE / record_name(record["judge"])
    if os.environ.get("EVALGATE_REGENERATE_FIXTURES"):
        write_record(FIXTURE, record)
    assert rounded(json.loads(fixture.read_text())) == rounded(json.loads(path.read_text()))


def rounded(doc: object) -> object:
    """A record with floats to 9 places and without its content hash (last-digit float differences between
    numpy/scipy builds are not a different measurement)."""
    if isinstance(doc, dict):
        return {k: rounded(v) for k, v in doc.items() if k != "content_sha256"}
    if isinstance(doc, list):
        return [rounded(v) for v in doc]
    return round(doc, 9) if isinstance(doc, float) else doc


def test_a_coin_flip_judge_is_refused_with_its_figures(tmp_path: Path):
    record = calibrate(StandInJudgeModel("stand-in.coin-flip", coin_flip))
    assert abs(record["kappa"]["value"]) < 0.2 and 0.35 < record["auroc"]["value"] < 0.65
    write_record(tmp_path, record)
    check = check_judge(record["judge"], CONFIG, tmp_path)
    assert not check.ok
    assert "below the calibration floors" in check.problems[0]
    assert "kappa" in check.problems[0] and "below the floor 0.4" in check.problems[0]
    assert "auroc" in check.problems[0]


def test_a_changed_rubric_invalidates_the_record(monkeypatch: pytest.MonkeyPatch):
    identity = json.loads(next(FIXTURE.glob("judge-*.json")).read_text())["judge"]
    assert check_judge(identity, CONFIG, FIXTURE).ok
    monkeypatch.setitem(judge_module.RUBRICS, "faithfulness", judge_module.RUBRICS["faithfulness"] + " Be lenient.")
    changed = Judge(StandInJudgeModel(identity["model_id"], coin_flip)).identity()
    assert changed["rubric_sha256"] != identity["rubric_sha256"]
    check = check_judge(changed, CONFIG, FIXTURE)
    assert not check.ok
    assert "has no calibration record for its rubric" in check.problems[0]
    assert f"evalgate calibrate --metric judge --judge-model {identity['model_id']}" in check.problems[0]


def test_a_hand_edited_record_is_invalid(tmp_path: Path):
    src = next(FIXTURE.glob("judge-*.json"))
    record = json.loads(src.read_text())
    record["kappa"]["value"] = 0.99  # a nicer number, typed in
    (tmp_path / src.name).write_text(json.dumps(record))
    check = check_judge(record["judge"], CONFIG, tmp_path)
    assert not check.ok and "content hash does not match" in check.problems[0]


def test_a_record_for_another_model_under_this_name_is_refused(tmp_path: Path):
    src = next(FIXTURE.glob("judge-*.json"))
    record = json.loads(src.read_text())
    other = {**record["judge"], "model_id": "us.anthropic.claude-3-5-haiku-20241022-v1:0"}
    (tmp_path / record_name(other)).write_text(src.read_text())  # copied and renamed, not measured
    check = check_judge(other, CONFIG, tmp_path)
    assert not check.ok and "is for model_id 'stand-in.agreeing-judge'" in check.problems[0]


def test_no_record_names_the_judge_and_the_command(tmp_path: Path):
    identity = Judge(StandInJudgeModel("us.anthropic.claude-3-5-haiku-20241022-v1:0", coin_flip)).identity()
    check = check_judge(identity, CONFIG, tmp_path / "records")
    assert not check.ok
    msg = check.problems[0]
    assert "judge us.anthropic.claude-3-5-haiku-20241022-v1:0" in msg and "has no calibration record" in msg
    assert f"--records {tmp_path / 'records'}" in msg


def test_no_record_ships_for_a_real_bedrock_judge():
    shipped = ROOT / CONFIG.judge_calibration.records
    ids = {json.loads(p.read_text())["judge"]["model_id"] for p in shipped.glob("judge-*.json")}
    assert not ids & {CONFIG.models.judge, CONFIG.models.heavy_judge}


def test_a_malformed_label_file_names_file_and_line(tmp_path: Path):
    lines = LABELS.read_text().splitlines()
    bad = json.loads(lines[2])
    del bad["verified_by"]
    lines[2] = json.dumps(bad)
    lines[4] = lines[4][:-5]  # truncated JSON
    lines.append(lines[0])  # duplicate id
    path = tmp_path / "judge_labels.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        load_judge_labels(path, KNOWLEDGE)
    shown = [str(p) for p in err.value.problems]
    assert f"{path}:3: label '{bad['id']}': verified_by: Field required" in shown
    assert any(s.startswith(f"{path}:5: not valid JSON") for s in shown)
    assert any(s.startswith(f"{path}:{len(lines)}: duplicate label id") for s in shown)


def test_the_demo_labels_cite_real_knowledge_and_name_their_verifier():
    labels = load_judge_labels(LABELS, KNOWLEDGE)
    assert len(labels) >= 30 and {lab.label for lab in labels} == {"faithful", "unfaithful"}
    assert all(lab.verified_by and lab.why for lab in labels)


def test_a_record_measured_on_a_local_stand_in_does_not_hold_for_bedrock(tmp_path: Path):
    src = next(FIXTURE.glob("judge-*.json"))
    record = json.loads(src.read_text())
    record["judge"]["endpoint"] = "http://127.0.0.1:8123"
    record["content_sha256"] = content_hash(record)  # a consistent record, as `evalgate calibrate` writes it
    write_record(tmp_path, record)
    assert check_judge(record["judge"], CONFIG, tmp_path, "http://127.0.0.1:9999").ok  # tests: another fake
    check = check_judge(record["judge"], CONFIG, tmp_path, "https://bedrock-runtime.us-east-1.amazonaws.com")
    assert not check.ok and "measured against a local stand-in (http://127.0.0.1:8123)" in check.problems[0]
    fixture = json.loads(src.read_text())  # measured in-process (no endpoint): not for a Bedrock judge either
    check = check_judge(fixture["judge"], CONFIG, FIXTURE, "https://bedrock-runtime.us-east-1.amazonaws.com")
    assert not check.ok and "measured against a local stand-in (in-process)" in check.problems[0]


def test_unparseable_judgements_are_counted_unscored_not_scored(truth: dict):
    agree = agreeing(truth)
    data = labelled_items(BENCH, LABELS, KNOWLEDGE, 20)
    broken = data.items[0].question

    def grade(prompt: str) -> dict:
        return {"score": "?"} if broken in prompt else agree(prompt)  # fails the verdict schema every time

    record = measure_judge(Judge(StandInJudgeModel("stand-in.flaky-output", grade)), data, CONFIG, concurrency=2)
    assert record["unscored"] == 2 and record["scored"] == record["n"] - 2  # both answers to that question
    assert record["kappa"]["value"] is not None and record["per_dataset"]["HaluEval QA"]["n"] == 38
    over = {**record, "unscored": record["n"]}  # a judge that answered nothing usable cannot pass
    assert any("unscored (budget 5%)" in p for p in floor_problems(over, CONFIG))
