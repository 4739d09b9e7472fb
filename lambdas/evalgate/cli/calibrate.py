"""``evalgate calibrate``: the command; the measurements live in ``evalgate.engine.calibrate`` (similarity,
grounding) and ``evalgate.engine.judge_calibration`` (the judge's record)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from evalgate.cli.common import aws_credentials_available, number
from evalgate.core.errors import InputError
from evalgate.core.inputs import output_file
from evalgate.engine.calibrate import calibrate_grounding, calibrate_similarity, default_benchmarks


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

    cal.set_defaults(handler=run_calibration)


def run_calibration(args: argparse.Namespace) -> int:
    root = args.benchmarks or default_benchmarks()
    if args.out:
        output_file(args.out, "--out")
    if args.metric == "similarity":
        from evalgate.cli.common import make_embedder

        record = calibrate_similarity(make_embedder("local"), root, args.limit)
    elif args.metric == "grounding":
        record = calibrate_grounding(root, args.limit)
    else:
        return run_judge_calibration(args)
    text = json.dumps(record, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


def run_judge_calibration(args: argparse.Namespace) -> int:
    """Measure the configured (or given) judge and write its record. Exit 0: the record meets the floors;
    1: it was written but falls short (figures printed); 4: no record (no credentials, cost cap, error)."""
    from evalgate.core.config import load_config
    from evalgate.core.dataset import load_knowledge
    from evalgate.engine.cache import Cache
    from evalgate.engine.cost import CostMeter
    from evalgate.engine.factories import make_judge
    from evalgate.engine.judge_calibration import (
        check_judge,
        endpoint_of,
        floor_problems,
        labelled_items,
        measure_judge,
        records_dir,
        summary_lines,
        write_record,
    )

    if args.max_cost is not None and args.max_cost <= 0:
        raise InputError.single("--max-cost", None, "must be a positive amount of USD")
    if args.concurrency < 1:
        raise InputError.single("--concurrency", None, "must be at least 1")
    config = load_config(args.config or args.golden / "gate.toml")
    folder = records_dir(config, args.records)
    model_id = args.judge_model or (config.models.heavy_judge if args.heavy else config.models.judge)
    if not aws_credentials_available():
        print("evalgate: ERROR: calibrating the judge needs Bedrock and no AWS credentials were found", file=sys.stderr)
        return 4
    cap = args.max_cost if args.max_cost is not None else config.judge_calibration.max_cost_usd
    meter = CostMeter(config, cap)
    cache = None if args.no_cache else Cache(args.cache)
    judge = make_judge(model_id, cache=cache, meter=meter)
    if args.if_needed:
        check = check_judge(judge.identity(), config, folder, endpoint_of(judge))
        if check.ok:
            print(f"calibration record for judge {model_id} is valid: {check.path} (nothing to measure)")
            return 0
        if check.below_floors:  # the same judge and rubric would measure the same: report, do not pay again
            print(f"evalgate: {check.problems[0]}", file=sys.stderr)
            return 1
        print("calibrating: " + "; ".join(check.problems), flush=True)
    knowledge, problems = load_knowledge(args.golden / "knowledge")
    if problems:
        raise InputError(problems)
    labels = args.labels or Path(config.judge_calibration.labels)
    data = labelled_items(args.benchmarks or default_benchmarks(), labels, knowledge, args.limit)
    try:
        record = measure_judge(judge, data, config, concurrency=args.concurrency, limit=args.limit)
    finally:
        if cache is not None:
            cache.close()
    if meter.stop_reason:
        print(f"evalgate: ERROR: calibration stopped, no record written: {meter.stop_reason}", file=sys.stderr)
        return 4
    path = write_record(folder, record)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for line in summary_lines(record):
        print(line)
    print(f"record: {path}")
    short = floor_problems(record, config)
    if short:
        print(f"evalgate: judge {model_id} falls short of the floors: " + "; ".join(short), file=sys.stderr)
        return 1
    return 0
