"""The ``evalgate`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import __version__
from .errors import InputError

EXIT_USAGE = 2
EXIT_ERROR = 4

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
        "about": "cases tagged 'smoke', cheap judge (Bedrock)",
    },
    "full": {"judge": "judge", "subset": None, "repeats": 1, "about": "every case, cheap judge (Bedrock)"},
    "release": {
        "judge": "heavy_judge",
        "subset": None,
        "repeats": 3,
        "about": "every case, heavy judge, 3 repeats to measure run-to-run noise",
    },
}

DESCRIPTION = """\
Score a GenAI change against a golden dataset and decide whether it may ship.

Exit codes: 0 PASS · 1 FAIL · 2 usage or input error · 3 REVIEW (needs a human) · 4 ERROR (could not decide:
too many unscored cases, missing data, time budget exhausted).

Start here:
  evalgate validate                                   check golden/ (datasets, knowledge, gate.toml)
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
    + """

Reports written to --out: results.json (keep the approved one: it is the next run's --baseline),
junit.xml (CodeBuild report groups), summary.md (email / PR), report.html (charts, per-case details).
Results are cached (generations, judgements, embeddings) in --cache; an unchanged rerun makes no model calls.
"""
)


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
    run.add_argument("--tier", choices=list(TIERS), default="offline", help="how much to run (default: offline)")
    run.add_argument("--golden", type=Path, default=Path("golden"), help="golden dataset folder (default: golden)")
    run.add_argument("--config", type=Path, help="gate config (default: GOLDEN/gate.toml)")
    run.add_argument(
        "--suite",
        action="append",
        choices=["regression", "guardrail", "injection"],
        help="limit to a suite (repeatable; default: all)",
    )
    run.add_argument("--baseline", type=Path, help="the last approved run's results.json (paired comparison, drift)")
    run.add_argument("--repeats", type=int, help="answers per case, to measure run-to-run noise (default per tier)")
    run.add_argument("--out", type=Path, default=Path("out/eval"), help="report folder (default: out/eval)")
    run.add_argument("--cache", type=Path, default=Path(".evalgate-cache/cache.sqlite"), help="SQLite cache file")
    run.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    run.add_argument("--cache-s3", metavar="S3_URL", help="s3://bucket/key to pull the cache from and push it back to")
    run.add_argument("--concurrency", type=int, default=16, help="parallel model calls (default: 16)")
    run.add_argument(
        "--embedder",
        choices=["auto", "local", "titan"],
        default="auto",
        help="similarity embeddings: local MiniLM or Titan v2 (auto: local offline, Titan otherwise)",
    )
    run.add_argument("--model", help="generator model or inference profile id (bedrock candidate)")
    run.add_argument("--prompt", help="prompt id under prompts/, e.g. support/v1 (bedrock candidate)")
    run.add_argument("--judge-model", help="override the judge model id")
    run.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop and exit ERROR after this long")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

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

    cal = sub.add_parser(
        "calibrate",
        help="measure metrics against human labels (STS-B, HaluEval, TruthfulQA)",
        description="Measure a metric against human-labelled public benchmarks.",
    )
    cal.add_argument(
        "--benchmarks", type=Path, help="benchmarks folder (default: bench/data, else ../shared/benchmarks)"
    )
    cal.add_argument("--metric", choices=["similarity", "grounding", "judge"], default="similarity")
    cal.add_argument("--limit", type=int, help="use at most N rows per dataset")
    cal.add_argument("--judge-model", help="judge model for --metric judge (needs AWS)")
    cal.add_argument("--out", type=Path, help="write the calibration record as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
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
        if args.command == "calibrate":
            from .calibrate import run_calibration

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


def _validate(args: argparse.Namespace) -> int:
    from .config import load_config
    from .dataset import load_golden
    from .providers.replay import ReplayCandidate

    problems = []
    golden = None
    try:
        golden = load_golden(args.golden)
    except InputError as exc:
        problems.extend(exc.problems)
    try:
        load_config(args.config or args.golden / "gate.toml")
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
            from .errors import Problem

            for cid, rep in sorted(replay.responses):
                if cid not in known:
                    problems.append(Problem(str(path), None, f"response for unknown case id '{cid}' (repeat {rep})"))
            missing = sorted(known - {cid for cid, _ in replay.responses})
            if missing:
                problems.append(
                    Problem(str(path), None, f"no response for {len(missing)} case(s): {', '.join(missing[:6])}")
                )
    if problems:
        raise InputError(problems)
    assert golden is not None
    counts = {s: len(golden.suite(s)) for s in golden.suites}
    print(
        f"ok: {len(golden.knowledge)} knowledge entries, "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f" cases, {len(files)} response file(s)"
    )
    return 0


def _load_baseline(path: Path) -> Any:
    from .results import RunResult

    try:
        return RunResult.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError.single(str(path), None, "baseline results.json not found") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError.single(
            str(path), None, f"not an evalgate results.json: {'.'.join(map(str, err['loc']))}: {err['msg']}"
        ) from None


def _build_candidate(spec: str, args: argparse.Namespace, config: Any) -> Any:
    kind, _, rest = spec.partition(":")
    if kind == "replay" and rest:
        from .providers.replay import ReplayCandidate

        return ReplayCandidate(Path(rest))
    if kind == "bedrock":
        from .prompts import load_prompt
        from .providers.bedrock import BedrockCandidate

        gid, gver = os.environ.get("EVALGATE_GUARDRAIL_ID"), os.environ.get("EVALGATE_GUARDRAIL_VERSION")
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
        from .providers.http_endpoint import HttpCandidate

        return HttpCandidate(url=rest)
    if kind == "lambda" and rest:
        from .providers.lambda_fn import LambdaCandidate

        name, _, qualifier = rest.partition(":")
        return LambdaCandidate(function_name=name, qualifier=qualifier or None)
    raise InputError.single(
        "--candidate",
        None,
        f"unknown candidate '{spec}': use replay:FILE, bedrock, http:URL or lambda:NAME[:QUALIFIER]",
    )


def _aws_credentials_available() -> bool:
    import boto3

    return boto3.Session().get_credentials() is not None


def _run(args: argparse.Namespace) -> int:
    from .cache import Cache, pull_from_s3, push_to_s3
    from .config import load_config
    from .dataset import load_golden
    from .reports import write_reports
    from .runner import run_evaluation

    if args.concurrency < 1:
        raise InputError.single("--concurrency", None, "must be at least 1")
    if args.repeats is not None and args.repeats < 1:
        raise InputError.single("--repeats", None, "must be at least 1")
    tier = TIERS[args.tier]
    config = load_config(args.config or args.golden / "gate.toml")
    golden = load_golden(args.golden, args.suite)
    cases = golden.cases
    if tier["subset"]:
        cases = [c for c in cases if tier["subset"] in c.tags]
    if not cases:
        raise InputError.single(str(args.golden), None, f"tier {args.tier} selects no cases")
    baseline = _load_baseline(args.baseline) if args.baseline else None
    candidate = _build_candidate(args.candidate, args, config)
    repeats = args.repeats or tier["repeats"]

    judge = None
    not_run: list[dict[str, str]] = []
    cache = None
    s3 = None
    if not args.no_cache:
        if args.cache_s3:
            from .providers.aws import make_client

            s3 = make_client("s3")
            pull_from_s3(s3, args.cache_s3, args.cache)
        cache = Cache(args.cache)
    if tier["judge"]:
        if not _aws_credentials_available():
            print(
                f"evalgate: ERROR: tier '{args.tier}' needs a Bedrock judge but no AWS credentials were found "
                "(use --tier offline to run without AWS)",
                file=sys.stderr,
            )
            return EXIT_ERROR
        from .judge import Judge
        from .providers.bedrock import BedrockJudgeModel

        judge_id = args.judge_model or getattr(config.models, tier["judge"])
        judge = Judge(BedrockJudgeModel(model_id=judge_id), cache=cache)
    else:
        for metric in ("faithfulness", "relevance"):
            not_run.append({"metric": metric, "reason": "needs the Bedrock judge; tier offline calls no model"})
        not_run.append(
            {
                "metric": "hallucination (claim level)",
                "reason": "needs the Bedrock judge; offline checks numeric grounding only",
            }
        )
    embedder_kind = args.embedder if args.embedder != "auto" else ("local" if args.tier == "offline" else "titan")
    embedder: Any
    if embedder_kind == "local":
        from .providers.local import LocalEmbedder

        embedder = LocalEmbedder()
    else:
        from .providers.bedrock import TitanEmbedder

        embedder = TitanEmbedder(model_id=config.models.embeddings, max_workers=args.concurrency)
    deadline = time.monotonic() + args.time_budget if args.time_budget else None
    result = run_evaluation(
        golden=golden,
        cases=cases,
        candidate=candidate,
        config=config,
        tier=args.tier,
        judge=judge,
        embedder=embedder,
        baseline=baseline,
        repeats=repeats,
        concurrency=args.concurrency,
        cache=cache,
        progress=not args.no_progress,
        deadline=deadline,
        not_run=not_run,
    )
    if cache is not None:
        cache.close()
        if s3 is not None:
            push_to_s3(s3, args.cache_s3, args.cache)
    paths = write_reports(result, args.out, baseline)
    _print_summary(result, paths)
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
    print("  reports: " + json.dumps({k: str(p) for k, p in paths.items()}))
