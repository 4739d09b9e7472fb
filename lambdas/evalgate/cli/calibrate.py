"""`evalgate calibrate`: measure a metric or the judge against human labels (engine/calibrate.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evalgate.cli.common import number


def add_parser(sub: Any) -> None:
    cal = sub.add_parser(
        "calibrate",
        help="measure metrics against human labels (STS-B, HaluEval, TruthfulQA)",
        description="Measure a metric against human-labelled public benchmarks.",
    )
    cal.add_argument(
        "--benchmarks", type=Path, help="benchmarks folder (default: bench/data, else ../shared/benchmarks)"
    )
    cal.add_argument("--metric", choices=["similarity", "grounding", "judge"], default="similarity")
    cal.add_argument("--limit", type=number(int, 1), help="use at most N rows per dataset")
    cal.add_argument(
        "--judge-model", help="judge model for --metric judge (default: gate.toml [models] judge; needs AWS)"
    )
    cal.add_argument("--heavy", action="store_true", help="--metric judge: calibrate [models] heavy_judge")
    cal.add_argument("--out", type=Path, help="write the calibration record as JSON here")
    cal.add_argument(
        "--records",
        type=Path,
        help="--metric judge: folder of judge calibration records (default: $EVALGATE_CALIBRATION_DIR, else "
        "gate.toml [judge_calibration] records)",
    )
    cal.add_argument(
        "--if-needed",
        action="store_true",
        help="--metric judge: do nothing when a valid record for this judge and rubric exists (the pipeline)",
    )
    cal.add_argument("--max-cost", type=float, metavar="USD", help="--metric judge: cap (default [judge_calibration])")
    cal.add_argument("--golden", type=Path, default=Path("golden"), help="golden folder (knowledge for the labels)")
    cal.add_argument("--config", type=Path, help="gate config (default: GOLDEN/gate.toml)")
    cal.add_argument("--labels", type=Path, help="demo-domain label file (default: [judge_calibration] labels)")
    cal.add_argument("--cache", type=Path, default=Path(".evalgate-cache/cache.sqlite"), help="SQLite cache file")
    cal.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    cal.add_argument("--concurrency", type=int, default=8, help="parallel judge calls (default: 8)")

    cal.set_defaults(handler=calibrate_command)


def calibrate_command(args: argparse.Namespace) -> int:
    from evalgate.engine.calibrate import run_calibration

    return int(run_calibration(args))
