"""The one composition root (engine/factories.py, and the CLI's candidate specs in cli/common.py): what `run`,
`load`, `shadow-report`, `curate`, `calibrate`, the deployment hooks and the online judge get when they ask for a
candidate, a judge or an embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalgate.adapters.replay import ReplayCandidate
from evalgate.cli.common import embedder_kind, make_candidate, make_embedder
from evalgate.core.config import GateConfig, load_config
from evalgate.core.errors import BudgetExceeded, InputError
from evalgate.core.ports import ToolSpec
from evalgate.engine.cost import CostMeter
from evalgate.engine.factories import make_judge, meter_candidate

from .core_fakes import DictCandidate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> GateConfig:
    return load_config(ROOT / "golden" / "gate.toml")


def test_a_replay_spec_reads_its_recorded_answers(config: GateConfig):
    cand = make_candidate(f"replay:{ROOT / 'golden' / 'responses' / 'baseline.jsonl'}", config)
    assert isinstance(cand, ReplayCandidate) and cand.responses and not cand.live


@pytest.mark.parametrize(
    ("spec", "kw", "message"),
    [
        ("ftp:x", {}, "--candidate: unknown candidate 'ftp:x': use replay:FILE, bedrock, http:URL or lambda:NAME"),
        ("http:", {}, "unknown candidate 'http:'"),  # a kind without its remainder
        (
            "replay:out.jsonl",  # load cannot replay: a load test needs a live target
            {"flag": "--target", "noun": "target", "kinds": ("http", "lambda", "bedrock")},
            "--target: unknown target 'replay:out.jsonl': use http:URL, lambda:NAME[:QUALIFIER] or bedrock",
        ),
        ("bedrock:haiku", {}, "unknown candidate 'bedrock:haiku'"),  # the model comes from --model, not the spec
    ],
)
def test_a_spec_that_names_no_candidate_is_an_input_error_naming_the_flag(
    config: GateConfig, spec: str, kw: dict[str, object], message: str
):
    with pytest.raises(InputError) as err:
        make_candidate(spec, config, **kw)  # type: ignore[arg-type]
    assert message in str(err.value.problems[0])


def test_a_judge_made_under_a_cost_cap_refuses_a_call_it_cannot_price_before_calling_bedrock(config: GateConfig):
    judge = make_judge("no-such-priced-model", meter=CostMeter(config, 1.0), malformed_attempts=2)
    assert judge.malformed_attempts == 2 and judge.model_id == "no-such-priced-model"
    with pytest.raises(BudgetExceeded, match="no-such-priced-model"):
        judge.model.call("system", "user", ToolSpec(name="score", description="d", schema={"type": "object"}))


def test_auto_embeddings_are_local_when_no_model_is_called_and_titan_otherwise():
    assert embedder_kind("auto", judged=False) == "local" and embedder_kind("auto", judged=True) == "titan"
    assert embedder_kind("local", judged=True) == "local" and embedder_kind("titan", judged=False) == "titan"


def test_titan_embeddings_are_metered_under_a_cap_and_the_local_model_is_not(config: GateConfig):
    meter = CostMeter(config, 0.000001)
    titan = make_embedder("titan", config.models.embeddings, max_workers=2, meter=meter)
    with pytest.raises(BudgetExceeded):  # refused by the meter before any Bedrock call
        titan.embed(["a text long enough to cost more than the cap " * 50])
    assert make_embedder("local").name == "local" and not hasattr(make_embedder("local"), "_meter")
    with pytest.raises(ValueError, match="unknown embedder 'none'"):
        make_embedder("none")


def test_a_live_candidate_goes_behind_the_meter_and_a_replay_does_not(config: GateConfig):
    meter = CostMeter(config, 1.0)
    replay = ReplayCandidate(ROOT / "golden" / "responses" / "baseline.jsonl")
    assert meter_candidate(replay, meter, config) is replay
    live = DictCandidate({})
    assert meter_candidate(live, None, config) is live
    metered = meter_candidate(live, meter, config)
    assert metered is not live and metered.identity() == live.identity()
