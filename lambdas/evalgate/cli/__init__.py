"""The ``evalgate`` command line."""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evalgate import __version__
from evalgate.core.config import GUARDRAIL_VERSION_PATTERN
from evalgate.core.errors import InputError, Problem
from evalgate.core.inputs import output_dir, output_file
from evalgate.core.retry import DEFAULT_TIME_BUDGET_S
from evalgate.core.verdicts import ERROR as EXIT_ERROR
from evalgate.core.verdicts import EXIT_USAGE

GUARDRAIL_VERSION = re.compile(GUARDRAIL_VERSION_PATTERN)

TIERS: dict[str, dict[str, Any]] = {
    "offline": {
        "judge": None,
        "subset": None,
        "repeats": 1,
        "about": "no AWS: local embeddings, rule checks (behaviour, numeric grounding, injection), statistics",
    },
    "smoke": {
        "judge": "judge",
        "subset": "smoke",
        "repeats": 1,
        "about": "cases tagged 'smoke' (topped up so each gated group has gate.min_cases), cheap judge (Bedrock)",
    },
    "full": {"judge": "judge", "subset": None, "repeats": 1, "about": "every case, cheap judge (Bedrock)"},
    "release": {
        "judge": "heavy_judge",
        "subset": None,
        "repeats": 3,
        "about": "every case, heavy judge, 3 repeats to measure run-to-run noise",
    },
}
AUTO_ABOUT = (
    "decide from `git diff <last approved commit>..HEAD`: docs only -> skip (PASS with a note); code only -> "
    "smoke; prompts, golden data, models or thresholds -> full; a release tag/branch -> release "
    "(gate.toml [tiers], [release]). Judged scores near a threshold are re-judged by the heavy judge."
)

DESCRIPTION = """\
Score a GenAI change against a golden dataset and decide whether it may ship.

Exit codes: 0 PASS · 1 FAIL · 2 usage or input error · 3 REVIEW (needs a human) · 4 ERROR (could not decide:
too many unscored cases, missing data, time budget exhausted).

Start here:
  evalgate validate                                   check golden/ (datasets, knowledge, gate.toml)
  evalgate tier --since origin/main                   which tier --tier auto would run, and why
  evalgate run --tier offline \\
      --candidate replay:golden/responses/baseline.jsonl --out out/baseline
  evalgate run --tier offline \\
      --candidate replay:golden/responses/regressed.jsonl \\
      --baseline out/baseline/results.json --out out/regressed
"""

RUN_EPILOG = (
    """\
Candidates (--candidate):
  replay:FILE          recorded answers: JSONL {id, repeat, output, latency_ms, ...} or a results.json
  bedrock              Bedrock Converse with the model and prompt of gate.toml [models] (override with
                       --model / --prompt); needs AWS credentials
  http:URL             a deployed endpoint (POST JSON {"question": ...}, answer in "answer")
  lambda:NAME[:QUAL]   a Lambda function version or alias (the service handler's HTTP event shape)

Tiers (--tier):
"""
    + "\n".join(f"  {k:<9} {v['about']}" for k, v in TIERS.items())
    + "\n"
    + textwrap.fill(AUTO_ABOUT, width=110, initial_indent=f"  {'auto':<9} ", subsequent_indent=" " * 12)
    + """

Cost: --max-cost USD refuses, before it is made, any call whose conservative cost estimate could take the
run's spend over the cap; the run then stops with ERROR (exit 4) naming the cap. Prices: gate.toml [pricing].
Scale out: --shard K/N evaluates the cases whose id hashes to shard K of N (exit 0 once its reports are
written; 4 on a run-level problem); `evalgate merge shard*/results.json` gates the union.

Reports written to --out: results.json (keep the approved one: it is the next run's --baseline),
junit.xml (CodeBuild report groups), summary.md (email / PR), report.html (charts, per-case details).
Results are cached (generations, judgements, embeddings) in --cache; an unchanged rerun makes no model calls.
"""
)


def _number(
    kind: type[int] | type[float], lo: float | None = None, hi: float | None = None, *, lo_open: bool = False
) -> Callable[[str], Any]:
    """An argparse type: a finite ``kind`` within [lo, hi] (``lo_open``: strictly above lo); the range is in the
    message argparse prints (exit 2)."""
    low = "" if lo is None else (f"> {lo:g}" if lo_open else f">= {lo:g}")
    high = "" if hi is None else f"<= {hi:g}"
    wanted = f"{'an integer' if kind is int else 'a number'}" + (
        f" {low}{' and ' if low and high else ''}{high}" if low or high else ""
    )

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r})") from None
        bad = not math.isfinite(value)
        bad = bad or (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi)
        if bad:
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r})")
        return value

    return parse


def _guardrail_version(text: str) -> str:
    if not GUARDRAIL_VERSION.match(text):
        raise argparse.ArgumentTypeError(f"must be a guardrail version: a number 1-99999999 or DRAFT (got {text!r})")
    return text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evalgate", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"evalgate {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="evaluate a candidate and gate it",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a candidate on the golden set, write reports, exit with the verdict.",
    )
    run.add_argument("--candidate", required=True, metavar="SPEC", help="what to evaluate (see below)")
    run.add_argument(
        "--tier", choices=[*TIERS, "auto"], default="offline", help="how much to run (default: offline; see below)"
    )
    run.add_argument("--golden", type=Path, default=Path("golden"), help="golden dataset folder (default: golden)")
    run.add_argument("--config", type=Path, help="gate config (default: GOLDEN/gate.toml)")
    run.add_argument(
        "--suite",
        action="append",
        choices=["regression", "guardrail", "injection"],
        help="limit to a suite (repeatable; default: all)",
    )
    run.add_argument("--baseline", type=Path, help="the last approved run's results.json (paired comparison, drift)")
    run.add_argument(
        "--baseline-mismatch",
        choices=["refuse", "review"],
        default="refuse",
        help="a baseline that does not match the run (no shared case, another golden set or gate config): "
        "refuse it (exit 2, the default) or run and turn a PASS into REVIEW with the reason",
    )
    run.add_argument(
        "--repeats", type=_number(int, 1, 20), help="answers per case, to measure run-to-run noise (default per tier)"
    )
    run.add_argument("--out", type=Path, default=Path("out/eval"), help="report folder (default: out/eval)")
    run.add_argument("--cache", type=Path, default=Path(".evalgate-cache/cache.sqlite"), help="SQLite cache file")
    run.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    run.add_argument("--cache-s3", metavar="S3_URL", help="s3://bucket/key to pull the cache from and push it back to")
    run.add_argument(
        "--cache-s3-push",
        metavar="S3_URL",
        help="push the cache here instead of back to --cache-s3 (a pull request reads the main cache, writes its own)",
    )
    run.add_argument("--concurrency", type=_number(int, 1, 512), default=16, help="parallel model calls (default: 16)")
    run.add_argument(
        "--embedder",
        choices=["auto", "local", "titan"],
        default="auto",
        help="similarity embeddings: local MiniLM or Titan v2 (auto: local offline, Titan otherwise)",
    )
    run.add_argument("--model", help="generator model or inference profile id (bedrock candidate)")
    run.add_argument("--prompt", help="prompt id under prompts/, e.g. support/v1 (bedrock candidate)")
    run.add_argument("--judge-model", help="override the judge model id")
    run.add_argument(
        "--calibration",
        type=Path,
        metavar="DIR",
        help="judge calibration records (default: $EVALGATE_CALIBRATION_DIR, else [judge_calibration] records)",
    )
    run.add_argument(
        "--time-budget",
        type=_number(float, 0, lo_open=True),
        default=DEFAULT_TIME_BUDGET_S,
        metavar="SECONDS",
        help="retry throttled/failed model calls until this long after the start, then give up and exit ERROR "
        f"(default: {DEFAULT_TIME_BUDGET_S:g})",
    )
    run.add_argument(
        "--tickets",
        choices=["none", "opscenter", "github"],
        default="none",
        help="open a ticket per hallucination or injection leak of a passing run (default: none)",
    )
    run.add_argument("--github-repo", metavar="OWNER/NAME", help="repository for --tickets github")
    run.add_argument(
        "--github-token-secret", metavar="SECRET", help="Secrets Manager id of the GitHub token (else $GITHUB_TOKEN)"
    )
    run.add_argument(
        "--coverage",
        type=Path,
        metavar="FILE",
        help="coverage.json from `evalgate curate` (default: GOLDEN/coverage.json when present): "
        "warn about live categories no golden case covers",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--max-cost",
        type=_number(float, 0, lo_open=True),
        metavar="USD",
        help="stop with ERROR before the run's spend could exceed this (default: gate.toml [cost] max_usd)",
    )
    run.add_argument("--shard", metavar="K/N", help="evaluate only shard K of N (by case-id hash); merge later")
    _add_auto_options(run)
    run.add_argument("--commit", help="the commit being evaluated, recorded in results.json (default: git HEAD)")
    run.add_argument("--guardrail-id", help="Bedrock guardrail to check the guardrail suite with (ApplyGuardrail)")
    run.add_argument("--guardrail-version", type=_guardrail_version, help="its version (a number or DRAFT)")
    run.add_argument(
        "--guardrail-config",
        type=Path,
        metavar="FILE",
        help="check the suites against a candidate guardrail made from this file (guardrails/*.toml) for the run, "
        "deleted afterwards (default: $EVALGATE_GUARDRAIL_CONFIG)",
    )
    run.add_argument(
        "--evaluation-job",
        action="store_true",
        help="release tier: judge with a Bedrock Model Evaluation job (gate.toml [evaluation_job])",
    )
    run.add_argument(
        "--no-escalation", action="store_true", help="tier auto: do not re-judge borderline cases with the heavy judge"
    )

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
    _add_auto_options(tier)

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
        "--rps", type=_number(float, 0, lo_open=True), help="offered requests per second (default: peak x factor)"
    )
    load.add_argument(
        "--peak-rps",
        type=_number(float, 0, lo_open=True),
        help="the configured peak (default: gate.toml [load] peak_rps)",
    )
    load.add_argument(
        "--factor",
        type=_number(float, 0, 20, lo_open=True),
        help="multiple of the peak to offer (default: [load] factor, 1.5)",
    )
    load.add_argument(
        "--duration", type=_number(float, 0, lo_open=True), metavar="SECONDS", help="schedule length (default: [load])"
    )
    load.add_argument(
        "--ttft-slo-ms",
        type=_number(float, 0, lo_open=True),
        help="p95 time-to-first-token limit (default: [load] ttft_slo_ms)",
    )
    load.add_argument("--baseline", type=Path, help="a previous load run's results.json: gate total answer time on it")
    load.add_argument(
        "--regression-ms",
        type=_number(float, 0, lo_open=True),
        help="p95 total time may exceed the baseline's by this many ms (default: [load])",
    )
    load.add_argument(
        "--regression-pct",
        type=_number(float, 0, lo_open=True),
        help="... and by this %% of it; the tighter limit applies (default: [load])",
    )
    load.add_argument("--arrival", choices=["poisson", "fixed"], help="arrival process (default: [load], poisson)")
    load.add_argument("--seed", type=_number(int, 0, 2**32 - 1), help="schedule and prompt order seed")
    load.add_argument(
        "--timeout",
        type=_number(float, 0, 300, lo_open=True),
        metavar="SECONDS",
        help="per-request timeout (default: [load])",
    )
    load.add_argument(
        "--late-tolerance-ms", type=_number(float, 1), help="drop a request not started this late (default 100)"
    )
    load.add_argument(
        "--workers", type=_number(int, 1, 4096), help="worker pool size (default: sized from the rate by Little's law)"
    )
    load.add_argument(
        "--max-requests", type=_number(int, 1, 1_000_000), help="refuse schedules larger than this (default: [load])"
    )
    load.add_argument("--golden", type=Path, default=Path("golden"), help="prompts come from this golden set")
    load.add_argument("--config", type=Path, help="default: GOLDEN/gate.toml")
    load.add_argument(
        "--suite",
        action="append",
        choices=["regression", "guardrail", "injection"],
        help="draw prompts from these suites (default: regression)",
    )
    load.add_argument("--model", help="bedrock target: model or inference profile id")
    load.add_argument("--prompt", help="bedrock target: prompt id")
    load.add_argument("--out", type=Path, default=Path("out/load"), help="report folder (default: out/load)")

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

    val = sub.add_parser(
        "validate",
        help="check datasets, knowledge base, config and recorded responses",
        description="Check the golden dataset and gate config. Problems print as file:line: message; "
        "exit 2 when any is found.",
    )
    val.add_argument("--golden", type=Path, default=Path("golden"))
    val.add_argument("--config", type=Path, help="default: GOLDEN/gate.toml")
    val.add_argument(
        "--responses",
        type=Path,
        nargs="*",
        help="recorded response files to check against the cases (default: GOLDEN/responses/*.jsonl)",
    )
    val.add_argument(
        "--guardrails",
        type=Path,
        default=Path("guardrails"),
        help="folder of guardrail files to check (default: guardrails, when present)",
    )
    val.add_argument(
        "--review",
        type=Path,
        action="append",
        metavar="FILE",
        help="a curation review file: every entry must be completed and verified, or rejected (repeatable)",
    )

    from evalgate.cli.init import add_init_command
    from evalgate.cli.pr import add_pr_commands

    add_pr_commands(sub)
    add_init_command(sub)

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

    ci = sub.add_parser(
        "ci",
        help="the pipeline's quality-gate step inside CodeBuild (run, shard, merge, promote)",
        description="Run the gate as the pipeline does: evaluate, then approve, ask for review or reject the manual "
        "approval; keep baselines, cache and history in S3. Reads its settings from the environment the "
        "pipeline's CodeBuild projects set (evalgate.ci.gate_step.GateEnv).",
    )
    ci.add_argument("mode", choices=["run", "shard", "merge", "promote"])

    cur = sub.add_parser(
        "curate",
        help="propose golden cases from judged production records; merge a reviewed batch",
        description="Read judged live answers (a folder or s3:// prefix) over a time window and write review.jsonl "
        "(proposals with provenance, personal data masked) and coverage.md/json into --out. A person completes "
        "each entry (reference, context, tags, verified_by) or sets status to rejected; `evalgate validate "
        "--review FILE` checks it and `evalgate curate --merge FILE` adds the completed entries to golden/.",
    )
    cur.add_argument("--records", metavar="SOURCE", help="folder or s3://bucket/prefix of judged records")
    cur.add_argument("--since", type=_iso_day, metavar="YYYY-MM-DD", help="first day (default: --days ago)")
    cur.add_argument("--until", type=_iso_day, metavar="YYYY-MM-DD", help="last day, inclusive (default: today)")
    cur.add_argument("--days", type=int, default=90, help="window when --since is not given (default: 90)")
    cur.add_argument("--golden", type=Path, default=Path("golden"))
    cur.add_argument("--config", type=Path, help="default: GOLDEN/gate.toml ([golden] section)")
    cur.add_argument("--max", type=int, dest="max_proposals", help="proposals at most (default: from gate.toml)")
    cur.add_argument("--embedder", choices=["local", "titan"], default="local")
    cur.add_argument("--out", type=Path, default=Path("out/curate"), help="folder for review.jsonl and coverage")
    cur.add_argument("--merge", type=Path, metavar="REVIEW", help="add a completed review file's cases to golden/")

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

    cal = sub.add_parser(
        "calibrate",
        help="measure metrics against human labels (STS-B, HaluEval, TruthfulQA)",
        description="Measure a metric against human-labelled public benchmarks.",
    )
    cal.add_argument(
        "--benchmarks", type=Path, help="benchmarks folder (default: bench/data, else ../shared/benchmarks)"
    )
    cal.add_argument("--metric", choices=["similarity", "grounding", "judge"], default="similarity")
    cal.add_argument("--limit", type=_number(int, 1), help="use at most N rows per dataset")
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
    return p


def _add_auto_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--since",
        metavar="COMMIT",
        help="tier auto: diff against this commit (default: $EVALGATE_BASE_COMMIT, else the baseline's commit)",
    )
    p.add_argument("--release", action="store_true", help="tier auto: treat this change as a release candidate")
    p.add_argument("--branch", help="tier auto: branch name for the release rule (default: from CI env or git)")
    p.add_argument("--repo", type=Path, default=Path("."), help="git repository (default: .)")


def main(argv: Sequence[str] | None = None) -> int:
    code = _main(argv)
    if argv is None:
        # The process exits next (console script, `python -m evalgate`): its final garbage collection would only
        # free what exiting frees anyway, and costs ~0.13 s on a run's object graph (fault bench).
        gc.freeze()
    return code


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "tier":
            return _tier(args)
        if args.command == "load":
            return _load(args)
        if args.command == "merge":
            return _merge(args)
        if args.command == "shadow-report":
            return _shadow_report(args)
        if args.command == "canary-power":
            return _canary_power(args)
        if args.command in ("comment", "pr-context"):
            from evalgate.cli.pr import run_pr_command

            return run_pr_command(args)
        if args.command == "history":
            return _history(args)
        if args.command == "init":
            from evalgate.cli.init import init_command

            return init_command(args)
        if args.command == "ci":
            from evalgate.ci.gate_step import main as ci_main

            return ci_main([args.mode])
        if args.command == "curate":
            from evalgate.cli.curate import curate_command

            return curate_command(args)
        if args.command == "calibrate":
            from evalgate.cli.calibrate import run_calibration

            return int(run_calibration(args))
    except InputError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        print(f"evalgate: {len(exc.problems)} input problem(s); nothing was evaluated", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("evalgate: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if os.environ.get("EVALGATE_DEBUG"):
            raise
        print(f"evalgate: ERROR: {type(exc).__name__}: {exc} (set EVALGATE_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_ERROR
    parser.print_help()
    return EXIT_USAGE


def _profile_defaults() -> dict[str, float]:
    from dataclasses import fields

    from evalgate.release.canary_power import Profile

    return {f.name: float(f.default) for f in fields(Profile)}  # type: ignore[arg-type]


def _canary_power(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from evalgate.core.latency import LatencyBudget
    from evalgate.release.canary import CanaryConfig
    from evalgate.release.canary_power import CanaryTraffic, Profile, detect, never_fires, report

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


def _validate(args: argparse.Namespace) -> int:
    from evalgate.adapters.replay import ReplayCandidate
    from evalgate.core.config import load_config
    from evalgate.core.dataset import load_golden

    problems = []
    golden = None
    try:
        golden = load_golden(args.golden)
    except InputError as exc:
        problems.extend(exc.problems)
    config_path = args.config or args.golden / "gate.toml"
    try:
        config = load_config(config_path)
        if config.cost.max_usd is not None and config.unpriced_models():
            problems.append(
                Problem(
                    str(config_path),
                    None,
                    "[cost] max_usd is set but [pricing] has no price for " + ", ".join(config.unpriced_models()),
                )
            )
    except InputError as exc:
        problems.extend(exc.problems)
    labels = args.golden / "judge_labels.jsonl"
    if golden is not None and labels.is_file():
        from evalgate.engine.judge_calibration import load_judge_labels

        try:
            load_judge_labels(labels, golden.knowledge)
        except InputError as exc:
            problems.extend(exc.problems)
    files = args.responses if args.responses is not None else sorted((args.golden / "responses").glob("*.jsonl"))
    for path in files:
        try:
            replay = ReplayCandidate(path)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if golden is not None:
            known = {c.id for c in golden.cases}
            for cid, rep in sorted(replay.responses):
                if cid not in known:
                    problems.append(Problem(str(path), None, f"response for unknown case id '{cid}' (repeat {rep})"))
            missing = sorted(known - {cid for cid, _ in replay.responses})
            if missing:
                problems.append(
                    Problem(str(path), None, f"no response for {len(missing)} case(s): {', '.join(missing[:6])}")
                )
    if golden is not None:
        from evalgate.engine.curate import check_review

        for review in args.review or []:
            problems.extend(check_review(review, golden)[1])
    guardrail_files = sorted(args.guardrails.glob("*.toml")) if args.guardrails.is_dir() else []
    if args.guardrails != Path("guardrails") and not args.guardrails.is_dir():
        problems.append(Problem(str(args.guardrails), None, "guardrails folder not found"))
    for path in guardrail_files:
        from evalgate.engine.guardrail_spec import load_guardrail_spec

        try:
            load_guardrail_spec(path)
        except InputError as exc:
            problems.extend(exc.problems)
    if problems:
        raise InputError(problems)
    assert golden is not None
    counts = {s: len(golden.suite(s)) for s in golden.suites}
    print(
        f"ok: {len(golden.knowledge)} knowledge entries, "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f" cases, {len(files)} response file(s), {len(guardrail_files)} guardrail file(s)"
        + (f", {len(args.review)} review file(s)" if args.review else "")
    )
    return 0


def _load_baseline(path: Path) -> Any:
    from evalgate.core.results import load_result

    return load_result(path, "baseline")


def _check_prices(
    config: Any, args: argparse.Namespace, live: Any, tier: dict[str, Any], heavy: bool, use_job: bool
) -> None:
    """Under a cost cap every model the run may call needs a price in gate.toml [pricing] (checked before any
    call, so a run is not stopped half-way by a model the meter cannot price)."""
    models: dict[str, str] = {}
    if live is not None:
        models["generator (--model / [models] generator)"] = getattr(live, "model_id", None) or config.models.generator
    if tier["judge"]:
        judge_key = "evaluation_job.evaluator_model" if use_job else tier["judge"]
        chosen = config.evaluation_job.evaluator_model if use_job else None
        models[f"judge (--judge-model / [models] {judge_key})"] = (
            args.judge_model or chosen or getattr(config.models, tier["judge"])
        )
        if heavy:
            models["heavy judge ([models] heavy_judge)"] = config.models.heavy_judge
    embedder = args.embedder if args.embedder != "auto" else ("local" if not tier["judge"] else "titan")
    if embedder == "titan":
        models["embeddings ([models] embeddings)"] = config.models.embeddings
    missing = [f"{role}: {mid}" for role, mid in models.items() if config.price(mid) is None]
    if missing:
        raise InputError.single(
            "--max-cost / [cost] max_usd",
            None,
            "a cost cap is in force but gate.toml [pricing] has no price for " + "; ".join(missing),
        )


def _build_candidate(spec: str, args: argparse.Namespace, config: Any) -> Any:
    kind, _, rest = spec.partition(":")
    if kind == "replay" and rest:
        from evalgate.adapters.replay import ReplayCandidate

        return ReplayCandidate(Path(rest))
    if kind == "bedrock":
        from evalgate.adapters.bedrock import BedrockCandidate
        from evalgate.core.prompts import load_prompt

        gid, gver = os.environ.get("EVALGATE_GUARDRAIL_ID"), os.environ.get("EVALGATE_GUARDRAIL_VERSION")
        if gver and not GUARDRAIL_VERSION.match(gver):
            raise InputError.single("EVALGATE_GUARDRAIL_VERSION", None, f"'{gver}' is not a version number or DRAFT")
        if bool(gid) != bool(gver):
            raise InputError.single(
                "EVALGATE_GUARDRAIL_ID/EVALGATE_GUARDRAIL_VERSION", None, "set both the guardrail id and its version"
            )
        return BedrockCandidate(
            model_id=args.model or config.models.generator,
            prompt=load_prompt(args.prompt or config.models.prompt),
            max_tokens=config.models.max_tokens,
            temperature=config.models.temperature,
            top_p=config.models.top_p,
            guardrail_id=gid,
            guardrail_version=gver,
        )
    if kind == "http" and rest:
        from evalgate.adapters.http_endpoint import http_candidate_from_env

        return http_candidate_from_env(rest)
    if kind == "lambda" and rest:
        from evalgate.adapters.lambda_fn import LambdaCandidate

        name, _, qualifier = rest.partition(":")
        return LambdaCandidate(function_name=name, qualifier=qualifier or None, synthetic=_synthetic_signer())
    raise InputError.single(
        "--candidate",
        None,
        f"unknown candidate '{spec}': use replay:FILE, bedrock, http:URL or lambda:NAME[:QUALIFIER]",
    )


def _shadow_report(args: argparse.Namespace) -> int:
    import tempfile

    from evalgate.core.config import load_config
    from evalgate.release.shadow_report import iter_pairs_from_s3, run_shadow_report

    output_dir(args.out, "--out")
    config = load_config(args.config)
    judge: Any = None
    if not args.no_judge:
        if not _aws_credentials_available():
            print(
                "evalgate: ERROR: the pairwise judge needs Bedrock but no AWS credentials were found "
                "(use --no-judge for similarity and deltas only)",
                file=sys.stderr,
            )
            return EXIT_ERROR
        from evalgate.adapters.bedrock import BedrockJudgeModel
        from evalgate.engine.judge import Judge

        judge = Judge(BedrockJudgeModel(model_id=args.judge_model or config.models.judge))
    embedder: Any = None
    if args.embedder == "local":
        from evalgate.adapters.local import LocalEmbedder

        embedder = LocalEmbedder()
    elif args.embedder == "titan":
        from evalgate.adapters.bedrock import TitanEmbedder

        embedder = TitanEmbedder(model_id=config.models.embeddings)
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


def _aws_credentials_available() -> bool:
    from evalgate.adapters.aws import credentials_available

    return credentials_available()


def _gate_file(config_path: Path, repo: Path) -> str | None:
    """The gate config's path relative to the repository (how git names it), if it is inside it."""
    try:
        return config_path.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return None


def _decide(args: argparse.Namespace, config: Any, config_path: Path, baseline: Any) -> Any:
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


def _tier(args: argparse.Namespace) -> int:
    from evalgate.core.config import load_config

    config_path = args.config or args.golden / "gate.toml"
    config = load_config(config_path)
    baseline = _load_baseline(args.baseline) if args.baseline else None
    decision = _decide(args, config, config_path, baseline)
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2))
    else:
        print(decision.summary)
        for cat, files in sorted(decision.files.items()):
            print(f"  {cat}: {len(files)} file(s)")
    return 0


def _commit(args: argparse.Namespace) -> str | None:
    if args.commit:
        return str(args.commit)
    if os.environ.get("CODEBUILD_RESOLVED_SOURCE_VERSION"):
        return os.environ["CODEBUILD_RESOLVED_SOURCE_VERSION"]
    from evalgate.engine.tiers import head_commit

    return head_commit(args.repo)


def _guardrail_spec(args: argparse.Namespace, gid: str | None) -> Any:
    """The guardrail file to make a candidate guardrail from (flag or environment), loaded and checked."""
    path = args.guardrail_config or (Path(p) if (p := os.environ.get("EVALGATE_GUARDRAIL_CONFIG")) else None)
    if path is None:
        return None
    if args.guardrail_id or args.guardrail_version:
        raise InputError.single("--guardrail-config", None, "use either a guardrail file or --guardrail-id, not both")
    from evalgate.engine.guardrail_spec import load_guardrail_spec

    return load_guardrail_spec(path)


def _guardrail_ids(args: argparse.Namespace, config: Any) -> tuple[str | None, str | None]:
    gid = args.guardrail_id or os.environ.get("EVALGATE_GUARDRAIL_ID") or config.guardrail.id
    gver = args.guardrail_version or os.environ.get("EVALGATE_GUARDRAIL_VERSION") or config.guardrail.version
    if gver and not GUARDRAIL_VERSION.match(gver):
        raise InputError.single(
            "--guardrail-version / EVALGATE_GUARDRAIL_VERSION", None, f"'{gver}' is not a version number or DRAFT"
        )
    if bool(gid) != bool(gver):
        raise InputError.single("--guardrail-id/--guardrail-version", None, "set both the guardrail id and its version")
    return gid, gver


def _run(args: argparse.Namespace) -> int:
    from evalgate.core.config import load_config
    from evalgate.core.dataset import load_golden
    from evalgate.core.gate import review_on_mismatch
    from evalgate.core.results import baseline_mismatch
    from evalgate.core.retry import RetryPolicy
    from evalgate.engine.cache import Cache, parse_s3_url, pull_from_s3, push_to_s3
    from evalgate.engine.cost import CostMeter, MeteredCandidate, MeteredEmbedder, MeteredJudgeModel
    from evalgate.engine.runner import run_evaluation
    from evalgate.engine.shard import parse_shard, select_shard, shard_record
    from evalgate.engine.tiers import skip_result, smoke_subset
    from evalgate.reports import write_reports

    if args.cache_s3_push and not args.cache_s3:
        raise InputError.single("--cache-s3-push", None, "goes with --cache-s3 (where the cache is read from)")
    if args.tier != "auto" and (args.release or args.since):
        raise InputError.single("--release/--since", None, "only apply to --tier auto")
    if args.no_cache and args.cache_s3:
        raise InputError.single("--no-cache/--cache-s3", None, "--cache-s3 syncs the cache that --no-cache turns off")
    for flag, url in (("--cache-s3", args.cache_s3), ("--cache-s3-push", args.cache_s3_push)):
        try:
            if url:
                parse_s3_url(url)
        except ValueError as exc:
            raise InputError.single(flag, None, str(exc)) from None
    shard = parse_shard(args.shard) if args.shard else None
    output_dir(args.out, "--out")
    if not args.no_cache:
        output_file(args.cache, "--cache")
    golden = load_golden(args.golden, args.suite)
    config_path = args.config or args.golden / "gate.toml"
    config = load_config(config_path)
    warnings = _golden_warnings(args, config)
    baseline = _load_baseline(args.baseline) if args.baseline else None
    dumped = config.model_dump(mode="json")
    # A judge change is not a mismatch: the baseline's answers are re-scored with the current judge (issue 19).
    judge_only = [k for k in config.tiers.judge_keys if k.startswith("models.")] + ["judge_calibration"]
    mismatch = (
        baseline_mismatch(baseline, golden.cases, dumped, config.tiers.gate_sections, judge_only) if baseline else []
    )
    if mismatch and args.baseline_mismatch == "refuse":
        hint = "; use the matching baseline, or --baseline-mismatch review to run with a REVIEW verdict"
        raise InputError([Problem(str(args.baseline), None, m + hint) for m in mismatch])
    candidate = _build_candidate(args.candidate, args, config)
    commit = _commit(args)

    decision = None
    tier_name = args.tier
    escalate = False
    if args.tier == "auto":
        decision = _decide(args, config, config_path, baseline)
        print(decision.summary, flush=True)
        if decision.tier == "skip":
            result = skip_result(decision, baseline, config, commit, {"name": candidate.name, **candidate.identity()})
            if shard is not None:
                result.shard = shard_record(shard[0], shard[1], result.cases)
                result.cases = select_shard(result.cases, *shard)
            if mismatch:
                result.baseline_mismatch = mismatch
                review_on_mismatch(result.verdict, mismatch)
            paths = write_reports(result, args.out, baseline)
            _print_summary(result, paths)
            return result.verdict.exit_code if mismatch and shard is None else 0
        tier_name = decision.tier
        escalate = tier_name in ("smoke", "full") and config.tiers.escalate_borderline and not args.no_escalation
    tier = TIERS[tier_name]
    cases = golden.cases
    topup: list[str] = []
    if tier["subset"]:
        cases, topup = smoke_subset(cases, config, tier["subset"])
    if not cases:
        raise InputError.single(str(args.golden), None, f"tier {tier_name} selects no cases")
    selected = len(cases)
    shard_info = shard_record(shard[0], shard[1], cases) if shard is not None else None
    dataset_sha256 = golden.fingerprint(cases)  # of the whole selection, so every shard of a run records the same
    if shard is not None:
        cases = select_shard(cases, *shard)
        if not cases:
            print(f"evalgate: shard {shard[0]}/{shard[1]} holds none of the {selected} cases", file=sys.stderr)
    repeats = args.repeats or (config.release.repeats if decision is not None and tier_name == "release" else None)
    repeats = repeats or tier["repeats"]
    use_job = tier_name == "release" and (args.evaluation_job or config.release.evaluation_job)
    if args.evaluation_job and tier_name != "release":
        raise InputError.single("--evaluation-job", None, "applies to the release tier only")

    cap = args.max_cost if args.max_cost is not None else config.cost.max_usd
    meter = CostMeter(config, cap) if cap is not None else None
    live = bool(getattr(candidate, "live", True))
    if meter is not None:
        _check_prices(config, args, candidate if live else None, tier, escalate or tier_name == "release", use_job)
    if meter is not None and live:
        model_hint = getattr(candidate, "model_id", None) or config.models.generator
        max_out = int(getattr(candidate, "max_tokens", None) or config.models.max_tokens)
        candidate = MeteredCandidate(candidate, meter, model_hint, max_out)

    judge = None
    escalation_judge = None
    batch_judge = None
    checks: list[Any] = []
    guardrail = None
    not_run: list[dict[str, str]] = []
    cache = None
    s3 = None
    if not args.no_cache:
        if args.cache_s3:
            from evalgate.adapters.aws import make_client

            s3 = make_client("s3")
            pull_from_s3(s3, args.cache_s3, args.cache)
        cache = Cache(args.cache)
    gid, gver = _guardrail_ids(args, config)
    spec = _guardrail_spec(args, gid)
    candidate_guardrail = None
    # The guardrail's contextual grounding filters: its file's, or those [guardrail] grounding names for an id.
    grounding: list[str] = (
        [k for k, v in (("GROUNDING", spec.grounding.grounding), ("RELEVANCE", spec.grounding.relevance)) if v]
        if spec is not None
        else (list(config.guardrail.grounding) if gid else [])
    )
    if tier["judge"]:
        if not _aws_credentials_available():
            print(
                f"evalgate: ERROR: tier '{tier_name}' needs a Bedrock judge but no AWS credentials were found "
                "(use --tier offline to run without AWS)",
                file=sys.stderr,
            )
            return EXIT_ERROR
        from evalgate.adapters.bedrock import BedrockJudgeModel
        from evalgate.engine.judge import Judge

        def make_judge(model_id: str) -> Any:
            model: Any = BedrockJudgeModel(model_id=model_id)
            if meter is not None:
                model = MeteredJudgeModel(model, meter)
            return Judge(model, cache=cache, malformed_attempts=config.models.judge_malformed_attempts)

        if use_job:
            from evalgate.engine.evaljobs import EvaluationJobJudge

            batch_judge = EvaluationJobJudge(
                config,
                run_id=f"{(commit or 'local')[:8]}-{os.urandom(3).hex()}",
                evaluator_model=args.judge_model,
                meter=meter,
            )
        else:
            judge = make_judge(args.judge_model or getattr(config.models, tier["judge"]))
        if escalate and config.models.heavy_judge != (args.judge_model or config.models.judge):
            escalation_judge = make_judge(config.models.heavy_judge)
        if spec is not None:
            from evalgate.engine.guardrail_spec import CandidateGuardrail
            from evalgate.engine.guardrails import GuardrailChecker

            candidate_guardrail = CandidateGuardrail(spec)
            gid, gver = candidate_guardrail.__enter__()
            # Cached by the file's content: an unchanged guardrail costs nothing on the next run.
            identity = {"config": spec.fingerprint(), "name": spec.name}
            guardrail = GuardrailChecker(gid, gver, cache=cache, meter=meter, cache_identity=identity)
        elif gid and gver:
            from evalgate.engine.guardrails import GuardrailChecker

            guardrail = GuardrailChecker(gid, gver, cache=cache, meter=meter)
        from evalgate.engine.judge_calibration import check_judge, endpoint_of, records_dir
        from evalgate.engine.judge_trust import calibration_gate, evaluation_job_check

        folder = records_dir(config, args.calibration)
        checks = [
            check_judge(j.identity(), config, folder, endpoint_of(j))
            for j in (judge, escalation_judge)
            if j is not None
        ]
        if batch_judge is not None:
            checks.append(evaluation_job_check(batch_judge.identity()))
        refusal = calibration_gate(checks, config)
        if refusal:
            if cache is not None:
                cache.close()
            print(f"evalgate: ERROR: {refusal}", file=sys.stderr)
            return EXIT_ERROR
    else:
        for metric in ("faithfulness", "relevance"):
            not_run.append({"metric": metric, "reason": "needs the Bedrock judge; tier offline calls no model"})
        not_run.append(
            {
                "metric": "hallucination (claim level)",
                "reason": "needs the Bedrock judge; offline checks numeric grounding only",
            }
        )
        if gid or spec is not None:
            not_run.append(
                {"metric": "guardrail (ApplyGuardrail)", "reason": "needs Bedrock; tier offline calls no AWS service"}
            )
        from evalgate.core.config import GROUNDING_METRICS

        for kind in grounding:
            not_run.append(
                {
                    "metric": GROUNDING_METRICS[kind],
                    "reason": "the guardrail's contextual grounding check needs Bedrock; tier offline calls no AWS "
                    "service",
                }
            )
    embedder_kind = args.embedder if args.embedder != "auto" else ("local" if tier_name == "offline" else "titan")
    embedder: Any
    if embedder_kind == "local":
        from evalgate.adapters.local import LocalEmbedder

        embedder = LocalEmbedder()
    else:
        from evalgate.adapters.bedrock import TitanEmbedder

        embedder = TitanEmbedder(model_id=config.models.embeddings, max_workers=args.concurrency)
        if meter is not None:
            embedder = MeteredEmbedder(embedder, meter)
    rescore_note: dict[str, Any] = {}
    try:
        if baseline is not None:
            from evalgate.engine.runner import rescore_baseline

            baseline, rescore_note = rescore_baseline(
                baseline,
                golden=golden,
                cases=cases,
                config=config,
                tier=tier_name,
                judge=judge,
                embedder=embedder,
                cache=cache,
                concurrency=args.concurrency,
            )
        result = run_evaluation(
            golden=golden,
            cases=cases,
            candidate=candidate,
            config=config,
            tier=tier_name,
            judge=judge,
            embedder=embedder,
            baseline=baseline,
            repeats=repeats,
            concurrency=args.concurrency,
            cache=cache,
            progress=not args.no_progress,
            not_run=not_run,
            policy=RetryPolicy(args.concurrency, time_budget=args.time_budget),
            meter=meter,
            guardrail=guardrail,
            escalation_judge=escalation_judge,
            borderline_margin=config.tiers.borderline_margin,
            batch_judge=batch_judge,
            keep_vector_sum=shard is not None,
            grounding=grounding if guardrail is not None else (),
        )
    finally:
        if candidate_guardrail is not None:
            candidate_guardrail.__exit__(None, None, None)
    if cache is not None:
        cache.close()
        if s3 is not None:
            push_to_s3(s3, args.cache_s3_push or args.cache_s3, args.cache)
    result.commit = commit
    if batch_judge is not None:
        result.judge = batch_judge.identity()
    result.judge_calibration = [c.to_dict() for c in checks]
    result.dataset_sha256 = dataset_sha256
    if rescore_note:
        result.baseline = {**(result.baseline or {}), "rescored": rescore_note}
        if not rescore_note.get("refused"):
            result.verdict.reasons.append(
                "baseline re-scored before the paired comparison: "
                + "; ".join(rescore_note["reasons"])
                + f" ({rescore_note['cases']} stored answers, {rescore_note['model_calls']} model calls, "
                f"{rescore_note['cache_hits']} cache hits)"
            )
    from evalgate.core.gate import with_reviews
    from evalgate.engine.judge_trust import recorded_reviews

    result.verdict = with_reviews(result.verdict, recorded_reviews(result))
    if decision is not None:
        result.tier_decision = {**decision.to_dict(), "smoke_topup": topup}
        result.verdict.reasons.append(decision.summary)
    if shard_info is not None:
        result.shard = shard_info
    if mismatch:
        result.baseline_mismatch = mismatch
        review_on_mismatch(result.verdict, mismatch)
    result.warnings += warnings
    if args.tickets != "none" and shard is None:  # a shard's verdict is partial: tickets come with the whole run
        from evalgate.cli.pr import tickets_for_run

        tickets_for_run(args, result, config)
    paths = write_reports(result, args.out, baseline)
    _print_summary(result, paths)
    if shard is not None:
        print(
            f"  shard {shard[0]}/{shard[1]}: {len(cases)} of {selected} cases; this verdict is partial — "
            "`evalgate merge` gates the union"
        )
        return EXIT_ERROR if result.fatal else 0
    return result.verdict.exit_code


def _load(args: argparse.Namespace) -> int:
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
    _print_summary(result, paths)
    ld = result.load or {}
    print(
        f"  requests: {ld.get('scheduled')} scheduled, {ld.get('sent')} sent, {ld.get('ok')} ok, "
        f"{ld.get('errors')} errors, {ld.get('throttled')} throttled, {ld.get('timeouts')} timeouts, "
        f"{ld.get('dropped_late')} late/dropped; per-request log: {args.out / 'requests.jsonl'}"
    )
    return result.verdict.exit_code


def _synthetic_signer() -> Any:
    """The signed synthetic-traffic header for the project's own runs (``EVALGATE_SIGNING_SECRET``), or None."""
    from evalgate.adapters.signing import SigningUnavailable, synthetic_signer_from_env

    try:
        return synthetic_signer_from_env()
    except SigningUnavailable as exc:
        raise InputError.single("EVALGATE_SIGNING_SECRET", None, str(exc)) from None


def _build_load_target(args: argparse.Namespace, config: Any, workers: int, timeout: float) -> Any:
    """A candidate for load: no retries (a throttle must be seen, not absorbed), pool sized to the workers."""
    from evalgate.adapters.aws import ClientSettings

    spec = args.target
    kind, _, rest = spec.partition(":")
    settings = ClientSettings.from_env(
        max_attempts=1, retry_mode="standard", max_pool_connections=max(workers, 10), read_timeout=timeout
    )
    if kind == "http" and rest:
        from evalgate.adapters.http_endpoint import http_candidate_from_env

        return http_candidate_from_env(rest, timeout=timeout)
    if kind == "lambda" and rest:
        from evalgate.adapters.lambda_fn import LambdaCandidate

        name, _, qualifier = rest.partition(":")
        return LambdaCandidate(
            function_name=name, qualifier=qualifier or None, settings=settings, synthetic=_synthetic_signer()
        )
    if kind == "bedrock" and not rest:
        from evalgate.adapters.bedrock import BedrockCandidate
        from evalgate.core.prompts import load_prompt

        return BedrockCandidate(
            model_id=args.model or config.models.generator,
            prompt=load_prompt(args.prompt or config.models.prompt),
            max_tokens=config.models.max_tokens,
            temperature=config.models.temperature,
            top_p=config.models.top_p,
            settings=settings,
        )
    raise InputError.single(
        "--target", None, f"unknown target '{spec}': use http:URL, lambda:NAME[:QUALIFIER] or bedrock"
    )


def _history(args: argparse.Namespace) -> int:
    from evalgate.engine.history import load_runs, write_site

    runs, problems = load_runs(args.runs)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not runs:
        raise InputError.single(args.runs, None, "no readable results.json found")
    written = write_site(runs, args.out, tuple(args.compare) if args.compare else None)
    print(f"history: {len(runs)} run(s) -> {', '.join(written)}")
    return 0


def _iso_day(text: str) -> Any:
    from datetime import UTC, datetime

    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _golden_warnings(args: argparse.Namespace, config: Any) -> list[str]:
    from evalgate.engine.curate import freshness_warnings

    coverage = None
    path = args.coverage or (args.golden / "coverage.json")
    if args.coverage is not None or path.is_file():
        from evalgate.cli.curate import CoverageFile
        from evalgate.core.dataset import parse_json_model

        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError.single(str(path), None, f"cannot read coverage file: {exc}") from None
        try:
            coverage = parse_json_model(text, CoverageFile, "coverage file").model_dump()
        except ValueError as exc:
            raise InputError.single(str(path), None, str(exc)) from None
    return freshness_warnings(args.golden, config.golden.max_age_days, coverage)


def _merge(args: argparse.Namespace) -> int:
    from evalgate.core.config import load_config
    from evalgate.engine.shard import load_result, merge_results
    from evalgate.reports import write_reports

    output_dir(args.out, "--out")
    shards = [(p, load_result(p)) for p in args.results]
    baseline = _load_baseline(args.baseline) if args.baseline else None
    config = load_config(args.config) if args.config else None
    result = merge_results(shards, baseline, config)
    paths = write_reports(result, args.out, baseline)
    _print_summary(result, paths)
    print(f"  merged {len(shards)} shard(s): {len(result.cases)} cases")
    return result.verdict.exit_code


def _print_summary(result: Any, paths: dict[str, Path]) -> None:
    v = result.verdict
    n = len(result.cases)
    failed = sum(1 for c in result.cases if c.status == "fail")
    print(f"{v.verdict}  ({n} cases, {failed} failing, tier {result.tier}, candidate {result.candidate.get('name')})")
    for reason in v.reasons:
        print(f"  - {reason}")
    for nr in result.not_run:
        print(f"  not run: {nr['metric']}: {nr['reason']}")
    u = result.usage
    print(
        f"  usage: {u.model_calls} model calls, {u.cache_hits} cache hits, "
        f"{u.input_tokens + u.output_tokens} tokens, ${u.cost_usd:.4f}"
    )
    if result.cost and result.cost.get("cap_usd") is not None:
        print(
            f"  cost cap: ${result.cost['cap_usd']:.4f}; metered spend ${result.cost['spent_usd']:.4f}"
            + (" — STOPPED at the cap" if result.cost.get("stopped") else "")
        )
    if result.escalation and result.escalation.get("cases"):
        print(
            f"  borderline: {len(result.escalation['cases'])} case(s) re-judged by "
            f"{result.escalation['judge'].get('model_id')}"
        )
    print("  reports: " + json.dumps({k: str(p) for k, p in paths.items()}))
