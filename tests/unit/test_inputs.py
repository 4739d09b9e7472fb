"""Bad inputs name the file and line; nothing is evaluated."""

import json
from pathlib import Path

import pytest

from evalgate.core.config import load_config
from evalgate.core.dataset import load_golden
from evalgate.core.errors import InputError

from .core_fakes import case_dict, write_golden


def problems(exc: InputError) -> list[str]:
    return [str(p) for p in exc.problems]


def test_golden_loads(golden_dir: Path):
    g = load_golden(golden_dir)
    assert len(g.cases) == 11 and "returns.window" in g.knowledge
    assert g.knowledge_for(g.cases[0])[0].title == "Return window"


def test_dataset_errors_name_file_and_line(tmp_path: Path):
    cases = [case_dict(1), case_dict(1), case_dict(2, context=["returns.nope"]), case_dict(3, reference="  ")]
    root = write_golden(tmp_path / "golden", cases)
    with (root / "cases.jsonl").open("a") as f:
        f.write("{not json\n")
        f.write(json.dumps(case_dict(5, expected="maybe")) + "\n")
    with pytest.raises(InputError) as ei:
        load_golden(root)
    msgs = "\n".join(problems(ei.value))
    assert "cases.jsonl:2: duplicate case id 'c-001' (first at" in msgs
    assert "cases.jsonl:3: case 'c-002': unknown knowledge id 'returns.nope'" in msgs
    assert "cases.jsonl:4: case 'c-003': reference: reference answer is empty" in msgs
    assert "cases.jsonl:5: not valid JSON" in msgs
    assert "cases.jsonl:6: case 'c-005': expected:" in msgs


def test_knowledge_errors(tmp_path: Path):
    root = write_golden(tmp_path / "golden", [case_dict(1)])
    (root / "knowledge" / "zz.md").write_text(
        "## Returns Window\ntext\n\n## returns.window: Again\ndup\n\n## x.empty: Empty\n"
    )
    with pytest.raises(InputError) as ei:
        load_golden(root)
    msgs = "\n".join(problems(ei.value))
    assert "zz.md:1: knowledge heading must look like" in msgs
    assert "zz.md:4: duplicate knowledge id 'returns.window'" in msgs
    assert "zz.md:7: knowledge entry 'x.empty' has no text" in msgs


def test_multi_turn_must_end_with_user(tmp_path: Path):
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    root = write_golden(tmp_path / "golden", [case_dict(1, prompt=turns)])
    with pytest.raises(InputError) as ei:
        load_golden(root)
    assert "must end with a user turn" in str(ei.value)


def test_config_errors_point_at_the_line(tmp_path: Path):
    p = tmp_path / "gate.toml"
    p.write_text(
        "version = 1\n\n[thresholds]\nfaithfulness = 0.85\nsimilarity = 1.7\nhallucination_rate = 0.02\n"
        "hallucination_rate_high_stakes = 0.5\n"
    )
    with pytest.raises(InputError) as ei:
        load_config(p)
    msgs = problems(ei.value)
    assert any(m.startswith(f"{p}:5: thresholds.similarity:") for m in msgs), msgs


def test_config_rejects_looser_high_stakes_and_unknown_keys(tmp_path: Path):
    p = tmp_path / "gate.toml"
    p.write_text("[thresholds]\nhallucination_rate = 0.02\nhallucination_rate_high_stakes = 0.05\n")
    with pytest.raises(InputError, match="must not be looser"):
        load_config(p)
    p.write_text("[thresholds]\nfaithfulnes = 0.8\n")
    with pytest.raises(InputError) as ei:
        load_config(p)
    assert f"{p}:2: thresholds.faithfulnes: unknown key (did you mean 'faithfulness'?)" in str(ei.value)
    p.write_text("[thresholds\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(p)


def test_config_refuses_both_sampling_parameters_and_the_retired_load_slo(tmp_path: Path):
    """Newer Claude models answer 400 to temperature and top_p together; the load SLO is on time to first token."""
    p = tmp_path / "gate.toml"
    p.write_text("[models]\ntemperature = 0.2\ntop_p = 0.9\n")
    with pytest.raises(InputError, match=r"set models\.temperature or models\.top_p, not both"):
        load_config(p)
    p.write_text("[models]\ntemperature = 0.3\n\n[load]\nslo_p95_ms = 450\n")
    with pytest.raises(InputError) as ei:
        load_config(p)
    assert "load.slo_p95_ms: unknown key" in str(ei.value)


def test_shipped_config_is_valid():
    cfg = load_config(Path("golden/gate.toml"))
    assert cfg.thresholds.faithfulness == 0.85 and cfg.thresholds.relevance == 0.90
    assert cfg.thresholds.similarity == 0.82 and cfg.thresholds.hallucination_rate == 0.02
    assert cfg.thresholds_for("regression").hallucination_rate_high_stakes == 0.0
    assert cfg.thresholds_for("regression", "local").similarity == cfg.embedders["local"].similarity_threshold
    assert cfg.price("us.anthropic.claude-3-5-haiku-20241022-v1:0") is not None
    assert (cfg.models.temperature, cfg.models.top_p) == (0.2, None)
    assert (cfg.load.ttft_slo_ms, cfg.load.total_regression_ms, cfg.load.total_regression_pct) == (2000, 250, 10)


def test_shipped_smoke_subset_is_large_enough_per_suite():
    """The pre-traffic hook and `--tier smoke` run the smoke subset; a suite below min_cases would be ERROR."""
    cfg = load_config(Path("golden/gate.toml"))
    g = load_golden(Path("golden"))
    for suite in g.suites:
        smoke = [c for c in g.suite(suite) if "smoke" in c.tags]
        assert len(smoke) >= cfg.gate.min_cases, suite


def test_one_formatter_names_each_bad_field():
    from pydantic import BaseModel, ValidationError, field_validator

    from evalgate.core.errors import format_validation_error

    class Spec(BaseModel):
        name: str
        size: int

        @field_validator("size")
        @classmethod
        def positive(cls, v: int) -> int:
            if v <= 0:
                raise ValueError("must be positive")
            return v

    with pytest.raises(ValidationError) as bad:
        Spec.model_validate({"size": 0})
    assert format_validation_error(bad.value) == ["name: Field required", "size: must be positive"]
    assert format_validation_error(bad.value, prefix="variants.a.")[1] == "variants.a.size: must be positive"
    with pytest.raises(ValidationError) as whole:
        Spec.model_validate(3)
    assert format_validation_error(whole.value, root="(document)")[0].startswith("(document): ")
    assert not format_validation_error(whole.value, root="")[0].startswith(":")
