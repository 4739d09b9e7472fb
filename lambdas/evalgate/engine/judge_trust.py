"""What a judged run does so its verdict can be trusted (README "Judges you can trust").

- **The judge must be calibrated** (:mod:`evalgate.engine.judge_calibration`): :func:`calibration_gate` turns the
  checks of
  every judge a run uses into a refusal (exit 4) or review reasons, per ``[judge_calibration] on_failure``.
- **The judge checks itself**: :func:`retest_targets` picks every borderline answer plus a seeded share of the rest;
  :func:`self_agreement` compares the two judgements (same side of the threshold), with a Wilson interval; below
  ``min_self_agreement`` the verdict is REVIEW: "the judge disagreed with itself on X of N".
- **Verdicts do not flip on noise**: :func:`noise_reviews` — a judged mean within ``noise_z`` standard errors of
  run-to-run noise (measured from repeats, else from the retest) of its threshold is REVIEW, never PASS or FAIL.
- **Flaky cases**: :func:`flaky_cases` lists cases whose verdict differs between repeats.
- **A judge change is not a regression**: :func:`rescore_reasons` says when the baseline was scored by another judge
  or embedder; the CLI then re-scores the baseline's stored answers with the current ones before comparing.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evalgate.core.config import GateConfig
from evalgate.core.gate import with_reviews
from evalgate.core.results import Aggregate, CaseResult, RunResult, Verdict
from evalgate.core.stats import wilson
from evalgate.core.verdicts import EXIT_CODES

if TYPE_CHECKING:  # the run path stays free of scipy (judge_calibration measures with it)
    from evalgate.engine.judge_calibration import JudgeCheck

JUDGED_MEANS = ("faithfulness", "relevance")


# --------------------------------------------------------------------------------------------------- calibration


def calibration_gate(checks: Sequence[JudgeCheck], config: GateConfig) -> str | None:
    """The refusal message (exit 4) when a judge fails its check and ``on_failure = "error"``; None otherwise
    (with ``"review"`` the failed checks become review reasons through :func:`recorded_reviews`)."""
    problems = [p for c in checks for p in c.problems]
    if problems and config.judge_calibration.on_failure == "error":
        return "the judge may not gate this run: " + " | ".join(problems)
    return None


def recorded_reviews(run: RunResult) -> list[str]:
    """Review reasons a run record carries beyond its aggregates: an untrusted judge (``on_failure = "review"``)
    and a refused baseline comparison. The CLI applies them to a run, ``evalgate merge`` to the merged shards."""
    out = [f"untrusted judge: {p}" for c in run.judge_calibration if not c.get("ok") for p in c.get("problems", [])]
    rescored = (run.baseline or {}).get("rescored")
    if isinstance(rescored, dict) and rescored.get("refused"):
        out.append(f"baseline comparison refused: {rescored['refused']}")
    return out


def evaluation_job_check(identity: dict[str, Any]) -> JudgeCheck:
    """Bedrock's built-in evaluators use Bedrock's rubrics, which evalgate cannot measure against its labels."""
    from evalgate.engine.judge_calibration import JudgeCheck

    return JudgeCheck(
        identity,
        False,
        [
            f"the Bedrock evaluation job's evaluator {identity.get('model_id')} grades with Bedrock's built-in "
            "rubrics, which `evalgate calibrate` cannot measure; judge release candidates with the heavy judge "
            '([release] evaluation_job = false) or set [judge_calibration] on_failure = "review"'
        ],
    )


# --------------------------------------------------------------------------------------------------- retest


def _draw(seed: int, case_id: str, rubric: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, case, rubric): the same answers are retested on every rerun and
    in every shard, so merged shards retest exactly what the whole run would."""
    return int(hashlib.sha256(f"{seed}\x00{case_id}\x00{rubric}".encode()).hexdigest()[:15], 16) / 16**15


def retest_targets(
    first: dict[tuple[str, str], tuple[float, float]], margin: float, config: GateConfig
) -> tuple[list[tuple[str, str]], int]:
    """(case id, rubric) pairs to judge a second time, from {pair: (first score, threshold)}: every borderline one
    (within ``margin`` of its threshold) plus a seeded ``retest_share`` of the rest. Returns (pairs, borderline)."""
    border = sorted(k for k, (v, t) in first.items() if abs(v - t) <= margin)
    rest = sorted(k for k in first if k not in set(border) and _sampled(k, config))
    return border + rest, len(border)


def retest_wanted(key: tuple[str, str], score: float, threshold: float, margin: float, config: GateConfig) -> bool:
    """Whether :func:`retest_targets` picks this first judgement (``key`` = (case id, rubric)): a run can start the
    retest as soon as the first judgement is in, instead of in a wave after the last one."""
    return abs(score - threshold) <= margin or _sampled(key, config)


def _sampled(key: tuple[str, str], config: GateConfig) -> bool:
    return _draw(config.gate.seed, *key) < config.judge_calibration.retest_share


def self_agreement(
    pairs: Sequence[tuple[str, str, float | None, float | None, float]],
    n_borderline: int,
    judge: dict[str, Any] | None,
    config: GateConfig,
) -> dict[str, Any]:
    """Test-retest of the judge: ``pairs`` = (case id, rubric, first score, second score, threshold). Two judgements
    agree when both fall on the same side of the threshold. Unscored retests are counted, not compared."""
    compared = [(cid, rub, float(a), float(b), t) for cid, rub, a, b, t in pairs if a is not None and b is not None]
    agreed = sum(1 for _, _, a, b, t in compared if (a >= t) == (b >= t))
    iv = wilson(agreed, len(compared), config.gate.confidence)
    diffs = [abs(a - b) for _, _, a, b, _ in compared]
    sq = [(a - b) ** 2 for _, _, a, b, _ in compared]
    floor = config.judge_calibration.min_self_agreement
    return {
        "judge": judge,
        "n": len(compared),
        "borderline": n_borderline,
        "random": len(pairs) - n_borderline,
        "unscored": len(pairs) - len(compared),
        "agreed": agreed,
        "disagreed": len(compared) - agreed,
        "rate": iv.value,
        "ci_low": iv.low,
        "ci_high": iv.high,
        "floor": floor,
        "mean_abs_diff": sum(diffs) / len(diffs) if diffs else None,
        # One judgement's noise SD: the difference of two has variance 2 sigma^2.
        "noise_sd": math.sqrt(sum(sq) / (2 * len(sq))) if sq else None,
        "disagreements": [f"{cid}.{rub}" for cid, rub, a, b, t in compared if (a >= t) != (b >= t)],
        "below_floor": iv.value is not None and iv.value < floor,
        "pairs": [list(p) for p in pairs],  # (case, rubric, first, second, threshold): merged shards recompute
    }


def merge_self_agreement(records: Sequence[dict[str, Any] | None], config: GateConfig) -> dict[str, Any] | None:
    """The self-agreement of a run from its shards' records (recomputed from their pairs)."""
    present = [r for r in records if r]
    if not present:
        return None
    pairs = [(str(p[0]), str(p[1]), p[2], p[3], float(p[4])) for r in present for p in r.get("pairs", [])]
    return self_agreement(pairs, sum(int(r.get("borderline", 0)) for r in present), present[0].get("judge"), config)


def self_agreement_reviews(record: dict[str, Any] | None) -> list[str]:
    if not record or not record.get("below_floor"):
        return []
    shown = ", ".join(record["disagreements"][:8]) + (" ..." if len(record["disagreements"]) > 8 else "")
    return [
        f"the judge disagreed with itself on {record['disagreed']} of {record['n']} re-judged answers (agreement "
        f"{record['rate']:.2f} [{record['ci_low']:.2f}, {record['ci_high']:.2f}], floor {record['floor']:g}): {shown}"
    ]


# --------------------------------------------------------------------------------------------------- noise band


def _within_case_sd(results: Sequence[CaseResult], metric: str) -> tuple[float | None, int]:
    """Pooled within-case SD of a metric across repeats, and the number of repeats per case."""
    ss = 0.0
    dof = 0
    k = 1
    for r in results:
        mv = r.metrics.get(metric)
        per = mv.details.get("per_repeat") if mv is not None and mv.details else None
        if isinstance(per, list) and len(per) > 1:
            vals = [float(v) for v in per]
            m = sum(vals) / len(vals)
            ss += sum((v - m) ** 2 for v in vals)
            dof += len(vals) - 1
            k = max(k, len(vals))
    return (math.sqrt(ss / dof), k) if dof else (None, 1)


def noise_reviews(
    aggregates: Sequence[Aggregate],
    results: Sequence[CaseResult],
    retest: dict[str, Any] | None,
    config: GateConfig,
) -> tuple[list[str], set[tuple[str, str]]]:
    """Review reasons for gated judged means within run-to-run noise of their threshold, and those (suite, metric)
    pairs. Noise: within-case SD across repeats when there are repeats, else the judge's retest noise."""
    z = config.judge_calibration.noise_z
    out: list[str] = []
    noisy: set[tuple[str, str]] = set()
    for a in aggregates:
        if a.metric not in JUDGED_MEANS or a.threshold is None or a.value is None or a.n < 1:
            continue
        if a.status not in ("pass", "fail", "borderline"):
            continue
        group = [r for r in results if r.suite == a.suite]
        sd, k = _within_case_sd(group, a.metric)
        source = f"{k} repeats"
        if sd is None and retest and retest.get("noise_sd") is not None:
            sd, k, source = float(retest["noise_sd"]), 1, "the judge's retest"
        if sd is None:
            continue
        se = sd / math.sqrt(a.n * k)
        if abs(a.value - a.threshold) < z * se:
            noisy.add((a.suite, a.metric))
            out.append(
                f"{a.suite}.{a.metric} = {a.value:.3f} is within run-to-run noise of its threshold {a.threshold:g} "
                f"(±{z * se:.3f}; noise SD {sd:.3f} from {source}): a rerun could flip PASS and FAIL"
            )
    return out, noisy


def decide_with_trust(
    verdict: Verdict,
    aggregates: Sequence[Aggregate],
    results: Sequence[CaseResult],
    retest: dict[str, Any] | None,
    config: GateConfig,
) -> Verdict:
    """The gate's verdict, then the judge's own checks: a FAIL that rests only on aggregates within noise of their
    thresholds becomes REVIEW; a PASS with a noisy aggregate or a self-disagreeing judge becomes REVIEW."""
    noise, noisy = noise_reviews(aggregates, results, retest, config)
    reviews = self_agreement_reviews(retest) + noise
    if verdict.verdict == "FAIL" and noisy:
        failing = {(a.suite, a.metric) for a in aggregates if a.status == "fail"}
        if failing and failing <= noisy:
            return Verdict(
                verdict="REVIEW",
                exit_code=EXIT_CODES["REVIEW"],
                reasons=[*reviews, *(f"within noise: {r}" for r in verdict.reasons)],
            )
    return with_reviews(verdict, reviews)


# --------------------------------------------------------------------------------------------------- repeats


def flaky_cases(results: Sequence[CaseResult]) -> list[dict[str, Any]]:
    """Cases whose verdict differs between repeats, with their pass rate and score spread."""
    return [
        {"case_id": r.id, "suite": r.suite, "pass_rate": r.repeat_pass_rate, "spread": dict(r.score_spread)}
        for r in results
        if r.flaky
    ]


# --------------------------------------------------------------------------------------------------- baseline


def rescore_reasons(baseline: RunResult, judge: dict[str, Any] | None, embedder: dict[str, Any] | None) -> list[str]:
    """Why the baseline's scores are not comparable with this run's: another judge (model or rubric) or embedder."""
    out: list[str] = []
    bj = baseline.judge or None
    if judge is not None and bj is not None:
        keys = ("model_id", "prompt_version", "rubric_sha256")
        if any(bj.get(k) != judge.get(k) for k in keys):
            out.append(
                f"the baseline was judged by {bj.get('model_id')} (rubric {str(bj.get('rubric_sha256'))[:12]}), "
                f"this run by {judge.get('model_id')} (rubric {str(judge.get('rubric_sha256'))[:12]})"
            )
    be = baseline.embedder or None
    if embedder is not None and be is not None and be.get("model_id") != embedder.get("model_id"):
        out.append(f"the baseline's similarity used {be.get('model_id')}, this run {embedder.get('model_id')}")
    return out


def unrescorable(baseline: RunResult, case_ids: set[str]) -> list[str]:
    """Paired cases whose stored answer is missing from the baseline (they cannot be re-scored)."""
    return sorted(c.id for c in baseline.cases if c.id in case_ids and not any(g.output for g in c.generations))


class RetestCache:
    """The run's cache under its own kind for second judgements: a retest is never answered by the first
    judgement, yet an unchanged rerun repeats neither."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def get(self, kind: str, key: dict[str, Any]) -> dict[str, Any] | None:
        hit: dict[str, Any] | None = self.inner.get(f"{kind}-retest", key)
        return hit

    def put(self, kind: str, key: dict[str, Any], value: dict[str, Any]) -> None:
        self.inner.put(f"{kind}-retest", key, value)
