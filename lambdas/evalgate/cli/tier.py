"""`evalgate tier`: which tier `--tier auto` would run, and why (engine/tiers.py decides); the auto options
`run` shares."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from evalgate.cli.common import load_baseline

AUTO_ABOUT = (
    "decide from `git diff <last approved commit>..HEAD`: docs only -> skip (PASS with a note); code only -> "
    "smoke; prompts, golden data, models or thresholds -> full; a release tag/branch -> release "
    "(gate.toml [tiers], [release]). Judged scores near a threshold are re-judged by the heavy judge."
)


def add_parser(sub: Any) -> None:
    tier = sub.add_parser(
        "tier",
        help="show which tier --tier auto would run, and why",
        description="Classify the files changed since the last approved commit and print the tier --tier auto "
        "would run (" + AUTO_ABOUT + ").",
    )
    tier.add_argument("--golden", type=Path, default=Path("golden"))
    tier.add_argument("--config", type=Path, help="default: GOLDEN/gate.toml")
    tier.add_argument("--baseline", type=Path, help="approved results.json (its commit is the diff base)")
    tier.add_argument("--json", action="store_true", help="print the decision as JSON")
    add_auto_options(tier)
    tier.set_defaults(handler=tier_command)


def add_auto_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--since",
        metavar="COMMIT",
        help="tier auto: diff against this commit (default: $EVALGATE_BASE_COMMIT, else the baseline's commit)",
    )
    p.add_argument("--release", action="store_true", help="tier auto: treat this change as a release candidate")
    p.add_argument("--branch", help="tier auto: branch name for the release rule (default: from CI env or git)")
    p.add_argument("--repo", type=Path, default=Path("."), help="git repository (default: .)")


def _gate_file(config_path: Path, repo: Path) -> str | None:
    """The gate config's path relative to the repository (how git names it), if it is inside it."""
    try:
        return config_path.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return None


def decide(args: argparse.Namespace, config: Any, config_path: Path, baseline: Any) -> Any:
    from evalgate.engine.tiers import decide_tier

    base = args.since or os.environ.get("EVALGATE_BASE_COMMIT") or (baseline.commit if baseline else None)
    return decide_tier(
        config,
        repo=args.repo,
        base=base,
        gate_file=_gate_file(config_path, args.repo),
        branch=args.branch,
        release=args.release,
    )


def tier_command(args: argparse.Namespace) -> int:
    from evalgate.core.config import load_config

    config_path = args.config or args.golden / "gate.toml"
    config = load_config(config_path)
    baseline = load_baseline(args.baseline) if args.baseline else None
    decision = decide(args, config, config_path, baseline)
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2))
    else:
        print(decision.summary)
        for cat, files in sorted(decision.files.items()):
            print(f"  {cat}: {len(files)} file(s)")
    return 0
