"""`evalgate merge`: combine the shards of one run and gate the union (engine/shard.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evalgate.cli.common import load_baseline, print_summary
from evalgate.core.inputs import output_dir


def add_parser(sub: Any) -> None:
    merge = sub.add_parser(
        "merge",
        help="combine --shard results into one run and gate the union",
        description="Merge the results.json of every shard of one run (same config, candidate, tier, judge, "
        "commit and baseline; each shard exactly once) and re-gate the union. Exit codes as `run`.",
    )
    merge.add_argument("results", nargs="+", type=Path, metavar="RESULTS_JSON", help="each shard's results.json")
    merge.add_argument("--baseline", type=Path, help="the baseline the shards were compared with")
    merge.add_argument("--config", type=Path, help="check the shards ran with this gate config")
    merge.add_argument("--out", type=Path, default=Path("out/eval"), help="report folder (default: out/eval)")
    merge.set_defaults(handler=merge_command)


def merge_command(args: argparse.Namespace) -> int:
    from evalgate.core.config import load_config
    from evalgate.engine.shard import load_result, merge_results
    from evalgate.reports import write_reports

    output_dir(args.out, "--out")
    shards = [(p, load_result(p)) for p in args.results]
    baseline = load_baseline(args.baseline) if args.baseline else None
    config = load_config(args.config) if args.config else None
    result = merge_results(shards, baseline, config)
    paths = write_reports(result, args.out, baseline)
    print_summary(result, paths)
    print(f"  merged {len(shards)} shard(s): {len(result.cases)} cases")
    return result.verdict.exit_code
