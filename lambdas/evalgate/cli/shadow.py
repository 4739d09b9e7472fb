"""`evalgate shadow-report`: score the shadow worker's production/candidate pairs (release/shadow_report.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from evalgate.cli.common import aws_credentials_available
from evalgate.core.errors import InputError
from evalgate.core.inputs import output_dir
from evalgate.core.verdicts import ERROR as EXIT_ERROR


def add_parser(sub: Any) -> None:
    shadow = sub.add_parser(
        "shadow-report",
        help="score shadow-mode pairs (production vs candidate answers on live traffic)",
        description="Pair and score what the shadow worker stored: a pairwise judge with positions swapped "
        "(disagreement counts as a tie), similarity, latency, token and cost deltas. Writes the usual four "
        "reports. Exit 0 PASS, 1 FAIL (production preferred or shadow errors), 3 REVIEW (no judge: a person "
        "decides), 4 ERROR.",
    )
    shadow.add_argument("pairs", metavar="PAIRS", help="a pairs JSONL file or folder, or s3://bucket/prefix")
    shadow.add_argument("--config", type=Path, default=Path("golden/gate.toml"), help="gate config (pricing)")
    shadow.add_argument("--judge-model", help="pairwise judge model (default: gate.toml [models] judge)")
    shadow.add_argument("--no-judge", action="store_true", help="no Bedrock judge: similarity and deltas only")
    shadow.add_argument("--embedder", choices=["local", "titan", "none"], default="local")
    shadow.add_argument("--out", type=Path, default=Path("out/shadow"), help="report folder (default: out/shadow)")
    shadow.set_defaults(handler=shadow_report_command)


def shadow_report_command(args: argparse.Namespace) -> int:
    import tempfile

    from evalgate.cli.common import make_embedder
    from evalgate.core.config import load_config
    from evalgate.engine.factories import make_judge
    from evalgate.release.shadow_report import iter_pairs_from_s3, run_shadow_report

    output_dir(args.out, "--out")
    config = load_config(args.config)
    judge: Any = None
    if not args.no_judge:
        if not aws_credentials_available():
            print(
                "evalgate: ERROR: the pairwise judge needs Bedrock but no AWS credentials were found "
                "(use --no-judge for similarity and deltas only)",
                file=sys.stderr,
            )
            return EXIT_ERROR
        judge = make_judge(args.judge_model or config.models.judge)
    embedder = make_embedder(args.embedder, config.models.embeddings) if args.embedder != "none" else None
    with tempfile.TemporaryDirectory(prefix="evalgate-pairs-") as tmp:
        source = Path(args.pairs)
        if args.pairs.startswith("s3://"):
            from evalgate.adapters.aws import make_client

            bucket, _, prefix = args.pairs.removeprefix("s3://").partition("/")
            source = Path(tmp) / "pairs.jsonl"
            source.write_text("\n".join(iter_pairs_from_s3(make_client("s3"), bucket, prefix)) + "\n")
        elif not source.exists():
            raise InputError.single(args.pairs, None, "shadow pairs not found")
        code = run_shadow_report(source, args.out, judge, embedder, config=config)
    print(f"shadow-report: exit {code}; reports in {args.out}")
    return code
