"""Verdict reproducibility: do two runs of the same candidate at the same settings reach the same verdict?

Run: ``python bench/bench_reproducibility.py`` (about a minute; ``--trials`` to change). Writes
bench/results/reproducibility.json; bench/README.md records the figures.

Simulation, through the gate's own path (``runner.gate_results``: aggregates, decide, then the judge checks of
``judge_trust``): N cases with fixed true faithfulness (mean = threshold + d·sigma, spread 0.08 between cases);
each judgement of a case is its true value plus N(0, sigma) judge noise, sigma = 0.05 — the *noise SD* is the
standard deviation of one judged score between two judgements of the same answer, what repeats and the
judge's retest measure. A trial draws the cases, then two independent runs of them; it counts whether both runs
reach the same verdict, and whether one PASSes while the other FAILs (a coin toss).

Configurations: release-like (k = 3 repeats, noise from the repeats) and full-tier-like (k = 1, noise from the
judge's retest of the borderline answers plus 10%), each with the noise band (``noise_z`` = 1.96) and without it
(``noise_z`` = 0: the plain point rule, for comparison).

Goals (issue 19): same verdict in >= 95% of trials when |d| >= 1; closer than that, REVIEW rather than a coin
toss (PASS/FAIL split rate near 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

import numpy as np  # noqa: E402

from evalgate.core.config import GateConfig, load_config  # noqa: E402
from evalgate.core.models import MetricValue  # noqa: E402
from evalgate.core.results import CaseResult  # noqa: E402
from evalgate.engine.judge_trust import retest_targets, self_agreement  # noqa: E402
from evalgate.engine.runner import gate_results  # noqa: E402

SIGMA = 0.05
SPREAD = 0.08
THRESHOLD = 0.85
DISTANCES = (-2.0, -1.5, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0)


def config(noise_z: float) -> GateConfig:
    cfg = load_config(ROOT / "golden" / "gate.toml")
    cfg.gate.bootstrap_resamples = 400  # the verdict uses the point estimate; the interval is only reported
    cfg.judge_calibration.noise_z = noise_z
    return cfg


def one_run(truth: np.ndarray, k: int, rng: np.random.Generator, cfg: GateConfig) -> str:
    judged = truth[:, None] + rng.normal(0.0, SIGMA, size=(len(truth), k))
    cases = []
    for i, row in enumerate(judged):
        details: dict[str, object] = {"per_repeat": [float(x) for x in row]} if k > 1 else {}
        mv = MetricValue(name="faithfulness", value=float(row.mean()), details=details)
        cases.append(
            CaseResult(id=f"c{i}", suite="regression", category="x", expected="answer", metrics={"faithfulness": mv})
        )
    retest = None
    if k == 1:
        first = {(f"c{i}", "faithfulness"): (float(judged[i, 0]), THRESHOLD) for i in range(len(truth))}
        targets, n_border = retest_targets(first, cfg.tiers.borderline_margin, cfg)
        pairs = []
        for cid, rubric in targets:
            i = int(cid[1:])
            pairs.append((cid, rubric, float(judged[i, 0]), float(truth[i] + rng.normal(0.0, SIGMA)), THRESHOLD))
        retest = self_agreement(pairs, n_border, None, cfg)
        retest["below_floor"] = False  # this bench measures the noise band, not the self-agreement floor
    _, _, verdict, _ = gate_results(cases, None, cfg, None, set(), [], None, None, retest=retest)
    return verdict.verdict


def scenario(n: int, k: int, noise_z: float, trials: int, seed: int) -> list[dict[str, Any]]:
    cfg = config(noise_z)
    rng = np.random.default_rng(seed)
    out = []
    for d in DISTANCES:
        same = split = 0
        counts: dict[str, int] = {}
        for _ in range(trials):
            u = rng.normal(0.0, SPREAD, size=n)
            truth = THRESHOLD + d * SIGMA + (u - u.mean())
            a, b = one_run(truth, k, rng, cfg), one_run(truth, k, rng, cfg)
            same += a == b
            split += {a, b} == {"PASS", "FAIL"}
            for v in (a, b):
                counts[v] = counts.get(v, 0) + 1
        out.append(
            {
                "d": d,
                "same_verdict": same / trials,
                "pass_fail_split": split / trials,
                "verdicts": {v: c / (2 * trials) for v, c in sorted(counts.items())},
            }
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=150)
    ap.add_argument("--cases", type=int, default=70)
    ap.add_argument("--seed", type=int, default=19)
    args = ap.parse_args()
    results: dict[str, Any] = {"sigma": SIGMA, "threshold": THRESHOLD, "cases": args.cases, "trials": args.trials}
    ok = True
    for name, k, z in (
        ("k=3, noise band", 3, 1.96),
        ("k=3, point rule", 3, 0.0),
        ("k=1 + retest, noise band", 1, 1.96),
        ("k=1, point rule", 1, 0.0),
    ):
        rows = scenario(args.cases, k, z, args.trials, args.seed)
        results[name] = rows
        far = [r["same_verdict"] for r in rows if abs(r["d"]) >= 1]
        near = [r for r in rows if abs(r["d"]) < 1]
        worst_split = max(r["pass_fail_split"] for r in near)
        print(
            f"\n{name}: same verdict when |d| >= 1: min {min(far):.1%}; |d| < 1: worst PASS/FAIL split "
            f"{worst_split:.1%}"
        )
        for r in rows:
            shown = " ".join(f"{v} {p:.0%}" for v, p in r["verdicts"].items())
            print(f"  d={r['d']:+.2f}  same {r['same_verdict']:.1%}  split {r['pass_fail_split']:.1%}  ({shown})")
        if z > 0:
            ok &= min(far) >= 0.95 and worst_split <= 0.05
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "reproducibility.json").write_text(json.dumps(results, indent=2))
    print(
        f"\ngoals (noise band: >= 95% same verdict at |d| >= 1, <= 5% PASS/FAIL splits closer): "
        f"{'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
