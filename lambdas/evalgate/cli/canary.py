"""`evalgate canary-power`: what the live canary can detect at the configured traffic (release/canary_power.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from evalgate.core.errors import InputError
from evalgate.core.verdicts import EXIT_USAGE


def add_parser(sub: Any) -> None:
    pw = sub.add_parser(
        "canary-power",
        help="what the live canary can detect at your traffic (and settings under which a rule never fires)",
        description="Power of the canary judge at the configured canary: for each regression it exists to catch "
        "(quality -0.05/-0.10, hallucination 2%%->6%%, +120 ms, errors, conversion -0.5 point, feedback), the "
        "chance it rolls back and the traffic 80%% power needs. Settings default to cdk.json's context. "
        "Exit 2 when a critical rule could never fire (the same check refuses synth).",
    )
    pw.add_argument("--cdk-json", type=Path, default=Path("cdk.json"), help="read settings from this cdk.json")
    pw.add_argument("--peak-rps", type=float, help="peak requests per second (cdk.json peakRps)")
    pw.add_argument("--canary-percent", type=float, help="canary traffic share, percent (canaryPercent)")
    pw.add_argument("--interval-minutes", type=int, help="canary step length (canaryIntervalMinutes)")
    pw.add_argument("--capture-rate", type=float, help="share of requests judged (featureFlags.capture.sample_rate)")
    pw.add_argument("--min-judged", type=int, help="judged answers per arm before a verdict (minJudgedSamples)")
    pw.add_argument("--total-regression-ms", type=float, help="total answer time tolerance, ms (totalRegressionMs)")
    pw.add_argument("--total-regression-pct", type=float, help="... or percent of the previous version's")
    for name, default in _profile_defaults().items():
        pw.add_argument(f"--{name.replace('_', '-')}", type=float, default=default, help=f"previous version's {name}")
    pw.add_argument("--json", action="store_true", help="print the figures as JSON")
    pw.set_defaults(handler=canary_power_command)


def _profile_defaults() -> dict[str, float]:
    from dataclasses import fields

    from evalgate.release.canary_profile import Profile

    return {f.name: float(f.default) for f in fields(Profile)}  # type: ignore[arg-type]


def canary_power_command(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from evalgate.core.latency import LatencyBudget
    from evalgate.release.canary import CanaryConfig
    from evalgate.release.canary_power import CanaryTraffic, detect, never_fires, report
    from evalgate.release.canary_profile import Profile

    ctx: dict[str, Any] = {}
    if args.cdk_json.is_file():
        try:
            ctx = json.loads(args.cdk_json.read_text()).get("context", {})
        except json.JSONDecodeError as exc:
            raise InputError.single(str(args.cdk_json), exc.lineno, f"not valid JSON: {exc.msg}") from None
    capture = ((ctx.get("featureFlags") or {}).get("capture") or {}).get("sample_rate", 0.25)

    def pick(flag: Any, key: str, default: Any) -> Any:
        """The flag, else cdk.json's context key, else the settings' default (stacks/settings.py)."""
        value = flag if flag is not None else ctx.get(key, default)
        if not isinstance(value, int | float) or value <= 0:
            raise InputError.single(str(args.cdk_json), None, f"{key}: must be a positive number (got {value!r})")
        return value

    traffic = CanaryTraffic(
        peak_rps=float(pick(args.peak_rps, "peakRps", 2.0)),
        canary_percent=float(pick(args.canary_percent, "canaryPercent", 10)),
        interval_minutes=int(pick(args.interval_minutes, "canaryIntervalMinutes", 10)),
        capture_rate=float(pick(args.capture_rate, "featureFlags.capture.sample_rate", capture)),
    )
    if not 0 < traffic.canary_percent < 100 or not 0 < traffic.capture_rate <= 1:
        raise InputError.single("--canary-percent/--capture-rate", None, "percent in (0, 100), rate in (0, 1]")
    budget = LatencyBudget(
        regression_ms=args.total_regression_ms
        if args.total_regression_ms is not None
        else ctx.get("totalRegressionMs"),
        regression_pct=args.total_regression_pct
        if args.total_regression_pct is not None
        else ctx.get("totalRegressionPct"),
    )
    cfg = replace(CanaryConfig(), min_judged=int(pick(args.min_judged, "minJudgedSamples", 8)), latency_budget=budget)
    prof = Profile(**{name: getattr(args, name) for name in _profile_defaults()})
    found = detect(traffic, prof, cfg)
    problems = never_fires(traffic, prof, cfg)
    if args.json:
        print(
            json.dumps(
                {
                    "traffic": asdict(traffic),
                    "window_minutes": traffic.window_minutes,
                    "detections": [{**asdict(d), "detectable": d.detectable} for d in found],
                    "never_fires": problems,
                },
                indent=2,
            )
        )
    else:
        print(report(traffic, found))
        for p in problems:
            print(f"REFUSED: {p}")
    return EXIT_USAGE if problems else 0
