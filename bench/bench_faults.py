"""Fault bench (issue 15): the real CLI, end to end, against the loopback Bedrock stand-in in its own process.

Run: `make bench-faults` (or `python bench/bench_faults.py`; `--quick` for a smoke run of the bench itself).

Every scenario is `evalgate run --tier full --candidate replay:golden/responses/baseline.jsonl` on the whole golden
set (139 cases) at C = 16, the stand-in answering each call after L = 200 ms; each figure is printed as a ratio
to its bound, measured in the same run:

  clean        end to end (process start to exit, reports written) vs the ideal calls*L/C      goal >= 0.9
  warm         the same run again on the warm cache: 1.0 s / wall                               goal >= 1.0
               (clean and warm: the median of --repeat runs, 5 by default, with the fastest and slowest;
               beside clean, the same number of calls from bare http.client: the stand-in's own floor)
  throttle30   30% of calls answered 429 at random: wall vs the clean wall                    goal <= 2.0
  quota20      token bucket of 20 requests/s (429 at once when empty): calls/20 / wall        goal >= 0.9
  malformed    20% of judge replies prose with broken JSON: verdict == clean verdict, seeds  goal >= 95%
  mixed        30% 429 + 20% malformed + 5% HTTP 500: verdict == clean verdict

Groups (`--only`, default all, each a separate run of a few minutes): `throughput` (clean, warm, throttle30,
quota20, mixed), `botocore` (throttle30 and quota20 again with botocore's own retries on under the policy:
`adaptive` with 5 attempts, `standard` with 3, vs the default of one attempt), `malformed` (the verdict check;
`--attempts 1 2 3` sweeps `judge_malformed_attempts`, which is how its default was chosen).
Results go to bench/results/faults.json; bench/README.md records them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]  # this tree's evalgate, not an installed one

LATENCY = 0.2
CONCURRENCY = 16


def _serve(conn: Any, latency: float, faults: dict[str, Any]) -> None:
    """Child process: the stand-in (its own interpreter: no GIL shared with the CLI under test)."""
    from tests.fakes.bedrock_fake import BedrockFake, Faults

    with BedrockFake(latency=latency, record=False, faults=Faults(**faults)) as fake:
        conn.send(fake.env())
        while conn.recv() != "stop":
            conn.send({"calls": fake.count(), "injected": dict(fake.injected), "max_in_flight": fake.max_in_flight})


class StandIn:
    def __init__(self, latency: float = LATENCY, **faults: Any) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, latency, faults), daemon=True)

    def __enter__(self) -> StandIn:
        self.proc.start()
        self.env: dict[str, str] = self.conn.recv()
        return self

    def stats(self) -> dict[str, Any]:
        self.conn.send("stats")
        out: dict[str, Any] = self.conn.recv()
        return out

    def __exit__(self, *exc: object) -> None:
        self.conn.send("stop")
        self.proc.join(10)


def calibrate_judges(work: Path) -> Path:
    """Calibration records for golden/gate.toml's judges (a judge without one may not gate a run), measured by
    `evalgate calibrate` against the stand-in answering as a judge that agrees with the human labels."""
    from evalgate.core.config import load_config
    from tests.fakes.stand_in_judges import agreeing, calibrate_through_cli, truth_table

    folder = work / "calibration"
    models = load_config(ROOT / "golden" / "gate.toml").models
    with contextlib.redirect_stdout(io.StringIO()):
        if calibrate_through_cli(folder, [models.judge, models.heavy_judge], agreeing(truth_table(100))) != 0:
            raise SystemExit("bench: calibrating the stand-in judges failed")
    return folder


def stand_in_floor(stand_in: StandIn, calls: int) -> float:
    """Wall time of ``calls`` requests at C = 16 from the leanest client there is — bare ``http.client`` on kept-alive
    connections, one small InvokeModel body, nothing signed or parsed — against the same stand-in: what any client
    could reach on this box, the stand-in's own per-call overhead (HTTP in Python, waking after its sleep)
    included."""
    import http.client
    import threading
    import urllib.parse
    from concurrent.futures import ThreadPoolExecutor

    url = urllib.parse.urlsplit(stand_in.env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"])
    body = json.dumps({"inputText": "floor", "dimensions": 256, "normalize": True}).encode()
    local = threading.local()

    def call(_: int) -> None:
        conn = getattr(local, "conn", None) or http.client.HTTPConnection(url.hostname or "", url.port)
        local.conn = conn
        conn.request("POST", "/model/amazon.titan-embed-text-v2:0/invoke", body, {"Content-Type": "application/json"})
        conn.getresponse().read()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(call, range(calls)))
    return time.perf_counter() - t0


def run_cli(stand_in: StandIn, work: Path, name: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One `evalgate run` as a user would start it; wall time from process start to exit."""
    out = work / name
    cmd = [sys.executable, "-m", "evalgate", "run", "--tier", "full", "--no-progress"]
    cmd += ["--concurrency", str(CONCURRENCY), "--candidate", "replay:golden/responses/baseline.jsonl"]
    cmd += ["--out", str(out), *extra]
    if "--cache" not in extra:
        cmd += ["--cache", str(work / f"{name}.sqlite")]
    full_env = {**os.environ, **stand_in.env, "PYTHONPATH": f"{ROOT / 'lambdas'}:{ROOT}", **(env or {})}
    full_env["EVALGATE_CALIBRATION_DIR"] = str(work / "calibration")
    # As installed code runs: byte-compiled (the untimed first run writes the cache, outside the source tree).
    full_env.pop("PYTHONDONTWRITEBYTECODE", None)
    full_env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    before = stand_in.stats()["calls"]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, started = time.perf_counter(), time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    ended = started + wall
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    faults = results.get("faults") or {}
    models = faults.get("models") or {}
    # Where the wall time went, from the run's own timestamps: start-up (interpreter, imports, config, credentials,
    # the judge's calibration check) | the run (every call, then scoring) | reports written and exit.
    span: dict[str, float] = {}
    if results.get("started_at") and results.get("finished_at"):
        run0 = datetime.fromisoformat(results["started_at"]).timestamp()
        run1 = datetime.fromisoformat(results["finished_at"]).timestamp()
        span = {"startup_s": round(run0 - started, 3), "run_s": round(run1 - run0, 3)}
        span["after_s"] = round(ended - run1, 3)
    return {
        "wall_s": round(wall, 3),
        **span,
        "load_avg_1m": round(os.getloadavg()[0], 2),  # the box's load: wall figures swing with it
        "client_cpu_s": round(cpu, 3),  # the CLI's CPU time: on a loaded box, wall time beyond this is waiting
        "exit": proc.returncode,
        "verdict": (results.get("verdict") or {}).get("verdict"),
        "calls_sent": stand_in.stats()["calls"] - before,
        "retries": (results.get("usage") or {}).get("retries"),
        "throttles": sum(int(m.get("throttles", 0)) for m in models.values()),
        "unscored": (results.get("unscored") or {}).get("count"),
        "lowest_concurrency": (faults.get("concurrency") or {}).get("lowest"),
        "fatal": results.get("fatal", [])[:3] or (proc.stderr.strip().splitlines()[-1:] if proc.returncode > 1 else []),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time (the lower middle one of an even count), with how many runs it is of."""
    ranked = sorted(runs, key=lambda r: r["wall_s"])
    return {**ranked[(len(ranked) - 1) // 2], "runs": len(runs)}


def with_attempts(work: Path, attempts: int) -> Path:
    """A copy of golden/gate.toml with [models] judge_malformed_attempts set."""
    text = (ROOT / "golden" / "gate.toml").read_text()
    path = work / f"gate-attempts-{attempts}.toml"
    path.write_text(text.replace("[models]\n", f"[models]\njudge_malformed_attempts = {attempts}\n", 1))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer seeds (a smoke run of the bench itself)")
    ap.add_argument("--seeds", type=int, default=20, help="seeds of the malformed-reply verdict check (default 20)")
    ap.add_argument(
        "--only",
        choices=["throughput", "botocore", "malformed"],
        action="append",
        help="run only these groups (repeatable; default: all three, each a few minutes at most)",
    )
    ap.add_argument("--attempts", type=int, nargs="*", default=[], help="judge_malformed_attempts values to sweep")
    ap.add_argument("--repeat", type=int, default=5, help="clean and warm runs, the median reported (default 5)")
    args = ap.parse_args()
    groups = set(args.only or ["throughput", "botocore", "malformed"])
    seeds = 4 if args.quick else args.seeds
    dest = ROOT / "bench" / "results" / "faults.json"
    res: dict[str, Any] = json.loads(dest.read_text()) if dest.exists() else {}
    res.update(latency_s=LATENCY, concurrency=CONCURRENCY)

    def show(name: str, figure: dict[str, Any]) -> None:
        res[name] = figure
        print(f"{name:>12}: {json.dumps(figure)}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        calibrate_judges(work)
        with StandIn() as s:
            # Untimed: byte-compiles the CLI's imports into the run's bytecode cache, as installing a package does;
            # every timed run below starts from compiled code and its own empty result cache.
            run_cli(s, work, "compile")
            # Wall times on a shared box swing by a few percent from run to run: each timed figure is the median
            # of ``--repeat`` runs (each from an empty cache; the warm ones on the first clean run's cache), with
            # the fastest and slowest beside it.
            cleans = [run_cli(s, work, f"clean{i}" if i else "clean") for i in range(args.repeat)]
            clean = median_run(cleans)
            ideal = clean["calls_sent"] * LATENCY / CONCURRENCY
            clean["ideal_s"] = round(ideal, 3)
            clean["ratio_to_ideal"] = round(ideal / clean["wall_s"], 3)
            clean["ratios_to_ideal"] = sorted(round(ideal / r["wall_s"], 3) for r in cleans)
            floor = stand_in_floor(s, clean["calls_sent"])
            clean["stand_in_floor_s"] = round(floor, 3)  # the same calls from bare http.client: reachable by any client
            clean["ratio_of_floor_to_ideal"] = round(ideal / floor, 3)
            show("clean", clean)
            if "throughput" in groups:
                warm_cache = str(work / "clean.sqlite")
                warms = [run_cli(s, work, f"warm{i}", "--cache", warm_cache) for i in range(args.repeat)]
                warm = median_run(warms)
                warm["ratio_to_1s"] = round(1.0 / warm["wall_s"], 3)
                warm["walls_s"] = sorted(r["wall_s"] for r in warms)
                warm["same_verdict"] = all(r["verdict"] == clean["verdict"] for r in warms)
                show("warm", warm)
        scenarios: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        if "throughput" in groups:
            scenarios += [("throttle30", {"throttle_rate": 0.3, "seed": 1}, {}), ("quota20", {"quota_rps": 20.0}, {})]
        if "botocore" in groups:
            for mode, attempts in (("adaptive", "5"), ("standard", "3")):
                env = {"EVALGATE_AWS_RETRY_MODE": mode, "EVALGATE_AWS_MAX_ATTEMPTS": attempts}
                scenarios += [
                    (f"throttle30_{mode}", {"throttle_rate": 0.3, "seed": 1}, env),
                    (f"quota20_{mode}", {"quota_rps": 20.0}, env),
                ]
        for name, faults, env in scenarios:
            with StandIn(**faults) as s:
                r = run_cli(s, work, name, env=env)
            if name.startswith("throttle30"):
                r["ratio_to_clean"] = round(r["wall_s"] / clean["wall_s"], 3)
            else:
                bound = clean["calls_sent"] / 20.0
                r["quota_bound_s"] = round(bound, 3)
                r["ratio_to_bound"] = round(bound / r["wall_s"], 3)
            r["same_verdict"] = r["verdict"] == clean["verdict"]
            show(name, r)
        if "throughput" in groups:
            with StandIn(throttle_rate=0.3, malformed_rate=0.2, error_rate=0.05, seed=3) as s:
                mixed = run_cli(s, work, "mixed")
            mixed["same_verdict"] = mixed["verdict"] == clean["verdict"]
            mixed["ratio_to_clean"] = round(mixed["wall_s"] / clean["wall_s"], 3)
            show("mixed", mixed)
        # Verdict stability under malformed judge replies, at a lower latency (the verdict does not depend on it).
        sweep: list[int | None] = [*sorted(set(args.attempts))] or [None]
        for attempts in sweep if "malformed" in groups else []:
            extra = ("--config", str(with_attempts(work, attempts))) if attempts else ()
            same, unscored, verdicts = 0, [], []
            for seed in range(seeds):
                with StandIn(latency=0.01, malformed_rate=0.2, seed=100 + seed) as s:
                    r = run_cli(s, work, f"malformed-{attempts}-{seed}", *extra)
                same += r["verdict"] == clean["verdict"]
                unscored.append(r["unscored"] or 0)
                verdicts.append(r["verdict"] or "none")
            show(
                "malformed20" if attempts is None else f"malformed20_k{attempts}",
                {
                    "attempts": attempts or "default",
                    "seeds": seeds,
                    "same_verdict_share": round(same / seeds, 3),
                    "verdicts": sorted(set(verdicts)),
                    "mean_unscored_cases": round(sum(unscored) / seeds, 2),
                    "max_unscored_cases": max(unscored),
                },
            )
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
