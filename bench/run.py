"""Benchmarks of the evaluation engine (issue 2). Run: `make bench` or `.venv/bin/python bench/run.py`.

Every figure is a ratio against a bound or a baseline measured in the same run, never an absolute
assertion. Results are printed and written to bench/results/engine.json; bench/README.md records them.

1. throughput   golden-like cases against the loopback Bedrock fake at 200 ms per call, C=16:
                wall time vs the ideal bound calls*L/C (goal >= 0.9 of ideal)
2. warm cache   the same run again with the warm cache: model calls (goal 0) and wall time (goal <= 1.5 s)
3. embeddings   local all-MiniLM-L6-v2 (ONNX Runtime) pairs per second on distinct STS-B pairs (goal >= 300);
                old vs new side by side: bench/bench_embeddings.py
4. A/A, A/B     the gate's decision rules on simulated paired runs: false block rate with candidate =
                baseline re-drawn (goal <= 5%), block rate with a 10% regression at N=100 (goal >= 80%)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

import numpy as np  # noqa: E402

from evalgate.core.config import GateConfig, load_config  # noqa: E402
from evalgate.core.dataset import Golden  # noqa: E402
from evalgate.core.gate import aggregate_suite, compare, decide  # noqa: E402
from evalgate.core.models import Case, KnowledgeEntry, MetricValue  # noqa: E402
from evalgate.core.prompts import load_prompt  # noqa: E402
from evalgate.core.results import CaseResult, RunResult  # noqa: E402
from evalgate.engine.cache import Cache  # noqa: E402
from evalgate.engine.judge import Judge  # noqa: E402
from evalgate.engine.runner import run_evaluation  # noqa: E402


def synthetic_golden(n: int) -> Golden:
    kb = {
        f"kb.{i}": KnowledgeEntry(
            id=f"kb.{i}",
            title=f"Policy {i}",
            text=f"Policy {i}: items of type {i} can be returned within {10 + i % 20} days of delivery for a refund.",
            file="bench",
            line=i,
        )
        for i in range(20)
    }
    cases = [
        Case(
            id=f"b-{i:05d}",
            category="returns",
            prompt=f"Order {i}: how many days do I have to return an item of type {i % 20}?",
            reference=f"For order {i}, items of type {i % 20} can be returned within {10 + i % 20} days.",
            context=[f"kb.{i % 20}"],
        )
        for i in range(n)
    ]
    return Golden(root=ROOT / "golden", knowledge=kb, cases=cases)


def _serve_fake(conn: Any, latency: float) -> None:
    """Child process: run the loopback Bedrock fake (its own interpreter, so no GIL shared with the client)."""
    from tests.fakes.bedrock_fake import BedrockFake

    with BedrockFake(latency=latency) as fake:
        conn.send(fake.env())
        while (msg := conn.recv()) != "stop":
            conn.send(fake.count() if msg == "count" else None)


class FakeProcess:
    def __init__(self, latency: float) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve_fake, args=(child, latency), daemon=True)

    def __enter__(self) -> FakeProcess:
        self.proc.start()
        self.env: dict[str, str] = self.conn.recv()
        self.saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        return self

    def count(self) -> int:
        self.conn.send("count")
        return int(self.conn.recv())

    def __exit__(self, *exc: object) -> None:
        self.conn.send("stop")
        self.proc.join(10)
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def bench_throughput(n: int, latency: float, concurrency: int) -> dict[str, object]:
    from evalgate.adapters.bedrock import BedrockCandidate, BedrockJudgeModel, TitanEmbedder

    golden = synthetic_golden(n)
    config = load_config(ROOT / "golden" / "gate.toml")
    out: dict[str, object] = {"cases": n, "latency_s": latency, "concurrency": concurrency}
    with FakeProcess(latency) as fake, tempfile.TemporaryDirectory() as tmp:

        def once(cache: Cache) -> tuple[float, RunResult]:
            cand = BedrockCandidate(config.models.generator, load_prompt("support/v1"))
            judge = Judge(BedrockJudgeModel(config.models.judge), cache=cache)
            emb = TitanEmbedder(config.models.embeddings, max_workers=concurrency)
            t0 = time.perf_counter()
            r = run_evaluation(
                golden=golden,
                cases=golden.cases,
                candidate=cand,
                config=config,
                tier="full",
                judge=judge,
                embedder=emb,
                cache=cache,
                concurrency=concurrency,
            )
            return time.perf_counter() - t0, r

        cache = Cache(Path(tmp) / "cache.sqlite")
        wall, cold = once(cache)
        calls = fake.count()
        ideal = calls * latency / concurrency
        out.update(
            model_calls=calls,
            wall_s=round(wall, 3),
            ideal_s=round(ideal, 3),
            efficiency=round(ideal / wall, 3) if wall else None,
            verdict=cold.verdict.verdict,
        )
        warm_wall, warm = once(cache)
        out.update(
            warm_model_calls=fake.count() - calls,
            warm_wall_s=round(warm_wall, 3),
            warm_vs_cold=round(warm_wall / wall, 3),
            warm_verdict_same=warm.verdict.verdict == cold.verdict.verdict,
        )
    return out


def bench_local_embeddings(pairs: int) -> dict[str, object]:
    from evalgate.adapters.local import LocalEmbedder

    rows = [json.loads(x) for x in (ROOT / "bench/data/stsb_test/stsb_test_sample.jsonl").read_text().splitlines()]
    rows = rows[:pairs]  # distinct sentences: repeats would be deduplicated, not embedded
    emb = LocalEmbedder()
    emb.embed(["warm up"])  # model load is not throughput
    t0 = time.perf_counter()
    a = emb.embed([r["sentence1"] for r in rows])
    b = emb.embed([r["sentence2"] for r in rows])
    dt = time.perf_counter() - t0
    assert len(a) == len(b) == len(rows)
    pairs = len(rows)
    return {"pairs": pairs, "seconds": round(dt, 3), "pairs_per_s": round(pairs / dt, 1), "cores": os.cpu_count()}


def _simulated_run(scores: np.ndarray, config: GateConfig, baseline: RunResult | None) -> RunResult:
    cases = [
        CaseResult(
            id=f"s-{i:04d}",
            suite="regression",
            category="sim",
            expected="answer",
            metrics={"faithfulness": MetricValue(name="faithfulness", value=float(s))},
            status="pass",
        )
        for i, s in enumerate(scores)
    ]
    aggs = aggregate_suite(cases, "regression", config, None, set())
    comps = compare(cases, baseline, config) if baseline else []
    verdict, unscored = decide(aggs, comps, None, None, cases, config)
    return RunResult(
        run_id="sim",
        started_at="",
        finished_at="",
        tool_version="",
        tier="sim",
        suites=["regression"],
        candidate={},
        cases=cases,
        aggregates=aggs,
        comparisons=comps,
        verdict=verdict,
        unscored=unscored,
    )


def bench_decisions(trials: int, n: int, seed: int = 11) -> dict[str, object]:
    """Per-case true quality q ~ Beta(a, b); each run observes q + N(0, noise), clipped to [0, 1]."""
    config = load_config(ROOT / "golden" / "gate.toml")
    config.gate.bootstrap_resamples = 1000
    rng = np.random.default_rng(seed)
    out: dict[str, object] = {"trials": trials, "n": n, "noise_sd": 0.05}
    for label, (a, b), threshold in (("near_threshold", (18, 2), 0.85), ("comparison_only", (40, 1.5), None)):
        cfg = config.model_copy(deep=True)
        cfg.thresholds.faithfulness = threshold
        aa = ab = 0
        for _ in range(trials):
            q = rng.beta(a, b, size=n)

            def observe(true: np.ndarray) -> np.ndarray:
                return np.clip(true + rng.normal(0, 0.05, size=n), 0, 1)

            base = _simulated_run(observe(q), cfg, None)
            if base.verdict.verdict != "PASS":
                continue
            aa += _simulated_run(observe(q), cfg, base).verdict.verdict != "PASS"
            ab += _simulated_run(observe(q * 0.9), cfg, base).verdict.verdict != "PASS"
        out[label] = {
            "true_mean": round(a / (a + b), 3),
            "threshold": threshold,
            "aa_false_block_rate": round(aa / trials, 3),
            "ab_block_rate_10pct": round(ab / trials, 3),
        }
    # Harder reading of "a 10% regression": 10% of the cases break (their score halves), the rest are unchanged.
    cfg = config.model_copy(deep=True)
    cfg.thresholds.faithfulness = None
    blocked = 0
    for _ in range(trials):
        q = rng.beta(40, 1.5, size=n)
        base = _simulated_run(np.clip(q + rng.normal(0, 0.05, size=n), 0, 1), cfg, None)
        broken = q.copy()
        idx = rng.choice(n, size=n // 10, replace=False)
        broken[idx] *= 0.5
        cand = _simulated_run(np.clip(broken + rng.normal(0, 0.05, size=n), 0, 1), cfg, base)
        blocked += cand.verdict.verdict != "PASS"
    out["ten_percent_of_cases_break"] = {
        "threshold": None,
        "block_rate": round(blocked / trials, 3),
        "mean_drop": "about 0.048 (10% of cases x half of ~0.96)",
    }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run of the bench itself)")
    ap.add_argument("--skip-local", action="store_true", help="skip the local embedding model")
    args = ap.parse_args()
    results: dict[str, object] = {}
    n = 32 if args.quick else 96
    results["throughput"] = bench_throughput(n, 0.2, 16)
    print("throughput:", json.dumps(results["throughput"]))
    results["warm_cache_100"] = bench_throughput(100, 0.0 if args.quick else 0.2, 16)
    print("warm cache (100 cases):", json.dumps(results["warm_cache_100"]))
    if not args.skip_local:
        results["local_embeddings"] = bench_local_embeddings(200 if args.quick else 500)
        print("local embeddings:", json.dumps(results["local_embeddings"]))
    results["decisions"] = bench_decisions(50 if args.quick else 400, 100)
    print("decisions:", json.dumps(results["decisions"]))
    dest = ROOT / "bench" / "results"
    dest.mkdir(exist_ok=True)
    (dest / "engine.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
