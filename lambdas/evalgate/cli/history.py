"""`evalgate history`: the static site of every run (engine/history.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from evalgate.core.errors import InputError


def add_parser(sub: Any) -> None:
    hist = sub.add_parser(
        "history",
        help="a static site of every run: trends per gated metric, any two runs compared",
        description="Read results.json files (a folder, recursively, or an s3:// prefix such as the pipeline's "
        "runs/) and write index.html: the runs with their verdicts and reports, one trend chart per gated metric "
        "(value, interval, threshold), and a comparison of any two runs. --compare A B also writes the full case "
        "explorer of run B against run A.",
    )
    hist.add_argument("--runs", required=True, metavar="SOURCE", help="folder or s3://bucket/prefix of runs")
    hist.add_argument(
        "--out", default="out/history", metavar="DEST", help="folder or s3:// prefix (default out/history)"
    )
    hist.add_argument("--compare", nargs=2, metavar=("A", "B"), help="run ids (or positions) to compare in full")
    hist.set_defaults(handler=history_command)


def history_command(args: argparse.Namespace) -> int:
    from evalgate.engine.history import load_runs, write_site

    runs, problems = load_runs(args.runs)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not runs:
        raise InputError.single(args.runs, None, "no readable results.json found")
    written = write_site(runs, args.out, tuple(args.compare) if args.compare else None)
    print(f"history: {len(runs)} run(s) -> {', '.join(written)}")
    return 0
