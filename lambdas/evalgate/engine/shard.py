"""Scale past one machine: ``--shard k/n`` evaluates a deterministic slice of the cases; ``evalgate merge``
combines the shards' ``results.json`` files into one run and gates the union.

A case belongs to shard ``sha256(case id) mod n + 1``: stable across machines, runs and Python versions,
independent of file order, and balanced for any realistic number of cases. Every shard records what it was
(``shard``: index, count, how many cases the tier selected before sharding), the config fingerprint, the
candidate, judge, embedder, tier, repeats, commit and baseline; ``merge`` refuses shards that disagree on any
of these, duplicated or missing shard indexes, overlapping cases, or a union smaller than the selection.

The merged run is re-gated from the per-case results with the same code as a single run (aggregates,
safety suites, paired comparisons with ``--baseline``); drift and diversity are exact too, because each
case keeps its drift terms and each shard the sum of its answer embeddings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from evalgate.core import results
from evalgate.core.config import GateConfig, config_fingerprint, config_from_dump
from evalgate.core.errors import InputError, Problem
from evalgate.core.gate import review_on_mismatch, with_reviews
from evalgate.core.results import CaseResult, Comparison, Drift, RunResult, Usage, run_identity
from evalgate.engine.judge_trust import flaky_cases, merge_self_agreement, recorded_reviews
from evalgate.engine.runner import diversity_of, drift_of, gate_results, hallucination_list

MAX_SHARDS = 1000


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=_HasId)


def parse_shard(spec: str) -> tuple[int, int]:
    """``"k/n"`` -> (k, n) with 1 <= k <= n <= 1000; InputError otherwise."""
    k_s, sep, n_s = spec.partition("/")
    try:
        k, n = int(k_s), int(n_s)
    except ValueError:
        k = n = 0
    if not sep or not 1 <= k <= n <= MAX_SHARDS:
        raise InputError.single(
            "--shard", None, f"'{spec}' is not K/N with 1 <= K <= N <= {MAX_SHARDS} (e.g. --shard 2/4)"
        )
    return k, n


def shard_of(case_id: str, count: int) -> int:
    """The 1-based shard a case id belongs to among ``count`` shards."""
    return int(hashlib.sha256(case_id.encode()).hexdigest()[:16], 16) % count + 1


def select_shard(cases: Sequence[T], index: int, count: int) -> list[T]:
    return [c for c in cases if shard_of(c.id, count) == index]


def shard_record(index: int, count: int, all_cases: Sequence[_HasId]) -> dict[str, Any]:
    """What a shard records: its index and count, how many cases the run selected before sharding, and the
    positions of its cases in that selection (so a merge restores the original order exactly)."""
    positions = [i for i, c in enumerate(all_cases) if shard_of(c.id, count) == index]
    return {
        "index": index,
        "count": count,
        "cases_total": len(all_cases),
        "cases": len(positions),
        "positions": positions,
    }


def load_result(path: Path) -> RunResult:
    return results.load_result(path, "shard's results.json")


# Fields every shard of one run must share, with how to name them in an error.
_SAME: tuple[tuple[str, str], ...] = (
    ("config_sha256", "gate config"),
    ("candidate", "candidate"),
    ("tier", "tier"),
    ("repeats", "repeats"),
    ("judge", "judge"),
    ("embedder", "embedder"),
    ("commit", "commit"),
    ("baseline", "baseline"),
)


def check_shards(shards: Sequence[tuple[Path, RunResult]], config: GateConfig | None = None) -> list[Problem]:
    """Everything that makes these results not the shards of one run (empty list: they are)."""
    problems: list[Problem] = []
    if not shards:
        return [Problem("merge", None, "no results.json files given")]
    first_path, first = shards[0]
    for path, r in shards:
        if not r.shard:
            problems.append(Problem(str(path), None, "not a shard: it was not run with --shard K/N"))
    if problems:
        return problems
    counts = {int(r.shard["count"]) for _, r in shards if r.shard}
    if len(counts) > 1:
        problems.append(Problem("merge", None, f"shards of different splits: counts {sorted(counts)}"))
    for path, r in shards[1:]:
        for name, label in _SAME:
            a, b = getattr(first, name), getattr(r, name)
            if name == "config_sha256" and (a is None or b is None):
                a = config_fingerprint(first.config)
                b = config_fingerprint(r.config)
            if a != b:
                problems.append(
                    Problem(str(path), None, f"{label} differs from {first_path}: {_brief(b)} vs {_brief(a)}")
                )
    if config is not None:
        given = config.fingerprint()
        recorded = first.config_sha256 or config_fingerprint(first.config)
        if given != recorded:
            problems.append(Problem("--config", None, "the gate config differs from the one the shards ran with"))
    seen: dict[int, Path] = {}
    for path, r in shards:
        assert r.shard is not None
        k = int(r.shard["index"])
        if k in seen:
            problems.append(Problem(str(path), None, f"shard {k} given twice (also {seen[k]})"))
        seen[k] = path
    if len(counts) == 1:
        n = counts.pop()
        missing = sorted(set(range(1, n + 1)) - set(seen))
        if missing:
            problems.append(Problem("merge", None, f"missing shard(s) {', '.join(map(str, missing))} of {n}"))
    owner: dict[str, Path] = {}
    for path, r in shards:
        for c in r.cases:
            if c.id in owner:
                problems.append(Problem(str(path), None, f"case '{c.id}' is also in {owner[c.id]}"))
            owner[c.id] = path
    totals = {int(r.shard["cases_total"]) for _, r in shards if r.shard}
    if len(totals) > 1:
        problems.append(Problem("merge", None, f"shards selected different case sets: {sorted(totals)} cases"))
    elif totals and not problems:
        total = totals.pop()
        if len(owner) != total:
            problems.append(Problem("merge", None, f"the shards hold {len(owner)} cases; the run selected {total}"))
    return problems


def _brief(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _merge_usage(usages: Sequence[Usage]) -> Usage:
    u = Usage()
    for x in usages:
        u.model_calls += x.model_calls
        u.cache_hits += x.cache_hits
        u.input_tokens += x.input_tokens
        u.output_tokens += x.output_tokens
        u.cost_usd += x.cost_usd
        for model, stats in x.by_model.items():
            m = u.by_model.setdefault(model, {})
            for k, v in stats.items():
                m[k] = m.get(k, 0) + v
    return u


def merge_results(
    shards: Sequence[tuple[Path, RunResult]], baseline: RunResult | None = None, config: GateConfig | None = None
) -> RunResult:
    """One RunResult from the shards of a run, re-gated on the union (InputError when they do not fit)."""
    problems = check_shards(shards, config)
    first = shards[0][1] if shards else None
    if first is not None and first.baseline and baseline is None:
        problems.append(Problem("--baseline", None, "the shards were compared with a baseline: pass the same one"))
    if (
        first is not None
        and baseline is not None
        and first.baseline
        and first.baseline.get("run_id") != baseline.run_id
    ):
        problems.append(
            Problem("--baseline", None, f"run {baseline.run_id} is not the baseline the shards used ({first.baseline})")
        )
    if problems:
        raise InputError(problems)
    assert first is not None
    ordered = sorted(shards, key=lambda s: int((s[1].shard or {}).get("index", 0)))
    cfg = config_from_dump(first.config)
    suites = sorted({s for _, r in ordered for s in r.suites})
    cases = _in_run_order(ordered, suites)
    fatal = [
        f"shard {(r.shard or {}).get('index')}/{(r.shard or {}).get('count')}: {f}" for _, r in ordered for f in r.fatal
    ]
    not_run: list[dict[str, str]] = []
    for _, r in ordered:
        for item in r.not_run:
            if item not in not_run:
                not_run.append(item)
    embedder_name = first.embedder.get("name") if first.embedder else None
    drift = drift_of(cases, cfg)
    if drift is None and baseline is None:
        noise = [c.drift_noise for c in cases if c.drift_noise is not None]
        if noise:
            drift = Drift(noise=sum(noise) / len(noise), noise_measured=True, threshold=cfg.gate.drift_threshold)
    sums = [r.diversity for _, r in ordered if r.diversity is not None and r.diversity.vector_sum is not None]
    vector_sum: list[float] | None = None
    n_vectors = 0
    if sums and len(sums) == sum(1 for _, r in ordered if r.diversity is not None):
        dims = {len(d.vector_sum or []) for d in sums}
        if len(dims) == 1:
            vector_sum = [sum(col) for col in zip(*(d.vector_sum or [] for d in sums), strict=True)]
            n_vectors = sum(d.n_vectors for d in sums)
    outputs = [c.output for c in cases if c.output]
    diversity = diversity_of(outputs, vector_sum, n_vectors, baseline, cfg, keep_sum=vector_sum is not None)
    retest = merge_self_agreement([r.self_agreement for _, r in ordered], cfg)
    if all(r.skipped for _, r in ordered):
        verdict = first.verdict
        aggregates, unscored = first.aggregates, first.unscored
        comparisons: list[Comparison] = []
    else:
        aggregates, comparisons, verdict, unscored = gate_results(
            cases, baseline, cfg, embedder_name, {n["metric"] for n in not_run}, fatal, drift, diversity, retest
        )
        verdict = with_reviews(verdict, recorded_reviews(first))
    mismatch = list(dict.fromkeys(m for _, r in ordered for m in r.baseline_mismatch))
    review_on_mismatch(verdict, mismatch)
    spent = [float((r.cost or {}).get("spent_usd") or 0.0) for _, r in ordered]
    now = datetime.now(UTC).isoformat()
    return RunResult(
        **run_identity(min(r.started_at for _, r in ordered), max(max(r.finished_at for _, r in ordered), now)),
        tier=first.tier,
        suites=suites,
        candidate=first.candidate,
        judge=first.judge,
        embedder=first.embedder,
        baseline=first.baseline,
        repeats=first.repeats,
        config=first.config,
        config_sha256=first.config_sha256 or config_fingerprint(first.config),
        not_run=not_run,
        cases=cases,
        aggregates=aggregates,
        comparisons=comparisons,
        drift=drift,
        diversity=diversity,
        unscored=unscored,
        usage=_merge_usage([r.usage for _, r in ordered]),
        hallucinations=hallucination_list(cases),
        verdict=verdict,
        baseline_mismatch=mismatch,
        commit=first.commit,
        tier_decision=first.tier_decision,
        skipped=all(r.skipped for _, r in ordered),
        merged_from=[
            {
                "path": str(p),
                "run_id": r.run_id,
                "shard": r.shard,
                "cases": len(r.cases),
                "verdict": r.verdict.verdict,
            }
            for p, r in ordered
        ],
        escalation=_merge_escalation([r.escalation for _, r in ordered]),
        cost={"spent_usd": round(sum(spent), 6), "shards": [r.cost for _, r in ordered]}
        if any(r.cost for _, r in ordered)
        else None,
        guardrail=first.guardrail,
        evaluation_jobs=[j for _, r in ordered for j in r.evaluation_jobs],
        fatal=fatal,
        dataset_sha256=first.dataset_sha256 if len({r.dataset_sha256 for _, r in ordered}) == 1 else None,
        judge_calibration=first.judge_calibration,
        self_agreement=retest,
        flaky=flaky_cases(cases),
    )


def _in_run_order(ordered: Sequence[tuple[Path, RunResult]], suites: list[str]) -> list[CaseResult]:
    """The union in the order the unsharded run would have had (from the recorded positions), so aggregates
    and their bootstrap intervals come out identical; by suite and id when positions are missing."""
    placed: list[tuple[int, CaseResult]] = []
    for _, r in ordered:
        positions = (r.shard or {}).get("positions")
        if not isinstance(positions, list) or len(positions) != len(r.cases):
            return sorted((c for _, x in ordered for c in x.cases), key=lambda c: (suites.index(c.suite), c.id))
        placed.extend(zip((int(p) for p in positions), r.cases, strict=True))
    return [c for _, c in sorted(placed, key=lambda t: t[0])]


def _merge_escalation(items: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    present = [i for i in items if i]
    if not present:
        return None
    out = dict(present[0])
    out["cases"] = sorted({c for i in present for c in i.get("cases", [])})
    out["reasons"] = sorted({r for i in present for r in i.get("reasons", [])})
    out["calls"] = sum(int(i.get("calls", 0)) for i in present)
    return out
