"""Decision quality of the gate's segment rules and of the live canary, by simulation (issue 14).

Run: `.venv/bin/python bench/bench_decisions.py` (1-3 minutes; `--trials 100 --canary-trials 50` for a
quick look).
Results go to bench/results/decisions.json; bench/README.md records them.

Segments — the gate's own functions (`aggregate_suite`, `compare`, `decide`) on the real golden set's 86
regression cases (their categories and tags). Each case has a latent quality q ~ Beta(14, 2); each run
observes its similarity as q + N(0, sd), sd 0.04 or 0.08 (per-case noise: about 4% or 10% of the cases
flip pass/fail between two runs of the same system); a case fails below the local similarity threshold 0.72.
Scenarios: A/A (answers re-sampled, nothing changed: every non-PASS counts, whatever rule or segment caused
it); 9 cases (10%) of
one category break (their quality halves); a uniform 10% drop of every case's quality; 9 cases broken at
random across segments; one hallucination on a high-stakes case.

Canary — the live judge (`canary_live.look`, i.e. `judge_canary`) at the configured canary (cdk.json: 2 rps
peak, 10% for 10 minutes, capture 25%: interim looks every minute at alpha 0.001, final look at minute 7).
Per answer: quality Beta with mean 0.85 (sd 0.12), hallucination 2%, errors 0.5%, latency lognormal (median
2 s, sigma 0.35), conversion 5% of requests, thumbs up/down on 5% (80% up). Requests per minute are Poisson;
both arms are judged to equal expected counts, as the online judge's sampling policy does. A rollback is any
look failing. Also run at the traffic `evalgate canary-power` says 80% power needs, to check its estimate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

import numpy as np  # noqa: E402

from evalgate.core.config import GateConfig, load_config  # noqa: E402
from evalgate.core.dataset import load_golden  # noqa: E402
from evalgate.core.gate import aggregate_suite, compare, decide  # noqa: E402
from evalgate.core.models import MetricValue  # noqa: E402
from evalgate.core.results import CaseResult, RunResult, Verdict  # noqa: E402
from evalgate.release.canary import CONVERSION, ERROR_RATE, HALLUCINATION, LATENCY, QUALITY, ArmSamples  # noqa: E402
from evalgate.release.canary_live import LiveSettings, look  # noqa: E402
from evalgate.release.canary_power import DEFAULT_EFFECTS, CanaryTraffic, detect  # noqa: E402
from evalgate.release.canary_profile import Profile  # noqa: E402

THRESHOLD = 0.72

# ------------------------------------------------------------------------------------------------ segments


def _gate_config() -> GateConfig:
    cfg = load_config(ROOT / "golden" / "gate.toml")
    cfg.thresholds.similarity = THRESHOLD
    cfg.gate.bootstrap_resamples = 1000
    return cfg


def _run(cases: list[Any], sims: np.ndarray, hallucinated: set[int] | None = None) -> list[CaseResult]:
    out = []
    for i, (c, s) in enumerate(zip(cases, sims, strict=True)):
        fails = [f"similarity {s:.2f} below {THRESHOLD:.2f}"] if s < THRESHOLD else []
        hal = bool(hallucinated and i in hallucinated)
        if hal:
            fails.insert(0, "hallucination: number not in the cited knowledge: 60")
        out.append(
            CaseResult(
                id=c.id,
                suite="regression",
                category=c.category,
                tags=list(c.tags),
                expected="answer",
                metrics={"similarity": MetricValue(name="similarity", value=float(s))},
                status="fail" if fails else "pass",
                failures=fails,
                hallucinated=hal,
                unsupported_claims=["number not in the cited knowledge: 60"] if hal else [],
            )
        )
    return out


def _verdict(cand: list[CaseResult], base: list[CaseResult], cfg: GateConfig) -> tuple[str, list[str]]:
    baseline = RunResult(
        run_id="b", started_at="", finished_at="", tool_version="", tier="sim", suites=["regression"],
        candidate={}, cases=base, verdict=Verdict(verdict="PASS", exit_code=0),
    )  # fmt: skip
    aggs = aggregate_suite(cand, "regression", cfg, None, set())
    comps = compare(cand, baseline, cfg)
    verdict, _ = decide(aggs, comps, None, None, cand, cfg)
    return verdict.verdict, verdict.reasons


def bench_segments(trials: int, noise: float, seed: int = 14) -> dict[str, Any]:
    cases = [c for c in load_golden(ROOT / "golden").cases if c.suite == "regression"]
    n = len(cases)
    cfg = _gate_config()
    rng = np.random.default_rng(seed)
    cats = sorted({c.category for c in cases})
    big = [k for k in cats if sum(c.category == k for c in cases) >= 9]
    high = [i for i, c in enumerate(cases) if "high_stakes" in c.tags]
    k_break = round(0.10 * n)
    counts: dict[str, int] = {s: 0 for s in ("aa", "segment", "uniform", "scattered", "high_stakes")}
    churn: list[int] = []
    named = 0
    t0 = time.perf_counter()
    for _ in range(trials):
        q = rng.beta(14, 2, size=n)

        def observe(true: np.ndarray) -> np.ndarray:
            return np.clip(true + rng.normal(0, noise, size=n), 0, 1)

        base = _run(cases, observe(q))
        aa = _run(cases, observe(q))
        churn.append(sum(a.status != b.status for a, b in zip(aa, base, strict=True)))
        counts["aa"] += _verdict(aa, base, cfg)[0] != "PASS"
        cat = big[rng.integers(len(big))]
        members = [i for i, c in enumerate(cases) if c.category == cat]
        broken = q.copy()
        broken[rng.choice(members, size=k_break, replace=False)] *= 0.5
        name, reasons = _verdict(_run(cases, observe(broken)), base, cfg)
        counts["segment"] += name != "PASS"
        named += any(r.startswith(f"{cat}:") or f" {cat}:" in r for r in reasons)
        counts["uniform"] += _verdict(_run(cases, observe(q * 0.9)), base, cfg)[0] != "PASS"
        scattered = q.copy()
        scattered[rng.choice(n, size=k_break, replace=False)] *= 0.5
        counts["scattered"] += _verdict(_run(cases, observe(scattered)), base, cfg)[0] != "PASS"
        one = {int(rng.choice(high))}
        counts["high_stakes"] += _verdict(_run(cases, observe(q), one), base, cfg)[0] == "FAIL"
    return {
        "trials": trials,
        "noise_sd": noise,
        "cases": n,
        "broken_cases": k_break,
        "aa_cases_flipping_mean": round(float(np.mean(churn)), 1),
        "aa_false_non_pass": round(counts["aa"] / trials, 3),
        "one_segment_10pct_blocked": round(counts["segment"] / trials, 3),
        "one_segment_named_in_reasons": round(named / trials, 3),
        "uniform_10pct_drop_blocked": round(counts["uniform"] / trials, 3),
        "scattered_10pct_blocked": round(counts["scattered"] / trials, 3),
        "one_high_stakes_hallucination_fails": round(counts["high_stakes"] / trials, 3),
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ------------------------------------------------------------------------------------------------ canary


def _arm(
    rng: np.random.Generator, version: str, minutes: int, rpm: float, judge_p: float, prof: Profile,
    shift: dict[str, float],
) -> list[ArmSamples]:  # fmt: skip
    """Cumulative samples after each minute (what the live judge sees at each look)."""
    a_q = prof.quality_mean * 7.85  # Beta(6.67, 1.18): mean 0.85, sd 0.12
    b_q = 7.85 - a_q
    out: list[ArmSamples] = []
    acc = ArmSamples(version=version)
    for _ in range(minutes):
        req = int(rng.poisson(rpm))
        judged = int(rng.binomial(req, judge_p))
        if judged:
            qual = np.clip(rng.beta(a_q, b_q, size=judged) - shift.get(QUALITY, 0.0), 0, 1)
            acc.quality.append(float(qual.mean()))
        lat = rng.lognormal(np.log(prof.latency_median_ms), prof.latency_sigma, size=req) + shift.get(LATENCY, 0.0)
        if req:
            acc.latency.append(float(lat.mean()))
        acc.scored += judged
        acc.judged += judged
        acc.hallucination_n += judged
        acc.hallucinations += int(rng.binomial(judged, prof.hallucination_rate + shift.get(HALLUCINATION, 0.0)))
        acc.requests += req
        acc.errors += int(rng.binomial(req, prof.error_rate + shift.get(ERROR_RATE, 0.0)))
        conv_n = int(rng.binomial(req, prof.conversion_share))
        acc.conversion_n += conv_n
        acc.conversions += int(rng.binomial(conv_n, prof.conversion_rate - shift.get(CONVERSION, 0.0)))
        fb_n = int(rng.binomial(req, prof.feedback_share))
        acc.feedback_n += fb_n
        acc.feedback_up += int(rng.binomial(fb_n, prof.feedback_up))
        out.append(replace(acc, quality=list(acc.quality), latency=list(acc.latency)))
    return out


def simulate_canary(
    rng: np.random.Generator, traffic: CanaryTraffic, settings: LiveSettings, prof: Profile, shift: dict[str, float],
    trials: int,
) -> dict[str, Any]:  # fmt: skip
    w = traffic.window_minutes
    judge_c = traffic.capture_rate
    judge_b = traffic.capture_rate * traffic.canary_per_min / traffic.baseline_per_min  # equal expected judged
    rolled = interim = 0
    culprits: dict[str, int] = {}
    for _ in range(trials):
        base = _arm(rng, "1", w, traffic.baseline_per_min, judge_b, prof, {})
        can = _arm(rng, "2", w, traffic.canary_per_min, judge_c, prof, shift)
        for minute in range(w):
            final = minute == w - 1
            value, _, details = look(base[minute], can[minute], settings, final)
            if value:
                rolled += 1
                interim += not final
                for r in details["results"]:
                    if r["status"] in ("fail", "nodata"):
                        culprits[r["metric"]] = culprits.get(r["metric"], 0) + 1
                break
    return {
        "rolled_back": round(rolled / trials, 3),
        "at_an_interim_look": round(interim / trials, 3),
        "by_metric": {k: round(v / trials, 3) for k, v in sorted(culprits.items())},
    }


SCENARIOS: dict[str, tuple[str, dict[str, float]]] = {
    "A/A (new = old)": ("", {}),
    "quality -0.05": ("quality -0.05", {QUALITY: 0.05}),
    "quality -0.10": ("quality -0.10", {QUALITY: 0.10}),
    "hallucination 2% -> 6%": ("hallucination 2% -> 6%", {HALLUCINATION: 0.04}),
    "latency +120 ms": ("latency +120 ms on every answer (the p95 incident)", {LATENCY: 120.0}),
    "errors 0.5% -> 2%": ("errors 0.5% -> 2%", {ERROR_RATE: 0.015}),
    "conversion -0.5 point": ("conversion -0.5 point (abort rule)", {CONVERSION: 0.005}),
}


def bench_canary(trials: int, seed: int = 15) -> dict[str, Any]:
    ctx = json.loads((ROOT / "cdk.json").read_text())["context"]
    traffic = CanaryTraffic(
        peak_rps=float(ctx["peakRps"]),
        canary_percent=float(ctx["canaryPercent"]),
        interval_minutes=int(ctx["canaryIntervalMinutes"]),
        capture_rate=float(ctx["featureFlags"]["capture"]["sample_rate"]),
    )
    settings = LiveSettings(
        "app", "group", traffic.interval_minutes, int(ctx["minJudgedSamples"]),
        total_regression_ms=ctx.get("totalRegressionMs"), total_regression_pct=ctx.get("totalRegressionPct"),
    )  # fmt: skip
    cfg = settings.config()
    prof = Profile()
    power = {d.effect.label: d for d in detect(traffic, prof, cfg)}
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"trials": trials, "traffic": traffic.__dict__, "window_minutes": traffic.window_minutes}
    rows: dict[str, Any] = {}
    for name, (label, shift) in SCENARIOS.items():
        row = simulate_canary(rng, traffic, settings, prof, shift, trials)
        d = power.get(label)
        if d is not None:
            row["predicted_power"] = round(d.power, 3)
            row["traffic_for_80pct"] = round(d.scale_for_80, 1) if d.scale_for_80 else None
            # check the prediction: simulate the live judge at the traffic the power model says 80% needs
            if d.scale_for_80:
                busy = replace(traffic, peak_rps=traffic.peak_rps * d.scale_for_80)
                row["rolled_back_at_that_traffic"] = simulate_canary(
                    rng, busy, settings, prof, shift, max(50, trials // 2)
                )["rolled_back"]
        rows[name] = row
        print(f"  canary {name}: {json.dumps(row)}", flush=True)
    out["scenarios"] = rows
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=400, help="segment trials per scenario")
    ap.add_argument("--canary-trials", type=int, default=200, help="canary trials per scenario")
    ap.add_argument("--part", choices=["all", "segments", "canary"], default="all")
    args = ap.parse_args()
    results: dict[str, Any] = {}
    if args.part in ("all", "segments"):
        results["segments"] = [bench_segments(args.trials, noise) for noise in (0.04, 0.08)]
        for row in results["segments"]:
            print("segments:", json.dumps(row), flush=True)
    if args.part in ("all", "canary"):
        results["canary"] = bench_canary(args.canary_trials)
    dest = ROOT / "bench" / "results"
    dest.mkdir(exist_ok=True)
    (dest / "decisions.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("effects:", ", ".join(e.label for e in DEFAULT_EFFECTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
