"""`evalgate run`: evaluate a candidate on the golden set, write the reports, exit with the verdict. The run is
composed from engine/factories.py (judges, embedder, meter), cli/common.py (the candidate of --candidate) and
engine/tiers.py (the tier table)."""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalgate.cli import startup
from evalgate.cli.common import (
    aws_credentials_available,
    embedder_kind,
    load_baseline,
    make_candidate,
    make_embedder,
    number,
    print_summary,
)
from evalgate.cli.tier import AUTO_ABOUT, add_auto_options, decide
from evalgate.core.config import GUARDRAIL_VERSION_PATTERN
from evalgate.core.dataset import SUITE_FILES
from evalgate.core.errors import InputError, Problem
from evalgate.core.inputs import output_dir, output_file
from evalgate.core.retry import DEFAULT_TIME_BUDGET_S
from evalgate.core.verdicts import ERROR as EXIT_ERROR
from evalgate.engine.tiers import TIERS, Tier

GUARDRAIL_VERSION = re.compile(GUARDRAIL_VERSION_PATTERN)

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
    + "\n".join(f"  {k:<9} {v.about}" for k, v in TIERS.items())
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


def add_parser(sub: Any) -> None:
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
        choices=list(SUITE_FILES),
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
        "--repeats", type=number(int, 1, 20), help="answers per case, to measure run-to-run noise (default per tier)"
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
    run.add_argument("--concurrency", type=number(int, 1, 512), default=16, help="parallel model calls (default: 16)")
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
        type=number(float, 0, lo_open=True),
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
        type=number(float, 0, lo_open=True),
        metavar="USD",
        help="stop with ERROR before the run's spend could exceed this (default: gate.toml [cost] max_usd)",
    )
    run.add_argument("--shard", metavar="K/N", help="evaluate only shard K of N (by case-id hash); merge later")
    add_auto_options(run)
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
    run.set_defaults(handler=run_command, owns_startup=True)


def _guardrail_version(text: str) -> str:
    if not GUARDRAIL_VERSION.match(text):
        raise argparse.ArgumentTypeError(f"must be a guardrail version: a number 1-99999999 or DRAFT (got {text!r})")
    return text


def _check_prices(config: Any, args: argparse.Namespace, live: Any, tier: Tier, heavy: bool, use_job: bool) -> None:
    """Under a cost cap every model the run may call needs a price in gate.toml [pricing] (checked before any
    call, so a run is not stopped half-way by a model the meter cannot price)."""
    models: dict[str, str] = {}
    if live is not None:
        models["generator (--model / [models] generator)"] = getattr(live, "model_id", None) or config.models.generator
    if tier.judge:
        judge_key = "evaluation_job.evaluator_model" if use_job else tier.judge
        chosen = config.evaluation_job.evaluator_model if use_job else None
        models[f"judge (--judge-model / [models] {judge_key})"] = (
            args.judge_model or chosen or getattr(config.models, tier.judge)
        )
        if heavy:
            models["heavy judge ([models] heavy_judge)"] = config.models.heavy_judge
    if embedder_kind(args.embedder, judged=tier.judge is not None) == "titan":
        models["embeddings ([models] embeddings)"] = config.models.embeddings
    missing = [f"{role}: {mid}" for role, mid in models.items() if config.price(mid) is None]
    if missing:
        raise InputError.single(
            "--max-cost / [cost] max_usd",
            None,
            "a cost cap is in force but gate.toml [pricing] has no price for " + "; ".join(missing),
        )


def _build_candidate(spec: str, args: argparse.Namespace, config: Any) -> Any:
    """The candidate of ``--candidate``; a Bedrock one calls with the guardrail of ``EVALGATE_GUARDRAIL_ID`` and
    ``EVALGATE_GUARDRAIL_VERSION`` when both are set."""
    gid, gver = os.environ.get("EVALGATE_GUARDRAIL_ID"), os.environ.get("EVALGATE_GUARDRAIL_VERSION")
    if spec.partition(":")[0] == "bedrock":
        if gver and not GUARDRAIL_VERSION.match(gver):
            raise InputError.single("EVALGATE_GUARDRAIL_VERSION", None, f"'{gver}' is not a version number or DRAFT")
        if bool(gid) != bool(gver):
            raise InputError.single(
                "EVALGATE_GUARDRAIL_ID/EVALGATE_GUARDRAIL_VERSION", None, "set both the guardrail id and its version"
            )
    return make_candidate(spec, config, model=args.model, prompt=args.prompt, guardrail=(gid, gver))


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


def _coverage(args: argparse.Namespace) -> dict[str, Any] | None:
    """The live coverage file (``--coverage``, else golden/coverage.json when present), read before any call."""
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
    return coverage


def _golden_warnings(args: argparse.Namespace, config: Any, coverage: dict[str, Any] | None) -> list[str]:
    from evalgate.engine.curate import freshness_warnings

    return freshness_warnings(args.golden, config.golden.max_age_days, coverage)


class _Meanwhile:
    """What only the end of a run needs — the report writers, the golden set's freshness warnings (a `git log`) —
    done while the first calls are in flight (RunOptions.meanwhile), or at the end when the run never got there."""

    def __init__(self, args: argparse.Namespace, config: Any, coverage: dict[str, Any] | None) -> None:
        self.args, self.config, self.coverage = args, config, coverage
        self.warnings: list[str] | None = None

    def __call__(self) -> None:
        if self.warnings is not None:  # a baseline re-scored first ran it already
            return
        import evalgate.reports  # noqa: F401  (written at the end)

        self.warnings = _golden_warnings(self.args, self.config, self.coverage)

    def result(self) -> list[str]:
        if self.warnings is None:
            self()
        return self.warnings or []


def run_command(args: argparse.Namespace) -> int:
    from evalgate.core.config import load_config
    from evalgate.core.dataset import load_golden
    from evalgate.core.gate import review_on_mismatch
    from evalgate.core.results import baseline_mismatch
    from evalgate.core.retry import RetryPolicy
    from evalgate.engine.cache import push_to_s3
    from evalgate.engine.factories import make_judge, make_meter, meter_candidate
    from evalgate.engine.runner import RunOptions, run_evaluation
    from evalgate.engine.shard import parse_shard

    _check_flags(args)
    shard = parse_shard(args.shard) if args.shard else None
    output_dir(args.out, "--out")
    if not args.no_cache:
        output_file(args.cache, "--cache")
    golden = load_golden(args.golden, args.suite)
    config_path = args.config or args.golden / "gate.toml"
    config = load_config(config_path)
    meanwhile = _Meanwhile(args, config, _coverage(args))
    baseline = load_baseline(args.baseline) if args.baseline else None
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
        decision = decide(args, config, config_path, baseline)
        print(decision.summary, flush=True)
        if decision.tier == "skip":
            return _skip(args, decision, baseline, config, commit, candidate, shard, mismatch)
        tier_name = decision.tier
        escalate = tier_name in ("smoke", "full") and config.tiers.escalate_borderline and not args.no_escalation
    tier = TIERS[tier_name]
    sel = _select(args, golden, config, tier_name, auto=decision is not None, shard=shard)
    cases = sel.cases
    use_job = tier_name == "release" and (args.evaluation_job or config.release.evaluation_job)
    if args.evaluation_job and tier_name != "release":
        raise InputError.single("--evaluation-job", None, "applies to the release tier only")

    cap = args.max_cost if args.max_cost is not None else config.cost.max_usd
    meter = make_meter(config, cap)
    live = bool(getattr(candidate, "live", True))
    if meter is not None:
        _check_prices(config, args, candidate if live else None, tier, escalate or tier_name == "release", use_job)
    candidate = meter_candidate(candidate, meter, config)

    judge = None
    escalation_judge = None
    batch_judge = None
    checks: list[Any] = []
    guardrail = None
    not_run: list[dict[str, str]] = []
    cache, s3 = _open_cache(args)
    gid, gver = _guardrail_ids(args, config)
    spec = _guardrail_spec(args, gid)
    candidate_guardrail: Any = None
    # The guardrail's contextual grounding filters: its file's, or those [guardrail] grounding names for an id.
    grounding: list[str] = (
        [k for k, v in (("GROUNDING", spec.grounding.grounding), ("RELEVANCE", spec.grounding.relevance)) if v]
        if spec is not None
        else (list(config.guardrail.grounding) if gid else [])
    )
    if tier.judge:
        if not aws_credentials_available():
            print(
                f"evalgate: ERROR: tier '{tier_name}' needs a Bedrock judge but no AWS credentials were found "
                "(use --tier offline to run without AWS)",
                file=sys.stderr,
            )
            return EXIT_ERROR
        malformed = config.models.judge_malformed_attempts
        if use_job:
            from evalgate.engine.evaljobs import EvaluationJobJudge

            batch_judge = EvaluationJobJudge(
                config,
                run_id=f"{(commit or 'local')[:8]}-{os.urandom(3).hex()}",
                evaluator_model=args.judge_model,
                meter=meter,
            )
        else:
            judge_id = args.judge_model or getattr(config.models, tier.judge)
            judge = make_judge(judge_id, cache=cache, meter=meter, malformed_attempts=malformed)
        if escalate and config.models.heavy_judge != (args.judge_model or config.models.judge):
            escalation_judge = make_judge(
                config.models.heavy_judge, cache=cache, meter=meter, malformed_attempts=malformed
            )
        guardrail, candidate_guardrail = _guardrail_checker(spec, gid, gver, cache, meter)
        checks, refusal = _calibration_checks(args, config, (judge, escalation_judge), batch_judge)
        if refusal:
            if cache is not None:
                cache.close()
            print(f"evalgate: ERROR: {refusal}", file=sys.stderr)
            return EXIT_ERROR
    else:
        not_run = _offline_not_run(bool(gid) or spec is not None, grounding)
    embedder = make_embedder(
        embedder_kind(args.embedder, judged=tier.judge is not None),
        config.models.embeddings,
        max_workers=args.concurrency,
        meter=meter,
    )
    options = RunOptions(
        tier=tier_name,
        repeats=sel.repeats,
        concurrency=args.concurrency,
        progress=not args.no_progress,
        borderline_margin=config.tiers.borderline_margin,
        keep_vector_sum=shard is not None,
        grounding=tuple(grounding) if guardrail is not None else (),
        meanwhile=meanwhile,
    )
    rescore_note: dict[str, Any] = {}
    startup.done()  # the calls start now
    try:
        if baseline is not None:
            from evalgate.engine.runner import rescore_baseline

            baseline, rescore_note = rescore_baseline(
                baseline,
                golden=golden,
                cases=cases,
                config=config,
                options=options,
                judge=judge,
                embedder=embedder,
                cache=cache,
            )
        result = run_evaluation(
            golden=golden,
            cases=cases,
            candidate=candidate,
            config=config,
            options=options,
            baseline=baseline,
            not_run=not_run,
            judge=judge,
            embedder=embedder,
            cache=cache,
            policy=RetryPolicy(args.concurrency, time_budget=args.time_budget),
            meter=meter,
            guardrail=guardrail,
            escalation_judge=escalation_judge,
            batch_judge=batch_judge,
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
    result.dataset_sha256 = sel.dataset_sha256
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
        result.tier_decision = {**decision.to_dict(), "smoke_topup": sel.topup}
        result.verdict.reasons.append(decision.summary)
    if sel.shard_info is not None:
        result.shard = sel.shard_info
    if mismatch:
        result.baseline_mismatch = mismatch
        review_on_mismatch(result.verdict, mismatch)
    result.warnings += meanwhile.result()
    if args.tickets != "none" and shard is None:  # a shard's verdict is partial: tickets come with the whole run
        from evalgate.cli.pr import tickets_for_run

        tickets_for_run(args, result, config)
    from evalgate.reports import write_reports

    paths = write_reports(result, args.out, baseline)
    print_summary(result, paths)
    if shard is not None:
        print(
            f"  shard {shard[0]}/{shard[1]}: {len(cases)} of {sel.selected} cases; this verdict is partial — "
            "`evalgate merge` gates the union"
        )
        return EXIT_ERROR if result.fatal else 0
    return result.verdict.exit_code


@dataclass(frozen=True)
class _Selection:
    """The cases a run evaluates (this shard's), how many answers per case, and what the reports record of it."""

    cases: list[Any]
    selected: int  # cases the tier selects, over every shard
    topup: list[str]  # smoke subset: the cases added to reach gate.min_cases per group
    shard_info: dict[str, Any] | None
    dataset_sha256: str  # of the whole selection, so every shard of a run records the same
    repeats: int


def _select(
    args: argparse.Namespace, golden: Any, config: Any, tier_name: str, *, auto: bool, shard: tuple[int, int] | None
) -> _Selection:
    from evalgate.engine.shard import select_shard, shard_record
    from evalgate.engine.tiers import smoke_subset

    tier = TIERS[tier_name]
    cases = golden.cases
    topup: list[str] = []
    if tier.subset:
        cases, topup = smoke_subset(cases, config, tier.subset)
    if not cases:
        raise InputError.single(str(args.golden), None, f"tier {tier_name} selects no cases")
    selected = len(cases)
    shard_info = shard_record(shard[0], shard[1], cases) if shard is not None else None
    dataset_sha256 = golden.fingerprint(cases)
    if shard is not None:
        cases = select_shard(cases, *shard)
        if not cases:
            print(f"evalgate: shard {shard[0]}/{shard[1]} holds none of the {selected} cases", file=sys.stderr)
    repeats = args.repeats or (config.release.repeats if auto and tier_name == "release" else None)
    return _Selection(list(cases), selected, topup, shard_info, dataset_sha256, repeats or tier.repeats)


def _check_flags(args: argparse.Namespace) -> None:
    """The flag combinations `run` refuses before reading anything."""
    from evalgate.engine.cache import parse_s3_url

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


def _skip(
    args: argparse.Namespace,
    decision: Any,
    baseline: Any,
    config: Any,
    commit: str | None,
    candidate: Any,
    shard: tuple[int, int] | None,
    mismatch: list[str],
) -> int:
    """Tier auto decided nothing needs evaluating: carry the approved results forward (PASS with a note)."""
    from evalgate.core.gate import review_on_mismatch
    from evalgate.engine.shard import select_shard, shard_record
    from evalgate.engine.tiers import skip_result
    from evalgate.reports import write_reports

    result = skip_result(decision, baseline, config, commit, {"name": candidate.name, **candidate.identity()})
    if shard is not None:
        result.shard = shard_record(shard[0], shard[1], result.cases)
        result.cases = select_shard(result.cases, *shard)
    if mismatch:
        result.baseline_mismatch = mismatch
        review_on_mismatch(result.verdict, mismatch)
    paths = write_reports(result, args.out, baseline)
    print_summary(result, paths)
    return result.verdict.exit_code if mismatch and shard is None else 0


def _open_cache(args: argparse.Namespace) -> tuple[Any, Any]:
    """(the run's cache or None under --no-cache, the S3 client it was pulled with under --cache-s3, else None)."""
    from evalgate.engine.cache import Cache, pull_from_s3

    if args.no_cache:
        return None, None
    s3 = None
    if args.cache_s3:
        from evalgate.adapters.aws import make_client

        s3 = make_client("s3")
        pull_from_s3(s3, args.cache_s3, args.cache)
    return Cache(args.cache), s3


def _guardrail_checker(spec: Any, gid: str | None, gver: str | None, cache: Any, meter: Any) -> tuple[Any, Any]:
    """(the ApplyGuardrail checker of the guardrail suites or None, the candidate guardrail made from ``spec`` for
    the run, entered here, which the caller exits, or None)."""
    from evalgate.engine.guardrails import GuardrailChecker

    if spec is not None:
        from evalgate.engine.guardrail_spec import CandidateGuardrail

        candidate_guardrail = CandidateGuardrail(spec)
        gid, gver = candidate_guardrail.__enter__()
        # Cached by the file's content: an unchanged guardrail costs nothing on the next run.
        identity = {"config": spec.fingerprint(), "name": spec.name}
        return GuardrailChecker(gid, gver, cache=cache, meter=meter, cache_identity=identity), candidate_guardrail
    if gid and gver:
        return GuardrailChecker(gid, gver, cache=cache, meter=meter), None
    return None, None


def _calibration_checks(
    args: argparse.Namespace, config: Any, judges: tuple[Any, ...], batch_judge: Any
) -> tuple[list[Any], str | None]:
    """Each judge's calibration record checked (engine/judge_calibration.py), and the refusal when one falls
    short under ``[judge_calibration]``'s rule (judge_trust.calibration_gate), else None."""
    from evalgate.engine.judge_calibration import check_judge, endpoint_of, records_dir
    from evalgate.engine.judge_trust import calibration_gate, evaluation_job_check

    folder = records_dir(config, args.calibration)
    checks = [check_judge(j.identity(), config, folder, endpoint_of(j)) for j in judges if j is not None]
    if batch_judge is not None:
        checks.append(evaluation_job_check(batch_judge.identity()))
    return checks, calibration_gate(checks, config)


def _offline_not_run(guardrail: bool, grounding: list[str]) -> list[dict[str, str]]:
    """What tier offline does not measure, and why (reported as "not run")."""
    from evalgate.core.config import GROUNDING_METRICS

    not_run = [
        {"metric": metric, "reason": "needs the Bedrock judge; tier offline calls no model"}
        for metric in ("faithfulness", "relevance")
    ]
    not_run.append(
        {
            "metric": "hallucination (claim level)",
            "reason": "needs the Bedrock judge; offline checks numeric grounding only",
        }
    )
    if guardrail:
        not_run.append(
            {"metric": "guardrail (ApplyGuardrail)", "reason": "needs Bedrock; tier offline calls no AWS service"}
        )
    for kind in grounding:
        not_run.append(
            {
                "metric": GROUNDING_METRICS[kind],
                "reason": "the guardrail's contextual grounding check needs Bedrock; tier offline calls no AWS service",
            }
        )
    return not_run
