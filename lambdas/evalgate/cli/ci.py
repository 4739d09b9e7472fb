"""`evalgate ci run|shard|merge|promote`: the pipeline's gate step (evalgate.ci.gate_step)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    ci = sub.add_parser(
        "ci",
        help="the pipeline's quality-gate step inside CodeBuild (run, shard, merge, promote)",
        description="Run the gate as the pipeline does: evaluate, then approve, ask for review or reject the manual "
        "approval; keep baselines, cache and history in S3. Reads its settings from the environment the "
        "pipeline's CodeBuild projects set (evalgate.ci.gate_step.GateEnv).",
    )
    ci.add_argument("mode", choices=["run", "shard", "merge", "promote"])

    ci.set_defaults(handler=ci_command)


def ci_command(args: argparse.Namespace) -> int:
    from evalgate.ci.gate_step import main as ci_main

    return ci_main([args.mode])
