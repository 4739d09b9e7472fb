"""The canary verdict DURING the canary step, so no user beyond the canary share gets an unjudged version.

A scheduled Lambda (every minute) looks for the deployment group's in-progress deployments. For each one whose
traffic shift has begun (the ``AllowTraffic`` lifecycle event has a start time), it runs the canary judge
(``evalgate.release.canary.judge_canary``, new version vs the previous one) on the per-version metrics since the shift
began, and publishes ``CanaryVerdict`` with dimension ``FunctionVersion`` = the new version: 0 = passing or
not yet decided, 1 = failed. An alarm on that metric is in the deployment group, so a 1 stops and rolls back
the deployment while only the canary share has seen the new version.

Timeline (``canaryIntervalMinutes`` = I, lead L = ``VERDICT_LEAD_MINUTES``):

- before the shift (BeforeAllowTraffic running): 0, nothing to judge yet;
- minute 0 .. I-L of the canary: interim looks every minute at a strict level (``interim_alpha`` = 0.001,
  Haybittle-Peto), so an obvious regression is stopped at once and the repeated looks barely spend the
  final test's alpha; too little data is "not yet" (0);
- at I-L minutes: the final verdict on everything collected, with the judge's own family-wise alpha; too few
  judged answers or requests fails closed (1). It is republished until the deployment ends, leaving L minutes
  for the alarm to fire and CodeDeploy to stop before it would shift the rest of the traffic;
- AfterAllowTraffic still runs the same judge on the whole bake window (``deploy_hooks.canary_analysis``).

Idempotent: a redelivered schedule event recomputes and republishes the same value for the same minute, and the
alarm reads the per-minute Maximum.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from evalgate.core.errors import InputError
from evalgate.core.latency import LatencyBudget
from evalgate.release.appspec import versions_from_deployment
from evalgate.release.canary import ArmSamples, CanaryConfig, judge_canary
from evalgate.release.canary_power import VERDICT_LEAD_MINUTES
from evalgate.release.deploy_hooks import positive_env, positive_int_env, version_of

Phase = Literal["before-traffic", "interim", "final"]
INTERIM_ALPHA = 0.001


@dataclass(frozen=True)
class LiveSettings:
    application: str
    deployment_group: str | None  # None: every group of the application (ListDeploymentGroups)
    interval_minutes: int
    min_samples: int
    lead_minutes: int = VERDICT_LEAD_MINUTES
    interim_alpha: float = INTERIM_ALPHA
    total_regression_ms: float | None = None  # total answer time vs the previous version (as the canary hook)
    total_regression_pct: float | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LiveSettings:
        env = os.environ if env is None else env
        if not env.get("CODEDEPLOY_APPLICATION"):
            raise InputError.single("environment", None, "CODEDEPLOY_APPLICATION must be set")

        def num(name: str, default: int) -> int:
            return positive_int_env(env, name, default)

        interval = num("CANARY_INTERVAL_MINUTES", 10)
        lead = num("VERDICT_LEAD_MINUTES", VERDICT_LEAD_MINUTES)
        if lead >= interval:
            raise InputError.single(
                "environment", None, f"VERDICT_LEAD_MINUTES={lead} must be below CANARY_INTERVAL_MINUTES={interval}"
            )
        return cls(
            application=env["CODEDEPLOY_APPLICATION"],
            deployment_group=env.get("CODEDEPLOY_GROUP") or None,
            interval_minutes=interval,
            min_samples=num("MIN_SAMPLES", 30),
            lead_minutes=lead,
            total_regression_ms=positive_env(env, "TOTAL_REGRESSION_MS"),
            total_regression_pct=positive_env(env, "TOTAL_REGRESSION_PCT"),
        )

    def config(self) -> CanaryConfig:
        """The canary judge's configuration for the final look (the same latency budget as the canary hook)."""
        budget = LatencyBudget(regression_ms=self.total_regression_ms, regression_pct=self.total_regression_pct)
        return replace(CanaryConfig(), min_judged=self.min_samples, latency_budget=budget)


@dataclass
class LiveVerdict:
    deployment_id: str
    target: str
    baseline: str
    phase: Phase
    value: int  # published as CanaryVerdict: 1 = failed (stop and roll back), 0 = passing or not yet decided
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


def _pages(call: Any, key: str, **kwargs: Any) -> list[str]:
    out: list[str] = []
    while True:
        page = call(**kwargs)
        out += page.get(key, [])
        if not page.get("nextToken"):
            return out
        kwargs["nextToken"] = page["nextToken"]


def in_progress(codedeploy: Any, settings: LiveSettings) -> list[str]:
    """In-progress deployments of the configured group, or of every group of the application."""
    groups = (
        [settings.deployment_group]
        if settings.deployment_group
        else _pages(codedeploy.list_deployment_groups, "deploymentGroups", applicationName=settings.application)
    )
    ids: list[str] = []
    for group in groups:
        ids += _pages(
            codedeploy.list_deployments,
            "deployments",
            applicationName=settings.application,
            deploymentGroupName=group,
            includeOnlyStatuses=["InProgress"],
        )
    return ids


def shift_started(codedeploy: Any, deployment_id: str) -> datetime | None:
    """When CodeDeploy began shifting traffic (the AllowTraffic lifecycle event's start), or None before that."""
    targets = codedeploy.list_deployment_targets(deploymentId=deployment_id).get("targetIds", [])
    for target_id in targets:
        t = codedeploy.get_deployment_target(deploymentId=deployment_id, targetId=target_id)["deploymentTarget"]
        for ev in (t.get("lambdaTarget") or {}).get("lifecycleEvents", []):
            if ev.get("lifecycleEventName") == "AllowTraffic" and ev.get("startTime"):
                start: datetime = ev["startTime"]
                return start if start.tzinfo else start.replace(tzinfo=UTC)
    return None


def judge_deployment(
    settings: LiveSettings, deployment_id: str, *, codedeploy: Any, fetcher: Any, now: datetime
) -> LiveVerdict:
    versions = versions_from_deployment(codedeploy, deployment_id)
    if not versions.target or not versions.current:
        raise InputError.single("deployment", None, f"{deployment_id}: the AppSpec names no current/target version")
    target, baseline = version_of(versions.target), version_of(versions.current)
    started = shift_started(codedeploy, deployment_id)
    if started is None:
        return LiveVerdict(deployment_id, target, baseline, "before-traffic", 0, "traffic shift not started yet")
    deadline = started + timedelta(minutes=settings.interval_minutes - settings.lead_minutes)
    final = now >= deadline
    end = min(now, deadline).replace(second=0, microsecond=0)
    start = started.replace(second=0, microsecond=0)
    window = {"start": start.isoformat(), "end": end.isoformat(), "deadline": deadline.isoformat()}
    base_arm = fetcher.fetch(baseline, start, end) if end > start else None
    canary_arm = fetcher.fetch(target, start, end) if end > start else None
    if base_arm is None or canary_arm is None:
        return LiveVerdict(deployment_id, target, baseline, "interim", 0, "canary just started", {"window": window})
    value, why, details = look(base_arm, canary_arm, settings, final)
    details["window"] = window
    if final and not value:
        why += f" on {window['start']}..{window['end']}"
    elif not final and not value:
        why += f"; final verdict in {max(0, math.ceil((deadline - now).total_seconds() / 60))} min"
    return LiveVerdict(deployment_id, target, baseline, "final" if final else "interim", value, why, details)


def look(
    base_arm: ArmSamples, canary_arm: ArmSamples, settings: LiveSettings, final: bool
) -> tuple[int, str, dict[str, Any]]:
    """One look of the live judge at the data so far: (verdict value, reason, analysis). The final look is the
    judge's own verdict (fail closed on too little data); an interim look fails only on a critical metric
    significantly worse beyond tolerance at ``interim_alpha``."""
    cfg = settings.config()
    if not final:
        cfg = replace(cfg, alpha=settings.interim_alpha)
    result = judge_canary(base_arm, canary_arm, cfg)
    details = {**result.as_dict(), "alpha": cfg.alpha}
    if final:
        if result.passed:
            return 0, f"canary passed (score {result.score:.0f})", details
        return 1, "canary failed before promotion: " + "; ".join(result.reasons[:3]), details
    failed = [r for r in result.results if r.status == "fail" and r.critical]
    if failed:
        why = f"canary failed at an interim look (alpha {cfg.alpha:g}): " + "; ".join(
            f"{r.metric}: {r.reason}" for r in failed
        )
        return 1, why, details
    return 0, "no critical regression yet", details


def live_verdicts(
    settings: LiveSettings, *, codedeploy: Any, fetcher: Any, now: datetime | None = None
) -> list[LiveVerdict]:
    """One verdict per in-progress deployment of the group. A deployment that cannot be judged (its metrics
    unreadable, its AppSpec odd) fails closed: value 1 with the reason."""
    now = now or datetime.now(UTC)
    out: list[LiveVerdict] = []
    for deployment_id in in_progress(codedeploy, settings):
        try:
            out.append(judge_deployment(settings, deployment_id, codedeploy=codedeploy, fetcher=fetcher, now=now))
        except Exception as exc:  # fail closed, per deployment: never let one bad read promote a version
            target = ""
            try:
                target = version_of(versions_from_deployment(codedeploy, deployment_id).target or "")
            except Exception:
                target = ""
            out.append(
                LiveVerdict(
                    deployment_id, target, "", "final", 1, f"could not judge the canary ({type(exc).__name__}: {exc})"
                )
            )
    return out
