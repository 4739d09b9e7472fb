"""CodeDeploy lifecycle hooks for the service's Lambda deployments.

- BeforeAllowTraffic (``pre_traffic_smoke``): the golden smoke set against the NEW version only (invoked by
  its version qualifier, never the alias), scored by the same evaluation engine as the pipeline gate; its p95
  time to first token (as the new version measured it) held to ``TTFT_SLO_MS``, and its total answer time to
  the previous version's on the same prompts (``BASELINE_QUALIFIER``, the alias that still serves all traffic
  before the shift; timing only, not scored) within ``TOTAL_REGRESSION_MS`` / ``_PCT`` (``evalgate.core.latency``).
- AfterAllowTraffic (``canary_analysis``): the canary judge (``evalgate.release.canary``) on the per-version
  metrics of the bake window, new version vs the previous one.

Whatever happens, ``run_hook`` reports Succeeded or Failed to CodeDeploy (PutLifecycleEventHookExecutionStatus):
the work runs in a worker thread with a time budget taken from the Lambda's remaining time, an exception or an
exhausted budget is a Failed, and the report sits in a ``finally``. Only PASS succeeds; REVIEW, FAIL, ERROR
and insufficient data fail (a deployment can't wait for a human).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evalgate.core.errors import InputError, format_validation_error
from evalgate.core.latency import LatencyBudget
from evalgate.release.appspec import versions_from_deployment

HookStatus = Literal["Succeeded", "Failed"]
REPORT_RESERVE_S = 10.0


class HookEvent(BaseModel):
    """The event CodeDeploy sends to a Lambda lifecycle hook."""

    model_config = ConfigDict(extra="allow")

    DeploymentId: str = Field(pattern=r"^d-[A-Z0-9]+$")
    LifecycleEventHookExecutionId: str = Field(min_length=1)


class HookEventError(ValueError):
    """Not a CodeDeploy hook event: there is nothing to report to, so the handler answers with this message."""


class HookAlreadyRunning(Exception):
    """Another invocation is running this hook execution (a redelivery): it reports; this one must not."""


def parse_hook_event(event: Any) -> HookEvent:
    if not isinstance(event, Mapping):
        raise HookEventError(f"expected a CodeDeploy lifecycle hook event (an object), got {type(event).__name__}")
    try:
        return HookEvent.model_validate(dict(event))
    except ValidationError as exc:
        fields = "; ".join(format_validation_error(exc, root="(event)"))
        raise HookEventError(f"not a CodeDeploy lifecycle hook event ({fields})") from None


@dataclass
class HookOutcome:
    status: HookStatus
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


class CodeDeployReporter:
    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from evalgate.adapters.aws import ClientSettings, make_client

            self._client = make_client("codedeploy", ClientSettings.from_env(max_attempts=5, read_timeout=10.0))
        return self._client

    def report(self, deployment_id: str, execution_id: str, status: HookStatus) -> bool:
        """Report the status; False when CodeDeploy already has one for this execution (a redelivered hook
        invocation reporting again): that is done, not an error."""
        try:
            self.client.put_lifecycle_event_hook_execution_status(
                deploymentId=deployment_id, lifecycleEventHookExecutionId=execution_id, status=status
            )
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") == "LifecycleEventAlreadyCompletedException":
                return False
            raise
        return True


def budget_from_context(context: Any, reserve_s: float = REPORT_RESERVE_S, default_s: float = 600.0) -> float:
    """Seconds the work may take: the invocation's remaining time minus what reporting needs."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    total = remaining() / 1000.0 if callable(remaining) else default_s
    return max(1.0, total - reserve_s)


def run_with_budget(work: Callable[[float], HookOutcome], budget_s: float) -> HookOutcome:
    """Run ``work(deadline)`` in a daemon thread; a raise or an overrun becomes a Failed outcome."""
    deadline = time.monotonic() + budget_s
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["outcome"] = work(deadline)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="evalgate-hook-work", daemon=True)
    thread.start()
    thread.join(budget_s)
    if thread.is_alive():
        return HookOutcome("Failed", f"time budget of {budget_s:.0f} s ran out before the check finished")
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, HookAlreadyRunning):
            raise exc
        return HookOutcome("Failed", f"the check raised {type(exc).__name__}: {str(exc)[:500]}")
    outcome = box.get("outcome")
    if not isinstance(outcome, HookOutcome):
        return HookOutcome("Failed", "the check returned no outcome")
    return outcome


HOOK_DEDUP_S = 24 * 3600  # longer than any redelivery of a hook invocation (async retries end within 6 hours)


def hook_once(context: Any) -> Callable[[HookEvent, Callable[[float], HookOutcome]], Callable[[float], HookOutcome]]:
    """``once`` for ``run_hook``: the hook's work runs once per LifecycleEventHookExecutionId (Powertools
    Idempotency); a redelivery gets the stored outcome; one arriving mid-run raises ``HookAlreadyRunning``."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

    from evalgate.adapters.lambda_runtime import idempotent

    def once(hook: HookEvent, work: Callable[[float], HookOutcome]) -> Callable[[float], HookOutcome]:
        def guarded(deadline: float) -> HookOutcome:
            def run(data: dict[str, Any]) -> dict[str, Any]:
                o = work(deadline)
                details = json.loads(json.dumps(o.details, default=str))
                return {"status": o.status, "reason": o.reason, "details": details}

            fn = idempotent(run, key="LifecycleEventHookExecutionId", expires_s=HOOK_DEDUP_S, context=context)
            try:
                stored = fn(data={"LifecycleEventHookExecutionId": hook.LifecycleEventHookExecutionId})
            except IdempotencyAlreadyInProgressError:
                raise HookAlreadyRunning(hook.LifecycleEventHookExecutionId) from None
            return HookOutcome(stored["status"], stored["reason"], dict(stored.get("details") or {}))

        return guarded

    return once


def run_hook(
    event: Any,
    work: Callable[[float], HookOutcome],
    *,
    budget_s: float,
    reporter: CodeDeployReporter,
    logger: Any = None,
    once: Callable[[HookEvent, Callable[[float], HookOutcome]], Callable[[float], HookOutcome]] | None = None,
) -> HookOutcome:
    """Parse the hook event, run ``work`` within the budget, and ALWAYS report the status to CodeDeploy.

    ``once(hook, work)`` makes the work idempotent per ``LifecycleEventHookExecutionId``: a redelivered
    invocation gets the first run's outcome and reports it again (CodeDeploy answers "already completed",
    which is done); while the first run is still going it raises ``HookAlreadyRunning`` and nothing is reported
    here (the running invocation reports).
    """
    hook = parse_hook_event(event)
    outcome = HookOutcome("Failed", "the hook stopped before the check finished")
    report = True
    try:
        outcome = run_with_budget(once(hook, work) if once is not None else work, budget_s)
    except HookAlreadyRunning:
        report = False
        raise
    finally:
        if report:
            if logger is not None:
                logger.info(
                    "reporting hook status",
                    extra={"deployment_id": hook.DeploymentId, "status": outcome.status, "reason": outcome.reason},
                )
            if not reporter.report(hook.DeploymentId, hook.LifecycleEventHookExecutionId, outcome.status):
                outcome.details["already_reported"] = True
                if logger is not None:
                    logger.info("CodeDeploy already has a status for this hook execution; nothing to do")
    return outcome


def run_hook_in_lambda(
    event: Any,
    work: Callable[[float], HookOutcome],
    context: Any,
    reporter: CodeDeployReporter,
    logger: Any,
    once: Callable[[HookEvent, Callable[[float], HookOutcome]], Callable[[float], HookOutcome]] | None = None,
) -> HookOutcome | dict[str, str]:
    """``run_hook`` for a Lambda handler, within the invocation's remaining time: the outcome, or the handler's
    answer when there is nothing to report (a malformed event, logged and dropped; a redelivery while the first
    invocation runs, which reports)."""
    try:
        return run_hook(event, work, budget_s=budget_from_context(context), reporter=reporter, logger=logger, once=once)
    except HookEventError as exc:
        logger.error("malformed hook event; nothing to report to CodeDeploy", extra={"error": str(exc)})
        return {"status": "error", "error": str(exc)}
    except HookAlreadyRunning:
        logger.info("redelivered hook invocation while the first is running; it reports the status")
        return {"status": "duplicate", "reason": "this hook execution is already running"}


# ------------------------------------------------------------------------------------------------ AppSpec


def version_of(qualifier: str) -> str:
    """``7`` from ``7`` or from ``arn:aws:lambda:...:function:name:7``."""
    return qualifier.rsplit(":", 1)[-1] if qualifier.startswith("arn:") else qualifier


# ------------------------------------------------------------------------------------------------ pre-traffic


@dataclass(frozen=True)
class PreTrafficSettings:
    function_name: str | None
    version: str | None
    smoke: str = "smoke"
    judge_model_id: str | None = None
    embeddings_model_id: str | None = None
    golden_dir: Path | None = None
    concurrency: int = 8
    ttft_slo_ms: float | None = None  # p95 time to first token of the smoke answers (None: reported, not gated)
    baseline_qualifier: str | None = None  # the alias still on the previous version (times the same prompts)
    total_regression_ms: float | None = None
    total_regression_pct: float | None = None

    @property
    def latency_budget(self) -> LatencyBudget:
        return LatencyBudget(self.ttft_slo_ms, self.total_regression_ms, self.total_regression_pct)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PreTrafficSettings:
        env = os.environ if env is None else env
        golden = env.get("EVALGATE_GOLDEN_DIR") or None
        knowledge = env.get("EVALGATE_KNOWLEDGE_DIR") or None

        if golden is None and knowledge:
            golden = str(Path(knowledge).parent)
        return cls(
            function_name=env.get("TARGET_FUNCTION_NAME") or None,
            version=env.get("TARGET_VERSION") or None,
            smoke=env.get("SMOKE_CASES") or "smoke",
            judge_model_id=env.get("JUDGE_MODEL_ID") or None,
            embeddings_model_id=env.get("EMBEDDINGS_MODEL_ID") or None,
            golden_dir=Path(golden) if golden else None,
            ttft_slo_ms=positive_env(env, "TTFT_SLO_MS"),
            baseline_qualifier=env.get("BASELINE_QUALIFIER") or None,
            total_regression_ms=positive_env(env, "TOTAL_REGRESSION_MS"),
            total_regression_pct=positive_env(env, "TOTAL_REGRESSION_PCT"),
        )


def positive_env(env: Mapping[str, str], name: str) -> float | None:
    """A positive number from the environment (None when unset); anything else names the variable."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise InputError.single("environment", None, f"{name}={raw!r} must be a positive number")
    return value


def default_golden_dir() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "golden" / "gate.toml").is_file():
            return parent / "golden"
    return Path("golden")


def load_smoke(settings: PreTrafficSettings) -> tuple[Any, list[Any]]:
    """(golden, cases) from ``SMOKE_CASES``, one of:

    - ``smoke`` or ``tag:smoke``: the cases tagged ``smoke`` in the golden folder (``EVALGATE_GOLDEN_DIR``);
    - ``/var/task/golden#smoke``: the same, with the golden folder named in the value;
    - ``smoke.jsonl`` or ``/path/cases.jsonl#smoke``: the cases of one JSONL file (optionally only a tag),
      judged against the golden folder's knowledge base.
    """
    from evalgate.core.dataset import SUITE_FILES, Golden, load_cases, load_golden, load_knowledge

    root = settings.golden_dir or default_golden_dir()
    spec = settings.smoke.strip()
    tag: str | None = None
    target = spec
    if spec.startswith("tag:"):
        target, tag = "", spec.removeprefix("tag:")
    elif "#" in spec:
        target, _, tag = spec.rpartition("#")
    elif not spec.endswith(".jsonl"):
        target, tag = "", spec
    path = Path(target) if target else None
    if path is not None and not path.is_absolute():
        path = root / path
    if path is not None and path.is_dir():
        root, path = path, None
    if path is not None:
        if not path.is_file():
            raise InputError.single(str(path), None, f"smoke cases file not found (SMOKE_CASES={spec!r})")
        knowledge, problems = load_knowledge(root / "knowledge")
        cases, _, case_problems = load_cases(path, "regression")
        if problems or case_problems:
            raise InputError(problems + case_problems)
        picked = [c for c in cases if tag is None or tag in c.tags]
        if not picked:
            raise InputError.single(str(path), None, f"no smoke cases tagged '{tag}' (SMOKE_CASES={spec!r})")
        return Golden(root=root, knowledge=knowledge, cases=picked), picked
    suites = [s for s, f in SUITE_FILES.items() if (root / f).is_file()]
    golden = load_golden(root, suites)
    if tag == "smoke" and (root / "gate.toml").is_file():
        # The same subset as `evalgate run --tier smoke`: tagged cases topped up to gate.min_cases per group.
        from evalgate.core.config import load_config
        from evalgate.engine.tiers import smoke_subset

        cases, _ = smoke_subset(golden.cases, load_config(root / "gate.toml"), tag)
    else:
        cases = [c for c in golden.cases if tag in c.tags]
    if not cases:
        raise InputError.single(str(root), None, f"no smoke cases: nothing tagged '{tag}' (SMOKE_CASES={spec!r})")
    return golden, cases


def pre_traffic_smoke(
    settings: PreTrafficSettings,
    deadline: float,
    *,
    candidate: Any = None,
    judge: Any = None,
    embedder: Any = None,
    baseline_candidate: Any = None,
) -> HookOutcome:
    """Run the smoke set against the new version; Succeeded only on a PASS verdict within the latency budget."""
    from evalgate.core.config import load_config
    from evalgate.engine.factories import make_judge, make_titan_embedder
    from evalgate.engine.runner import RunOptions, run_evaluation

    if not settings.function_name or not settings.version:
        raise InputError.single("environment", None, "TARGET_FUNCTION_NAME and TARGET_VERSION must be set")
    version = version_of(settings.version)
    if not version.isdigit():
        raise InputError.single("environment", None, f"TARGET_VERSION must be a published version, not {version!r}")
    golden, cases = load_smoke(settings)
    config = load_config(golden.root / "gate.toml")
    if candidate is None:
        from evalgate.adapters.lambda_fn import LambdaCandidate
        from evalgate.adapters.signing import synthetic_signer_from_env

        # signed as synthetic: the hook's smoke answers must not reach the online judge as user traffic
        candidate = LambdaCandidate(
            settings.function_name, version, service_timing=True, synthetic=synthetic_signer_from_env()
        )
    if judge is None:
        if not settings.judge_model_id:
            raise InputError.single("environment", None, "JUDGE_MODEL_ID must be set: the smoke set is judged")
        judge = make_judge(settings.judge_model_id)
    not_run: list[dict[str, str]] = []
    if embedder is None and settings.embeddings_model_id:
        embedder = make_titan_embedder(settings.embeddings_model_id)
    if embedder is None:
        not_run.append({"metric": "similarity", "reason": "EMBEDDINGS_MODEL_ID is not set"})
    result = run_evaluation(
        golden=golden,
        cases=cases,
        candidate=candidate,
        config=config,
        options=RunOptions(tier="smoke", concurrency=settings.concurrency, deadline=deadline),
        not_run=not_run,
        judge=judge,
        embedder=embedder,
    )
    verdict = result.verdict.verdict
    budget = settings.latency_budget
    if baseline_candidate is None and settings.baseline_qualifier and budget.gates_total:
        from evalgate.adapters.lambda_fn import LambdaCandidate

        baseline_candidate = LambdaCandidate(settings.function_name, settings.baseline_qualifier, service_timing=True)
    paired, paired_note = None, "no total-time tolerance or no previous version configured"
    if baseline_candidate is not None and budget.gates_total:
        paired, paired_note = total_vs_previous(result, baseline_candidate, golden, cases, version, settings, deadline)
    latency, latency_failures = smoke_latency(result, settings, config)
    if paired is not None and paired.failed:
        latency_failures.append(paired.describe(budget))
    failing = [c for c in result.cases if c.status != "pass"]
    details = {
        "verdict": verdict,
        "run_id": result.run_id,
        "version": version,
        "cases": len(result.cases),
        "failing": [{"id": c.id, "status": c.status, "failures": c.failures[:3]} for c in failing[:5]],
        "reasons": result.verdict.reasons[:5],
        "latency": {a.metric: a.value for a in latency},
        "total_vs_previous": paired.describe(budget) if paired is not None else paired_note,
    }
    if latency_failures:
        why = "; ".join(latency_failures + result.verdict.reasons[:2])
        return HookOutcome(
            "Failed", f"smoke latency FAIL on version {version} ({len(result.cases)} cases): {why}", details
        )
    why = "; ".join(result.verdict.reasons[:3]) or "all checks passed"
    status: HookStatus = "Succeeded" if verdict == "PASS" else "Failed"
    return HookOutcome(status, f"smoke {verdict} on version {version} ({len(result.cases)} cases): {why}", details)


def total_vs_previous(
    result: Any,
    baseline: Any,
    golden: Any,
    cases: list[Any],
    version: str,
    settings: PreTrafficSettings,
    deadline: float,
) -> tuple[Any, str]:
    """The smoke prompts once more on the previous version (timing only), paired by case with the new version's
    total answer time. Without a usable baseline (first deployment, the old version failing) the total is not
    compared, and the note says why: a broken previous version must not block its own replacement."""
    from concurrent.futures import ThreadPoolExecutor

    from evalgate.core.latency import MIN_PAIRS, paired_total_regression

    def timed(case: Any) -> tuple[str, float | None]:
        if time.monotonic() > deadline - REPORT_RESERVE_S:
            return case.id, None
        try:
            return case.id, baseline.generate(case, golden.knowledge_for(case), 0).latency_ms
        except Exception:  # counted below: no pair for this prompt
            return case.id, None

    with ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="smoke-baseline") as pool:
        old = {cid: ms for cid, ms in pool.map(timed, cases) if ms is not None}
    if getattr(baseline, "executed_version", None) == version:
        return None, f"the previous version is this version ({version}): total time not compared"
    new = {c.id: c.latency_ms for c in result.cases if c.latency_ms is not None}
    paired = paired_total_regression(new, old, settings.latency_budget)
    if paired is None:
        return None, f"only {len(set(new) & set(old))} prompts timed on both versions (< {MIN_PAIRS}): not compared"
    return paired, ""


def smoke_latency(result: Any, settings: PreTrafficSettings, config: Any) -> tuple[list[Any], list[str]]:
    """p50/p95 time to first token (p95 against the SLO) and total answer time of the smoke answers, and why the
    latency fails (fail closed: an SLO with no TTFT reported is a failure). Total time against the previous
    version is ``total_vs_previous`` (paired by prompt)."""
    from evalgate.core.gate import latency_aggregates, latency_reasons

    budget = LatencyBudget(ttft_slo_ms=settings.ttft_slo_ms)
    ttft = [c.ttft_ms for c in result.cases if c.ttft_ms is not None]
    total = [c.latency_ms for c in result.cases if c.latency_ms is not None]
    aggregates = latency_aggregates("smoke", ttft, total, budget, None, config, "as the new version measured it")
    reasons = latency_reasons(aggregates, budget)
    if settings.ttft_slo_ms is not None and not ttft:
        reasons.append(
            f"the SLO is on time to first token ({settings.ttft_slo_ms:g} ms), but the new version reported none "
            "(answer document 'latency.ttft_ms'); fail closed"
        )
    return aggregates, reasons


# ------------------------------------------------------------------------------------------------ canary


def positive_int_env(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    """An integer environment variable of at least ``minimum`` (``default`` when unset); anything else names the
    variable."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        what = "a positive integer" if minimum >= 1 else "a whole number of seconds"
        raise InputError.single("environment", None, f"{name}={raw!r} must be {what}")
    return int(raw)


@dataclass(frozen=True)
class CanarySettings:
    function_name: str | None = None
    target_version: str | None = None
    baseline_version: str | None = None
    namespace: str | None = None
    bake_minutes: int = 15
    min_samples: int = 30
    min_samples_alarm: str | None = None  # the JudgedCount alarm (missing data = breaching); must be OK to promote
    # How long to wait for that alarm to turn OK: an answer is judged only after the capture queue's batch window
    # and the judge call, and its EMF datapoint reaches the alarm after CloudWatch ingestion and evaluation.
    sample_grace_s: int = 0
    total_regression_ms: float | None = None  # total answer time vs the previous version (evalgate.core.latency)
    total_regression_pct: float | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CanarySettings:
        env = os.environ if env is None else env

        def num(name: str, default: int, minimum: int = 1) -> int:
            return positive_int_env(env, name, default, minimum)

        return cls(
            total_regression_ms=positive_env(env, "TOTAL_REGRESSION_MS"),
            total_regression_pct=positive_env(env, "TOTAL_REGRESSION_PCT"),
            function_name=env.get("TARGET_FUNCTION_NAME") or None,
            target_version=env.get("TARGET_VERSION") or None,
            baseline_version=env.get("BASELINE_VERSION") or None,
            namespace=env.get("POWERTOOLS_METRICS_NAMESPACE") or None,
            bake_minutes=num("BAKE_MINUTES", 15),
            min_samples=num("MIN_SAMPLES", 30),
            min_samples_alarm=env.get("MIN_SAMPLES_ALARM") or None,
            sample_grace_s=num("SAMPLE_GRACE_SECONDS", 0, minimum=0),
        )


def wait_for_ok(
    read: Callable[[], str],
    grace_s: float,
    *,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Poll an alarm state until it is OK or ``grace_s`` (and the hook's own ``deadline``) has passed."""
    give_up = clock() + max(0.0, grace_s)
    if deadline is not None:
        give_up = min(give_up, deadline - REPORT_RESERVE_S)
    state = read()
    while state != "OK" and clock() + poll_s <= give_up:
        sleep(poll_s)
        state = read()
    return state


def canary_analysis(
    settings: CanarySettings,
    deployment_id: str,
    *,
    fetcher: Any,
    codedeploy: Any = None,
    now: datetime | None = None,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> HookOutcome:
    """Judge the new version against the previous one on the bake window's per-version metrics."""
    from dataclasses import replace as dc_replace

    from evalgate.release.canary import LATENCY, CanaryConfig, judge_canary

    target = version_of(settings.target_version) if settings.target_version else None
    baseline = version_of(settings.baseline_version) if settings.baseline_version else None
    if (target is None or baseline is None) and codedeploy is not None:
        spec = versions_from_deployment(codedeploy, deployment_id)
        target = target or spec.target
        baseline = baseline or spec.current
    if not target or not baseline:
        raise InputError.single(
            "environment", None, "cannot tell which versions to compare (TARGET_VERSION / BASELINE_VERSION or AppSpec)"
        )
    if target == baseline:
        raise InputError.single("environment", None, f"target and baseline are the same version ({target})")
    if settings.min_samples_alarm:
        # Kept out of CodeDeploy's alarm list (a new version has no data yet, so it starts in ALARM); enforced
        # here, at promotion time: a canary that nobody judged never promotes.
        state = wait_for_ok(
            lambda: str(fetcher.alarm_state(settings.min_samples_alarm)),
            settings.sample_grace_s,
            deadline=deadline,
            sleep=sleep,
            poll_s=poll_s,
            clock=clock,
        )
        if state != "OK":
            return HookOutcome(
                "Failed",
                f"canary failed: minimum-sample alarm {settings.min_samples_alarm} is {state} "
                f"(fewer than {settings.min_samples} judged answers for version {target}, after waiting up to "
                f"{settings.sample_grace_s} s for late judgements); fail closed",
                {"min_samples_alarm": settings.min_samples_alarm, "state": state},
            )
    end = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=settings.bake_minutes)
    base_arm = fetcher.fetch(baseline, start, end)
    canary_arm = fetcher.fetch(target, start, end)
    budget = LatencyBudget(regression_ms=settings.total_regression_ms, regression_pct=settings.total_regression_pct)
    cfg = dc_replace(CanaryConfig(), min_judged=settings.min_samples, latency_budget=budget)
    if budget.gates_total:  # an explicit total-time tolerance is a rule, not a score: breaking it fails the canary
        cfg = dc_replace(cfg, critical=cfg.critical | {LATENCY})
    result = judge_canary(base_arm, canary_arm, cfg)
    details = {**result.as_dict(), "window": {"start": start.isoformat(), "end": end.isoformat()}}
    if result.passed:
        return HookOutcome(
            "Succeeded", f"canary passed (score {result.score:.0f}): version {target} vs {baseline}", details
        )
    return HookOutcome(
        "Failed", f"canary failed: version {target} vs {baseline}: " + "; ".join(result.reasons[:3]), details
    )
