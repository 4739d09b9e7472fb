"""Benchmark: a 10 000-case synthetic golden set evaluated in 1, 2, 4 and 8 shards, each shard a separate
`evalgate run --shard K/N` process, against the loopback Bedrock fake (its own process) at a fixed latency;
then `evalgate merge`. Run: `.venv/bin/python bench/bench_shards.py` (about 6-8 minutes with the defaults;
`--cases 2000` for a quick look).

Per shard count: wall time from starting the shard processes to the last one finishing, the merge time,
speed-up against one shard and efficiency (speed-up / shards); and a check that every merged run reaches the
same verdict and aggregates as the single-process run. The workload per case is one generation (Converse),
one faithfulness judgement (Converse, forced tool) and one Titan embedding of the answer (references are
shared by the synthetic cases, so embedded once). Each shard runs with concurrency 16, so N shards offer
16 x N calls in flight: the speed-up is bounded by the fake's latency only until this machine's CPUs (client
processes plus the fake) saturate, which the output reports (cores, calls per second).

Bounded: every shard has --time-budget and is killed past --max-seconds. Written to bench/results/shards.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]


def _serve(conn: Any, latency: float) -> None:
    from tests.fakes.bedrock_fake import BedrockFake

    with BedrockFake(latency=latency, record=False) as fake:
        conn.send(fake.env())
        while (msg := conn.recv()) != "stop":
            conn.send({"count": fake.count(), "max_in_flight": fake.max_in_flight} if msg == "stats" else None)
            if msg == "reset":
                fake.reset()


class FakeServer:
    def __init__(self, latency: float) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, latency), daemon=True)

    def __enter__(self) -> FakeServer:
        self.proc.start()
        self.env: dict[str, str] = self.conn.recv()
        return self

    def ask(self, msg: str) -> Any:
        self.conn.send(msg)
        return self.conn.recv()

    def __exit__(self, *exc: object) -> None:
        self.conn.send("stop")
        self.proc.join(10)


def write_synthetic(root: Path, n: int) -> Path:
    (root / "knowledge").mkdir(parents=True)
    kb = ["# Policies", ""]
    for i in range(20):
        kb += [f"## kb.p{i}: Policy {i}", f"Items of type {i} can be returned within {10 + i} days of delivery.", ""]
    (root / "knowledge" / "policies.md").write_text("\n".join(kb))
    with open(root / "cases.jsonl", "w") as fh:
        for i in range(n):
            k = i % 20
            fh.write(
                json.dumps(
                    {
                        "id": f"syn-{i:05d}",
                        "category": "returns",
                        "prompt": f"Order {i}: how many days do I have to return an item of type {k}?",
                        "reference": f"Items of type {k} can be returned within {10 + k} days of delivery.",
                        "context": [f"kb.p{k}"],
                    }
                )
                + "\n"
            )
    gate = (ROOT / "golden" / "gate.toml").read_text()
    gate += '\n[suites.regression]\nskip_metrics = ["similarity", "relevance"]\n'
    (root / "gate.toml").write_text(gate)
    return root


def run_shards(golden: Path, out: Path, n: int, env: dict[str, str], max_seconds: float) -> tuple[float, list[int]]:
    procs = []
    t0 = time.perf_counter()
    for k in range(1, n + 1):
        cmd = [
            sys.executable,
            "-m",
            "evalgate",
            "run",
            "--tier",
            "full",
            "--candidate",
            "bedrock",
            "--golden",
            str(golden),
            "--embedder",
            "titan",
            "--no-cache",
            "--no-progress",
            "--concurrency",
            "16",
            "--time-budget",
            str(max_seconds),
            "--out",
            str(out / f"shard-{k}"),
        ]
        if n > 1:
            cmd += ["--shard", f"{k}/{n}"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    codes = []
    for p in procs:
        try:
            p.wait(timeout=max(1.0, max_seconds - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        codes.append(p.returncode)
    return time.perf_counter() - t0, codes


def summary_of(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    return {
        "verdict": data["verdict"]["verdict"],
        "cases": len(data["cases"]),
        # measured latencies differ from run to run by nature; every quality aggregate must match exactly
        "aggregates": {
            f"{a['suite']}.{a['metric']}": a["value"] for a in data["aggregates"] if "latency" not in a["metric"]
        },
        "tokens": data["usage"]["input_tokens"] + data["usage"]["output_tokens"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--latency", type=float, default=0.1, help="seconds per fake call (default 0.1)")
    ap.add_argument("--shards", default="1,2,4,8")
    ap.add_argument("--max-seconds", type=float, default=900.0, help="per shard count (default 900)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "shards.json")
    args = ap.parse_args()
    counts = [int(x) for x in args.shards.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, FakeServer(args.latency) as fake:
        golden = write_synthetic(Path(tmp) / "golden", args.cases)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(fake.env)
        env.update(
            {
                "AWS_CONFIG_FILE": str(Path(tmp) / "none"),
                "AWS_SHARED_CREDENTIALS_FILE": str(Path(tmp) / "none"),
                "AWS_EC2_METADATA_DISABLED": "true",
                "EVALGATE_PROMPTS_DIR": str(ROOT / "prompts"),
                "PYTHONPATH": str(ROOT / "lambdas"),
            }
        )
        reference: dict[str, Any] | None = None
        base_wall: float | None = None
        for n in counts:
            fake.ask("reset")
            out = Path(tmp) / f"n{n}"
            wall, codes = run_shards(golden, out, n, env, args.max_seconds)
            stats = fake.ask("stats")
            row: dict[str, Any] = {
                "shards": n,
                "exit_codes": codes,
                "wall_s": round(wall, 2),
                "calls": stats["count"],
                "fake_max_in_flight": stats["max_in_flight"],
                "calls_per_s": round(stats["count"] / wall, 1),
            }
            if n == 1:
                merged_path = out / "shard-1" / "results.json"
                row["merge_s"] = 0.0
            else:
                t0 = time.perf_counter()
                merge = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "evalgate",
                        "merge",
                        *[str(out / f"shard-{k}" / "results.json") for k in range(1, n + 1)],
                        "--out",
                        str(out / "merged"),
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=args.max_seconds,
                )
                row["merge_s"] = round(time.perf_counter() - t0, 2)
                row["merge_exit"] = merge.returncode
                merged_path = out / "merged" / "results.json"
            if not merged_path.exists():
                row["error"] = "no results (timed out or failed)"
                rows.append(row)
                print(json.dumps(row), flush=True)
                continue
            s = summary_of(merged_path)
            row.update(verdict=s["verdict"], cases=s["cases"], tokens=s["tokens"])
            if reference is None:
                reference, base_wall = s, wall
            else:
                same_aggs = all(
                    (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-9)
                    for a, b in ((s["aggregates"].get(k), v) for k, v in reference["aggregates"].items())
                )
                row["same_as_single_process"] = (
                    s["verdict"] == reference["verdict"] and same_aggs and (s["cases"] == reference["cases"])
                )
            if base_wall:
                row["speedup"] = round(base_wall / wall, 2)
                row["efficiency"] = round(base_wall / wall / n, 2)
                row["speedup_incl_merge"] = round(base_wall / (wall + row["merge_s"]), 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "cases": args.cases,
        "latency_s": args.latency,
        "concurrency_per_shard": 16,
        "cores": os.cpu_count(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
