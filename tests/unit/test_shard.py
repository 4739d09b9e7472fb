"""--shard K/N and merge: deterministic partition, exact re-gating of the union, refusal of shards that do not
belong together."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from evalgate.core.config import load_config
from evalgate.core.dataset import load_golden
from evalgate.core.errors import InputError
from evalgate.core.results import RunResult
from evalgate.engine.judge import Judge
from evalgate.engine.runner import run_evaluation
from evalgate.engine.shard import merge_results, parse_shard, select_shard, shard_of, shard_record

from .core_fakes import DictCandidate, HashEmbedder, ScriptedJudgeModel, case_dict, write_golden


@pytest.mark.parametrize("spec", ["0/3", "4/3", "3", "a/b", "1/0", "1/1001", "-1/2", ""])
def test_bad_shard_specs_are_usage_errors(spec: str):
    with pytest.raises(InputError) as exc:
        parse_shard(spec)
    assert str(exc.value).startswith("--shard: ")


def test_partition_is_deterministic_complete_and_balanced():
    ids = [f"case-{i:05d}" for i in range(10_000)]
    assert parse_shard("3/8") == (3, 8)
    owners = [shard_of(i, 8) for i in ids]
    assert owners == [shard_of(i, 8) for i in ids]  # stable
    counts = Counter(owners)
    assert set(counts) == set(range(1, 9))
    assert max(counts.values()) - min(counts.values()) < 4 * (10_000 / 8) ** 0.5  # ~ binomial spread
    assert sum(len(select_shard([type("C", (), {"id": i})() for i in ids], k, 8)) for k in range(1, 9)) == 10_000


def answers(n: int, bad: set[int]) -> dict[str, str]:
    return {
        f"c-{i:03d}": ("You can return items within 60 days." if i in bad else "You can return items within 30 days.")
        for i in range(n)
    }


def judge_reply(user: str) -> dict[str, object]:
    bad = "60 days" in user
    return {
        "score": 0.5 if bad else 0.95,
        "verdict": "fail" if bad else "pass",
        "reasons": "r",
        "unsupported_claims": ["60 days"] if bad else [],
    }


@pytest.fixture
def golden_dir(tmp_path: Path) -> Path:
    cases = [case_dict(i, prompt=f"How long do I have to return item {i}?") for i in range(40)]
    return write_golden(tmp_path / "golden", cases, gate=Path("golden/gate.toml").read_text())


def run(
    golden_dir: Path,
    cand_answers: dict[str, str],
    baseline: RunResult | None = None,
    shard: tuple[int, int] | None = None,
):
    golden = load_golden(golden_dir)
    config = load_config(golden_dir / "gate.toml")
    cases = golden.cases
    record = None
    if shard is not None:
        record = shard_record(shard[0], shard[1], cases)
        cases = select_shard(cases, *shard)
    r = run_evaluation(
        golden=golden,
        cases=cases,
        candidate=DictCandidate(cand_answers),
        config=config,
        tier="full",
        judge=Judge(ScriptedJudgeModel(judge_reply)),
        embedder=HashEmbedder(),
        baseline=baseline,
        repeats=2,
        keep_vector_sum=shard is not None,
    )
    r.shard = record
    r.commit = "abc123"
    return r


def comparable(r: RunResult) -> dict[str, object]:
    d = json.loads(r.model_dump_json())
    div = d["diversity"] or {}
    for volatile in ("vector_sum", "n_vectors", "dispersion"):  # dispersion: float summation order (approx below)
        div.pop(volatile, None)
    return {
        "verdict": d["verdict"],
        "aggregates": d["aggregates"],
        "comparisons": d["comparisons"],
        "drift": d["drift"],
        "diversity": div,
        "cases": [c["id"] for c in d["cases"]],
        # tokens add up exactly; call counts may not (each shard embeds the texts its cases share)
        "usage": (d["usage"]["input_tokens"], d["usage"]["output_tokens"]),
    }


def test_merged_shards_gate_exactly_like_the_unsharded_run(golden_dir: Path):
    baseline = run(golden_dir, answers(40, set()))
    whole = run(golden_dir, answers(40, {3, 17, 29}), baseline)
    shards = [(Path(f"s{k}.json"), run(golden_dir, answers(40, {3, 17, 29}), baseline, (k, 3))) for k in (1, 2, 3)]
    assert sum(len(r.cases) for _, r in shards) == 40 and all(r.cases for _, r in shards)
    merged = merge_results(shards, baseline)
    assert whole.verdict.verdict == "FAIL"  # hallucinated refund windows
    assert comparable(merged) == comparable(whole)
    sa = whole.self_agreement  # the judge retests the same answers whether the run is sharded or not
    assert sa and merged.self_agreement and sorted(merged.self_agreement["pairs"]) == sorted(sa["pairs"]) and sa["n"]
    assert merged.diversity is not None and merged.diversity.dispersion == pytest.approx(whole.diversity.dispersion)
    assert [m["shard"]["index"] for m in merged.merged_from] == [1, 2, 3]
    assert merged.commit == "abc123" and merged.shard is None


def test_merge_refuses_shards_that_do_not_belong_together(golden_dir: Path, tmp_path: Path):
    good = [(Path(f"s{k}.json"), run(golden_dir, answers(40, set()), None, (k, 2))) for k in (1, 2)]
    merge_results(good)  # fits

    def problems(shards: list[tuple[Path, RunResult]], **kw: object) -> str:
        with pytest.raises(InputError) as exc:
            merge_results(shards, **kw)  # type: ignore[arg-type]
        return str(exc.value)

    assert "missing shard(s) 2 of 2" in problems(good[:1])
    assert "shard 1 given twice" in problems([good[0], good[0], good[1]])
    other = run(golden_dir, answers(40, {1}), None, (2, 2))
    other.candidate = {"name": "dict", "kind": "dict", "name2": "different"}
    assert "candidate differs from s1.json" in problems([good[0], (Path("x.json"), other)])
    moved = good[1][1].model_copy(deep=True)
    moved.commit = "def456"
    assert "commit differs" in problems([good[0], (Path("m.json"), moved)])
    cfg = good[1][1].model_copy(deep=True)
    cfg.config_sha256 = "0" * 64
    assert "gate config differs" in problems([good[0], (Path("c.json"), cfg)])
    three = run(golden_dir, answers(40, set()), None, (3, 3))
    assert "shards of different splits: counts [2, 3]" in problems([good[0], good[1], (Path("t.json"), three)])
    unsharded = run(golden_dir, answers(40, set()))
    assert "not a shard" in problems([(Path("u.json"), unsharded)])
    overlap = good[1][1].model_copy(deep=True)
    overlap.cases = [*overlap.cases, good[0][1].cases[0]]
    assert f"case '{good[0][1].cases[0].id}' is also in s1.json" in problems([good[0], (Path("o.json"), overlap)])
    short = good[1][1].model_copy(deep=True)
    short.cases = short.cases[:-1]
    short.shard = {**(short.shard or {}), "positions": short.shard["positions"][:-1]}  # type: ignore[index]
    assert "the shards hold 39 cases; the run selected 40" in problems([good[0], (Path("h.json"), short)])
    base = run(golden_dir, answers(40, set()))
    compared = [(p, run(golden_dir, answers(40, set()), base, (k, 2))) for k, p in ((1, Path("a")), (2, Path("b")))]
    assert "pass the same one" in problems(compared)
    assert "is not the baseline the shards used" in problems(compared, baseline=good[0][1])
    cfg_file = load_config(Path("golden/gate.toml"))
    cfg_file.gate.min_cases = 9
    assert "--config: the gate config differs" in problems(good, config=cfg_file)
