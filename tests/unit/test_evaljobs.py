"""Bedrock evaluation jobs, the pure parts: limits and judge validation, the BYO-response dataset, and the
mapping of recorded output records onto evalgate metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalgate.cli import main
from evalgate.core.config import EvaluationJobConfig, GateConfig, load_config
from evalgate.core.errors import InputError
from evalgate.core.models import Case, Generation, KnowledgeEntry
from evalgate.engine.evaljobs import (
    EvaluationJobJudge,
    config_problems,
    dataset_records,
    evalgate_metric,
    evaluator_problem,
    parse_output,
)

ROOT = Path(__file__).resolve().parents[2]
ROLE = "arn:aws:iam::123456789012:role/evalgate-eval"


@pytest.fixture
def config() -> GateConfig:
    cfg = load_config(ROOT / "golden" / "gate.toml")
    cfg.evaluation_job.role_arn = ROLE
    cfg.evaluation_job.s3_uri = "s3://evals/jobs"
    return cfg


@pytest.mark.parametrize(
    "model",
    [
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "amazon.nova-pro-v1:0",
        "meta.llama3-1-70b-instruct-v1:0",
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        "eu.amazon.nova-pro-v1:0",
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
    ],
)
def test_base_models_and_system_inference_profiles_can_judge(model: str):
    assert evaluator_problem(model) is None


@pytest.mark.parametrize(
    ("model", "why"),
    [
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123", "application inference"),
        ("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/xyz", "a provisioned model"),
        ("arn:aws:bedrock:us-east-1:123456789012:custom-model/anthropic.claude-v2/abc", "a custom model"),
        ("arn:aws:bedrock:us-east-1:123456789012:imported-model/abc", "an imported model"),
        ("arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1", "a prompt router"),
        ("my-judge", "not a base model id"),
        ("", "no evaluator model"),
    ],
)
def test_other_judges_are_rejected_clearly(model: str, why: str):
    problem = evaluator_problem(model)
    assert problem is not None and why in problem
    if model.startswith("arn:"):
        assert "must be a base model" in problem


def test_config_problems_name_the_setting(config: GateConfig):
    cfg = EvaluationJobConfig(
        metrics=["Builtin.Faithfulness", "Builtin.Nonsense"], metric_map={"Builtin.Relevance": "relevance"}
    )
    text = [str(p) for p in config_problems(cfg, "arn:aws:bedrock:us-east-1:1:provisioned-model/x")]
    joined = "\n".join(text)
    assert "gate.toml [evaluation_job]: role_arn: required" in joined
    assert "s3_uri: required" in joined
    assert "evaluator_model: 'arn:aws:bedrock:us-east-1:1:provisioned-model/x'" in joined
    assert "unknown built-in metric 'Builtin.Nonsense'" in joined
    assert "metric_map: 'Builtin.Relevance' is mapped but not evaluated" in joined
    assert config_problems(config.evaluation_job, config.models.heavy_judge) == []
    with pytest.raises(InputError):
        EvaluationJobJudge(load_config(ROOT / "golden" / "gate.toml"), run_id="x")  # no role, no bucket


def _gate_with(tmp_path: Path, extra: str) -> Path:
    golden = tmp_path / "golden"
    import shutil

    shutil.copytree(ROOT / "golden", golden)
    gate = golden / "gate.toml"
    gate.write_text(gate.read_text() + extra)
    return golden


def test_rating_definitions_of_100_characters_or_more_are_rejected_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    long_def = "x" * 100
    golden = _gate_with(
        tmp_path,
        f"""
[[evaluation_job.custom_metrics]]
name = "Politeness"
instructions = "Rate how polite the answer is. Answer: {{{{prediction}}}}"
rating_scale = [{{ definition = "{long_def}", value = 0.0 }}, {{ definition = "Polite", value = 1.0 }}]
""",
    )
    assert main(["validate", "--golden", str(golden)]) == 2
    err = capsys.readouterr().err
    assert "gate.toml:" in err and "evaluation_job.custom_metrics.0.rating_scale.0.definition" in err
    assert "at most 99 characters" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("\n[evaluation_job.x]\n", "evaluation_job.x"),
        ("\n[release]\nrepeats = 0\n", "release.repeats"),
    ],
)
def test_other_bad_sections_exit_2(tmp_path: Path, extra: str, message: str, capsys: pytest.CaptureFixture[str]):
    gate = _gate_with(tmp_path, "")
    text = (gate / "gate.toml").read_text()
    if extra.startswith("\n[release]"):
        text = text.replace("repeats = 3", "repeats = 0")
    else:
        text += extra
    (gate / "gate.toml").write_text(text)
    assert main(["validate", "--golden", str(gate)]) == 2
    assert message in capsys.readouterr().err


def test_max_prompts_over_1000_and_custom_metric_without_prediction_are_config_errors():
    with pytest.raises(ValueError, match="less than or equal to 1000"):
        EvaluationJobConfig(max_prompts=1001)
    with pytest.raises(ValueError, match=r"\{\{prediction\}\}"):
        EvaluationJobConfig.model_validate(
            {
                "custom_metrics": [
                    {
                        "name": "Tone",
                        "instructions": "Rate it.",
                        "rating_scale": [{"definition": "bad", "value": 0}, {"definition": "good", "value": 1}],
                    }
                ]
            }
        )


KB = [
    KnowledgeEntry(
        id="returns.window", title="Return window", text="Items can be returned within 30 days.", file="k.md", line=1
    )
]


def _case(i: int) -> Case:
    return Case(
        id=f"c-{i}",
        category="returns",
        prompt=f"Question {i}?",
        reference="Within 30 days.",
        context=["returns.window"],
    )


def test_dataset_records_are_bring_your_own_responses():
    items = [
        (_case(1), Generation(case_id="c-1", repeat=0, output="Within 30 days."), KB),
        (_case(1), Generation(case_id="c-1", repeat=1, output="Within 30 days."), KB),  # same answer: one record
        (_case(2), Generation(case_id="c-2", repeat=0, output="Within 60 days."), KB),
        (_case(3), Generation(case_id="c-3", repeat=0, output=None, error="x"), KB),  # no answer: nothing to judge
    ]
    records, keys = dataset_records(items, "evalgate-candidate")
    assert len(records) == 2
    r = records[0]
    assert set(r) == {"prompt", "referenceResponse", "category", "modelResponses"}
    assert r["modelResponses"] == [{"response": "Within 30 days.", "modelIdentifier": "evalgate-candidate"}]
    assert r["category"] == "regression/returns" and r["referenceResponse"] == "Within 30 days."
    assert "[returns.window] Return window" in r["prompt"] and "Customer question: Question 1?" in r["prompt"]
    assert sorted(k for ks in keys.values() for k in ks) == [("c-1", 0), ("c-1", 1), ("c-2", 0)]


def output_line(record: dict[str, object], scores: list[dict[str, object]]) -> str:
    """One line of a job's *_output.jsonl, as Bedrock writes it."""
    return json.dumps(
        {
            "automatedEvaluationResult": {"scores": scores},
            "inputRecord": {k: v for k, v in record.items() if k != "modelResponses"},
            "modelResponses": record["modelResponses"],
        }
    )


def test_parse_output_maps_scores_and_fails_closed(config: GateConfig):
    custom = {
        "name": "PolicyAccuracy",
        "instructions": "Rate {{prediction}}",
        "maps_to": "policy_accuracy",
        "rating_scale": [
            {"definition": "wrong", "value": 1},
            {"definition": "partly", "value": 3},
            {"definition": "right", "value": 5},
        ],
    }
    cfg = EvaluationJobConfig.model_validate({**config.evaluation_job.model_dump(), "custom_metrics": [custom]})
    items = [(_case(i), Generation(case_id=f"c-{i}", output=f"answer {i}"), KB) for i in (1, 2)]
    records, keys = dataset_records(items, "src")
    judge = "anthropic.claude-3-5-haiku-20241022-v1:0"
    lines = [
        output_line(
            records[0],
            [
                {
                    "metricName": "Builtin.Faithfulness",
                    "result": 0.75,
                    "evaluatorDetails": [{"modelIdentifier": judge, "explanation": "one claim unsupported"}],
                },
                {"metricName": "Correctness", "result": 1.0, "evaluatorDetails": [{"explanation": "ok"}]},
                {"metricName": "PolicyAccuracy", "result": 4, "evaluatorDetails": [{"explanation": "mostly"}]},
            ],
        ),
        output_line(
            records[1],
            [
                {
                    "metricName": "Builtin.Faithfulness",
                    "result": None,
                    "evaluatorDetails": [{"explanation": "evaluator failed to produce a score"}],
                },
            ],
        ),
        "",
    ]
    out = parse_output(lines, keys, cfg, judge)
    m1 = out[("c-1", 0)]
    assert m1["faithfulness"].value == 0.75 and m1["faithfulness"].reason == "one claim unsupported"
    assert m1["faithfulness"].details["source"] == "bedrock-evaluation-job"
    assert m1["bedrock_correctness"].value == 1.0  # "Correctness" is the built-in, reported not gated
    assert m1["policy_accuracy"].value == pytest.approx(0.75)  # 4 on a 1..5 scale
    m2 = out[("c-2", 0)]
    assert m2["faithfulness"].unscored and "no score" in m2["faithfulness"].reason
    assert evalgate_metric("Builtin.Relevance", cfg) == "relevance"
    assert evalgate_metric("Builtin.ProfessionalStyleAndTone", cfg) == "bedrock_professional_style_and_tone"
    with pytest.raises(Exception, match="not JSON"):
        parse_output(["{oops"], keys, cfg, judge)
