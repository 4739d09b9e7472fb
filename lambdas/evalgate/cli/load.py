"""`evalgate load`: the open-loop load test gating time to first token and total answer time (engine/load.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from evalgate.cli.common import make_candidate, number, print_summary
from evalgate.core.dataset import SUITE_FILES
from evalgate.core.errors import InputError
from evalgate.core.inputs import output_dir


def add_parser(sub: Any) -> None:
    load = sub.add_parser(
        "load",
        help="open-loop load test gating p95 time to first token and total answer time",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Drive a target at a fixed offered rate with an open-loop arrival schedule (requests fire at "
        "their scheduled time however slow earlier ones are); gate p95 time to first token against the SLO and "
        "p95 total answer time against a baseline load run (+X ms or +Y%). Exit 0 PASS, 1 FAIL (a p95 over its "
        "limit, or throttled), 2 usage, 4 ERROR (errors above the limit, too few samples, no TTFT reported, or "
        "the schedule could not be held).",
        epilog='Targets: http:URL (POST JSON {"question": ...}), lambda:NAME[:QUALIFIER], bedrock (ConverseStream '
        "with gate.toml [models]).\nExample: evalgate load --target http:https://api.example.com/ask --peak-rps 20 "
        "--factor 1.5 --duration 60 --ttft-slo-ms 2000 --baseline last-load/results.json --out out/load",
    )
    load.add_argument("--target", required=True, metavar="SPEC", help="http:URL, lambda:NAME[:QUAL] or bedrock")
    load.add_argument(
        "--rps", type=number(float, 0, lo_open=True), help="offered requests per second (default: peak x factor)"
    )
    load.add_argument(
        "--peak-rps",
        type=number(float, 0, lo_open=True),
        help="the configured peak (default: gate.toml [load] peak_rps)",
    )
    load.add_argument(
        "--factor",
        type=number(float, 0, 20, lo_open=True),
        help="multiple of the peak to offer (default: [load] factor, 1.5)",
    )
    load.add_argument(
        "--duration", type=number(float, 0, lo_open=True), metavar="SECONDS", help="schedule length (default: [load])"
    )
    load.add_argument(
        "--ttft-slo-ms",
        type=number(float, 0, lo_open=True),
        help="p95 time-to-first-token limit (default: [load] ttft_slo_ms)",
    )
    load.add_argument("--baseline", type=Path, help="a previous load run's results.json: gate total answer time on it")
    load.add_argument(
        "--regression-ms",
        type=number(float, 0, lo_open=True),
        help="p95 total time may exceed the baseline's by this many ms (default: [load])",
    )
    load.add_argument(
        "--regression-pct",
        type=number(float, 0, lo_open=True),
        help="... and by this %% of it; the tighter limit applies (default: [load])",
    )
    load.add_argument("--arrival", choices=["poisson", "fixed"], help="arrival process (default: [load], poisson)")
    load.add_argument("--seed", type=number(int, 0, 2**32 - 1), help="schedule and prompt order seed")
    load.add_argument(
        "--timeout",
        type=number(float, 0, 300, lo_open=True),
        metavar="SECONDS",
        help="per-request timeout (default: [load])",
    )
    load.add_argument(
        "--late-tolerance-ms", type=number(float, 1), help="drop a request not started this late (default 100)"
    )
    load.add_argument(
        "--workers", type=number(int, 1, 4096), help="worker pool size (default: sized from the rate by Little's law)"
    )
    load.add_argument(
        "--max-requests", type=number(int, 1, 1_000_000), help="refuse schedules larger than this (default: [load])"
    )
    load.add_argument("--golden", type=Path, default=Path("golden"), help="prompts come from this golden set")
    load.add_argument("--config", type=Path, help="default: GOLDEN/gate.toml")
    load.add_argument(
        "--suite",
        action="append",
        choices=list(SUITE_FILES),
        help="draw prompts from these suites (default: regression)",
    )
    load.add_argument("--model", help="bedrock target: model or inference profile id")
    load.add_argument("--prompt", help="bedrock target: prompt id")
    load.add_argument("--out", type=Path, default=Path("out/load"), help="report folder (default: out/load)")
    load.set_defaults(handler=load_command)


def load_command(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from evalgate.core.config import load_config
    from evalgate.core.dataset import load_golden
    from evalgate.core.latency import LatencyBudget
    from evalgate.engine.load import (
        LoadGenerator,
        LoadPlan,
        baseline_total_p95,
        check_bounds,
        expected_requests,
        pool_size,
        summarise,
    )
    from evalgate.reports import write_reports

    output_dir(args.out, "--out")
    config = load_config(args.config or args.golden / "gate.toml")
    lc = config.load
    golden = load_golden(args.golden, args.suite or ["regression"])
    cases = golden.cases
    factor = args.factor if args.factor is not None else lc.factor
    peak = args.peak_rps if args.peak_rps is not None else lc.peak_rps
    if args.rps is not None:
        rate = args.rps
    elif peak is not None:
        rate = peak * factor
    else:
        raise InputError.single("--rps/--peak-rps", None, "give --rps, or --peak-rps (or [load] peak_rps) and --factor")
    duration = args.duration if args.duration is not None else lc.duration_s
    timeout = args.timeout if args.timeout is not None else lc.timeout_s
    tolerance_ms = args.late_tolerance_ms if args.late_tolerance_ms is not None else lc.late_tolerance_ms
    try:
        budget = LatencyBudget(
            ttft_slo_ms=args.ttft_slo_ms if args.ttft_slo_ms is not None else lc.ttft_slo_ms,
            regression_ms=args.regression_ms if args.regression_ms is not None else lc.total_regression_ms,
            regression_pct=args.regression_pct if args.regression_pct is not None else lc.total_regression_pct,
        )
    except ValueError as exc:
        raise InputError.single("--ttft-slo-ms/--regression-ms/--regression-pct", None, str(exc)) from None
    baseline_p95, baseline_run = baseline_total_p95(args.baseline) if args.baseline else (None, None)
    check_bounds(rate, duration, args.max_requests or lc.max_requests, lc.max_duration_s)
    workers = args.workers or pool_size(rate, baseline_p95 or timeout * 1000.0, lc.max_workers)
    plan = LoadPlan(
        rate=rate,
        duration_s=duration,
        arrival=args.arrival or lc.arrival,
        budget=budget,
        timeout_s=timeout,
        late_tolerance_s=tolerance_ms / 1000.0,
        workers=workers,
        seed=args.seed if args.seed is not None else lc.seed,
        peak_rps=peak if args.rps is None else None,
        factor=factor if args.rps is None else None,
        baseline_p95_ms=baseline_p95,
        baseline_run=baseline_run,
    )
    target = _build_load_target(args, config, workers, timeout)
    print(
        f"evalgate load: {rate:g} rps ({plan.arrival}) for {duration:g}s ≈ {expected_requests(rate, duration)} "
        f"requests to {target.name}, {workers} workers; p95 time to first token ≤ {budget.ttft_slo_ms:g} ms, "
        + (
            f"p95 total ≤ baseline {baseline_p95:.0f} ms {budget.describe_tolerance()}"
            if baseline_p95 is not None
            else "total answer time reported (no --baseline)"
        ),
        flush=True,
    )
    started = datetime.now(UTC)
    gen = LoadGenerator(target, golden, cases, plan)
    records = gen.run()
    result = summarise(records, plan, config, target, cases, started, gen.max_in_flight)
    paths = write_reports(result, args.out)
    with open(args.out / "requests.jsonl", "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r.to_dict()) + "\n")
    print_summary(result, paths)
    ld = result.load or {}
    print(
        f"  requests: {ld.get('scheduled')} scheduled, {ld.get('sent')} sent, {ld.get('ok')} ok, "
        f"{ld.get('errors')} errors, {ld.get('throttled')} throttled, {ld.get('timeouts')} timeouts, "
        f"{ld.get('dropped_late')} late/dropped; per-request log: {args.out / 'requests.jsonl'}"
    )
    return result.verdict.exit_code


def _build_load_target(args: argparse.Namespace, config: Any, workers: int, timeout: float) -> Any:
    """A candidate for load: no retries (a throttle must be seen, not absorbed), pool sized to the workers."""
    from evalgate.adapters.aws import ClientSettings

    settings = ClientSettings.from_env(
        max_attempts=1, retry_mode="standard", max_pool_connections=max(workers, 10), read_timeout=timeout
    )
    return make_candidate(
        args.target,
        config,
        flag="--target",
        noun="target",
        kinds=("http", "lambda", "bedrock"),
        model=args.model,
        prompt=args.prompt,
        settings=settings,
        timeout=timeout,
    )
